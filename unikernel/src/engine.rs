//! The TPM engine as the unikernel sees it: [`ukvtpm_tpm_core::Engine`] over a [`Platform`]
//! whose entropy, clock and state store the kernel supplies.
#![forbid(unsafe_code)]

use alloc::vec::Vec;

pub use ukvtpm_tpm_core::{CommitError, Engine, Platform};

/// Where committed state goes. For now it stays in RAM and is lost when the backend stops:
/// the sealed-state store (DESIGN §5, a later issue) replaces this with AEAD-sealed blobs
/// acknowledged by the host store before the response is released.
#[derive(Debug, Default)]
pub struct RamStateStore {
    /// Latest committed version.
    pub version: u64,
    /// Latest committed state blob.
    pub state: Vec<u8>,
}

impl RamStateStore {
    /// Keeps `state` as version `version`.
    pub fn commit(&mut self, version: u64, state: &[u8]) -> Result<(), CommitError> {
        self.version = version;
        self.state.clear();
        self.state.extend_from_slice(state);
        Ok(())
    }
}

/// Platform services the kernel plugs into the engine: `entropy` and `now_ms` come from the
/// hardware (RDRAND/RDSEED, the calibrated TSC); state goes to a [`RamStateStore`].
pub struct KernelPlatform<R, C>
where
    R: FnMut(&mut [u8]),
    C: FnMut() -> u64,
{
    /// Fills a buffer with cryptographically strong random bytes; must not fail (it halts).
    pub entropy: R,
    /// Milliseconds since boot.
    pub now_ms: C,
    /// Committed state.
    pub store: RamStateStore,
}

impl<R, C> core::fmt::Debug for KernelPlatform<R, C>
where
    R: FnMut(&mut [u8]),
    C: FnMut() -> u64,
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KernelPlatform")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl<R, C> Platform for KernelPlatform<R, C>
where
    R: FnMut(&mut [u8]),
    C: FnMut() -> u64,
{
    fn entropy(&mut self, dest: &mut [u8]) {
        (self.entropy)(dest);
    }

    fn now_ms(&mut self) -> u64 {
        (self.now_ms)()
    }

    fn commit(&mut self, version: u64, state: &[u8]) -> Result<(), CommitError> {
        self.store.commit(version, state)
    }
}
