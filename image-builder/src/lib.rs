//! Reproducible build of the measured backend image, its SNP launch digest and the manifest a
//! tenant pins (DESIGN §7).
//!
//! - [`build`]: the reproducible cargo build of the unikernel (`ukvtpm build`);
//! - [`image`]: the unikernel ELF as the flat `-bios` image, with the SNP footer written in;
//! - [`layout`]: the OVMF GUIDed footer table and `ASEV` metadata an SNP `-bios` image carries;
//! - [`measure`]: the SNP launch digest (report MEASUREMENT) via the `sev` crate;
//! - [`synthetic`]: a minimal image with that layout, for tests and golden digests;
//! - [`manifest`]: `manifest.json`, what a tenant pins;
//! - [`cli`]: the library side of `ukvtpm measure` and `ukvtpm verify`.
#![forbid(unsafe_code)]

pub mod build;
pub mod cli;
pub mod image;
pub mod layout;
pub mod manifest;
pub mod measure;
pub mod synthetic;
