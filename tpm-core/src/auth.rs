//! The authorization area (Part 1, 18 "Authorizations and Acknowledgments"; Part 1, 19).
//!
//! Parsing follows the reference implementation's order so malformed areas get the same
//! response codes: sizes first, then each TPMS_AUTH_COMMAND, then the count against the
//! handles that need authorization, then each authorization check. Password sessions
//! (TPM_RS_PW) are handled here; HMAC and policy sessions plug in through
//! [`crate::auth`]'s session lookup once the session machinery exists.

use alloc::vec::Vec;

use crate::commands::CommandDef;
use crate::context::Ctx;
use crate::handle::{Handle, HandleType};
use crate::rc::{TpmRc, TpmResult};
use crate::state::{AuthValue, Slot};

/// Authorization role of a handle (Part 1, 19.2 "Authorization Roles").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthRole {
    User,
    Admin,
    Dup,
}

/// At most three sessions per command (Part 1, 18.3; MAX_SESSION_NUM).
pub const MAX_SESSIONS: usize = 3;

/// TPMA_SESSION bits (Part 2, 8.4).
pub mod attr {
    pub const CONTINUE_SESSION: u8 = 0x01;
    pub const AUDIT_EXCLUSIVE: u8 = 0x02;
    pub const AUDIT_RESET: u8 = 0x04;
    pub const RESERVED: u8 = 0x18;
    pub const DECRYPT: u8 = 0x20;
    pub const ENCRYPT: u8 = 0x40;
    pub const AUDIT: u8 = 0x80;
}

/// Largest nonce and HMAC accepted (sizeof(TPMU_HA), i.e. the largest digest).
const MAX_NONCE: usize = 64;

/// One TPMS_AUTH_COMMAND.
#[derive(Clone, Debug)]
pub struct SessionIn<'a> {
    pub handle: Handle,
    pub nonce: &'a [u8],
    pub attributes: u8,
    pub hmac: &'a [u8],
}

/// Splits the authorization area off `rest` (what follows the handle area) and parses its
/// sessions (reference ExecCommand + RetrieveSessionData). Returns the sessions and the
/// parameter area.
pub fn parse_area<'a>(ctx: &Ctx<'_>, rest: &'a [u8]) -> TpmResult<(Vec<SessionIn<'a>>, &'a [u8])> {
    // authorizationSize itself missing: the bare unmarshalling code.
    let Some((size, rest)) = rest.split_first_chunk::<4>() else {
        return Err(TpmRc::INSUFFICIENT);
    };
    let auth_size = u32::from_be_bytes(*size) as usize;
    // The smallest session is handle(4) + nonce size(2) + attributes(1) + hmac size(2);
    // libtpms answers an impossible authorizationSize with a bare TPM_RC_SIZE.
    if auth_size < 9 || auth_size > rest.len() {
        return Err(TpmRc::SIZE);
    }
    let (mut area, params) = rest.split_at(auth_size);
    let mut sessions = Vec::new();
    while !area.is_empty() {
        let n = (sessions.len() + 1) as u8;
        if sessions.len() >= MAX_SESSIONS {
            // A size error numbered one past the last allowed session, as libtpms does.
            return Err(TpmRc::SIZE.session(n));
        }
        let (s, tail) = parse_session(area).map_err(|rc| rc.session(n))?;
        check_session_shape(&s).map_err(|rc| rc.session(n))?;
        if s.handle != Handle::PASSWORD {
            if !session_loaded(ctx, s.handle) {
                // TPM_RC_REFERENCE_S0 + session index (0-based).
                return Err(TpmRc(TpmRc::REFERENCE_S0.0 + u32::from(n - 1)));
            }
            // The same session may not appear twice.
            if sessions
                .iter()
                .any(|o: &SessionIn<'_>| o.handle == s.handle)
            {
                return Err(TpmRc::HANDLE.session(n));
            }
        }
        sessions.push(s);
        area = tail;
    }
    Ok((sessions, params))
}

/// Is `h` (an HMAC or policy session handle) a loaded session of the matching kind?
/// No sessions exist until the sessions work lands: the sessions engineer replaces this body.
pub fn session_loaded(ctx: &Ctx<'_>, h: Handle) -> bool {
    ctx.tpm.vs.sessions.is_loaded(h)
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> TpmResult<&'a [u8]> {
    if buf.len() < n {
        return Err(TpmRc::INSUFFICIENT);
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

fn take_tpm2b<'a>(buf: &mut &'a [u8], max: usize) -> TpmResult<&'a [u8]> {
    let size = take(buf, 2)?;
    let size = usize::from(u16::from_be_bytes([size[0], size[1]]));
    if size > max {
        return Err(TpmRc::SIZE);
    }
    take(buf, size)
}

fn parse_session(mut buf: &[u8]) -> TpmResult<(SessionIn<'_>, &[u8])> {
    let h = take(&mut buf, 4)?;
    let handle = Handle(u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
    // TPMI_SH_AUTH_SESSION+: password, HMAC or policy session handles only.
    match handle.kind() {
        HandleType::HmacSession | HandleType::PolicySession => {}
        _ if handle == Handle::PASSWORD => {}
        _ => return Err(TpmRc::VALUE),
    }
    let nonce = take_tpm2b(&mut buf, MAX_NONCE)?;
    let attributes = take(&mut buf, 1)?[0];
    if attributes & attr::RESERVED != 0 {
        return Err(TpmRc::RESERVED_BITS);
    }
    let hmac = take_tpm2b(&mut buf, MAX_NONCE)?;
    Ok((
        SessionIn {
            handle,
            nonce,
            attributes,
            hmac,
        },
        buf,
    ))
}

/// Checks that depend on one session only (reference ParseSessionBuffer).
fn check_session_shape(s: &SessionIn<'_>) -> TpmResult<()> {
    if s.handle == Handle::PASSWORD {
        // A password session only authorizes: no audit or encryption attributes, no nonce.
        let forbidden =
            attr::ENCRYPT | attr::DECRYPT | attr::AUDIT | attr::AUDIT_EXCLUSIVE | attr::AUDIT_RESET;
        if s.attributes & forbidden != 0 {
            return Err(TpmRc::ATTRIBUTES);
        }
        if !s.nonce.is_empty() {
            return Err(TpmRc::NONCE);
        }
    }
    Ok(())
}

/// Authorizes the command's handles with its sessions (Part 1, 19.6-19.7; reference
/// ParseSessionBuffer after RetrieveSessionData). Session i authorizes the i-th handle that
/// needs authorization (Part 1, 18.4: those handles come first); the session processing
/// itself (password, HMAC and policy) is in [`crate::session::process`]. `params` is the
/// parameter area as received (for cpHash).
pub fn authorize(
    ctx: &mut Ctx<'_>,
    def: &CommandDef,
    handles: &[Handle],
    sessions: &[SessionIn<'_>],
    params: &[u8],
) -> TpmResult<crate::session::CommandSessions> {
    if sessions.len() < def.auth_count() {
        return Err(TpmRc::AUTH_MISSING);
    }
    // A command that requires physical presence fails before its authorization is checked
    // (reference CheckAuthSession). Only TPM2_PP_Commands does, and a virtual TPM never has
    // physical presence asserted.
    if def.cc == crate::commands::cc::PP_COMMANDS {
        return Err(TpmRc::PP.session(1));
    }
    crate::session::process(ctx, def, handles, sessions, params)
}

/// The authValue of an entity (Part 1, 19.6.4).
pub fn auth_value(ctx: &Ctx<'_>, h: Handle) -> TpmResult<AuthValue> {
    let ps = ctx.ps();
    Ok(match h {
        Handle::OWNER => ps.owner_auth.clone(),
        Handle::ENDORSEMENT => ps.endorsement_auth.clone(),
        Handle::LOCKOUT => ps.lockout_auth.clone(),
        Handle::PLATFORM => ctx.tpm.vs.platform_auth.clone(),
        Handle::NULL => AuthValue::default(),
        // PCR_SetAuthValue sets the authValue of the PCR group; other PCRs have none.
        h if h.kind() == HandleType::Pcr => match h.pcr_index() {
            Some(i) if crate::state::pcr::in_pcr_group(i) => ctx.tpm.vs.pcr_auth.clone(),
            _ => AuthValue::default(),
        },
        h if h.kind() == HandleType::NvIndex => match ps.nv.get(h) {
            Some(ix) => ix.auth.clone(),
            None => return Err(TpmRc::HANDLE),
        },
        h if crate::entity::is_object(ctx, h) => {
            crate::entity::auth_value(ctx, h).ok_or(TpmRc::HANDLE)?
        }
        h => match ctx.tpm.vs.objects.get(h) {
            Some(Slot::Sequence(seq)) => seq.auth.clone(),
            #[allow(unreachable_patterns)]
            _ => return Err(TpmRc::HANDLE),
        },
    })
}

/// Is `h` exempt from dictionary-attack protection (reference IsDAExempted)? Permanent
/// handles other than lockout, PCRs and sequence objects (noDA) are; objects and NV indices
/// answer from their noDA attribute once those exist.
pub fn is_da_exempt(ctx: &Ctx<'_>, h: Handle) -> bool {
    match h.kind() {
        HandleType::Permanent => h != Handle::LOCKOUT,
        HandleType::Pcr => true,
        HandleType::NvIndex => ctx
            .ps()
            .nv
            .get(h)
            .is_some_and(|ix| ix.has(crate::state::nv::attr::NO_DA)),
        HandleType::Transient | HandleType::Persistent if crate::entity::is_object(ctx, h) => {
            crate::entity::is_da_protected(ctx, h) == Some(false)
        }
        HandleType::Transient => matches!(ctx.tpm.vs.objects.get(h), Some(Slot::Sequence(_))),
        _ => false,
    }
}

/// Refuses authorization with an authValue while the entity is locked out (reference
/// CheckLockedOut): lockoutAuth after a failure, others once failedTries reached maxTries.
pub fn check_locked_out(ctx: &mut Ctx<'_>, h: Handle) -> TpmResult<()> {
    if is_da_exempt(ctx, h) {
        return Ok(());
    }
    if h == Handle::LOCKOUT {
        if lockout_blocked(ctx) {
            return Err(TpmRc::LOCKOUT);
        }
    } else {
        crate::commands::da::self_heal(ctx);
        let da = &ctx.ps().da;
        if da.failed_tries >= da.max_tries {
            return Err(TpmRc::LOCKOUT);
        }
    }
    Ok(())
}

/// Records an authorization failure (reference IncrementLockout): TPM_RC_BAD_AUTH for
/// DA-exempt entities, otherwise TPM_RC_AUTH_FAIL and the DA state moves.
pub fn register_auth_failure(ctx: &mut Ctx<'_>, h: Handle) -> TpmRc {
    if is_da_exempt(ctx, h) {
        return TpmRc::BAD_AUTH;
    }
    let now = ctx.clock();
    if h == Handle::LOCKOUT {
        // Part 1, 19.8.3: a failed lockoutAuth blocks it for lockoutRecovery seconds, or
        // until the next TPM Reset when lockoutRecovery is zero.
        let recovery = ctx.ps().da.lockout_recovery;
        let da = &mut ctx.ps_mut().da;
        if recovery == 0 {
            da.lockout_auth_blocked_until_reset = true;
        } else {
            da.lockout_auth_blocked_until = now.saturating_add(u64::from(recovery) * 1000);
        }
    } else if ctx.ps().da.recovery_time != 0 {
        // recoveryTime 0 disables DA protection for everything but lockoutAuth.
        let da = &mut ctx.ps_mut().da;
        da.failed_tries = da.failed_tries.saturating_add(1);
        da.last_failure_clock = now;
    }
    TpmRc::AUTH_FAIL
}

pub fn check_password(ctx: &mut Ctx<'_>, h: Handle, password: &[u8]) -> TpmResult<()> {
    check_locked_out(ctx, h)?;
    let expected = auth_value(ctx, h)?;
    if expected.matches(password) {
        return Ok(());
    }
    Err(register_auth_failure(ctx, h))
}

fn lockout_blocked(ctx: &Ctx<'_>) -> bool {
    let da = &ctx.ps().da;
    da.lockout_auth_blocked_until_reset || ctx.clock() < da.lockout_auth_blocked_until
}
