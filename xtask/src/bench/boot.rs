//! `cargo xtask bench boot`: the unikernel's boot figures (issue 6, item 7).
//!
//! * exec → first TPM response over TCP (Startup(CLEAR) on the forwarded port), p50/p99;
//! * reset vector → ready line in guest time, from the TSC stamps on the ready line;
//! * the smallest `-m` (MiB) that boots and serves, bisected over 2..=16;
//! * host RSS of the QEMU process (VmRSS after one command);
//! * image size;
//! * idle check: 16 idle backends together use < 5 % of one core (utime + stime over 10 s).
//!
//! Writes `target/bench/boot.{json,md}`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use ukvtpm_tests::server::free_port_pair;
use ukvtpm_tests::unikernel;

use crate::target_dir;

const IDLE_BACKENDS: usize = 16;
const IDLE_WINDOW: Duration = Duration::from_secs(10);

pub fn run(args: &[String]) -> Result<()> {
    let boots = super::parse_count(args, "--boots", 20)?.max(20);
    let image = unikernel::image()?;
    let accel = unikernel::accel()?;
    let image_size = std::fs::metadata(&image)?.len();

    let mut exec_to_response = Vec::new();
    let mut reset_to_ready_us = Vec::new();
    let mut rss_kib = Vec::new();
    for _ in 0..boots {
        let port = free_port_pair()?;
        let exec = Instant::now();
        let backend = unikernel::boot_with(port, 16)?;
        exec_to_response.push(exec.elapsed().as_secs_f64() * 1e3);
        reset_to_ready_us.push(backend.ready.reset_to_ready_us as f64);
        if let Some(pid) = backend.pid() {
            rss_kib.push(rss(pid)? as f64);
        }
        backend.stop(Duration::from_secs(5))?;
    }

    // Bisect the smallest -m in 2..=16 MiB that boots and serves.
    let (mut lo, mut hi) = (2u32, 16u32);
    ensure!(serves(hi), "the unikernel does not serve with -m {hi}M");
    while lo < hi {
        let mid = (lo + hi) / 2;
        if serves(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let min_mib = hi;

    // Idle: 16 backends, CPU time over 10 s.
    let idle: Vec<_> = (0..IDLE_BACKENDS)
        .map(|_| unikernel::boot_with(free_port_pair()?, 16))
        .collect::<Result<_>>()?;
    let pids: Vec<u32> = idle.iter().filter_map(|b| b.pid()).collect();
    std::thread::sleep(Duration::from_secs(1));
    let before: u64 = pids.iter().map(|&p| cpu_ticks(p)).sum::<Result<_>>()?;
    let t0 = Instant::now();
    std::thread::sleep(IDLE_WINDOW);
    let after: u64 = pids.iter().map(|&p| cpu_ticks(p)).sum::<Result<_>>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let idle_pct = (after - before) as f64 / hz / t0.elapsed().as_secs_f64() * 100.0;
    for b in idle {
        let _ = b.stop(Duration::from_secs(5));
    }

    let rows = [
        (
            "exec -> first TPM response p50 (ms)",
            pct(&exec_to_response, 50.0),
        ),
        (
            "exec -> first TPM response p99 (ms)",
            pct(&exec_to_response, 99.0),
        ),
        (
            "reset -> ready p50 (us guest time)",
            pct(&reset_to_ready_us, 50.0),
        ),
        (
            "reset -> ready p99 (us guest time)",
            pct(&reset_to_ready_us, 99.0),
        ),
        ("smallest -m (MiB)", f64::from(min_mib)),
        ("QEMU RSS p50 (MiB)", pct(&rss_kib, 50.0) / 1024.0),
        ("image size (KiB)", (image_size >> 10) as f64),
        ("16 idle backends (% of one core)", idle_pct),
    ];
    let mut md = format!(
        "# unikernel boot ({accel}, {boots} boots)\n\n| measurement | value |\n|---|---:|\n"
    );
    let mut json = format!("{{\n  \"accel\": \"{accel}\",\n  \"boots\": {boots},\n  \"rows\": [\n");
    for (i, (name, value)) in rows.iter().enumerate() {
        println!("{name:<40} {value:>10.1}");
        md.push_str(&format!("| {name} | {value:.1} |\n"));
        let comma = if i + 1 < rows.len() { "," } else { "" };
        json.push_str(&format!(
            "    {{ \"name\": \"{name}\", \"value\": {value:.3} }}{comma}\n"
        ));
    }
    json.push_str("  ]\n}\n");
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("boot.json"), json)?;
    std::fs::write(dir.join("boot.md"), md)?;
    println!(
        "wrote {} and {}",
        dir.join("boot.json").display(),
        dir.join("boot.md").display()
    );
    ensure!(
        idle_pct < 5.0,
        "{IDLE_BACKENDS} idle backends use {idle_pct:.1} % of one core (limit 5 %)"
    );
    Ok(())
}

fn serves(mib: u32) -> bool {
    free_port_pair()
        .and_then(|port| unikernel::boot_with(port, mib))
        .is_ok_and(|b| b.stop(Duration::from_secs(5)).is_ok())
}

fn pct(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i.min(v.len() - 1)]
}

fn rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// utime + stime of `pid` in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').context("bad stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok(f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?)
}
