//! AMD SEV-SNP guest support (DESIGN §6, issue 7 item 6).
//!
//! Specifications followed (revisions as cited in each file):
//! - AMD64 Architecture Programmer's Manual vol. 2 (#24593) §15.34-15.36 (SEV, SEV-ES, SNP) and
//!   vol. 3 (#24594) (CPUID Fn8000_001F, PVALIDATE, VMGEXIT, RDMSR/WRMSR);
//! - SEV-ES Guest-Hypervisor Communication Block Standardization (#56421, rev. 2.03);
//! - SEV Secure Nested Paging Firmware ABI Specification (#56860).
//!
//! Layout:
//! - [`status`], [`msr`]: detection from CPUID Fn8000_001F and SEV_STATUS; C-bit.
//! - [`ghcb`]: GHCB MSR protocol and GHCB page, VMGEXIT, the [`ghcb::Hypervisor`] seam.
//! - [`vc`]: the #VC handler core (instruction decoding, GHCB filling) for CPUID, IN/OUT,
//!   MMIO and MSR exits.
//! - [`pvalidate`]: PVALIDATE, page-state changes, `make_shared`/`make_private`.
//! - [`secrets`], [`cpuid`]: the secrets page (VMPCKs) and the CPUID page.
//! - [`guest_request`]: MSG_REPORT_REQ/MSG_KEY_REQ encrypted with VMPCK0.
//! - [`pagetable`]: C-bit arithmetic on page-table entries (what boot.s and `mm::snp` do).
//! - [`bounce`]: page accounting for the shared virtio DMA pool.
//!
//! Everything except the instruction wrappers (`msr`, `pvalidate::pvalidate`,
//! `ghcb::vmgexit`) and the `target_os = "none"` glue ([`hw`]) is pure and unit-tested on the
//! host against the spec tables. On a plain (non-SNP) boot [`detect`] reports "not active" and
//! no other SNP path runs.

pub mod bounce;
pub mod cpuid;
pub mod ghcb;
pub mod guest_request;
#[cfg(target_os = "none")]
pub mod hw;
pub mod msr;
pub mod pagetable;
pub mod pvalidate;
pub mod secrets;
pub mod status;
pub mod vc;

#[cfg(test)]
mod guest_request_tests;
#[cfg(test)]
mod testutil;

pub use status::{SevMode, SnpState};

use spin::Once;

static STATE: Once<SnpState> = Once::new();

/// Detects SEV/SEV-ES/SNP once (CPUID Fn8000_001F, then SEV_STATUS) and remembers the result.
///
/// Under SEV-ES/SNP the CPUID instructions here raise #VC: the #VC handler must be installed
/// before this is called on such a guest (see [`vc`]). On plain KVM/TCG nothing traps.
pub fn detect() -> SnpState {
    *STATE.call_once(|| {
        status::detect_with(
            |leaf| msr::cpuid(leaf, 0),
            || {
                // SAFETY: `detect_with` calls this only after CPUID Fn8000_001F EAX[1] said
                // SEV is supported, which is when SEV_STATUS exists (APM vol. 2 §15.34.10).
                unsafe { msr::read_sev_status() }
            },
        )
    })
}

/// The detected state; [`SnpState::PLAIN`] before [`detect`] ran.
pub fn state() -> SnpState {
    STATE.get().copied().unwrap_or(SnpState::PLAIN)
}
