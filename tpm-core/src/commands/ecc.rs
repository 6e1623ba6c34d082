//! Part 3, 14.4-14.8 and 19.2-19.3 ECC primitives: ECDH_KeyGen, ECDH_ZGen, ECC_Parameters,
//! ZGen_2Phase, Commit and EC_Ephemeral.

use alloc::vec::Vec;

use crate::auth::AuthRole;
use crate::commands::{CommandDef, HandleKind, Request, Response, auth, cc, plain};
use crate::context::Ctx;
use crate::crypto::ecc::{self, Curve, Point};
use crate::crypto::hash::HashAlg;
use crate::crypto::kdf;
use crate::entity;
use crate::marshal::{Reader, Writer};
use crate::object::public::Cursor;
use crate::object::{Key, alg, attr};
use crate::rc::{TpmRc, TpmResult};

pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        cc: cc::ECDH_KEY_GEN,
        handles: &[plain(HandleKind::Object)],
        response_handle: false,
        run: ecdh_key_gen,
    },
    CommandDef {
        cc: cc::ECDH_ZGEN,
        handles: &[auth(HandleKind::Object, AuthRole::User)],
        response_handle: false,
        run: ecdh_zgen,
    },
    CommandDef {
        cc: cc::ECC_PARAMETERS,
        handles: &[],
        response_handle: false,
        run: ecc_parameters,
    },
    CommandDef {
        cc: cc::ZGEN_2PHASE,
        handles: &[auth(HandleKind::Object, AuthRole::User)],
        response_handle: false,
        run: zgen_2phase,
    },
    CommandDef {
        cc: cc::COMMIT,
        handles: &[auth(HandleKind::Object, AuthRole::User)],
        response_handle: false,
        run: commit,
    },
    CommandDef {
        cc: cc::EC_EPHEMERAL,
        handles: &[],
        response_handle: false,
        run: ec_ephemeral,
    },
];

/// Outstanding commitments of EC_Ephemeral (reference gr.commitNonce, gr.commitCounter and
/// gr.commitArray): the ephemeral scalar of count c is derived from the nonce and c, so it
/// need not be stored, and each count can be used once.
#[derive(Clone, Default)]
pub struct Commits {
    pub nonce: zeroize::Zeroizing<Vec<u8>>,
    pub counter: u64,
    /// Bit (count & COMMIT_INDEX_MASK) is set while that commitment is unused.
    pub outstanding: u128,
}

impl core::fmt::Debug for Commits {
    // The nonce determines every ephemeral private key: never printed.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Commits")
            .field("counter", &self.counter)
            .field("outstanding", &self.outstanding)
            .finish_non_exhaustive()
    }
}

/// The commit array has 128 entries (libtpms: 16 octets).
const COMMIT_INDEX_MASK: u16 = 127;

impl Commits {
    /// CryptCommit: records the current count as outstanding and moves on; returns it.
    fn commit(&mut self) -> u16 {
        let old = self.counter as u16;
        self.counter = self.counter.wrapping_add(1);
        self.outstanding |= 1u128 << (old & COMMIT_INDEX_MASK);
        old
    }

    /// The full count an outstanding 16-bit `c` stands for (reference CryptGenerateR): the
    /// counter's upper bits, one window back when `c` is from before the last wrap of the
    /// index. `None` when `c` is not outstanding or out of range.
    pub fn count_of(&self, c: u16) -> Option<u64> {
        if self.outstanding & (1u128 << (c & COMMIT_INDEX_MASK)) == 0 {
            return None;
        }
        let mut current = self.counter;
        if c & COMMIT_INDEX_MASK >= (current as u16) & COMMIT_INDEX_MASK {
            current = current.wrapping_sub(u64::from(COMMIT_INDEX_MASK) + 1);
        }
        if (current as u16) & !COMMIT_INDEX_MASK != c & !COMMIT_INDEX_MASK {
            return None;
        }
        Some((current & !0xFFFF) | u64::from(c))
    }

    /// CryptEndCommit: `c` can no longer be used.
    pub fn end(&mut self, c: u16) {
        self.outstanding &= !(1u128 << (c & COMMIT_INDEX_MASK));
    }

    /// The ephemeral scalar r of `count` on `curve` for the key named `name` (empty for
    /// EC_Ephemeral): KDFa(SHA-256, nonce, "ECDAA Commit", name, count || attempt) until it
    /// lies in [1, n) (reference CryptGenerateR).
    pub fn scalar(&self, curve: Curve, count: u64, name: &[u8]) -> TpmResult<Vec<u8>> {
        for attempt in 0u32..64 {
            let mut context = [0u8; 12];
            context[..8].copy_from_slice(&count.to_be_bytes());
            context[8..].copy_from_slice(&attempt.to_be_bytes());
            let r = kdf::kdfa(
                HashAlg::Sha256,
                &self.nonce,
                b"ECDAA Commit",
                name,
                &context,
                u32::from(curve.bits()),
            );
            if ecc::valid_scalar(curve, &r) {
                return Ok(r);
            }
        }
        Err(TpmRc::NO_RESULT)
    }
}

/// Reads a TPM2B_ECC_POINT parameter as a point of `curve` (TPM_RC_ECC_POINT when it is not
/// on the curve).
fn read_point(r: &mut Reader<'_>) -> TpmResult<(Vec<u8>, Vec<u8>)> {
    let inner = r.tpm2b(2 * 68)?;
    if inner.is_empty() {
        // An empty TPM2B_ECC_POINT: no point (Commit's optional P1).
        return Ok((Vec::new(), Vec::new()));
    }
    let mut c = Cursor::new(inner);
    let xy = (|| Ok::<_, TpmRc>((c.tpm2b(66)?.to_vec(), c.tpm2b(66)?.to_vec())))();
    let xy = xy.map_err(|rc| r.err(rc))?;
    if !c.is_empty() {
        return Err(r.err(TpmRc::SIZE));
    }
    Ok(xy)
}

/// Part 3, 19.3 TPM2_EC_Ephemeral: Q = r·G for a fresh commitment; r is recomputed by
/// ZGen_2Phase from the returned counter.
#[doc(alias = "TPM2_EC_Ephemeral")]
fn ec_ephemeral(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let id = r.u16()?;
    let curve = Curve::from_id(id).ok_or_else(|| r.err(TpmRc::CURVE))?;
    r.finish()?;
    let commits = &mut ctx.tpm.vs.commit;
    let scalar = commits.scalar(curve, commits.counter, &[])?;
    let q = ecc::public(curve, &scalar)?;
    let counter = commits.commit();
    let mut w = Writer::new();
    write_point(&mut w, &q);
    w.u16(counter);
    Ok(Response::params(w))
}

/// Part 3, 14.7 TPM2_ZGen_2Phase, the TPM's half of a two-phase key exchange with keyA (a
/// static key, unrestricted, decrypt) and the ephemeral key of EC_Ephemeral's `counter`.
/// TPM_ALG_ECDH (C(2e, 2s), SP 800-56A): outZ1 = dsA·QsB, outZ2 = deA·QeB. ECMQV and SM2 are
/// not implemented (TPM_RC_SCHEME + P3, as an unimplemented TPMI_ECC_KEY_EXCHANGE).
#[doc(alias = "TPM2_ZGen_2Phase")]
fn zgen_2phase(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let key = entity::object(ctx, req.handles[0]).map_err(|rc| rc.handle(1))?;
    let mut r = Reader::params(req.params);
    let (qs_x, qs_y) = read_point(&mut r)?;
    let (qe_x, qe_y) = read_point(&mut r)?;
    let in_scheme = r.u16()?;
    if in_scheme != alg::ECDH {
        return Err(r.err(TpmRc::SCHEME));
    }
    let counter = r.u16()?;
    r.finish()?;
    let Key::Ecc {
        curve, d: Some(d), ..
    } = &key.key
    else {
        return Err(TpmRc::KEY.handle(1));
    };
    if key.public.has(attr::RESTRICTED) || !key.public.has(attr::DECRYPT) {
        return Err(TpmRc::ATTRIBUTES.handle(1));
    }
    let s = key.public.scheme();
    if !(s.is_null() || s.alg == in_scheme) {
        return Err(TpmRc::SCHEME.param(3));
    }
    let size = curve.size();
    let point = |x: &[u8], y: &[u8], n: u8| -> TpmResult<Point> {
        let p = Point {
            x: ecc::fit(x, size).ok_or(TpmRc::ECC_POINT.param(n))?,
            y: ecc::fit(y, size).ok_or(TpmRc::ECC_POINT.param(n))?,
        };
        if !ecc::valid_point(*curve, &p) {
            return Err(TpmRc::ECC_POINT.param(n));
        }
        Ok(p)
    };
    let qs = point(&qs_x, &qs_y, 1)?;
    let qe = point(&qe_x, &qe_y, 2)?;
    let commits = &ctx.tpm.vs.commit;
    let count = commits.count_of(counter).ok_or(TpmRc::VALUE.param(4))?;
    let de = commits.scalar(*curve, count, &[])?;
    let z1 = ecc::mul(*curve, d, &qs).map_err(|rc| rc.param(1))?;
    let z2 = ecc::mul(*curve, &de, &qe).map_err(|rc| rc.param(2))?;
    ctx.tpm.vs.commit.end(counter);
    let mut w = Writer::new();
    write_point(&mut w, &z1);
    write_point(&mut w, &z2);
    Ok(Response::params(w))
}

/// Writes TPM2B_ECC_POINT.
fn write_point(w: &mut Writer, p: &Point) {
    let mut inner = Writer::new();
    inner.tpm2b(&p.x).tpm2b(&p.y);
    w.tpm2b(inner.as_slice());
}

/// Part 3, 14.4 TPM2_ECDH_KeyGen: an ephemeral key pair and its shared point with the key.
#[doc(alias = "TPM2_ECDH_KeyGen")]
fn ecdh_key_gen(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    Reader::params(req.params).finish()?;
    let key = entity::object(ctx, req.handles[0]).map_err(|rc| rc.handle(1))?;
    let Key::Ecc { curve, q, .. } = &key.key else {
        return Err(TpmRc::KEY.handle(1));
    };
    let d = ecc::generate(*curve, |b| ctx.random(b))?;
    let z = ecc::mul(*curve, &d, q)?;
    let public = ecc::public(*curve, &d)?;
    let mut w = Writer::new();
    write_point(&mut w, &z);
    write_point(&mut w, &public);
    Ok(Response::params(w))
}

/// Part 3, 14.5 TPM2_ECDH_ZGen: d·inPoint with the key's private scalar.
#[doc(alias = "TPM2_ECDH_ZGen")]
fn ecdh_zgen(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let key = entity::object(ctx, req.handles[0]).map_err(|rc| rc.handle(1))?;
    let mut r = Reader::params(req.params);
    let inner = r.tpm2b(2 * 68)?;
    let mut c = Cursor::new(inner);
    let (x, y) = (|| Ok::<_, TpmRc>((c.tpm2b(66)?.to_vec(), c.tpm2b(66)?.to_vec())))()
        .map_err(|rc| r.err(rc))?;
    r.finish()?;
    let Key::Ecc {
        curve, d: Some(d), ..
    } = &key.key
    else {
        return Err(TpmRc::KEY.handle(1));
    };
    if !key.public.has(attr::DECRYPT) || key.public.has(attr::RESTRICTED) {
        return Err(TpmRc::ATTRIBUTES.handle(1));
    }
    let s = key.public.scheme();
    if !(s.is_null() || s.alg == alg::ECDH) {
        return Err(TpmRc::SCHEME.handle(1));
    }
    let size = curve.size();
    let p = Point {
        x: ecc::fit(&x, size).ok_or(TpmRc::ECC_POINT.param(1))?,
        y: ecc::fit(&y, size).ok_or(TpmRc::ECC_POINT.param(1))?,
    };
    let out = ecc::mul(*curve, d, &p).map_err(|rc| rc.param(1))?;
    let mut w = Writer::new();
    write_point(&mut w, &out);
    Ok(Response::params(w))
}

/// Part 3, 14.7 TPM2_ECC_Parameters: TPMS_ALGORITHM_DETAIL_ECC.
#[doc(alias = "TPM2_ECC_Parameters")]
fn ecc_parameters(_ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let id = r.u16()?;
    r.finish()?;
    let curve = Curve::from_id(id).ok_or(TpmRc::VALUE.param(1))?;
    let p = ecc::params(curve);
    let mut w = Writer::new();
    w.u16(curve.id()).u16(curve.bits());
    w.u16(alg::NULL).u16(alg::NULL);
    for v in [p.p, p.a, p.b, p.gx, p.gy, p.n, p.h] {
        w.tpm2b(&ecc::unhex(v));
    }
    Ok(Response::params(w))
}

/// Part 3, 19.2 TPM2_Commit: the first phase of an ECDAA signature with an anonymous
/// signing key. With P2 = (H_nameAlg(s2) mod p, y2): K = [ds]P2 and L = [r]P2; E = [r]P1, or
/// [r]G when neither P1 nor P2 is given (reference CryptEccCommitCompute). r is the commit's
/// scalar for the key's Name, recomputed by the ECDAA Sign that names the returned counter.
#[doc(alias = "TPM2_Commit")]
fn commit(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let key = entity::object(ctx, req.handles[0]).map_err(|rc| rc.handle(1))?;
    let mut r = Reader::params(req.params);
    let (p1_x, p1_y) = read_point(&mut r)?;
    let s2 = r.tpm2b(MAX_SENSITIVE_DATA)?;
    let y2 = r.tpm2b(66)?;
    r.finish()?;
    let Key::Ecc { curve, d, .. } = &key.key else {
        return Err(TpmRc::KEY.handle(1));
    };
    let curve = *curve;
    if key.public.scheme().alg != alg::ECDAA {
        return Err(TpmRc::SCHEME.handle(1));
    }
    if s2.is_empty() != y2.is_empty() {
        return Err(TpmRc::SIZE.param(3));
    }
    let size = curve.size();
    let on_curve = |x: &[u8], y: &[u8]| -> Option<Point> {
        let p = Point {
            x: ecc::fit(x, size)?,
            y: ecc::fit(y, size)?,
        };
        ecc::valid_point(curve, &p).then_some(p)
    };
    let p2 = if s2.is_empty() {
        None
    } else {
        let digest = key.name_alg().digest(&[s2]);
        let x2 = ecc::mod_p(curve, &digest).ok_or(TpmRc::NO_RESULT)?;
        let p2 = on_curve(&x2, y2).ok_or(TpmRc::ECC_POINT.param(2))?;
        Some(p2)
    };
    let Some(d) = d else {
        return Err(TpmRc::KEY.handle(1));
    };
    let p1 = if p1_x.is_empty() && p1_y.is_empty() {
        None
    } else {
        Some(on_curve(&p1_x, &p1_y).ok_or(TpmRc::ECC_POINT.param(1))?)
    };
    let commits = &ctx.tpm.vs.commit;
    let scalar = commits.scalar(curve, commits.counter, &key.name)?;
    let empty = Point {
        x: Vec::new(),
        y: Vec::new(),
    };
    let (k, l) = match &p2 {
        Some(p2) => (
            ecc::mul(curve, d, p2).map_err(|_| TpmRc::NO_RESULT)?,
            ecc::mul(curve, &scalar, p2).map_err(|_| TpmRc::NO_RESULT)?,
        ),
        None => (empty.clone(), empty.clone()),
    };
    let e = match (&p1, &p2) {
        (Some(p1), _) => ecc::mul(curve, &scalar, p1).map_err(|_| TpmRc::NO_RESULT)?,
        (None, None) => ecc::public(curve, &scalar)?,
        (None, Some(_)) => empty,
    };
    let counter = ctx.tpm.vs.commit.commit();
    let mut w = Writer::new();
    write_point(&mut w, &k);
    write_point(&mut w, &l);
    write_point(&mut w, &e);
    w.u16(counter);
    Ok(Response::params(w))
}

/// TPM2B_SENSITIVE_DATA capacity (MAX_SYM_DATA).
const MAX_SENSITIVE_DATA: usize = 256;
