//! `cargo xtask bench <suite>`: benchmarks that compare ukvtpm with swtpm side by side.
//!
//! * `ops` ([`ops`]): per-command costs of `ukvtpm serve` and the unikernel vs swtpm.
//! * `boot` ([`boot`]): the unikernel's boot time, guest RAM, QEMU RSS, image size, idle CPU.
//!
//! Results go through [`report::Report`]: rows of one measurement each, one column per server
//! (later: the unikernel), a ratio against the reference column, printed as a table and written
//! as JSON and markdown under `target/bench/`.

use anyhow::{Context, Result, bail};

mod boot;
mod keys;
mod nv;
mod ops;
mod report;

pub fn run(args: &[String]) -> Result<()> {
    let Some((suite, rest)) = args.split_first() else {
        bail!("usage: cargo xtask bench ops [--calls N] [--runs N] [--no-unikernel]");
    };
    match suite.as_str() {
        "ops" => ops::run(&ops::Options::parse(rest)?),
        "boot" => boot::run(rest),
        other => bail!("unknown benchmark `{other}` (available: ops, boot)"),
    }
}

/// Parses `--name N` options.
pub(crate) fn parse_count(args: &[String], name: &str, default: usize) -> Result<usize> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .with_context(|| format!("{name} needs a number"))?
            .parse()
            .with_context(|| format!("{name} needs a number")),
    }
}
