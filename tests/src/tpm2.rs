//! Runs tpm2-tools binaries against a server and reports failures with everything needed to
//! reproduce them: the command line (with its TCTI), exit status, stdout, stderr and the tail of
//! the server log.

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::require;

/// How long one tool may run before it is killed and the test fails.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs tpm2-tools with `TPM2TOOLS_TCTI` set to one server.
#[derive(Clone, Debug)]
pub struct Tpm2 {
    tcti: String,
    dir: PathBuf,
    server_log: PathBuf,
}

/// What one tool run produced.
#[derive(Clone, Debug)]
pub struct Output {
    /// The command line as a shell would show it.
    pub cmdline: String,
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
    /// Server log tail at the time of the failure report.
    server_log_tail: String,
}

impl Output {
    /// The TPM response code the tool reported on stderr (tpm2-tss prints
    /// `ErrorCode (0x00000907)`, tpm2-tools `Esys_PCR_Reset(0x907)`), if any.
    pub fn tpm_rc(&self) -> Option<u32> {
        let text = &self.stderr;
        if let Some(i) = text.find("ErrorCode (0x") {
            let hex: String = text[i + 13..]
                .chars()
                .take_while(char::is_ascii_hexdigit)
                .collect();
            return u32::from_str_radix(&hex, 16).ok();
        }
        // tpm2-tools: "ERROR: Esys_Foo(0x907) - ..."
        for (i, _) in text.match_indices("(0x") {
            let hex: String = text[i + 3..]
                .chars()
                .take_while(char::is_ascii_hexdigit)
                .collect();
            if text[i + 3 + hex.len()..].starts_with(')') {
                return u32::from_str_radix(&hex, 16).ok();
            }
        }
        None
    }

    /// Fails unless the tool reported exactly `rc`.
    pub fn expect_rc(&self, rc: u32) -> Result<()> {
        match self.tpm_rc() {
            Some(got) if got == rc => Ok(()),
            Some(got) => bail!("expected TPM rc {rc:#x}, got {got:#x}\n{self}"),
            None => bail!("expected TPM rc {rc:#x}, but the tool reported no TPM rc\n{self}"),
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  command: {}", self.cmdline)?;
        writeln!(f, "  status:  {}", self.status)?;
        writeln!(f, "  stdout:\n{}", indent(&self.stdout))?;
        writeln!(f, "  stderr:\n{}", indent(&self.stderr))?;
        if !self.server_log_tail.is_empty() {
            writeln!(f, "  server log (tail):\n{}", indent(&self.server_log_tail))?;
        }
        Ok(())
    }
}

fn indent(text: &str) -> String {
    if text.trim().is_empty() {
        return "    (empty)".into();
    }
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=:,./+@%".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

impl Tpm2 {
    /// A runner with TCTI `tcti`, working directory `dir`, and `server_log` quoted on failures.
    pub fn new(tcti: String, dir: PathBuf, server_log: PathBuf) -> Tpm2 {
        Tpm2 {
            tcti,
            dir,
            server_log,
        }
    }

    /// The TCTI string.
    pub fn tcti(&self) -> &str {
        &self.tcti
    }

    /// Runs `tool args...` (`tool` like `tpm2_getrandom` or just `getrandom`) and returns its
    /// output whatever the exit status.
    pub fn output(&self, tool: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
        let tool = if tool.starts_with("tpm2_") || !tool.chars().all(|c| c.is_ascii_lowercase()) {
            tool.to_string()
        } else {
            format!("tpm2_{tool}")
        };
        let program = require::tool(&tool)?;
        let cmdline = format!(
            "TPM2TOOLS_TCTI={} {} {}",
            self.tcti,
            tool,
            args.iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut child = Command::new(program)
            .args(args)
            .env("TPM2TOOLS_TCTI", &self.tcti)
            .current_dir(&self.dir)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {cmdline}"))?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().context("stdin pipe")?;
            let input = input.to_vec();
            std::thread::spawn(move || {
                let _ = pipe.write_all(&input);
            });
        }
        let pid = child.id();
        let waiter = std::thread::spawn(move || child.wait_with_output());
        let deadline = Instant::now() + TOOL_TIMEOUT;
        while !waiter.is_finished() {
            if Instant::now() > deadline {
                if let Ok(pid) = libc::pid_t::try_from(pid) {
                    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our child,
                    // not yet reaped (the waiter thread has not returned).
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
                let _ = waiter.join();
                bail!(
                    "timed out after {TOOL_TIMEOUT:?}: {cmdline}\n  server log (tail):\n{}",
                    indent(&self.server_log_tail())
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let out = waiter
            .join()
            .map_err(|_| anyhow::anyhow!("waiter thread panicked"))?
            .with_context(|| format!("waiting for {cmdline}"))?;
        let mut output = Output {
            cmdline,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            server_log_tail: String::new(),
        };
        if !output.status.success() {
            output.server_log_tail = self.server_log_tail();
        }
        Ok(output)
    }

    /// Runs a tool that must succeed.
    pub fn run(&self, tool: &str, args: &[&str]) -> Result<Output> {
        let out = self.output(tool, args, None)?;
        if !out.status.success() {
            bail!("tpm2-tools command failed\n{out}");
        }
        Ok(out)
    }

    /// Runs a tool with `stdin`, which must succeed.
    pub fn run_stdin(&self, tool: &str, args: &[&str], stdin: &[u8]) -> Result<Output> {
        let out = self.output(tool, args, Some(stdin))?;
        if !out.status.success() {
            bail!("tpm2-tools command failed\n{out}");
        }
        Ok(out)
    }

    /// Runs a tool that must fail (non-zero exit); returns its output for further checks.
    pub fn fails(&self, tool: &str, args: &[&str]) -> Result<Output> {
        let out = self.output(tool, args, None)?;
        if out.status.success() {
            bail!("tpm2-tools command succeeded but was expected to fail\n{out}");
        }
        Ok(out)
    }

    fn server_log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.server_log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}
