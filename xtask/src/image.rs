//! `cargo xtask image`: build the unikernel for `x86_64-unknown-none` and turn its ELF into the
//! flat firmware image QEMU loads with `-bios` (`target/ukvtpm.img`).
//!
//! The layout (ROM ending at 4 GiB, load segments at `p_paddr - base`, the SNP footer table and
//! `ASEV` metadata in the area `layout.ld` reserves) is image-builder's:
//! [`ukvtpm_image_builder::image::from_elf`], the same code `ukvtpm build` uses.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, ensure};

/// Builds the unikernel (release or debug profile) and writes `ukvtpm.img` into the target
/// directory (`$CARGO_TARGET_DIR`, else `target/`): `cargo xtask image`.
///
/// Returns the image path.
///
/// # Errors
/// When cargo fails, the ELF is malformed, or its load segments do not form a valid image.
pub fn run(release: bool) -> anyhow::Result<PathBuf> {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target"));
    build(release, &target_dir)
}

/// Like [`run`] with an explicit cargo target directory (tests use their own so they never
/// wait on the lock of the `cargo test` that runs them).
///
/// # Errors
/// As [`run`].
pub fn build(release: bool, target_dir: &Path) -> anyhow::Result<PathBuf> {
    let root = project_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .env("CARGO_TARGET_DIR", target_dir)
        .args([
            "build",
            "--locked",
            "--package",
            "ukvtpm-unikernel",
            "--bin",
            "ukvtpm-unikernel",
            "--target",
            "x86_64-unknown-none",
        ]);
    if release {
        cmd.arg("--release");
    }
    // Reproducible output: no absolute paths of this checkout in the image. Passed through
    // `--config` so it adds to .cargo/config.toml's target rustflags (non-PIE, soft crypto
    // backends) instead of replacing them as RUSTFLAGS would.
    cmd.arg("--config").arg(format!(
        "target.x86_64-unknown-none.rustflags=[\"--remap-path-prefix={}=.\"]",
        root.display()
    ));
    let status = cmd
        .status()
        .context("running cargo build for the unikernel")?;
    ensure!(status.success(), "building the unikernel failed ({status})");

    let profile = if release { "release" } else { "debug" };
    let elf_path = target_dir
        .join("x86_64-unknown-none")
        .join(profile)
        .join("ukvtpm-unikernel");
    let elf =
        std::fs::read(&elf_path).with_context(|| format!("reading {}", elf_path.display()))?;
    let image = ukvtpm_image_builder::image::from_elf(&elf)
        .with_context(|| format!("converting {}", elf_path.display()))?;
    let out = target_dir.join("ukvtpm.img");
    // Written under a private name and renamed into place: test processes running in parallel
    // build the same image and boot it, and QEMU must never see a half-written file.
    let tmp = target_dir.join(format!("ukvtpm.img.{}.tmp", std::process::id()));
    std::fs::write(&tmp, &image).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &out).with_context(|| format!("renaming to {}", out.display()))?;
    eprintln!(
        "xtask image: {} ({} KiB, {profile})",
        out.display(),
        image.len() >> 10
    );
    Ok(out)
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
