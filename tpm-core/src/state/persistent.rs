//! Persistent objects made by EvictControl (Part 3, 28.5): kept in NV, so they are part of
//! [`crate::state::PersistentState`] and survive a restart of the server.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::handle::Handle;

/// Most persistent objects at once (TPM_PT_HR_PERSISTENT_MIN is 7; we allow more).
pub const MAX_PERSISTENT: usize = 16;

/// An evicted object as stored: the marshalled public area, the marshalled TPMT_SENSITIVE (in
/// the clear: the whole state blob is sealed by the platform store, DESIGN §5) and the
/// hierarchy it belongs to.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct StoredObject {
    pub public: Vec<u8>,
    pub sensitive: Vec<u8>,
    /// TPM_RH_OWNER / ENDORSEMENT / PLATFORM.
    pub hierarchy: u32,
    pub qualified_name: Vec<u8>,
    pub primary: bool,
}

impl core::fmt::Debug for StoredObject {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "StoredObject(hierarchy {:#x})", self.hierarchy)
    }
}

/// Objects stored in NV under persistent handles (0x81xxxxxx).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistentObjects {
    pub objects: BTreeMap<u32, StoredObject>,
}

impl PersistentObjects {
    pub fn get(&self, h: Handle) -> Option<&StoredObject> {
        self.objects.get(&h.0)
    }

    pub fn contains(&self, h: Handle) -> bool {
        self.objects.contains_key(&h.0)
    }

    pub fn handles(&self) -> impl Iterator<Item = Handle> + '_ {
        self.objects.keys().map(|&h| Handle(h))
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}
