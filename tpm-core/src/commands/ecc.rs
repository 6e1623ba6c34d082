//! Part 3, 14.4-14.7 ECC primitives: ECDH_KeyGen, ECDH_ZGen and ECC_Parameters.

use crate::auth::AuthRole;
use crate::commands::{CommandDef, HandleKind, Request, Response, auth, cc, plain};
use crate::context::Ctx;
use crate::crypto::ecc::{self, Curve, Point};
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
];

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
