//! A raw TPM client for the two socket framings in `swtpm-protocol.md`, plus builders for the
//! few commands the tests and the benchmark send by hand.
//!
//! * [`Framing::Plain`]: the command bytes as they are; the response is read as a 10-byte header
//!   then `responseSize - 10` bytes (swtpm data port, `ukvtpm serve --protocol swtpm`).
//! * [`Framing::Mssim`]: `u32 8 (TPM_SEND_COMMAND) | u8 locality | u32 len | command`, answered by
//!   `u32 len | response | u32 0` (TCG simulator; swtpm also accepts it on its data port).
//!
//! Do not pipeline: swtpm answers two commands in one write with a single TPM_RC_COMMAND_SIZE.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// `TPM_ST_NO_SESSIONS`.
pub const ST_NO_SESSIONS: u16 = 0x8001;
/// `TPM_ST_SESSIONS`.
pub const ST_SESSIONS: u16 = 0x8002;
/// `TPM_RS_PW`, the password session handle.
pub const RS_PW: u32 = 0x4000_0009;

/// TPM command codes used here.
pub mod cc {
    /// TPM2_Startup.
    pub const STARTUP: u32 = 0x144;
    /// TPM2_Shutdown.
    pub const SHUTDOWN: u32 = 0x145;
    /// TPM2_SelfTest.
    pub const SELF_TEST: u32 = 0x143;
    /// TPM2_GetCapability.
    pub const GET_CAPABILITY: u32 = 0x17A;
    /// TPM2_GetRandom.
    pub const GET_RANDOM: u32 = 0x17B;
    /// TPM2_StirRandom.
    pub const STIR_RANDOM: u32 = 0x146;
    /// TPM2_Hash.
    pub const HASH: u32 = 0x17D;
    /// TPM2_PCR_Read.
    pub const PCR_READ: u32 = 0x17E;
    /// TPM2_PCR_Extend.
    pub const PCR_EXTEND: u32 = 0x182;
    /// TPM2_PCR_Reset.
    pub const PCR_RESET: u32 = 0x13D;
    /// TPM2_PCR_Event.
    pub const PCR_EVENT: u32 = 0x13C;
    /// TPM2_ReadClock.
    pub const READ_CLOCK: u32 = 0x181;
    /// TPM2_Clear.
    pub const CLEAR: u32 = 0x126;
    /// TPM2_HierarchyChangeAuth.
    pub const HIERARCHY_CHANGE_AUTH: u32 = 0x129;
    /// TPM2_HashSequenceStart.
    pub const HASH_SEQUENCE_START: u32 = 0x186;
    /// TPM2_SequenceUpdate.
    pub const SEQUENCE_UPDATE: u32 = 0x15C;
    /// TPM2_TestParms.
    pub const TEST_PARMS: u32 = 0x18A;
    /// TPM2_GetTestResult.
    pub const GET_TEST_RESULT: u32 = 0x17C;
    /// TPM2_FlushContext.
    pub const FLUSH_CONTEXT: u32 = 0x165;
    /// TPM2_ContextSave.
    pub const CONTEXT_SAVE: u32 = 0x162;
    /// TPM2_DictionaryAttackLockReset.
    pub const DA_LOCK_RESET: u32 = 0x139;
}

/// TPM algorithm ids used here.
pub mod alg {
    /// TPM_ALG_SHA1.
    pub const SHA1: u16 = 0x0004;
    /// TPM_ALG_SHA256.
    pub const SHA256: u16 = 0x000B;
    /// TPM_ALG_SHA384.
    pub const SHA384: u16 = 0x000C;
    /// TPM_ALG_NULL.
    pub const NULL: u16 = 0x0010;
}

/// Socket framing of the data port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Raw command bytes (swtpm).
    Plain,
    /// TCG simulator framing.
    Mssim,
}

/// A parsed TPM response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Response tag.
    pub tag: u16,
    /// Response code.
    pub rc: u32,
    /// Everything after the 10-byte header.
    pub body: Vec<u8>,
}

impl Response {
    /// Parses a complete response; checks that responseSize matches the bytes.
    pub fn parse(bytes: &[u8]) -> Result<Response> {
        if bytes.len() < 10 {
            bail!("response shorter than a header: {}", hex(bytes));
        }
        let size = be32(&bytes[2..6]) as usize;
        if size != bytes.len() {
            bail!(
                "responseSize {size} but {} bytes: {}",
                bytes.len(),
                hex(bytes)
            );
        }
        Ok(Response {
            tag: be16(&bytes[0..2]),
            rc: be32(&bytes[6..10]),
            body: bytes[10..].to_vec(),
        })
    }

    /// Fails unless rc is TPM_RC_SUCCESS.
    pub fn success(self) -> Result<Response> {
        if self.rc != 0 {
            bail!("TPM returned rc {:#x}", self.rc);
        }
        Ok(self)
    }
}

/// A connection to a TPM data port.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    framing: Framing,
    locality: u8,
}

/// How long a read waits for the server.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

impl Client {
    /// Connects to 127.0.0.1:`port`.
    pub fn connect(port: u16, framing: Framing) -> Result<Client> {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        Ok(Client {
            stream,
            framing,
            locality: 0,
        })
    }

    /// Connects to 127.0.0.1:`port` from the local address `source` (any 127.x.y.z). The
    /// benchmark opens tens of thousands of short connections; each leaves a TIME_WAIT entry on
    /// its local address and port, and on 127.0.0.1 they would use up the ephemeral ports other
    /// tests bind their servers to.
    pub fn connect_from(source: Ipv4Addr, port: u16, framing: Framing) -> Result<Client> {
        use socket2::{Domain, Socket, Type};
        use std::os::fd::AsRawFd;
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).context("socket")?;
        // Pick the port at connect() time, from the whole 4-tuple (so TIME_WAIT entries can be
        // reused), not at bind() time.
        let one: libc::c_int = 1;
        // SAFETY: the fd is a valid socket owned by `socket`; the option value points to a
        // live c_int and its size is passed alongside.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&raw const one).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("IP_BIND_ADDRESS_NO_PORT");
        }
        socket
            .bind(&std::net::SocketAddr::from((source, 0)).into())
            .with_context(|| format!("binding the client socket to {source}"))?;
        socket
            .connect(&std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())
            .with_context(|| format!("connecting from {source} to 127.0.0.1:{port}"))?;
        let stream: TcpStream = socket.into();
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        Ok(Client {
            stream,
            framing,
            locality: 0,
        })
    }

    /// Sends one command and reads its complete response.
    pub fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>> {
        self.send(command)?;
        self.receive()
    }

    /// Sends one command and parses the response.
    pub fn execute(&mut self, command: &[u8]) -> Result<Response> {
        let bytes = self.transact(command)?;
        Response::parse(&bytes)
    }

    /// Writes one command in this connection's framing (one write, as the TCTIs do).
    pub fn send(&mut self, command: &[u8]) -> Result<()> {
        match self.framing {
            Framing::Plain => self.stream.write_all(command)?,
            Framing::Mssim => {
                let mut buf = Vec::with_capacity(command.len() + 9);
                buf.extend_from_slice(&8u32.to_be_bytes());
                buf.push(self.locality);
                buf.extend_from_slice(&u32::try_from(command.len())?.to_be_bytes());
                buf.extend_from_slice(command);
                self.stream.write_all(&buf)?;
            }
        }
        Ok(())
    }

    /// Reads one response in this connection's framing.
    pub fn receive(&mut self) -> Result<Vec<u8>> {
        match self.framing {
            Framing::Plain => {
                let mut header = [0u8; 10];
                self.stream
                    .read_exact(&mut header)
                    .context("reading the response header")?;
                let size = be32(&header[2..6]) as usize;
                if !(10..=1 << 20).contains(&size) {
                    bail!("implausible responseSize {size}: {}", hex(&header));
                }
                let mut response = header.to_vec();
                response.resize(size, 0);
                self.stream
                    .read_exact(&mut response[10..])
                    .context("reading the response body")?;
                Ok(response)
            }
            Framing::Mssim => {
                let mut len = [0u8; 4];
                self.stream
                    .read_exact(&mut len)
                    .context("reading the mssim response length")?;
                let len = u32::from_be_bytes(len) as usize;
                if len > 1 << 20 {
                    bail!("implausible mssim response length {len}");
                }
                let mut response = vec![0u8; len];
                self.stream.read_exact(&mut response)?;
                let mut trailer = [0u8; 4];
                self.stream
                    .read_exact(&mut trailer)
                    .context("reading the mssim trailer")?;
                Ok(response)
            }
        }
    }

    /// The underlying stream.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

/// What a server did with one (possibly malformed) byte string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A complete, well-framed response.
    Response {
        /// Response tag.
        tag: u16,
        /// Response code.
        rc: u32,
        /// Response length in bytes.
        len: usize,
        /// Bytes received after the first response (swtpm answers an 8 KiB command twice).
        extra: usize,
    },
    /// The server closed the connection without answering.
    Closed,
    /// No answer before the timeout.
    NoAnswer,
    /// Bytes that are not one well-framed response.
    Garbage(Vec<u8>),
}

impl Outcome {
    /// Short form for tables: `8001/0x0000014e`, `closed`, `no answer`.
    pub fn short(&self) -> String {
        match self {
            Outcome::Response {
                tag, rc, extra: 0, ..
            } => format!("{tag:04x}/{rc:#010x}"),
            Outcome::Response { tag, rc, extra, .. } => {
                format!("{tag:04x}/{rc:#010x} +{extra}B")
            }
            Outcome::Closed => "closed".into(),
            Outcome::NoAnswer => "no answer".into(),
            Outcome::Garbage(bytes) => format!("garbage {}", hex(&bytes[..bytes.len().min(16)])),
        }
    }
}

/// Sends `bytes` as they are on a new plain-framing connection, optionally half-closes the
/// connection (so a server waiting for more bytes sees end of input), and reports what came back.
pub fn send_once(port: u16, bytes: &[u8], half_close: bool, timeout: Duration) -> Result<Outcome> {
    send_once_framed(port, Framing::Plain, bytes, half_close, timeout)
}

/// Like [`send_once`] in either framing; with [`Framing::Mssim`] the bytes are wrapped in one
/// TPM_SEND_COMMAND frame (locality 0) whose length is the number of bytes, so the TPM itself
/// sees exactly `bytes`, and the frame around the response is removed before parsing.
pub fn send_once_framed(
    port: u16,
    framing: Framing,
    bytes: &[u8],
    half_close: bool,
    timeout: Duration,
) -> Result<Outcome> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    let wire = match framing {
        Framing::Plain => bytes.to_vec(),
        Framing::Mssim => {
            let mut w = 8u32.to_be_bytes().to_vec();
            w.push(0);
            w.extend_from_slice(&u32::try_from(bytes.len())?.to_be_bytes());
            w.extend_from_slice(bytes);
            w
        }
    };
    // The offset of the TPM response in what comes back, and the bytes after it.
    let (head, tail) = match framing {
        Framing::Plain => (0, 0),
        Framing::Mssim => (4, 4),
    };
    if !wire.is_empty() {
        // The server may close early on garbage: a write error is an outcome, not a failure.
        if stream.write_all(&wire).is_err() {
            return Ok(Outcome::Closed);
        }
    }
    if half_close {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.len() >= head + 10
                    && got.len() >= head + be32(&got[head + 2..head + 6]) as usize + tail
                {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if got.is_empty() {
                    return Ok(Outcome::NoAnswer);
                }
                break;
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e).context("reading the response"),
        }
    }
    if got.is_empty() {
        return Ok(Outcome::Closed);
    }
    let len = if got.len() >= head + 10 {
        be32(&got[head + 2..head + 6]) as usize
    } else {
        0
    };
    if len < 10 || head + len > got.len() {
        return Ok(Outcome::Garbage(got));
    }
    match Response::parse(&got[head..head + len]) {
        Ok(r) => Ok(Outcome::Response {
            tag: r.tag,
            rc: r.rc,
            len,
            extra: (got.len() - head - len).saturating_sub(tail),
        }),
        Err(_) => Ok(Outcome::Garbage(got)),
    }
}

/// Builds a command: tag, commandSize (computed), commandCode, then `rest`.
pub fn command(tag: u16, code: u32, rest: &[u8]) -> Vec<u8> {
    let size = u32::try_from(10 + rest.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(10 + rest.len());
    out.extend_from_slice(&tag.to_be_bytes());
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(rest);
    out
}

/// A password authorization area (one session, TPM_RS_PW) with `password`, including its
/// authorizationSize prefix.
pub fn password_auth(password: &[u8]) -> Vec<u8> {
    let mut session = Vec::new();
    session.extend_from_slice(&RS_PW.to_be_bytes());
    session.extend_from_slice(&0u16.to_be_bytes()); // nonceCaller
    session.push(0); // sessionAttributes
    session.extend_from_slice(&tpm2b(password));
    let mut out = u32::try_from(session.len())
        .unwrap_or(0)
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(&session);
    out
}

/// A TPM2B: u16 size then the bytes.
pub fn tpm2b(bytes: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(bytes.len())
        .unwrap_or(u16::MAX)
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(bytes);
    out
}

/// TPM2_GetRandom(bytesRequested).
pub fn get_random(bytes: u16) -> Vec<u8> {
    command(ST_NO_SESSIONS, cc::GET_RANDOM, &bytes.to_be_bytes())
}

/// A TPML_PCR_SELECTION with one bank selecting `pcrs` (3-byte bitmap).
pub fn pcr_selection(bank: u16, pcrs: impl IntoIterator<Item = u8>) -> Vec<u8> {
    let mut bitmap = [0u8; 3];
    for pcr in pcrs {
        bitmap[usize::from(pcr / 8) % 3] |= 1 << (pcr % 8);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&bank.to_be_bytes());
    out.push(3);
    out.extend_from_slice(&bitmap);
    out
}

/// TPM2_PCR_Read of `pcrs` in `bank`.
pub fn pcr_read(bank: u16, pcrs: impl IntoIterator<Item = u8>) -> Vec<u8> {
    command(ST_NO_SESSIONS, cc::PCR_READ, &pcr_selection(bank, pcrs))
}

/// TPM2_Hash(data, hashAlg, hierarchy = TPM_RH_NULL).
pub fn hash(data: &[u8], alg: u16) -> Vec<u8> {
    let mut rest = tpm2b(data);
    rest.extend_from_slice(&alg.to_be_bytes());
    rest.extend_from_slice(&0x4000_0007u32.to_be_bytes());
    command(ST_NO_SESSIONS, cc::HASH, &rest)
}

/// TPM2_GetCapability(capability, property, propertyCount).
pub fn get_capability(capability: u32, property: u32, count: u32) -> Vec<u8> {
    let mut rest = capability.to_be_bytes().to_vec();
    rest.extend_from_slice(&property.to_be_bytes());
    rest.extend_from_slice(&count.to_be_bytes());
    command(ST_NO_SESSIONS, cc::GET_CAPABILITY, &rest)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Sends the platform signals the `mssim:` TCTI sends before its first command (power on,
/// NV on) to the platform port `port + 1`; each answer is a u32 0.
pub fn mssim_power_on(port: u16) -> Result<()> {
    let mut platform = TcpStream::connect((Ipv4Addr::LOCALHOST, port + 1))
        .with_context(|| format!("connecting to the platform port {}", port + 1))?;
    platform.set_read_timeout(Some(READ_TIMEOUT))?;
    for signal in [1u32, 11] {
        platform.write_all(&signal.to_be_bytes())?;
        let mut answer = [0u8; 4];
        platform
            .read_exact(&mut answer)
            .with_context(|| format!("reading the answer to platform signal {signal}"))?;
        if answer != [0; 4] {
            bail!("platform signal {signal} answered {}", hex(&answer));
        }
    }
    Ok(())
}
