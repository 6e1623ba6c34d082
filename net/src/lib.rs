//! The attested, encrypted channel between the guest agent and its backend (DESIGN §4).
//!
//! Will hold: the Noise `XX_25519_AESGCM_SHA256` handshake, AES-GCM records with implicit
//! 64-bit counters and anti-replay, the postcard message types, and smoltcp glue for the
//! unikernel behind a feature. Sans-IO: bytes in, bytes out.
#![no_std]
#![forbid(unsafe_code)]
