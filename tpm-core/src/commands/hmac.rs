//! Part 3, 15.5 TPM2_HMAC with KEYEDHASH signing keys. (HMAC_Start needs the HMAC sequence
//! state of `state::objects`, which the hash-sequence work provides.)

use crate::auth::AuthRole;
use crate::commands::{CommandDef, HandleKind, Request, Response, auth, cc};
use crate::context::Ctx;
use crate::crypto::hash::HashAlg;
use crate::crypto::kdf;
use crate::entity;
use crate::marshal::{Reader, Writer};
use crate::object::{Object, Params, alg, attr};
use crate::rc::{TpmRc, TpmResult};

pub const COMMANDS: &[CommandDef] = &[CommandDef {
    cc: cc::HMAC,
    handles: &[auth(HandleKind::Object, AuthRole::User)],
    response_handle: false,
    run: hmac,
}];

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
