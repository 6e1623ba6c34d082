//! Hash algorithms the engine implements: SHA-1, SHA-256, SHA-384 (Part 2, 6.3 TPM_ALG_ID).

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha384};

/// A hash algorithm the engine implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
}

/// All implemented hash algorithms, in TPM_ALG_ID order (the order GetCapability lists them).
pub const HASH_ALGS: [HashAlg; 3] = [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha384];

/// Largest digest the engine produces (SHA-384).
pub const MAX_DIGEST_SIZE: usize = 48;

impl HashAlg {
    pub const fn from_alg_id(id: u16) -> Option<Self> {
        match id {
            0x0004 => Some(Self::Sha1),
            0x000B => Some(Self::Sha256),
            0x000C => Some(Self::Sha384),
            _ => None,
        }
    }

    pub const fn alg_id(self) -> u16 {
        match self {
            Self::Sha1 => 0x0004,
            Self::Sha256 => 0x000B,
            Self::Sha384 => 0x000C,
        }
    }

    pub const fn digest_size(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
        }
    }

    /// Block size, used by HMAC and reported in GetCapability.
    pub const fn block_size(self) -> usize {
        match self {
            Self::Sha1 | Self::Sha256 => 64,
            Self::Sha384 => 128,
        }
    }

    pub fn hasher(self) -> Hasher {
        match self {
            Self::Sha1 => Hasher::Sha1(Sha1::new()),
            Self::Sha256 => Hasher::Sha256(Sha256::new()),
            Self::Sha384 => Hasher::Sha384(Sha384::new()),
        }
    }

    /// One-shot digest of the concatenation of `parts`.
    pub fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        let mut h = self.hasher();
        for p in parts {
            h.update(p);
        }
        h.finish()
    }
}

/// An incremental hash computation.
#[derive(Clone, Debug)]
pub enum Hasher {
    Sha1(Sha1),
    Sha256(Sha256),
    Sha384(Sha384),
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha1(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Sha384(h) => h.update(data),
        }
    }

    pub fn alg(&self) -> HashAlg {
        match self {
            Self::Sha1(_) => HashAlg::Sha1,
            Self::Sha256(_) => HashAlg::Sha256,
            Self::Sha384(_) => HashAlg::Sha384,
        }
    }

    pub fn finish(self) -> Vec<u8> {
        match self {
            Self::Sha1(h) => h.finalize().to_vec(),
            Self::Sha256(h) => h.finalize().to_vec(),
            Self::Sha384(h) => h.finalize().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // FIPS 180-2 "abc" vectors.
        let abc = HashAlg::Sha256.digest(&[b"a", b"bc"]);
        assert_eq!(abc[..4], [0xba, 0x78, 0x16, 0xbf]);
        assert_eq!(
            HashAlg::Sha1.digest(&[b"abc"])[..4],
            [0xa9, 0x99, 0x3e, 0x36]
        );
        assert_eq!(HashAlg::Sha384.digest(&[b"abc"]).len(), 48);
    }
}
