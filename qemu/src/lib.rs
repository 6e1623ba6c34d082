//! Host-side launcher: one QEMU backend per guest, host state store, scaling and boot-time
//! benchmarks (DESIGN §8).
#![forbid(unsafe_code)]
