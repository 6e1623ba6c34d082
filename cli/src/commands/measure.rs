//! `ukvtpm measure IMG --vcpus N --vcpu-type T`: print the SNP launch digest of a `-bios` image.

use std::path::PathBuf;

use clap::Parser;

/// Arguments of `ukvtpm measure`.
#[derive(Debug, Parser)]
pub struct Args {
    /// Firmware image (e.g. ukvtpm.img) as passed to QEMU with -bios.
    pub image: PathBuf,
    /// Number of vCPUs the guest is launched with (-smp).
    #[arg(long, default_value_t = 1)]
    pub vcpus: u32,
    /// QEMU vCPU model (-cpu): EPYC-v4, EPYC-Rome, EPYC-Milan, EPYC-Genoa, EPYC-Turin.
    #[arg(long, default_value = "EPYC-v4")]
    pub vcpu_type: String,
    /// VMSA SEV_FEATURES: 0x1 for upstream QEMU >= 9.1; 0x21 on older hosts with debug_swap.
    #[arg(long, default_value = "0x1", value_parser = parse_u64)]
    pub guest_features: u64,
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("{s:?} is not a number: {e}"))
}

/// Prints the 48-byte digest as 96 hex digits.
pub fn run(args: Args) -> anyhow::Result<()> {
    let hex = ukvtpm_image_builder::cli::measure(
        &args.image,
        args.vcpus,
        &args.vcpu_type,
        args.guest_features,
    )?;
    println!("{hex}");
    Ok(())
}
