//! One unikernel backend in QEMU: find the image, choose the accelerator, start QEMU, wait for
//! the kernel's ready line, stop it cleanly. [`run`] is `ukvtpm run-backend`.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::accel;
use crate::args::{Accel, DEFAULT_QEMU, QemuCommand};
use crate::serial::{Ready, SerialLines, WaitError};

/// Guest port of the TPM data channel.
pub const GUEST_TPM_PORT: u16 = 2321;
/// Guest port of the swtpm control channel (`CMD_SET_LOCALITY`, for the `swtpm:` TCTI).
pub const GUEST_CONTROL_PORT: u16 = 2322;
/// File name of the image `cargo xtask image` writes into the target directory.
pub const IMAGE_NAME: &str = "ukvtpm.img";
/// Environment variable naming the image explicitly.
pub const IMAGE_ENV: &str = "UKVTPM_IMAGE";

/// Errors of the backend launcher.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No image where we looked.
    #[error("no unikernel image found (looked at: {}); build it with `cargo xtask image` or pass --image", .searched.join(", "))]
    ImageNotFound {
        /// Paths tried, in order.
        searched: Vec<String>,
    },
    /// QEMU could not be started.
    #[error("cannot start {binary}: {source} (is qemu-system-x86 installed?)")]
    Spawn {
        /// The binary.
        binary: String,
        /// The OS error.
        source: io::Error,
    },
    /// QEMU ran but the kernel did not become ready in time.
    #[error("backend not ready after {timeout:?}; last serial lines:\n{log}")]
    NotReady {
        /// How long we waited.
        timeout: Duration,
        /// Tail of the serial log.
        log: String,
    },
    /// QEMU exited before the kernel was ready.
    #[error("QEMU exited before the backend was ready ({status}); serial/QEMU output:\n{log}")]
    Exited {
        /// Exit status (or "unknown").
        status: String,
        /// Serial log.
        log: String,
    },
    /// The kernel reported a fatal error (FATAL, EXCEPTION or PANIC line) and halted.
    #[error("the backend kernel failed during boot:\n{log}")]
    GuestFailed {
        /// Serial log up to the failure.
        log: String,
    },
    /// Waiting for or signalling QEMU failed.
    #[error("managing the QEMU process: {0}")]
    Io(#[from] io::Error),
}

/// `ukvtpm run-backend` options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Host port forwarded to the guest's TPM data port (127.0.0.1 only); `port + 1` goes to
    /// its control port, as swtpm lays them out (the `swtpm:` TCTI needs both).
    pub port: u16,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// Force an accelerator; `None` probes KVM and falls back to TCG.
    pub accel: Option<Accel>,
    /// The image; `None` searches (see [`find_image`]).
    pub image: Option<PathBuf>,
    /// QEMU binary.
    pub qemu: PathBuf,
    /// How long the kernel gets to print its ready line.
    pub ready_timeout: Duration,
    /// How long a KVM probe boot gets.
    pub probe_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            port: GUEST_TPM_PORT,
            memory_mib: 16,
            accel: None,
            image: None,
            qemu: PathBuf::from(DEFAULT_QEMU),
            ready_timeout: Duration::from_secs(30),
            probe_timeout: accel::PROBE_TIMEOUT,
        }
    }
}

/// Finds the image: `explicit`, else `$UKVTPM_IMAGE`, else `ukvtpm.img` in `$CARGO_TARGET_DIR`,
/// `./target`, and the directories holding the running executable and its parent (so an
/// installed `target/release/ukvtpm` finds `target/ukvtpm.img`).
///
/// # Errors
/// [`Error::ImageNotFound`] listing every place tried.
pub fn find_image(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = explicit {
        candidates.push(p.to_path_buf());
    } else {
        if let Some(p) = std::env::var_os(IMAGE_ENV) {
            candidates.push(PathBuf::from(p));
        }
        if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
            candidates.push(PathBuf::from(dir).join(IMAGE_NAME));
        }
        candidates.push(PathBuf::from("target").join(IMAGE_NAME));
        if let Ok(exe) = std::env::current_exe() {
            for dir in exe.ancestors().skip(1).take(3) {
                candidates.push(dir.join(IMAGE_NAME));
            }
        }
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| Error::ImageNotFound {
            searched: candidates.iter().map(|p| p.display().to_string()).collect(),
        })
}

/// A running backend whose kernel has printed its ready line. Dropping it kills QEMU; call
/// [`Backend::stop`] for a clean shutdown.
#[derive(Debug)]
pub struct Backend {
    child: Option<Child>,
    lines: SerialLines,
    /// The accelerator in use.
    pub accel: Accel,
    /// The parsed ready line.
    pub ready: Ready,
    /// Host time from spawning QEMU to reading the ready line.
    pub spawn_to_ready: Duration,
    /// When QEMU was spawned.
    pub spawned_at: Instant,
    /// Serial lines up to and including the ready line.
    pub boot_log: Vec<String>,
}

fn tail(lines: &[String]) -> String {
    let start = lines.len().saturating_sub(20);
    lines[start..].join("\n")
}

/// Lines the kernel prints just before it halts for good.
fn is_fatal(line: &str) -> bool {
    ["ukvtpm: FATAL", "ukvtpm: EXCEPTION", "ukvtpm: PANIC"]
        .iter()
        .any(|p| line.trim_start().starts_with(p))
}

/// Spawns `cmd` and waits up to `timeout` for the ready line.
///
/// # Errors
/// [`Error::Spawn`], [`Error::NotReady`] or [`Error::GuestFailed`] (QEMU is killed), or
/// [`Error::Exited`].
pub fn spawn(cmd: &QemuCommand, timeout: Duration) -> Result<Backend, Error> {
    let spawned_at = Instant::now();
    let mut command = cmd.command();
    die_with_parent(&mut command);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            binary: cmd.binary.display().to_string(),
            source,
        })?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        return Err(Error::Io(io::Error::other("QEMU stdio not captured")));
    };
    // QEMU's own messages (stderr) and the guest serial (stdout) go to one line stream.
    let lines = SerialLines::spawn_pair(stdout, stderr);
    let mut boot_log = Vec::new();
    let result = lines.wait_for(
        timeout,
        |line| boot_log.push(line.trim_end().to_owned()),
        |line| {
            if is_fatal(line) {
                Some(None)
            } else {
                Ready::parse(line).map(Some)
            }
        },
    );
    match result {
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            boot_log.extend(lines.drain());
            Err(Error::GuestFailed {
                log: tail(&boot_log),
            })
        }
        Ok(Some(ready)) => Ok(Backend {
            child: Some(child),
            lines,
            accel: cmd.accel,
            ready,
            spawn_to_ready: spawned_at.elapsed(),
            spawned_at,
            boot_log,
        }),
        Err(WaitError::Timeout) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(Error::NotReady {
                timeout,
                log: tail(&boot_log),
            })
        }
        Err(WaitError::Closed) => {
            let status = child
                .wait()
                .map_or_else(|_| "unknown".to_owned(), |s| s.to_string());
            boot_log.extend(lines.drain());
            Err(Error::Exited {
                status,
                log: tail(&boot_log),
            })
        }
    }
}

/// QEMU gets SIGKILL when the thread that spawned it dies, so a killed test or `ukvtpm
/// run-backend` never leaves a guest behind (as the test harness does for host servers).
#[allow(unsafe_code)]
fn die_with_parent(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe, allocates nothing and takes no locks.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

impl Backend {
    /// QEMU's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Serial lines after the ready line.
    pub fn lines(&self) -> &SerialLines {
        &self.lines
    }

    /// Whether QEMU is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops QEMU cleanly: SIGTERM (QEMU shuts the VM down and exits 0), then SIGKILL if it is
    /// still there after `grace`. Returns QEMU's exit status.
    ///
    /// # Errors
    /// [`Error::Io`] when the process cannot be signalled or waited for.
    pub fn stop(mut self, grace: Duration) -> Result<ExitStatus, Error> {
        let Some(mut child) = self.child.take() else {
            return Err(Error::Io(io::Error::other("backend already stopped")));
        };
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        // std offers only SIGKILL; `kill -TERM <pid>` asks QEMU to shut down in order.
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(10));
        }
        child.kill()?;
        Ok(child.wait()?)
    }

    /// Waits until QEMU exits, handing every serial line to `line`.
    ///
    /// # Errors
    /// [`Error::Io`] when waiting fails.
    pub fn wait(mut self, mut line: impl FnMut(&str)) -> Result<ExitStatus, Error> {
        loop {
            match self.lines.next_line(Duration::from_millis(200)) {
                Some(l) => line(l.trim_end()),
                None => {
                    if !self.is_running() {
                        for l in self.lines.drain() {
                            line(l.trim_end());
                        }
                        break;
                    }
                }
            }
        }
        let mut child = self
            .child
            .take()
            .ok_or_else(|| Error::Io(io::Error::other("backend already stopped")))?;
        Ok(child.wait()?)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The QEMU command `opts` describe, with the accelerator decided.
pub fn command(opts: &Options, image: &Path, accel: Accel) -> QemuCommand {
    let cmd = QemuCommand::new(image)
        .binary(&opts.qemu)
        .accel(accel)
        .memory_mib(opts.memory_mib)
        .forward(opts.port, GUEST_TPM_PORT);
    match opts.port.checked_add(1) {
        Some(control) => cmd.forward(control, GUEST_CONTROL_PORT),
        None => cmd,
    }
}

/// Finds the image, chooses the accelerator (printing a warning on fallback to TCG) and starts
/// the backend. For callers that manage the backend themselves (tests, benchmarks, `up`).
///
/// # Errors
/// See [`Error`].
pub fn start(opts: &Options) -> Result<Backend, Error> {
    let image = find_image(opts.image.as_deref())?;
    let choice = accel::choose(opts.accel, &opts.qemu, &image, opts.probe_timeout);
    if let Some(warning) = &choice.warning {
        eprintln!("ukvtpm: warning: {warning}");
    }
    spawn(&command(opts, &image, choice.accel), opts.ready_timeout)
}

/// `ukvtpm run-backend`: start one backend, say where it listens, then relay its serial log to
/// stdout until QEMU exits (Ctrl-C stops both).
///
/// # Errors
/// See [`Error`]; a QEMU exit after the ready line is reported as [`Error::Exited`] only when it
/// failed.
pub fn run(opts: &Options) -> Result<(), Error> {
    let backend = start(opts)?;
    for line in &backend.boot_log {
        println!("{line}");
    }
    eprintln!(
        "ukvtpm: backend ready on 127.0.0.1:{} (control {}; accel {}, -m {}M, pid {}, {} ms after exec, reset->ready {} us guest time)",
        opts.port,
        opts.port.wrapping_add(1),
        backend.accel,
        opts.memory_mib,
        backend.pid().unwrap_or(0),
        backend.spawn_to_ready.as_millis(),
        backend.ready.reset_to_ready_us
    );
    let status = backend.wait(|line| println!("{line}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Exited {
            status: status.to_string(),
            log: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_missing_image_is_reported() {
        let err = find_image(Some(Path::new("/nonexistent/ukvtpm.img"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ukvtpm.img"));
    }

    #[test]
    fn missing_qemu_binary_is_a_spawn_error() {
        let cmd = QemuCommand::new("/nonexistent.img").binary("/nonexistent/qemu");
        assert!(matches!(
            spawn(&cmd, Duration::from_secs(1)),
            Err(Error::Spawn { .. })
        ));
    }
}
