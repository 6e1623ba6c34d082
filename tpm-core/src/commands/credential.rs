//! Part 3, 12.5-12.6: ActivateCredential and MakeCredential (Part 1, 24 "Credential
//! Protection").
//!
//! A credential is protected like a duplication blob: a seed is encrypted to a restricted
//! decryption key (the EK) with the label "IDENTITY", and the credential, as a TPM2B_DIGEST,
//! is outer-wrapped with keys derived from that seed and the Name of the object it is bound
//! to (the AK). Only the TPM holding both keys can recover it.

use alloc::vec::Vec;

use crate::auth::AuthRole;
use crate::commands::{CommandDef, HandleKind, Request, Response, auth, cc, plain};
use crate::context::Ctx;
use crate::entity;
use crate::marshal::{Reader, Writer};
use crate::object::public::Cursor;
use crate::object::{Object, Params, attr, protect};
use crate::rc::{TpmRc, TpmResult};

pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        cc: cc::ACTIVATE_CREDENTIAL,
        handles: &[
            auth(HandleKind::Object, AuthRole::Admin),
            auth(HandleKind::Object, AuthRole::User),
        ],
        response_handle: false,
        run: activate_credential,
    },
    CommandDef {
        cc: cc::MAKE_CREDENTIAL,
        handles: &[plain(HandleKind::Object)],
        response_handle: false,
        run: make_credential,
    },
];

/// The label of credential seeds (Part 1, 24.4), with its terminating zero as the reference
/// passes it to OAEP.
pub const IDENTITY: &[u8] = b"IDENTITY\0";

/// An asymmetric restricted decryption key (the only kind that protects credentials).
fn is_credential_key(key: &Object) -> bool {
    matches!(key.public.params, Params::Rsa { .. } | Params::Ecc { .. })
        && key.public.has(attr::DECRYPT)
        && key.public.has(attr::RESTRICTED)
}

/// Part 3, 12.6 TPM2_MakeCredential: may be done by any TPM (or software) holding the public
/// part of the EK.
#[doc(alias = "TPM2_MakeCredential")]
fn make_credential(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let key = entity::object(ctx, req.handles[0]).map_err(|rc| rc.handle(1))?;
    let mut r = Reader::params(req.params);
    let credential = r.tpm2b(64)?.to_vec();
    let object_name = r.tpm2b(2 + 64)?.to_vec();
    r.finish()?;
    if !is_credential_key(&key) {
        return Err(TpmRc::TYPE.handle(1));
    }
    if credential.len() > key.name_alg().digest_size() {
        return Err(TpmRc::SIZE.param(1));
    }
    let mut fill = |b: &mut [u8]| ctx.random(b);
    let (seed, secret) = protect::make_secret(&mut fill, &key, IDENTITY)?;
    let mut plain = Writer::new();
    plain.tpm2b(&credential);
    let blob = protect::outer_wrap(
        key.name_alg(),
        key.public.symmetric(),
        &seed,
        &object_name,
        plain.as_slice(),
    )?;
    let mut w = Writer::new();
    w.tpm2b(&blob).tpm2b(&secret);
    Ok(Response::params(w))
}

/// Part 3, 12.5 TPM2_ActivateCredential.
#[doc(alias = "TPM2_ActivateCredential")]
fn activate_credential(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let activate = entity::object(ctx, req.handles[0]).map_err(|rc| rc.handle(1))?;
    let key = entity::object(ctx, req.handles[1]).map_err(|rc| rc.handle(2))?;
    let mut r = Reader::params(req.params);
    let blob = r.tpm2b(4096)?.to_vec();
    let secret = r.tpm2b(4096)?.to_vec();
    r.finish()?;
    if !is_credential_key(&key) || !key.has_private() {
        return Err(TpmRc::TYPE.handle(2));
    }
    let mut fill = |b: &mut [u8]| ctx.random(b);
    let seed = protect::recover_secret(&mut fill, &key, IDENTITY, &secret).map_err(|rc| {
        // Reference CryptSecretDecrypt: a bad RSA ciphertext is TPM_RC_VALUE, a bad ECC point
        // TPM_RC_ECC_POINT, both on the secret parameter.
        if rc == TpmRc::KEY {
            TpmRc::FAILURE
        } else {
            rc.param(2)
        }
    })?;
    let plain = protect::outer_unwrap(
        key.name_alg(),
        key.public.symmetric(),
        &seed,
        &activate.name,
        &blob,
    )
    .map_err(|rc| rc.param(1))?;
    let mut c = Cursor::new(&plain);
    let cred: Vec<u8> = c
        .tpm2b(key.name_alg().digest_size())
        .map_err(|_| TpmRc::SIZE.param(1))?
        .to_vec();
    if !c.is_empty() {
        return Err(TpmRc::SIZE.param(1));
    }
    let mut w = Writer::new();
    w.tpm2b(&cred);
    Ok(Response::params(w))
}
