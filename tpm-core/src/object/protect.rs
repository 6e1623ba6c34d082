//! Protection of private areas and secrets (Part 1, 23.3 "Protected Storage", 24 "Credential
//! Protection", 11.4.10-11.4.11 secret sharing).
//!
//! The outer wrap is the same for child objects under a storage parent, duplication blobs and
//! credentials: symKey = KDFa(nameAlg, seed, "STORAGE", Name, ε, keyBits) encrypts the
//! plaintext with AES-CFB; HMACkey = KDFa(nameAlg, seed, "INTEGRITY", ε, ε, digestBits) gives
//! outerHMAC = HMAC(HMACkey, encrypted || Name); the blob is TPM2B_DIGEST(outerHMAC) ||
//! encrypted. A single flipped bit fails the HMAC: TPM_RC_INTEGRITY.
//!
//! Duplication blobs and credentials use a fresh seed each time, so their IV is zero. A child's
//! private area is protected by the parent's fixed seed and its own Name, which stay the same
//! when the object is wrapped again (ObjectChangeAuth, Import of the same key): it gets a random
//! IV, stored as a TPM2B_IV in front of the ciphertext and covered by the HMAC, so two private
//! areas of one object never share a CFB keystream (reference implementation,
//! SensitiveToPrivate / ProduceOuterWrap with useIV).

use alloc::vec::Vec;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::crypto::hash::HashAlg;
use crate::crypto::kdf;
use crate::crypto::rng::FillRng;
use crate::crypto::{ecc, rsa_ops, sym};
use crate::marshal::Writer;
use crate::object::public::{Cursor, SymDef};
use crate::object::{Key, Object};
use crate::rc::{TpmRc, TpmResult};

/// Outer-wraps `plain` with a zero IV (Part 1, 23.3.2.3).
pub fn outer_wrap(
    alg: HashAlg,
    sym: SymDef,
    seed: &[u8],
    name: &[u8],
    plain: &[u8],
) -> TpmResult<Vec<u8>> {
    outer_wrap_iv(alg, sym, seed, name, plain, None)
}

/// Outer-wraps `plain`; with `iv`, the encrypted part is TPM2B_IV(iv) || CFB(iv, plain).
fn outer_wrap_iv(
    alg: HashAlg,
    sym: SymDef,
    seed: &[u8],
    name: &[u8],
    plain: &[u8],
    iv: Option<[u8; sym::BLOCK]>,
) -> TpmResult<Vec<u8>> {
    let sym_key = Zeroizing::new(kdf::kdfa(
        alg,
        seed,
        b"STORAGE",
        name,
        &[],
        u32::from(sym.bits),
    ));
    let mut body = Writer::new();
    let mut chain = [0u8; sym::BLOCK];
    if let Some(iv) = iv {
        body.tpm2b(&iv);
        chain = iv;
    }
    let mut ct = plain.to_vec();
    sym::aes(sym::mode::CFB, &sym_key, &mut chain, false, &mut ct)?;
    body.bytes(&ct);
    let enc = body.into_vec();
    let hmac_key = Zeroizing::new(kdf::kdfa(
        alg,
        seed,
        b"INTEGRITY",
        &[],
        &[],
        (alg.digest_size() * 8) as u32,
    ));
    let mac = kdf::hmac(alg, &hmac_key, &[&enc, name]);
    let mut w = Writer::with_capacity(2 + mac.len() + enc.len());
    w.tpm2b(&mac).bytes(&enc);
    Ok(w.into_vec())
}

/// Checks and removes the outer wrap of [`outer_wrap`]. TPM_RC_INTEGRITY when the HMAC does not
/// match.
pub fn outer_unwrap(
    alg: HashAlg,
    sym: SymDef,
    seed: &[u8],
    name: &[u8],
    blob: &[u8],
) -> TpmResult<Zeroizing<Vec<u8>>> {
    outer_unwrap_iv(alg, sym, seed, name, blob, false)
}

/// Checks and removes an outer wrap; with `use_iv` the encrypted part starts with a TPM2B_IV
/// that must be one AES block (TPM_RC_VALUE otherwise, as the reference UnwrapOuter).
fn outer_unwrap_iv(
    alg: HashAlg,
    sym: SymDef,
    seed: &[u8],
    name: &[u8],
    blob: &[u8],
    use_iv: bool,
) -> TpmResult<Zeroizing<Vec<u8>>> {
    let mut c = Cursor::new(blob);
    let mac = c.tpm2b(64).map_err(|_| TpmRc::INSUFFICIENT)?;
    if mac.len() != alg.digest_size() {
        return Err(TpmRc::INTEGRITY);
    }
    let enc = c.buf;
    let hmac_key = Zeroizing::new(kdf::kdfa(
        alg,
        seed,
        b"INTEGRITY",
        &[],
        &[],
        (alg.digest_size() * 8) as u32,
    ));
    let expected = kdf::hmac(alg, &hmac_key, &[enc, name]);
    if !bool::from(expected.ct_eq(mac)) {
        return Err(TpmRc::INTEGRITY);
    }
    let sym_key = Zeroizing::new(kdf::kdfa(
        alg,
        seed,
        b"STORAGE",
        name,
        &[],
        u32::from(sym.bits),
    ));
    let mut chain = [0u8; sym::BLOCK];
    let mut body = Cursor::new(enc);
    if use_iv {
        let iv = body.tpm2b(sym::BLOCK).map_err(|_| TpmRc::VALUE)?;
        chain = iv.try_into().map_err(|_| TpmRc::VALUE)?;
    }
    let mut plain = Zeroizing::new(body.buf.to_vec());
    sym::aes(sym::mode::CFB, &sym_key, &mut chain, true, &mut plain)?;
    Ok(plain)
}

/// Removes the size prefix of a TPM2B whose size must cover exactly the rest of `buf`.
pub fn strip_tpm2b(buf: &[u8]) -> TpmResult<&[u8]> {
    let mut c = Cursor::new(buf);
    let n = usize::from(c.u16()?);
    if n != c.buf.len() {
        return Err(TpmRc::SIZE);
    }
    Ok(c.buf)
}

/// Protects a child's TPM2B_SENSITIVE under its storage parent, with an IV from `random`: the
/// TPM2B_PRIVATE payload.
pub fn wrap_child(
    random: &mut dyn FnMut(&mut [u8]),
    parent: &Object,
    name: &[u8],
    sensitive_tpm2b: &[u8],
) -> TpmResult<Vec<u8>> {
    let mut iv = [0u8; sym::BLOCK];
    random(&mut iv);
    outer_wrap_iv(
        parent.name_alg(),
        parent.public.symmetric(),
        parent.seed()?,
        name,
        sensitive_tpm2b,
        Some(iv),
    )
}

/// Recovers a child's TPMT_SENSITIVE bytes from its TPM2B_PRIVATE payload.
pub fn unwrap_child(parent: &Object, name: &[u8], private: &[u8]) -> TpmResult<Zeroizing<Vec<u8>>> {
    let plain = outer_unwrap_iv(
        parent.name_alg(),
        parent.public.symmetric(),
        parent.seed()?,
        name,
        private,
        true,
    )?;
    let inner = strip_tpm2b(&plain).map_err(|_| TpmRc::INTEGRITY)?;
    Ok(Zeroizing::new(inner.to_vec()))
}

/// Creates a seed and encrypts it to `key` (Part 1, 11.4.10.3 / B.10.3 for RSA, C.6.4 for
/// ECC): RSA-OAEP with the key's nameAlg and `label`, or an ephemeral ECDH point whose
/// shared x-coordinate goes through KDFe. Returns (seed, TPM2B_ENCRYPTED_SECRET payload).
pub fn make_secret(
    random: &mut dyn FnMut(&mut [u8]),
    key: &Object,
    label: &[u8],
) -> TpmResult<(Zeroizing<Vec<u8>>, Vec<u8>)> {
    let alg = key.name_alg();
    match &key.key {
        Key::RsaPrivate(k) => rsa_secret(random, k.as_public_key(), alg, label),
        Key::RsaPublic(k) => rsa_secret(random, k, alg, label),
        Key::Ecc { curve, q, .. } => {
            let e = ecc::generate(*curve, &mut *random)?;
            let qe = ecc::public(*curve, &e)?;
            let z = ecc::mul(*curve, &e, q)?;
            let seed = Zeroizing::new(kdf::kdfe(
                alg,
                &z.x,
                label,
                &qe.x,
                public_x(key, q),
                (alg.digest_size() * 8) as u32,
            ));
            let mut w = Writer::new();
            w.tpm2b(&qe.x).tpm2b(&qe.y);
            Ok((seed, w.into_vec()))
        }
        Key::Symmetric => Err(TpmRc::KEY),
    }
}

/// The x-coordinate of `key`'s public area as marshalled there (KDFe's PartyVInfo, Part 1,
/// C.6.4), falling back to the key's point.
pub fn public_x<'a>(key: &'a Object, q: &'a ecc::Point) -> &'a [u8] {
    match &key.public.unique {
        crate::object::public::Unique::Ecc(p) => &p.x,
        _ => &q.x,
    }
}

fn rsa_secret(
    random: &mut dyn FnMut(&mut [u8]),
    k: &rsa::PublicKey,
    alg: HashAlg,
    label: &[u8],
) -> TpmResult<(Zeroizing<Vec<u8>>, Vec<u8>)> {
    let mut seed = Zeroizing::new(alloc::vec![0u8; alg.digest_size()]);
    random(&mut seed);
    let mut rng = FillRng(|b: &mut [u8]| random(b));
    let ct = rsa_ops::encrypt(&mut rng, k, rsa_ops::Padding::Oaep(alg), label, &seed)?;
    Ok((seed, ct))
}

/// Recovers the seed of [`make_secret`] with the private key. Any failure is TPM_RC_VALUE
/// (RSA) or TPM_RC_ECC_POINT (ECC), as the caller tags them.
pub fn recover_secret(
    random: &mut dyn FnMut(&mut [u8]),
    key: &Object,
    label: &[u8],
    secret: &[u8],
) -> TpmResult<Zeroizing<Vec<u8>>> {
    let alg = key.name_alg();
    match &key.key {
        Key::RsaPrivate(k) => {
            let mut rng = FillRng(|b: &mut [u8]| random(b));
            let seed = rsa_ops::decrypt(&mut rng, k, rsa_ops::Padding::Oaep(alg), label, secret)?;
            if seed.len() > 64 {
                return Err(TpmRc::VALUE);
            }
            Ok(Zeroizing::new(seed))
        }
        Key::Ecc {
            curve,
            d: Some(d),
            q,
        } => {
            let mut c = Cursor::new(secret);
            let x = c.tpm2b(66)?;
            let y = c.tpm2b(66)?;
            if !c.is_empty() {
                return Err(TpmRc::SIZE);
            }
            let size = curve.size();
            let qe = ecc::Point {
                x: ecc::fit(x, size).ok_or(TpmRc::ECC_POINT)?,
                y: ecc::fit(y, size).ok_or(TpmRc::ECC_POINT)?,
            };
            let z = ecc::mul(*curve, d, &qe)?;
            // PartyUInfo and PartyVInfo are the x-coordinates exactly as marshalled (reference
            // CryptSecretDecrypt): the sender's TPM2B, which clients such as tpm2-tools
            // `makecredential -T none` send without leading zero octets (1 time in 256), and
            // the key's public area; padding them changes the KDFe input.
            Ok(Zeroizing::new(kdf::kdfe(
                alg,
                &z.x,
                label,
                x,
                public_x(key, q),
                (alg.digest_size() * 8) as u32,
            )))
        }
        _ => Err(TpmRc::KEY),
    }
}
