//! Reproducible build of the measured backend image, its SNP launch digest and the manifest a
//! tenant pins (DESIGN §7).
//!
//! - [`layout`]: the OVMF GUIDed footer table and `ASEV` metadata an SNP `-bios` image carries;
//! - [`measure`]: the SNP launch digest (report MEASUREMENT) via the `sev` crate;
//! - [`synthetic`]: a minimal image with that layout, for tests and golden digests.
#![forbid(unsafe_code)]

pub mod layout;
pub mod measure;
pub mod synthetic;
