//! `cargo xtask <task>`: set-up, build, test and benchmark orchestration for ukvtpm.
//!
//! Every task is one file (`deps.rs`, `test.rs`, `demo.rs`, `bench/`); `main` only parses the
//! command line and changes to the project root. Tasks call `cargo` through `$CARGO`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

mod bench;
mod demo;
mod deps;
mod image;
mod test;

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  deps             check the system packages the tests and the demo need; install the missing
                   ones with apt-get when running as root, else print the install command
  test             deps, cargo fmt --check, clippy -D warnings, build, then every test
                   (cargo-nextest when installed, else cargo test)
  demo             start `ukvtpm serve` and run a narrated sequence of tpm2-tools commands
  image [--debug]  build the unikernel and write the -bios firmware image target/ukvtpm.img
                   (release by default: a debug build does not fit the 2 MiB ROM)
  bench ops        swtpm vs `ukvtpm serve --release`: raw round trips, server CPU per command,
                   start-up time and whole tpm2-tools commands; writes target/bench/ops.{json,md}
                   options: --calls N (raw calls per measurement, default 2000)
                            --runs N  (tpm2-tools runs per command, default 20)
  bench boot       the unikernel in QEMU: exec -> first response p50/p99, reset -> ready, smallest
                   -m, QEMU RSS, image size, 16 idle backends < 5 % of a core; writes
                   target/bench/boot.{json,md}; options: --boots N (default and minimum 20)
";

fn main() {
    if let Err(e) = run() {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::env::set_current_dir(project_root()).context("changing to the project root")?;
    let Some(task) = args.first() else {
        print!("{USAGE}");
        bail!("no task given");
    };
    let rest = &args[1..];
    match task.as_str() {
        "deps" => {
            no_args(task, rest)?;
            deps::run()
        }
        "test" => {
            no_args(task, rest)?;
            test::run()
        }
        "demo" => {
            no_args(task, rest)?;
            demo::run()
        }
        "bench" => bench::run(rest),
        "image" => {
            // Release by default: a debug kernel does not fit the 2 MiB ROM. `--release` is
            // still accepted (it was the opt-in before).
            let release = match rest {
                [] => true,
                [flag] if flag == "--release" => true,
                [flag] if flag == "--debug" => false,
                _ => bail!("usage: cargo xtask image [--debug]"),
            };
            let path = image::run(release)?;
            println!("{}", path.display());
            Ok(())
        }
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            print!("{USAGE}");
            bail!("unknown task `{other}`")
        }
    }
}

fn no_args(task: &str, rest: &[String]) -> Result<()> {
    if !rest.is_empty() {
        bail!("`{task}` takes no arguments, got {rest:?}");
    }
    Ok(())
}

/// The workspace root (parent of this crate).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The cargo target directory (`$CARGO_TARGET_DIR` or `<root>/target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target"))
}

/// `cargo` as invoked by the user (`$CARGO`), for sub-builds.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(project_root());
    cmd
}

/// Builds the `ukvtpm` binary (release or debug) and returns its path; `$UKVTPM_BIN`, when set,
/// names a prebuilt binary to use instead.
pub fn build_ukvtpm(release: bool) -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("UKVTPM_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("UKVTPM_BIN={} does not exist", bin.display());
        }
        eprintln!("xtask: using UKVTPM_BIN={}", bin.display());
        return Ok(bin);
    }
    let mut cmd = cargo();
    cmd.args(["build", "-p", "ukvtpm-cli", "--bin", "ukvtpm"]);
    if release {
        cmd.arg("--release");
    }
    eprintln!(
        "xtask: building ukvtpm ({})",
        if release { "release" } else { "debug" }
    );
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("building ukvtpm failed ({status})");
    }
    let bin = target_dir()
        .join(if release { "release" } else { "debug" })
        .join("ukvtpm");
    if !bin.is_file() {
        bail!("cargo built ukvtpm but {} does not exist", bin.display());
    }
    Ok(bin)
}
