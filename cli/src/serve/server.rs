//! The event loop: two listeners, up to [`MAX_CONNECTIONS`] connections, one engine, one
//! thread. Each complete request is executed at once and its reply written before the next
//! request of that connection is looked at; requests of different connections interleave at
//! request boundaries, so a stalled or vanished client cannot hold the TPM.
//!
//! Waiting is tuned for the two ways clients use the port. The `swtpm:` TCTI opens a new
//! connection for every command: such a connection is watched with `poll` (together with the
//! epoll set), so it costs no `epoll_ctl` and, level-triggered, no extra `accept` to find the
//! queue empty: accept, poll, recv, send, poll, recv (the hang-up), close, as swtpm does. A
//! connection that sends a second request joins a level-triggered epoll set, and from then on a
//! command costs `epoll_wait`, `recv` and `send`, cheaper than `poll` over every descriptor.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::{PollFd, PollFlags, Timespec, epoll};
use rustix::net::SocketFlags;
use signal_hook::consts::{SIGINT, SIGTERM};

use super::data::{self, Request};
use super::device::{Device, TPM_RC_COMMAND_SIZE, TPM_RC_FAILURE, Tpm, error_response};
use super::{PARTIAL_TIMEOUT, Protocol, Then, mssim, swtpm};

/// Connections served at once; further clients wait in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 256;
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
            let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
                .map_err(|error| {
                    if error.kind() == io::ErrorKind::AddrInUse {
                        BindError::InUse { port, error }
                    } else {
                        BindError::Other { port, error }
                    }
                })?;
            listener
                .set_nonblocking(true)
                .map_err(|error| BindError::Other { port, error })?;
            // Accepted sockets inherit TCP_NODELAY from the listener (Linux), which saves a
            // setsockopt per connection.
            if let Err(e) = socket2::SockRef::from(&listener).set_tcp_nodelay(true) {
                tracing::debug!("TCP_NODELAY on a listener: {e}");
            }
            Ok(listener)
        };
        Ok(Listeners {
            data: bind(port)?,
            ctrl: bind(ctrl_port)?,
            port,
        })
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

/// What a `poll` entry stands for.
#[derive(Debug, Clone, Copy)]
enum Source {
    Listener(Port),
    Signal,
    Conn(usize),
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
    /// The peer closed its side: serve what is buffered, then close.
    eof: bool,
    /// Close once `out` is sent.
    closing: bool,
    /// Requests served so far (saturating).
    served: u32,
    /// In the epoll set, with interest `watching`.
    in_epoll: bool,
    watching: epoll::EventFlags,
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
            eof: false,
            closing: false,
            served: 0,
            in_epoll: false,
            watching: epoll::EventFlags::empty(),
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
        match self.stream.read(space) {
            Ok(0) => self.eof = true,
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
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
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
    listeners: Listeners,
    /// Read end of the pipe the SIGTERM/SIGINT handlers write to.
    signals: UnixStream,
    /// Level-triggered epoll set: signals, listeners, and connections past their first request.
    epoll: OwnedFd,
    /// Whether the listeners are in the epoll set with interest (off at [`MAX_CONNECTIONS`]).
    accepting: bool,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    open: usize,
    /// Connections not (yet) in the epoll set.
    fresh: usize,
    /// Input buffers of closed connections, for reuse.
    buffers: Vec<Box<[u8]>>,
    /// Scratch lists for the wait.
    events: Vec<epoll::Event>,
    ready: Vec<(Source, Ready)>,
    device: Device<T>,
    protocol: Protocol,
    terminate: bool,
}

/// What a wait reported for one source.
#[derive(Debug, Clone, Copy)]
struct Ready {
    /// Data, a hang-up or an error: a read will not block.
    readable: bool,
}

const SIGNAL_TOKEN: u64 = 0;
const DATA_TOKEN: u64 = 1;
const CTRL_TOKEN: u64 = 2;
const FIRST_CONN_TOKEN: u64 = 3;

fn token(source: Source) -> u64 {
    match source {
        Source::Signal => SIGNAL_TOKEN,
        Source::Listener(Port::Data) => DATA_TOKEN,
        Source::Listener(Port::Control) => CTRL_TOKEN,
        Source::Conn(key) => FIRST_CONN_TOKEN + key as u64,
    }
}

fn source(token: u64) -> Source {
    match token {
        SIGNAL_TOKEN => Source::Signal,
        DATA_TOKEN => Source::Listener(Port::Data),
        CTRL_TOKEN => Source::Listener(Port::Control),
        t => Source::Conn(usize::try_from(t - FIRST_CONN_TOKEN).unwrap_or(usize::MAX)),
    }
}

fn timespec(deadline: Option<Instant>) -> Option<Timespec> {
    deadline.map(|d| {
        let left = d.saturating_duration_since(Instant::now());
        Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        }
    })
}

impl<T: Tpm> Server<T> {
    /// A server for `device` on `listeners`; SIGTERM and SIGINT stop it.
    ///
    /// # Errors
    /// Creating the epoll set or the signal pipe, or installing the handlers, failed.
    pub fn new(listeners: Listeners, device: Device<T>, protocol: Protocol) -> io::Result<Self> {
        let (signals, notify) = UnixStream::pair()?;
        signals.set_nonblocking(true)?;
        notify.set_nonblocking(true)?;
        for signal in [SIGTERM, SIGINT] {
            signal_hook::low_level::pipe::register(signal, notify.try_clone()?)?;
        }
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let add = |fd: BorrowedFd<'_>, source: Source| {
            epoll::add(
                &epoll,
                fd,
                epoll::EventData::new_u64(token(source)),
                epoll::EventFlags::IN,
            )
        };
        add(signals.as_fd(), Source::Signal)?;
        add(listeners.data.as_fd(), Source::Listener(Port::Data))?;
        add(listeners.ctrl.as_fd(), Source::Listener(Port::Control))?;
        let blank = epoll::Event {
            flags: epoll::EventFlags::empty(),
            data: epoll::EventData::new_u64(0),
        };
        Ok(Server {
            listeners,
            signals,
            epoll,
            accepting: true,
            conns: Vec::new(),
            free: Vec::new(),
            open: 0,
            fresh: 0,
            buffers: Vec::new(),
            events: vec![blank; 64],
            ready: Vec::new(),
            device,
            protocol,
            terminate: false,
        })
    }

    /// Serves until a signal, swtpm's `CMD_SHUTDOWN` or the simulator's `TPM_STOP`; then sends
    /// the orderly `TPM2_Shutdown` swtpm sends and returns the device.
    ///
    /// # Errors
    /// Waiting for events failed.
    pub fn run(mut self) -> io::Result<Device<T>> {
        while !self.terminate {
            let deadline = self.next_deadline();
            self.wait(deadline)?;
            let mut ready = std::mem::take(&mut self.ready);
            for &(source, flags) in &ready {
                self.dispatch(source, flags);
            }
            ready.clear();
            self.ready = ready;
            if deadline.is_some() {
                self.expire(Instant::now());
            }
            self.update_accepting()?;
        }
        for conn in self.conns.iter_mut().flatten() {
            let _ = conn.flush();
        }
        self.device.orderly_shutdown();
        Ok(self.device)
    }

    /// Waits for events; fills `self.ready`. With fresh connections, `poll` watches them and the
    /// epoll set together; otherwise `epoll_wait` alone.
    fn wait(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        let timeout = timespec(deadline);
        if self.fresh == 0 {
            return self.harvest_epoll(timeout.as_ref());
        }
        let mut fds = Vec::with_capacity(1 + self.fresh);
        let mut sources = Vec::with_capacity(1 + self.fresh);
        fds.push(PollFd::new(&self.epoll, PollFlags::IN));
        sources.push(Source::Signal);
        for (key, conn) in self.conns.iter().enumerate() {
            if let Some(conn) = conn
                && !conn.in_epoll
            {
                // While a reply is pending, wait until it can be sent; read nothing more.
                let events = if conn.out.is_empty() {
                    PollFlags::IN
                } else {
                    PollFlags::OUT
                };
                fds.push(PollFd::new(&conn.stream, events));
                sources.push(Source::Conn(key));
            }
        }
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let epoll_ready = !fds[0].revents().is_empty();
        for (fd, source) in fds.iter().zip(sources).skip(1) {
            let flags = fd.revents();
            if !flags.is_empty() {
                let readable = flags.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR);
                self.ready.push((source, Ready { readable }));
            }
        }
        drop(fds);
        if epoll_ready {
            self.harvest_epoll(Some(&Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            }))?;
        }
        Ok(())
    }

    fn harvest_epoll(&mut self, timeout: Option<&Timespec>) -> io::Result<()> {
        let n = match epoll::wait(&self.epoll, &mut self.events, timeout) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for event in &self.events[..n] {
            let flags = event.flags;
            let readable = flags.intersects(
                epoll::EventFlags::IN | epoll::EventFlags::HUP | epoll::EventFlags::ERR,
            );
            self.ready
                .push((source(event.data.u64()), Ready { readable }));
        }
        Ok(())
    }

    fn dispatch(&mut self, source: Source, ready: Ready) {
        match source {
            Source::Signal => {
                let mut buf = [0u8; 16];
                while matches!((&self.signals).read(&mut buf), Ok(n) if n > 0) {}
                tracing::info!("signal received: stopping");
                self.terminate = true;
            }
            Source::Listener(port) => self.accept(port),
            Source::Conn(key) => self.drive(key, ready.readable),
        }
    }

    /// Stops watching the listeners at [`MAX_CONNECTIONS`] (clients wait in the accept queue)
    /// and starts again below it.
    fn update_accepting(&mut self) -> io::Result<()> {
        let want = self.open < MAX_CONNECTIONS;
        if want != self.accepting {
            let flags = if want {
                epoll::EventFlags::IN
            } else {
                epoll::EventFlags::empty()
            };
            for (l, port) in [
                (&self.listeners.data, Port::Data),
                (&self.listeners.ctrl, Port::Control),
            ] {
                let data = epoll::EventData::new_u64(token(Source::Listener(port)));
                epoll::modify(&self.epoll, l, data, flags)?;
            }
            self.accepting = want;
        }
        Ok(())
    }

    /// Accepts one connection (level-triggered: more wait for the next round).
    fn accept(&mut self, port: Port) {
        if self.open >= MAX_CONNECTIONS {
            return;
        }
        let listener = match port {
            Port::Data => &self.listeners.data,
            Port::Control => &self.listeners.ctrl,
        };
        let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
        let stream = match rustix::net::accept_with(listener, flags) {
            Ok(fd) => TcpStream::from(fd),
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => return,
            Err(e) => {
                // E.g. out of file descriptors: the client stays queued.
                tracing::warn!("accept failed: {e}");
                return;
            }
        };
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
        self.fresh += 1;
        tracing::trace!(?port, key, "connection accepted");
        // Not read yet: the client is usually still writing (we woke up on its connect), and a
        // read that finds nothing costs more than the next poll, which reports the data.
    }

    fn close(&mut self, key: usize) {
        if let Some(slot) = self.conns.get_mut(key)
            && let Some(conn) = slot.take()
        {
            // Closing the socket also removes it from the epoll set.
            if !conn.in_epoll {
                self.fresh -= 1;
            }
            if self.buffers.len() < 8 {
                self.buffers.push(conn.inbuf);
            }
            self.free.push(key);
            self.open -= 1;
            tracing::trace!(key, "connection closed");
        }
    }

    /// Sends pending output, serves complete requests and (once, if `readable`) reads, until
    /// the connection has to wait.
    fn drive(&mut self, key: usize, readable: bool) {
        let mut may_read = readable;
        loop {
            let Some(Some(conn)) = self.conns.get_mut(key) else {
                return;
            };
            match conn.flush() {
                Flush::Done => {}
                Flush::Blocked => break,
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
            if !may_read {
                break;
            }
            may_read = false;
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
        if let Err(e) = self.watch(key) {
            tracing::warn!("cannot watch a connection: {e}");
            self.close(key);
        }
    }

    /// Keeps the epoll registration of `key` in step: a connection joins the epoll set once it
    /// has sent a second request (the `swtpm:` TCTI's one-command connections never do, and
    /// never pay for `epoll_ctl`), and watches for writability while a reply is pending.
    fn watch(&mut self, key: usize) -> io::Result<()> {
        let Some(Some(conn)) = self.conns.get_mut(key) else {
            return Ok(());
        };
        let want = if conn.out.is_empty() {
            epoll::EventFlags::IN
        } else {
            epoll::EventFlags::OUT
        };
        let data = epoll::EventData::new_u64(token(Source::Conn(key)));
        if conn.in_epoll {
            if want != conn.watching {
                epoll::modify(&self.epoll, &conn.stream, data, want)?;
                conn.watching = want;
            }
        } else if conn.served >= 2 {
            epoll::add(&self.epoll, &conn.stream, data, want)?;
            conn.in_epoll = true;
            conn.watching = want;
            self.fresh -= 1;
        }
        Ok(())
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
        conn.served = conn.served.saturating_add(1);
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
                    self.drive(key, false);
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
        Request::SessionEnd | Request::EmptySend => (Vec::new(), Then::Close),
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
