//! NV indices (Part 1, 37 "NV Memory"; Part 2, 13 NV storage structures).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::crypto::hash::HashAlg;
use crate::handle::Handle;
use crate::state::AuthValue;

/// TPMA_NV bits (Part 2, 13.4).
pub mod attr {
    pub const PPWRITE: u32 = 1 << 0;
    pub const OWNERWRITE: u32 = 1 << 1;
    pub const AUTHWRITE: u32 = 1 << 2;
    pub const POLICYWRITE: u32 = 1 << 3;
    /// TPM_NT in bits 4..7.
    pub const TPM_NT_SHIFT: u32 = 4;
    pub const TPM_NT_MASK: u32 = 0xF << TPM_NT_SHIFT;
    pub const POLICY_DELETE: u32 = 1 << 10;
    pub const WRITELOCKED: u32 = 1 << 11;
    pub const WRITEALL: u32 = 1 << 12;
    pub const WRITEDEFINE: u32 = 1 << 13;
    pub const WRITE_STCLEAR: u32 = 1 << 14;
    pub const GLOBALLOCK: u32 = 1 << 15;
    pub const PPREAD: u32 = 1 << 16;
    pub const OWNERREAD: u32 = 1 << 17;
    pub const AUTHREAD: u32 = 1 << 18;
    pub const POLICYREAD: u32 = 1 << 19;
    /// Bits 20..24 are reserved.
    pub const RESERVED: u32 = 0x1F << 20 | 0x3 << 8;
    pub const NO_DA: u32 = 1 << 25;
    pub const ORDERLY: u32 = 1 << 26;
    pub const CLEAR_STCLEAR: u32 = 1 << 27;
    pub const READLOCKED: u32 = 1 << 28;
    pub const WRITTEN: u32 = 1 << 29;
    pub const PLATFORMCREATE: u32 = 1 << 30;
    pub const READ_STCLEAR: u32 = 1 << 31;
}

/// TPM_NT (Part 2, 13.3): the kind of index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NvType {
    Ordinary,
    Counter,
    Bits,
    Extend,
    PinFail,
    PinPass,
}

impl NvType {
    pub fn from_attributes(a: u32) -> Option<Self> {
        Some(match (a & attr::TPM_NT_MASK) >> attr::TPM_NT_SHIFT {
            0 => Self::Ordinary,
            1 => Self::Counter,
            2 => Self::Bits,
            4 => Self::Extend,
            8 => Self::PinFail,
            9 => Self::PinPass,
            _ => return None,
        })
    }
}

/// Total NV bytes available to indices (index data plus a fixed per-index overhead), and the
/// largest single index (TPM_PT_NV_INDEX_MAX). Reported by GetCapability.
pub const NV_MEMORY_SIZE: usize = 64 * 1024;
/// TPM_PT_NV_INDEX_MAX: largest dataSize of an ordinary index.
pub const MAX_NV_INDEX_SIZE: u16 = 2048;
/// TPM_PT_NV_BUFFER_MAX: largest NV_Read/NV_Write chunk.
pub const MAX_NV_BUFFER_SIZE: u16 = 1024;
/// Most indices that can be defined (TPM_PT_NV_INDEX_MAX bounds size, this bounds count).
pub const MAX_NV_INDICES: usize = 128;
/// Bookkeeping charged per index against [`NV_MEMORY_SIZE`] (public area, auth, handle).
pub const NV_INDEX_OVERHEAD: usize = 128;

/// One NV index: TPMS_NV_PUBLIC, its authValue and its data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvIndex {
    pub handle: Handle,
    pub name_alg: HashAlg,
    /// TPMA_NV, including the state bits (WRITTEN, WRITELOCKED, READLOCKED).
    pub attributes: u32,
    pub auth_policy: Vec<u8>,
    pub data_size: u16,
    pub auth: AuthValue,
    /// Contents; `data_size` octets once written (zero-filled before).
    pub data: Vec<u8>,
}

impl NvIndex {
    pub fn nv_type(&self) -> NvType {
        NvType::from_attributes(self.attributes).unwrap_or(NvType::Ordinary)
    }

    pub fn has(&self, bits: u32) -> bool {
        self.attributes & bits == bits
    }

    /// TPMS_NV_PUBLIC marshalled (Part 2, 13.5).
    pub fn public_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(14 + self.auth_policy.len());
        v.extend_from_slice(&self.handle.0.to_be_bytes());
        v.extend_from_slice(&self.name_alg.alg_id().to_be_bytes());
        v.extend_from_slice(&self.attributes.to_be_bytes());
        v.extend_from_slice(&(self.auth_policy.len() as u16).to_be_bytes());
        v.extend_from_slice(&self.auth_policy);
        v.extend_from_slice(&self.data_size.to_be_bytes());
        v
    }

    /// Name = nameAlg || H_nameAlg(TPMS_NV_PUBLIC) (Part 1, 16).
    pub fn name(&self) -> Vec<u8> {
        let mut n = self.name_alg.alg_id().to_be_bytes().to_vec();
        n.extend_from_slice(&self.name_alg.digest(&[&self.public_bytes()]));
        n
    }

    /// NV memory this index takes.
    pub fn footprint(&self) -> usize {
        NV_INDEX_OVERHEAD + usize::from(self.data_size) + self.auth_policy.len()
    }

    /// The 8-octet value of a counter or bit-field index.
    pub fn u64_value(&self) -> u64 {
        let mut b = [0u8; 8];
        for (d, s) in b.iter_mut().zip(self.data.iter()) {
            *d = *s;
        }
        u64::from_be_bytes(b)
    }
}

/// All defined NV indices and their data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvStore {
    pub indices: BTreeMap<u32, NvIndex>,
    /// Highest value any counter index has had (Part 1, 37.7.2: a new counter starts at
    /// least here, so counters never go backwards, not even across TPM2_Clear).
    pub max_counter: u64,
}

impl NvStore {
    pub fn get(&self, h: Handle) -> Option<&NvIndex> {
        self.indices.get(&h.0)
    }

    pub fn get_mut(&mut self, h: Handle) -> Option<&mut NvIndex> {
        self.indices.get_mut(&h.0)
    }

    pub fn contains(&self, h: Handle) -> bool {
        self.indices.contains_key(&h.0)
    }

    pub fn handles(&self) -> impl Iterator<Item = Handle> + '_ {
        self.indices.keys().map(|&h| Handle(h))
    }

    /// NV memory used by all indices.
    pub fn used(&self) -> usize {
        self.indices.values().map(NvIndex::footprint).sum()
    }

    /// NV bytes still free for indices (TPM_PT_NV_... reporting and TPM_RC_NV_SPACE).
    pub fn available(&self) -> usize {
        NV_MEMORY_SIZE.saturating_sub(self.used())
    }

    /// TPM Reset or Restart (Part 3, 31.3.1 and 31.x): read locks end; WRITTEN is cleared for
    /// non-counter CLEAR_STCLEAR indices (and ORDERLY ones at TPM Reset); write locks end
    /// unless the index is WRITEDEFINE and written (then the lock is permanent). Startup calls
    /// this for every TPM Reset or TPM Restart, not for TPM Resume.
    pub fn startup_clear(&mut self, tpm_reset: bool) {
        for ix in self.indices.values_mut() {
            ix.attributes &= !attr::READLOCKED;
            if ix.nv_type() != NvType::Counter
                && (ix.has(attr::CLEAR_STCLEAR) || (ix.has(attr::ORDERLY) && tpm_reset))
            {
                ix.attributes &= !attr::WRITTEN;
            }
            if !(ix.has(attr::WRITTEN) && ix.has(attr::WRITEDEFINE)) {
                ix.attributes &= !attr::WRITELOCKED;
            }
        }
    }

    /// TPM2_Clear (Part 3, 24.6): removes the owner-hierarchy indices (those without
    /// PLATFORMCREATE). `max_counter` survives.
    pub fn clear_owner(&mut self) {
        let highest = self
            .indices
            .values()
            .filter(|ix| !ix.has(attr::PLATFORMCREATE))
            .filter(|ix| ix.nv_type() == NvType::Counter && ix.has(attr::WRITTEN))
            .map(NvIndex::u64_value)
            .max();
        if let Some(v) = highest {
            self.note_counter(v);
        }
        self.indices.retain(|_, ix| ix.has(attr::PLATFORMCREATE));
    }

    /// Notes a counter value so later counters start above it.
    pub fn note_counter(&mut self, v: u64) {
        if v > self.max_counter {
            self.max_counter = v;
        }
    }
}
