//! Part 3, 11 "Session Commands": TPM2_StartAuthSession. (PolicyRestart is in `policy.rs`,
//! with the other Part 3, 23 commands.)

use alloc::vec::Vec;

use crate::commands::{CommandDef, HandleKind, Request, Response, cc, plain};
use crate::context::Ctx;
use crate::crypto::hash::{HashAlg, MAX_DIGEST_SIZE};
use crate::crypto::kdf;
use crate::handle::{Handle, HandleType};
use crate::marshal::{Reader, Writer};
use crate::rc::{TpmRc, TpmResult};
use crate::session::{self as sp, ALG_AES, ALG_CFB, ALG_NULL, ALG_XOR};
use crate::state::nv::NvType;
use crate::state::sessions::{
    MAX_LOADED_SESSIONS, PolicyState, Session, SessionKind, SessionSymmetric,
};

pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        cc: cc::START_AUTH_SESSION,
        handles: &[
            plain(HandleKind::ObjectOrNull),
            plain(HandleKind::EntityOrNull),
        ],
        response_handle: true,
        run: start_auth_session,
    },
    CommandDef {
        cc: cc::GET_SESSION_AUDIT_DIGEST,
        handles: &[
            crate::commands::auth(HandleKind::Endorsement, crate::auth::AuthRole::User),
            crate::commands::auth(HandleKind::ObjectOrNull, crate::auth::AuthRole::User),
            plain(HandleKind::HmacSession),
        ],
        response_handle: false,
        run: get_session_audit_digest,
    },
    CommandDef {
        cc: cc::GET_COMMAND_AUDIT_DIGEST,
        handles: &[
            crate::commands::auth(HandleKind::Endorsement, crate::auth::AuthRole::User),
            crate::commands::auth(HandleKind::ObjectOrNull, crate::auth::AuthRole::User),
        ],
        response_handle: false,
        run: get_command_audit_digest,
    },
    CommandDef {
        cc: cc::SET_COMMAND_CODE_AUDIT_STATUS,
        handles: &[crate::commands::auth(
            HandleKind::Provision,
            crate::auth::AuthRole::User,
        )],
        response_handle: false,
        run: set_command_code_audit_status,
    },
];

/// TPM_ST_ATTEST_COMMAND_AUDIT (Part 2, 6.9).
const ST_ATTEST_COMMAND_AUDIT: u16 = 0x8015;

/// Part 3, 18.6 TPM2_GetCommandAuditDigest: the command audit digest, signed; a signed
/// digest starts over.
#[doc(alias = "TPM2_GetCommandAuditDigest")]
fn get_command_audit_digest(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    use crate::commands::attestation::{Signer, read_qualifying};
    use crate::commands::signature::read_sig_scheme;
    let sign_handle = req.handles.get(1).copied().unwrap_or(Handle::NULL);
    let mut r = Reader::params(req.params);
    let extra = read_qualifying(&mut r)?;
    let requested = read_sig_scheme(&mut r)?;
    r.finish()?;
    let signer = Signer::new(ctx, sign_handle, 2, requested, 2)?;
    let audit = ctx.ps().command_audit.clone();
    let alg = HashAlg::from_alg_id(audit.hash_alg).unwrap_or(HashAlg::Sha256);
    let mut h = alg.hasher();
    for code in &audit.commands {
        h.update(&code.to_be_bytes());
    }
    let command_digest = h.finish();
    let mut a = Writer::new();
    a.u64(audit.counter)
        .u16(audit.hash_alg)
        .tpm2b(&ctx.tpm.vs.command_audit_digest)
        .tpm2b(&command_digest);
    let attest = signer.attest(ctx, ST_ATTEST_COMMAND_AUDIT, &extra, a.as_slice());
    let resp = signer.respond(ctx, &attest)?;
    if sign_handle != Handle::NULL {
        ctx.tpm.vs.command_audit_digest.clear();
    }
    Ok(resp)
}

/// Reads a TPML_CC (at most MAX_CAP_CC entries).
fn read_cc_list(r: &mut Reader<'_>) -> TpmResult<Vec<u32>> {
    r.begin();
    let count = r.raw_u32()?;
    if count > 256 {
        return Err(r.err(TpmRc::SIZE));
    }
    (0..count).map(|_| r.raw_u32()).collect()
}

/// Part 3, 21.2 TPM2_SetCommandCodeAuditStatus: change the audit hash (alone) or the list of
/// audited commands. Unimplemented commands and Shutdown are never audited;
/// SetCommandCodeAuditStatus always is.
#[doc(alias = "TPM2_SetCommandCodeAuditStatus")]
fn set_command_code_audit_status(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let alg = r.u16()?;
    if alg != ALG_NULL && HashAlg::from_alg_id(alg).is_none() {
        return Err(r.err(TpmRc::HASH));
    }
    let set = read_cc_list(&mut r)?;
    let clear = read_cc_list(&mut r)?;
    r.finish()?;
    let current = ctx.ps().command_audit.clone();
    if alg != ALG_NULL && alg != current.hash_alg {
        if !set.is_empty() || !clear.is_empty() {
            return Err(TpmRc::VALUE.param(1));
        }
        ctx.ps_mut().command_audit.hash_alg = alg;
        ctx.tpm.vs.command_audit_digest.clear();
        ctx.tpm.vs.command_audit_skip = true;
        return Ok(Response::empty());
    }
    let dispatch = crate::commands::Dispatch::new();
    let mut list = current.commands.clone();
    for code in set {
        if dispatch.get(code).is_some() && code != cc::SHUTDOWN && !list.contains(&code) {
            list.push(code);
        }
    }
    list.retain(|c| *c == cc::SET_COMMAND_CODE_AUDIT_STATUS || !clear.contains(c));
    list.sort_unstable();
    if list != current.commands {
        ctx.ps_mut().command_audit.commands = list;
    }
    Ok(Response::empty())
}

/// TPM_ST_ATTEST_SESSION_AUDIT (Part 2, 6.9).
const ST_ATTEST_SESSION_AUDIT: u16 = 0x8016;

/// Part 3, 18.5 TPM2_GetSessionAuditDigest: the audit digest of an HMAC session, signed.
#[doc(alias = "TPM2_GetSessionAuditDigest")]
fn get_session_audit_digest(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    use crate::commands::attestation::{Signer, read_qualifying};
    use crate::commands::signature::read_sig_scheme;
    let sign_handle = req.handles.get(1).copied().unwrap_or(Handle::NULL);
    let session = req.handles.get(2).copied().unwrap_or(Handle::NULL);
    let mut r = Reader::params(req.params);
    let extra = read_qualifying(&mut r)?;
    let requested = read_sig_scheme(&mut r)?;
    r.finish()?;
    let s = ctx
        .tpm
        .vs
        .sessions
        .get(session)
        .ok_or(TpmRc::HANDLE.handle(3))?;
    // A session never used for audit has no digest yet.
    let digest = s.audit_digest.clone().ok_or(TpmRc::TYPE.handle(3))?;
    let exclusive = ctx.tpm.vs.exclusive_audit == Some(session);
    let signer = Signer::new(ctx, sign_handle, 2, requested, 2)?;
    let mut a = Writer::new();
    a.u8(u8::from(exclusive)).tpm2b(&digest);
    let attest = signer.attest(ctx, ST_ATTEST_SESSION_AUDIT, &extra, a.as_slice());
    signer.respond(ctx, &attest)
}

/// Largest encrypted salt (TPM2B_ENCRYPTED_SECRET: sizeof(TPMU_ENCRYPTED_SECRET)).
const MAX_ENCRYPTED_SECRET: usize = 512;

/// Reads a TPMT_SYM_DEF+ (Part 2, 11.1.6) as a session accepts it: AES (CFB mode only,
/// checked later), XOR with a hash, or NULL.
fn read_sym_def(r: &mut Reader<'_>) -> TpmResult<SessionSymmetric> {
    r.begin();
    let alg = r.raw_u16()?;
    match alg {
        ALG_NULL => Ok(SessionSymmetric {
            alg,
            key_bits: 0,
            mode: ALG_NULL,
        }),
        ALG_XOR => {
            let hash = r.raw_u16()?;
            if HashAlg::from_alg_id(hash).is_none() {
                return Err(r.err(TpmRc::HASH));
            }
            Ok(SessionSymmetric {
                alg,
                key_bits: hash,
                mode: ALG_NULL,
            })
        }
        ALG_AES => {
            let key_bits = r.raw_u16()?;
            if !matches!(key_bits, 128 | 192 | 256) {
                return Err(r.err(TpmRc::VALUE));
            }
            let mode = r.raw_u16()?;
            // TPMI_ALG_SYM_MODE+: CTR, OFB, CBC, CFB, ECB or NULL.
            if !matches!(mode, 0x0040..=0x0044 | ALG_NULL) {
                return Err(r.err(TpmRc::MODE));
            }
            Ok(SessionSymmetric {
                alg,
                key_bits,
                mode,
            })
        }
        _ => Err(r.err(TpmRc::SYMMETRIC)),
    }
}

/// Part 3, 11.1 TPM2_StartAuthSession.
#[doc(alias = "TPM2_StartAuthSession")]
fn start_auth_session(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let tpm_key = req.handles.first().copied().unwrap_or(Handle::NULL);
    let bind = req.handles.get(1).copied().unwrap_or(Handle::NULL);
    let mut r = Reader::params(req.params);
    let nonce_caller = r.tpm2b(MAX_DIGEST_SIZE)?;
    let encrypted_salt = r.tpm2b(MAX_ENCRYPTED_SECRET)?;
    let kind = match r.u8()? {
        0x00 => SessionKind::Hmac,
        0x01 => SessionKind::Policy,
        0x03 => SessionKind::Trial,
        _ => return Err(r.err(TpmRc::VALUE)),
    };
    let symmetric = read_sym_def(&mut r)?;
    let alg = HashAlg::from_alg_id(r.u16()?).ok_or(r.err(TpmRc::HASH))?;
    r.finish()?;

    if nonce_caller.len() < 16 || nonce_caller.len() > alg.digest_size() {
        return Err(TpmRc::SIZE.param(1));
    }
    let salt: Vec<u8> = if tpm_key != Handle::NULL {
        if encrypted_salt.is_empty() {
            return Err(TpmRc::VALUE.param(2));
        }
        sp::decrypt_salt(ctx, tpm_key, encrypted_salt)?
    } else {
        if !encrypted_salt.is_empty() {
            return Err(TpmRc::VALUE.param(2));
        }
        Vec::new()
    };
    if bind.kind() == HandleType::NvIndex
        && let Some(ix) = ctx.ps().nv.get(bind)
        && matches!(ix.nv_type(), NvType::PinFail | NvType::PinPass)
    {
        return Err(TpmRc::HANDLE.handle(2));
    }
    if symmetric.alg == ALG_AES && symmetric.mode != ALG_CFB {
        return Err(TpmRc::MODE.param(4));
    }
    if ctx.tpm.vs.sessions.loaded_count() >= MAX_LOADED_SESSIONS {
        return Err(TpmRc::SESSION_MEMORY);
    }

    let mut nonce_tpm = alloc::vec![0u8; nonce_caller.len()];
    ctx.random(&mut nonce_tpm);
    // sessionKey = KDFa(authHash, bind authValue || salt, "ATH", nonceTPM, nonceCaller,
    // digest bits) when bound or salted (Part 1, 19.6.8).
    let session_key = if bind != Handle::NULL || !salt.is_empty() {
        let mut key = sp::entity_auth(ctx, bind).as_bytes().to_vec();
        key.extend_from_slice(&salt);
        kdf::kdfa(
            alg,
            &key,
            b"ATH",
            &nonce_tpm,
            nonce_caller,
            (alg.digest_size() * 8) as u32,
        )
    } else {
        Vec::new()
    };
    let da_bound = bind != Handle::NULL && !crate::auth::is_da_exempt(ctx, bind);
    let session = Session {
        kind,
        alg,
        nonce_tpm: nonce_tpm.clone(),
        session_key,
        symmetric,
        bound: (bind != Handle::NULL && kind == SessionKind::Hmac)
            .then(|| sp::bind_value(ctx, bind)),
        da_bound,
        lockout_bound: da_bound && bind == Handle::LOCKOUT,
        policy_digest: alloc::vec![0u8; alg.digest_size()],
        policy: PolicyState::default(),
        start_time_ms: ctx.time(),
        audit_digest: None,
    };
    let handle = ctx
        .tpm
        .vs
        .sessions
        .insert(session)
        .ok_or(TpmRc::SESSION_HANDLES)?;
    let mut out = Writer::with_capacity(2 + nonce_tpm.len());
    out.tpm2b(&nonce_tpm);
    Ok(Response {
        handle: Some(handle),
        params: out,
    })
}
