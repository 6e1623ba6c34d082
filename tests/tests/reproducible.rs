//! Reproducible build (issue 7, item 1; DESIGN §7): two `ukvtpm build` runs on two clean copies
//! of the committed tree, at different paths and with different target directories, give the
//! same image bytes and the same manifest; `ukvtpm measure` of the image gives the manifest's
//! digests, and so does `sev-snp-measure` (PyPI, the independent implementation the image-builder
//! cross-check uses; same venv, `target/venv-snp`); and the image contains none of the build's
//! absolute paths.
//!
//! The copies are `git archive HEAD` (the committed tree: uncommitted edits are not in it). The
//! two builds run one after the other (2-core CI) and share the cargo registry cache; each is a
//! release build of the unikernel crate and its dependencies only (one to two minutes on an idle
//! 2-core machine).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail, ensure};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// Extracts the committed tree (HEAD) of this checkout into `dir`.
fn export_head(tar: &Path, dir: &Path) -> Result<()> {
    if !tar.is_file() {
        run(Command::new("git")
            .arg("-C")
            .arg(workspace())
            .args(["archive", "--format=tar", "-o"])
            .arg(tar)
            .arg("HEAD"))
        .context("git archive HEAD (the test needs a git checkout and git)")?;
    }
    std::fs::create_dir_all(dir)?;
    run(Command::new("tar").arg("-xf").arg(tar).arg("-C").arg(dir))?;
    Ok(())
}

/// The minimum TCB both builds pin (an arbitrary level; it must reach the manifest).
const MIN_TCB: &str = "bootloader=9,tee=0,snp=23,microcode=213";

/// One clean build: returns (image bytes, manifest text, build stderr).
fn build(ukvtpm: &Path, source: &Path, target: &Path, out: &Path) -> Result<(Vec<u8>, String)> {
    let started = std::time::Instant::now();
    let o = run(Command::new(ukvtpm)
        .current_dir(source)
        .arg("build")
        .arg("--out")
        .arg(out)
        .arg("--target-dir")
        .arg(target)
        .args(["--min-tcb", MIN_TCB]))?;
    let stderr = String::from_utf8_lossy(&o.stderr);
    eprintln!(
        "built in {}: {:.0?}\n{}",
        source.display(),
        started.elapsed(),
        String::from_utf8_lossy(&o.stdout)
    );
    ensure!(
        stderr.contains("ukvtpm build: [2/3] cargo build --locked --release"),
        "no progress lines on stderr:\n{stderr}"
    );
    let image = std::fs::read(out.join("ukvtpm.img"))?;
    let manifest = std::fs::read_to_string(out.join("manifest.json"))?;
    Ok((image, manifest))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn two_clean_builds_give_the_same_image_and_manifest() -> Result<()> {
    let ukvtpm = ukvtpm_tests::server::ukvtpm_bin()?;
    let tmp = tempfile::tempdir()?;
    let tar = tmp.path().join("head.tar");
    // Different depths and names, so any leaked path would differ between the two.
    let src_a = tmp.path().join("a/ukvtpm");
    let src_b = tmp.path().join("b/some/other-checkout-of-ukvtpm");
    export_head(&tar, &src_a)?;
    export_head(&tar, &src_b)?;
    let (tgt_a, tgt_b) = (tmp.path().join("target-a"), tmp.path().join("b/tgt"));

    let (img_a, man_a) = build(&ukvtpm, &src_a, &tgt_a, &tmp.path().join("out-a"))?;
    let (img_b, man_b) = build(&ukvtpm, &src_b, &tgt_b, &tmp.path().join("out-b"))?;

    let m: serde_yaml::Value = serde_yaml::from_str(&man_a).context("manifest.json")?;
    let sha = m["image_sha256"].as_str().context("image_sha256")?;
    let tcb = &m["min_tcb"];
    ensure!(
        (
            tcb["bootloader"].as_u64(),
            tcb["tee"].as_u64(),
            tcb["snp"].as_u64(),
            tcb["microcode"].as_u64()
        ) == (Some(9), Some(0), Some(23), Some(213)),
        "--min-tcb {MIN_TCB} did not reach the manifest: {tcb:?}"
    );
    eprintln!(
        "image {} KiB, sha256 {sha}; build A = build B: {}",
        img_a.len() >> 10,
        img_a == img_b
    );
    ensure!(
        img_a == img_b,
        "the two builds differ: {} and {} bytes, first difference at offset {:?}",
        img_a.len(),
        img_b.len(),
        img_a.iter().zip(&img_b).position(|(a, b)| a != b)
    );
    assert_eq!(man_a, man_b, "the two manifests differ");

    // No absolute path of either build in the image.
    let home = std::env::var("CARGO_HOME")
        .or_else(|_| std::env::var("HOME").map(|h| format!("{h}/.cargo")))
        .unwrap_or_default();
    for p in [&src_a, &src_b, &tgt_a, &tgt_b, tmp.path(), Path::new(&home)] {
        let s = p.to_string_lossy();
        if !s.is_empty() {
            assert!(
                !contains(&img_a, s.as_bytes()),
                "image contains the path {s}"
            );
        }
    }

    // `ukvtpm measure` and `sev-snp-measure` agree with every pinned digest.
    let image = tmp.path().join("out-a/ukvtpm.img");
    let tool = ukvtpm_tests::venv::sev_snp_measure()?;
    let features = format!(
        "--guest-features={:#x}",
        m["guest_features"].as_u64().context("guest_features")?
    );
    let ms = m["measurements"].as_sequence().context("measurements")?;
    ensure!(ms.len() >= 3, "manifest pins {} digests", ms.len());
    for x in ms {
        let vcpus = x["vcpus"].as_u64().context("vcpus")?;
        let t = x["vcpu_type"].as_str().context("vcpu_type")?;
        let o = run(Command::new(&ukvtpm)
            .arg("measure")
            .arg(&image)
            .arg(format!("--vcpus={vcpus}"))
            .arg(format!("--vcpu-type={t}"))
            .arg(&features))?;
        let ours = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        assert_eq!(
            Some(ours.as_str()),
            x["digest"].as_str(),
            "{vcpus} vCPU {t}: ukvtpm measure differs from the manifest"
        );
        let o = run(Command::new(&tool)
            .args(["--mode", "snp", &features])
            .arg(format!("--vcpus={vcpus}"))
            .arg(format!("--vcpu-type={t}"))
            .arg("--ovmf")
            .arg(&image))?;
        let theirs = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        assert_eq!(ours, theirs, "{vcpus} vCPU {t}: sev-snp-measure differs");
        eprintln!("{vcpus} vCPU {t:<10} {ours}");
    }
    Ok(())
}
