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
use crate::marshal::Writer;
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
/// sessions. Returns the sessions and the parameter area.
pub fn parse_area(rest: &[u8]) -> TpmResult<(Vec<SessionIn<'_>>, &[u8])> {
    if rest.len() < 4 {
        return Err(TpmRc::AUTHSIZE);
    }
    let auth_size = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let rest = &rest[4..];
    // The smallest session is handle(4) + nonce size(2) + attributes(1) + hmac size(2).
    if auth_size < 9 || auth_size > rest.len() {
        return Err(TpmRc::AUTHSIZE);
    }
    let (mut area, params) = rest.split_at(auth_size);
    let mut sessions = Vec::new();
    while !area.is_empty() {
        if sessions.len() >= MAX_SESSIONS {
            return Err(TpmRc::AUTHSIZE);
        }
        let n = (sessions.len() + 1) as u8;
        let (s, tail) = parse_session(area).map_err(|rc| rc.session(n))?;
        check_session_shape(&s).map_err(|rc| rc.session(n))?;
        sessions.push(s);
        area = tail;
    }
    Ok((sessions, params))
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

/// Authorizes the command's handles with its sessions (Part 1, 19.6-19.7).
pub fn authorize(
    ctx: &mut Ctx<'_>,
    def: &CommandDef,
    handles: &[Handle],
    sessions: &[SessionIn<'_>],
) -> TpmResult<()> {
    if sessions.len() < def.auth_count() {
        return Err(TpmRc::AUTH_MISSING);
    }
    // Session handles that are not password sessions must be loaded sessions.
    for (i, s) in sessions.iter().enumerate() {
        if s.handle != Handle::PASSWORD {
            // No HMAC/policy sessions are loaded yet: TPM_RC_REFERENCE_S0 + index.
            return Err(TpmRc(0x918 + i as u32));
        }
    }
    let auth_handles = def
        .handles
        .iter()
        .zip(handles)
        .filter(|(slot, _)| slot.auth.is_some())
        .map(|(_, h)| *h);
    for (i, (h, s)) in auth_handles.zip(sessions).enumerate() {
        let n = (i + 1) as u8;
        check_password(ctx, h, s.hmac, n)?;
    }
    Ok(())
}

/// The authValue of an entity (Part 1, 19.6.4).
fn auth_value(ctx: &Ctx<'_>, h: Handle) -> TpmResult<AuthValue> {
    let ps = ctx.ps();
    Ok(match h {
        Handle::OWNER => ps.owner_auth.clone(),
        Handle::ENDORSEMENT => ps.endorsement_auth.clone(),
        Handle::LOCKOUT => ps.lockout_auth.clone(),
        Handle::PLATFORM => ctx.tpm.vs.platform_auth.clone(),
        Handle::NULL => AuthValue::default(),
        h if h.kind() == HandleType::Pcr => AuthValue::default(),
        h => match ctx.tpm.vs.objects.get(h) {
            Some(Slot::Sequence(seq)) => seq.auth.clone(),
            Some(Slot::Object(o)) => o.auth(),
            None => match crate::entity::auth_value(ctx, h) {
                Some(a) => a,
                None => return Err(TpmRc::HANDLE),
            },
        },
    })
}

fn check_password(ctx: &mut Ctx<'_>, h: Handle, password: &[u8], n: u8) -> TpmResult<()> {
    if h == Handle::LOCKOUT && lockout_blocked(ctx) {
        return Err(TpmRc::LOCKOUT);
    }
    let expected = auth_value(ctx, h)?;
    if expected.matches(password) {
        return Ok(());
    }
    if h == Handle::LOCKOUT {
        // Part 1, 19.8.3: a failed lockoutAuth blocks it for lockoutRecovery seconds, or
        // until the next TPM Reset when lockoutRecovery is zero.
        let now = ctx.clock();
        let recovery = ctx.ps().da.lockout_recovery;
        let da = &mut ctx.ps_mut().da;
        if recovery == 0 {
            da.lockout_auth_blocked_until_reset = true;
        } else {
            da.lockout_auth_blocked_until = now.saturating_add(u64::from(recovery) * 1000);
        }
    }
    Err(TpmRc::AUTH_FAIL.session(n))
}

fn lockout_blocked(ctx: &Ctx<'_>) -> bool {
    let da = &ctx.ps().da;
    da.lockout_auth_blocked_until_reset || ctx.clock() < da.lockout_auth_blocked_until
}

/// Builds the response authorization area (TPMS_AUTH_RESPONSE per session, Part 1, 18.8).
pub fn response_area(sessions: &[SessionIn<'_>], out: &mut Writer) {
    for s in sessions {
        // Password session: empty nonce, continueSession echoed, empty HMAC.
        out.tpm2b(&[])
            .u8(s.attributes & attr::CONTINUE_SESSION)
            .tpm2b(&[]);
    }
}
