//! Loaded transient entities: objects and sequences share the transient handle range
//! (Part 1, 15.2 "Transient Objects"; Part 3, 17 "Hash/HMAC/Event Sequences").

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::crypto::hash::{HashAlg, Hasher};
use crate::handle::Handle;
use crate::object::Object;
use crate::state::AuthValue;

/// Transient object slots (TPM_PT_HR_TRANSIENT_MIN). libtpms has 3; we offer more so clients
/// without a resource manager hit TPM_RC_OBJECT_MEMORY later.
pub const MAX_LOADED_OBJECTS: usize = 8;

/// A hash or event sequence started by HashSequenceStart (Part 3, 17.3).
#[derive(Clone, Debug)]
pub struct HashSequence {
    pub auth: AuthValue,
    pub kind: SequenceKind,
    /// `None` until the first block arrives; then whether it was safe to give a hash ticket
    /// for: at least four octets not starting with TPM_GENERATED_VALUE, so the digest cannot
    /// be of a TPM-generated structure (Part 3, 17.5; reference TicketIsSafe).
    pub ticket_safe: Option<bool>,
}

/// What a sequence computes.
#[derive(Clone, Debug)]
pub enum SequenceKind {
    /// A hash sequence with one algorithm.
    Hash(Hasher),
    /// An event sequence: one hasher per implemented PCR bank (hashAlg = TPM_ALG_NULL).
    Event(Vec<Hasher>),
    /// An HMAC sequence (HMAC_Start, Part 3, 17.2): built by the keys work with
    /// [`HmacState::new`]; SequenceUpdate/SequenceComplete already handle it.
    Hmac(HmacState),
}

/// An incremental HMAC (Part 1, 11.4.9): the inner hash already holds key ⊕ ipad, the
/// outer key block is kept for the final hash.
#[derive(Clone, Debug)]
pub struct HmacState {
    inner: Hasher,
    outer_key: zeroize::Zeroizing<Vec<u8>>,
}

impl HmacState {
    pub fn new(alg: HashAlg, key: &[u8]) -> Self {
        let block = alg.block_size();
        let mut k = zeroize::Zeroizing::new(if key.len() > block {
            alg.digest(&[key])
        } else {
            key.to_vec()
        });
        k.resize(block, 0);
        let ipad: zeroize::Zeroizing<Vec<u8>> =
            zeroize::Zeroizing::new(k.iter().map(|b| b ^ 0x36).collect());
        let mut inner = alg.hasher();
        inner.update(&ipad);
        Self {
            inner,
            outer_key: zeroize::Zeroizing::new(k.iter().map(|b| b ^ 0x5c).collect()),
        }
    }

    pub fn alg(&self) -> HashAlg {
        self.inner.alg()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    pub fn finish(self) -> Vec<u8> {
        let alg = self.inner.alg();
        let inner = self.inner.finish();
        alg.digest(&[&self.outer_key, &inner])
    }
}

/// Everything that can occupy a transient handle.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Slot {
    Sequence(HashSequence),
    /// A loaded object (Part 1, 23). Shared so handlers can hold it while using `ctx`.
    Object(Arc<Object>),
}

/// Loaded transient entities by handle.
#[derive(Clone, Debug, Default)]
pub struct ObjectStore {
    slots: BTreeMap<u32, Slot>,
    /// Persistent objects rebuilt from NV (see `crate::entity::object`); dropped with the
    /// rest of volatile state, and by EvictControl for its handle.
    pub persistent_cache: BTreeMap<u32, Arc<Object>>,
    /// Sequence number of the last saved context (TPMS_CONTEXT.sequence).
    context_sequence: u64,
}

impl ObjectStore {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.slots.len() >= MAX_LOADED_OBJECTS
    }

    /// Inserts `slot` under a fresh transient handle, or `None` when memory is full.
    pub fn insert(&mut self, slot: Slot) -> Option<Handle> {
        if self.is_full() {
            return None;
        }
        // The lowest free slot, as libtpms allocates (TRANSIENT_FIRST + slot index): a
        // client that loads one object into an empty TPM always gets 0x80000000.
        for i in 0..MAX_LOADED_OBJECTS as u32 {
            let h = Handle::TRANSIENT_FIRST.0 + i;
            if let alloc::collections::btree_map::Entry::Vacant(e) = self.slots.entry(h) {
                e.insert(slot);
                return Some(Handle(h));
            }
        }
        None
    }

    pub fn get(&self, h: Handle) -> Option<&Slot> {
        self.slots.get(&h.0)
    }

    pub fn get_mut(&mut self, h: Handle) -> Option<&mut Slot> {
        self.slots.get_mut(&h.0)
    }

    pub fn remove(&mut self, h: Handle) -> Option<Slot> {
        self.slots.remove(&h.0)
    }

    pub fn contains(&self, h: Handle) -> bool {
        self.slots.contains_key(&h.0)
    }

    pub fn handles(&self) -> impl Iterator<Item = Handle> + '_ {
        self.slots.keys().map(|&h| Handle(h))
    }

    pub fn clear(&mut self) {
        self.slots.clear();
    }

    /// The next saved-context sequence number.
    pub fn next_context_sequence(&mut self) -> u64 {
        self.context_sequence = self.context_sequence.wrapping_add(1);
        self.context_sequence
    }

    /// The loaded object at transient handle `h`.
    pub fn object(&self, h: Handle) -> Option<&Arc<Object>> {
        match self.slots.get(&h.0) {
            Some(Slot::Object(o)) => Some(o),
            _ => None,
        }
    }

    /// Removes every object of `hierarchy` (the hierarchy was disabled or its seed changed).
    pub fn flush_hierarchy(&mut self, hierarchy: Handle) {
        self.slots
            .retain(|_, s| !matches!(s, Slot::Object(o) if o.hierarchy == hierarchy));
    }
}

/// Convenience for sequence constructors.
pub fn new_hash_sequence(alg: HashAlg, auth: AuthValue) -> HashSequence {
    HashSequence {
        auth,
        kind: SequenceKind::Hash(alg.hasher()),
        ticket_safe: None,
    }
}
