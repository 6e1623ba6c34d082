//! The backend's serial log (QEMU's stdout under `-nographic`): line collection on a thread and
//! parsing of the kernel's `ready` line.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// What the kernel prints once DHCP is done and the TPM port listens:
/// `ukvtpm: ready ip=A/N port=P tsc_reset=T0 tsc_ready=T1 tsc_hz=H reset_to_ready_us=U`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// Guest address with prefix.
    pub ip: String,
    /// Guest TCP port of the TPM data channel.
    pub port: u16,
    /// TSC at the reset vector.
    pub tsc_reset: u64,
    /// TSC when ready.
    pub tsc_ready: u64,
    /// Calibrated TSC frequency.
    pub tsc_hz: u64,
    /// Guest time from reset vector to ready, in microseconds.
    pub reset_to_ready_us: u64,
}

impl Ready {
    /// Parses a ready line; `None` for any other line.
    pub fn parse(line: &str) -> Option<Ready> {
        let rest = line.trim().strip_prefix("ukvtpm: ready ")?;
        let field = |name: &str| {
            rest.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        };
        Some(Ready {
            ip: field("ip")?.to_owned(),
            port: field("port")?.parse().ok()?,
            tsc_reset: field("tsc_reset")?.parse().ok()?,
            tsc_ready: field("tsc_ready")?.parse().ok()?,
            tsc_hz: field("tsc_hz")?.parse().ok()?,
            reset_to_ready_us: field("reset_to_ready_us")?.parse().ok()?,
        })
    }
}

/// Lines read from a child's output by a background thread.
#[derive(Debug)]
pub struct SerialLines {
    rx: Receiver<String>,
}

/// How waiting for a line ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitError {
    /// No matching line before the deadline.
    Timeout,
    /// The output closed (QEMU exited).
    Closed,
}

impl SerialLines {
    /// Starts reading `output` line by line.
    pub fn spawn(output: impl Read + Send + 'static) -> SerialLines {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || forward(output, &tx));
        SerialLines { rx }
    }

    /// Waits up to `timeout` for a line; calls `seen` for every line read meanwhile.
    ///
    /// # Errors
    /// [`WaitError`] when the deadline passes or the output closes first.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        mut seen: impl FnMut(&str),
        mut matches: impl FnMut(&str) -> Option<T>,
    ) -> Result<T, WaitError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    seen(&line);
                    if let Some(found) = matches(&line) {
                        return Ok(found);
                    }
                }
                Err(RecvTimeoutError::Timeout) => return Err(WaitError::Timeout),
                Err(RecvTimeoutError::Disconnected) => return Err(WaitError::Closed),
            }
        }
    }

    /// Reads two outputs (QEMU's stdout and stderr) into one stream of lines.
    pub fn spawn_pair(
        first: impl Read + Send + 'static,
        second: impl Read + Send + 'static,
    ) -> SerialLines {
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        thread::spawn(move || forward(first, &tx));
        thread::spawn(move || forward(second, &tx2));
        SerialLines { rx }
    }

    /// Next line within `timeout`, if any.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Lines already read, without waiting.
    pub fn drain(&self) -> Vec<String> {
        self.rx.try_iter().collect()
    }
}

fn forward(output: impl Read, tx: &mpsc::Sender<String>) {
    for line in BufReader::new(output).lines() {
        let Ok(line) = line else { break };
        if tx.send(line).is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_ready_line() {
        let line = "ukvtpm: ready ip=10.0.2.15/24 port=2321 tsc_reset=1 tsc_ready=2600001 \
                    tsc_hz=2600000000 reset_to_ready_us=1000\r";
        let r = Ready::parse(line).unwrap();
        assert_eq!(r.ip, "10.0.2.15/24");
        assert_eq!(r.port, 2321);
        assert_eq!(r.reset_to_ready_us, 1000);
        assert_eq!(r.tsc_hz, 2_600_000_000);
        assert!(Ready::parse("ukvtpm: boot ram_top=0x1000000").is_none());
        assert!(Ready::parse("ukvtpm: ready ip=x port=nope").is_none());
    }

    #[test]
    fn waits_for_a_matching_line() {
        let lines = SerialLines::spawn(&b"a\nb\nukvtpm: go\n"[..]);
        let mut seen = Vec::new();
        let got = lines.wait_for(
            Duration::from_secs(5),
            |l| seen.push(l.to_owned()),
            |l| l.strip_prefix("ukvtpm: ").map(str::to_owned),
        );
        assert_eq!(got, Ok("go".to_owned()));
        assert_eq!(seen, ["a", "b", "ukvtpm: go"]);
        assert_eq!(
            lines.wait_for(Duration::from_secs(5), |_| {}, |_| Some(())),
            Err(WaitError::Closed)
        );
    }
}
