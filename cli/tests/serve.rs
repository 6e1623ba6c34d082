//! `ukvtpm serve` as a process: both framings, the swtpm control channel, the simulator's
//! platform port, persistence across restarts, start-up errors, misbehaving clients, and
//! tpm2-tools through the `swtpm:` and `mssim:` TCTIs.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

const BIN: &str = env!("CARGO_BIN_EXE_ukvtpm");
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// TPM2_GetRandom(8).
const GET_RANDOM: [u8; 12] = [0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x7b, 0, 0x08];

fn su_command(code: u16, su: u16) -> Vec<u8> {
    let mut c = vec![0x80, 0x01, 0, 0, 0, 0x0c, 0, 0];
    c.extend_from_slice(&code.to_be_bytes());
    c.extend_from_slice(&su.to_be_bytes());
    c
}
fn startup(su: u16) -> Vec<u8> {
    su_command(0x144, su)
}
fn shutdown(su: u16) -> Vec<u8> {
    su_command(0x145, su)
}
const CLEAR: u16 = 0;
const STATE: u16 = 1;

fn rc(response: &[u8]) -> u32 {
    response
        .get(6..10)
        .map_or(u32::MAX, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Two adjacent free ports (P, P+1) on 127.0.0.1, as far as can be told now. Chosen below the
/// ephemeral range (32768+), where the client side of closed connections (TIME_WAIT) piles up.
fn free_port_pair() -> Result<u16> {
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut x = (std::process::id() ^ nanos ^ call.wrapping_mul(0x9e37_79b9)) | 1;
    for _ in 0..200 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let port = 20000 + (x % 12000) as u16;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
            && TcpListener::bind((Ipv4Addr::LOCALHOST, port + 1)).is_ok()
        {
            return Ok(port);
        }
    }
    Err("no free port pair".into())
}

/// A running `ukvtpm serve`; killed on drop.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    /// Starts a server on `dir`, waiting for its ready line.
    fn start(dir: &Path, args: &[&str]) -> Result<Server> {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port_pair()?;
            let log = dir.with_extension(format!("{port}.log"));
            let mut child = Command::new(BIN)
                .args(["serve", "--port", &port.to_string(), "--state"])
                .arg(dir)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(fs::File::create(&log)?)
                .spawn()?;
            let stdout = child.stdout.take().ok_or("no stdout")?;
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                let _ = tx.send(line);
            });
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains("listening on 127.0.0.1") => {
                    return Ok(Server { child, port, log });
                }
                other => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = format!(
                        "{other:?}: {}",
                        fs::read_to_string(&log).unwrap_or_default()
                    );
                    if !last.contains("in use") {
                        break;
                    }
                }
            }
        }
        Err(format!("server did not start: {last}").into())
    }

    fn connect(&self) -> Result<TcpStream> {
        connect(self.port)
    }

    fn ctrl(&self, request: &[u8]) -> Result<Vec<u8>> {
        let mut s = connect(self.port + 1)?;
        s.write_all(request)?;
        let mut reply = vec![0u8; 64];
        let n = s.read(&mut reply)?;
        reply.truncate(n);
        Ok(reply)
    }

    /// One raw command on a new connection, as the `swtpm:` TCTI sends it.
    fn raw(&self, command: &[u8]) -> Result<Vec<u8>> {
        let mut s = self.connect()?;
        s.write_all(command)?;
        read_response(&mut s)
    }

    /// SIGTERM, then waits for the exit.
    fn stop(mut self) -> Result<ExitStatus> {
        signal(&self.child, "TERM")?;
        wait_exit(&mut self.child, Duration::from_secs(10))
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(child: &Child, name: &str) -> Result {
    let status = Command::new("kill")
        .args(["-s", name, &child.id().to_string()])
        .status()?;
    if !status.success() {
        return Err(format!("kill -s {name} failed").into());
    }
    Ok(())
}

fn wait_exit(child: &mut Child, limit: Duration) -> Result<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            return Err("server did not exit".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn connect(port: u16) -> Result<TcpStream> {
    let s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Reads one raw response (header, then the rest).
fn read_response(s: &mut TcpStream) -> Result<Vec<u8>> {
    let mut r = vec![0u8; 10];
    s.read_exact(&mut r)?;
    let size = u32::from_be_bytes([r[2], r[3], r[4], r[5]]) as usize;
    if !(10..=4096).contains(&size) {
        return Err(format!("bad response size {size}").into());
    }
    r.resize(size, 0);
    s.read_exact(&mut r[10..])?;
    Ok(r)
}

fn send_framed(s: &mut TcpStream, locality: u8, command: &[u8]) -> Result {
    let mut f = vec![0, 0, 0, 8, locality];
    f.extend_from_slice(&(command.len() as u32).to_be_bytes());
    f.extend_from_slice(command);
    s.write_all(&f)?;
    Ok(())
}

/// Reads a simulator-framed response: u32 length, response, u32 0.
fn read_framed(s: &mut TcpStream) -> Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    let mut r = vec![0u8; len + 4];
    s.read_exact(&mut r)?;
    let trailer = r.split_off(len);
    if trailer != [0, 0, 0, 0] {
        return Err(format!("bad trailer {trailer:?}").into());
    }
    Ok(r)
}

fn word(v: u32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn ctrl_req(code: u32, body: &[u8]) -> Vec<u8> {
    [&code.to_be_bytes()[..], body].concat()
}

fn state_dir() -> Result<(tempfile::TempDir, PathBuf)> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("state");
    Ok((tmp, dir))
}

#[test]
fn raw_and_framed_commands_on_the_swtpm_data_port() -> Result {
    let (_tmp, dir) = state_dir()?;
    let server = Server::start(&dir, &["--startup-clear=false"])?;
    // Not started yet: the engine says so.
    assert_eq!(rc(&server.raw(&GET_RANDOM)?), 0x100);
    assert_eq!(rc(&server.raw(&startup(CLEAR))?), 0);
    let r = server.raw(&GET_RANDOM)?;
    assert_eq!((rc(&r), r.len()), (0, 20), "{r:02x?}");

    // The simulator prefix on the same port, split over two writes as the mssim TCTI does.
    let mut s = server.connect()?;
    let mut f = vec![0, 0, 0, 8, 0, 0, 0, 0, 12];
    s.write_all(&f)?;
    std::thread::sleep(Duration::from_millis(20));
    s.write_all(&GET_RANDOM)?;
    let r = read_framed(&mut s)?;
    assert_eq!((rc(&r), r.len()), (0, 20));
    // And raw again on the same connection, with the header split in pieces.
    for piece in GET_RANDOM.chunks(5) {
        s.write_all(piece)?;
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(rc(&read_response(&mut s)?), 0);
    // Locality from the prefix.
    f.clear();
    send_framed(&mut s, 3, &GET_RANDOM)?;
    assert_eq!(rc(&read_framed(&mut s)?), 0);
    Ok(())
}

#[test]
fn one_connection_serves_many_commands() -> Result {
    let (_tmp, dir) = state_dir()?;
    let server = Server::start(&dir, &[])?;
    let mut s = server.connect()?;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        s.write_all(&GET_RANDOM)?;
        let r = read_response(&mut s)?;
        assert_eq!(rc(&r), 0);
        seen.insert(r[12..].to_vec());
    }
    assert!(seen.len() > 190, "random bytes repeat");
    Ok(())
}

#[test]
fn a_client_that_reads_late_gets_every_response() -> Result {
    let (_tmp, dir) = state_dir()?;
    let server = Server::start(&dir, &[])?;
    // A small receive buffer makes the server's sends block, so it has to wait for the socket
    // to drain (and stop reading) in the middle of the stream.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.set_recv_buffer_size(4096)?;
    sock.connect(&std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, server.port)).into())?;
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    const N: usize = 3000;
    let mut writer = s.try_clone()?;
    let feed = std::thread::spawn(move || -> std::io::Result<()> {
        let mut f = vec![0, 0, 0, 8, 0, 0, 0, 0, 12];
        f.extend_from_slice(&GET_RANDOM);
        for _ in 0..N {
            writer.write_all(&f)?;
        }
        Ok(())
    });
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..N {
        let r = read_framed(&mut s)?;
        assert_eq!((rc(&r), r.len()), (0, 20), "response {i}");
    }
    feed.join().map_err(|_| "writer panicked")??;
    // The server is still fine for others.
    assert_eq!(rc(&server.raw(&GET_RANDOM)?), 0);
    Ok(())
}

#[test]
fn swtpm_control_channel() -> Result {
    let (_tmp, dir) = state_dir()?;
    let server = Server::start(&dir, &[])?;
    // What the swtpm: TCTI sends once per process.
    assert_eq!(server.ctrl(&[0, 0, 0, 5, 0])?, word(0));
    // CMD_GET_CAPABILITY: result, then the PTM_CAP_* bits.
    let caps = server.ctrl(&word(1))?;
    assert_eq!(caps.len(), 8);
    assert_eq!(&caps[..4], &word(0)[..]);
    let bits = u32::from_be_bytes([caps[4], caps[5], caps[6], caps[7]]);
    for needed in [1, 1 << 1, 1 << 2, 1 << 3, 1 << 5, 1 << 7, 1 << 10, 1 << 13] {
        assert_ne!(
            bits & needed,
            0,
            "capability {needed:#x} missing from {bits:#x}"
        );
    }
    // CMD_SET_LOCALITY out of range, CMD_GET_TPMESTABLISHED, CMD_RESET_TPMESTABLISHED.
    assert_eq!(server.ctrl(&ctrl_req(5, &[5]))?, word(0x3d));
    assert_eq!(server.ctrl(&word(4))?, [0; 8]);
    assert_eq!(server.ctrl(&ctrl_req(11, &[0]))?, word(0x3d));
    assert_eq!(server.ctrl(&ctrl_req(11, &[3]))?, word(0));
    // CMD_SET_BUFFERSIZE query; CMD_CANCEL_TPM_CMD; CMD_GET_CONFIG; unknown.
    assert_eq!(
        server.ctrl(&ctrl_req(17, &[0; 4]))?,
        [word(0), word(4096), word(4096), word(4096)].concat()
    );
    assert_eq!(server.ctrl(&word(9))?, word(0));
    assert_eq!(server.ctrl(&word(15))?, [0; 8]);
    assert_eq!(server.ctrl(&word(0x63))?, word(0x0a));

    // CMD_INIT: _TPM_Init, the client must send Startup.
    assert_eq!(rc(&server.raw(&GET_RANDOM)?), 0);
    assert_eq!(server.ctrl(&ctrl_req(2, &[0; 4]))?, word(0));
    assert_eq!(rc(&server.raw(&GET_RANDOM)?), 0x100);
    assert_eq!(rc(&server.raw(&startup(CLEAR))?), 0);
    assert_eq!(rc(&server.raw(&GET_RANDOM)?), 0);
    // CMD_STOP: TPM_RC_FAILURE until CMD_INIT; the established bit is unavailable.
    assert_eq!(server.ctrl(&word(14))?, word(0));
    assert_eq!(rc(&server.raw(&GET_RANDOM)?), 0x101);
    assert_eq!(server.ctrl(&word(4))?, word(0x0a));
    assert_eq!(server.ctrl(&ctrl_req(2, &[0; 4]))?, word(0));
    assert_eq!(rc(&server.raw(&startup(CLEAR))?), 0);
    // Several control requests on one connection (as QEMU sends them).
    let mut c = connect(server.port + 1)?;
    for _ in 0..3 {
        c.write_all(&[0, 0, 0, 5, 0])?;
        let mut r = [0u8; 4];
        c.read_exact(&mut r)?;
        assert_eq!(r, [0; 4]);
    }
    // CMD_SHUTDOWN: answered, then the server exits cleanly.
    assert_eq!(server.ctrl(&word(3))?, word(0));
    let mut server = server;
    let status = wait_exit(&mut server.child, Duration::from_secs(10))?;
    assert!(status.success(), "{status}: {}", server.log());
    Ok(())
}

#[test]
fn mssim_protocol() -> Result {
    let (_tmp, dir) = state_dir()?;
    let server = Server::start(&dir, &["--protocol", "mssim"])?;
    // What the mssim TCTI sends on the platform port: POWER_ON, NV_ON.
    let mut p = connect(server.port + 1)?;
    for signal in [1u32, 11] {
        p.write_all(&word(signal))?;
        let mut r = [0u8; 4];
        p.read_exact(&mut r)?;
        assert_eq!(r, [0; 4], "signal {signal}");
    }
    // POWER_ON while on kept the TPM started (tools do not send Startup).
    let mut s = server.connect()?;
    send_framed(&mut s, 0, &GET_RANDOM)?;
    assert_eq!(rc(&read_framed(&mut s)?), 0);
    // Handshake: version 1, flags, 0.
    s.write_all(&[word(15), word(1)].concat())?;
    let mut r = [0u8; 12];
    s.read_exact(&mut r)?;
    assert_eq!(r[..4], word(1)[..]);
    assert_eq!(r[8..], [0; 4]);
    // Reset, then Startup is needed; power off: empty responses.
    p.write_all(&word(17))?;
    p.read_exact(&mut [0u8; 4])?;
    send_framed(&mut s, 0, &GET_RANDOM)?;
    assert_eq!(rc(&read_framed(&mut s)?), 0x100);
    send_framed(&mut s, 0, &startup(CLEAR))?;
    assert_eq!(rc(&read_framed(&mut s)?), 0);
    p.write_all(&word(2))?;
    p.read_exact(&mut [0u8; 4])?;
    send_framed(&mut s, 0, &GET_RANDOM)?;
    assert_eq!(read_framed(&mut s)?, Vec::<u8>::new());
    p.write_all(&word(1))?;
    p.read_exact(&mut [0u8; 4])?;
    // NV off: a state change (Startup commits) fails with TPM_RC_NV_UNAVAILABLE.
    p.write_all(&word(12))?;
    p.read_exact(&mut [0u8; 4])?;
    send_framed(&mut s, 0, &startup(CLEAR))?;
    assert_eq!(rc(&read_framed(&mut s)?), 0x923);
    p.write_all(&word(11))?;
    p.read_exact(&mut [0u8; 4])?;
    p.write_all(&word(17))?;
    p.read_exact(&mut [0u8; 4])?;
    send_framed(&mut s, 0, &startup(CLEAR))?;
    assert_eq!(rc(&read_framed(&mut s)?), 0);
    // SESSION_END on both ports: closed without a reply, the server goes on.
    s.write_all(&word(20))?;
    assert_eq!(s.read(&mut [0u8; 4])?, 0);
    p.write_all(&word(20))?;
    assert_eq!(p.read(&mut [0u8; 4])?, 0);
    let mut s = server.connect()?;
    send_framed(&mut s, 0, &GET_RANDOM)?;
    assert_eq!(rc(&read_framed(&mut s)?), 0);
    // TPM_STOP ends the simulator.
    s.write_all(&word(21))?;
    let mut server = server;
    let status = wait_exit(&mut server.child, Duration::from_secs(10))?;
    assert!(status.success(), "{status}");
    Ok(())
}

#[test]
fn saved_state_survives_restart_and_kill() -> Result {
    let (_tmp, dir) = state_dir()?;
    let no_startup = ["--startup-clear=false"];
    let server = Server::start(&dir, &no_startup)?;
    // A new TPM has no saved state to resume.
    assert_eq!(rc(&server.raw(&startup(STATE))?), 0x1c4);
    assert_eq!(rc(&server.raw(&startup(CLEAR))?), 0);
    assert_eq!(rc(&server.raw(&shutdown(STATE))?), 0);
    assert!(server.stop()?.success());

    let server = Server::start(&dir, &no_startup)?;
    assert_eq!(rc(&server.raw(&startup(STATE))?), 0, "resume after restart");
    // Acknowledged means durable: SIGKILL right after the response.
    assert_eq!(rc(&server.raw(&shutdown(STATE))?), 0);
    let mut server = server;
    server.child.kill()?;
    server.child.wait()?;
    drop(server);
    let server = Server::start(&dir, &no_startup)?;
    assert_eq!(rc(&server.raw(&startup(STATE))?), 0, "resume after kill -9");
    Ok(())
}

#[test]
fn owner_password_survives_restart_and_kill() -> Result {
    let (_tmp, dir) = state_dir()?;
    let server = Server::start(&dir, &[])?;
    let tcti = |server: &Server| format!("swtpm:host=127.0.0.1,port={}", server.port);
    tool_ok(&tcti(&server), "tpm2_changeauth", &["-c", "owner", "first"])?;
    assert!(server.stop()?.success());

    let server = Server::start(&dir, &[])?;
    let refused = tool(&tcti(&server), "tpm2_changeauth", &["-c", "owner", "x"])?;
    assert!(
        !refused.status.success(),
        "the old (empty) owner password still works"
    );
    tool_ok(
        &tcti(&server),
        "tpm2_changeauth",
        &["-c", "owner", "-p", "first", "second"],
    )?;
    // Acknowledged means durable: kill -9 right after the tool returns.
    let mut server = server;
    server.child.kill()?;
    server.child.wait()?;
    drop(server);

    let server = Server::start(&dir, &["--protocol", "mssim"])?;
    let tcti = format!("mssim:host=127.0.0.1,port={}", server.port);
    let refused = tool(
        &tcti,
        "tpm2_changeauth",
        &["-c", "owner", "-p", "first", "x"],
    )?;
    assert!(
        !refused.status.success(),
        "the replaced owner password still works"
    );
    tool_ok(
        &tcti,
        "tpm2_changeauth",
        &["-c", "owner", "-p", "second", ""],
    )?;
    Ok(())
}

#[test]
fn sigterm_sends_the_orderly_shutdown_swtpm_sends() -> Result {
    let (_tmp, dir) = state_dir()?;
    let server = Server::start(&dir, &[])?;
    assert_eq!(rc(&server.raw(&GET_RANDOM)?), 0);
    let status = server.stop()?;
    assert!(status.success(), "{status}");
    let server = Server::start(&dir, &["--startup-clear=false"])?;
    assert_eq!(rc(&server.raw(&startup(STATE))?), 0);
    Ok(())
}

#[test]
fn corrupt_state_file_is_refused_and_left_untouched() -> Result {
    let (_tmp, dir) = state_dir()?;
    fs::create_dir_all(&dir)?;
    let file = dir.join("tpm-state.bin");
    for bytes in [&b"not a state"[..], &[][..]] {
        fs::write(&file, bytes)?;
        let out = Command::new(BIN)
            .args(["serve", "--port", &free_port_pair()?.to_string(), "--state"])
            .arg(&dir)
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(&file.display().to_string()), "{stderr}");
        assert!(stderr.contains("left untouched"), "{stderr}");
        assert_eq!(fs::read(&file)?, bytes, "state file changed");
    }
    // A truncated copy of a real state is refused too.
    fs::remove_file(&file)?;
    Server::start(&dir, &[])?.stop()?;
    let good = fs::read(&file)?;
    let cut = &good[..good.len() / 2];
    fs::write(&file, cut)?;
    let out = Command::new(BIN)
        .args(["serve", "--port", &free_port_pair()?.to_string(), "--state"])
        .arg(&dir)
        .output()?;
    assert!(!out.status.success());
    assert_eq!(fs::read(&file)?, cut);
    Ok(())
}

#[test]
fn unusable_state_dir_is_refused() -> Result {
    let tmp = tempfile::tempdir()?;
    let file = tmp.path().join("a-file");
    fs::write(&file, b"x")?;
    for dir in [file.clone(), file.join("sub")] {
        let out = Command::new(BIN)
            .args(["serve", "--port", &free_port_pair()?.to_string(), "--state"])
            .arg(&dir)
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("state directory"), "{stderr}");
    }

    // Not writable: read-only mode, or for root (which ignores it) the immutable attribute.
    let ro = tmp.path().join("ro");
    fs::create_dir(&ro)?;
    let uid = Command::new("id").arg("-u").output()?;
    let root = String::from_utf8_lossy(&uid.stdout).trim() == "0";
    if root {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(&ro)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("chattr +i unavailable: skipping the read-only directory case as root");
            return Ok(());
        }
    } else {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555))?;
    }
    let out = Command::new(BIN)
        .args(["serve", "--port", &free_port_pair()?.to_string(), "--state"])
        .arg(&ro)
        .output();
    if root {
        let _ = Command::new("chattr").arg("-i").arg(&ro).status();
    }
    let out = out?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("is not writable"), "{stderr}");
    assert!(!ro.join("tpm-state.bin").exists());
    Ok(())
}

#[test]
fn port_in_use_and_locked_state_are_refused() -> Result {
    let (_tmp, dir) = state_dir()?;
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let port = taken.local_addr()?.port();
    let out = Command::new(BIN)
        .args(["serve", "--port", &port.to_string(), "--state"])
        .arg(&dir)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("port {port} on 127.0.0.1 is in use")),
        "{stderr}"
    );
    assert!(
        !dir.join("tpm-state.bin").exists(),
        "no state made for a server that never ran"
    );

    let server = Server::start(&dir, &[])?;
    let out = Command::new(BIN)
        .args(["serve", "--port", &free_port_pair()?.to_string(), "--state"])
        .arg(&dir)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("in use by another ukvtpm server"),
        "{stderr}"
    );
    assert_eq!(rc(&server.raw(&GET_RANDOM)?), 0);
    Ok(())
}

#[test]
fn misbehaving_clients_do_not_wedge_the_server() -> Result {
    let (_tmp, dir) = state_dir()?;
    let server = Server::start(&dir, &[])?;
    // Half a command, then gone; half a command and then silence (kept open).
    {
        let mut s = server.connect()?;
        s.write_all(&GET_RANDOM[..7])?;
    }
    let mut short_header = server.connect()?;
    short_header.write_all(&GET_RANDOM[..7])?;
    // A header that promises more bytes than ever come.
    let mut stalled = server.connect()?;
    let mut lie = GET_RANDOM;
    lie[5] = 20;
    stalled.write_all(&lie)?;
    let mut stalled_ctrl = connect(server.port + 1)?;
    stalled_ctrl.write_all(&[0, 0])?;
    // A command whose client leaves before reading the response.
    {
        let mut s = server.connect()?;
        s.write_all(&GET_RANDOM)?;
        s.shutdown(Shutdown::Both)?;
    }
    // A client that never sends anything (the swtpm TCTI's first connection).
    let _idle = server.connect()?;
    let t = Instant::now();
    assert_eq!(rc(&server.raw(&GET_RANDOM)?), 0);
    assert!(
        t.elapsed() < Duration::from_millis(400),
        "served late: {:?}",
        t.elapsed()
    );
    assert_eq!(server.ctrl(&[0, 0, 0, 5, 0])?, word(0));
    // A client that half-closes after its command still gets the answer, at once even if the
    // command is shorter than its size field says.
    let mut s = server.connect()?;
    s.write_all(&GET_RANDOM)?;
    s.shutdown(Shutdown::Write)?;
    assert_eq!(rc(&read_response(&mut s)?), 0);
    let mut s = server.connect()?;
    let mut short = GET_RANDOM;
    short[5] = 30;
    s.write_all(&short)?;
    s.shutdown(Shutdown::Write)?;
    let t = Instant::now();
    assert_eq!(rc(&read_response(&mut s)?), 0x142);
    assert!(
        t.elapsed() < Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    // The stalled control request is dropped after its deadline.
    let mut buf = [0u8; 4];
    assert_eq!(stalled_ctrl.read(&mut buf)?, 0);
    // Many connections at once, all served.
    let conns: Vec<_> = (0..40).map(|_| server.connect()).collect::<Result<_>>()?;
    for mut c in conns {
        c.write_all(&GET_RANDOM)?;
        assert_eq!(rc(&read_response(&mut c)?), 0);
    }
    // The stalled command is taken as it is once the client has been quiet for a while; the
    // engine refuses it as swtpm would at once. A partial header just waits, as in swtpm.
    assert_eq!(rc(&read_response(&mut stalled)?), 0x142);
    short_header.set_read_timeout(Some(Duration::from_millis(700)))?;
    assert!(
        short_header.read(&mut [0u8; 1]).is_err(),
        "no answer to a partial header"
    );
    Ok(())
}

#[test]
fn oversized_and_malformed_commands_get_error_responses() -> Result {
    let (_tmp, dir) = state_dir()?;
    let server = Server::start(&dir, &[])?;
    let mut s = server.connect()?;
    let mut big = vec![0x80, 0x01, 0, 0, 0x13, 0x88, 0, 0, 0x01, 0x7b];
    big.resize(5000, 0xaa);
    s.write_all(&big)?;
    assert_eq!(rc(&read_response(&mut s)?), 0x142);
    // The rest of the big command was skipped: the connection still works.
    s.write_all(&GET_RANDOM)?;
    assert_eq!(rc(&read_response(&mut s)?), 0);
    // Framed, too large.
    let mut f = vec![0, 0, 0, 8, 0];
    f.extend_from_slice(&5000u32.to_be_bytes());
    f.extend_from_slice(&big);
    s.write_all(&f)?;
    assert_eq!(rc(&read_framed(&mut s)?), 0x142);
    send_framed(&mut s, 0, &GET_RANDOM)?;
    assert_eq!(rc(&read_framed(&mut s)?), 0);
    // A size field that is smaller than the bytes sent, or two commands in one write.
    let mut lie = GET_RANDOM;
    lie[5] = 10;
    assert_eq!(rc(&server.raw(&lie)?), 0x142);
    assert_eq!(rc(&server.raw(&[GET_RANDOM, GET_RANDOM].concat())?), 0x142);
    // A size field larger than the bytes sent: answered once the client goes quiet.
    lie[5] = 20;
    assert_eq!(rc(&server.raw(&lie)?), 0x142);
    // Random garbage of every length does not kill the server.
    let mut seed = 0x1234_5678u32;
    for len in 10..200 {
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        let mut c = server.connect()?;
        c.write_all(&junk)?;
        drop(c);
    }
    assert_eq!(rc(&server.raw(&GET_RANDOM)?), 0);
    Ok(())
}

/// Runs a tpm2-tools program against `tcti`; a missing program is an error with the install
/// command, not a skip.
fn tool(tcti: &str, program: &str, args: &[&str]) -> Result<std::process::Output> {
    match Command::new(program)
        .args(args)
        .env("TPM2TOOLS_TCTI", tcti)
        .output()
    {
        Ok(out) => Ok(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "{program} is missing: apt-get install tpm2-tools libtss2-tcti-swtpm0 \
             libtss2-tcti-mssim0"
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}

fn tool_ok(tcti: &str, program: &str, args: &[&str]) -> Result<String> {
    let out = tool(tcti, program, args)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("{program} {args:?} via {tcti} failed: {stderr}").into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What a user does first with a TPM that was not started: start it, test it, read the result,
/// get random bytes, shut it down.
fn tools_session(tcti: &str) -> Result {
    tool_ok(tcti, "tpm2_startup", &["-c"])?;
    // Already started: tpm2_startup tolerates TPM_RC_INITIALIZE.
    tool_ok(tcti, "tpm2_startup", &["-c"])?;
    tool_ok(tcti, "tpm2_selftest", &["-f"])?;
    let result = tool_ok(tcti, "tpm2_gettestresult", &[])?;
    assert!(result.contains("success"), "{result}");
    for _ in 0..2 {
        let random = tool_ok(tcti, "tpm2_getrandom", &["--hex", "8"])?;
        assert_eq!(random.trim().len(), 16, "{random}");
    }
    let pcrs = tool_ok(tcti, "tpm2_pcrread", &["sha256:0,1"])?;
    assert!(pcrs.contains("0x0000000000000000"), "{pcrs}");
    tool_ok(tcti, "tpm2_shutdown", &["-c"])?;
    Ok(())
}

#[test]
fn tpm2_tools_through_the_swtpm_tcti() -> Result {
    let (_tmp, dir) = state_dir()?;
    let server = Server::start(&dir, &["--startup-clear=false"])?;
    tools_session(&format!("swtpm:host=127.0.0.1,port={}", server.port))
}

#[test]
fn tpm2_tools_through_the_mssim_tcti() -> Result {
    let (_tmp, dir) = state_dir()?;
    let server = Server::start(&dir, &["--protocol", "mssim", "--startup-clear=false"])?;
    tools_session(&format!("mssim:host=127.0.0.1,port={}", server.port))
}
