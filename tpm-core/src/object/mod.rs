//! Objects (Part 1, 23-27): public area, sensitive area, Name and qualified name, the loaded
//! key material, key generation (random for ordinary objects, derived from the hierarchy seed
//! for primaries) and the protections of private areas (Part 1, 23.3).

pub mod creation;
pub mod protect;
pub mod public;

use alloc::vec::Vec;

use zeroize::Zeroizing;

use crate::crypto::drbg::Drbg;
use crate::crypto::ecc::{self, Curve};
use crate::crypto::hash::HashAlg;
use crate::crypto::kdf;
use crate::crypto::rng::FillRng;
use crate::crypto::rsa_ops;
use crate::handle::Handle;
use crate::marshal::Writer;
use crate::rc::{TpmRc, TpmResult};
use crate::state::AuthValue;
pub use public::{Params, Public, Unique, alg, attr};

/// TPMT_SENSITIVE (Part 2, 12.3.2.5): authValue, seedValue and the type-specific secret
/// (RSA prime p, ECC scalar d, KEYEDHASH data/key, symmetric key).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Sensitive {
    pub auth: AuthValue,
    pub seed: Zeroizing<Vec<u8>>,
    pub secret: Zeroizing<Vec<u8>>,
}

impl core::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Sensitive { .. }")
    }
}

impl Sensitive {
    /// Marshals TPMT_SENSITIVE for an object of `object_type`.
    pub fn write(&self, object_type: u16, w: &mut Writer) {
        w.u16(object_type)
            .tpm2b(self.auth.as_bytes())
            .tpm2b(&self.seed)
            .tpm2b(&self.secret);
    }

    /// TPM2B_SENSITIVE as it goes into a private or duplication blob: the authValue is
    /// zero-padded to the digest size of the object's `name_alg`, so the blob does not reveal
    /// how long it is (reference implementation, MarshalSensitive). Loading trims the zeros
    /// again ([`AuthValue::new`]), and trailing zeros of an authValue are not significant.
    pub fn to_tpm2b_padded(&self, object_type: u16, name_alg: HashAlg) -> Zeroizing<Vec<u8>> {
        let auth = self.auth.as_bytes();
        let mut padded = Zeroizing::new(alloc::vec![0u8; name_alg.digest_size().max(auth.len())]);
        if let Some(head) = padded.get_mut(..auth.len()) {
            head.copy_from_slice(auth);
        }
        let mut inner = Writer::new();
        inner
            .u16(object_type)
            .tpm2b(&padded)
            .tpm2b(&self.seed)
            .tpm2b(&self.secret);
        let inner = Zeroizing::new(inner.into_vec());
        let mut w = Writer::new();
        w.tpm2b(&inner);
        Zeroizing::new(w.into_vec())
    }

    /// TPM2B_SENSITIVE: size then TPMT_SENSITIVE.
    pub fn to_tpm2b(&self, object_type: u16) -> Zeroizing<Vec<u8>> {
        let mut inner = Writer::new();
        self.write(object_type, &mut inner);
        let mut w = Writer::new();
        w.tpm2b(inner.as_slice());
        Zeroizing::new(w.into_vec())
    }

    /// Parses TPMT_SENSITIVE occupying all of `buf`; its type must be `object_type`.
    pub fn parse(buf: &[u8], object_type: u16) -> TpmResult<Self> {
        let mut c = public::Cursor::new(buf);
        let ty = c.u16()?;
        if ty != object_type {
            return Err(TpmRc::TYPE);
        }
        let auth = c.tpm2b(public::MAX_DIGEST)?;
        let seed = c.tpm2b(public::MAX_DIGEST)?;
        let secret = c.tpm2b(public::MAX_RSA_BYTES)?;
        if !c.is_empty() {
            return Err(TpmRc::SIZE);
        }
        Ok(Self {
            auth: AuthValue::new(auth),
            seed: Zeroizing::new(seed.to_vec()),
            secret: Zeroizing::new(secret.to_vec()),
        })
    }
}

/// Key material ready for use.
#[derive(Clone, Debug)]
pub enum Key {
    RsaPrivate(rsa::PrivateKey),
    RsaPublic(rsa::PublicKey),
    Ecc {
        curve: Curve,
        /// Built once when the object is loaded (signing reuses it).
        d: Option<ecc::PrivateKey>,
        q: ecc::Point,
    },
    /// KEYEDHASH and SYMCIPHER: the secret is in the sensitive area (absent when public only).
    Symmetric,
}

/// A loaded object.
#[derive(Clone, Debug)]
pub struct Object {
    pub public: Public,
    /// The marshalled TPMT_PUBLIC the Name is computed over.
    pub public_bytes: Vec<u8>,
    pub name: Vec<u8>,
    pub qualified_name: Vec<u8>,
    /// TPM_RH_OWNER / ENDORSEMENT / PLATFORM / NULL.
    pub hierarchy: Handle,
    /// Absent for public-only objects (LoadExternal without a private part).
    pub sensitive: Option<Sensitive>,
    pub key: Key,
    /// Created by CreatePrimary (its parent is a hierarchy).
    pub primary: bool,
    /// Persistent handle, when this is a copy of an evicted object.
    pub evict: Option<Handle>,
}

/// Qualified name: nameAlg || H(parentQN || Name) (Part 1, 16); a hierarchy's QN is its handle.
pub fn qualified_name(alg: HashAlg, parent_qn: &[u8], name: &[u8]) -> Vec<u8> {
    let mut q = alg.alg_id().to_be_bytes().to_vec();
    q.extend_from_slice(&alg.digest(&[parent_qn, name]));
    q
}

impl Object {
    /// Builds an object from its public area and (optional) sensitive area, checking that
    /// they belong together (TPM_RC_BINDING) and that the key is sound (TPM_RC_KEY).
    pub fn new(
        public: Public,
        sensitive: Option<Sensitive>,
        hierarchy: Handle,
        parent_qn: &[u8],
    ) -> TpmResult<Self> {
        let key = build_key(&public, sensitive.as_ref())?;
        let public_bytes = public.to_bytes();
        let name = public::name_of(public.name_alg, &public_bytes);
        let qualified_name = qualified_name(public.name_alg, parent_qn, &name);
        Ok(Self {
            public,
            public_bytes,
            name,
            qualified_name,
            hierarchy,
            sensitive,
            key,
            primary: false,
            evict: None,
        })
    }

    pub fn name_alg(&self) -> HashAlg {
        self.public.name_alg
    }

    pub fn auth(&self) -> AuthValue {
        self.sensitive
            .as_ref()
            .map(|s| s.auth.clone())
            .unwrap_or_default()
    }

    /// The protection seed of a storage parent (its sensitive seedValue).
    pub fn seed(&self) -> TpmResult<&[u8]> {
        self.sensitive
            .as_ref()
            .map(|s| s.seed.as_slice())
            .ok_or(TpmRc::KEY)
    }

    /// The type-specific secret (symmetric key, HMAC key, sealed data).
    pub fn secret(&self) -> TpmResult<&[u8]> {
        self.sensitive
            .as_ref()
            .map(|s| s.secret.as_slice())
            .ok_or(TpmRc::KEY)
    }

    pub fn has_private(&self) -> bool {
        self.sensitive.is_some()
    }
}

fn build_key(public: &Public, sensitive: Option<&Sensitive>) -> TpmResult<Key> {
    match (&public.params, &public.unique) {
        (Params::Rsa { exponent, bits, .. }, Unique::Rsa(n)) => {
            if n.len() != usize::from(*bits) / 8 {
                return Err(TpmRc::KEY);
            }
            match sensitive {
                Some(s) => Ok(Key::RsaPrivate(rsa_ops::private_from_prime(
                    n, *exponent, &s.secret,
                )?)),
                None => Ok(Key::RsaPublic(rsa_ops::public(n, *exponent)?)),
            }
        }
        (Params::Ecc { curve, .. }, Unique::Ecc(q)) => {
            let size = curve.size();
            let q = ecc::Point {
                x: ecc::fit(&q.x, size).ok_or(TpmRc::ECC_POINT)?,
                y: ecc::fit(&q.y, size).ok_or(TpmRc::ECC_POINT)?,
            };
            if !ecc::valid_point(*curve, &q) {
                return Err(TpmRc::ECC_POINT);
            }
            let d = match sensitive {
                Some(s) => {
                    let d = ecc::PrivateKey::new(*curve, &s.secret)?;
                    if d.public() != q {
                        return Err(TpmRc::BINDING);
                    }
                    Some(d)
                }
                None => None,
            };
            Ok(Key::Ecc {
                curve: *curve,
                d,
                q,
            })
        }
        (Params::KeyedHash { .. } | Params::SymCipher { .. }, Unique::Digest(u)) => {
            if let Some(s) = sensitive {
                if let Params::SymCipher { symmetric } = &public.params
                    && s.secret.len() * 8 != usize::from(symmetric.bits)
                {
                    return Err(TpmRc::KEY_SIZE);
                }
                // unique = H_nameAlg(seedValue || secret) (Part 1, 27.7.3).
                if public.name_alg.digest(&[&s.seed, &s.secret]) != *u {
                    return Err(TpmRc::BINDING);
                }
            }
            Ok(Key::Symmetric)
        }
        _ => Err(TpmRc::TYPE),
    }
}

/// Where the secret material of a new object comes from.
pub enum Source<'a> {
    /// The engine DRBG (ordinary objects).
    Random(&'a mut dyn FnMut(&mut [u8])),
    /// A DRBG instantiated from KDFa of the hierarchy seed (primary objects, Part 1, 27.x):
    /// the same seed and template give the same key.
    Derived(Drbg),
}

impl Source<'_> {
    fn fill(&mut self, buf: &mut [u8]) {
        match self {
            Source::Random(f) => f(buf),
            Source::Derived(d) => d.fill(buf),
        }
    }
}

/// The DRBG of a primary object: KDFa(nameAlg, seed, "Primary Object Creation",
/// Name(template), sensitive.data) gives its seed, so the key depends on the hierarchy seed,
/// the template (including its unique field) and the caller's sensitive data only.
pub fn primary_source(seed: &[u8], template: &Public, data: &[u8]) -> Source<'static> {
    let alg = template.name_alg;
    let name = template.name();
    let digest_data = alg.digest(&[data]);
    let material = Zeroizing::new(kdf::kdfa(
        alg,
        seed,
        b"Primary Object Creation",
        &name,
        &digest_data,
        (crate::crypto::drbg::SEED_LEN * 8) as u32,
    ));
    Source::Derived(Drbg::new(&material))
}

/// Creates the sensitive area and the public unique field of a new object from `template`
/// (Part 1, 27.7 "Object Creation"). `data` is inSensitive.data, `auth` inSensitive.userAuth.
pub fn generate(
    template: &Public,
    auth: &[u8],
    data: &[u8],
    mut source: Source<'_>,
) -> TpmResult<(Public, Sensitive)> {
    let mut public = template.clone();
    let alg = public.name_alg;
    let origin = public.has(attr::SENSITIVE_DATA_ORIGIN);
    let mut seed = Zeroizing::new(alloc::vec![0u8; alg.digest_size()]);
    let secret: Zeroizing<Vec<u8>>;
    match &public.params {
        Params::Rsa { bits, exponent, .. } => {
            if !data.is_empty() {
                return Err(TpmRc::VALUE);
            }
            let e = if *exponent == 0 {
                rsa_ops::DEFAULT_EXPONENT
            } else {
                *exponent
            };
            let key = {
                let mut rng = FillRng(|b: &mut [u8]| source.fill(b));
                rsa_ops::generate(&mut rng, *bits, e)?
            };
            public.unique = Unique::Rsa(rsa_ops::modulus(key.as_public_key()));
            secret = Zeroizing::new(rsa_ops::prime(&key));
        }
        Params::Ecc { curve, .. } => {
            if !data.is_empty() {
                return Err(TpmRc::VALUE);
            }
            let d = ecc::generate(*curve, |b| source.fill(b))?;
            public.unique = Unique::Ecc(ecc::public(*curve, &d)?);
            secret = Zeroizing::new(d);
        }
        Params::KeyedHash { scheme } => {
            if data.is_empty() {
                // Sealed data may be empty; keys are generated when the TPM is the origin.
                // A sign and/or decrypt key with a NULL scheme (tpm2-tools' `create -G
                // keyedhash` template: sign|decrypt, scheme NULL) is still a key: its size
                // follows nameAlg (reference CryptGenerateKeyedHash; Part 1, 27.7). Only a
                // data object (neither sign nor decrypt) cannot have the TPM as origin.
                let is_key = public.has(attr::SIGN) || public.has(attr::DECRYPT);
                if origin && is_key {
                    let hash = scheme.hash_alg().unwrap_or(alg);
                    let mut k = alloc::vec![0u8; hash.digest_size()];
                    source.fill(&mut k);
                    secret = Zeroizing::new(k);
                } else if origin {
                    return Err(TpmRc::ATTRIBUTES);
                } else {
                    secret = Zeroizing::new(Vec::new());
                }
            } else {
                if origin {
                    return Err(TpmRc::ATTRIBUTES);
                }
                secret = Zeroizing::new(data.to_vec());
            }
        }
        Params::SymCipher { symmetric } => {
            let len = usize::from(symmetric.bits) / 8;
            if data.is_empty() {
                if !origin {
                    return Err(TpmRc::ATTRIBUTES);
                }
                let mut k = alloc::vec![0u8; len];
                source.fill(&mut k);
                secret = Zeroizing::new(k);
            } else {
                if origin {
                    return Err(TpmRc::ATTRIBUTES);
                }
                if data.len() != len {
                    return Err(TpmRc::KEY_SIZE);
                }
                secret = Zeroizing::new(data.to_vec());
            }
        }
    }
    // seedValue: the protection seed of a storage parent, the obfuscation value of
    // KEYEDHASH/SYMCIPHER objects; ordinary asymmetric keys need none.
    let needs_seed = public.is_storage_parent()
        || matches!(
            public.params,
            Params::KeyedHash { .. } | Params::SymCipher { .. }
        );
    if needs_seed {
        source.fill(&mut seed);
    } else {
        seed = Zeroizing::new(Vec::new());
    }
    if let Params::KeyedHash { .. } | Params::SymCipher { .. } = public.params {
        public.unique = Unique::Digest(alg.digest(&[&seed, &secret]));
    }
    Ok((
        public,
        Sensitive {
            auth: AuthValue::new(auth),
            seed,
            secret,
        },
    ))
}
