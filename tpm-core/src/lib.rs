//! TPM 2.0 engine (DESIGN §3): commands in, responses out; no I/O, no `unsafe`.
//!
//! [`Engine::execute`] takes one command (Part 1, 18) and returns one response. State is split
//! into [`state::PersistentState`], stored through [`Platform::commit`] after every command
//! that changed it, and volatile state lost at power-off. Marshalling of Part 2 structures
//! uses the `tpm2-protocol` crate where it fits (see [`marshal`]).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod auth;
pub mod commands;
pub mod context;
pub mod crypto;
pub mod engine;
pub mod entity;
pub mod handle;
pub mod marshal;
pub mod object;
pub mod platform;
pub mod rc;
pub mod session;
pub mod state;

pub use engine::{Engine, MAX_COMMAND_SIZE, error_response};
pub use handle::Handle;
pub use platform::{CommitError, Platform};
pub use rc::TpmRc;
pub use state::persist::StateError;
