//! `ukvtpm run-backend [--port P] [--memory MiB] [--accel kvm|tcg] [--image PATH]`: one
//! unikernel backend in QEMU, its TPM data channel forwarded to 127.0.0.1:P and the swtpm
//! control channel to P+1 (so `-T swtpm:port=P` works). Builds nothing:
//! the image comes from `cargo xtask image` (or --image / $UKVTPM_IMAGE).

use std::path::PathBuf;

use clap::Parser;
use ukvtpm_qemu::args::Accel;
use ukvtpm_qemu::backend::{self, Options};

/// Arguments of `ukvtpm run-backend`.
#[derive(Debug, Parser)]
pub struct Args {
    /// Host port (127.0.0.1) forwarded to the backend's TPM port 2321; P+1 goes to its swtpm
    /// control port 2322, as with `swtpm socket`.
    #[arg(long, default_value_t = backend::GUEST_TPM_PORT)]
    pub port: u16,
    /// Guest RAM in MiB.
    #[arg(long, default_value_t = 16)]
    pub memory: u32,
    /// Accelerator; default: KVM if a probe boot is fast enough, else TCG (with a warning).
    #[arg(long)]
    pub accel: Option<Accel>,
    /// Firmware image; default: $UKVTPM_IMAGE, then target/ukvtpm.img and next to this binary.
    #[arg(long)]
    pub image: Option<PathBuf>,
}

/// Starts the backend and relays its serial log until QEMU exits.
pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = Options {
        port: args.port,
        memory_mib: args.memory,
        accel: args.accel,
        image: args.image,
        ..Options::default()
    };
    backend::run(&opts)?;
    Ok(())
}
