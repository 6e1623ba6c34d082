//! Adapter from a byte-filling closure (the engine DRBG, or a DRBG instantiated from a
//! primary seed) to the `rand_core` traits the RustCrypto key generators take.

use core::convert::Infallible;

use rand_core::{TryCryptoRng, TryRng};

/// A `rand_core` generator over `fill`. Key generation only sees what `fill` produces, so a
/// deterministic `fill` (a DRBG seeded with KDFa output) gives a deterministic key.
pub struct FillRng<F: FnMut(&mut [u8])>(pub F);

impl<F: FnMut(&mut [u8])> TryRng for FillRng<F> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        (self.0)(&mut b);
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        (self.0)(&mut b);
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        (self.0)(dst);
        Ok(())
    }
}

/// The closure is a cryptographically secure source: the engine's HMAC_DRBG.
impl<F: FnMut(&mut [u8])> TryCryptoRng for FillRng<F> {}
