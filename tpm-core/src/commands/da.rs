//! Part 3, 25 "Dictionary Attack Functions": TPM2_DictionaryAttackLockReset and
//! TPM2_DictionaryAttackParameters, plus the self-healing of the failure counter
//! (Part 1, 19.8 "Dictionary Attack Protection").
//!
//! The counters live in `PersistentState::da`; `auth.rs` consults them before every
//! authValue check (`auth::check_locked_out`) and moves them after a failure
//! (`auth::register_auth_failure`).

use crate::auth::AuthRole;
use crate::commands::{CommandDef, HandleKind, Request, Response, auth, cc};
use crate::context::Ctx;
use crate::marshal::Reader;
use crate::rc::TpmResult;

pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        cc: cc::DICTIONARY_ATTACK_LOCK_RESET,
        handles: &[auth(HandleKind::Lockout, AuthRole::User)],
        response_handle: false,
        run: lock_reset,
    },
    CommandDef {
        cc: cc::DICTIONARY_ATTACK_PARAMETERS,
        handles: &[auth(HandleKind::Lockout, AuthRole::User)],
        response_handle: false,
        run: parameters,
    },
];

/// Lets `failedTries` decay: one failure is forgotten per `recoveryTime` seconds since the
/// last failure (reference DASelfHeal). With `recoveryTime` zero DA protection is off and
/// the counter is cleared. Only touches persistent state when something changes.
pub fn self_heal(ctx: &mut Ctx<'_>) {
    let now = ctx.clock();
    let da = &ctx.ps().da;
    if da.failed_tries == 0 {
        return;
    }
    if da.recovery_time == 0 {
        ctx.ps_mut().da.failed_tries = 0;
        return;
    }
    let interval_ms = u64::from(da.recovery_time) * 1000;
    let decrease = now.saturating_sub(da.last_failure_clock) / interval_ms;
    let capped = da.failed_tries.min(da.max_tries);
    if decrease == 0 && capped == da.failed_tries {
        return;
    }
    let da = &mut ctx.ps_mut().da;
    da.failed_tries = u64::from(capped).saturating_sub(decrease) as u32;
    da.last_failure_clock = da
        .last_failure_clock
        .saturating_add(decrease.saturating_mul(interval_ms));
}

/// Part 3, 25.2 TPM2_DictionaryAttackLockReset: forgets all authorization failures.
#[doc(alias = "TPM2_DictionaryAttackLockReset")]
fn lock_reset(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    Reader::params(req.params).finish()?;
    ctx.ps_mut().da.failed_tries = 0;
    Ok(Response::empty())
}

/// Part 3, 25.3 TPM2_DictionaryAttackParameters: new maxTries, recoveryTime (seconds per
/// forgotten failure) and lockoutRecovery (seconds lockoutAuth stays blocked after a
/// failure); the failure count starts over, as in the reference implementation.
#[doc(alias = "TPM2_DictionaryAttackParameters")]
fn parameters(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let max_tries = r.u32()?;
    let recovery_time = r.u32()?;
    let lockout_recovery = r.u32()?;
    r.finish()?;
    let now = ctx.clock();
    let da = &mut ctx.ps_mut().da;
    da.max_tries = max_tries;
    da.recovery_time = recovery_time;
    da.lockout_recovery = lockout_recovery;
    da.failed_tries = 0;
    da.last_failure_clock = now;
    Ok(Response::empty())
}
