//! Reproducible build of the measured backend image, its SNP launch digest and the manifest a
//! tenant pins (DESIGN §7).
#![forbid(unsafe_code)]
