//! TPM handles (Part 2, 7 Handles): the top byte is the handle type.

use core::fmt;
use serde::{Deserialize, Serialize};

/// A TPM_HANDLE.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Handle(pub u32);

/// TPM_HT: the handle type in the most significant octet (Part 2, 7.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandleType {
    Pcr,
    NvIndex,
    HmacSession,
    PolicySession,
    Permanent,
    Transient,
    Persistent,
    Other(u8),
}

impl Handle {
    // Part 2, 7.4 TPM_RH: permanent handles.
    pub const OWNER: Self = Self(0x4000_0001);
    pub const NULL: Self = Self(0x4000_0007);
    pub const UNASSIGNED: Self = Self(0x4000_0008);
    pub const PASSWORD: Self = Self(0x4000_0009);
    pub const LOCKOUT: Self = Self(0x4000_000A);
    pub const ENDORSEMENT: Self = Self(0x4000_000B);
    pub const PLATFORM: Self = Self(0x4000_000C);
    pub const PLATFORM_NV: Self = Self(0x4000_000D);

    /// First handle of each range (Part 2, 7.5 TPM_HC).
    pub const PCR_FIRST: Self = Self(0x0000_0000);
    pub const HMAC_SESSION_FIRST: Self = Self(0x0200_0000);
    pub const POLICY_SESSION_FIRST: Self = Self(0x0300_0000);
    pub const TRANSIENT_FIRST: Self = Self(0x8000_0000);
    pub const PERSISTENT_FIRST: Self = Self(0x8100_0000);
    pub const NV_INDEX_FIRST: Self = Self(0x0100_0000);

    pub const fn raw(self) -> u32 {
        self.0
    }

    pub const fn kind(self) -> HandleType {
        match (self.0 >> 24) as u8 {
            0x00 => HandleType::Pcr,
            0x01 => HandleType::NvIndex,
            0x02 => HandleType::HmacSession,
            0x03 => HandleType::PolicySession,
            0x40 => HandleType::Permanent,
            0x80 => HandleType::Transient,
            0x81 => HandleType::Persistent,
            other => HandleType::Other(other),
        }
    }

    /// The PCR index when this is a PCR handle.
    pub const fn pcr_index(self) -> Option<usize> {
        match self.kind() {
            HandleType::Pcr => Some(self.0 as usize),
            _ => None,
        }
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handle({:#010x})", self.0)
    }
}
