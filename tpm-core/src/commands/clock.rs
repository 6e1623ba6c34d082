//! Part 3, 29 "Clocks and Timers": TPM2_ReadClock, TPM2_ClockSet, TPM2_ClockRateAdjust.

use crate::auth::AuthRole;
use crate::commands::{CommandDef, HandleKind, Request, Response, auth, cc};
use crate::context::Ctx;
use crate::marshal::{Reader, Writer};
use crate::object::creation::write_clock_info;
use crate::rc::{TpmRc, TpmResult};

pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        cc: cc::READ_CLOCK,
        handles: &[],
        response_handle: false,
        run: read_clock,
    },
    CommandDef {
        cc: cc::CLOCK_SET,
        handles: &[auth(HandleKind::Provision, AuthRole::User)],
        response_handle: false,
        run: clock_set,
    },
    CommandDef {
        cc: cc::CLOCK_RATE_ADJUST,
        handles: &[auth(HandleKind::Provision, AuthRole::User)],
        response_handle: false,
        run: clock_rate_adjust,
    },
];

/// Largest value ClockSet accepts (the reference implementation keeps the top 16 bits free so
/// the clock cannot wrap).
pub const CLOCK_SET_MAX: u64 = 0xFFFF_0000_0000_0000;

/// Writes TPMS_TIME_INFO: time since _TPM_Init, then TPMS_CLOCK_INFO.
pub fn write_time_info(ctx: &Ctx<'_>, w: &mut Writer) {
    w.u64(ctx.time());
    write_clock_info(ctx, w);
}

/// Part 3, 29.1 TPM2_ReadClock.
#[doc(alias = "TPM2_ReadClock")]
fn read_clock(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    Reader::params(req.params).finish()?;
    let mut w = Writer::with_capacity(25);
    write_time_info(ctx, &mut w);
    Ok(Response::params(w))
}

/// Part 3, 29.2 TPM2_ClockSet: the clock may only move forward, and not beyond
/// [`CLOCK_SET_MAX`] (TPM_RC_VALUE + P1 otherwise). The new value is stored at once.
#[doc(alias = "TPM2_ClockSet")]
fn clock_set(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let new_time = r.u64()?;
    r.finish()?;
    if new_time > CLOCK_SET_MAX || new_time < ctx.clock() {
        return Err(TpmRc::VALUE.param(1));
    }
    ctx.ps_mut().clock = new_time;
    Ok(Response::empty())
}

/// Part 3, 29.3 TPM2_ClockRateAdjust: TPM_CLOCK_ADJUST is -3..=3 (TPM_RC_VALUE + P1
/// otherwise). The clock follows the platform's monotonic time, which is already as exact
/// as the host can make it, so a valid adjustment is accepted and has no further effect.
#[doc(alias = "TPM2_ClockRateAdjust")]
fn clock_rate_adjust(_ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let adjust = r.u8()? as i8;
    r.finish()?;
    if !(-3..=3).contains(&adjust) {
        return Err(r.err(TpmRc::VALUE));
    }
    Ok(Response::empty())
}
