//! The durable state blob: `MAGIC || FORMAT_VERSION (u32 BE) || commit version (u64 BE) ||
//! postcard(PersistentState)`. The commit version increases by one per commit, so a store or a
//! freshness anchor can tell newer from older blobs (DESIGN §5).
//!
//! The header lets a future engine recognise and migrate old blobs, and lets the host refuse a
//! file that is not ours instead of misreading it. Confidentiality and integrity of the blob
//! are the sealed-state store's job (DESIGN §5), not this module's.

use alloc::vec::Vec;
use core::fmt;

use super::PersistentState;

/// Identifies a ukvtpm state blob.
pub const MAGIC: &[u8; 8] = b"UKVTPMST";
/// Version of the serialized layout; bump on any change to `PersistentState`.
pub const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = MAGIC.len() + 4 + 8;

/// Why a state blob could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// Shorter than the header or not starting with [`MAGIC`].
    NotAStateBlob,
    /// Written by a different layout version.
    UnsupportedVersion(u32),
    /// The body does not decode.
    Corrupt,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAStateBlob => f.write_str("not a ukvtpm state blob (bad magic or too short)"),
            Self::UnsupportedVersion(v) => write!(
                f,
                "state blob has format version {v}, this build reads version {FORMAT_VERSION}"
            ),
            Self::Corrupt => f.write_str("state blob is corrupt (body does not decode)"),
        }
    }
}

#[cfg(feature = "std")]
extern crate std;
#[cfg(feature = "std")]
impl std::error::Error for StateError {}

/// Serializes `state` as commit number `version`.
pub fn encode(state: &PersistentState, version: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    // postcard into a Vec only fails on allocation failure, which aborts anyway.
    if let Ok(body) = postcard::to_allocvec(state) {
        out.extend_from_slice(&body);
    }
    out
}

/// Parses a blob written by [`encode`], returning the state and its commit version.
pub fn decode(blob: &[u8]) -> Result<(PersistentState, u64), StateError> {
    if blob.len() < HEADER_LEN || &blob[..MAGIC.len()] != MAGIC {
        return Err(StateError::NotAStateBlob);
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&blob[MAGIC.len()..MAGIC.len() + 4]);
    let format = u32::from_be_bytes(v);
    if format != FORMAT_VERSION {
        return Err(StateError::UnsupportedVersion(format));
    }
    let mut c = [0u8; 8];
    c.copy_from_slice(&blob[MAGIC.len() + 4..HEADER_LEN]);
    let version = u64::from_be_bytes(c);
    match postcard::take_from_bytes::<PersistentState>(&blob[HEADER_LEN..]) {
        Ok((state, [])) => Ok((state, version)),
        _ => Err(StateError::Corrupt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_refusals() {
        let mut n = 0u8;
        let s = PersistentState::manufacture(|b| {
            for x in b {
                n = n.wrapping_add(1);
                *x = n;
            }
        });
        let blob = encode(&s, 42);
        assert_eq!(decode(&blob), Ok((s, 42)));
        assert_eq!(decode(b"nope"), Err(StateError::NotAStateBlob));
        let mut bad = blob.clone();
        bad[11] = 9;
        assert_eq!(decode(&bad), Err(StateError::UnsupportedVersion(9)));
        assert_eq!(decode(&blob[..blob.len() - 1]), Err(StateError::Corrupt));
    }

    fn nv_index() -> impl Strategy<Value = super::super::nv::NvIndex> {
        use crate::crypto::hash::HashAlg;
        (
            0x0100_0000u32..0x01FF_FFFF,
            prop_oneof![
                Just(HashAlg::Sha1),
                Just(HashAlg::Sha256),
                Just(HashAlg::Sha384)
            ],
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..48),
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::vec(any::<u8>(), 0..32),
        )
            .prop_map(|(h, alg, attributes, policy, data, auth)| {
                super::super::nv::NvIndex {
                    handle: crate::handle::Handle(h),
                    name_alg: alg,
                    attributes,
                    auth_policy: policy,
                    data_size: data.len() as u16,
                    auth: crate::state::AuthValue::new(&auth),
                    data,
                }
            })
    }

    proptest! {
        /// Whatever the NV indices, DA counters and clock, a state survives encode/decode.
        #[test]
        fn persistent_state_round_trips(
            indices in proptest::collection::vec(nv_index(), 0..8),
            max_counter in any::<u64>(),
            failed in any::<u32>(),
            clock in any::<u64>(),
            version in any::<u64>(),
            seed in any::<u8>(),
        ) {
            let mut s = PersistentState::manufacture(|b| b.fill(seed));
            for ix in indices {
                s.nv.indices.insert(ix.handle.0, ix);
            }
            s.nv.max_counter = max_counter;
            s.da.failed_tries = failed;
            s.clock = clock;
            let blob = encode(&s, version);
            prop_assert_eq!(decode(&blob), Ok((s, version)));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut blob = MAGIC.to_vec();
            blob.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
            blob.extend_from_slice(&[0; 8]);
            blob.extend_from_slice(&bytes);
            let _ = decode(&blob);
        }
    }
}
