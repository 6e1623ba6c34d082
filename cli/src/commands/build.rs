//! `ukvtpm build --out DIR`: rebuild the backend image reproducibly and write `DIR/ukvtpm.img`
//! and `DIR/manifest.json` (DESIGN §7). A tenant runs this on the released sources and compares
//! the manifest with the one the operator publishes.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use ukvtpm_image_builder::build::{BuildOptions, build, find_source};
use ukvtpm_image_builder::manifest::{Manifest, MinTcb};

/// Arguments of `ukvtpm build`.
#[derive(Debug, Parser)]
pub struct Args {
    /// Output directory for ukvtpm.img and manifest.json (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// ukvtpm source tree (default: the checkout containing the current directory).
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// Cargo target directory for this build (default: SOURCE/target/ukvtpm-build, kept apart
    /// from development builds).
    #[arg(long)]
    pub target_dir: Option<PathBuf>,
    /// Minimum platform TCB the manifest pins, e.g. `bootloader=9,tee=0,snp=23,microcode=213`
    /// (REPORTED_TCB SVNs from the current AMD security bulletin; `fmc=N` on Turin). Without
    /// it the manifest accepts any TCB, and the build says so.
    #[arg(long, value_name = "COMPONENT=SVN,...")]
    pub min_tcb: Option<MinTcb>,
}

/// Builds, lays out, measures, and prints the image hash and the 1-vCPU digests.
pub fn run(args: Args) -> anyhow::Result<()> {
    let source = match args.source {
        Some(s) => s,
        None => find_source(&std::env::current_dir().context("current directory")?)?,
    };
    let source =
        std::path::absolute(&source).with_context(|| format!("resolving {}", source.display()))?;
    let target_dir = args
        .target_dir
        .unwrap_or_else(|| source.join("target").join("ukvtpm-build"));
    let target_dir = std::path::absolute(&target_dir)
        .with_context(|| format!("resolving {}", target_dir.display()))?;
    eprintln!("ukvtpm build: sources {}", source.display());
    let built = build(
        &BuildOptions {
            source: source.clone(),
            target_dir,
            cargo: None,
        },
        &mut |line| eprintln!("ukvtpm build: {line}"),
    )?;

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let image = args.out.join("ukvtpm.img");
    std::fs::write(&image, &built.image).with_context(|| format!("writing {}", image.display()))?;
    eprintln!(
        "ukvtpm build: measuring {} ({} KiB) for 1, 2, 4 vCPUs",
        image.display(),
        built.image.len() >> 10
    );
    let manifest_path = args.out.join("manifest.json");
    let min_tcb = args.min_tcb.unwrap_or_default();
    if min_tcb.is_zero() {
        eprintln!(
            "ukvtpm build: warning: minimum TCB is zero, so `ukvtpm verify` accepts reports from \
             platforms with any firmware and microcode; pin the current level with \
             --min-tcb bootloader=N,tee=N,snp=N,microcode=N"
        );
    }
    let json = ukvtpm_image_builder::cli::write_manifest(&image, &manifest_path, &source, min_tcb)?;
    let m = Manifest::from_json(&json)?;
    println!("image     {} sha256 {}", image.display(), m.image_sha256);
    println!("manifest  {}", manifest_path.display());
    for d in m.measurements.iter().filter(|d| d.vcpus == 1) {
        println!(
            "digest    1 vCPU {:<10} {}",
            d.vcpu_type.to_string(),
            d.digest
        );
    }
    Ok(())
}
