//! tpm2-tools conformance suite (issue 3, item 5): every test body runs against swtpm (the
//! reference: a failure there is a wrong test), `ukvtpm serve` through the `swtpm:` TCTI and
//! `ukvtpm serve --protocol mssim` through the `mssim:` TCTI. Each test gets its own server on
//! its own port pair with fresh state.
//!
//! The same bodies (except the server-restart ones) also run against the unikernel in QEMU
//! through the `swtpm:` TCTI, a fresh guest per test (`unikernel::`; `UKVTPM_IMAGE=path` skips
//! the image build).
//!
//! Run one server's tests with `cargo test -p ukvtpm-tests --test conformance swtpm::` (or
//! `ukvtpm::`, `ukvtpm_mssim::`, `unikernel::`).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_yaml::Value;
use ukvtpm_tests::util::{BANKS, extended, parse_pcrread, reference_digest, unhex};
use ukvtpm_tests::{Output, Server, Target, Tpm2, for_each_target};

// Response codes as tpm2-tools report them (TPM 2.0 Part 2, 6.6).
/// TPM_RC_LOCALITY as a warning (PCR_Reset of a PCR not resettable at this locality).
const RC_LOCALITY: u32 = 0x907;
/// TPM_RC_BAD_AUTH for session 1 (hierarchy auth: no DA implications).
const RC_BAD_AUTH_S1: u32 = 0x9A2;
/// TPM_RC_AUTH_FAIL for session 1 (lockoutAuth: DA counter incremented).
const RC_AUTH_FAIL_S1: u32 = 0x98E;
/// TPM_RC_LOCKOUT.
const RC_LOCKOUT: u32 = 0x921;

for_each_target!(
    getrandom,
    getrandom_bounded_by_max_digest,
    stirrandom,
    pcrread_all_banks,
    pcrread_single,
    pcrextend,
    pcrevent,
    pcrreset_allowed,
    pcrreset_refused,
    hash_small,
    hash_10k_sequence,
    hash_stdin,
    getcap_list,
    getcap_algorithms,
    getcap_commands,
    getcap_pcrs,
    getcap_properties_fixed,
    getcap_properties_variable,
    getcap_ecc_curves,
    getcap_handles_transient,
    getcap_handles_persistent,
    getcap_handles_permanent,
    getcap_handles_pcr,
    getcap_handles_nv_index,
    getcap_handles_loaded_session,
    getcap_handles_saved_session,
    flushcontext,
    selftest,
    gettestresult,
    clear,
    clear_resets_auth,
    changeauth_owner,
    changeauth_endorsement,
    changeauth_lockout,
    readclock;
    // Not against the unikernel: these stop the server and start it again on the same state
    // directory. The unikernel keeps its TPM state in guest RAM only (no NV storage yet), so a
    // new QEMU is a new TPM and the resetCount/restartCount expectations cannot hold.
    not_unikernel: restart_after_shutdown_clear,
    restart_after_shutdown_state,
);

// ---------------------------------------------------------------------------------------------
// helpers

fn start(target: Target) -> Result<(Server, Tpm2)> {
    let server = target.start()?;
    let tpm = server.tpm2();
    Ok((server, tpm))
}

fn yaml(out: &Output) -> Result<Value> {
    serde_yaml::from_str(&out.stdout).with_context(|| format!("output is not valid YAML\n{out}"))
}

/// A YAML scalar as an integer: `24`, `0x18` or `"0x18"`.
fn int(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => {
            let s = s.trim();
            match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => s.parse().ok(),
            }
        }
        _ => None,
    }
}

/// `map[key].raw` (or `map[key]` itself) as an integer.
fn property(map: &Value, key: &str) -> Result<u64> {
    let entry = map
        .get(key)
        .with_context(|| format!("property {key} missing"))?;
    let raw = entry.get("raw").unwrap_or(entry);
    int(raw).with_context(|| format!("property {key} is not an integer: {raw:?}"))
}

/// Runs `tpm2_getcap <cap>` and parses it.
fn getcap(tpm: &Tpm2, cap: &str) -> Result<(Output, Value)> {
    let out = tpm.run("getcap", &[cap])?;
    let value = yaml(&out)?;
    Ok((out, value))
}

/// A handle list (`- 0x40000001`) as integers; an empty output is an empty list.
fn handles(tpm: &Tpm2, cap: &str) -> Result<Vec<u64>> {
    let (out, value) = getcap(tpm, cap)?;
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Sequence(items) => items
            .iter()
            .map(|v| int(v).with_context(|| format!("bad handle {v:?}\n{out}")))
            .collect(),
        other => bail!("{cap}: expected a list of handles, got {other:?}\n{out}"),
    }
}

fn pcrread(tpm: &Tpm2, selection: &str) -> Result<ukvtpm_tests::util::PcrValues> {
    let out = tpm.run("pcrread", &[selection])?;
    parse_pcrread(&out.stdout).with_context(|| format!("parsing\n{out}"))
}

fn pcr(tpm: &Tpm2, bank: &str, index: u8) -> Result<Vec<u8>> {
    let values = pcrread(tpm, &format!("{bank}:{index}"))?;
    values
        .get(bank)
        .and_then(|b| b.get(&index))
        .cloned()
        .with_context(|| format!("PCR {bank}:{index} missing from pcrread output"))
}

/// Expected PCR value right after Startup(CLEAR) (PC Client platform profile): PCRs 17-22 (the
/// D-RTM PCRs) start as all ones, every other PCR as zeros.
fn initial_pcr(index: u8, len: usize) -> Vec<u8> {
    if (17..=22).contains(&index) {
        vec![0xFF; len]
    } else {
        vec![0; len]
    }
}

fn hex(bytes: &[u8]) -> String {
    ukvtpm_tests::raw::hex(bytes)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// random

fn getrandom(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    for n in [1usize, 8, 16, 20, 32, 48] {
        let out = tpm.run("getrandom", &["--hex", &n.to_string()])?;
        let text = out.stdout.trim();
        ensure!(
            text.len() == 2 * n && text.chars().all(|c| c.is_ascii_hexdigit()),
            "getrandom {n}: expected {} hex digits, got {text:?}\n{out}",
            2 * n
        );
    }
    let a = tpm.run("getrandom", &["--hex", "32"])?.stdout;
    let b = tpm.run("getrandom", &["--hex", "32"])?.stdout;
    ensure!(
        a != b,
        "two GetRandom(32) calls returned the same bytes {a}"
    );
    let file = server.path("random.bin");
    tpm.run("getrandom", &["-o", file.to_str().context("path")?, "32"])?;
    let bytes = std::fs::read(&file)?;
    ensure!(
        bytes.len() == 32,
        "-o wrote {} bytes, expected 32",
        bytes.len()
    );
    ensure!(bytes.iter().any(|&b| b != 0), "32 random bytes all zero");
    Ok(())
}

/// The tool bounds requests by TPM2_PT_MAX_DIGEST; with --force the TPM itself returns at most
/// that many bytes.
fn getrandom_bounded_by_max_digest(target: Target) -> Result<()> {
    let (_server, tpm) = start(target)?;
    let (_, fixed) = getcap(&tpm, "properties-fixed")?;
    let max = property(&fixed, "TPM2_PT_MAX_DIGEST")? as usize;
    ensure!(
        max >= 48,
        "TPM2_PT_MAX_DIGEST {max} < 48 (SHA-384 is required)"
    );
    tpm.fails("getrandom", &["--hex", &(max + 1).to_string()])?;
    let out = tpm.run("getrandom", &["-f", "--hex", "100"])?;
    let got = out.stdout.trim().len() / 2;
    ensure!(
        got == max.min(100),
        "GetRandom(100) returned {got} bytes, expected min(100, MAX_DIGEST={max})\n{out}"
    );
    Ok(())
}

fn stirrandom(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    tpm.run_stdin("stirrandom", &[], &pattern(64, 1))?;
    let file = server.path("seed.bin");
    std::fs::write(&file, pattern(128, 2))?;
    tpm.run("stirrandom", &[file.to_str().context("path")?])?;
    // More than 128 bytes is refused by the tool (TPM2B_SENSITIVE_DATA bound).
    std::fs::write(&file, pattern(129, 3))?;
    tpm.fails("stirrandom", &[file.to_str().context("path")?])?;
    tpm.run("getrandom", &["--hex", "16"])?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// PCRs

fn pcrread_all_banks(target: Target) -> Result<()> {
    let (_server, tpm) = start(target)?;
    let values = pcrread(&tpm, "sha1:all+sha256:all+sha384:all")?;
    for (bank, len) in BANKS {
        let pcrs = values
            .get(bank)
            .with_context(|| format!("bank {bank} missing from pcrread"))?;
        let indices: Vec<u8> = pcrs.keys().copied().collect();
        ensure!(
            indices == (0..24).collect::<Vec<u8>>(),
            "bank {bank}: expected PCRs 0..=23, got {indices:?}"
        );
        for (&index, value) in pcrs {
            ensure!(
                *value == initial_pcr(index, len),
                "{bank}:{index} after startup is {}, expected {}",
                hex(value),
                hex(&initial_pcr(index, len))
            );
        }
    }
    Ok(())
}

fn pcrread_single(target: Target) -> Result<()> {
    let (_server, tpm) = start(target)?;
    let values = pcrread(&tpm, "sha256:0,7,16,17,23")?;
    let bank = values.get("sha256").context("sha256 missing")?;
    let got: Vec<u8> = bank.keys().copied().collect();
    ensure!(
        got == [0, 7, 16, 17, 23],
        "selected 0,7,16,17,23, got {got:?}"
    );
    let values = pcrread(&tpm, "sha1:10+sha384:10")?;
    ensure!(
        values.keys().cloned().collect::<Vec<_>>() == ["sha1", "sha384"],
        "banks: {values:?}"
    );
    Ok(())
}

fn pcrextend(target: Target) -> Result<()> {
    let (_server, tpm) = start(target)?;
    for index in [16u8, 0, 23] {
        for round in 0..2u8 {
            let mut spec = format!("{index}:");
            let mut expected = Vec::new();
            for (i, (bank, len)) in BANKS.iter().enumerate() {
                let digest = pattern(*len, index ^ round.wrapping_mul(7) ^ i as u8);
                let old = pcr(&tpm, bank, index)?;
                expected.push((*bank, extended(bank, &old, &digest)?));
                if i > 0 {
                    spec.push(',');
                }
                spec.push_str(&format!("{bank}={}", hex(&digest)));
            }
            tpm.run("pcrextend", &[&spec])?;
            for (bank, want) in expected {
                let got = pcr(&tpm, bank, index)?;
                ensure!(
                    got == want,
                    "after pcrextend {spec}: {bank}:{index} = {}, expected H(old||digest) = {}",
                    hex(&got),
                    hex(&want)
                );
            }
        }
    }
    // A digest of the wrong size is refused by the tool before anything is sent.
    tpm.fails("pcrextend", &["16:sha256=0011"])?;
    Ok(())
}

fn pcrevent(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    let data = b"ukvtpm pcrevent test data".repeat(10);
    let file = server.path("event.bin");
    std::fs::write(&file, &data)?;
    let file = file.to_str().context("path")?;

    // Without a PCR: only the digests (hash sequence, EventSequenceComplete).
    let out = tpm.run("pcrevent", &[file])?;
    check_event_digests(&out, &data)?;

    // With PCR 16: every bank of PCR 16 is extended with the digest of the data.
    let out = tpm.run("pcrevent", &["16", file])?;
    check_event_digests(&out, &data)?;
    for (bank, len) in BANKS {
        let digest = unhex(&reference_digest(bank, &data)?)?;
        let want = extended(bank, &vec![0; len], &digest)?;
        let got = pcr(&tpm, bank, 16)?;
        ensure!(
            got == want,
            "after pcrevent 16: {bank}:16 = {}, expected {}",
            hex(&got),
            hex(&want)
        );
    }
    Ok(())
}

/// `tpm2_pcrevent` prints `alg: hex` per bank; sha1/256/384 must match coreutils. (Parsed by
/// hand: as YAML an all-digit digest would become a number and lose its leading zeros.)
fn check_event_digests(out: &Output, data: &[u8]) -> Result<()> {
    for (bank, _) in BANKS {
        let printed = out
            .stdout
            .lines()
            .find_map(|line| line.trim().strip_prefix(&format!("{bank}:")))
            .with_context(|| format!("pcrevent printed no {bank} digest\n{out}"))?
            .trim()
            .to_lowercase();
        let want = reference_digest(bank, data)?;
        ensure!(
            printed == want,
            "pcrevent {bank}: TPM {printed}, {bank}sum {want}"
        );
    }
    Ok(())
}

fn pcrreset_allowed(target: Target) -> Result<()> {
    let (_server, tpm) = start(target)?;
    for index in [16u8, 23] {
        tpm.run(
            "pcrextend",
            &[&format!("{index}:sha256={}", hex(&pattern(32, index)))],
        )?;
        ensure!(
            pcr(&tpm, "sha256", index)? != vec![0; 32],
            "extend of {index} had no effect"
        );
        tpm.run("pcrreset", &[&index.to_string()])?;
        for (bank, len) in BANKS {
            let got = pcr(&tpm, bank, index)?;
            ensure!(
                got == vec![0; len],
                "after pcrreset {index}: {bank}:{index} = {}",
                hex(&got)
            );
        }
    }
    Ok(())
}

fn pcrreset_refused(target: Target) -> Result<()> {
    let (_server, tpm) = start(target)?;
    tpm.run(
        "pcrextend",
        &[&format!("0:sha256={}", hex(&pattern(32, 9)))],
    )?;
    let before = pcr(&tpm, "sha256", 0)?;
    // PCR 0 and the D-RTM PCR 17 are not resettable at locality 0.
    for index in ["0", "17"] {
        tpm.fails("pcrreset", &[index])?.expect_rc(RC_LOCALITY)?;
    }
    ensure!(
        pcr(&tpm, "sha256", 0)? == before,
        "a refused PCR_Reset changed PCR 0"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// hash

fn hash_file(server: &Server, tpm: &Tpm2, data: &[u8]) -> Result<()> {
    let file = server.path("hash-input.bin");
    std::fs::write(&file, data)?;
    for (alg, _) in BANKS {
        let out = tpm.run(
            "hash",
            &["-g", alg, "--hex", file.to_str().context("path")?],
        )?;
        let got = out.stdout.trim().to_lowercase();
        let want = reference_digest(alg, data)?;
        ensure!(
            got == want,
            "tpm2_hash -g {alg} of {} bytes: TPM {got}, {alg}sum {want}\n{out}",
            data.len()
        );
    }
    Ok(())
}

fn hash_small(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    for len in [0usize, 1, 55, 64, 1024] {
        hash_file(&server, &tpm, &pattern(len, 5))?;
    }
    Ok(())
}

/// 10 KiB is more than one TPM2B_MAX_BUFFER, so tpm2_hash uses HashSequenceStart,
/// SequenceUpdate and SequenceComplete.
fn hash_10k_sequence(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    hash_file(&server, &tpm, &pattern(10 * 1024, 11))?;
    hash_file(&server, &tpm, &pattern(4097, 12))?;
    // Sequence objects must be gone afterwards (flushed by SequenceComplete).
    ensure!(
        handles(&tpm, "handles-transient")?.is_empty(),
        "transient handles left after hashing"
    );
    Ok(())
}

fn hash_stdin(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    let data = pattern(3000, 4);
    let ticket = server.path("ticket.bin");
    let digest = server.path("digest.bin");
    tpm.run_stdin(
        "hash",
        &[
            "-g",
            "sha256",
            "-C",
            "o",
            "-o",
            digest.to_str().context("path")?,
            "-t",
            ticket.to_str().context("path")?,
        ],
        &data,
    )?;
    let got = hex(&std::fs::read(&digest)?);
    let want = reference_digest("sha256", &data)?;
    ensure!(got == want, "stdin hash: TPM {got}, sha256sum {want}");
    ensure!(
        std::fs::metadata(&ticket)?.len() > 6,
        "no hashcheck ticket written"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// getcap

const CAPABILITIES: [&str; 13] = [
    "algorithms",
    "commands",
    "pcrs",
    "properties-fixed",
    "properties-variable",
    "ecc-curves",
    "handles-transient",
    "handles-persistent",
    "handles-permanent",
    "handles-pcr",
    "handles-nv-index",
    "handles-loaded-session",
    "handles-saved-session",
];

/// `tpm2_getcap -l` lists the capabilities (no TPM access) — and each one runs and is YAML.
fn getcap_list(target: Target) -> Result<()> {
    let (_server, tpm) = start(target)?;
    let out = tpm.run("getcap", &["-l"])?;
    let listed: BTreeSet<String> = match yaml(&out)? {
        Value::Sequence(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        other => bail!("getcap -l is not a list: {other:?}"),
    };
    let expected: BTreeSet<String> = CAPABILITIES.iter().map(|s| s.to_string()).collect();
    ensure!(listed == expected, "getcap -l: {listed:?}");
    for cap in CAPABILITIES {
        getcap(&tpm, cap)?;
    }
    Ok(())
}

fn getcap_algorithms(target: Target) -> Result<()> {
    let (_server, tpm) = start(target)?;
    let (out, value) = getcap(&tpm, "algorithms")?;
    let map = value.as_mapping().context("algorithms: not a map")?;
    for (name, id) in [("sha1", 0x4), ("sha256", 0xB), ("sha384", 0xC)] {
        let entry = value
            .get(name)
            .with_context(|| format!("algorithm {name} not listed\n{out}"))?;
        ensure!(
            entry.get("value").and_then(int) == Some(id),
            "{name}: value is not {id:#x}: {entry:?}"
        );
        ensure!(
            entry.get("hash").and_then(int) == Some(1),
            "{name}: hash attribute not set: {entry:?}"
        );
    }
    for (name, entry) in map {
        ensure!(
            entry.get("value").and_then(int).is_some(),
            "algorithm {name:?} has no numeric value: {entry:?}"
        );
    }
    Ok(())
}

fn getcap_commands(target: Target) -> Result<()> {
    let (_server, tpm) = start(target)?;
    let (out, value) = getcap(&tpm, "commands")?;
    let required = [
        ("TPM2_CC_Startup", 0x144),
        ("TPM2_CC_Shutdown", 0x145),
        ("TPM2_CC_SelfTest", 0x143),
        ("TPM2_CC_IncrementalSelfTest", 0x142),
        ("TPM2_CC_GetTestResult", 0x17C),
        ("TPM2_CC_GetCapability", 0x17A),
        ("TPM2_CC_GetRandom", 0x17B),
        ("TPM2_CC_StirRandom", 0x146),
        ("TPM2_CC_PCR_Read", 0x17E),
        ("TPM2_CC_PCR_Extend", 0x182),
        ("TPM2_CC_PCR_Event", 0x13C),
        ("TPM2_CC_PCR_Reset", 0x13D),
        ("TPM2_CC_Hash", 0x17D),
        ("TPM2_CC_HashSequenceStart", 0x186),
        ("TPM2_CC_SequenceUpdate", 0x15C),
        ("TPM2_CC_SequenceComplete", 0x13E),
        ("TPM2_CC_EventSequenceComplete", 0x185),
        ("TPM2_CC_ReadClock", 0x181),
        ("TPM2_CC_ClockSet", 0x128),
        ("TPM2_CC_TestParms", 0x18A),
        ("TPM2_CC_Clear", 0x126),
        ("TPM2_CC_ClearControl", 0x127),
        ("TPM2_CC_HierarchyChangeAuth", 0x129),
        ("TPM2_CC_HierarchyControl", 0x121),
        ("TPM2_CC_DictionaryAttackParameters", 0x13A),
        ("TPM2_CC_DictionaryAttackLockReset", 0x139),
    ];
    for (name, code) in required {
        let entry = value
            .get(name)
            .with_context(|| format!("command {name} not listed\n{out}"))?;
        ensure!(
            entry.get("commandIndex").and_then(int) == Some(code),
            "{name}: commandIndex is not {code:#x}: {entry:?}"
        );
    }
    let count = value.as_mapping().map_or(0, |m| m.len()) as u64;
    let (_, fixed) = getcap(&tpm, "properties-fixed")?;
    let total = property(&fixed, "TPM2_PT_TOTAL_COMMANDS")?;
    ensure!(
        total >= count,
        "TPM2_PT_TOTAL_COMMANDS {total} < {count} commands listed"
    );
    Ok(())
}

fn getcap_pcrs(target: Target) -> Result<()> {
    let (out, value) = {
        let (_server, tpm) = start(target)?;
        getcap(&tpm, "pcrs")?
    };
    let selected = value
        .get("selected-pcrs")
        .and_then(Value::as_sequence)
        .with_context(|| format!("no selected-pcrs list\n{out}"))?;
    for (bank, _) in BANKS {
        let pcrs = selected
            .iter()
            .find_map(|entry| entry.get(bank))
            .with_context(|| format!("bank {bank} not allocated\n{out}"))?;
        let pcrs: Vec<u64> = pcrs
            .as_sequence()
            .context("PCR list")?
            .iter()
            .filter_map(int)
            .collect();
        ensure!(
            pcrs == (0..24).collect::<Vec<u64>>(),
            "bank {bank}: PCRs {pcrs:?}"
        );
    }
    Ok(())
}

fn getcap_properties_fixed(target: Target) -> Result<()> {
    let (_server, tpm) = start(target)?;
    let (out, value) = getcap(&tpm, "properties-fixed")?;
    let family = value
        .get("TPM2_PT_FAMILY_INDICATOR")
        .with_context(|| format!("no TPM2_PT_FAMILY_INDICATOR\n{out}"))?;
    ensure!(
        family.get("raw").and_then(int) == Some(0x322E_3000),
        "family indicator is not \"2.0\": {family:?}"
    );
    let checks: [(&str, u64, u64); 8] = [
        ("TPM2_PT_PCR_COUNT", 24, 24),
        ("TPM2_PT_PCR_SELECT_MIN", 3, 3),
        ("TPM2_PT_MAX_DIGEST", 48, 64),
        ("TPM2_PT_INPUT_BUFFER", 1024, 4096),
        ("TPM2_PT_MAX_COMMAND_SIZE", 1024, 4096),
        ("TPM2_PT_MAX_RESPONSE_SIZE", 1024, 4096),
        ("TPM2_PT_HR_TRANSIENT_MIN", 3, 1024),
        ("TPM2_PT_ACTIVE_SESSIONS_MAX", 3, 1024),
    ];
    for (name, min, max) in checks {
        let got = property(&value, name).with_context(|| out.to_string())?;
        ensure!(
            (min..=max).contains(&got),
            "{name} = {got}, expected {min}..={max}"
        );
    }
    for name in [
        "TPM2_PT_REVISION",
        "TPM2_PT_MANUFACTURER",
        "TPM2_PT_TOTAL_COMMANDS",
    ] {
        property(&value, name).with_context(|| out.to_string())?;
    }
    Ok(())
}

fn getcap_properties_variable(target: Target) -> Result<()> {
    let (_server, tpm) = start(target)?;
    let (out, value) = getcap(&tpm, "properties-variable")?;
    let permanent = value
        .get("TPM2_PT_PERMANENT")
        .with_context(|| format!("no TPM2_PT_PERMANENT\n{out}"))?;
    for flag in ["ownerAuthSet", "endorsementAuthSet", "lockoutAuthSet"] {
        ensure!(
            permanent.get(flag).and_then(int) == Some(0),
            "fresh TPM: {flag} is not 0: {permanent:?}"
        );
    }
    let startup = value
        .get("TPM2_PT_STARTUP_CLEAR")
        .with_context(|| format!("no TPM2_PT_STARTUP_CLEAR\n{out}"))?;
    for flag in ["phEnable", "shEnable", "ehEnable", "phEnableNV"] {
        ensure!(
            startup.get(flag).and_then(int) == Some(1),
            "after Startup(CLEAR): {flag} is not 1: {startup:?}"
        );
    }
    ensure!(
        property(&value, "TPM2_PT_LOCKOUT_COUNTER")? == 0,
        "fresh TPM has a non-zero lockout counter"
    );
    ensure!(
        property(&value, "TPM2_PT_MAX_AUTH_FAIL")? > 0,
        "TPM2_PT_MAX_AUTH_FAIL is 0"
    );
    ensure!(
        property(&value, "TPM2_PT_HR_LOADED")? == 0,
        "fresh TPM has loaded objects"
    );
    Ok(())
}

fn getcap_ecc_curves(target: Target) -> Result<()> {
    let (_server, tpm) = start(target)?;
    let (out, value) = getcap(&tpm, "ecc-curves")?;
    match value {
        Value::Null => Ok(()),
        Value::Mapping(map) => {
            for (name, id) in map {
                let name = name.as_str().unwrap_or_default();
                ensure!(
                    name.starts_with("TPM2_ECC_") && int(&id).is_some(),
                    "bad ecc-curves entry {name}: {id:?}\n{out}"
                );
            }
            Ok(())
        }
        other => bail!("ecc-curves: {other:?}"),
    }
}

fn check_handle_range(target: Target, cap: &str, ranges: &[(u64, u64)]) -> Result<()> {
    let (_server, tpm) = start(target)?;
    for handle in handles(&tpm, cap)? {
        ensure!(
            ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&handle)),
            "{cap}: handle {handle:#x} outside {ranges:x?}"
        );
    }
    Ok(())
}

fn getcap_handles_transient(target: Target) -> Result<()> {
    check_handle_range(target, "handles-transient", &[(0x8000_0000, 0x80FF_FFFF)])
}

fn getcap_handles_persistent(target: Target) -> Result<()> {
    check_handle_range(target, "handles-persistent", &[(0x8100_0000, 0x81FF_FFFF)])
}

fn getcap_handles_nv_index(target: Target) -> Result<()> {
    check_handle_range(target, "handles-nv-index", &[(0x0100_0000, 0x01FF_FFFF)])
}

fn getcap_handles_loaded_session(target: Target) -> Result<()> {
    check_handle_range(
        target,
        "handles-loaded-session",
        &[(0x0200_0000, 0x02FF_FFFF), (0x0300_0000, 0x03FF_FFFF)],
    )
}

fn getcap_handles_saved_session(target: Target) -> Result<()> {
    check_handle_range(
        target,
        "handles-saved-session",
        &[(0x0200_0000, 0x02FF_FFFF), (0x0300_0000, 0x03FF_FFFF)],
    )
}

fn getcap_handles_permanent(target: Target) -> Result<()> {
    let (_server, tpm) = start(target)?;
    let got = handles(&tpm, "handles-permanent")?;
    // Owner, NULL, password session, lockout, endorsement, platform.
    for want in [
        0x4000_0001u64,
        0x4000_0007,
        0x4000_0009,
        0x4000_000A,
        0x4000_000B,
        0x4000_000C,
    ] {
        ensure!(
            got.contains(&want),
            "permanent handle {want:#x} not listed: {got:x?}"
        );
    }
    ensure!(
        got.iter().all(|h| (0x4000_0000..=0x40FF_FFFF).contains(h)),
        "non-permanent handle listed: {got:x?}"
    );
    Ok(())
}

fn getcap_handles_pcr(target: Target) -> Result<()> {
    let (_server, tpm) = start(target)?;
    let got = handles(&tpm, "handles-pcr")?;
    ensure!(
        got == (0..24).collect::<Vec<u64>>(),
        "handles-pcr: {got:x?}"
    );
    Ok(())
}

fn flushcontext(target: Target) -> Result<()> {
    let (_server, tpm) = start(target)?;
    for flag in ["-t", "-l", "-s"] {
        tpm.run("flushcontext", &[flag])?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// self test

fn selftest(target: Target) -> Result<()> {
    let (_server, tpm) = start(target)?;
    tpm.run("selftest", &[])?;
    tpm.run("selftest", &["--fulltest"])?;
    let (out, value) = {
        let out = tpm.run("gettestresult", &[])?;
        let value = yaml(&out)?;
        (out, value)
    };
    ensure!(
        value.get("status").and_then(Value::as_str) == Some("success"),
        "after selftest: {out}"
    );
    Ok(())
}

fn gettestresult(target: Target) -> Result<()> {
    let (_server, tpm) = start(target)?;
    let out = tpm.run("gettestresult", &[])?;
    let value = yaml(&out)?;
    ensure!(
        value.get("status").and_then(Value::as_str) == Some("success"),
        "gettestresult: {out}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// hierarchy auth and clear

fn auth_set(tpm: &Tpm2, flag: &str) -> Result<u64> {
    let (_, value) = getcap(tpm, "properties-variable")?;
    value
        .get("TPM2_PT_PERMANENT")
        .and_then(|p| p.get(flag))
        .and_then(int)
        .with_context(|| format!("TPM2_PT_PERMANENT.{flag} missing"))
}

fn clear(target: Target) -> Result<()> {
    let (_server, tpm) = start(target)?;
    tpm.run("clear", &[])?; // lockout hierarchy, empty auth
    tpm.run("clear", &["-c", "p"])?; // platform hierarchy
    tpm.run("getrandom", &["--hex", "8"])?;
    Ok(())
}

fn clear_resets_auth(target: Target) -> Result<()> {
    let (_server, tpm) = start(target)?;
    tpm.run("changeauth", &["-c", "o", "ownerpw"])?;
    tpm.run("changeauth", &["-c", "e", "endorsepw"])?;
    tpm.run("changeauth", &["-c", "l", "lockoutpw"])?;
    for flag in ["ownerAuthSet", "endorsementAuthSet", "lockoutAuthSet"] {
        ensure!(
            auth_set(&tpm, flag)? == 1,
            "{flag} not set after changeauth"
        );
    }
    tpm.run("clear", &["lockoutpw"])?;
    for flag in ["ownerAuthSet", "endorsementAuthSet", "lockoutAuthSet"] {
        ensure!(auth_set(&tpm, flag)? == 0, "{flag} still set after clear");
    }
    // Empty auth works again for all three.
    tpm.run("changeauth", &["-c", "o", "x"])?;
    tpm.run("changeauth", &["-c", "e", "x"])?;
    tpm.run("changeauth", &["-c", "l", "x"])?;
    Ok(())
}

/// Set, use, change, refuse a wrong password, change back, for owner or endorsement.
fn changeauth_hierarchy(target: Target, hierarchy: &str, flag: &str) -> Result<()> {
    let (_server, tpm) = start(target)?;
    tpm.run("changeauth", &["-c", hierarchy, "first"])?;
    ensure!(auth_set(&tpm, flag)? == 1, "{flag} not set");
    tpm.run("changeauth", &["-c", hierarchy, "-p", "first", "second"])?;
    // The old password and a wrong one are refused (no DA implications for these hierarchies).
    for wrong in ["first", "wrong", ""] {
        let mut args = vec!["-c", hierarchy];
        if !wrong.is_empty() {
            args.extend(["-p", wrong]);
        }
        args.push("third");
        tpm.fails("changeauth", &args)?.expect_rc(RC_BAD_AUTH_S1)?;
    }
    // hex: form of the password works too.
    tpm.run(
        "changeauth",
        &["-c", hierarchy, "-p", "hex:7365636f6e64", "third"],
    )?;
    tpm.run("changeauth", &["-c", hierarchy, "-p", "third"])?;
    ensure!(
        auth_set(&tpm, flag)? == 0,
        "{flag} still set after reset to empty"
    );
    tpm.run("changeauth", &["-c", hierarchy, "again"])?;
    Ok(())
}

fn changeauth_owner(target: Target) -> Result<()> {
    changeauth_hierarchy(target, "owner", "ownerAuthSet")
}

fn changeauth_endorsement(target: Target) -> Result<()> {
    changeauth_hierarchy(target, "endorsement", "endorsementAuthSet")
}

/// lockoutAuth is DA-protected: one wrong password locks it out (TPM_RC_LOCKOUT) until
/// lockoutRecovery has passed, so the wrong password comes last.
fn changeauth_lockout(target: Target) -> Result<()> {
    let (_server, tpm) = start(target)?;
    tpm.run("changeauth", &["-c", "lockout", "first"])?;
    ensure!(
        auth_set(&tpm, "lockoutAuthSet")? == 1,
        "lockoutAuthSet not set"
    );
    tpm.run("changeauth", &["-c", "l", "-p", "first", "second"])?;
    tpm.run("changeauth", &["-c", "l", "-p", "second", ""])?;
    ensure!(
        auth_set(&tpm, "lockoutAuthSet")? == 0,
        "lockoutAuthSet still set"
    );
    tpm.run("changeauth", &["-c", "l", "third"])?;
    // Using lockoutAuth for something else: Clear.
    tpm.run("clear", &["third"])?;
    tpm.run("changeauth", &["-c", "l", "fourth"])?;
    tpm.fails("changeauth", &["-c", "l", "-p", "wrong", "x"])?
        .expect_rc(RC_AUTH_FAIL_S1)?;
    tpm.fails("changeauth", &["-c", "l", "-p", "fourth", "x"])?
        .expect_rc(RC_LOCKOUT)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// clock

struct Clock {
    time: u64,
    clock: u64,
    reset_count: u64,
    restart_count: u64,
    safe: bool,
}

fn readclock_parsed(tpm: &Tpm2) -> Result<Clock> {
    let out = tpm.run("readclock", &[])?;
    let value = yaml(&out)?;
    let info = value.get("clock_info").context("no clock_info")?;
    let field = |v: &Value, k: &str| {
        v.get(k)
            .and_then(int)
            .with_context(|| format!("readclock: no {k}\n{out}"))
    };
    Ok(Clock {
        time: field(&value, "time")?,
        clock: field(info, "clock")?,
        reset_count: field(info, "reset_count")?,
        restart_count: field(info, "restart_count")?,
        safe: matches!(info.get("safe"), Some(Value::Bool(true)))
            || info.get("safe").and_then(Value::as_str) == Some("yes"),
    })
}

fn readclock(target: Target) -> Result<()> {
    let (_server, tpm) = start(target)?;
    let a = readclock_parsed(&tpm)?;
    std::thread::sleep(Duration::from_millis(120));
    let b = readclock_parsed(&tpm)?;
    ensure!(
        b.time >= a.time + 100 && b.time < a.time + 30_000,
        "time went from {} to {} over 120 ms",
        a.time,
        b.time
    );
    ensure!(
        b.clock >= a.clock + 100,
        "clock went from {} to {}",
        a.clock,
        b.clock
    );
    ensure!(a.safe && b.safe, "clock not safe");
    ensure!(
        a.restart_count == 0 && b.reset_count == a.reset_count,
        "counters changed without a restart"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// startup / shutdown across a server restart

fn restart_after_shutdown_clear(target: Target) -> Result<()> {
    let (mut server, tpm) = start(target)?;
    tpm.run("changeauth", &["-c", "o", "ownerpw"])?;
    for index in [0u8, 16] {
        tpm.run(
            "pcrextend",
            &[&format!("{index}:sha256={}", hex(&pattern(32, index)))],
        )?;
    }
    let before = readclock_parsed(&tpm)?;
    tpm.run("shutdown", &["-c"])?;
    server.restart()?;
    let tpm = server.tpm2();
    // Startup(CLEAR) again is harmless (the tool accepts TPM_RC_INITIALIZE).
    tpm.run("startup", &["-c"])?;
    let values = pcrread(&tpm, "sha1:all+sha256:all+sha384:all")?;
    for (bank, len) in BANKS {
        for (&index, value) in values.get(bank).context("bank missing")? {
            ensure!(
                *value == initial_pcr(index, len),
                "after restart {bank}:{index} = {} (PCRs must be reset by Startup(CLEAR))",
                hex(value)
            );
        }
    }
    let after = readclock_parsed(&tpm)?;
    ensure!(
        after.reset_count == before.reset_count + 1 && after.restart_count == 0,
        "Shutdown(CLEAR)+Startup(CLEAR) is a TPM Reset: resetCount {} -> {}, restartCount {}",
        before.reset_count,
        after.reset_count,
        after.restart_count
    );
    ensure!(
        after.clock >= before.clock,
        "clock went back across an orderly shutdown: {} -> {}",
        before.clock,
        after.clock
    );
    // Hierarchy auth is persistent.
    ensure!(auth_set(&tpm, "ownerAuthSet")? == 1, "owner auth lost");
    tpm.fails("changeauth", &["-c", "o", "-p", "wrong", "x"])?
        .expect_rc(RC_BAD_AUTH_S1)?;
    tpm.run("changeauth", &["-c", "o", "-p", "ownerpw", ""])?;
    Ok(())
}

fn restart_after_shutdown_state(target: Target) -> Result<()> {
    let (mut server, tpm) = start(target)?;
    tpm.run("changeauth", &["-c", "e", "endorsepw"])?;
    tpm.run(
        "pcrextend",
        &[&format!("16:sha256={}", hex(&pattern(32, 1)))],
    )?;
    let before = readclock_parsed(&tpm)?;
    tpm.run("shutdown", &[])?; // Shutdown(STATE)
    server.restart()?;
    let tpm = server.tpm2();
    // Shutdown(STATE) then Startup(CLEAR) is a TPM Restart: PCRs reset, restartCount + 1.
    ensure!(
        pcr(&tpm, "sha256", 16)? == vec![0; 32],
        "PCR 16 not reset by Startup(CLEAR)"
    );
    let after = readclock_parsed(&tpm)?;
    ensure!(
        after.reset_count == before.reset_count && after.restart_count == before.restart_count + 1,
        "TPM Restart: resetCount {} -> {}, restartCount {} -> {}",
        before.reset_count,
        after.reset_count,
        before.restart_count,
        after.restart_count
    );
    tpm.run("changeauth", &["-c", "e", "-p", "endorsepw", ""])?;
    Ok(())
}
