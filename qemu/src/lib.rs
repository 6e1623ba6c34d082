//! Host-side launcher: one QEMU backend per guest, host state store, scaling and boot-time
//! benchmarks (DESIGN §8).
//!
//! - [`args`]: a typed `qemu-system-x86_64` command line (no shell strings).
//! - [`accel`]: KVM or TCG, chosen by a probe boot.
//! - [`backend`]: start one unikernel backend, wait for its ready line, stop it cleanly;
//!   [`backend::run`] is `ukvtpm run-backend`.
// The one exception: `backend::spawn` sets PR_SET_PDEATHSIG between fork and exec.
#![deny(unsafe_code)]

pub mod accel;
pub mod args;
pub mod backend;
pub mod serial;
