//! What the CPU and the SEV_STATUS MSR say about memory encryption: pure decoding, no hardware
//! access (the reads live in [`super::msr`]).
//!
//! Sources:
//! - AMD64 APM vol. 3 (#24594), Appendix E.4.17 "Function 8000_001Fh—Encrypted Memory
//!   Capabilities": EAX feature bits, EBX[5:0] C-bit position, EBX[11:6] physical address
//!   reduction, EBX[15:12] number of VMPLs.
//! - AMD64 APM vol. 2 (#24593), §15.34.10 "SEV_STATUS MSR" (MSR C001_0131h), Table 15-34:
//!   bit 0 SEV enabled, bit 1 SEV-ES enabled, bit 2 SNP enabled, then the SNP feature bits.
//!
//! SEV_STATUS may only be read when CPUID says SEV is supported (Fn8000_001F EAX[1]); elsewhere
//! (Intel, TCG, old AMD) the RDMSR faults. [`detect_with`] keeps that order.
#![forbid(unsafe_code)]

use core::fmt;

/// Extended CPUID leaf with the encrypted-memory capabilities.
pub const CPUID_ENC_MEM_LEAF: u32 = 0x8000_001F;
/// Highest-extended-leaf query.
pub const CPUID_MAX_EXT_LEAF: u32 = 0x8000_0000;

/// CPUID Fn8000_001F (APM vol. 3, E.4.17), decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EncMemCaps {
    /// EAX[0]: Secure Memory Encryption.
    pub sme: bool,
    /// EAX[1]: Secure Encrypted Virtualization.
    pub sev: bool,
    /// EAX[3]: SEV Encrypted State.
    pub sev_es: bool,
    /// EAX[4]: SEV Secure Nested Paging.
    pub sev_snp: bool,
    /// EAX[5]: VM Permission Levels.
    pub vmpl: bool,
    /// EBX[5:0]: page-table bit that marks a page encrypted (the C-bit).
    pub c_bit: u8,
    /// EBX[11:6]: physical address bits lost when memory encryption is on.
    pub phys_addr_reduction: u8,
    /// EBX[15:12]: number of VMPLs supported.
    pub num_vmpls: u8,
}

impl EncMemCaps {
    /// Decodes EAX and EBX of CPUID Fn8000_001F.
    pub fn from_cpuid(eax: u32, ebx: u32) -> Self {
        Self {
            sme: eax & (1 << 0) != 0,
            sev: eax & (1 << 1) != 0,
            sev_es: eax & (1 << 3) != 0,
            sev_snp: eax & (1 << 4) != 0,
            vmpl: eax & (1 << 5) != 0,
            c_bit: (ebx & 0x3f) as u8,
            phys_addr_reduction: ((ebx >> 6) & 0x3f) as u8,
            num_vmpls: ((ebx >> 12) & 0xf) as u8,
        }
    }
}

/// SEV_STATUS MSR (C001_0131h) bits, APM vol. 2 Table 15-34.
pub mod sev_status {
    /// SEV is active for this guest.
    pub const SEV_EN: u64 = 1 << 0;
    /// SEV-ES is active.
    pub const SEV_ES_EN: u64 = 1 << 1;
    /// SEV-SNP is active.
    pub const SNP_EN: u64 = 1 << 2;
    /// Virtual top of memory in use.
    pub const VTOM: u64 = 1 << 3;
    /// ReflectVC: #VC goes to the hypervisor.
    pub const REFLECT_VC: u64 = 1 << 4;
    /// Restricted injection.
    pub const RESTRICTED_INJECTION: u64 = 1 << 5;
    /// Alternate injection.
    pub const ALTERNATE_INJECTION: u64 = 1 << 6;
    /// DebugSwap (DR registers swapped by hardware).
    pub const DEBUG_SWAP: u64 = 1 << 7;
    /// PreventHostIBS.
    pub const PREVENT_HOST_IBS: u64 = 1 << 8;
    /// SNP BTB isolation.
    pub const BTB_ISOLATION: u64 = 1 << 9;
    /// VMPL supervisor shadow stacks.
    pub const VMPL_SSS: u64 = 1 << 10;
    /// Secure TSC.
    pub const SECURE_TSC: u64 = 1 << 11;
}

/// The memory-encryption mode this guest runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SevMode {
    /// No memory encryption (plain KVM/TCG): no SNP path is taken.
    None,
    /// SEV: memory encrypted, register state not protected.
    Sev,
    /// SEV-ES: encrypted state; intercepted instructions raise #VC.
    SevEs,
    /// SEV-SNP: as SEV-ES plus the RMP (PVALIDATE, page-state changes, guest messages).
    Snp,
}

/// What [`super::detect`] found: the mode, the C-bit and the raw inputs, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnpState {
    /// Mode.
    pub mode: SevMode,
    /// CPUID Fn8000_001F, when the leaf exists.
    pub caps: Option<EncMemCaps>,
    /// SEV_STATUS, when it could be read (CPUID says SEV).
    pub sev_status: Option<u64>,
}

impl SnpState {
    /// A guest without memory encryption.
    pub const PLAIN: SnpState = SnpState {
        mode: SevMode::None,
        caps: None,
        sev_status: None,
    };

    /// True under SEV-SNP.
    pub fn is_snp(&self) -> bool {
        self.mode == SevMode::Snp
    }

    /// True when intercepted instructions raise #VC (SEV-ES or SNP).
    pub fn has_vc(&self) -> bool {
        matches!(self.mode, SevMode::SevEs | SevMode::Snp)
    }

    /// C-bit position when memory is encrypted.
    pub fn c_bit(&self) -> Option<u8> {
        match self.mode {
            SevMode::None => None,
            _ => self.caps.map(|c| c.c_bit),
        }
    }

    /// The page-table mask of the C-bit (0 when memory is not encrypted).
    pub fn c_bit_mask(&self) -> u64 {
        self.c_bit()
            .filter(|&b| (12..52).contains(&b))
            .map_or(0, |b| 1u64 << b)
    }
}

impl fmt::Display for SnpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mode {
            SevMode::None => f.write_str("SEV-SNP: not active")?,
            SevMode::Sev => f.write_str("SEV-SNP: not active (SEV only; unsupported)")?,
            SevMode::SevEs => f.write_str("SEV-SNP: not active (SEV-ES only; unsupported)")?,
            SevMode::Snp => f.write_str("SEV-SNP: active")?,
        }
        if let (Some(status), Some(caps)) = (self.sev_status, self.caps) {
            write!(
                f,
                " sev_status={status:#x} c_bit={} vmpls={}",
                caps.c_bit, caps.num_vmpls
            )?;
        }
        Ok(())
    }
}

/// Detection from injected CPUID and SEV_STATUS readers, in the order the APM requires:
/// the extended-leaf range, then Fn8000_001F EAX[1], and only then the MSR. The mode comes
/// from SEV_STATUS (what is *enabled*), never from CPUID (what is *supported*).
pub fn detect_with(
    mut cpuid: impl FnMut(u32) -> (u32, u32, u32, u32),
    read_sev_status: impl FnOnce() -> u64,
) -> SnpState {
    let (max_ext, ..) = cpuid(CPUID_MAX_EXT_LEAF);
    if max_ext < CPUID_ENC_MEM_LEAF {
        return SnpState::PLAIN;
    }
    let (eax, ebx, ..) = cpuid(CPUID_ENC_MEM_LEAF);
    let caps = EncMemCaps::from_cpuid(eax, ebx);
    if !caps.sev {
        return SnpState {
            caps: Some(caps),
            ..SnpState::PLAIN
        };
    }
    let status = read_sev_status();
    let mode = if status & sev_status::SEV_EN == 0 {
        SevMode::None
    } else if status & sev_status::SNP_EN != 0 {
        SevMode::Snp
    } else if status & sev_status::SEV_ES_EN != 0 {
        SevMode::SevEs
    } else {
        SevMode::Sev
    };
    SnpState {
        mode,
        caps: Some(caps),
        sev_status: Some(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Genoa-like SNP guest: CPUID 8000_001F EAX = SME|SEV|PageFlush|SEV-ES|SNP|VMPL..,
    /// EBX = C-bit 51, reduction 1, 4 VMPLs (values as seen in SNP guests' /proc/cpuinfo).
    const SNP_EAX: u32 = 0x0101_fd3f;
    const SNP_EBX: u32 = 0x0000_4073;

    fn cpu(max_ext: u32, eax: u32, ebx: u32) -> impl FnMut(u32) -> (u32, u32, u32, u32) {
        move |leaf| match leaf {
            CPUID_MAX_EXT_LEAF => (max_ext, 0, 0, 0),
            CPUID_ENC_MEM_LEAF => (eax, ebx, 0, 0),
            _ => (0, 0, 0, 0),
        }
    }

    #[test]
    fn decodes_fn8000_001f() {
        let c = EncMemCaps::from_cpuid(SNP_EAX, SNP_EBX);
        assert!(c.sme && c.sev && c.sev_es && c.sev_snp && c.vmpl);
        assert_eq!(c.c_bit, 51);
        assert_eq!(c.phys_addr_reduction, 1);
        assert_eq!(c.num_vmpls, 4);
    }

    #[test]
    fn plain_cpu_never_reads_the_msr() {
        // qemu64/TCG: extended leaves stop well below 0x8000_001F.
        let s = detect_with(cpu(0x8000_0008, 0, 0), || panic!("RDMSR would #GP"));
        assert_eq!(s, SnpState::PLAIN);
        assert!(!s.is_snp() && !s.has_vc());
        assert_eq!(s.c_bit_mask(), 0);
        assert_eq!(s.to_string(), "SEV-SNP: not active");
        // AMD host CPU model without SEV in the guest's CPUID.
        let s = detect_with(cpu(0x8000_0021, 0x1, 0x73), || panic!("RDMSR would #GP"));
        assert_eq!(s.mode, SevMode::None);
        assert_eq!(s.to_string(), "SEV-SNP: not active");
    }

    #[test]
    fn modes_come_from_sev_status() {
        let s = detect_with(cpu(0x8000_0021, SNP_EAX, SNP_EBX), || 0);
        assert_eq!(s.mode, SevMode::None);
        let s = detect_with(cpu(0x8000_0021, SNP_EAX, SNP_EBX), || 1);
        assert_eq!(s.mode, SevMode::Sev);
        assert!(!s.has_vc());
        let s = detect_with(cpu(0x8000_0021, SNP_EAX, SNP_EBX), || 0b011);
        assert_eq!(s.mode, SevMode::SevEs);
        assert!(s.has_vc());
        let s = detect_with(cpu(0x8000_0021, SNP_EAX, SNP_EBX), || 0b111);
        assert!(s.is_snp() && s.has_vc());
        assert_eq!(s.c_bit(), Some(51));
        assert_eq!(s.c_bit_mask(), 1 << 51);
        assert_eq!(
            s.to_string(),
            "SEV-SNP: active sev_status=0x7 c_bit=51 vmpls=4"
        );
    }
}
