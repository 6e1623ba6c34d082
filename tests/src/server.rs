//! A TPM server under test: swtpm (the reference), `ukvtpm serve`, or the unikernel in QEMU, on
//! its own free port pair with its own state directory. Dropping a [`Server`] kills it; the log
//! (stdout and stderr, or the guest's serial output) is kept so a failing test can show it (see
//! [`with_logs`]).

use std::cell::RefCell;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::raw::Framing;
use crate::require;
use crate::tpm2::Tpm2;
use crate::unikernel;

/// Wire protocol `ukvtpm serve` is asked to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Raw TPM commands on P, swtpm control channel on P+1.
    Swtpm,
    /// TCG simulator framing on P, platform signals on P+1.
    Mssim,
}

impl Protocol {
    /// The `--protocol` argument.
    pub fn arg(self) -> &'static str {
        match self {
            Protocol::Swtpm => "swtpm",
            Protocol::Mssim => "mssim",
        }
    }
}

/// Which server program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `swtpm socket --tpm2` (the reference).
    Swtpm,
    /// `ukvtpm serve --protocol ...`.
    Ukvtpm(Protocol),
    /// The unikernel image in QEMU (swtpm framing; TPM state in guest RAM only).
    Unikernel,
}

impl Kind {
    /// Short name for messages and tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Swtpm => "swtpm",
            Kind::Ukvtpm(Protocol::Swtpm) => "ukvtpm",
            Kind::Ukvtpm(Protocol::Mssim) => "ukvtpm(mssim)",
            Kind::Unikernel => "unikernel",
        }
    }

    /// The framing its data port speaks.
    pub fn framing(self) -> Framing {
        match self {
            Kind::Swtpm | Kind::Ukvtpm(Protocol::Swtpm) | Kind::Unikernel => Framing::Plain,
            Kind::Ukvtpm(Protocol::Mssim) => Framing::Mssim,
        }
    }
}

/// A server plus the TCTI the tools use to reach it: what one instantiation of a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// swtpm through the `swtpm:` TCTI (swtpm does not work with `mssim:`, see swtpm-protocol.md).
    Swtpm,
    /// `ukvtpm serve` through the `swtpm:` TCTI.
    Ukvtpm,
    /// `ukvtpm serve --protocol mssim` through the `mssim:` TCTI.
    UkvtpmMssim,
    /// The unikernel in QEMU (a fresh guest per server) through the `swtpm:` TCTI.
    Unikernel,
}

impl Target {
    /// The server program and protocol.
    pub fn kind(self) -> Kind {
        match self {
            Target::Swtpm => Kind::Swtpm,
            Target::Ukvtpm => Kind::Ukvtpm(Protocol::Swtpm),
            Target::UkvtpmMssim => Kind::Ukvtpm(Protocol::Mssim),
            Target::Unikernel => Kind::Unikernel,
        }
    }

    /// The tpm2-tss TCTI module name.
    pub fn tcti(self) -> &'static str {
        match self {
            Target::Swtpm | Target::Ukvtpm | Target::Unikernel => "swtpm",
            Target::UkvtpmMssim => "mssim",
        }
    }

    /// True for the reference implementation.
    pub fn is_reference(self) -> bool {
        self == Target::Swtpm
    }

    /// Starts a fresh server for this target (checks the tools first).
    pub fn start(self) -> Result<Server> {
        require::tcti(self.tcti())?;
        require::tool("tpm2_getcap")?;
        Server::start(self.kind(), self.tcti())
    }
}

/// The `ukvtpm` binary: `$UKVTPM_BIN`, or built once per test process with the same profile and
/// target directory as the running test (`cargo build -p ukvtpm-cli --bin ukvtpm`).
pub fn ukvtpm_bin() -> Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| find_or_build_ukvtpm().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn find_or_build_ukvtpm() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("UKVTPM_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("UKVTPM_BIN={} does not exist", bin.display());
        }
        return Ok(bin);
    }
    // .../target/<profile>/deps/<test-exe>
    let exe = std::env::current_exe().context("locating the test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable is not in target/<profile>/deps")?;
    let target_dir = profile_dir.parent().context("no target dir")?;
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("profile dir name")?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--quiet", "-p", "ukvtpm-cli", "--bin", "ukvtpm"])
        .current_dir(workspace)
        .env("CARGO_TARGET_DIR", target_dir);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("building ukvtpm failed ({status}): {cmd:?}");
    }
    let bin = profile_dir.join("ukvtpm");
    if !bin.is_file() {
        bail!("cargo built ukvtpm but {} is missing", bin.display());
    }
    Ok(bin)
}

/// A running (or stopped) server with its work directory: `state/` (the TPM state) and
/// `server.log` (stdout and stderr of every run, appended).
#[derive(Debug)]
pub struct Server {
    kind: Kind,
    tcti: &'static str,
    bin: PathBuf,
    work: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    /// The QEMU process of a [`Kind::Unikernel`] server (`child` stays `None`).
    backend: Option<ukvtpm_qemu::backend::Backend>,
    spawned_at: Instant,
}

const READY_TIMEOUT: Duration = Duration::from_secs(15);

impl Server {
    /// Starts `kind` with a fresh state directory; `tcti` is the TCTI module the tools will use.
    pub fn start(kind: Kind, tcti: &'static str) -> Result<Server> {
        let bin = match kind {
            Kind::Swtpm => require::tool("swtpm")?,
            Kind::Ukvtpm(_) => ukvtpm_bin()?,
            // For the unikernel `bin` is the firmware image QEMU boots.
            Kind::Unikernel => unikernel::image()?,
        };
        Self::start_with(kind, tcti, bin)
    }

    /// Like [`Server::start`] with an explicit binary (the benchmark uses a release build).
    pub fn start_with(kind: Kind, tcti: &'static str, bin: PathBuf) -> Result<Server> {
        let work = tempfile::Builder::new()
            .prefix(&format!(
                "ukvtpm-test-{}-",
                kind.name().replace(['(', ')'], "-")
            ))
            .tempdir()
            .context("creating a temp dir")?;
        std::fs::create_dir(work.path().join("state")).context("creating the state dir")?;
        let mut server = Server {
            kind,
            tcti,
            bin,
            work,
            port: 0,
            child: None,
            backend: None,
            spawned_at: Instant::now(),
        };
        server.spawn()?;
        Ok(server)
    }

    /// The server program and protocol.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The TPM command port P (the control port is P+1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Process id of the running server.
    pub fn pid(&self) -> Option<u32> {
        match &self.backend {
            Some(backend) => backend.pid(),
            None => self.child.as_ref().map(Child::id),
        }
    }

    /// When the current process was spawned (for start-to-first-response measurements).
    pub fn spawned_at(&self) -> Instant {
        self.spawned_at
    }

    /// The TPM state directory (kept across [`Server::restart`]).
    pub fn state_dir(&self) -> PathBuf {
        self.work.path().join("state")
    }

    /// A scratch path next to the state, for files the tools read or write.
    pub fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// Writes `data` to the scratch file `name` and returns its path as a string, ready to
    /// pass to a tool.
    pub fn write_file(&self, name: &str, data: &[u8]) -> Result<String> {
        let path = self.path(name);
        std::fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
        Ok(path.to_string_lossy().into_owned())
    }

    /// The TCTI configuration string, e.g. `swtpm:host=127.0.0.1,port=2321`.
    pub fn tcti(&self) -> String {
        format!("{}:host=127.0.0.1,port={}", self.tcti, self.port)
    }

    /// A tpm2-tools runner pointed at this server.
    pub fn tpm2(&self) -> Tpm2 {
        Tpm2::new(self.tcti(), self.work.path().to_path_buf(), self.log_path())
    }

    /// Everything the server printed so far.
    pub fn log(&self) -> String {
        if let Some(backend) = &self.backend {
            // Serial lines since the last look go to the log file first.
            let lines = backend.lines().drain();
            if !lines.is_empty()
                && let Ok(mut f) = OpenOptions::new().append(true).open(self.log_path())
            {
                for line in lines {
                    let _ = writeln!(f, "{}", line.trim_end());
                }
            }
        }
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.work.path().join("server.log")
    }

    fn spawn(&mut self) -> Result<()> {
        if self.kind == Kind::Unikernel {
            return self.spawn_unikernel();
        }
        let mut last_error = None;
        for _attempt in 0..8 {
            let port = free_port_pair()?;
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_path())
                .context("opening the server log")?;
            let mut cmd = command(self.kind, &self.bin, port, &self.state_dir());
            cmd.stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            self.spawned_at = Instant::now();
            let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
            match wait_listening(&mut child, port, READY_TIMEOUT) {
                Ok(()) => {
                    self.port = port;
                    self.child = Some(child);
                    return Ok(());
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    // Someone else grabbed the port between our check and the spawn: try again.
                    let collided = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err()
                        || TcpListener::bind((Ipv4Addr::LOCALHOST, port + 1)).is_err();
                    if !collided {
                        bail!(
                            "{} did not start: {e:#}\n  command: {cmd:?}\n--- server log ---\n{}",
                            self.kind.name(),
                            self.log()
                        );
                    }
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("no free port pair")))
            .context("could not find a free port pair after 8 attempts")
    }

    /// Boots a fresh guest; retried on new ports when QEMU could not set up its forwards (the
    /// port was taken between our check and QEMU's bind).
    fn spawn_unikernel(&mut self) -> Result<()> {
        let mut last_error = None;
        for _attempt in 0..8 {
            let port = free_port_pair()?;
            self.spawned_at = Instant::now();
            match unikernel::boot(port) {
                Ok(backend) => {
                    let mut log = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(self.log_path())
                        .context("opening the server log")?;
                    writeln!(
                        log,
                        "unikernel: {} on 127.0.0.1:{port}, ready {} ms after exec",
                        backend.accel,
                        backend.spawn_to_ready.as_millis()
                    )?;
                    for line in &backend.boot_log {
                        writeln!(log, "{line}")?;
                    }
                    self.port = port;
                    self.backend = Some(backend);
                    return Ok(());
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    if !msg.contains("forward") {
                        return Err(e.context("the unikernel did not start"));
                    }
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("no free port pair")))
            .context("could not boot the unikernel on a free port pair after 8 attempts")
    }

    /// Stops the server gracefully (SIGTERM, then SIGKILL after 5 s) and keeps its state.
    pub fn stop(&mut self) -> Result<Option<ExitStatus>> {
        if let Some(backend) = self.backend.take() {
            self.log();
            return Ok(Some(backend.stop(Duration::from_secs(5))?));
        }
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        signal(&child, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Ok(Some(child.wait()?));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills the server with SIGKILL (a crash): only what it already committed survives.
    pub fn kill(&mut self) -> Result<()> {
        if self.backend.is_some() {
            self.log();
            // Dropping the backend kills QEMU and reaps it.
            self.backend = None;
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child.wait()?;
        }
        Ok(())
    }

    /// Stops and starts the server again on the same state (new ports if the old ones are taken).
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.spawn()
    }

    /// Starts the server again after [`Server::stop`] or [`Server::kill`].
    pub fn start_again(&mut self) -> Result<()> {
        if self.child.is_some() || self.backend.is_some() {
            bail!("server is still running");
        }
        self.spawn()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.backend.is_some() {
            // A clean QEMU shutdown (SIGTERM), as `ukvtpm run-backend` users get.
            let _ = self.stop();
        }
        let _ = self.kill();
        let log = self.log();
        if std::thread::panicking() {
            eprintln!("--- {} log ({}) ---\n{log}", self.kind.name(), self.tcti());
        } else {
            LOGS.with(|logs| {
                logs.borrow_mut()
                    .push(format!("--- {} log ---\n{log}", self.kind.name()))
            });
        }
    }
}

thread_local! {
    static LOGS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Runs a test body; if it fails, the logs of the servers it dropped are attached to the error.
pub fn with_logs<T>(body: impl FnOnce() -> Result<T>) -> Result<T> {
    LOGS.with(|logs| logs.borrow_mut().clear());
    let result = body();
    let logs = LOGS.with(|logs| std::mem::take(&mut *logs.borrow_mut()));
    result.map_err(|e| {
        let logs: String = logs.into_iter().filter(|l| !l.ends_with("---\n")).collect();
        if logs.is_empty() {
            e
        } else {
            e.context(format!("test failed; server logs follow\n{logs}"))
        }
    })
}

fn signal(child: &Child, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own unreaped child,
        // so it cannot have been recycled for another process.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// The command line that starts `kind` (binary `bin`) on 127.0.0.1:`port` (control channel on
/// `port` + 1) with its state in `state`.
///
/// The server gets SIGKILL when the thread that spawned it dies, so a test process killed by a
/// timeout does not leave servers behind.
///
/// # Panics
/// For [`Kind::Unikernel`], which QEMU runs (see [`crate::unikernel::boot`]).
pub fn command(kind: Kind, bin: &Path, port: u16, state: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(bin);
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe, allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    match kind {
        Kind::Swtpm => {
            cmd.args(["socket", "--tpm2", "--server"])
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .arg("--tpmstate")
                .arg(format!("dir={}", state.display()))
                .args(["--flags", "not-need-init,startup-clear"]);
        }
        Kind::Unikernel => {
            panic!("the unikernel is booted through ukvtpm-qemu, not a server command line")
        }
        Kind::Ukvtpm(protocol) => {
            cmd.arg("serve")
                .arg("--port")
                .arg(port.to_string())
                .arg("--state")
                .arg(state)
                .args(["--protocol", protocol.arg()]);
        }
    }
    cmd
}

/// A port P such that P and P+1 are both free on 127.0.0.1 right now.
pub fn free_port_pair() -> Result<u16> {
    for _ in 0..200 {
        let first = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding port 0")?;
        let port = first.local_addr()?.port();
        if port == u16::MAX {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port + 1)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port pair on 127.0.0.1 after 200 tries")
}

/// Waits until `child` itself listens on 127.0.0.1:`port` and `port`+1. Checking socket
/// ownership (not just that a connect succeeds) rules out talking to another test's server.
fn wait_listening(child: &mut Child, port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("server exited before listening ({status})");
        }
        let owned = owned_socket_inodes(child.id());
        let listening = |p: u16| {
            listening_inodes(p)
                .iter()
                .any(|inode| owned.contains(inode))
        };
        if listening(port) && listening(port + 1) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "server did not listen on 127.0.0.1:{port} and :{} within {timeout:?}",
                port + 1
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Socket inodes open in process `pid`.
fn owned_socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Inodes of TCP sockets in LISTEN state on `port` (any IPv4 address), from /proc/net/tcp.
fn listening_inodes(port: u16) -> Vec<u64> {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return Vec::new();
    };
    let want = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            (local.ends_with(&want) && *state == "0A").then(|| inode.parse().ok())?
        })
        .collect()
}
