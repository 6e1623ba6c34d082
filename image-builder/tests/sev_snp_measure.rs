//! Independent cross-check (issue 7, item 4): our launch digest must equal the one computed by
//! `sev-snp-measure` (PyPI, VirTEE's Python tool, an implementation independent of the `sev`
//! crate) for the synthetic image and, when `UKVTPM_IMAGE=/path/to/ukvtpm.img` is set, for that
//! image, for 1, 2 and 4 vCPUs and several vCPU types; and a 1-byte change must change the digest.
//!
//! The tool is installed into a venv at `<workspace>/target/venv-snp` (override with
//! `UKVTPM_SNP_VENV`), reused when present. Missing python3/venv/pip or no PyPI access make the
//! test FAIL with the command to run; it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ukvtpm_image_builder::measure::{LaunchParams, VcpuType, snp_launch_digest, to_hex};
use ukvtpm_image_builder::synthetic;

#[allow(dead_code)]
#[path = "../../tests/src/venv.rs"]
mod venv;

fn run(cmd: &mut Command, what: &str, fix: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}\nfix: {fix}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {cmd:?}\nstdout: {}\nstderr: {}\nfix: {fix}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Path of the `sev-snp-measure` entry point, installed on first use (under a lock shared
/// with the tests crate, whose routine this is).
fn tool() -> &'static Path {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        venv::sev_snp_measure().unwrap_or_else(|e| {
            panic!("{e:#}\nfix: apt-get install -y python3 python3-venv python3-pip; PyPI access")
        })
    })
}

fn theirs(image: &Path, vcpus: u32, t: VcpuType, features: u64) -> String {
    run(
        Command::new(tool())
            .args(["--mode", "snp"])
            .arg(format!("--vcpus={vcpus}"))
            .arg(format!("--vcpu-type={}", t.qemu_name()))
            .arg(format!("--guest-features={features:#x}"))
            .arg("--ovmf")
            .arg(image),
        "sev-snp-measure",
        "see the error above",
    )
    .trim()
    .to_owned()
}

fn ours(image: &[u8], vcpus: u32, t: VcpuType, features: u64) -> String {
    let p = LaunchParams {
        vcpus,
        vcpu_type: t,
        guest_features: features,
    };
    to_hex(&snp_launch_digest(image, &p).expect("our digest"))
}

fn cross_check(image: &[u8], label: &str) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("image.bin");
    std::fs::write(&path, image).expect("write image");
    let mut digests = Vec::new();
    for t in [VcpuType::EpycV4, VcpuType::EpycMilan, VcpuType::EpycGenoa] {
        for vcpus in [1, 2, 4] {
            let a = ours(image, vcpus, t, 0x1);
            let b = theirs(&path, vcpus, t, 0x1);
            assert_eq!(a, b, "{label}: {vcpus} vCPU {t}: ours != sev-snp-measure");
            eprintln!("{label}: {vcpus} vCPU {t}: {a}");
            digests.push(a);
        }
    }
    // Guest features are an input too (old 6.6-era hosts with debug_swap: 0x21).
    let a = ours(image, 1, VcpuType::EpycV4, 0x21);
    assert_eq!(
        a,
        theirs(&path, 1, VcpuType::EpycV4, 0x21),
        "{label}: features 0x21"
    );
    digests
}

#[test]
fn synthetic_image_matches_sev_snp_measure() {
    let img = synthetic::build(&synthetic::Params::default());
    let d = cross_check(&img, "synthetic");
    assert_eq!(
        d[0],
        "6ef2c4dd2a68d8c10399777a7ef31fc2fe6ef471b807934ef6bc6962e045989fd55034cac94b40d8f210650a496817da"
    );
}

#[test]
fn one_byte_change_changes_both_digests() {
    let img = synthetic::build(&synthetic::Params::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let a_path = dir.path().join("a.bin");
    let b_path = dir.path().join("b.bin");
    let mut changed = img.clone();
    changed[0x4321] ^= 0x80;
    std::fs::write(&a_path, &img).expect("write");
    std::fs::write(&b_path, &changed).expect("write");
    let t = VcpuType::EpycV4;
    let (a_ours, b_ours) = (ours(&img, 1, t, 1), ours(&changed, 1, t, 1));
    assert_ne!(a_ours, b_ours, "1-byte change must change our digest");
    assert_eq!(a_ours, theirs(&a_path, 1, t, 1));
    assert_eq!(b_ours, theirs(&b_path, 1, t, 1));
}

#[test]
fn real_image_matches_sev_snp_measure_when_given() {
    let Some(path) = std::env::var_os("UKVTPM_IMAGE") else {
        eprintln!("UKVTPM_IMAGE not set: only the synthetic image is cross-checked");
        return;
    };
    let img = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("UKVTPM_IMAGE={}: {e}", Path::new(&path).display()));
    cross_check(&img, "UKVTPM_IMAGE");
    let mut changed = img.clone();
    let mid = changed.len() / 2;
    changed[mid] ^= 1;
    assert_ne!(
        ours(&img, 1, VcpuType::EpycV4, 1),
        ours(&changed, 1, VcpuType::EpycV4, 1)
    );
}
