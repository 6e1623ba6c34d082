//! The one seam between the engine and its host (DESIGN §3): entropy, time and durable
//! storage. `ukvtpm serve` implements it over the OS; the unikernel over RDSEED, the TSC and
//! the sealed-state store.

/// A durable store refused or failed to store the state. Opaque on purpose: the engine only
/// needs to know that the old state still stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitError;

impl core::fmt::Display for CommitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the platform could not store the TPM state durably")
    }
}

#[cfg(feature = "std")]
extern crate std;
#[cfg(feature = "std")]
impl std::error::Error for CommitError {}

/// Services the host provides to the engine.
pub trait Platform {
    /// Fills `dest` with entropy from a source the host trusts (seeds the engine's DRBG).
    fn entropy(&mut self, dest: &mut [u8]);

    /// Milliseconds of a monotonic clock (any origin; only differences are used).
    fn now_ms(&mut self) -> u64;

    /// Durably stores the complete new persistent state, commit number `version` (one more
    /// than the previous commit). The engine releases the command's response only after this
    /// returns `Ok`; on `Err` it answers TPM_RC_NV_UNAVAILABLE and keeps the previous state.
    ///
    /// # Errors
    ///
    /// [`CommitError`] when the state was not stored.
    fn commit(&mut self, version: u64, state: &[u8]) -> Result<(), CommitError>;
}
