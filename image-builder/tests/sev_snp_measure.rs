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

/// Version the reference facts were checked against (reference/snp-launch-and-attestation.md).
const TOOL_VERSION: &str = "0.0.13";

fn venv_dir() -> PathBuf {
    std::env::var_os("UKVTPM_SNP_VENV").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/venv-snp"),
        PathBuf::from,
    )
}

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

/// Path of the `sev-snp-measure` entry point, installing it on first use.
fn tool() -> &'static Path {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        let venv = venv_dir();
        let bin = venv.join("bin/sev-snp-measure");
        // nextest runs each test in its own process, so the OnceLock alone does not stop two
        // processes from creating the same venv at once: hold an exclusive lock file while
        // checking and installing.
        if let Some(parent) = venv.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        let lock_path = venv.with_extension("lock");
        let lock = std::fs::File::create(&lock_path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", lock_path.display()));
        lock.lock()
            .unwrap_or_else(|e| panic!("locking {}: {e}", lock_path.display()));
        if bin.is_file() {
            return bin;
        }
        run(
            Command::new("python3").arg("--version"),
            "python3",
            "install Python 3: apt-get install -y python3 python3-venv python3-pip",
        );
        run(
            // --clear: a venv left half-made by an interrupted run is rebuilt, not reused.
            Command::new("python3")
                .args(["-m", "venv", "--clear"])
                .arg(&venv),
            "creating the venv",
            "apt-get install -y python3-venv  (then re-run the test)",
        );
        let pip = venv.join("bin/pip");
        run(
            Command::new(&pip)
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(format!("sev-snp-measure=={TOOL_VERSION}")),
            "pip install sev-snp-measure",
            &format!(
                "{} install sev-snp-measure=={TOOL_VERSION}  (needs PyPI access)",
                pip.display()
            ),
        );
        assert!(
            bin.is_file(),
            "pip installed sev-snp-measure but {} is missing",
            bin.display()
        );
        bin
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
