//! Thin wrappers over RustCrypto: the engine never implements a primitive itself.

pub mod drbg;
pub mod ecc;
pub mod hash;
pub mod kdf;
pub mod rng;
pub mod rsa_ops;
pub mod sym;
