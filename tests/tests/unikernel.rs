//! The unikernel backend end to end: build the image, boot it in QEMU (KVM when a probe boot
//! works, else TCG; the test says which), talk to the TPM engine over the forwarded port with
//! the swtpm data-channel protocol, abuse it, and shut QEMU down cleanly.
//!
//! `UKVTPM_IMAGE=path` skips the build and uses that image.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ukvtpm_qemu::args::Accel;
use ukvtpm_qemu::backend::{self, Backend, Options};

#[allow(dead_code)]
#[path = "../../xtask/src/image.rs"]
mod image;

const STARTUP_CLEAR: [u8; 12] = [0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x44, 0, 0];
const GET_RANDOM_8: [u8; 12] = [0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x7b, 0, 8];
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// The image under test, built once per test binary (release, own target directory).
fn image() -> &'static PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        if let Some(p) = std::env::var_os("UKVTPM_IMAGE") {
            return PathBuf::from(p);
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| root.join("target"), PathBuf::from)
            .join("unikernel-image");
        image::build(true, &target).expect("building the unikernel image")
    })
}

/// KVM if a probe boot reaches the ready line, else TCG (decided once, printed).
fn accel() -> Accel {
    static ACCEL: OnceLock<Accel> = OnceLock::new();
    *ACCEL.get_or_init(|| {
        let choice = ukvtpm_qemu::accel::choose(
            None,
            &PathBuf::from(ukvtpm_qemu::args::DEFAULT_QEMU),
            image(),
            ukvtpm_qemu::accel::PROBE_TIMEOUT,
        );
        eprintln!(
            "unikernel tests run under {}{}",
            choice.accel,
            choice
                .warning
                .map(|w| format!(" ({w})"))
                .unwrap_or_default()
        );
        choice.accel
    })
}

/// A free port P with P+1 free too (data and control channel).
fn free_port() -> u16 {
    for _ in 0..100 {
        let Ok(first) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = first.local_addr().map(|a| a.port()) else {
            continue;
        };
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two adjacent free local ports")
}

fn boot(memory_mib: u32) -> Result<(Backend, u16)> {
    let port = free_port();
    let opts = Options {
        port,
        memory_mib,
        accel: Some(accel()),
        image: Some(image().clone()),
        ready_timeout: Duration::from_secs(60),
        ..Options::default()
    };
    let cmd = backend::command(&opts, image(), accel());
    let b = backend::spawn(&cmd, opts.ready_timeout)?;
    Ok((b, port))
}

fn connect(port: u16) -> Result<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Reads one response: 10-byte header, then responseSize - 10 bytes.
fn read_response(s: &mut TcpStream) -> Result<Vec<u8>> {
    let mut r = vec![0u8; 10];
    s.read_exact(&mut r).context("reading a response header")?;
    let size = u32::from_be_bytes([r[2], r[3], r[4], r[5]]) as usize;
    ensure!(
        (10..=4096).contains(&size),
        "bad response size {size}: {r:02x?}"
    );
    r.resize(size, 0);
    s.read_exact(&mut r[10..])
        .context("reading a response body")?;
    Ok(r)
}

fn transact(s: &mut TcpStream, command: &[u8]) -> Result<Vec<u8>> {
    s.write_all(command)?;
    let r = read_response(s)?;
    let tag = u16::from_be_bytes([r[0], r[1]]);
    ensure!(
        matches!(tag, 0x8001 | 0x8002 | 0x00c4),
        "bad response tag {tag:#x} for {command:02x?}"
    );
    Ok(r)
}

fn rc(r: &[u8]) -> u32 {
    u32::from_be_bytes([r[6], r[7], r[8], r[9]])
}

fn get_random_ok(s: &mut TcpStream) -> Result<Vec<u8>> {
    let r = transact(s, &GET_RANDOM_8)?;
    ensure!(rc(&r) == 0, "GetRandom rc {:#x}", rc(&r));
    ensure!(
        r.len() == 20 && r[10..12] == [0, 8],
        "GetRandom(8) response {r:02x?}"
    );
    Ok(r[12..].to_vec())
}

fn stop(backend: Backend) -> Result<()> {
    let pid = backend.pid();
    let status = backend.stop(Duration::from_secs(10))?;
    ensure!(
        status.success(),
        "QEMU (pid {pid:?}) did not exit cleanly: {status}"
    );
    Ok(())
}

/// A small deterministic generator (xorshift64*): reproducible storms without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn unikernel_serves_tpm_commands() -> Result<()> {
    image();
    accel();
    let exec = Instant::now();
    let (backend, port) = boot(16)?;
    let mut s = connect(port)?;
    let startup = transact(&mut s, &STARTUP_CLEAR)?;
    let first_response = exec.elapsed();
    ensure!(
        startup == [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0],
        "Startup(CLEAR): {startup:02x?}"
    );
    eprintln!(
        "unikernel ({}): exec -> ready line {} ms, exec -> first TPM response {} ms, \
         reset -> ready {} us guest time (tsc {} -> {} at {} Hz)",
        backend.accel,
        backend.spawn_to_ready.as_millis(),
        first_response.as_millis(),
        backend.ready.reset_to_ready_us,
        backend.ready.tsc_reset,
        backend.ready.tsc_ready,
        backend.ready.tsc_hz
    );

    // Many commands on one connection; the random bytes differ.
    let a = get_random_ok(&mut s)?;
    let b = get_random_ok(&mut s)?;
    ensure!(a != b, "two GetRandom(8) calls returned the same bytes");
    // A command split over several writes.
    for chunk in GET_RANDOM_8.chunks(5) {
        s.write_all(chunk)?;
        thread::sleep(Duration::from_millis(5));
    }
    ensure!(rc(&read_response(&mut s)?) == 0);
    drop(s);

    // Sequential connections: one command each, like the swtpm TCTI.
    for _ in 0..30 {
        let mut c = connect(port)?;
        get_random_ok(&mut c)?;
    }

    // Concurrent connections.
    let workers: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || -> Result<()> {
                let mut c = connect(port)?;
                for _ in 0..50 {
                    get_random_ok(&mut c)?;
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
    }

    // Clients that disconnect mid-command do not wedge anything.
    for partial in [&GET_RANDOM_8[..3], &GET_RANDOM_8[..10], &GET_RANDOM_8[..11]] {
        let mut c = connect(port)?;
        c.write_all(partial)?;
        c.shutdown(Shutdown::Both)?;
    }
    {
        let mut c = connect(port)?;
        c.write_all(&[0x80, 0x01, 0, 0, 0x01, 0, 0, 0, 0x01, 0x7b])?; // declares 256 bytes
    }
    // More idle connections than the server has sockets: others are still served after the
    // idle ones go away.
    let idle: Vec<_> = (0..3).map(|_| connect(port)).collect::<Result<_>>()?;
    let mut c = connect(port)?;
    get_random_ok(&mut c)?;
    drop(idle);

    // An impossible size gets TPM_RC_COMMAND_SIZE and the connection closes.
    let mut c = connect(port)?;
    let r = transact(
        &mut c,
        &[0x80, 0x01, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, 0x7b],
    )?;
    ensure!(rc(&r) == 0x142, "oversized command: {r:02x?}");
    let mut rest = Vec::new();
    ensure!(
        c.read_to_end(&mut rest).is_ok() && rest.is_empty(),
        "connection stays open after a framing error"
    );

    let mut c = connect(port)?;
    get_random_ok(&mut c)?;
    drop(c);

    // tpm2-tools through the swtpm: TCTI (control channel on port + 1), when installed.
    let tcti = format!("swtpm:host=127.0.0.1,port={port}");
    match std::process::Command::new("tpm2_getrandom")
        .args(["-T", &tcti, "--hex", "16"])
        .output()
    {
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            ensure!(
                out.status.success() && stdout.trim().len() == 32,
                "tpm2_getrandom via {tcti}: {} {stdout} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(e) => eprintln!("tpm2_getrandom not run ({e}); install tpm2-tools to cover the TCTI"),
    }
    stop(backend)
}

#[test]
fn unikernel_survives_a_storm_of_malformed_commands() -> Result<()> {
    const COMMANDS: usize = 10_000;
    let (backend, port) = boot(16)?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("storm seed {seed:#x}");
    let mut rng = Rng(seed);
    let mut s = connect(port)?;
    ensure!(rc(&transact(&mut s, &STARTUP_CLEAR)?) == 0);
    let started = Instant::now();
    let (mut answered, mut reconnects) = (0usize, 0usize);
    for i in 0..COMMANDS {
        match rng.below(100) {
            // Well-framed garbage: random tag, code and parameters.
            0..=59 => {
                let len = 10 + rng.below(120) as usize;
                let mut cmd = rng.bytes(len);
                cmd[2..6].copy_from_slice(&(len as u32).to_be_bytes());
                transact(&mut s, &cmd).with_context(|| format!("command {i}: {cmd:02x?}"))?;
                answered += 1;
            }
            // Valid tag and a real command code (0x11F..=0x19F), garbage parameters.
            60..=94 => {
                let len = 10 + rng.below(64) as usize;
                let mut cmd = rng.bytes(len);
                cmd[0..2].copy_from_slice(&[0x80, 0x01 + (rng.below(2) as u8)]);
                cmd[2..6].copy_from_slice(&(len as u32).to_be_bytes());
                let code = 0x11f + rng.below(0x81) as u32;
                cmd[6..10].copy_from_slice(&code.to_be_bytes());
                transact(&mut s, &cmd).with_context(|| format!("command {i}: {cmd:02x?}"))?;
                answered += 1;
            }
            // Impossible size: error response, then the server closes; reconnect.
            95..=97 => {
                let mut cmd = rng.bytes(10);
                let bad = [0u32, 5, 9, 4097, 0x7fff_ffff][rng.below(5) as usize];
                cmd[2..6].copy_from_slice(&bad.to_be_bytes());
                let r = transact(&mut s, &cmd)?;
                ensure!(rc(&r) == 0x142, "bad size {bad}: {r:02x?}");
                answered += 1;
                s = connect(port)?;
                reconnects += 1;
            }
            // A truncated command, then the client goes away.
            _ => {
                let len = 20 + rng.below(100) as usize;
                let mut cmd = rng.bytes(len);
                cmd[2..6].copy_from_slice(&(len as u32).to_be_bytes());
                s.write_all(&cmd[..1 + rng.below(len as u64 - 1) as usize])?;
                s.shutdown(Shutdown::Both)?;
                s = connect(port)?;
                reconnects += 1;
            }
        }
    }
    eprintln!(
        "storm: {COMMANDS} commands ({answered} answered, {reconnects} reconnects) in {} ms",
        started.elapsed().as_millis()
    );
    get_random_ok(&mut s)?;
    let mut fresh = connect(port)?;
    get_random_ok(&mut fresh)?;
    drop((s, fresh));
    stop(backend)
}

/// The smallest `-m` (MiB) that still reaches the ready line and serves; reported, and
/// checked against the 16 MiB goal.
#[test]
fn unikernel_fits_in_16_mib() -> Result<()> {
    let mut smallest = None;
    for mib in [4u32, 6, 8, 10, 12, 16] {
        let Ok((backend, port)) = boot(mib) else {
            continue;
        };
        let served = connect(port).and_then(|mut c| {
            transact(&mut c, &STARTUP_CLEAR)?;
            get_random_ok(&mut c)
        });
        stop(backend)?;
        if served.is_ok() {
            smallest = Some(mib);
            break;
        }
    }
    let Some(mib) = smallest else {
        bail!("the unikernel did not serve with up to 16 MiB of guest RAM")
    };
    eprintln!("smallest working -m: {mib} MiB");
    Ok(())
}
