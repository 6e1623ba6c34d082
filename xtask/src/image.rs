//! `cargo xtask image`: build the unikernel for `x86_64-unknown-none` and turn its ELF into the
//! flat firmware image QEMU loads with `-bios` (`target/ukvtpm.img`).
//!
//! The image is the ROM that `unikernel/layout.ld` describes: it ends at 4 GiB, starts at the
//! lowest load address of the kernel's file-backed `PT_LOAD` segments (rounded down to 64 KiB)
//! and holds each segment's bytes at `p_paddr - base`; gaps (including the reserved footer area
//! below the reset vector) are zero. Segments without file bytes (`.bss`, stacks) are RAM only.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};

/// Where the image ends in guest-physical memory.
const FOUR_GIB: u64 = 1 << 32;
/// QEMU refuses `-bios` files whose size is not a multiple of this.
const IMAGE_ALIGN: u64 = 64 << 10;
/// The largest image we accept (the boot stub maps one 2 MiB ROM frame).
const IMAGE_MAX: u64 = 2 << 20;

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
    let image = flat_image(&elf).with_context(|| format!("converting {}", elf_path.display()))?;
    let out = target_dir.join("ukvtpm.img");
    std::fs::write(&out, &image).with_context(|| format!("writing {}", out.display()))?;
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

/// One `PT_LOAD` program header's fields that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Load {
    offset: u64,
    paddr: u64,
    filesz: u64,
}

fn u16_at(b: &[u8], off: usize) -> anyhow::Result<u16> {
    let s = b.get(off..off + 2).context("ELF truncated")?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> anyhow::Result<u32> {
    let s = b.get(off..off + 4).context("ELF truncated")?;
    Ok(u32::from_le_bytes(s.try_into()?))
}

fn u64_at(b: &[u8], off: usize) -> anyhow::Result<u64> {
    let s = b.get(off..off + 8).context("ELF truncated")?;
    Ok(u64::from_le_bytes(s.try_into()?))
}

/// File-backed `PT_LOAD` segments of a little-endian ELF64 file.
fn load_segments(elf: &[u8]) -> anyhow::Result<Vec<Load>> {
    ensure!(elf.get(0..4) == Some(b"\x7fELF"), "not an ELF file");
    ensure!(
        elf.get(4) == Some(&2) && elf.get(5) == Some(&1),
        "not ELF64 little-endian"
    );
    let phoff = usize::try_from(u64_at(elf, 0x20)?)?;
    let phentsize = usize::from(u16_at(elf, 0x36)?);
    let phnum = usize::from(u16_at(elf, 0x38)?);
    ensure!(phentsize >= 56, "bad program header size {phentsize}");
    let mut loads = Vec::new();
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(elf, ph)? != 1 {
            continue; // not PT_LOAD
        }
        let load = Load {
            offset: u64_at(elf, ph + 0x08)?,
            paddr: u64_at(elf, ph + 0x18)?,
            filesz: u64_at(elf, ph + 0x20)?,
        };
        if load.filesz > 0 {
            loads.push(load);
        }
    }
    Ok(loads)
}

/// Lays the file-backed load segments out as a ROM ending at 4 GiB.
fn flat_image(elf: &[u8]) -> anyhow::Result<Vec<u8>> {
    let loads = load_segments(elf)?;
    let lowest = loads
        .iter()
        .map(|l| l.paddr)
        .min()
        .context("no loadable segments")?;
    ensure!(lowest < FOUR_GIB, "segment at {lowest:#x} lies above 4 GiB");
    let base = lowest - lowest % IMAGE_ALIGN;
    let size = FOUR_GIB - base;
    if size > IMAGE_MAX {
        bail!("image would be {size:#x} bytes, more than {IMAGE_MAX:#x}: check layout.ld");
    }
    let mut image = vec![0u8; usize::try_from(size)?];
    for l in &loads {
        let end = l.paddr.checked_add(l.filesz).context("segment overflows")?;
        ensure!(
            end <= FOUR_GIB,
            "segment {:#x}+{:#x} crosses 4 GiB",
            l.paddr,
            l.filesz
        );
        let src = elf
            .get(usize::try_from(l.offset)?..usize::try_from(l.offset + l.filesz)?)
            .context("segment outside the ELF file")?;
        let dst = usize::try_from(l.paddr - base)?;
        image[dst..dst + src.len()].copy_from_slice(src);
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header with the given PT_LOAD entries (offset, paddr, bytes).
    fn elf_with(segments: &[(u64, &[u8])]) -> Vec<u8> {
        let phoff = 64usize;
        let data_start = phoff + 56 * segments.len();
        let mut elf = vec![0u8; data_start];
        elf[0..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[0x20..0x28].copy_from_slice(&(phoff as u64).to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        for (i, (paddr, bytes)) in segments.iter().enumerate() {
            let offset = elf.len() as u64;
            elf.extend_from_slice(bytes);
            let ph = phoff + 56 * i;
            elf[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
            elf[ph + 8..ph + 16].copy_from_slice(&offset.to_le_bytes());
            elf[ph + 0x18..ph + 0x20].copy_from_slice(&paddr.to_le_bytes());
            elf[ph + 0x20..ph + 0x28].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
        }
        elf
    }

    #[test]
    fn image_ends_at_4gib_and_is_64k_aligned() {
        let elf = elf_with(&[(0xfff0_0000, b"code"), (0xffff_fff0, b"\xe9\x00\x00")]);
        let image = flat_image(&elf).unwrap();
        assert_eq!(image.len(), 1 << 20);
        assert_eq!(&image[0..4], b"code");
        assert_eq!(&image[image.len() - 16..image.len() - 13], b"\xe9\x00\x00");
    }

    #[test]
    fn unaligned_base_rounds_down() {
        let elf = elf_with(&[(0xffff_8000, b"x")]);
        assert_eq!(flat_image(&elf).unwrap().len(), 64 << 10);
    }

    #[test]
    fn rejects_segments_above_4gib_and_huge_images() {
        assert!(flat_image(&elf_with(&[(0x1_0000_0000, b"x")])).is_err());
        assert!(flat_image(&elf_with(&[(0xf000_0000, b"x")])).is_err());
        assert!(flat_image(b"not elf").is_err());
    }
}
