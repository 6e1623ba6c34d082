//! NIST P-256 and P-384 over the `p256`/`p384` crates: key generation, ECDSA on digests
//! (deterministic nonces, RFC 6979), point validation and scalar multiplication for ECDH.
//! Coordinates and scalars travel as big-endian octet strings of the curve's field size, as in
//! TPMS_ECC_POINT / TPM2B_ECC_PARAMETER.

use alloc::vec::Vec;

use zeroize::Zeroizing;

use crate::rc::{TpmRc, TpmResult};

/// TPM_ECC_CURVE values (Part 2, 6.4).
pub const NIST_P256: u16 = 0x0003;
pub const NIST_P384: u16 = 0x0004;

/// A curve this engine implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

/// A point as two field-size big-endian coordinates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Point {
    pub x: Vec<u8>,
    pub y: Vec<u8>,
}

impl Curve {
    pub fn from_id(id: u16) -> Option<Self> {
        match id {
            NIST_P256 => Some(Self::P256),
            NIST_P384 => Some(Self::P384),
            _ => None,
        }
    }

    pub fn id(self) -> u16 {
        match self {
            Self::P256 => NIST_P256,
            Self::P384 => NIST_P384,
        }
    }

    /// Field (and scalar) size in octets.
    pub fn size(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
        }
    }

    /// Key size in bits (TPMS_ALGORITHM_DETAIL_ECC.keySize).
    pub fn bits(self) -> u16 {
        (self.size() * 8) as u16
    }
}

/// Left-pads (or strips leading zeros of) `v` to exactly `len` octets; longer values that
/// are not zero-padded do not fit.
pub fn fit(v: &[u8], len: usize) -> Option<Vec<u8>> {
    let first = v.iter().position(|&b| b != 0).unwrap_or(v.len());
    let v = &v[first..];
    if v.len() > len {
        return None;
    }
    let mut out = alloc::vec![0u8; len - v.len()];
    out.extend_from_slice(v);
    Some(out)
}

macro_rules! curve_impl {
    ($m:ident, $c:ident) => {
        mod $m {
            use alloc::vec::Vec;

            use $c::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
            use $c::ecdsa::{Signature, SigningKey, VerifyingKey};
            use $c::elliptic_curve::point::AffineCoordinates;
            use $c::elliptic_curve::{Group, PrimeField};
            use $c::{AffinePoint, FieldBytes, NonZeroScalar, ProjectivePoint, Scalar};

            use super::Point;

            fn fb(v: &[u8]) -> Option<FieldBytes> {
                let v = super::fit(v, core::mem::size_of::<FieldBytes>())?;
                FieldBytes::try_from(v.as_slice()).ok()
            }

            fn scalar(d: &[u8]) -> Option<NonZeroScalar> {
                let s = Option::<Scalar>::from(Scalar::from_repr(fb(d)?))?;
                Option::from(NonZeroScalar::new(s))
            }

            fn affine(p: &Point) -> Option<AffinePoint> {
                Option::from(AffinePoint::from_coordinates(&fb(&p.x)?, &fb(&p.y)?))
            }

            fn point(a: &AffinePoint) -> Point {
                Point {
                    x: a.x().to_vec(),
                    y: a.y().to_vec(),
                }
            }

            pub fn valid_scalar(d: &[u8]) -> bool {
                scalar(d).is_some()
            }

            pub fn valid_point(p: &Point) -> bool {
                affine(p).is_some()
            }

            pub fn public(d: &[u8]) -> Option<Point> {
                let s = scalar(d)?;
                let p = (ProjectivePoint::generator() * *s).to_affine();
                Some(point(&p))
            }

            pub fn mul(d: &[u8], p: &Point) -> Option<Point> {
                let s = scalar(d)?;
                let q = affine(p)?;
                let r = (ProjectivePoint::from(q) * *s).to_affine();
                if bool::from(ProjectivePoint::from(r).is_identity()) {
                    return None;
                }
                Some(point(&r))
            }

            /// The ECDSA key for scalar `d`; building it computes d·G once.
            pub fn signing_key(d: &[u8]) -> Option<SigningKey> {
                SigningKey::from_bytes(&fb(d)?).ok()
            }

            pub fn signing_key_public(key: &SigningKey) -> Point {
                point(key.verifying_key().as_affine())
            }

            pub fn sign(key: &SigningKey, digest: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
                let sig: Signature = key.sign_prehash(digest).ok()?;
                let (r, s) = sig.split_bytes();
                Some((r.to_vec(), s.to_vec()))
            }

            /// (r + t·d) mod n: the s of an ECDAA signature (reference BnSignEcdaa); `t`, a
            /// digest, is reduced mod n by Horner's rule in the scalar field.
            pub fn ecdaa_s(r: &[u8], t: &[u8], d: &[u8]) -> Option<Vec<u8>> {
                let r = scalar(r)?;
                let d = scalar(d)?;
                let base = Scalar::from(256u64);
                let t = t
                    .iter()
                    .fold(Scalar::ZERO, |acc, &b| acc * base + Scalar::from(u64::from(b)));
                Some((*r + t * *d).to_repr().to_vec())
            }

            pub fn verify(p: &Point, digest: &[u8], r: &[u8], s: &[u8]) -> bool {
                let Some(q) = affine(p) else { return false };
                let Ok(key) = VerifyingKey::from_affine(q) else {
                    return false;
                };
                let (Some(r), Some(s)) = (fb(r), fb(s)) else {
                    return false;
                };
                let Ok(sig) = Signature::from_scalars(r, s) else {
                    return false;
                };
                key.verify_prehash(digest, &sig).is_ok()
            }
        }
    };
}

curve_impl!(p256_impl, p256);
curve_impl!(p384_impl, p384);

macro_rules! dispatch {
    ($curve:expr, $f:ident($($a:expr),*)) => {
        match $curve {
            Curve::P256 => p256_impl::$f($($a),*),
            Curve::P384 => p384_impl::$f($($a),*),
        }
    };
}

/// True when `d` is a valid private scalar (1 ≤ d < n).
pub fn valid_scalar(curve: Curve, d: &[u8]) -> bool {
    dispatch!(curve, valid_scalar(d))
}

/// True when `p` is a point on the curve (TPM_RC_ECC_POINT otherwise).
pub fn valid_point(curve: Curve, p: &Point) -> bool {
    dispatch!(curve, valid_point(p))
}

/// The public point d·G.
pub fn public(curve: Curve, d: &[u8]) -> TpmResult<Point> {
    dispatch!(curve, public(d)).ok_or(TpmRc::KEY)
}

/// d·P (ECDH), refusing points off the curve and the point at infinity.
pub fn mul(curve: Curve, d: &[u8], p: &Point) -> TpmResult<Point> {
    dispatch!(curve, mul(d, p)).ok_or(TpmRc::ECC_POINT)
}

/// Generates a private scalar from `fill` (candidates outside [1, n) are drawn again).
pub fn generate(curve: Curve, mut fill: impl FnMut(&mut [u8])) -> TpmResult<Vec<u8>> {
    for _ in 0..64 {
        let mut d = alloc::vec![0u8; curve.size()];
        fill(&mut d);
        if valid_scalar(curve, &d) {
            return Ok(d);
        }
    }
    Err(TpmRc::NO_RESULT)
}

/// A private key ready for use, built once when its object is loaded: the scalar's octets
/// (field-size, big-endian: for ECDH and the sensitive area) and the ECDSA signing key, so a
/// signature costs one fixed-base scalar multiplication and not a second one to rebuild the
/// public key from the scalar. Both are zeroized on drop (`SigningKey` zeroizes its scalar).
#[derive(Clone)]
pub struct PrivateKey {
    d: Zeroizing<Vec<u8>>,
    signer: Signer,
}

#[derive(Clone)]
enum Signer {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
}

impl PrivateKey {
    /// The key for scalar `d` (left-padded or stripped to the field size): TPM_RC_KEY_SIZE
    /// when it is longer than the field, TPM_RC_KEY when it is not in [1, n).
    pub fn new(curve: Curve, d: &[u8]) -> TpmResult<Self> {
        let d = Zeroizing::new(fit(d, curve.size()).ok_or(TpmRc::KEY_SIZE)?);
        let signer = match curve {
            Curve::P256 => p256_impl::signing_key(&d).map(Signer::P256),
            Curve::P384 => p384_impl::signing_key(&d).map(Signer::P384),
        }
        .ok_or(TpmRc::KEY)?;
        Ok(Self { d, signer })
    }

    pub fn curve(&self) -> Curve {
        match self.signer {
            Signer::P256(_) => Curve::P256,
            Signer::P384(_) => Curve::P384,
        }
    }

    /// The public point d·G (computed when the key was built).
    pub fn public(&self) -> Point {
        match &self.signer {
            Signer::P256(k) => p256_impl::signing_key_public(k),
            Signer::P384(k) => p384_impl::signing_key_public(k),
        }
    }

    /// ECDSA over `digest` (truncated to the order size as FIPS 186 prescribes; nonce per
    /// RFC 6979): (r, s).
    pub fn sign(&self, digest: &[u8]) -> TpmResult<(Vec<u8>, Vec<u8>)> {
        match &self.signer {
            Signer::P256(k) => p256_impl::sign(k, digest),
            Signer::P384(k) => p384_impl::sign(k, digest),
        }
        .ok_or(TpmRc::SCHEME)
    }
}

/// The scalar's octets, so ECDH and sensitive-area code take the key where they took `d`.
impl core::ops::Deref for PrivateKey {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.d
    }
}

impl core::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PrivateKey {{ curve: {:?}, .. }}", self.curve())
    }
}

/// Verifies an ECDSA signature.
pub fn verify(curve: Curve, p: &Point, digest: &[u8], r: &[u8], s: &[u8]) -> bool {
    dispatch!(curve, verify(p, digest, r, s))
}

/// TPMS_ALGORITHM_DETAIL_ECC constants (SP 800-186): p, a, b, Gx, Gy, n, h.
pub struct CurveParams {
    pub p: &'static str,
    pub a: &'static str,
    pub b: &'static str,
    pub gx: &'static str,
    pub gy: &'static str,
    pub n: &'static str,
    pub h: &'static str,
}

pub fn params(curve: Curve) -> CurveParams {
    match curve {
        Curve::P256 => CurveParams {
            p: "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff",
            a: "ffffffff00000001000000000000000000000000fffffffffffffffffffffffc",
            b: "5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b",
            gx: "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
            gy: "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5",
            n: "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551",
            h: "01",
        },
        Curve::P384 => CurveParams {
            p: "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff",
            a: "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000fffffffc",
            b: "b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef",
            gx: "aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7",
            gy: "3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f",
            n: "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
            h: "01",
        },
    }
}

/// Decodes the hex constants above.
pub fn unhex(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let nib = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => 0,
    };
    b.chunks(2)
        .map(|p| (nib(p[0]) << 4) | p.get(1).map_or(0, |&c| nib(c)))
        .collect()
}

/// (r + t·d) mod n, the s of an ECDAA signature; `None` when r or d is not a valid scalar.
pub fn ecdaa_s(curve: Curve, r: &[u8], t: &[u8], d: &[u8]) -> Option<Vec<u8>> {
    dispatch!(curve, ecdaa_s(r, t, d))
}

/// `v` (at most 64 octets) mod the field prime of `curve`, as `curve.size()` octets: the
/// x-coordinate TPM2_Commit derives from a hash (Part 3, 19.2), with crypto-bigint's division.
pub fn mod_p(curve: Curve, v: &[u8]) -> Option<Vec<u8>> {
    use p256::elliptic_curve::bigint::{NonZero, U512};
    const LEN: usize = 64;
    let wide = |bytes: &[u8]| -> Option<U512> {
        let mut buf = [0u8; LEN];
        buf.get_mut(LEN.checked_sub(bytes.len())?..)?
            .copy_from_slice(bytes);
        Some(U512::from_be_slice(&buf))
    };
    let p = Option::<NonZero<U512>>::from(NonZero::new(wide(&unhex(params(curve).p))?))?;
    let rem = wide(v)?.rem(&p).to_be_bytes();
    let bytes: &[u8] = rem.as_ref();
    bytes
        .get(LEN.checked_sub(curve.size())?..)
        .map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_ecdh() {
        for curve in [Curve::P256, Curve::P384] {
            let mut n = 1u8;
            let a = generate(curve, |b| {
                b.fill(n);
                n += 1;
            })
            .unwrap();
            let b = generate(curve, |x| x.fill(0x42)).unwrap();
            let qa = public(curve, &a).unwrap();
            let qb = public(curve, &b).unwrap();
            assert_eq!(mul(curve, &a, &qb).unwrap(), mul(curve, &b, &qa).unwrap());
            let digest = crate::crypto::hash::HashAlg::Sha256.digest(&[b"m"]);
            let key = PrivateKey::new(curve, &a).unwrap();
            assert_eq!(key.public(), qa);
            assert_eq!(&*key, &a[..]);
            let (r, s) = key.sign(&digest).unwrap();
            assert!(verify(curve, &qa, &digest, &r, &s));
            // RFC 6979: the same key and digest give the same signature.
            assert_eq!(key.clone().sign(&digest).unwrap(), (r.clone(), s.clone()));
            assert!(!verify(curve, &qb, &digest, &r, &s));
            let gx = unhex(params(curve).gx);
            assert_eq!(public(curve, &[1]).unwrap().x, gx);
        }
    }

    #[test]
    fn mod_p_reduces_into_the_field() {
        for curve in [Curve::P256, Curve::P384] {
            let p = unhex(params(curve).p);
            // p itself is 0, p - 1 stays, a 64-octet value is reduced too.
            let zero = alloc::vec![0u8; curve.size()];
            assert_eq!(mod_p(curve, &p).unwrap(), zero);
            let mut p_minus_1 = p.clone();
            if let Some(last) = p_minus_1.last_mut() {
                *last -= 1; // both primes end in 0xff
            }
            assert_eq!(mod_p(curve, &p_minus_1).unwrap(), p_minus_1);
            assert_eq!(mod_p(curve, &[0xff; 64]).unwrap().len(), curve.size());
            assert!(mod_p(curve, &[1; 65]).is_none());
        }
    }
}
