//! `cargo xtask bench ops`: swtpm and `ukvtpm serve` (release build) side by side, on this
//! machine, in one run.
//!
//! Measured for each server (issue 3, item 7):
//! * raw round trip with our own client speaking the socket protocol (plain swtpm framing):
//!   p50 and p99 over `--calls` calls, on one persistent connection and with a new TCP connection
//!   per command (what the `swtpm:` TCTI does);
//! * server CPU time per command: delta of utime+stime in `/proc/PID/stat` over a loop of at
//!   least [`CPU_LOOP`] (the clock tick is 10 ms, so a long loop keeps the error near 1 %);
//! * spawn to first successful response (GetRandom) with a fresh state directory;
//! * whole tpm2-tools commands through the `swtpm:` TCTI: median over `--runs` runs;
//! * server RSS at the end.
//!
//! The TPM returns at most 8 PCR digests per PCR_Read, so reading 24 SHA-256 PCRs is measured as
//! the sequence of 3 calls (as tpm2_pcrread does) and one 8-PCR call is measured on its own.
//!
//! The unikernel (issue 6, item 7) is a third column, skipped with `--no-unikernel`: the release
//! image booted in QEMU by the test harness (plain TCP, guest port 2321 forwarded by QEMU user
//! networking, KVM if a probe boot works, else TCG). It runs the basic raw rows only (GetRandom,
//! PCR_Read, Hash); its "server" CPU time and RSS are those of the whole QEMU process.
//!
//! Adding a row: add an entry to [`raw_ops`] or [`TOOL_OPS`]; adding a column: add a
//! [`Subject`].

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ukvtpm_tests::raw::{self, Client, Framing, alg};
use ukvtpm_tests::server::{command, free_port_pair};
use ukvtpm_tests::{Kind, Protocol, Server};

use super::parse_count;
use super::report::Report;
use crate::{build_ukvtpm, deps, target_dir};

/// Local addresses of the benchmark's connections, used in turn: not 127.0.0.1, so the
/// TIME_WAIT entries of tens of thousands of short connections do not use up the ports servers
/// bind to, and spread over 16 addresses so connect() never searches a nearly full port range.
fn client_addr() -> std::net::Ipv4Addr {
    static NEXT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 16;
    std::net::Ipv4Addr::new(127, 0, 1, 2 + n)
}
/// How long each CPU-per-command loop runs.
const CPU_LOOP: Duration = Duration::from_millis(1500);
/// Start-up measurements per server.
const STARTUP_RUNS: usize = 10;

pub struct Options {
    /// Raw calls per latency measurement.
    calls: usize,
    /// tpm2-tools runs per command.
    runs: usize,
    /// Whether to boot the unikernel in QEMU as a third column.
    unikernel: bool,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options> {
        for (i, a) in args.iter().enumerate() {
            let is_value = i > 0 && matches!(args[i - 1].as_str(), "--calls" | "--runs");
            if !is_value && !matches!(a.as_str(), "--calls" | "--runs" | "--no-unikernel") {
                bail!("unknown option `{a}` (options: --calls N, --runs N, --no-unikernel)");
            }
        }
        let opts = Options {
            calls: parse_count(args, "--calls", 2000)?,
            runs: parse_count(args, "--runs", 20)?,
            unikernel: !args.iter().any(|a| a == "--no-unikernel"),
        };
        ensure!(opts.calls >= 100, "--calls must be at least 100");
        ensure!(opts.runs >= 3, "--runs must be at least 3");
        Ok(opts)
    }
}

/// A system under test: one column of the report.
struct Subject {
    name: &'static str,
    kind: Kind,
    bin: PathBuf,
    /// Every row; otherwise only the [`RawOp::basic`] ones (the unikernel).
    full: bool,
}

/// A raw operation: a sequence of commands sent one after the other.
struct RawOp {
    name: &'static str,
    commands: Vec<Vec<u8>>,
    /// Measured on every subject, the unikernel included.
    basic: bool,
}

impl Subject {
    fn measures(&self, op: &RawOp) -> bool {
        self.full || op.basic
    }
}

fn raw_ops() -> Vec<RawOp> {
    let mut ops = vec![
        RawOp {
            name: "GetRandom 32 bytes",
            commands: vec![raw::get_random(32)],
            basic: true,
        },
        RawOp {
            name: "PCR_Read 8 SHA-256 PCRs (1 call)",
            commands: vec![raw::pcr_read(alg::SHA256, 0..8)],
            basic: true,
        },
        RawOp {
            name: "PCR_Read 24 SHA-256 PCRs (3 calls)",
            commands: vec![
                raw::pcr_read(alg::SHA256, 0..8),
                raw::pcr_read(alg::SHA256, 8..16),
                raw::pcr_read(alg::SHA256, 16..24),
            ],
            basic: true,
        },
        RawOp {
            name: "Hash 1 KiB SHA-256",
            commands: vec![raw::hash(&[0x5A; 1024], alg::SHA256)],
            basic: true,
        },
    ];
    // Key rows (issue 4): keys made by `keys::setup` on every server.
    ops.extend(
        super::keys::raw_ops()
            .into_iter()
            .map(|(name, commands)| RawOp {
                name,
                commands,
                basic: false,
            }),
    );
    // NV and policy-session rows (issue 5): objects made by `nv::setup`.
    ops.extend(
        super::nv::raw_ops()
            .into_iter()
            .map(|(name, commands)| RawOp {
                name,
                commands,
                basic: false,
            }),
    );
    ops
}

/// Whole tpm2-tools commands: (label, tool, args). `{1k}` is replaced by a 1 KiB file.
const TOOL_OPS: &[(&str, &str, &[&str])] = &[
    ("tpm2_getrandom 32", "tpm2_getrandom", &["--hex", "32"]),
    ("tpm2_pcrread sha256:all", "tpm2_pcrread", &["sha256:all"]),
    (
        "tpm2_hash 1 KiB sha256",
        "tpm2_hash",
        &["-g", "sha256", "--hex", "{1k}"],
    ),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Persistent,
    NewConnection,
}

pub fn run(opts: &Options) -> Result<()> {
    deps::run()?;
    ukvtpm_tests::require::tcti("swtpm")?;
    let mut subjects = vec![
        Subject {
            name: "swtpm",
            kind: Kind::Swtpm,
            bin: ukvtpm_tests::require::tool("swtpm")?,
            full: true,
        },
        Subject {
            name: "ukvtpm",
            kind: Kind::Ukvtpm(Protocol::Swtpm),
            bin: build_ukvtpm(true)?,
            full: true,
        },
    ];
    let mut unikernel_accel = None;
    if opts.unikernel {
        let image = ukvtpm_tests::unikernel::image()?;
        unikernel_accel = Some(ukvtpm_tests::unikernel::accel()?);
        subjects.push(Subject {
            name: "unikernel",
            kind: Kind::Unikernel,
            bin: image,
            full: false,
        });
    }
    let mut report = Report::new("ops", subjects.iter().map(|s| s.name.to_string()).collect());
    report.facts = vec![
        ("raw calls per measurement".into(), opts.calls.to_string()),
        ("tpm2-tools runs per command".into(), opts.runs.to_string()),
        ("CPU loop per measurement".into(), format!("{CPU_LOOP:?}")),
        (
            "cores".into(),
            std::thread::available_parallelism()
                .map_or(0, |n| n.get())
                .to_string(),
        ),
        ("ukvtpm build".into(), "release".into()),
        ("swtpm".into(), tool_version("swtpm", &["--version"])),
        (
            "tpm2-tools".into(),
            tool_version("tpm2_getrandom", &["--version"]),
        ),
    ];
    if let Some(accel) = unikernel_accel {
        report.facts.push((
            "unikernel column".into(),
            format!(
                "release image in QEMU ({accel}), guest port 2321 forwarded by user networking; \
                 basic raw rows only; server CPU time and RSS are the QEMU process's"
            ),
        ));
    }
    let steps = 1 + raw_ops().len() * 2 + 2;
    let mut step = 0;
    let mut progress = |what: &str| {
        step += 1;
        eprintln!("bench ops [{step}/{steps}] {what}");
    };

    // Start-up first, while nothing else runs.
    progress("spawn to first response");
    let mut startup = Vec::new();
    for s in &subjects {
        // The unikernel's boot is `bench boot`'s subject.
        if !s.full {
            startup.push(None);
            continue;
        }
        let times = startup_times(s, STARTUP_RUNS)?;
        eprintln!("    {:<7} median {:.2} ms", s.name, median(&times));
        startup.push(Some(times));
    }

    let mut servers = Vec::new();
    for s in &subjects {
        servers.push(
            Server::start_with(s.kind, "swtpm", s.bin.clone())
                .with_context(|| format!("starting {}", s.name))?,
        );
    }
    for (s, server) in subjects.iter().zip(&servers).filter(|(s, _)| s.full) {
        super::keys::setup(server.port())
            .with_context(|| format!("creating the benchmark keys on {}", s.name))?;
        super::nv::setup(server.port()).with_context(|| {
            format!("creating the benchmark NV index and session on {}", s.name)
        })?;
    }

    let ops = raw_ops();
    // latency[op][mode][subject] = samples (µs); cpu[op][mode][subject] = µs per op.
    let mut latency = Vec::new();
    let mut cpu = Vec::new();
    let mut failures = Vec::new();
    for op in &ops {
        let mut by_mode = Vec::new();
        let mut cpu_by_mode = Vec::new();
        for mode in [Mode::Persistent, Mode::NewConnection] {
            progress(&format!(
                "{} ({})",
                op.name,
                match mode {
                    Mode::Persistent => "persistent connection",
                    Mode::NewConnection => "new connection per command",
                }
            ));
            let mut per_subject = Vec::new();
            let mut cpu_per_subject = Vec::new();
            let calls = super::keys::calls(op.name, opts.calls);
            let measured: Vec<&Server> = subjects
                .iter()
                .zip(&servers)
                .filter(|(s, _)| s.measures(op))
                .map(|(_, server)| server)
                .collect();
            let mut measured_samples = latencies(&measured, op, mode, calls).into_iter();
            for (s, server) in subjects.iter().zip(&servers) {
                if !s.measures(op) {
                    per_subject.push(None);
                    cpu_per_subject.push(None);
                    continue;
                }
                let samples = measured_samples.next().context("one result per server")?;
                // A failing operation (e.g. not implemented yet) leaves a gap in the table
                // instead of aborting the whole run.
                let measured =
                    samples.and_then(|samples| Ok((samples, cpu_per_op(server, op, mode)?)));
                match measured {
                    Ok((samples, cpu_us)) => {
                        eprintln!(
                            "    {:<9} p50 {:>7.1} µs  p99 {:>7.1} µs  {} CPU {:>6.2} µs",
                            s.name,
                            percentile(&samples, 50.0),
                            percentile(&samples, 99.0),
                            if s.full { "server" } else { "QEMU" },
                            cpu_us
                        );
                        per_subject.push(Some(samples));
                        cpu_per_subject.push(Some(cpu_us));
                    }
                    Err(e) => {
                        eprintln!("    {:<7} FAILED: {e:#}", s.name);
                        failures.push(format!("{}: {}: {}", s.name, op.name, first_line(&e)));
                        per_subject.push(None);
                        cpu_per_subject.push(None);
                    }
                }
            }
            by_mode.push(per_subject);
            cpu_by_mode.push(cpu_per_subject);
        }
        latency.push(by_mode);
        cpu.push(cpu_by_mode);
    }
    progress("server memory (RSS)");
    let rss: Vec<Option<f64>> = servers.iter().map(|s| s.pid().and_then(rss_mib)).collect();

    progress("whole tpm2-tools commands (swtpm: TCTI)");
    let mut tools = Vec::new();
    for (label, tool, args) in TOOL_OPS
        .iter()
        .chain(super::keys::TOOL_OPS)
        .chain(super::nv::TOOL_OPS)
    {
        let mut per_subject = Vec::new();
        let measured: Vec<&Server> = subjects
            .iter()
            .zip(&servers)
            .filter(|(s, _)| s.full)
            .map(|(_, server)| server)
            .collect();
        let mut all = tool_times(&measured, tool, args, opts.runs).into_iter();
        for s in &subjects {
            if !s.full {
                per_subject.push(None);
                continue;
            }
            match all.next().context("one result per server")? {
                Ok(times) => {
                    eprintln!("    {:<7} {label}: median {:.2} ms", s.name, median(&times));
                    per_subject.push(Some(median(&times)));
                }
                Err(e) => {
                    eprintln!("    {:<7} {label}: FAILED: {e:#}", s.name);
                    failures.push(format!("{}: {label}: {}", s.name, first_line(&e)));
                    per_subject.push(None);
                }
            }
        }
        tools.push(per_subject);
    }
    for mut server in servers {
        server.stop()?;
    }

    // Rows, group by group.
    for (m, group) in [
        (0, "raw round trip, persistent connection"),
        (1, "raw round trip, new connection per command"),
    ] {
        for (o, op) in ops.iter().enumerate() {
            for (p, label) in [(50.0, "p50"), (99.0, "p99")] {
                report.add(
                    group,
                    &format!("{} {label}", op.name),
                    "µs",
                    latency[o][m]
                        .iter()
                        .map(|s: &Option<Vec<f64>>| s.as_ref().map(|s| percentile(s, p)))
                        .collect(),
                );
            }
        }
    }
    // RSA key generation varies a lot from key to key: its spread over the Create samples.
    if let Some(o) = ops.iter().position(|op| op.name == super::keys::KEYGEN_OP) {
        let keys = super::keys::calls(super::keys::KEYGEN_OP, opts.calls);
        for (p, label) in [(50.0, "p50"), (90.0, "p90"), (100.0, "max")] {
            report.add(
                "RSA 2048 key generation (raw Create, persistent connection)",
                &format!("{label} over {keys} keys"),
                "ms",
                latency[o][0]
                    .iter()
                    .map(|s: &Option<Vec<f64>>| s.as_ref().map(|s| percentile(s, p) / 1e3))
                    .collect(),
            );
        }
    }
    for (o, op) in ops.iter().enumerate() {
        for (m, label) in [(0, "persistent"), (1, "new connection")] {
            report.add(
                "server CPU time per operation",
                &format!("{}, {label}", op.name),
                "µs",
                cpu[o][m].clone(),
            );
        }
    }
    report.add(
        "start-up",
        &format!("spawn to first response, fresh state (median of {STARTUP_RUNS})"),
        "ms",
        startup
            .iter()
            .map(|t| t.as_ref().map(|t| median(t)))
            .collect(),
    );
    for ((label, _, _), values) in TOOL_OPS
        .iter()
        .chain(super::keys::TOOL_OPS)
        .chain(super::nv::TOOL_OPS)
        .zip(&tools)
    {
        report.add(
            &format!("tpm2-tools command, median of {}", opts.runs),
            label,
            "ms",
            values.clone(),
        );
    }
    report.add("memory", "server RSS after the run", "MiB", rss);

    println!("{}", report.table());
    let (json, md) = report.write(&target_dir().join("bench"))?;
    println!("wrote {} and {}", json.display(), md.display());
    if !failures.is_empty() {
        bail!(
            "{} measurements failed (gaps in the table):\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
    Ok(())
}

fn tool_version(tool: &str, args: &[&str]) -> String {
    std::process::Command::new(tool)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

fn check_ok(op: &str, response: &[u8]) -> Result<()> {
    let rc = response.get(6..10).context("short response")?;
    if rc != [0, 0, 0, 0] {
        bail!("{op} returned rc 0x{}", raw::hex(rc));
    }
    Ok(())
}

/// TPM_RC_RETRY: libtpms gives up on an RSA key generation that takes too long and asks the
/// caller to send the command again (as tpm2-tss does); the retries count in the time.
fn is_retry(response: &[u8]) -> bool {
    response.get(6..10) == Some(&[0, 0, 0x09, 0x22][..])
}

fn run_op(client: &mut Client, op: &RawOp) -> Result<()> {
    for cmd in &op.commands {
        let mut response = client.transact(cmd)?;
        while is_retry(&response) {
            response = client.transact(cmd)?;
        }
        check_ok(op.name, &response)?;
    }
    Ok(())
}

fn run_op_new_connections(port: u16, op: &RawOp) -> Result<()> {
    for cmd in &op.commands {
        let mut client = Client::connect_from(client_addr(), port, Framing::Plain)?;
        let mut response = client.transact(cmd)?;
        while is_retry(&response) {
            client = Client::connect_from(client_addr(), port, Framing::Plain)?;
            response = client.transact(cmd)?;
        }
        check_ok(op.name, &response)?;
    }
    Ok(())
}

/// Calls per subject in one round of the interleaved latency measurement.
const ROUND: usize = 100;

/// Per-operation wall times in µs for every server, after a warm-up of 10 %. The servers take
/// turns in rounds of [`ROUND`] calls, so a burst of load from elsewhere on the machine hits
/// them alike instead of spoiling one column's p99.
fn latencies(servers: &[&Server], op: &RawOp, mode: Mode, calls: usize) -> Vec<Result<Vec<f64>>> {
    struct Lane {
        port: u16,
        client: Option<Client>,
        samples: Result<Vec<f64>>,
    }
    let one = |lane: &mut Lane| -> Result<f64> {
        let t = Instant::now();
        match lane.client.as_mut() {
            Some(client) => run_op(client, op)?,
            None => run_op_new_connections(lane.port, op)?,
        }
        Ok(t.elapsed().as_secs_f64() * 1e6)
    };
    let mut lanes: Vec<Lane> = servers
        .iter()
        .map(|server| {
            let port = server.port();
            let client = match mode {
                Mode::Persistent => {
                    Client::connect_from(client_addr(), port, Framing::Plain).map(Some)
                }
                Mode::NewConnection => Ok(None),
            };
            match client {
                Ok(client) => Lane {
                    port,
                    client,
                    samples: Ok(Vec::with_capacity(calls)),
                },
                Err(e) => Lane {
                    port,
                    client: None,
                    samples: Err(e),
                },
            }
        })
        .collect();
    for lane in &mut lanes {
        for _ in 0..calls / 10 {
            if let Err(e) = one(lane) {
                lane.samples = Err(e);
                break;
            }
        }
    }
    let mut done = 0;
    while done < calls {
        let n = ROUND.min(calls - done);
        for lane in &mut lanes {
            if lane.samples.is_err() {
                continue;
            }
            for _ in 0..n {
                match one(lane) {
                    Ok(us) => {
                        if let Ok(samples) = lane.samples.as_mut() {
                            samples.push(us);
                        }
                    }
                    Err(e) => {
                        lane.samples = Err(e);
                        break;
                    }
                }
            }
        }
        done += n;
    }
    lanes.into_iter().map(|lane| lane.samples).collect()
}

/// Server CPU time (utime + stime, µs) per operation over a loop of [`CPU_LOOP`].
fn cpu_per_op(server: &Server, op: &RawOp, mode: Mode) -> Result<f64> {
    let pid = server.pid().context("server not running")?;
    let port = server.port();
    let mut client = match mode {
        Mode::Persistent => Some(Client::connect_from(client_addr(), port, Framing::Plain)?),
        Mode::NewConnection => None,
    };
    let before = cpu_us(pid)?;
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < CPU_LOOP {
        match client.as_mut() {
            Some(c) => run_op(c, op)?,
            None => run_op_new_connections(port, op)?,
        }
        ops += 1;
    }
    let after = cpu_us(pid)?;
    Ok((after - before) / ops as f64)
}

/// utime + stime of process `pid` in µs (includes exited threads).
fn cpu_us(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): utime is field 14, stime field 15.
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ensure!(ticks > 0.0, "sysconf(_SC_CLK_TCK) failed");
    Ok((utime + stime) * 1e6 / ticks)
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Spawn to first successful GetRandom response, in ms, `runs` times with fresh state.
fn startup_times(subject: &Subject, runs: usize) -> Result<Vec<f64>> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let dir = tempfile::tempdir()?;
        let state = dir.path().join("state");
        std::fs::create_dir(&state)?;
        let port = free_port_pair()?;
        let mut cmd = command(subject.kind, &subject.bin, port, &state);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", subject.name))?;
        let result = first_response(port, start, &mut child);
        let _ = child.kill();
        let _ = child.wait();
        times.push(result.with_context(|| format!("{} start-up", subject.name))?);
    }
    Ok(times)
}

fn first_response(port: u16, start: Instant, child: &mut std::process::Child) -> Result<f64> {
    let request = raw::get_random(8);
    loop {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("no response within 10 s");
        }
        if let Some(status) = child.try_wait()? {
            bail!("server exited ({status}) before answering");
        }
        let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
            std::thread::sleep(Duration::from_micros(50));
            continue;
        };
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        if stream.write_all(&request).is_err() {
            continue;
        }
        let mut header = [0u8; 10];
        if stream.read_exact(&mut header).is_err() {
            continue;
        }
        if header[6..10] == [0, 0, 0, 0] {
            return Ok(start.elapsed().as_secs_f64() * 1e3);
        }
        // Answered, but not ready yet (e.g. TPM_RC_INITIALIZE): try again.
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Wall times in ms of `runs` runs of one tool (after one warm-up run).
fn tool_times(
    servers: &[&Server],
    tool: &str,
    args: &[&str],
    runs: usize,
) -> Vec<Result<Vec<f64>>> {
    let mut lanes: Vec<(ukvtpm_tests::Tpm2, Vec<String>, Result<Vec<f64>>)> = servers
        .iter()
        .map(|server| {
            let input = server.path("1k.bin");
            let prepared = std::fs::write(&input, [0x5Au8; 1024])
                .context("writing the 1 KiB input")
                .map(|()| Vec::with_capacity(runs));
            let input = input.to_string_lossy().into_owned();
            let args = args
                .iter()
                .map(|a| {
                    if *a == "{1k}" {
                        input.clone()
                    } else {
                        (*a).to_string()
                    }
                })
                .collect();
            (server.tpm2(), args, prepared)
        })
        .collect();
    // One warm-up run each, then the servers take turns run by run.
    for round in 0..=runs {
        for (tpm, args, times) in &mut lanes {
            let Ok(samples) = times.as_mut() else {
                continue;
            };
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let t = Instant::now();
            match tpm.run(tool, &args) {
                Ok(_) if round > 0 => samples.push(t.elapsed().as_secs_f64() * 1e3),
                Ok(_) => {}
                Err(e) => *times = Err(e),
            }
        }
    }
    lanes.into_iter().map(|(_, _, times)| times).collect()
}

fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn median(samples: &[f64]) -> f64 {
    percentile(samples, 50.0)
}

fn first_line(e: &anyhow::Error) -> String {
    format!("{e:#}")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}
