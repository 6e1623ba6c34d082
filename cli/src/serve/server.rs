//! The event loop: two listeners, any number of connections (up to [`MAX_CONNECTIONS`]), one
//! engine. Edge-triggered epoll through mio; every readable connection is read until the kernel
//! has nothing more, each complete request is executed at once and its reply written before the
//! next request of that connection is looked at. Requests of different connections interleave
//! at request boundaries, so a stalled or vanished client cannot hold the TPM.
//!
//! Fast path for the `swtpm:` TCTI, which opens a new connection for every command: the new
//! socket is read right after `accept` (the command is usually there already), so accept,
//! read, execute and write happen in one wake-up.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use super::data::{self, Request};
use super::device::{Device, TPM_RC_COMMAND_SIZE, TPM_RC_FAILURE, Tpm, error_response};
use super::{PARTIAL_TIMEOUT, Protocol, Then, mssim, swtpm};

const DATA_LISTENER: Token = Token(0);
const CTRL_LISTENER: Token = Token(1);
const SIGNALS: Token = Token(2);
const FIRST_CONNECTION: usize = 3;

/// Connections served at once; more are accepted and closed at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections accepted per round before the other ready sockets get their turn (so a client
/// that connects and hangs up in a tight loop cannot starve the hang-ups it leaves behind).
const ACCEPT_BATCH: usize = 8;
/// Input buffer per connection: the largest framed command plus slack.
const IN_CAPACITY: usize = 8192;

/// Why the server could not start listening.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("port {port} on 127.0.0.1 is in use: {error}; pick another --port")]
    InUse { port: u16, error: io::Error },
    #[error("cannot listen on 127.0.0.1:{port}: {error}")]
    Other { port: u16, error: io::Error },
    #[error("--port {0} leaves no room for the control port P+1; use 1..=65534")]
    NoControlPort(u16),
}

/// The two bound listeners (P and P+1 on 127.0.0.1).
#[derive(Debug)]
pub struct Listeners {
    data: TcpListener,
    ctrl: TcpListener,
    port: u16,
}

impl Listeners {
    /// Binds 127.0.0.1:`port` and 127.0.0.1:`port`+1.
    ///
    /// # Errors
    /// [`BindError`], naming the port that is taken.
    pub fn bind(port: u16) -> Result<Self, BindError> {
        let ctrl_port = match port.checked_add(1) {
            Some(p) if port != 0 => p,
            _ => return Err(BindError::NoControlPort(port)),
        };
        let bind = |port: u16| {
            TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).map_err(|error| {
                if error.kind() == io::ErrorKind::AddrInUse {
                    BindError::InUse { port, error }
                } else {
                    BindError::Other { port, error }
                }
            })
        };
        let listeners = Listeners {
            data: bind(port)?,
            ctrl: bind(ctrl_port)?,
            port,
        };
        // Accepted sockets inherit TCP_NODELAY from the listener (Linux), which saves a
        // setsockopt per connection; the swtpm: TCTI makes one connection per command.
        for l in [&listeners.data, &listeners.ctrl] {
            if let Err(e) = socket2::SockRef::from(l).set_tcp_nodelay(true) {
                tracing::debug!("TCP_NODELAY on a listener: {e}");
            }
        }
        Ok(listeners)
    }

    /// The data port P.
    pub fn port(&self) -> u16 {
        self.port
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Port {
    Data,
    Control,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    port: Port,
    inbuf: Box<[u8]>,
    inlen: usize,
    out: Vec<u8>,
    out_pos: usize,
    /// Bytes of a refused oversized command still to be thrown away as they arrive.
    discard: u64,
    /// When an incomplete request in `inbuf` times out.
    deadline: Option<Instant>,
    /// The deadline passed: a raw command may be taken as received.
    idle: bool,
    /// The last read found no more data (edge-triggered: wait for the next event).
    drained: bool,
    /// The peer closed its side: serve what is buffered, then close.
    eof: bool,
    /// Close once `out` is sent.
    closing: bool,
}

enum Flush {
    Done,
    Blocked,
    Failed,
}

impl Conn {
    fn new(stream: TcpStream, port: Port, inbuf: Box<[u8]>) -> Self {
        Conn {
            stream,
            port,
            inbuf,
            inlen: 0,
            out: Vec::new(),
            out_pos: 0,
            discard: 0,
            deadline: None,
            idle: false,
            drained: false,
            eof: false,
            closing: false,
        }
    }

    fn queue(&mut self, bytes: Vec<u8>) {
        if self.out.is_empty() {
            self.out = bytes;
            self.out_pos = 0;
        } else {
            self.out.extend_from_slice(&bytes);
        }
    }

    fn flush(&mut self) -> Flush {
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Flush::Failed,
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flush::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!("write failed: {e}");
                    return Flush::Failed;
                }
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Flush::Done
    }

    /// One read. `Err` means the connection is broken.
    fn read_some(&mut self) -> Result<(), ()> {
        let space = &mut self.inbuf[self.inlen..];
        if space.is_empty() {
            tracing::warn!("request larger than the input buffer; closing the connection");
            return Err(());
        }
        let want = space.len();
        match self.stream.read(space) {
            Ok(0) => {
                self.eof = true;
                self.drained = true;
            }
            Ok(n) => {
                // Drop what belongs to a refused oversized command.
                let skip = usize::try_from(self.discard).unwrap_or(usize::MAX).min(n);
                if skip > 0 {
                    self.discard -= skip as u64;
                    self.inbuf
                        .copy_within(self.inlen + skip..self.inlen + n, self.inlen);
                }
                self.inlen += n - skip;
                self.deadline = None;
                self.idle = false;
                // A short read drained the socket; later data raises a new edge.
                self.drained = n < want;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.drained = true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!("read failed: {e}");
                return Err(());
            }
        }
        Ok(())
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.inlen);
        self.inbuf.copy_within(n..self.inlen, 0);
        self.inlen -= n;
    }
}

/// The server: listeners, connections and the device.
pub struct Server<T: Tpm> {
    poll: Poll,
    listeners: Listeners,
    signals: Signals,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Input buffers of closed connections, for reuse.
    buffers: Vec<Box<[u8]>>,
    open: usize,
    device: Device<T>,
    protocol: Protocol,
    terminate: bool,
    /// A listener may have connections waiting (its last round stopped at [`ACCEPT_BATCH`]).
    accept_pending: [bool; 2],
}

impl<T: Tpm> Server<T> {
    /// A server for `device` on `listeners`; SIGTERM and SIGINT stop it.
    ///
    /// # Errors
    /// Creating the epoll instance or the signal pipe failed.
    pub fn new(listeners: Listeners, device: Device<T>, protocol: Protocol) -> io::Result<Self> {
        let poll = Poll::new()?;
        let mut listeners = listeners;
        let mut signals = Signals::new([SIGTERM, SIGINT])?;
        let registry = poll.registry();
        registry.register(&mut listeners.data, DATA_LISTENER, Interest::READABLE)?;
        registry.register(&mut listeners.ctrl, CTRL_LISTENER, Interest::READABLE)?;
        registry.register(&mut signals, SIGNALS, Interest::READABLE)?;
        Ok(Server {
            poll,
            listeners,
            signals,
            conns: Vec::new(),
            free: Vec::new(),
            buffers: Vec::new(),
            open: 0,
            device,
            protocol,
            terminate: false,
            accept_pending: [false; 2],
        })
    }

    /// Serves until a signal, swtpm's `CMD_SHUTDOWN` or the simulator's `TPM_STOP`; then sends
    /// the orderly `TPM2_Shutdown` swtpm sends and returns the device.
    ///
    /// # Errors
    /// Waiting for events failed.
    pub fn run(mut self) -> io::Result<Device<T>> {
        let mut events = Events::with_capacity(64);
        while !self.terminate {
            let timeout = if self.accept_pending.contains(&true) {
                Some(std::time::Duration::ZERO)
            } else {
                self.next_deadline()
                    .map(|d| d.saturating_duration_since(Instant::now()))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                self.dispatch(event);
            }
            for port in [Port::Data, Port::Control] {
                if self.accept_pending[port as usize] {
                    self.accept(port);
                }
            }
            if timeout.is_some() {
                self.expire(Instant::now());
            }
        }
        for key in 0..self.conns.len() {
            if let Some(conn) = self.conns[key].as_mut() {
                let _ = conn.flush();
            }
        }
        self.device.orderly_shutdown();
        Ok(self.device)
    }

    fn dispatch(&mut self, event: &Event) {
        match event.token() {
            DATA_LISTENER => self.accept_pending[Port::Data as usize] = true,
            CTRL_LISTENER => self.accept_pending[Port::Control as usize] = true,
            SIGNALS => {
                for signal in self.signals.pending() {
                    tracing::info!(signal, "signal received: stopping");
                    self.terminate = true;
                }
            }
            Token(t) => {
                let key = t - FIRST_CONNECTION;
                if let Some(Some(conn)) = self.conns.get_mut(key) {
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        conn.drained = false;
                    }
                    self.drive(key);
                }
            }
        }
    }

    /// Accepts up to [`ACCEPT_BATCH`] connections and serves what they sent already.
    fn accept(&mut self, port: Port) {
        for _ in 0..ACCEPT_BATCH {
            let listener = match port {
                Port::Data => &self.listeners.data,
                Port::Control => &self.listeners.ctrl,
            };
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_pending[port as usize] = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // E.g. out of file descriptors: retry after the next event.
                    tracing::warn!("accept failed: {e}");
                    self.accept_pending[port as usize] = false;
                    return;
                }
            };
            if self.open >= MAX_CONNECTIONS {
                tracing::warn!("{MAX_CONNECTIONS} connections open: refusing another");
                continue;
            }
            let key = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            let inbuf = self
                .buffers
                .pop()
                .unwrap_or_else(|| vec![0u8; IN_CAPACITY].into_boxed_slice());
            self.conns[key] = Some(Conn::new(stream, port, inbuf));
            self.open += 1;
            tracing::trace!(?port, key, "connection accepted");
            // The first request is usually there already: answer it before anything else, and
            // only then ask epoll about the socket (ADD reports data or a hang-up that arrived
            // in between, so nothing is missed).
            self.drive(key);
            let Some(Some(conn)) = self.conns.get_mut(key) else {
                continue;
            };
            let token = Token(key + FIRST_CONNECTION);
            let interest = Interest::READABLE.add(Interest::WRITABLE);
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut conn.stream, token, interest)
            {
                tracing::warn!("cannot watch a new connection: {e}");
                self.close(key);
            }
        }
    }

    fn close(&mut self, key: usize) {
        if let Some(slot) = self.conns.get_mut(key)
            && let Some(conn) = slot.take()
        {
            // Closing the socket removes it from the epoll set.
            if self.buffers.len() < 8 {
                self.buffers.push(conn.inbuf);
            }
            self.free.push(key);
            self.open -= 1;
            tracing::trace!(key, "connection closed");
        }
    }

    /// Reads, executes and writes for connection `key` until it would block.
    fn drive(&mut self, key: usize) {
        loop {
            let Some(Some(conn)) = self.conns.get_mut(key) else {
                return;
            };
            match conn.flush() {
                Flush::Done => {}
                Flush::Blocked => return,
                Flush::Failed => return self.close(key),
            }
            if conn.closing {
                return self.close(key);
            }
            if self.serve_one(key) {
                continue;
            }
            let Some(Some(conn)) = self.conns.get_mut(key) else {
                return;
            };
            if conn.eof {
                return self.close(key);
            }
            if conn.drained {
                break;
            }
            if conn.read_some().is_err() {
                return self.close(key);
            }
        }
        let Some(Some(conn)) = self.conns.get_mut(key) else {
            return;
        };
        if conn.inlen > 0 && conn.deadline.is_none() && !conn.idle {
            conn.deadline = Some(Instant::now() + PARTIAL_TIMEOUT);
            if conn.port == Port::Data {
                // A client without TCP_NODELAY (the mssim TCTI) holds the rest of a command
                // until it sees an ACK: send it now instead of after the delayed-ACK timer.
                let _ = socket2::SockRef::from(&conn.stream).set_tcp_quickack(true);
            }
        }
    }

    /// Serves the first complete request buffered on `key`; false if there is none.
    fn serve_one(&mut self, key: usize) -> bool {
        let Some(Some(conn)) = self.conns.get_mut(key) else {
            return false;
        };
        if conn.inlen == 0 {
            return false;
        }
        let buf = &conn.inbuf[..conn.inlen];
        let (consumed, bytes, then) = match conn.port {
            Port::Data => {
                let simulator = self.protocol == Protocol::Mssim;
                let Some(parsed) = data::parse(buf, simulator, conn.idle || conn.eof) else {
                    return false;
                };
                let (bytes, then) = serve_data(&mut self.device, parsed.request, &mut conn.discard);
                (parsed.consumed, bytes, then)
            }
            Port::Control => {
                let handled = match self.protocol {
                    Protocol::Swtpm => swtpm::control(&mut self.device, buf),
                    Protocol::Mssim => mssim::platform(&mut self.device, buf),
                };
                let Some((consumed, reply)) = handled else {
                    return false;
                };
                (consumed, reply.bytes, reply.then)
            }
        };
        conn.consume(consumed);
        conn.idle = false;
        conn.deadline = None;
        if !bytes.is_empty() {
            conn.queue(bytes);
        }
        match then {
            Then::Continue => {}
            Then::Close => conn.closing = true,
            Then::Terminate => {
                conn.closing = true;
                self.terminate = true;
            }
        }
        true
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.conns.iter().flatten().filter_map(|c| c.deadline).min()
    }

    /// Handles connections whose incomplete request timed out.
    fn expire(&mut self, now: Instant) {
        for key in 0..self.conns.len() {
            let Some(Some(conn)) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.deadline.is_none_or(|d| d > now) {
                continue;
            }
            conn.deadline = None;
            match conn.port {
                Port::Data => {
                    tracing::debug!(key, bytes = conn.inlen, "incomplete command timed out");
                    conn.idle = true;
                    self.drive(key);
                }
                Port::Control => {
                    tracing::debug!(key, "incomplete control request timed out; closing");
                    self.close(key);
                }
            }
        }
    }
}

/// Executes a data-port request; returns the bytes to send and what happens next.
fn serve_data<T: Tpm>(
    device: &mut Device<T>,
    request: Request<'_>,
    discard: &mut u64,
) -> (Vec<u8>, Then) {
    match request {
        Request::Raw(command) => {
            let response = device.execute(command);
            if response.is_empty() {
                // No power (simulator signal): a raw client still needs an answer.
                (error_response(TPM_RC_FAILURE), Then::Continue)
            } else {
                (response, Then::Continue)
            }
        }
        Request::Send { locality, command } => (
            framed(&device.execute_at(locality, command)),
            Then::Continue,
        ),
        Request::TooLarge {
            framed: is_framed,
            discard: rest,
        } => {
            tracing::debug!(
                rest,
                "command larger than {} bytes refused",
                super::device::MAX_COMMAND_SIZE
            );
            *discard = rest;
            let response = error_response(TPM_RC_COMMAND_SIZE);
            (
                if is_framed {
                    framed(&response)
                } else {
                    response
                },
                Then::Continue,
            )
        }
        Request::Handshake { client_version: 0 } => (Vec::new(), Then::Close),
        Request::Handshake { .. } => (
            mssim::ack_with(&[mssim::SERVER_VERSION, mssim::SERVER_FLAGS]),
            Then::Continue,
        ),
        Request::AlternativeResult => (mssim::ack_with(&[]), Then::Continue),
        Request::SessionEnd => (Vec::new(), Then::Close),
        Request::Stop => {
            tracing::info!("simulator TPM_STOP: stopping the server");
            (Vec::new(), Then::Terminate)
        }
        Request::Unknown(code) => {
            tracing::warn!(
                code,
                "unsupported simulator command on the data port; closing"
            );
            (Vec::new(), Then::Close)
        }
    }
}

/// The simulator's response framing: u32 length, response, u32 0.
fn framed(response: &[u8]) -> Vec<u8> {
    let len = u32::try_from(response.len()).unwrap_or(0);
    let mut v = Vec::with_capacity(response.len() + 8);
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(response);
    v.extend_from_slice(&0u32.to_be_bytes());
    v
}
