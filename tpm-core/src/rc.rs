//! TPM response codes (Part 2, 6.6 TPM_RC).
//!
//! Format-zero codes are plain values; format-one codes (bit 7 set) carry the number of the
//! parameter, handle or session that caused the error, as a real TPM returns them.

use core::fmt;

/// A TPM_RC value as sent on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TpmRc(pub u32);

const RC_VER1: u32 = 0x100;
const RC_FMT1: u32 = 0x080;
const RC_WARN: u32 = 0x900;
/// Format-one: the number refers to a parameter (Part 2, 6.6.3, TPM_RC_P).
const RC_P: u32 = 0x040;
/// Format-one: the number refers to a session (TPM_RC_S) when P is clear and bit 11 is set.
const RC_S: u32 = 0x800;

impl TpmRc {
    pub const SUCCESS: Self = Self(0);
    pub const BAD_TAG: Self = Self(0x01E);

    pub const INITIALIZE: Self = Self(RC_VER1);
    pub const FAILURE: Self = Self(RC_VER1 + 0x001);
    pub const SEQUENCE: Self = Self(RC_VER1 + 0x003);
    pub const PRIVATE: Self = Self(RC_VER1 + 0x00B);
    pub const HMAC: Self = Self(RC_VER1 + 0x019);
    pub const DISABLED: Self = Self(RC_VER1 + 0x020);
    pub const EXCLUSIVE: Self = Self(RC_VER1 + 0x021);
    pub const AUTH_TYPE: Self = Self(RC_VER1 + 0x024);
    pub const AUTH_MISSING: Self = Self(RC_VER1 + 0x025);
    pub const POLICY: Self = Self(RC_VER1 + 0x026);
    pub const PCR: Self = Self(RC_VER1 + 0x027);
    pub const PCR_CHANGED: Self = Self(RC_VER1 + 0x028);
    pub const UPGRADE: Self = Self(RC_VER1 + 0x02D);
    pub const TOO_MANY_CONTEXTS: Self = Self(RC_VER1 + 0x02E);
    pub const AUTH_UNAVAILABLE: Self = Self(RC_VER1 + 0x02F);
    pub const REBOOT: Self = Self(RC_VER1 + 0x030);
    pub const UNBALANCED: Self = Self(RC_VER1 + 0x031);
    pub const COMMAND_SIZE: Self = Self(RC_VER1 + 0x042);
    pub const COMMAND_CODE: Self = Self(RC_VER1 + 0x043);
    pub const AUTHSIZE: Self = Self(RC_VER1 + 0x044);
    pub const AUTH_CONTEXT: Self = Self(RC_VER1 + 0x045);
    pub const NV_RANGE: Self = Self(RC_VER1 + 0x046);
    pub const NV_SIZE: Self = Self(RC_VER1 + 0x047);
    pub const NV_LOCKED: Self = Self(RC_VER1 + 0x048);
    pub const NV_AUTHORIZATION: Self = Self(RC_VER1 + 0x049);
    pub const NV_UNINITIALIZED: Self = Self(RC_VER1 + 0x04A);
    pub const NV_SPACE: Self = Self(RC_VER1 + 0x04B);
    pub const NV_DEFINED: Self = Self(RC_VER1 + 0x04C);
    pub const BAD_CONTEXT: Self = Self(RC_VER1 + 0x050);
    pub const CPHASH: Self = Self(RC_VER1 + 0x051);
    pub const PARENT: Self = Self(RC_VER1 + 0x052);
    pub const NEEDS_TEST: Self = Self(RC_VER1 + 0x053);
    pub const NO_RESULT: Self = Self(RC_VER1 + 0x054);
    pub const SENSITIVE: Self = Self(RC_VER1 + 0x055);

    pub const ASYMMETRIC: Self = Self(RC_FMT1 + 0x001);
    pub const ATTRIBUTES: Self = Self(RC_FMT1 + 0x002);
    pub const HASH: Self = Self(RC_FMT1 + 0x003);
    pub const VALUE: Self = Self(RC_FMT1 + 0x004);
    pub const HIERARCHY: Self = Self(RC_FMT1 + 0x005);
    pub const KEY_SIZE: Self = Self(RC_FMT1 + 0x007);
    pub const MGF: Self = Self(RC_FMT1 + 0x008);
    pub const MODE: Self = Self(RC_FMT1 + 0x009);
    pub const TYPE: Self = Self(RC_FMT1 + 0x00A);
    pub const HANDLE: Self = Self(RC_FMT1 + 0x00B);
    pub const KDF: Self = Self(RC_FMT1 + 0x00C);
    pub const RANGE: Self = Self(RC_FMT1 + 0x00D);
    pub const AUTH_FAIL: Self = Self(RC_FMT1 + 0x00E);
    pub const NONCE: Self = Self(RC_FMT1 + 0x00F);
    pub const PP: Self = Self(RC_FMT1 + 0x010);
    pub const SCHEME: Self = Self(RC_FMT1 + 0x012);
    pub const SIZE: Self = Self(RC_FMT1 + 0x015);
    pub const SYMMETRIC: Self = Self(RC_FMT1 + 0x016);
    pub const TAG: Self = Self(RC_FMT1 + 0x017);
    pub const SELECTOR: Self = Self(RC_FMT1 + 0x018);
    pub const INSUFFICIENT: Self = Self(RC_FMT1 + 0x01A);
    pub const SIGNATURE: Self = Self(RC_FMT1 + 0x01B);
    pub const KEY: Self = Self(RC_FMT1 + 0x01C);
    pub const POLICY_FAIL: Self = Self(RC_FMT1 + 0x01D);
    pub const INTEGRITY: Self = Self(RC_FMT1 + 0x01F);
    pub const TICKET: Self = Self(RC_FMT1 + 0x020);
    pub const RESERVED_BITS: Self = Self(RC_FMT1 + 0x021);
    pub const BAD_AUTH: Self = Self(RC_FMT1 + 0x022);
    pub const EXPIRED: Self = Self(RC_FMT1 + 0x023);
    pub const POLICY_CC: Self = Self(RC_FMT1 + 0x024);
    pub const BINDING: Self = Self(RC_FMT1 + 0x025);
    pub const CURVE: Self = Self(RC_FMT1 + 0x026);
    pub const ECC_POINT: Self = Self(RC_FMT1 + 0x027);

    pub const CONTEXT_GAP: Self = Self(RC_WARN + 0x001);
    pub const OBJECT_MEMORY: Self = Self(RC_WARN + 0x002);
    pub const SESSION_MEMORY: Self = Self(RC_WARN + 0x003);
    pub const MEMORY: Self = Self(RC_WARN + 0x004);
    pub const SESSION_HANDLES: Self = Self(RC_WARN + 0x005);
    pub const OBJECT_HANDLES: Self = Self(RC_WARN + 0x006);
    pub const LOCALITY: Self = Self(RC_WARN + 0x007);
    pub const YIELDED: Self = Self(RC_WARN + 0x008);
    pub const CANCELED: Self = Self(RC_WARN + 0x009);
    pub const TESTING: Self = Self(RC_WARN + 0x00A);
    pub const NV_RATE: Self = Self(RC_WARN + 0x020);
    pub const LOCKOUT: Self = Self(RC_WARN + 0x021);
    pub const RETRY: Self = Self(RC_WARN + 0x022);
    pub const NV_UNAVAILABLE: Self = Self(RC_WARN + 0x023);
    /// The n-th handle refers to a transient object or session that is not loaded:
    /// TPM_RC_REFERENCE_H0 + n (0-based), a warning.
    pub const REFERENCE_H0: Self = Self(RC_WARN + 0x010);
    /// The n-th session handle is not a loaded session: TPM_RC_REFERENCE_S0 + n (0-based).
    pub const REFERENCE_S0: Self = Self(RC_WARN + 0x018);

    /// True for format-one codes, which can carry a parameter/handle/session number.
    pub const fn is_fmt1(self) -> bool {
        self.0 & RC_FMT1 != 0
    }

    /// Attach parameter number `n` (1-based) to a format-one code (TPM_RC_P + TPM_RC_n).
    /// Format-zero codes are returned unchanged, as they cannot carry a number.
    pub const fn param(self, n: u8) -> Self {
        if self.is_fmt1() && self.0 & 0xFC0 == RC_FMT1 {
            Self(self.0 | RC_P | (((n & 0xF) as u32) << 8))
        } else {
            self
        }
    }

    /// Attach handle number `n` (1-based, at most 7) to a format-one code (TPM_RC_H + n).
    pub const fn handle(self, n: u8) -> Self {
        if self.is_fmt1() && self.0 & 0xFC0 == RC_FMT1 {
            Self(self.0 | (((n & 0x7) as u32) << 8))
        } else {
            self
        }
    }

    /// Attach session number `n` (1-based, at most 7) to a format-one code (TPM_RC_S + n).
    pub const fn session(self, n: u8) -> Self {
        if self.is_fmt1() && self.0 & 0xFC0 == RC_FMT1 {
            Self(self.0 | RC_S | (((n & 0x7) as u32) << 8))
        } else {
            self
        }
    }

    /// The error number with any parameter/handle/session number removed.
    pub const fn base(self) -> Self {
        if self.is_fmt1() {
            Self(self.0 & (RC_FMT1 | 0x3F))
        } else {
            self
        }
    }
}

impl fmt::Debug for TpmRc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TpmRc({:#05x})", self.0)
    }
}

impl fmt::Display for TpmRc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TPM_RC {:#05x}", self.0)
    }
}

/// Result of a command step; the error is the response code to return.
pub type TpmResult<T> = core::result::Result<T, TpmRc>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_one_numbers() {
        // Part 2, 6.6.3: TPM_RC_VALUE + TPM_RC_P + TPM_RC_1 = 0x1C4.
        assert_eq!(TpmRc::VALUE.param(1), TpmRc(0x1C4));
        assert_eq!(TpmRc::HANDLE.handle(1), TpmRc(0x18B));
        assert_eq!(TpmRc::AUTH_FAIL.session(1), TpmRc(0x98E));
        assert_eq!(TpmRc::INSUFFICIENT.param(2), TpmRc(0x2DA));
        // Format-zero codes do not take numbers.
        assert_eq!(TpmRc::COMMAND_CODE.param(1), TpmRc::COMMAND_CODE);
        assert_eq!(TpmRc::VALUE.param(3).base(), TpmRc::VALUE);
    }
}
