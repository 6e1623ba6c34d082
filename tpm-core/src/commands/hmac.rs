//! Part 3, 15.5 TPM2_HMAC and 17.2 TPM2_HMAC_Start with KEYEDHASH signing keys. An HMAC
//! sequence is a `SequenceKind::Hmac` slot; SequenceUpdate/SequenceComplete (`hash.rs`)
//! drive it like a hash sequence.

use crate::auth::AuthRole;
use crate::commands::{CommandDef, HandleKind, Request, Response, auth, cc};
use crate::context::Ctx;
use crate::crypto::hash::HashAlg;
use crate::crypto::kdf;
use crate::entity;
use crate::marshal::{Reader, Writer};
use crate::object::{Object, Params, alg, attr};
use crate::rc::{TpmRc, TpmResult};
use crate::state::AuthValue;
use crate::state::Slot;
use crate::state::objects::{HashSequence, HmacState, SequenceKind};

pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        cc: cc::HMAC,
        handles: &[auth(HandleKind::Object, AuthRole::User)],
        response_handle: false,
        run: hmac,
    },
    CommandDef {
        cc: cc::HMAC_START,
        handles: &[auth(HandleKind::Object, AuthRole::User)],
        response_handle: true,
        run: hmac_start,
    },
];

/// The hash of an HMAC operation with `key`: the key's scheme hash, or the requested one
/// when the key has none (TPM_RC_VALUE when they differ, as the reference does).
pub fn hmac_hash(key: &Object, requested: u16, param: u8) -> TpmResult<HashAlg> {
    let Params::KeyedHash { scheme } = key.public.params else {
        return Err(TpmRc::TYPE.handle(1));
    };
    if !key.public.has(attr::SIGN) || key.public.has(attr::RESTRICTED) {
        return Err(TpmRc::KEY.handle(1));
    }
    if scheme.alg == alg::HMAC {
        if requested != alg::NULL && requested != scheme.hash {
            return Err(TpmRc::VALUE.param(param));
        }
        HashAlg::from_alg_id(scheme.hash).ok_or(TpmRc::SCHEME.handle(1))
    } else if scheme.alg == alg::NULL {
        HashAlg::from_alg_id(requested).ok_or(TpmRc::VALUE.param(param))
    } else {
        Err(TpmRc::SCHEME.handle(1))
    }
}

/// Part 3, 15.5 TPM2_HMAC.
#[doc(alias = "TPM2_HMAC")]
fn hmac(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let key = entity::object(ctx, req.handles[0]).map_err(|rc| rc.handle(1))?;
    let mut r = Reader::params(req.params);
    let data = r.tpm2b(1024)?;
    let hash = r.u16()?;
    r.finish()?;
    let alg = hmac_hash(&key, hash, 2)?;
    let mac = kdf::hmac(alg, key.secret()?, &[data]);
    let mut w = Writer::new();
    w.tpm2b(&mac);
    Ok(Response::params(w))
}

/// Part 3, 17.2 TPM2_HMAC_Start: an HMAC sequence keyed with the object's secret; the
/// sequence has its own authValue (`auth`).
#[doc(alias = "TPM2_HMAC_Start")]
fn hmac_start(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let key = entity::object(ctx, req.handles[0]).map_err(|rc| rc.handle(1))?;
    let mut r = Reader::params(req.params);
    let auth = r.tpm2b(64)?;
    let hash = r.u16()?;
    r.finish()?;
    if !matches!(key.public.params, Params::KeyedHash { .. }) {
        return Err(TpmRc::TYPE.handle(1));
    }
    if key.public.has(attr::RESTRICTED) {
        return Err(TpmRc::ATTRIBUTES.handle(1));
    }
    let alg = hmac_hash(&key, hash, 2)?;
    let seq = HashSequence {
        auth: AuthValue::new(auth),
        kind: SequenceKind::Hmac(HmacState::new(
            alg,
            key.secret().map_err(|rc| rc.handle(1))?,
        )),
        ticket_safe: None,
    };
    let handle = ctx
        .tpm
        .vs
        .objects
        .insert(Slot::Sequence(seq))
        .ok_or(TpmRc::OBJECT_MEMORY)?;
    Ok(Response {
        handle: Some(handle),
        params: Writer::new(),
    })
}
