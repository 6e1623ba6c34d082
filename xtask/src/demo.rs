//! `cargo xtask demo`: checks the system packages, builds and starts `ukvtpm serve` on a free
//! port with fresh state, and walks through a short sequence of unmodified tpm2-tools commands
//! against it, saying what each one shows. The server is stopped cleanly at the end.

use anyhow::{Context, Result, bail};
use ukvtpm_tests::{Kind, Protocol, Server, Tpm2};

use crate::{build_ukvtpm, deps};

/// One narrated step: what it shows, the tool and its arguments.
struct Step {
    explain: &'static str,
    tool: &'static str,
    args: &'static [&'static str],
    stdin: Option<&'static [u8]>,
    /// How many lines of output to show.
    lines: usize,
}

const fn step(explain: &'static str, tool: &'static str, args: &'static [&'static str]) -> Step {
    Step {
        explain,
        tool,
        args,
        stdin: None,
        lines: 14,
    }
}

/// Shows only the first `lines` lines of the step's output.
const fn first(lines: usize, step: Step) -> Step {
    Step { lines, ..step }
}

const STEPS: &[Step] = &[
    step(
        "32 bytes from the TPM's random number generator",
        "tpm2_getrandom",
        &["--hex", "32"],
    ),
    step(
        "PCR 16 in the three banks: all zeros after Startup(CLEAR)",
        "tpm2_pcrread",
        &["sha1:16+sha256:16+sha384:16"],
    ),
    step(
        "measure something into PCR 16: new = SHA-256(old || digest)",
        "tpm2_pcrextend",
        &["16:sha256=b2a7e6a8f6cd7bb0e9a76a3a6f8e5c0a3c9e9fbbd1d5d1d7a5b0e4c3b2a1f0e9"],
    ),
    step(
        "PCR 16 has changed; PCRs cannot be set, only extended",
        "tpm2_pcrread",
        &["sha256:16"],
    ),
    step(
        "PCR 16 is resettable at locality 0 (a debug PCR), PCR 0 would not be",
        "tpm2_pcrreset",
        &["16"],
    ),
    Step {
        explain: "hash data inside the TPM (compare: echo -n 'hello ukvtpm' | sha256sum)",
        tool: "tpm2_hash",
        args: &["-g", "sha256", "--hex"],
        stdin: Some(b"hello ukvtpm"),
        lines: 1,
    },
    first(
        16,
        step(
            "what this TPM is: family, revision, manufacturer, limits",
            "tpm2_getcap",
            &["properties-fixed"],
        ),
    ),
    step(
        "the TPM clock: time since start-up, persistent clock, reset and restart counters",
        "tpm2_readclock",
        &[],
    ),
    step(
        "set an owner password (persisted, atomically, before the TPM answers)",
        "tpm2_changeauth",
        &["-c", "owner", "demo-owner-pw"],
    ),
    first(
        4,
        step(
            "the TPM now reports ownerAuthSet: 1",
            "tpm2_getcap",
            &["properties-variable"],
        ),
    ),
    step(
        "use the password to remove it again",
        "tpm2_changeauth",
        &["-c", "owner", "-p", "demo-owner-pw"],
    ),
    step(
        "the self test ran; the TPM is healthy",
        "tpm2_gettestresult",
        &[],
    ),
];

pub fn run() -> Result<()> {
    deps::run()?;
    ukvtpm_tests::require::tcti("swtpm")?;
    let bin = build_ukvtpm(false)?;
    let mut server = Server::start_with(Kind::Ukvtpm(Protocol::Swtpm), "swtpm", bin)
        .context("starting ukvtpm serve")?;
    println!(
        "\nukvtpm serve is listening on 127.0.0.1:{} (TPM commands) and :{} (control), state in {}",
        server.port(),
        server.port() + 1,
        server.state_dir().display()
    );
    println!("every command below is an unmodified tpm2-tools binary using the swtpm: TCTI:");
    println!("  export TPM2TOOLS_TCTI={}\n", server.tcti());
    let tpm = server.tpm2();
    let mut failures = 0;
    for (i, step) in STEPS.iter().enumerate() {
        if let Err(e) = run_step(&tpm, i + 1, step) {
            failures += 1;
            eprintln!("  FAILED: {e:#}");
        }
    }
    let status = server.stop()?;
    println!(
        "\nstopped ukvtpm serve ({})",
        status.map_or_else(|| "was not running".into(), |s| s.to_string())
    );
    if failures > 0 {
        bail!("{failures} of {} demo steps failed", STEPS.len());
    }
    println!(
        "demo complete: {} tpm2-tools commands succeeded",
        STEPS.len()
    );
    Ok(())
}

fn run_step(tpm: &Tpm2, n: usize, step: &Step) -> Result<()> {
    println!("[{n}/{}] {}", STEPS.len(), step.explain);
    let shown: Vec<String> = step
        .args
        .iter()
        .map(|a| {
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                (*a).to_string()
            }
        })
        .collect();
    match step.stdin {
        Some(input) => println!(
            "  $ echo -n '{}' | {} {}",
            String::from_utf8_lossy(input),
            step.tool,
            shown.join(" ")
        ),
        None => println!(
            "  $ {}",
            [step.tool.to_string(), shown.join(" ")]
                .join(" ")
                .trim_end()
        ),
    }
    let out = match step.stdin {
        Some(input) => tpm.run_stdin(step.tool, step.args, input)?,
        None => tpm.run(step.tool, step.args)?,
    };
    let text = out.stdout.trim_end();
    let lines: Vec<&str> = text.lines().collect();
    for line in lines.iter().take(step.lines) {
        println!("    {line}");
    }
    if lines.len() > step.lines {
        println!("    ... ({} more lines)", lines.len() - step.lines);
    }
    println!();
    Ok(())
}
