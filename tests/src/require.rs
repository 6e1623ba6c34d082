//! System tools the tests need. A missing tool fails the test with the exact install command:
//! the suite never skips silently (issue 3: "a missing tool makes the suite fail").

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The Debian package that ships `tool`.
pub fn package_for(tool: &str) -> &'static str {
    match tool {
        t if t.starts_with("tpm2_") => "tpm2-tools",
        "swtpm" => "swtpm",
        "swtpm_setup" | "swtpm_ioctl" => "swtpm-tools",
        t if t.ends_with("sum") => "coreutils",
        "openssl" => "openssl",
        "qemu-system-x86_64" => "qemu-system-x86",
        _ => "(unknown package)",
    }
}

/// The exact command that installs `packages` on Debian.
pub fn install_command(packages: &[&str]) -> String {
    format!(
        "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y {}",
        packages.join(" ")
    )
}

/// Finds `tool` on `PATH`, or fails with the install command.
pub fn tool(tool: &str) -> Result<PathBuf> {
    if let Some(path) = which(tool) {
        return Ok(path);
    }
    bail!(
        "required tool `{tool}` is not installed (not found on PATH).\n  install it with: {}\n  (or run `cargo xtask deps`, which installs everything the tests need)",
        install_command(&[package_for(tool)])
    )
}

/// Checks that the tpm2-tss TCTI library `name` (`swtpm` or `mssim`) can be loaded.
pub fn tcti(name: &str) -> Result<()> {
    let file = format!("libtss2-tcti-{name}.so.0");
    if tcti_lib_present(&file) {
        return Ok(());
    }
    bail!(
        "the tpm2-tss TCTI library {file} is not installed.\n  install it with: {}",
        install_command(&[&format!("libtss2-tcti-{name}0")])
    )
}

/// True if the shared library `file` is in one of the system library directories.
pub fn tcti_lib_present(file: &str) -> bool {
    let dirs = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/lib",
    ];
    dirs.iter().any(|d| Path::new(d).join(file).exists())
}

/// `command -v`, without a shell.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
