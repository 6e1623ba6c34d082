//! Small helpers shared by the test files: reference digests from coreutils, the `tpm2_pcrread`
//! output parser, and the macro that instantiates one test body for every target.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};

use crate::require;

/// Hash banks every TPM here must have, with their digest sizes.
pub const BANKS: [(&str, usize); 3] = [("sha1", 20), ("sha256", 32), ("sha384", 48)];

/// Digest size of bank `alg` (`sha1`, `sha256`, `sha384`).
pub fn digest_len(alg: &str) -> Result<usize> {
    BANKS
        .iter()
        .find(|(name, _)| *name == alg)
        .map(|(_, len)| *len)
        .with_context(|| format!("unknown bank {alg}"))
}

/// `alg`sum of `data` from coreutils (`sha1sum`, `sha256sum`, `sha384sum`), lower-case hex: the
/// reference the TPM's digests are compared with.
pub fn reference_digest(alg: &str, data: &[u8]) -> Result<String> {
    let tool = format!("{alg}sum");
    let program = require::tool(&tool)?;
    let mut child = Command::new(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {tool}"))?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))??;
    ensure!(out.status.success(), "{tool} failed: {}", out.status);
    let text = String::from_utf8(out.stdout)?;
    let hex = text
        .split_whitespace()
        .next()
        .context("empty sha*sum output")?;
    Ok(hex.to_string())
}

/// The PCR extend rule: `H(old || digest)`, with the reference hash tool.
pub fn extended(alg: &str, old: &[u8], digest: &[u8]) -> Result<Vec<u8>> {
    let mut data = old.to_vec();
    data.extend_from_slice(digest);
    unhex(&reference_digest(alg, &data)?)
}

/// Parses hex (optional `0x`, any case).
pub fn unhex(text: &str) -> Result<Vec<u8>> {
    let text = text.trim();
    let text = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    ensure!(text.len().is_multiple_of(2), "odd-length hex {text:?}");
    (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&text[i..i + 2], 16).with_context(|| format!("bad hex {text:?}"))
        })
        .collect()
}

/// PCR values by bank then index, as printed by `tpm2_pcrread`.
pub type PcrValues = BTreeMap<String, BTreeMap<u8, Vec<u8>>>;

/// Parses `tpm2_pcrread` output:
/// ```text
///   sha256:
///     0 : 0x00...
/// ```
/// (Parsed by hand: a YAML parser would read `0x000...` as the integer 0 and lose its length.)
pub fn parse_pcrread(stdout: &str) -> Result<PcrValues> {
    let mut banks = PcrValues::new();
    let mut current: Option<String> = None;
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let (key, value) = line
            .split_once(':')
            .with_context(|| format!("unexpected pcrread line {line:?}"))?;
        let (key, value) = (key.trim(), value.trim());
        if value.is_empty() {
            current = Some(key.to_string());
            banks.entry(key.to_string()).or_default();
            continue;
        }
        let bank = current
            .as_ref()
            .with_context(|| format!("PCR line before any bank: {line:?}"))?;
        let index: u8 = key
            .parse()
            .with_context(|| format!("bad PCR index in {line:?}"))?;
        let digest = unhex(value)?;
        if let Some(map) = banks.get_mut(bank) {
            map.insert(index, digest);
        }
    }
    if banks.is_empty() {
        bail!("no PCR banks in pcrread output {stdout:?}");
    }
    Ok(banks)
}

/// Instantiates test bodies `fn name(target: Target) -> anyhow::Result<()>` for every target:
/// modules `swtpm`, `ukvtpm` and `ukvtpm_mssim` each get one `#[test] fn name`.
/// Filter with `cargo test swtpm::` / `ukvtpm::` / `ukvtpm_mssim::`.
///
/// With `a, b; not_unikernel: c, d` the tests `a` and `b` also run against the unikernel in QEMU
/// (module `unikernel`, filter `unikernel::`), `c` and `d` only against the host servers.
#[macro_export]
macro_rules! for_each_target {
    ($($name:ident),* $(,)?) => {
        mod swtpm {
            $crate::instantiate!($crate::Target::Swtpm; $($name),*);
        }
        mod ukvtpm {
            $crate::instantiate!($crate::Target::Ukvtpm; $($name),*);
        }
        mod ukvtpm_mssim {
            $crate::instantiate!($crate::Target::UkvtpmMssim; $($name),*);
        }
    };
    // `names; not_unikernel: names`: the first list also runs against the unikernel in QEMU
    // (module `unikernel`); the second list only against the three host servers (say why at
    // the call site, e.g. a server restart that needs persisted state).
    ($($name:ident),* ; not_unikernel: $($host_only:ident),* $(,)?) => {
        $crate::for_each_target!($($name,)* $($host_only),*);
        mod unikernel {
            $crate::instantiate!($crate::Target::Unikernel; $($name),*);
        }
    };
}

/// Helper of [`for_each_target!`].
#[macro_export]
macro_rules! instantiate {
    ($target:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() -> anyhow::Result<()> {
                $crate::server::with_logs(|| super::$name($target))
            }
        )*
    };
}
