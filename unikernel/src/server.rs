//! The TPM data-channel server: a few smoltcp TCP sockets listening on one port, each carrying
//! any number of commands ([`crate::swtpm`] framing) to the engine, one at a time.
//!
//! Robustness rules: a connection that closes or resets mid-command loses only its partial
//! command; one that declares an impossible size gets TPM_RC_COMMAND_SIZE and is closed; one
//! that stalls mid-command or mid-response for [`STALL_TIMEOUT_MS`] is aborted, so a few bad
//! clients cannot hold every socket. Commands never pipeline: the next one is read only after
//! the previous response has been queued.
#![forbid(unsafe_code)]

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};

use crate::swtpm::{self, Assembler, Status};

/// Concurrent connections served (one listening socket each).
pub const CONNECTIONS: usize = 6;
/// Per-socket receive and send buffer: a maximal command or response fits twice.
const SOCKET_BUFFER: usize = 8192;
/// A connection idle in the middle of a command or response for this long is aborted.
pub const STALL_TIMEOUT_MS: u64 = 10_000;

#[derive(Debug)]
struct Connection {
    handle: SocketHandle,
    assembler: Assembler,
    /// Response bytes not yet queued on the socket.
    pending: Vec<u8>,
    /// Close once `pending` is queued (after a framing error).
    close_after: bool,
    last_progress: Instant,
}

/// The listening sockets and their per-connection state.
#[derive(Debug)]
pub struct TpmServer {
    port: u16,
    connections: Vec<Connection>,
}

impl TpmServer {
    /// Adds [`CONNECTIONS`] sockets listening on `port` to `sockets`.
    pub fn new(sockets: &mut SocketSet<'_>, port: u16, now: Instant) -> TpmServer {
        let connections = (0..CONNECTIONS)
            .map(|_| {
                let rx = tcp::SocketBuffer::new(vec![0u8; SOCKET_BUFFER]);
                let tx = tcp::SocketBuffer::new(vec![0u8; SOCKET_BUFFER]);
                let mut socket = tcp::Socket::new(rx, tx);
                socket.set_nagle_enabled(false);
                socket.set_ack_delay(None);
                let _ = socket.listen(port);
                Connection {
                    handle: sockets.add(socket),
                    assembler: Assembler::new(),
                    pending: Vec::new(),
                    close_after: false,
                    last_progress: now,
                }
            })
            .collect();
        TpmServer { port, connections }
    }

    /// Moves every connection forward: reads commands, runs them through `execute`, queues
    /// responses, recycles closed sockets. Returns whether anything happened (poll the
    /// interface again before sleeping).
    pub fn poll(
        &mut self,
        sockets: &mut SocketSet<'_>,
        now: Instant,
        execute: &mut dyn FnMut(&[u8]) -> Vec<u8>,
    ) -> bool {
        let mut progress = false;
        for conn in &mut self.connections {
            progress |= conn.poll(
                sockets.get_mut::<tcp::Socket>(conn.handle),
                self.port,
                now,
                execute,
            );
        }
        progress
    }

    /// The earliest time a stalled connection must be checked (for the idle timer).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.connections
            .iter()
            .filter(|c| c.assembler.is_partial() || !c.pending.is_empty())
            .map(|c| c.last_progress + Duration::from_millis(STALL_TIMEOUT_MS))
            .min()
    }
}

impl Connection {
    fn reset(&mut self, now: Instant) {
        self.assembler.reset();
        self.pending.clear();
        self.close_after = false;
        self.last_progress = now;
    }

    fn poll(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        port: u16,
        now: Instant,
        execute: &mut dyn FnMut(&[u8]) -> Vec<u8>,
    ) -> bool {
        match socket.state() {
            tcp::State::Closed | tcp::State::TimeWait => {
                // Done (or waiting out TIME-WAIT after we closed): serve the next client.
                socket.abort();
                self.reset(now);
                let _ = socket.listen(port);
                return false;
            }
            tcp::State::Listen | tcp::State::SynReceived => {
                self.last_progress = now;
                return false;
            }
            _ => {}
        }
        let mut progress = false;

        // Queue what is left of the response.
        if !self.pending.is_empty() && socket.can_send() {
            let sent = socket.send_slice(&self.pending).unwrap_or(0);
            if sent > 0 {
                self.pending.drain(..sent);
                self.last_progress = now;
                progress = true;
            }
        }
        if self.pending.is_empty() && self.close_after {
            socket.close();
            self.close_after = false;
            return true;
        }

        // Read the next command once the previous response is queued.
        while self.pending.is_empty() && !self.close_after && socket.can_recv() {
            let assembler = &mut self.assembler;
            let taken = socket
                .recv(|data| {
                    let n = assembler.push(data);
                    (n, n)
                })
                .unwrap_or(0);
            if taken == 0 {
                break;
            }
            self.last_progress = now;
            progress = true;
            match self.assembler.status() {
                Status::Incomplete => {}
                Status::Complete => {
                    let command = self.assembler.take();
                    self.pending = execute(&command);
                }
                Status::BadSize(_) => {
                    self.assembler.reset();
                    self.pending = swtpm::size_error_response();
                    self.close_after = true;
                }
            }
            if !self.pending.is_empty() && socket.can_send() {
                let sent = socket.send_slice(&self.pending).unwrap_or(0);
                self.pending.drain(..sent);
            }
        }

        // The client finished sending: drop any partial command, close once answered.
        if !socket.may_recv() && self.pending.is_empty() && socket.state() == tcp::State::CloseWait
        {
            self.assembler.reset();
            socket.close();
            progress = true;
        }

        let stalled = self.assembler.is_partial() || !self.pending.is_empty();
        if stalled && now >= self.last_progress + Duration::from_millis(STALL_TIMEOUT_MS) {
            socket.abort();
            self.reset(now);
            progress = true;
        }
        progress
    }
}
