//! `ukvtpm`: the one user-facing command (DESIGN §9).
//!
//! Each subcommand is one variant of [`Command`] and one module under `commands/` with an
//! `Args` struct and a `run(args) -> anyhow::Result<()>`.

mod commands;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ukvtpm", version, about = "ukvtpm: a confidential vTPM")]
struct Cli {
    /// More log output (-v: debug, -vv: trace); logs go to stderr.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the TPM engine on 127.0.0.1 for swtpm/mssim clients (tpm2-tools, QEMU).
    Serve(commands::serve::Args),
    /// Rebuild the backend image reproducibly: DIR/ukvtpm.img and DIR/manifest.json.
    Build(commands::build::Args),
    /// Print the SNP launch digest (report MEASUREMENT) of a -bios image.
    Measure(commands::measure::Args),
    /// Run one unikernel backend in QEMU, its TPM port forwarded to 127.0.0.1.
    RunBackend(commands::run_backend::Args),
    /// Check an SNP attestation report against a pinned manifest.
    Verify(commands::verify::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Serve(args) => commands::serve::run(args),
        Command::Build(args) => commands::build::run(args),
        Command::Measure(args) => commands::measure::run(args),
        Command::RunBackend(args) => commands::run_backend::run(args),
        Command::Verify(args) => commands::verify::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ukvtpm: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => tracing::Level::INFO,
        1 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
