//! MSR and CPUID access for the SNP code: the MSR numbers and the instruction wrappers.
//!
//! - SEV_STATUS, MSR C001_0131h: AMD64 APM vol. 2 (#24593) §15.34.10; read-only, never
//!   intercepted (so it is safe to read under SEV-ES/SNP without a #VC handler).
//! - GHCB MSR, MSR C001_0130h: AMD64 APM vol. 2 §15.35.6 and the GHCB specification (#56421)
//!   §2.3.1; in SEV-ES/SNP guests its writes do not exit, VMGEXIT hands its value to the
//!   hypervisor.
//!
//! RDMSR/WRMSR are "AMD64 APM vol. 3 (#24594), RDMSR/WRMSR": they raise #GP(0) for an MSR the
//! CPU does not implement, which is why reading SEV_STATUS is `unsafe` and gated by CPUID.

use x86_64::registers::model_specific::Msr;

/// SEV_STATUS (read-only).
pub const MSR_SEV_STATUS: u32 = 0xC001_0131;
/// GHCB MSR: the GHCB physical address, or a GHCB MSR-protocol request/response.
pub const MSR_GHCB: u32 = 0xC001_0130;

/// `CPUID(leaf, subleaf)` as (eax, ebx, ecx, edx). Under SEV-ES/SNP this raises #VC, which the
/// #VC handler ([`super::vc`]) answers.
pub fn cpuid(leaf: u32, subleaf: u32) -> (u32, u32, u32, u32) {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Reads SEV_STATUS.
///
/// # Safety
/// CPUID Fn8000_001F EAX[1] (SEV supported) must have been seen: otherwise the MSR does not
/// exist and RDMSR raises #GP (APM vol. 3, RDMSR).
pub unsafe fn read_sev_status() -> u64 {
    // SAFETY: the caller guarantees the MSR exists; reading it has no side effect.
    unsafe { Msr::new(MSR_SEV_STATUS).read() }
}

/// Reads the GHCB MSR.
///
/// # Safety
/// The guest must run under SEV-ES or SEV-SNP (SEV_STATUS bit 1 or 2), where the MSR exists.
pub unsafe fn read_ghcb_msr() -> u64 {
    // SAFETY: the caller guarantees SEV-ES/SNP, where C001_0130h is implemented.
    unsafe { Msr::new(MSR_GHCB).read() }
}

/// Writes the GHCB MSR.
///
/// # Safety
/// As [`read_ghcb_msr`]; and `value` must be a GHCB MSR-protocol request or the GPA of a page
/// the guest has made shared, because the hypervisor reads it on the next VMGEXIT.
pub unsafe fn write_ghcb_msr(value: u64) {
    // SAFETY: the caller guarantees SEV-ES/SNP and a meaningful value; the write itself only
    // stores the value for the next VMGEXIT.
    unsafe { Msr::new(MSR_GHCB).write(value) }
}
