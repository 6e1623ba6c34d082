//! Guest policy (SNP ABI spec #56860, Table 9 "Guest Policy Structure"; rev 1.58 numbering).
//!
//! | bit | field |
//! |---|---|
//! | 7:0 | ABI_MINOR |
//! | 15:8 | ABI_MAJOR |
//! | 16 | SMT (1 = host SMT allowed) |
//! | 17 | reserved, must be 1 |
//! | 18 | MIGRATE_MA (1 = migration agent allowed) |
//! | 19 | DEBUG (1 = debugging allowed) |
//! | 20 | SINGLE_SOCKET |
//! | 21 | CXL_ALLOW |
//! | 22 | MEM_AES_256_XTS |
//! | 23 | RAPL_DIS |
//! | 24 | CIPHERTEXT_HIDING |
//! | 25 | PAGE_SWAP_DISABLE |

/// A guest policy value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GuestPolicy(pub u64);

impl GuestPolicy {
    /// Bit 16.
    pub const SMT: u64 = 1 << 16;
    /// Bit 17, reserved, must be one.
    pub const RESERVED_ONE: u64 = 1 << 17;
    /// Bit 18.
    pub const MIGRATE_MA: u64 = 1 << 18;
    /// Bit 19.
    pub const DEBUG: u64 = 1 << 19;
    /// Bit 20.
    pub const SINGLE_SOCKET: u64 = 1 << 20;

    /// The policy ukvtpm backends are launched with: ABI 0.0, SMT allowed (most hosts run SMT;
    /// pin `smt = false` only where the host disables it), reserved bit set, no migration agent,
    /// no debugging: `0x30000`, the value QEMU uses by default for `sev-snp-guest`.
    pub const UKVTPM_DEFAULT: GuestPolicy = GuestPolicy(Self::SMT | Self::RESERVED_ONE);

    /// ABI_MINOR.
    pub fn abi_minor(self) -> u8 {
        (self.0 & 0xff) as u8
    }
    /// ABI_MAJOR.
    pub fn abi_major(self) -> u8 {
        ((self.0 >> 8) & 0xff) as u8
    }
    /// Host SMT allowed.
    pub fn smt_allowed(self) -> bool {
        self.0 & Self::SMT != 0
    }
    /// Association with a migration agent allowed.
    pub fn migrate_ma_allowed(self) -> bool {
        self.0 & Self::MIGRATE_MA != 0
    }
    /// Debugging allowed (the hypervisor can read and write guest memory).
    pub fn debug_allowed(self) -> bool {
        self.0 & Self::DEBUG != 0
    }
    /// Bound to a single socket.
    pub fn single_socket(self) -> bool {
        self.0 & Self::SINGLE_SOCKET != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_bits() {
        let p = GuestPolicy::UKVTPM_DEFAULT;
        assert_eq!(p.0, 0x30000);
        assert!(p.smt_allowed());
        assert!(!p.debug_allowed());
        assert!(!p.migrate_ma_allowed());
        assert_eq!((p.abi_major(), p.abi_minor()), (0, 0));
        assert!(GuestPolicy(0x3_0000 | GuestPolicy::DEBUG).debug_allowed());
    }
}
