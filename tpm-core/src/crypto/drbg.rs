//! The engine's random number generator: HMAC_DRBG with SHA-256 (NIST SP 800-90A Rev. 1,
//! 10.1.2), seeded from platform entropy. TPM2_StirRandom feeds additional input into it
//! (Part 3, 16.2), and it reseeds itself from the platform after a bounded number of
//! requests.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroize;

type HmacSha256 = Hmac<Sha256>;

/// Requests served before the generator pulls fresh platform entropy (SP 800-90A allows 2^48;
/// we reseed far more often because it costs one platform call).
const RESEED_INTERVAL: u32 = 1 << 16;

/// Bytes of platform entropy used per (re)seed: 256 bits of security strength plus nonce.
pub const SEED_LEN: usize = 48;

/// HMAC_DRBG state (key K and value V).
pub struct Drbg {
    k: [u8; 32],
    v: [u8; 32],
    requests: u32,
}

impl core::fmt::Debug for Drbg {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Drbg { .. }")
    }
}

impl Drop for Drbg {
    fn drop(&mut self) {
        self.k.zeroize();
        self.v.zeroize();
    }
}

fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

impl Drbg {
    /// Instantiates the generator from `seed` (SP 800-90A, 10.1.2.3).
    pub fn new(seed: &[u8]) -> Self {
        let mut d = Self {
            k: [0; 32],
            v: [1; 32],
            requests: 0,
        };
        d.update(seed);
        d
    }

    /// HMAC_DRBG_Update (SP 800-90A, 10.1.2.2).
    fn update(&mut self, data: &[u8]) {
        self.k = hmac(&self.k, &[&self.v, &[0x00], data]);
        self.v = hmac(&self.k, &[&self.v]);
        if !data.is_empty() {
            self.k = hmac(&self.k, &[&self.v, &[0x01], data]);
            self.v = hmac(&self.k, &[&self.v]);
        }
    }

    /// Mixes caller data into the state (reseed with additional input, 10.1.2.4).
    pub fn stir(&mut self, data: &[u8]) {
        self.update(data);
    }

    /// True when the generator wants fresh platform entropy before the next request.
    pub fn needs_reseed(&self) -> bool {
        self.requests >= RESEED_INTERVAL
    }

    /// Reseeds from fresh platform entropy.
    pub fn reseed(&mut self, entropy: &[u8]) {
        self.update(entropy);
        self.requests = 0;
    }

    /// HMAC_DRBG_Generate (10.1.2.5) without additional input.
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(32) {
            self.v = hmac(&self.k, &[&self.v]);
            chunk.copy_from_slice(&self.v[..chunk.len()]);
        }
        self.update(&[]);
        self.requests = self.requests.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_for_a_seed_and_stir_changes_output() {
        let mut a = Drbg::new(&[7; SEED_LEN]);
        let mut b = Drbg::new(&[7; SEED_LEN]);
        let (mut x, mut y) = ([0u8; 40], [0u8; 40]);
        a.fill(&mut x);
        b.fill(&mut y);
        assert_eq!(x, y);
        b.stir(b"extra");
        a.fill(&mut x);
        b.fill(&mut y);
        assert_ne!(x, y);
    }
}
