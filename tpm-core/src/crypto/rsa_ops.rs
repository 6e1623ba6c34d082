//! RSA over the `rsa` crate (constant-time `crypto-bigint` arithmetic): key generation, the
//! TPM sensitive form (one prime, Part 2, 11.2.4.6 TPM2B_PRIVATE_KEY_RSA), RSASSA-PKCS1-v1_5,
//! RSASSA-PSS, RSAES-OAEP, RSAES-PKCS1-v1_5 and raw RSA (TPM_ALG_NULL).

use alloc::vec::Vec;

use crypto_bigint::{BoxedUint, NonZero, Resize};
use rand_core::TryCryptoRng;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{Oaep, Pkcs1v15Encrypt, Pkcs1v15Sign, PrivateKey, Pss, PublicKey};
use sha1::Sha1;
use sha2::{Sha256, Sha384};

use crate::crypto::hash::HashAlg;
use crate::rc::{TpmRc, TpmResult};

/// The TPM's default public exponent (exponent 0 in TPMS_RSA_PARMS means 2^16 + 1).
pub const DEFAULT_EXPONENT: u32 = 65537;

/// RSA key sizes this engine implements.
pub fn key_bits_ok(bits: u16) -> bool {
    matches!(bits, 1024 | 2048 | 3072 | 4096)
}

/// Generates a key with modulus of `bits` and exponent `e` from `rng`.
pub fn generate<R: TryCryptoRng + ?Sized>(rng: &mut R, bits: u16, e: u32) -> TpmResult<PrivateKey> {
    PrivateKey::new_with_exp(rng, usize::from(bits), BoxedUint::from(u64::from(e)))
        .map_err(|_| TpmRc::KEY_SIZE)
}

fn precision(bytes: usize) -> u32 {
    // Limb-aligned precision large enough for `bytes` octets.
    (bytes.div_ceil(8) * 64) as u32
}

fn uint(bytes: &[u8], bits: u32) -> TpmResult<BoxedUint> {
    BoxedUint::from_be_slice(bytes, bits).map_err(|_| TpmRc::KEY)
}

/// The public key from modulus `n` and exponent `e` (0 means 65537).
pub fn public(n: &[u8], e: u32) -> TpmResult<PublicKey> {
    let e = if e == 0 { DEFAULT_EXPONENT } else { e };
    let n = uint(n, precision(n.len()))?;
    PublicKey::new(n, BoxedUint::from(u64::from(e))).map_err(|_| TpmRc::KEY)
}

/// Rebuilds the private key from the public modulus and the prime kept in the sensitive area:
/// q = n / p, and p·q must give n back (TPM_RC_BINDING otherwise).
pub fn private_from_prime(n: &[u8], e: u32, p: &[u8]) -> TpmResult<PrivateKey> {
    let e = if e == 0 { DEFAULT_EXPONENT } else { e };
    let bits = precision(n.len());
    let n_int = uint(n, bits)?;
    let p_int = uint(p, bits)?;
    let p_nz =
        Option::<NonZero<BoxedUint>>::from(NonZero::new(p_int.clone())).ok_or(TpmRc::BINDING)?;
    let (q, r) = n_int.div_rem(&p_nz);
    if !bool::from(r.is_zero()) {
        return Err(TpmRc::BINDING);
    }
    let half = precision(n.len().div_ceil(2));
    let p_int = p_int.resize(half);
    let q = q.resize(half);
    let key = PrivateKey::from_p_q(p_int, q, BoxedUint::from(u64::from(e)))
        .map_err(|_| TpmRc::BINDING)?;
    if key.n().as_ref().to_be_bytes_trimmed_vartime().as_ref() != strip(n) {
        return Err(TpmRc::BINDING);
    }
    Ok(key)
}

fn strip(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[i..]
}

/// Left-pads `v` with zeros to `len` octets (signatures and ciphertexts are modulus-sized).
pub fn pad(v: &[u8], len: usize) -> Vec<u8> {
    let v = strip(v);
    let mut out = alloc::vec![0u8; len.saturating_sub(v.len())];
    out.extend_from_slice(v);
    out
}

/// The modulus, big-endian, modulus-sized.
pub fn modulus(key: &PublicKey) -> Vec<u8> {
    pad(&key.n().as_ref().to_be_bytes_trimmed_vartime(), key.size())
}

/// The larger-index prime of a private key, modulus-half-sized (what TPM2B_PRIVATE_KEY_RSA holds).
pub fn prime(key: &PrivateKey) -> Vec<u8> {
    let half = key.size().div_ceil(2);
    match key.primes().first() {
        Some(p) => pad(&p.as_ref().to_be_bytes_trimmed_vartime(), half),
        None => Vec::new(),
    }
}

macro_rules! by_hash {
    ($alg:expr, $f:ident ! ($($args:tt)*)) => {
        match $alg {
            HashAlg::Sha1 => $f!(Sha1, $($args)*),
            HashAlg::Sha256 => $f!(Sha256, $($args)*),
            HashAlg::Sha384 => $f!(Sha384, $($args)*),
        }
    };
}

/// RSASSA-PKCS1-v1_5 over a digest made with `hash`.
pub fn sign_pkcs1<R: TryCryptoRng + ?Sized>(
    rng: &mut R,
    key: &PrivateKey,
    hash: HashAlg,
    digest: &[u8],
) -> TpmResult<Vec<u8>> {
    if digest.len() != hash.digest_size() {
        return Err(TpmRc::SIZE);
    }
    macro_rules! go {
        ($d:ty,) => {
            key.sign_with_rng(rng, Pkcs1v15Sign::new::<$d>(), digest)
        };
    }
    by_hash!(hash, go!())
        .map(|s| pad(&s, key.size()))
        .map_err(|_| TpmRc::FAILURE)
}

/// RSASSA-PSS with a salt as long as the digest.
pub fn sign_pss<R: TryCryptoRng + ?Sized>(
    rng: &mut R,
    key: &PrivateKey,
    hash: HashAlg,
    digest: &[u8],
) -> TpmResult<Vec<u8>> {
    if digest.len() != hash.digest_size() {
        return Err(TpmRc::SIZE);
    }
    macro_rules! go {
        ($d:ty,) => {
            key.sign_with_rng(rng, Pss::<$d>::new(), digest)
        };
    }
    by_hash!(hash, go!())
        .map(|s| pad(&s, key.size()))
        .map_err(|_| TpmRc::FAILURE)
}

/// Verifies RSASSA-PKCS1-v1_5.
pub fn verify_pkcs1(key: &PublicKey, hash: HashAlg, digest: &[u8], sig: &[u8]) -> bool {
    macro_rules! go {
        ($d:ty,) => {
            key.verify(Pkcs1v15Sign::new::<$d>(), digest, sig)
        };
    }
    by_hash!(hash, go!()).is_ok()
}

/// Verifies RSASSA-PSS with any salt length (the salt length is recovered from the encoding).
pub fn verify_pss(key: &PublicKey, hash: HashAlg, digest: &[u8], sig: &[u8]) -> bool {
    macro_rules! go {
        ($d:ty,) => {{
            let mut pss = Pss::<$d>::new();
            pss.salt_len = None;
            key.verify(pss, digest, sig)
        }};
    }
    by_hash!(hash, go!()).is_ok()
}

/// An RSA encryption scheme (TPMT_RSA_DECRYPT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// TPM_ALG_NULL: raw RSA.
    Raw,
    /// TPM_ALG_RSAES.
    Pkcs1,
    /// TPM_ALG_OAEP with its hash.
    Oaep(HashAlg),
}

/// The OAEP label as the TPM uses it: a non-empty label gets a terminating zero octet when it
/// lacks one (Part 1, B.4).
fn oaep_label(label: &[u8]) -> Vec<u8> {
    let mut l = label.to_vec();
    if !l.is_empty() && l.last() != Some(&0) {
        l.push(0);
    }
    l
}

/// Encrypts `msg` to `key` with `padding` (and `label` for OAEP).
pub fn encrypt<R: TryCryptoRng + ?Sized>(
    rng: &mut R,
    key: &PublicKey,
    padding: Padding,
    label: &[u8],
    msg: &[u8],
) -> TpmResult<Vec<u8>> {
    let out = match padding {
        Padding::Raw => {
            if msg.len() > key.size() {
                return Err(TpmRc::VALUE);
            }
            let m = uint(msg, key.n_bits_precision())?;
            if m >= *key.n().as_ref() {
                return Err(TpmRc::VALUE);
            }
            let c = rsa::hazmat::rsa_encrypt(key, &m).map_err(|_| TpmRc::VALUE)?;
            c.to_be_bytes_trimmed_vartime().to_vec()
        }
        Padding::Pkcs1 => key
            .encrypt(rng, Pkcs1v15Encrypt, msg)
            .map_err(|_| TpmRc::VALUE)?,
        Padding::Oaep(hash) => {
            let label = oaep_label(label);
            macro_rules! go {
                ($d:ty,) => {
                    if label.is_empty() {
                        key.encrypt(rng, Oaep::<$d>::new(), msg)
                    } else {
                        key.encrypt(rng, Oaep::<$d>::new_with_label(label), msg)
                    }
                };
            }
            by_hash!(hash, go!()).map_err(|_| TpmRc::VALUE)?
        }
    };
    Ok(pad(&out, key.size()))
}

/// Decrypts `ct` with `key`; a padding failure is TPM_RC_VALUE (Part 3, 14.3).
pub fn decrypt<R: TryCryptoRng + ?Sized>(
    rng: &mut R,
    key: &PrivateKey,
    padding: Padding,
    label: &[u8],
    ct: &[u8],
) -> TpmResult<Vec<u8>> {
    if ct.len() != key.size() {
        return Err(TpmRc::SIZE);
    }
    match padding {
        Padding::Raw => {
            let c = uint(ct, key.n_bits_precision())?;
            if c >= *key.n().as_ref() {
                return Err(TpmRc::VALUE);
            }
            let m =
                rsa::hazmat::rsa_decrypt_and_check(key, Some(rng), &c).map_err(|_| TpmRc::VALUE)?;
            Ok(pad(&m.to_be_bytes_trimmed_vartime(), key.size()))
        }
        Padding::Pkcs1 => key
            .decrypt_blinded(rng, Pkcs1v15Encrypt, ct)
            .map_err(|_| TpmRc::VALUE),
        Padding::Oaep(hash) => {
            let label = oaep_label(label);
            macro_rules! go {
                ($d:ty,) => {
                    if label.is_empty() {
                        key.decrypt_blinded(rng, Oaep::<$d>::new(), ct)
                    } else {
                        key.decrypt_blinded(rng, Oaep::<$d>::new_with_label(label), ct)
                    }
                };
            }
            by_hash!(hash, go!()).map_err(|_| TpmRc::VALUE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::drbg::Drbg;
    use crate::crypto::rng::FillRng;

    #[test]
    fn generate_rebuild_sign_encrypt() {
        let mut drbg = Drbg::new(&[3; 48]);
        let mut rng = FillRng(|b: &mut [u8]| drbg.fill(b));
        let key = generate(&mut rng, 1024, 65537).unwrap();
        let n = modulus(key.as_public_key());
        let p = prime(&key);
        let again = private_from_prime(&n, 0, &p).unwrap();
        assert_eq!(modulus(again.as_public_key()), n);
        let digest = HashAlg::Sha256.digest(&[b"abc"]);
        let sig = sign_pkcs1(&mut rng, &again, HashAlg::Sha256, &digest).unwrap();
        assert!(verify_pkcs1(
            key.as_public_key(),
            HashAlg::Sha256,
            &digest,
            &sig
        ));
        let sig = sign_pss(&mut rng, &again, HashAlg::Sha256, &digest).unwrap();
        assert!(verify_pss(
            key.as_public_key(),
            HashAlg::Sha256,
            &digest,
            &sig
        ));
        for padding in [Padding::Pkcs1, Padding::Oaep(HashAlg::Sha256), Padding::Raw] {
            let ct = encrypt(&mut rng, key.as_public_key(), padding, b"L", b"secret").unwrap();
            let pt = decrypt(&mut rng, &again, padding, b"L", &ct).unwrap();
            assert!(pt.ends_with(b"secret"), "{padding:?}");
        }
        let mut bad = p.clone();
        bad[10] ^= 1;
        assert_eq!(private_from_prime(&n, 0, &bad).unwrap_err(), TpmRc::BINDING);
    }
}
