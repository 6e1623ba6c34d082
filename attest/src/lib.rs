//! SNP attestation (DESIGN §4, §5, §7).
//!
//! The core is `no_std` and allocation-free so the unikernel can use it on the guest side:
//! - [`report`]: the 1184-byte ATTESTATION_REPORT (SNP ABI spec #56860), parse and serialize;
//! - [`policy`]: guest policy bits;
//! - [`tcb`]: TCB_VERSION, both generations' layouts, component-wise minimum.
//!
//! With the `verify` feature (host side, `std`), [`verify`] checks a report against a pin:
//! VCEK → ASK → ARK chain (AMD roots for Milan, Genoa and Turin built into the `sev` crate, or
//! caller-supplied anchors), report signature, measurement, policy, VMPL, TCB, report/host data.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]

#[cfg(feature = "std")]
extern crate std;

pub mod policy;
pub mod report;
pub mod tcb;
#[cfg(feature = "verify")]
pub mod verify;

pub use policy::GuestPolicy;
pub use report::{AttestationReport, REPORT_SIZE};
pub use tcb::{TcbLayout, TcbVersion};
