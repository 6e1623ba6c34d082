//! The engine's state and the context a command handler runs in.

use crate::crypto::drbg::{Drbg, SEED_LEN};
use crate::platform::Platform;
use crate::state::{PersistentState, Volatile};

/// Persistent TPM NV clock updates happen when the clock crosses a multiple of this many ms
/// (the reference implementation's NV_CLOCK_UPDATE_INTERVAL of 2^22 ms, about 70 minutes),
/// so the clock does not turn every command into an NV write.
pub const CLOCK_NV_INTERVAL_MS: u64 = 1 << 22;

/// All engine state.
#[derive(Debug)]
pub struct Tpm {
    ps: PersistentState,
    pub vs: Volatile,
    pub drbg: Drbg,
    /// `ps` changed since the last commit.
    dirty: bool,
}

impl Tpm {
    pub fn new(ps: PersistentState, vs: Volatile, drbg: Drbg) -> Self {
        Self {
            ps,
            vs,
            drbg,
            dirty: false,
        }
    }

    pub fn ps(&self) -> &PersistentState {
        &self.ps
    }

    /// Mutable access to persistent state; marks it for commit after the command.
    pub fn ps_mut(&mut self) -> &mut PersistentState {
        self.dirty = true;
        &mut self.ps
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub fn mark_clean(&mut self) {
        self.dirty = false;
    }

    /// Replaces the persistent state (rollback after a failed commit).
    pub fn replace_ps(&mut self, ps: PersistentState) {
        self.ps = ps;
        self.dirty = false;
    }

    /// Brings the clock up to `now_ms`; persists it when it crosses an NV update boundary.
    pub fn advance_clock(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.vs.clock_base_ms);
        if elapsed == 0 {
            return;
        }
        let old = self.ps.clock;
        let new = old.saturating_add(elapsed);
        self.vs.clock_base_ms = now_ms;
        if old / CLOCK_NV_INTERVAL_MS != new / CLOCK_NV_INTERVAL_MS {
            self.ps_mut().clock = new;
        } else {
            self.ps.clock = new;
        }
    }
}

/// What a command handler works with.
pub struct Ctx<'a> {
    pub tpm: &'a mut Tpm,
    pub platform: &'a mut dyn Platform,
    pub locality: u8,
    /// Platform time when the command started.
    pub now_ms: u64,
}

impl core::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ctx")
            .field("locality", &self.locality)
            .finish()
    }
}

impl Ctx<'_> {
    pub fn ps(&self) -> &PersistentState {
        self.tpm.ps()
    }

    pub fn ps_mut(&mut self) -> &mut PersistentState {
        self.tpm.ps_mut()
    }

    /// Random bytes from the engine's DRBG, reseeded from the platform when due.
    pub fn random(&mut self, out: &mut [u8]) {
        if self.tpm.drbg.needs_reseed() {
            let mut seed = [0u8; SEED_LEN];
            self.platform.entropy(&mut seed);
            self.tpm.drbg.reseed(&seed);
        }
        self.tpm.drbg.fill(out);
    }

    /// TPMS_CLOCK_INFO.clock: ms the TPM has been powered, across power cycles.
    pub fn clock(&self) -> u64 {
        self.tpm.ps().clock
    }

    /// TPMS_TIME_INFO.time: ms since the last `_TPM_Init`.
    pub fn time(&self) -> u64 {
        self.now_ms.saturating_sub(self.tpm.vs.init_ms)
    }
}
