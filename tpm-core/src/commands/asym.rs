//! Part 3, 14 "Asymmetric Primitives" (RSA): RSA_Encrypt and RSA_Decrypt with RSAES-OAEP,
//! RSAES-PKCS1-v1_5 or raw RSA (TPM_ALG_NULL).

use crate::auth::AuthRole;
use crate::commands::{CommandDef, HandleKind, Request, Response, auth, cc, plain};
use crate::context::Ctx;
use crate::crypto::rng::FillRng;
use crate::crypto::rsa_ops::{self, Padding};
use crate::entity;
use crate::marshal::{Reader, Writer};
use crate::object::public::{Cursor, Scheme};
use crate::object::{Key, Object, alg, attr};
use crate::rc::{TpmRc, TpmResult};

pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        cc: cc::RSA_ENCRYPT,
        handles: &[plain(HandleKind::Object)],
        response_handle: false,
        run: rsa_encrypt,
    },
    CommandDef {
        cc: cc::RSA_DECRYPT,
        handles: &[auth(HandleKind::Object, AuthRole::User)],
        response_handle: false,
        run: rsa_decrypt,
    },
];

/// The padding for a decryption key and a requested TPMT_RSA_DECRYPT (key scheme wins; a
/// conflicting request is TPM_RC_SCHEME).
fn padding(key: &Object, requested: Scheme) -> TpmResult<Padding> {
    if !matches!(key.key, Key::RsaPrivate(_) | Key::RsaPublic(_)) {
        return Err(TpmRc::KEY.handle(1));
    }
    if !key.public.has(attr::DECRYPT) || key.public.has(attr::RESTRICTED) {
        return Err(TpmRc::ATTRIBUTES.handle(1));
    }
    let own = key.public.scheme();
    let s = if own.is_null() {
        requested
    } else if requested.is_null() || requested == own {
        own
    } else {
        return Err(TpmRc::SCHEME.param(2));
    };
    Ok(match s.alg {
        alg::NULL => Padding::Raw,
        alg::RSAES => Padding::Pkcs1,
        alg::OAEP => Padding::Oaep(s.hash_alg().ok_or(TpmRc::HASH.param(2))?),
        _ => return Err(TpmRc::SCHEME.param(2)),
    })
}

fn read_request<'a>(r: &mut Reader<'a>) -> TpmResult<(&'a [u8], Scheme, &'a [u8])> {
    let data = r.tpm2b(512)?;
    r.begin();
    let mut c = Cursor::new(r.remaining());
    let scheme = Scheme::parse(&mut c, &[alg::RSAES, alg::OAEP]).map_err(|rc| r.err(rc))?;
    let used = r.remaining().len() - c.buf.len();
    r.raw_bytes(used)?;
    let label = r.tpm2b(64)?;
    r.finish()?;
    Ok((data, scheme, label))
}

/// Part 3, 14.2 TPM2_RSA_Encrypt.
#[doc(alias = "TPM2_RSA_Encrypt")]
fn rsa_encrypt(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let key = entity::object(ctx, req.handles[0]).map_err(|rc| rc.handle(1))?;
    let mut r = Reader::params(req.params);
    let (msg, scheme, label) = read_request(&mut r)?;
    let padding = padding(&key, scheme)?;
    let public = match &key.key {
        Key::RsaPrivate(k) => k.as_public_key().clone(),
        Key::RsaPublic(k) => k.clone(),
        _ => return Err(TpmRc::KEY.handle(1)),
    };
    let mut fill = |b: &mut [u8]| ctx.random(b);
    let mut rng = FillRng(&mut fill);
    let out = rsa_ops::encrypt(&mut rng, &public, padding, label, msg).map_err(|rc| rc.param(1))?;
    let mut w = Writer::new();
    w.tpm2b(&out);
    Ok(Response::params(w))
}

/// Part 3, 14.3 TPM2_RSA_Decrypt.
#[doc(alias = "TPM2_RSA_Decrypt")]
fn rsa_decrypt(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let key = entity::object(ctx, req.handles[0]).map_err(|rc| rc.handle(1))?;
    let mut r = Reader::params(req.params);
    let (ct, scheme, label) = read_request(&mut r)?;
    let padding = padding(&key, scheme)?;
    let Key::RsaPrivate(k) = &key.key else {
        return Err(TpmRc::KEY.handle(1));
    };
    let mut fill = |b: &mut [u8]| ctx.random(b);
    let mut rng = FillRng(&mut fill);
    let out = rsa_ops::decrypt(&mut rng, k, padding, label, ct).map_err(|rc| rc.param(1))?;
    let mut w = Writer::new();
    w.tpm2b(&out);
    Ok(Response::params(w))
}
