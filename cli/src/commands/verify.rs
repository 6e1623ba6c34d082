//! `ukvtpm verify --manifest M --report R [--certs DIR]`: check an SNP attestation report against
//! a pinned manifest.

use std::path::PathBuf;

use clap::Parser;

/// Arguments of `ukvtpm verify`.
#[derive(Debug, Parser)]
pub struct Args {
    /// The pinned manifest.json.
    #[arg(long)]
    pub manifest: PathBuf,
    /// Binary attestation report (1184 bytes).
    #[arg(long)]
    pub report: PathBuf,
    /// Directory with vcek.pem/.der (required) and optionally ask/ark; no network access is made.
    #[arg(long)]
    pub certs: Option<PathBuf>,
    /// Expected HOST_DATA (64 hex digits).
    #[arg(long)]
    pub host_data: Option<String>,
    /// Expected REPORT_DATA (128 hex digits).
    #[arg(long)]
    pub report_data: Option<String>,
}

/// Prints a summary if the report is accepted; fails with the reason otherwise.
pub fn run(args: Args) -> anyhow::Result<()> {
    let summary = ukvtpm_image_builder::cli::verify_report(
        &args.manifest,
        &args.report,
        args.certs.as_deref(),
        args.host_data.as_deref(),
        args.report_data.as_deref(),
    )?;
    println!("{summary}");
    Ok(())
}
