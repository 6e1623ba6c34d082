//! `ukvtpm serve --port P --state DIR [--protocol swtpm|mssim]`: the TPM engine on 127.0.0.1.
//!
//! Start-up: lock and probe the state directory, bind P and P+1, restore `DIR/tpm-state.bin` (or
//! manufacture a new TPM and store it), then, like `swtpm --flags not-need-init,startup-clear`,
//! power the TPM on and send `TPM2_Startup(CLEAR)` so that tpm2-tools work at once (they never
//! send Startup). `--startup-clear=false` leaves Startup to the client. One line on stdout says
//! when the server is ready; logs go to stderr. SIGTERM or SIGINT stop it cleanly.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use clap::ArgAction;
use ukvtpm_tpm_core::Engine;

use crate::serve::device::Device;
use crate::serve::state::StateDir;
use crate::serve::{HostPlatform, Listeners, Protocol, Server};

/// Arguments of `ukvtpm serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// TPM command port P on 127.0.0.1; the control (swtpm) or platform (mssim) port is P+1.
    #[arg(long, default_value_t = 2321)]
    pub port: u16,

    /// State directory (created if missing): `tpm-state.bin` and a lock file.
    #[arg(long, value_name = "DIR")]
    pub state: PathBuf,

    /// Wire protocol: `swtpm` (raw commands, swtpm control channel; also accepts the simulator
    /// framing per command) or `mssim` (TCG simulator framing and platform signals).
    #[arg(long, value_enum, default_value_t = Protocol::Swtpm)]
    pub protocol: Protocol,

    /// Send TPM2_Startup(CLEAR) at start, as swtpm with `--flags startup-clear` does.
    #[arg(
        long,
        value_name = "BOOL",
        default_value_t = true,
        action = ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub startup_clear: bool,
}

/// Runs the server until it is told to stop.
///
/// # Errors
/// The state directory is unusable or locked, the state file is unreadable or corrupt (it is
/// left untouched), or a port is taken.
pub fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let mut store = StateDir::open(&args.state)?;
    let listeners = Listeners::bind(args.port)?;
    let state_path = store.state_path();
    let existing = store.load()?;
    // Manufacture and the start-up TPM2_Startup are acknowledged to no one: one durable write
    // for both, before the first response (see StateDir::defer).
    store.defer();
    let platform = HostPlatform::new(store);
    let engine = match existing {
        Some(blob) => {
            let engine = Engine::restore(platform, &blob).map_err(|e| {
                anyhow!(
                    "the state file {} cannot be used: {e}. It was left untouched; move it away to \
                     start a new TPM, or put back a good copy",
                    state_path.display()
                )
            })?;
            tracing::info!(
                version = engine.state_version(),
                "restored {}",
                state_path.display()
            );
            engine
        }
        None => {
            let engine = Engine::new(platform).map_err(|e| {
                anyhow!(
                    "cannot store the state of a new TPM in {}: {e}",
                    state_path.display()
                )
            })?;
            tracing::info!("manufactured a new TPM in {}", state_path.display());
            engine
        }
    };
    let mut device = Device::new(engine);
    if args.startup_clear {
        match device.startup_clear() {
            Some(0) => {}
            rc => tracing::warn!("TPM2_Startup(CLEAR) at start answered {rc:x?}"),
        }
    }
    device
        .tpm_mut()
        .platform_mut()
        .store_mut()
        .end_deferral()
        .with_context(|| format!("cannot write the state file {}", state_path.display()))?;
    let port = listeners.port();
    let server =
        Server::new(listeners, device, args.protocol).context("setting up the event loop")?;
    let side = match args.protocol {
        Protocol::Swtpm => "control",
        Protocol::Mssim => "platform",
    };
    let ready = format!(
        "ukvtpm serve: listening on 127.0.0.1:{port} ({side} 127.0.0.1:{}), protocol {}, state {}",
        u32::from(port) + 1,
        args.protocol,
        args.state.display()
    );
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{ready}").and_then(|()| stdout.flush());
    drop(stdout);
    tracing::debug!(elapsed_us = started.elapsed().as_micros(), "ready");
    server.run().context("event loop failed")?;
    tracing::info!("stopped");
    Ok(())
}
