//! Part 3, 15 "Symmetric Primitives": EncryptDecrypt and EncryptDecrypt2 with AES keys in
//! CFB, CBC, CTR, OFB and ECB. HMAC is in `hmac.rs`.

use crate::auth::AuthRole;
use crate::commands::{CommandDef, HandleKind, Request, Response, auth, cc};
use crate::context::Ctx;
use crate::crypto::sym;
use crate::entity;
use crate::marshal::{Reader, Writer};
use crate::object::{Params, alg, attr};
use crate::rc::{TpmRc, TpmResult};

pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        cc: cc::ENCRYPT_DECRYPT,
        handles: &[auth(HandleKind::Object, AuthRole::User)],
        response_handle: false,
        run: encrypt_decrypt,
    },
    CommandDef {
        cc: cc::ENCRYPT_DECRYPT2,
        handles: &[auth(HandleKind::Object, AuthRole::User)],
        response_handle: false,
        run: encrypt_decrypt2,
    },
];

/// TPM2B_MAX_BUFFER capacity (MAX_DIGEST_BUFFER).
const MAX_BUFFER: usize = 1024;

/// The operation common to both commands; `p` numbers the parameters (decrypt, mode, ivIn,
/// inData) as each command orders them.
fn run(
    ctx: &mut Ctx<'_>,
    req: &Request<'_>,
    decrypt: bool,
    mode: u16,
    iv_in: &[u8],
    data: &[u8],
    p: [u8; 4],
) -> TpmResult<Response> {
    let key = entity::object(ctx, req.handles[0]).map_err(|rc| rc.handle(1))?;
    let Params::SymCipher { symmetric } = key.public.params else {
        return Err(TpmRc::KEY.handle(1));
    };
    if key.public.has(attr::RESTRICTED) {
        return Err(TpmRc::ATTRIBUTES.handle(1));
    }
    // decrypt needs the decrypt attribute; encrypt needs sign (Part 2, 8.3.3.1.7).
    let needed = if decrypt { attr::DECRYPT } else { attr::SIGN };
    if !key.public.has(needed) {
        return Err(TpmRc::ATTRIBUTES.handle(1));
    }
    let mode = if symmetric.mode != alg::NULL {
        if mode != alg::NULL && mode != symmetric.mode {
            return Err(TpmRc::MODE.param(p[1]));
        }
        symmetric.mode
    } else if mode == alg::NULL {
        return Err(TpmRc::MODE.param(p[1]));
    } else {
        mode
    };
    if !sym::mode_ok(mode) {
        return Err(TpmRc::MODE.param(p[1]));
    }
    let mut iv = [0u8; sym::BLOCK];
    if mode == sym::mode::ECB {
        if !iv_in.is_empty() && iv_in.len() != sym::BLOCK {
            return Err(TpmRc::SIZE.param(p[2]));
        }
    } else if iv_in.len() != sym::BLOCK {
        return Err(TpmRc::SIZE.param(p[2]));
    } else {
        iv.copy_from_slice(iv_in);
    }
    let mut out = data.to_vec();
    sym::aes(mode, key.secret()?, &mut iv, decrypt, &mut out).map_err(|rc| rc.param(p[3]))?;
    let mut w = Writer::new();
    w.tpm2b(&out);
    if mode == sym::mode::ECB {
        w.tpm2b(iv_in);
    } else {
        w.tpm2b(&iv);
    }
    Ok(Response::params(w))
}

/// Part 3, 15.2 TPM2_EncryptDecrypt.
#[doc(alias = "TPM2_EncryptDecrypt")]
fn encrypt_decrypt(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let decrypt = r.yes_no()?;
    let mode = r.u16()?;
    let iv = r.tpm2b(sym::BLOCK)?;
    let data = r.tpm2b(MAX_BUFFER)?;
    r.finish()?;
    run(ctx, req, decrypt, mode, iv, data, [1, 2, 3, 4])
}

/// Part 3, 15.3 TPM2_EncryptDecrypt2: inData first, so it can be parameter-encrypted.
#[doc(alias = "TPM2_EncryptDecrypt2")]
fn encrypt_decrypt2(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let data = r.tpm2b(MAX_BUFFER)?;
    let decrypt = r.yes_no()?;
    let mode = r.u16()?;
    let iv = r.tpm2b(sym::BLOCK)?;
    r.finish()?;
    run(ctx, req, decrypt, mode, iv, data, [2, 3, 4, 1])
}
