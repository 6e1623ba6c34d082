//! SNP attestation (DESIGN §4, §5, §7).
//!
//! Will hold: SNP attestation report types, VCEK → ASK → ARK chain checks, launch-measurement
//! pinning, sealing-key derivation and a simulated PSP for machines without SNP (dev only).
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
