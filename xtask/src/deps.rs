//! `cargo xtask deps`: the Debian packages ukvtpm's demo and tests need. Missing ones are
//! installed with apt-get when running as root; otherwise the exact command is printed and the
//! task fails (a test suite that silently skips is worse than one that says what to install).

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// (package, a command or file it provides, why we need it).
const PACKAGES: &[(&str, Probe, &str)] = &[
    (
        "tpm2-tools",
        Probe::Command("tpm2_getrandom"),
        "the real TPM clients the tests run",
    ),
    (
        "swtpm",
        Probe::Command("swtpm"),
        "the reference TPM the tests and benchmark compare with",
    ),
    (
        "swtpm-tools",
        Probe::Command("swtpm_setup"),
        "swtpm_setup / swtpm_ioctl",
    ),
    (
        "libtss2-tcti-swtpm0",
        Probe::Lib("libtss2-tcti-swtpm.so.0"),
        "the swtpm: TCTI",
    ),
    (
        "libtss2-tcti-mssim0",
        Probe::Lib("libtss2-tcti-mssim.so.0"),
        "the mssim: TCTI",
    ),
    (
        "qemu-system-x86",
        Probe::Command("qemu-system-x86_64"),
        "runs the unikernel",
    ),
    (
        "openssl",
        Probe::Command("openssl"),
        "key and certificate checks",
    ),
    (
        "python3-venv",
        Probe::Package,
        "venv for sev-snp-measure (PyPI)",
    ),
    (
        "python3-tpm2-pytss",
        Probe::Package,
        "tpm2-pytss, the Python ESAPI/FAPI client of tests/pytss",
    ),
    (
        "python3-pytest",
        Probe::Package,
        "runs the tests/pytss suite",
    ),
];

#[derive(Clone, Copy)]
enum Probe {
    Command(&'static str),
    Lib(&'static str),
    /// Only `dpkg -s`.
    Package,
}

/// Checks (and when root, installs) every package.
pub fn run() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(package, probe, _)| !present(package, *probe))
        .map(|(package, _, _)| *package)
        .collect();
    if missing.is_empty() {
        eprintln!("xtask deps: all {} system packages present", PACKAGES.len());
        return Ok(());
    }
    for (package, _, why) in PACKAGES.iter().filter(|(p, _, _)| missing.contains(p)) {
        eprintln!("xtask deps: missing {package} ({why})");
    }
    let command = install_command(&missing);
    if !is_root() {
        bail!("missing system packages; install them as root with:\n  {command}");
    }
    eprintln!("xtask deps: installing: {command}");
    let status = Command::new("sh")
        .arg("-c")
        .arg(&command)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("apt-get failed ({status}); the command was:\n  {command}");
    }
    let still: Vec<&str> = PACKAGES
        .iter()
        .filter(|(package, probe, _)| !present(package, *probe))
        .map(|(package, _, _)| *package)
        .collect();
    if !still.is_empty() {
        bail!("still missing after apt-get: {}", still.join(" "));
    }
    eprintln!("xtask deps: installed {}", missing.join(" "));
    Ok(())
}

/// The exact shell command that installs `packages`.
pub fn install_command(packages: &[&str]) -> String {
    format!(
        "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y {}",
        packages.join(" ")
    )
}

fn present(package: &str, probe: Probe) -> bool {
    let installed = dpkg_installed(package);
    match probe {
        Probe::Command(cmd) => installed && ukvtpm_tests::require::which(cmd).is_some(),
        Probe::Lib(lib) => installed && ukvtpm_tests::require::tcti_lib_present(lib),
        Probe::Package => installed,
    }
}

/// `dpkg -s PACKAGE` says `Status: install ok installed`.
fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg")
        .args(["-s", package])
        .stderr(Stdio::null())
        .output()
        .map(|out| {
            out.status.success()
                && String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .any(|l| l.trim() == "Status: install ok installed")
        })
        .unwrap_or(false)
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
