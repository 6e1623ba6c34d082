//! `ukvtpm serve`: the TPM engine on 127.0.0.1, speaking swtpm's or the TCG simulator's socket
//! protocol (see `shared/reference/swtpm-protocol.md` for what clients actually send).
//!
//! * `data.rs`: framing of the data port P (raw commands and the simulator prefix);
//! * `swtpm.rs`: swtpm's control channel on P+1; `mssim.rs`: the simulator's platform port P+1;
//! * `device.rs`: the engine plus platform-level state (power, locality, stop/init);
//! * `state.rs`: the locked state directory and atomic state file; `engine.rs`: the host
//!   [`ukvtpm_tpm_core::Platform`];
//! * `server.rs`: one single-threaded epoll loop (mio) serving every connection in turn, so a
//!   client that stalls or vanishes mid-command never blocks another.

mod data;
pub mod device;
mod engine;
mod mssim;
mod server;
pub mod state;
mod swtpm;
mod wire;

use std::time::Duration;

pub use engine::HostPlatform;
pub use server::{Listeners, Server};

/// How long an incomplete request may sit without new bytes: a raw command is then executed as
/// received (the engine answers `TPM_RC_COMMAND_SIZE`, as swtpm would at once), a control request
/// closes its connection (swtpm's 500 ms control-channel deadline).
pub const PARTIAL_TIMEOUT: Duration = Duration::from_millis(500);

/// The protocol spoken on P and P+1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// swtpm: raw commands (or the simulator prefix) on P, swtpm's control channel on P+1.
    Swtpm,
    /// TCG simulator: `TPM_SEND_COMMAND` framing on P, platform signals on P+1.
    Mssim,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Swtpm => "swtpm",
            Protocol::Mssim => "mssim",
        })
    }
}

/// What the control side answers, and what happens next.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub bytes: Vec<u8>,
    pub then: Then,
}

/// What happens after a reply is sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Keep the connection.
    #[default]
    Continue,
    /// Close the connection.
    Close,
    /// Close the connection and stop the server.
    Terminate,
}
