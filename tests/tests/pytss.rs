//! tpm2-pytss (the Python binding of tpm2-tss ESAPI and FAPI) against every server: the pytest
//! suite in `tests/pytss/` runs once per file and per target, so a failure names both.
//!
//! The suite starts a fresh server for every test itself (`tests/pytss/tpm_server.py`); this
//! runner only tells it how: `UKVTPM_SERVER_CMD` is the command line of
//! [`ukvtpm_tests::server::command`] as a JSON list with `{port}`, `{ctrl}` and `{state}`
//! placeholders, `UKVTPM_TCTI_MODULE` the TCTI to reach it with. pytest's output is the error
//! when a file fails.
//!
//! tpm2-pytss comes from Debian (`python3-tpm2-pytss`), so the interpreter is the system's
//! `/usr/bin/python3` (override with `UKVTPM_PYTHON`), not whichever `python3` is first on PATH.
//!
//! Run one file against one server with `cargo nextest run -p ukvtpm-tests --test pytss
//! ukvtpm::keys`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};
use ukvtpm_tests::server::{self, Kind};
use ukvtpm_tests::{Target, require};

/// The Debian packages the suite needs.
const PACKAGES: &[&str] = &["python3-tpm2-pytss", "python3-pytest"];

/// Port numbers that stand for the real ones in the server command template (the suite picks
/// free ports per test). Nothing else in a command line contains them.
const SENTINEL_PORT: u16 = 65_000;

macro_rules! pytss_files {
    ($($file:ident),* $(,)?) => {
        mod swtpm {
            $( #[test]
            fn $file() -> anyhow::Result<()> {
                super::run(ukvtpm_tests::Target::Swtpm, stringify!($file))
            } )*
        }
        mod ukvtpm {
            $( #[test]
            fn $file() -> anyhow::Result<()> {
                super::run(ukvtpm_tests::Target::Ukvtpm, stringify!($file))
            } )*
        }
        mod ukvtpm_mssim {
            $( #[test]
            fn $file() -> anyhow::Result<()> {
                super::run(ukvtpm_tests::Target::UkvtpmMssim, stringify!($file))
            } )*
        }
    };
}

// One entry per tests/pytss/test_<name>.py.
pytss_files!(
    basics,
    pcr,
    hash,
    keys,
    policy,
    policy_more,
    sessions,
    nv,
    objects,
    attest,
    admin,
    platform,
    fapi,
);

/// Runs `tests/pytss/test_<file>.py` against fresh `target` servers.
fn run(target: Target, file: &str) -> Result<()> {
    let python = python()?;
    require::tcti(target.tcti())?;
    let template = server_template(target.kind())?;
    let dir = suite_dir();
    let script = dir.join(format!("test_{file}.py"));
    if !script.is_file() {
        bail!("{} does not exist", script.display());
    }
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE"])
        .arg(&script)
        .current_dir(&dir)
        .env("UKVTPM_SERVER_CMD", template)
        .env("UKVTPM_SERVER_NAME", target.kind().name())
        .env("UKVTPM_TCTI_MODULE", target.tcti())
        // No __pycache__ in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!(
            "tpm2-pytss suite test_{file}.py failed against {} ({}):\n  command: {cmd:?}\n{text}",
            target.kind().name(),
            out.status
        );
    }
    println!("{text}");
    Ok(())
}

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pytss")
}

/// The server command line as a JSON list with `{port}`, `{ctrl}` and `{state}` placeholders.
fn server_template(kind: Kind) -> Result<String> {
    let bin = match kind {
        Kind::Swtpm => require::tool("swtpm")?,
        Kind::Ukvtpm(_) => server::ukvtpm_bin()?,
        Kind::Unikernel => bail!("the pytss suite runs against host servers only"),
    };
    let state = Path::new("{state}");
    let cmd = server::command(kind, &bin, SENTINEL_PORT, state);
    let port = SENTINEL_PORT.to_string();
    let ctrl = (SENTINEL_PORT + 1).to_string();
    let mut argv = vec![cmd.get_program().to_string_lossy().into_owned()];
    argv.extend(cmd.get_args().map(|a| {
        a.to_string_lossy()
            .replace(&ctrl, "{ctrl}")
            .replace(&port, "{port}")
    }));
    Ok(json_list(&argv))
}

/// `["a","b"]` with JSON string escapes.
fn json_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| {
            let mut q = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => q.push_str("\\\""),
                    '\\' => q.push_str("\\\\"),
                    c if u32::from(c) < 0x20 => q.push_str(&format!("\\u{:04x}", u32::from(c))),
                    c => q.push(c),
                }
            }
            q.push('"');
            q
        })
        .collect();
    format!("[{}]", quoted.join(","))
}

/// The interpreter, once it is known to import tpm2_pytss and pytest (fails with the
/// apt-get command otherwise: the suite never skips).
fn python() -> Result<PathBuf> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON
        .get_or_init(|| check_python().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn check_python() -> Result<PathBuf> {
    let python = std::env::var_os("UKVTPM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/python3"));
    let install = require::install_command(PACKAGES);
    let out = Command::new(&python)
        .args(["-c", "import tpm2_pytss, pytest"])
        .output();
    match out {
        Ok(out) if out.status.success() => Ok(python),
        Ok(out) => bail!(
            "{} cannot import tpm2_pytss and pytest:\n{}\n  install them with: {install}\n  (or run `cargo xtask deps`)",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        ),
        Err(e) => bail!(
            "cannot run {} ({e}).\n  install python3 and the suite's packages with: {install}",
            python.display()
        ),
    }
}
