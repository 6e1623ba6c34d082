//! The host side of the engine: [`HostPlatform`] (OS entropy, monotonic clock, the state file)
//! and the [`Tpm`] impl the server drives.

use std::time::Instant;

use ukvtpm_tpm_core::{CommitError, Engine, Platform};

use super::device::Tpm;
use super::state::StateDir;

/// [`Platform`] over the host OS: `getrandom`, `Instant`, and the state directory.
#[derive(Debug)]
pub struct HostPlatform {
    store: StateDir,
    origin: Instant,
    /// False after the simulator's `TPM_SIGNAL_NV_OFF`: commits fail.
    nv_available: bool,
}

impl HostPlatform {
    /// A platform storing into `store`.
    pub fn new(store: StateDir) -> Self {
        HostPlatform {
            store,
            origin: Instant::now(),
            nv_available: true,
        }
    }
}

impl HostPlatform {
    /// The state directory.
    pub fn store_mut(&mut self) -> &mut StateDir {
        &mut self.store
    }
}

impl Platform for HostPlatform {
    fn entropy(&mut self, dest: &mut [u8]) {
        if let Err(e) = getrandom::fill(dest) {
            // Going on without entropy would make predictable keys: stop instead.
            tracing::error!("the OS random number generator failed: {e}");
            std::process::abort();
        }
    }

    fn now_ms(&mut self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn commit(&mut self, version: u64, state: &[u8]) -> Result<(), CommitError> {
        if !self.nv_available {
            tracing::debug!(
                version,
                "NV is off (simulator signal): state change refused"
            );
            return Err(CommitError);
        }
        match self.store.store(state) {
            Ok(()) => {
                tracing::debug!(version, bytes = state.len(), "state committed");
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    version,
                    "cannot write the state file {}: {e}; the TPM keeps its previous state and \
                     answers TPM_RC_NV_UNAVAILABLE",
                    self.store.state_path().display()
                );
                Err(CommitError)
            }
        }
    }
}

impl Tpm for Engine<HostPlatform> {
    fn execute(&mut self, locality: u8, command: &[u8]) -> Vec<u8> {
        Engine::execute(self, locality, command)
    }

    fn power_off(&mut self) {
        Engine::power_off(self);
    }

    fn power_on(&mut self) {
        Engine::power_on(self);
    }

    fn cancel(&mut self) {
        Engine::cancel(self);
    }

    fn set_nv_available(&mut self, available: bool) {
        self.platform_mut().nv_available = available;
    }
}
