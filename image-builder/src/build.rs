//! Reproducible build of the unikernel (DESIGN §7): the library side of `ukvtpm build`.
//!
//! The same source tree gives the same image bytes wherever it is checked out and whatever the
//! target directory, because the build
//! - runs the toolchain pinned in `rust-toolchain.toml` (`RUSTUP_TOOLCHAIN`; checked against
//!   `rustc -vV` so a non-rustup `cargo` of another version is refused);
//! - uses `--locked` and `--release` and the workspace `.cargo/config.toml` target flags;
//! - maps the source directory, `$CARGO_HOME` and the target directory to fixed names
//!   (`--remap-path-prefix`), so panic locations name `/ukvtpm/...`, `/cargo/registry/...` and
//!   `/target/...`; cargo keeps these flags out of `-C metadata`, so symbol names do not depend on
//!   them either;
//! - builds without debug info (`-C debuginfo=0`), without incremental state, with a fixed
//!   `SOURCE_DATE_EPOCH` (honoured when set by the caller), and with the caller's compiler
//!   environment (`RUSTFLAGS`, `RUSTC_WRAPPER`, `CARGO_PROFILE_*`, ...) removed;
//! - lays the ELF out with [`crate::image::from_elf`], whose output contains no timestamps or
//!   paths: only the load segments and the footer.
//!
//! What is not controlled here: a user-wide cargo `config.toml` that sets `build.rustflags` or a
//! linker; the tenant builds in a clean environment (for instance a fresh container) to rule that
//! out.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use thiserror::Error;

use crate::image::{self, ImageError};
use crate::manifest::{BuildInputs, ManifestError};

/// The unikernel package and binary.
pub const PACKAGE: &str = "ukvtpm-unikernel";
/// Its bare-metal target.
pub const TARGET: &str = "x86_64-unknown-none";
/// Where the source directory appears in paths compiled into the image.
pub const SOURCE_PREFIX: &str = "/ukvtpm";
/// Where `$CARGO_HOME` (registry sources) appears in paths compiled into the image.
pub const CARGO_HOME_PREFIX: &str = "/cargo";
/// Where the target directory (build-script output included into crates) appears.
pub const TARGET_PREFIX: &str = "/target";
/// `SOURCE_DATE_EPOCH` when the caller sets none (1980-01-01, the earliest zip time).
pub const DEFAULT_SOURCE_DATE_EPOCH: u64 = 315_532_800;

/// Environment variables passed through to cargo despite their `CARGO_` prefix: where the
/// registry cache lives and how it is reached, not how code is compiled.
const KEEP_ENV_PREFIXES: [&str; 6] = [
    "CARGO_HOME",
    "CARGO_NET_",
    "CARGO_HTTP_",
    "CARGO_REGISTRIES_",
    "CARGO_REGISTRY_",
    "CARGO_TERM_",
];

/// What to build and where.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Workspace root of the ukvtpm sources (holds `Cargo.lock` and `rust-toolchain.toml`).
    pub source: PathBuf,
    /// Cargo target directory, private to this build.
    pub target_dir: PathBuf,
    /// `cargo` to run (default `cargo`, the rustup proxy, found in `PATH`).
    pub cargo: Option<PathBuf>,
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct Built {
    /// The measured image bytes.
    pub image: Vec<u8>,
    /// The ELF it was laid out from.
    pub elf: PathBuf,
    /// Build inputs as recorded in the manifest.
    pub inputs: BuildInputs,
    /// `rustc -V` of the toolchain that built it.
    pub rustc: String,
}

/// Why a build failed; each message says what to do.
#[derive(Debug, Error)]
pub enum BuildError {
    /// The source directory is not a ukvtpm workspace.
    #[error(
        "{0} is not the ukvtpm source tree (no Cargo.lock, rust-toolchain.toml and unikernel/): \
         pass --source DIR or run from the checkout"
    )]
    NotSource(PathBuf),
    /// Cargo.lock or rust-toolchain.toml unreadable.
    #[error(transparent)]
    Inputs(#[from] ManifestError),
    /// A tool could not be started.
    #[error("cannot run {tool}: {cause}; install the Rust toolchain with rustup (see README)")]
    Spawn {
        /// Tool.
        tool: String,
        /// Cause.
        cause: std::io::Error,
    },
    /// The toolchain is not the pinned one.
    #[error(
        "toolchain mismatch: rust-toolchain.toml pins {pinned} but {found} was found; install it \
         with `rustup toolchain install {pinned}` and use the rustup `cargo`"
    )]
    Toolchain {
        /// Pinned channel.
        pinned: String,
        /// `rustc -V` output.
        found: String,
    },
    /// cargo failed.
    #[error("cargo build of {PACKAGE} failed ({0}); the compiler output above says why")]
    Cargo(std::process::ExitStatus),
    /// Reading the ELF failed.
    #[error("reading the built ELF {path}: {cause}")]
    Elf {
        /// ELF path.
        path: PathBuf,
        /// Cause.
        cause: std::io::Error,
    },
    /// The ELF does not make a valid image.
    #[error("laying out the image: {0}")]
    Image(#[from] ImageError),
}

/// Finds the ukvtpm workspace root at or above `start`.
///
/// # Errors
/// [`BuildError::NotSource`] when no ancestor holds the workspace files.
pub fn find_source(start: &Path) -> Result<PathBuf, BuildError> {
    start
        .ancestors()
        .find(|d| is_source(d))
        .map(Path::to_path_buf)
        .ok_or_else(|| BuildError::NotSource(start.to_path_buf()))
}

fn is_source(d: &Path) -> bool {
    d.join("Cargo.lock").is_file()
        && d.join("rust-toolchain.toml").is_file()
        && d.join("unikernel/layout.ld").is_file()
}

/// `$CARGO_HOME`, else `$HOME/.cargo`.
fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

/// `--remap-path-prefix=FROM=TO` for `from` as given and canonicalised.
fn remaps(from: &Path, to: &str) -> Vec<String> {
    let mut v = vec![from.to_path_buf()];
    if let Ok(c) = from.canonicalize()
        && c != from
    {
        v.push(c);
    }
    v.iter()
        .map(|p| format!("--remap-path-prefix={}={to}", p.display()))
        .collect()
}

/// A TOML string literal (basic string) for `--config`.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `cmd` with the caller's compiler environment removed and the reproducibility environment set.
fn clean_env(cmd: &mut Command, toolchain: &str) {
    let drop = |k: &str| {
        let compiler = k == "CARGO"
            || k.starts_with("CARGO_")
            || k.starts_with("RUSTC")
            || k == "RUSTFLAGS"
            || k == "RUSTDOCFLAGS"
            || k.starts_with("RUSTUP_TOOLCHAIN");
        compiler && !KEEP_ENV_PREFIXES.iter().any(|p| k.starts_with(p))
    };
    let vars: Vec<OsString> = std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| k.to_str().is_some_and(drop))
        .collect();
    for k in vars {
        cmd.env_remove(k);
    }
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_SOURCE_DATE_EPOCH);
    cmd.env("RUSTUP_TOOLCHAIN", toolchain)
        .env("CARGO_INCREMENTAL", "0")
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .env("TZ", "UTC")
        .env("LC_ALL", "C");
}

/// `rustc -vV` of the toolchain `cargo` will use; refuses a version other than the pinned one.
fn check_toolchain(source: &Path, toolchain: &str) -> Result<String, BuildError> {
    let mut cmd = Command::new("rustc");
    cmd.arg("-vV").current_dir(source);
    clean_env(&mut cmd, toolchain);
    let out = cmd.output().map_err(|cause| BuildError::Spawn {
        tool: "rustc".into(),
        cause,
    })?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let first = text.lines().next().unwrap_or_default().to_owned();
    if !out.status.success() || !release_matches(&text, toolchain) {
        return Err(BuildError::Toolchain {
            pinned: toolchain.to_owned(),
            found: if first.is_empty() {
                String::from_utf8_lossy(&out.stderr).trim().to_owned()
            } else {
                first
            },
        });
    }
    Ok(first)
}

/// Whether `rustc -vV` output is of the pinned channel. A channel like "1.95.0" names one
/// release and must match `release:`; named channels ("stable", "nightly-…") are taken as given.
fn release_matches(rustc_vv: &str, toolchain: &str) -> bool {
    let release = rustc_vv
        .lines()
        .find_map(|l| l.strip_prefix("release: "))
        .unwrap_or_default();
    let pinned_release = toolchain.chars().all(|c| c.is_ascii_digit() || c == '.');
    !pinned_release || release == toolchain
}

/// Builds the unikernel from `opts.source` and lays out the measured image. `progress` gets one
/// line per stage; cargo's own progress goes to stderr.
///
/// # Errors
/// [`BuildError`] naming the failing step.
pub fn build(opts: &BuildOptions, progress: &mut dyn FnMut(&str)) -> Result<Built, BuildError> {
    let source = &opts.source;
    if !is_source(source) {
        return Err(BuildError::NotSource(source.clone()));
    }
    let inputs = BuildInputs::from_workspace(source)?;
    progress(&format!(
        "[1/3] toolchain {} (rust-toolchain.toml), Cargo.lock sha256 {}",
        inputs.toolchain, inputs.cargo_lock_sha256
    ));
    let rustc = check_toolchain(source, &inputs.toolchain)?;
    progress(&format!("      {rustc}"));

    // rustc applies the last matching mapping: the most specific directories go last.
    let mut flags = Vec::new();
    if let Some(home) = cargo_home() {
        flags.extend(remaps(&home, CARGO_HOME_PREFIX));
    }
    flags.extend(remaps(source, SOURCE_PREFIX));
    flags.extend(remaps(&opts.target_dir, TARGET_PREFIX));
    flags.push("-Cdebuginfo=0".into());
    let flags: Vec<String> = flags.iter().map(|f| toml_str(f)).collect();

    let cargo = opts.cargo.clone().unwrap_or_else(|| PathBuf::from("cargo"));
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(source)
        .args(["build", "--locked", "--release", "--package", PACKAGE])
        .args(["--bin", PACKAGE, "--target", TARGET])
        // Adds to the target rustflags of .cargo/config.toml (arrays merge) instead of
        // replacing them as RUSTFLAGS would.
        .arg("--config")
        .arg(format!("target.{TARGET}.rustflags=[{}]", flags.join(", ")))
        .stdin(Stdio::null());
    clean_env(&mut cmd, &inputs.toolchain);
    cmd.env("CARGO_TARGET_DIR", &opts.target_dir);
    progress(&format!(
        "[2/3] cargo build --locked --release -p {PACKAGE} --target {TARGET} (target dir {})",
        opts.target_dir.display()
    ));
    let status = cmd.status().map_err(|cause| BuildError::Spawn {
        tool: cargo.display().to_string(),
        cause,
    })?;
    if !status.success() {
        return Err(BuildError::Cargo(status));
    }

    let elf = opts.target_dir.join(TARGET).join("release").join(PACKAGE);
    progress(&format!("[3/3] laying out {}", elf.display()));
    let bytes = std::fs::read(&elf).map_err(|cause| BuildError::Elf {
        path: elf.clone(),
        cause,
    })?;
    let image = image::from_elf(&bytes)?;
    Ok(Built {
        image,
        elf,
        inputs,
        rustc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_str(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_str("x\ny"), r#""x\u000ay""#);
    }

    #[test]
    fn finds_the_workspace_from_a_subdirectory() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = find_source(&here.join("src")).expect("workspace root");
        assert!(root.join("unikernel/layout.ld").is_file());
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            find_source(dir.path()),
            Err(BuildError::NotSource(_))
        ));
    }

    #[test]
    fn toolchain_release_must_match_a_pinned_version() {
        let vv = "rustc 1.95.0 (abc 2026-03-21)\nbinary: rustc\nrelease: 1.95.0\n";
        assert!(release_matches(vv, "1.95.0"));
        assert!(!release_matches(vv, "1.94.1"));
        assert!(!release_matches("", "1.95.0"));
        assert!(release_matches(vv, "stable"));
        let e = BuildError::Toolchain {
            pinned: "1.94.1".into(),
            found: "rustc 1.95.0".into(),
        };
        assert!(e.to_string().contains("rustup toolchain install 1.94.1"));
    }
}
