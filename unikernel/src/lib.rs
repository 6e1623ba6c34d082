//! ukvtpm backend unikernel (DESIGN §6): boots as `-bios` firmware under QEMU, drives one
//! virtio-net device and serves the TPM engine over TCP (swtpm data-channel protocol).
//!
//! Host-testable logic (framing, clock arithmetic, the TCP service over any smoltcp device)
//! lives in modules that build everywhere and forbid `unsafe`. Hardware modules (`arch`, `mm`,
//! `pci`, `virtio`) and the boot flow (`kernel`) exist only for `target_os = "none"`; `unsafe`
//! is allowed only in `arch`, `mm`, `pci`, `virtio` and `snp` — there only in the instruction
//! wrappers (`snp/msr.rs`, `snp/pvalidate.rs`, `snp/ghcb.rs`), their one caller in
//! `snp::detect` (the SEV_STATUS read) and the bare-metal glue (`snp/hw.rs`); the rest of `snp`
//! is pure and host-tested.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod clock;
pub mod engine;
pub mod server;
pub mod snp;
pub mod swtpm;

#[cfg(target_os = "none")]
pub mod arch;
/// `arch::frame` (trap frame layout, #VC register conversion) is pure: test it on the host too.
#[cfg(all(test, not(target_os = "none")))]
#[path = "arch/frame.rs"]
mod arch_frame;
#[cfg(target_os = "none")]
pub mod kernel;
#[cfg(target_os = "none")]
pub mod mm;
#[cfg(target_os = "none")]
pub mod pci;
#[cfg(target_os = "none")]
pub mod virtio;

/// TCP port of the TPM data channel inside the guest (swtpm's default data port).
pub const TPM_PORT: u16 = 2321;
/// TCP port of the swtpm control channel inside the guest (data port + 1, as swtpm).
pub const TPM_CONTROL_PORT: u16 = 2322;
