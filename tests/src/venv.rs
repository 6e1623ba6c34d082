//! The local Python venv holding `sev-snp-measure` (PyPI), the independent launch-digest tool the
//! cross-checks compare with. Installed on first use into `<workspace>/target/venv-snp`
//! (override: `UKVTPM_SNP_VENV`), reused afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The version the reference facts were checked against.
pub const SEV_SNP_MEASURE_VERSION: &str = "0.0.13";

pub fn dir() -> PathBuf {
    std::env::var_os("UKVTPM_SNP_VENV").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/venv-snp"),
        PathBuf::from,
    )
}

/// Path of the `sev-snp-measure` entry point, installing it when missing.
///
/// Test processes run in parallel (nextest: one process per test), so the check-and-install
/// holds an exclusive lock on `venv-snp.lock` beside the venv; the image-builder cross-check
/// takes the same lock.
pub fn sev_snp_measure() -> Result<PathBuf> {
    let venv = dir();
    let bin = venv.join("bin/sev-snp-measure");
    if let Some(parent) = venv.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let lock_path = venv.with_extension("lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    if bin.is_file() {
        return Ok(bin);
    }
    // --clear: a venv left half-made by an interrupted run is rebuilt, not reused.
    run(Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv))
    .context("creating the venv (fix: apt-get install -y python3-venv)")?;
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("sev-snp-measure=={SEV_SNP_MEASURE_VERSION}")))
    .context("pip install sev-snp-measure (needs PyPI access)")?;
    if !bin.is_file() {
        bail!(
            "pip installed sev-snp-measure but {} is missing",
            bin.display()
        );
    }
    Ok(bin)
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
