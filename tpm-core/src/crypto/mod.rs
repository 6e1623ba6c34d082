//! Thin wrappers over RustCrypto: the engine never implements a primitive itself.

pub mod drbg;
pub mod hash;
pub mod kdf;
