//! `cargo xtask test`: everything CI checks, in order, with one progress line per step and a
//! summary at the end: system packages, `cargo fmt --check`, `cargo clippy -D warnings`, build,
//! then every test of the workspace (cargo-nextest when installed, for process-level
//! parallelism; else `cargo test`). A failing check does not hide the later ones: every step runs
//! (tests only if the build passed) and the task fails if any step failed.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{cargo, deps, target_dir};

struct Step {
    name: &'static str,
    ok: bool,
    took: Duration,
    note: String,
}

/// Passed/failed counts parsed from the test runners' own summary lines.
#[derive(Default)]
struct Counts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

pub fn run() -> Result<()> {
    let started = Instant::now();
    let mut steps = Vec::new();
    let total = 6;

    progress(1, total, "system packages (cargo xtask deps)");
    let t = Instant::now();
    let deps = deps::run();
    steps.push(Step {
        name: "deps",
        ok: deps.is_ok(),
        took: t.elapsed(),
        note: String::new(),
    });
    if let Err(e) = deps {
        summary(&steps, None, started);
        return Err(e.context("system packages missing: the tests cannot run"));
    }

    progress(2, total, "cargo fmt --all --check");
    steps.push(cargo_step("fmt", &["fmt", "--all", "--check"])?);

    progress(
        3,
        total,
        "cargo clippy --workspace --all-targets -- -D warnings",
    );
    steps.push(cargo_step(
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?);

    progress(4, total, "cargo build --workspace --all-targets");
    let build = cargo_step("build", &["build", "--workspace", "--all-targets"])?;
    let built = build.ok;
    steps.push(build);

    let mut counts = Counts::default();
    if built {
        let ukvtpm = target_dir().join("debug").join("ukvtpm");
        let nextest = has_nextest();
        if nextest {
            progress(5, total, "cargo nextest run --workspace --no-fail-fast");
            steps.push(test_step(
                "tests (nextest)",
                &["nextest", "run", "--workspace", "--no-fail-fast"],
                &ukvtpm,
                &mut counts,
            )?);
            progress(6, total, "cargo test --workspace --doc");
            steps.push(test_step(
                "doctests",
                &["test", "--workspace", "--doc", "--no-fail-fast"],
                &ukvtpm,
                &mut counts,
            )?);
        } else {
            eprintln!("xtask test: cargo-nextest not installed; using cargo test");
            progress(5, total, "cargo test --workspace --no-fail-fast");
            steps.push(test_step(
                "tests (cargo test)",
                &["test", "--workspace", "--no-fail-fast"],
                &ukvtpm,
                &mut counts,
            )?);
        }
    } else {
        steps.push(Step {
            name: "tests",
            ok: false,
            took: Duration::ZERO,
            note: "skipped: the build failed".into(),
        });
    }

    summary(&steps, Some(&counts), started);
    let failed: Vec<&str> = steps.iter().filter(|s| !s.ok).map(|s| s.name).collect();
    if !failed.is_empty() {
        bail!("failed steps: {}", failed.join(", "));
    }
    Ok(())
}

fn progress(n: usize, total: usize, what: &str) {
    eprintln!("\n==> xtask test [{n}/{total}] {what}");
}

fn cargo_step(name: &'static str, args: &[&str]) -> Result<Step> {
    let t = Instant::now();
    let status = cargo()
        .args(args)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    Ok(Step {
        name,
        ok: status.success(),
        took: t.elapsed(),
        note: if status.success() {
            String::new()
        } else {
            format!("cargo {} ({status})", args.join(" "))
        },
    })
}

fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Runs a test command, streaming its output and adding up the runners' result lines.
fn test_step(
    name: &'static str,
    args: &[&str],
    ukvtpm: &std::path::Path,
    counts: &mut Counts,
) -> Result<Step> {
    let t = Instant::now();
    let mut cmd: Command = cargo();
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    if ukvtpm.is_file() {
        // Tests use this binary instead of invoking cargo once per test process.
        cmd.env("UKVTPM_BIN", ukvtpm);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    let shared = Arc::new(Mutex::new(Counts::default()));
    let out = child.stdout.take().context("stdout")?;
    let err = child.stderr.take().context("stderr")?;
    let readers = [
        tee(out, false, Arc::clone(&shared)),
        tee(err, true, Arc::clone(&shared)),
    ];
    let status = child.wait()?;
    for reader in readers {
        let _ = reader.join();
    }
    let step_counts = std::mem::take(&mut *shared.lock().map_err(|_| anyhow::anyhow!("lock"))?);
    counts.passed += step_counts.passed;
    counts.failed += step_counts.failed;
    counts.ignored += step_counts.ignored;
    Ok(Step {
        name,
        ok: status.success(),
        took: t.elapsed(),
        note: format!(
            "{} passed, {} failed{}",
            step_counts.passed,
            step_counts.failed,
            if status.success() {
                String::new()
            } else {
                format!(" ({status})")
            }
        ),
    })
}

fn tee(
    stream: impl Read + Send + 'static,
    to_stderr: bool,
    counts: Arc<Mutex<Counts>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if to_stderr {
                let _ = writeln!(std::io::stderr(), "{line}");
            } else {
                let _ = writeln!(std::io::stdout(), "{line}");
            }
            if let Ok(mut c) = counts.lock() {
                parse_counts(&line, &mut c);
            }
        }
    })
}

/// `test result: ok. 37 passed; 0 failed; 2 ignored; ...` (cargo test) or
/// `Summary [  12.3s] 150 tests run: 148 passed, 2 failed, 0 skipped` (nextest).
///
/// A libtest line counts only at the start of the line: nextest replays a failing test's
/// captured output indented, and its `test result:` lines must not be counted twice.
fn parse_counts(line: &str, counts: &mut Counts) {
    let trimmed = line.trim();
    let body = if let Some(rest) = line.strip_prefix("test result:") {
        rest
    } else if trimmed.starts_with("Summary [") && trimmed.contains("tests run:") {
        trimmed.split("tests run:").nth(1).unwrap_or("")
    } else {
        return;
    };
    for part in body.split([';', ',', '.']) {
        let mut words = part.split_whitespace();
        let (Some(n), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match what {
            "passed" => counts.passed += n,
            "failed" => counts.failed += n,
            "ignored" | "skipped" => counts.ignored += n,
            _ => {}
        }
    }
}

fn summary(steps: &[Step], counts: Option<&Counts>, started: Instant) {
    let mut out = String::from("\n==> xtask test summary\n");
    for s in steps {
        out.push_str(&format!(
            "  {:<7} {:<20} {:>7.1} s  {}\n",
            if s.ok { "ok" } else { "FAILED" },
            s.name,
            s.took.as_secs_f64(),
            s.note
        ));
    }
    out.push_str(&format!(
        "  total {:.1} s\n",
        started.elapsed().as_secs_f64()
    ));
    eprint!("{out}");
    if let Some(c) = counts {
        // The closing line, in the plain form CI reads.
        println!(
            "tests: {} passed, {} failed, {} skipped",
            c.passed, c.failed, c.ignored
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cargo_test_and_nextest_summaries() {
        let mut c = Counts::default();
        parse_counts(
            "test result: FAILED. 4 passed; 70 failed; 1 ignored; 0 measured; 37 filtered out; finished in 33.84s",
            &mut c,
        );
        parse_counts(
            "     Summary [  12.345s] 150 tests run: 148 passed, 2 failed, 3 skipped",
            &mut c,
        );
        parse_counts("test foo ... ok", &mut c);
        // nextest replaying a failed test's output: not counted again.
        parse_counts(
            "    test result: FAILED. 0 passed; 1 failed; 0 ignored",
            &mut c,
        );
        assert_eq!((c.passed, c.failed, c.ignored), (152, 72, 4));
    }
}
