//! TPM 2.0 engine (DESIGN §3): commands in, responses out; no I/O, no `unsafe`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;
