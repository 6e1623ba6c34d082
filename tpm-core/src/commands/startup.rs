//! Part 3, 9 "Start-up": TPM2_Startup and TPM2_Shutdown.

use crate::commands::{CommandDef, Request, Response, cc};
use crate::context::Ctx;
use crate::marshal::Reader;
use crate::rc::{TpmRc, TpmResult};
use crate::state::AuthValue;
use crate::state::{Orderly, PcrBanks, PolicyDigest, SavedState, Slot, Volatile};

pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        cc: cc::STARTUP,
        handles: &[],
        response_handle: false,
        run: startup,
    },
    CommandDef {
        cc: cc::SHUTDOWN,
        handles: &[],
        response_handle: false,
        run: shutdown,
    },
];

/// TPM_SU (Part 2, 6.11).
const SU_CLEAR: u16 = 0x0000;
const SU_STATE: u16 = 0x0001;

fn read_su(r: &mut Reader<'_>) -> TpmResult<u16> {
    match r.u16()? {
        v @ (SU_CLEAR | SU_STATE) => Ok(v),
        _ => Err(r.err(TpmRc::VALUE)),
    }
}

/// Part 3, 9.3 TPM2_Startup. Startup(CLEAR) after Shutdown(STATE) is a TPM Restart, after
/// anything else a TPM Reset; Startup(STATE) after Shutdown(STATE) is a TPM Resume
/// (Part 1, 36.3-36.5).
#[doc(alias = "TPM2_Startup")]
fn startup(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let su = read_su(&mut r)?;
    r.finish()?;

    let orderly = ctx.ps().orderly.clone();
    let saved = match (&orderly, su) {
        (Some(Orderly::State(saved)), _) => Some(saved.clone()),
        (_, SU_STATE) => return Err(TpmRc::VALUE.param(1)),
        _ => None,
    };

    // Volatile state starts over in every case; then Resume brings back what was saved.
    let init_ms = ctx.tpm.vs.init_ms;
    let mut vs = Volatile::power_on(ctx.now_ms);
    vs.init_ms = init_ms;
    vs.clock_safe = orderly.is_some();
    match (su, saved) {
        (SU_STATE, Some(saved)) => {
            // TPM Resume: state-saved PCRs and the update counter come back, with the PCR
            // allocation they were saved with (a new one waits for a TPM Reset).
            vs.pcrs = PcrBanks::with_allocation(&saved.pcrs.allocation());
            vs.pcrs.restore_saved(&saved.pcrs);
            vs.pcr_update_counter = saved.pcr_update_counter;
            vs.pcr_auth = saved.pcr_auth.clone();
            ctx.ps_mut().restart_count += 1;
        }
        (_, Some(saved)) => {
            // TPM Restart: PCRs start over, with the allocation of the last TPM Reset.
            vs.pcrs = PcrBanks::with_allocation(&saved.pcrs.allocation());
            ctx.ps_mut().restart_count += 1;
            // NV per-boot locks end (Part 3, 31: WRITE_STCLEAR, READ_STCLEAR, CLEAR_STCLEAR).
            ctx.ps_mut().nv.startup_clear(false);
        }
        (_, None) => {
            // TPM Reset: new null seed, counters, the PCR allocation of PCR_Allocate.
            vs.pcrs = PcrBanks::with_allocation(&ctx.ps().pcr_allocated);
            let ps = ctx.ps_mut();
            ps.reset_count += 1;
            ps.restart_count = 0;
            ps.total_reset_count += 1;
            ps.da.lockout_auth_blocked_until_reset = false;
            ps.nv.startup_clear(true);
        }
    }
    let mut seed = alloc::vec![0u8; 48];
    let mut proof = alloc::vec![0u8; 48];
    ctx.random(&mut seed);
    ctx.random(&mut proof);
    vs.null_seed = seed;
    vs.null_proof = proof;
    // A new commit nonce at every Startup: earlier EC_Ephemeral commitments are void.
    let mut commit_nonce = zeroize::Zeroizing::new(alloc::vec![0u8; 32]);
    ctx.random(&mut commit_nonce);
    vs.commit.nonce = commit_nonce;
    vs.platform_auth = AuthValue::default();
    vs.platform_policy = PolicyDigest::none();
    vs.started = true;
    vs.self_tested = ctx.tpm.vs.self_tested;
    ctx.tpm.vs = vs;
    ctx.ps_mut().orderly = None;
    Ok(Response::empty())
}

/// Part 3, 9.4 TPM2_Shutdown: records an orderly shutdown, with the PCRs for Shutdown(STATE).
#[doc(alias = "TPM2_Shutdown")]
fn shutdown(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let su = read_su(&mut r)?;
    r.finish()?;
    let orderly = if su == SU_STATE {
        Orderly::State(SavedState {
            pcrs: ctx.tpm.vs.pcrs.clone(),
            pcr_update_counter: ctx.tpm.vs.pcr_update_counter,
            pcr_auth: ctx.tpm.vs.pcr_auth.clone(),
        })
    } else {
        Orderly::Clear
    };
    // The clock is saved with the orderly state, so the next start knows it is safe.
    let clock = ctx.clock();
    let ps = ctx.ps_mut();
    ps.clock = clock;
    ps.orderly = Some(orderly);
    // Sequences and transient objects do not survive a shutdown.
    let _ = Slot::Sequence;
    Ok(Response::empty())
}
