//! The TPM data-channel server: a few smoltcp TCP sockets listening on one port, each carrying
//! any number of commands ([`crate::swtpm`] framing) to the engine, one at a time; and a couple
//! of sockets for swtpm's control channel ([`crate::swtpm::control`]), whose `CMD_SET_LOCALITY`
//! sets the locality of later data-channel commands (as in swtpm, one setting for all).
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
/// Concurrent control-channel connections.
pub const CONTROL_CONNECTIONS: usize = 2;
/// Per-socket buffers of control connections (requests and replies are a few bytes).
const CONTROL_BUFFER: usize = 256;
/// A connection idle in the middle of a command or response for this long is aborted.
pub const STALL_TIMEOUT_MS: u64 = 10_000;
/// A connection that has sent its FIN is released after this long even if the peer neither
/// acknowledges nor closes.
pub const CLOSE_TIMEOUT_MS: u64 = 2_000;

#[derive(Debug)]
struct Connection {
    handle: SocketHandle,
    /// Listening port.
    port: u16,
    /// A control-channel connection (else data channel).
    control: bool,
    /// The control request being read.
    request: Vec<u8>,
    assembler: Assembler,
    /// Response bytes not yet queued on the socket.
    pending: Vec<u8>,
    /// Close once `pending` is queued (after a framing error).
    close_after: bool,
    last_progress: Instant,
    /// When the socket entered a closing state (FIN sent), for [`CLOSE_TIMEOUT_MS`].
    closing_since: Option<Instant>,
}

/// The listening sockets and their per-connection state.
#[derive(Debug)]
pub struct TpmServer {
    connections: Vec<Connection>,
    /// Locality of data-channel commands (`CMD_SET_LOCALITY`).
    locality: u8,
}

impl TpmServer {
    /// Adds [`CONNECTIONS`] sockets listening on `port` (data channel) and
    /// [`CONTROL_CONNECTIONS`] on `control_port` to `sockets`.
    pub fn new(
        sockets: &mut SocketSet<'_>,
        port: u16,
        control_port: u16,
        now: Instant,
    ) -> TpmServer {
        let mut add = |port: u16, control: bool, buffer: usize| {
            let rx = tcp::SocketBuffer::new(vec![0u8; buffer]);
            let tx = tcp::SocketBuffer::new(vec![0u8; buffer]);
            let mut socket = tcp::Socket::new(rx, tx);
            socket.set_nagle_enabled(false);
            socket.set_ack_delay(None);
            let _ = socket.listen(port);
            Connection {
                handle: sockets.add(socket),
                port,
                control,
                request: Vec::new(),
                assembler: Assembler::new(),
                pending: Vec::new(),
                close_after: false,
                last_progress: now,
                closing_since: None,
            }
        };
        let mut connections: Vec<Connection> = (0..CONNECTIONS)
            .map(|_| add(port, false, SOCKET_BUFFER))
            .collect();
        connections
            .extend((0..CONTROL_CONNECTIONS).map(|_| add(control_port, true, CONTROL_BUFFER)));
        TpmServer {
            connections,
            locality: 0,
        }
    }

    /// Moves every connection forward: reads commands, runs them through `execute`, queues
    /// responses, recycles closed sockets. Returns whether anything happened (poll the
    /// interface again before sleeping).
    pub fn poll(
        &mut self,
        sockets: &mut SocketSet<'_>,
        now: Instant,
        execute: &mut dyn FnMut(u8, &[u8]) -> Vec<u8>,
    ) -> bool {
        let mut progress = false;
        for conn in &mut self.connections {
            progress |= conn.poll(
                sockets.get_mut::<tcp::Socket>(conn.handle),
                &mut self.locality,
                now,
                execute,
            );
        }
        progress
    }

    /// The earliest time a stalled or closing connection must be checked (for the idle timer).
    pub fn next_deadline(&self) -> Option<Instant> {
        let stalls = self
            .connections
            .iter()
            .filter(|c| c.is_stalled())
            .map(|c| c.last_progress + Duration::from_millis(STALL_TIMEOUT_MS));
        let closes = self
            .connections
            .iter()
            .filter_map(|c| c.closing_since)
            .map(|t| t + Duration::from_millis(CLOSE_TIMEOUT_MS));
        stalls.chain(closes).min()
    }
}

impl Connection {
    fn is_stalled(&self) -> bool {
        self.assembler.is_partial() || !self.request.is_empty() || !self.pending.is_empty()
    }

    fn reset(&mut self, now: Instant) {
        self.assembler.reset();
        self.request.clear();
        self.pending.clear();
        self.close_after = false;
        self.last_progress = now;
        self.closing_since = None;
    }

    /// Drops whatever the socket holds (RST if still connected) and listens again.
    fn recycle(&mut self, socket: &mut tcp::Socket<'_>, now: Instant) {
        socket.abort();
        self.reset(now);
        let _ = socket.listen(self.port);
    }

    fn poll(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        locality: &mut u8,
        now: Instant,
        execute: &mut dyn FnMut(u8, &[u8]) -> Vec<u8>,
    ) -> bool {
        match socket.state() {
            tcp::State::Closed | tcp::State::TimeWait => {
                // Done (or waiting out TIME-WAIT after we closed): serve the next client.
                self.recycle(socket, now);
                return false;
            }
            tcp::State::Listen | tcp::State::SynReceived => {
                self.last_progress = now;
                return false;
            }
            // Both FINs exchanged (Closing, LastAck) and every byte we sent acknowledged: the
            // peer has all of its responses and will send nothing more, so only the ACK of our
            // FIN is outstanding. Waiting for it costs a socket for up to an RTO (1 s in
            // smoltcp), and a client that reconnects quickly (the swtpm TCTI opens a connection
            // per command) then finds no socket listening and is reset. Free the socket now,
            // as for TIME-WAIT above.
            tcp::State::Closing | tcp::State::LastAck if socket.send_queue() == 0 => {
                self.recycle(socket, now);
                return true;
            }
            // Our FIN is out but the peer neither acknowledges it nor closes: do not hold the
            // socket longer than [`CLOSE_TIMEOUT_MS`].
            tcp::State::FinWait1
            | tcp::State::FinWait2
            | tcp::State::Closing
            | tcp::State::LastAck => {
                let since = *self.closing_since.get_or_insert(now);
                if now >= since + Duration::from_millis(CLOSE_TIMEOUT_MS) {
                    self.recycle(socket, now);
                    return true;
                }
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
            let (assembler, request, control) =
                (&mut self.assembler, &mut self.request, self.control);
            let taken = socket
                .recv(|data| {
                    let n = if control {
                        swtpm::control::push(request, data)
                    } else {
                        assembler.push(data)
                    };
                    (n, n)
                })
                .unwrap_or(0);
            if taken == 0 {
                break;
            }
            self.last_progress = now;
            progress = true;
            if self.control {
                if swtpm::control::is_complete(&self.request) {
                    self.pending = swtpm::control::reply(&self.request, locality);
                    self.request.clear();
                }
            } else {
                match self.assembler.status() {
                    Status::Incomplete => {}
                    Status::Complete => {
                        let command = self.assembler.take();
                        self.pending = execute(*locality, &command);
                    }
                    Status::BadSize(_) => {
                        self.assembler.reset();
                        self.pending = swtpm::size_error_response();
                        self.close_after = true;
                    }
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
            self.request.clear();
            socket.close();
            progress = true;
        }

        if self.is_stalled() && now >= self.last_progress + Duration::from_millis(STALL_TIMEOUT_MS)
        {
            socket.abort();
            self.reset(now);
            progress = true;
        }
        progress
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::iface::{Config, Interface};
    use smoltcp::phy::{FaultInjector, Loopback, Medium};
    use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

    const PORT: u16 = 2321;
    const GET_RANDOM_8: [u8; 12] = [0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x7b, 0, 8];

    /// Server and clients on one smoltcp interface over a loopback device.
    struct Net {
        /// Loopback with fault injection off unless a test turns it on.
        device: FaultInjector<Loopback>,
        iface: Interface,
        sockets: SocketSet<'static>,
        server: TpmServer,
        now: Instant,
        executed: usize,
    }

    impl Net {
        fn new() -> Net {
            let mut device = FaultInjector::new(Loopback::new(Medium::Ethernet), 1);
            let config = Config::new(HardwareAddress::Ethernet(EthernetAddress([
                2, 0, 0, 0, 0, 1,
            ])));
            let now = Instant::from_millis(0);
            let mut iface = Interface::new(config, &mut device, now);
            iface.update_ip_addrs(|a| {
                a.push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8)).unwrap();
            });
            let mut sockets = SocketSet::new(vec![]);
            let server = TpmServer::new(&mut sockets, PORT, PORT + 1, now);
            Net {
                device,
                iface,
                sockets,
                server,
                now,
                executed: 0,
            }
        }

        fn client(&mut self, local_port: u16) -> SocketHandle {
            self.client_to(local_port, PORT)
        }

        fn client_to(&mut self, local_port: u16, port: u16) -> SocketHandle {
            let rx = tcp::SocketBuffer::new(vec![0u8; 8192]);
            let tx = tcp::SocketBuffer::new(vec![0u8; 8192]);
            let mut socket = tcp::Socket::new(rx, tx);
            socket
                .connect(
                    self.iface.context(),
                    (IpAddress::v4(127, 0, 0, 1), port),
                    local_port,
                )
                .unwrap();
            self.sockets.add(socket)
        }

        /// Runs the network for `steps` rounds of 10 ms; the engine answers every command with
        /// a 10-byte response carrying the command code's low 24 bits and the locality as rc.
        fn run(&mut self, steps: usize) {
            for _ in 0..steps {
                self.now += Duration::from_millis(10);
                self.iface
                    .poll(self.now, &mut self.device, &mut self.sockets);
                let executed = &mut self.executed;
                self.server
                    .poll(&mut self.sockets, self.now, &mut |locality, cmd: &[u8]| {
                        *executed += 1;
                        let mut r = vec![0x80, 0x01, 0, 0, 0, 10, locality];
                        r.extend_from_slice(&cmd[7..10]);
                        r
                    });
            }
        }

        fn socket(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
            self.sockets.get_mut::<tcp::Socket>(h)
        }

        fn received(&mut self, h: SocketHandle) -> Vec<u8> {
            let mut out = vec![];
            let s = self.socket(h);
            while s.can_recv() {
                s.recv(|d| {
                    out.extend_from_slice(d);
                    (d.len(), ())
                })
                .unwrap();
            }
            out
        }
    }

    #[test]
    fn many_commands_on_one_connection_and_split_writes() {
        let mut net = Net::new();
        let c = net.client(50000);
        net.run(5);
        assert!(net.socket(c).may_send());
        net.socket(c).send_slice(&GET_RANDOM_8).unwrap();
        net.socket(c).send_slice(&GET_RANDOM_8[..4]).unwrap();
        net.run(5);
        // The second command is incomplete: one response so far.
        assert_eq!(net.received(c), [0x80, 1, 0, 0, 0, 10, 0, 0, 1, 0x7b]);
        net.socket(c).send_slice(&GET_RANDOM_8[4..]).unwrap();
        net.run(5);
        assert_eq!(net.received(c).len(), 10);
        assert_eq!(net.executed, 2);
    }

    #[test]
    fn bad_size_gets_an_error_and_a_close() {
        let mut net = Net::new();
        let c = net.client(50001);
        net.run(5);
        net.socket(c)
            .send_slice(&[0x80, 1, 0, 0, 0x20, 0, 0, 0, 1, 0x7b])
            .unwrap();
        net.run(10);
        assert_eq!(net.received(c), crate::swtpm::size_error_response());
        assert!(!net.socket(c).may_recv(), "server closed its side");
        assert_eq!(net.executed, 0);
    }

    #[test]
    fn aborted_and_stalled_clients_free_their_sockets() {
        let mut net = Net::new();
        // Every server socket gets a client that sends half a command; half of them abort.
        let clients: Vec<_> = (0..CONNECTIONS as u16)
            .map(|i| net.client(51000 + i))
            .collect();
        net.run(5);
        for (i, &c) in clients.iter().enumerate() {
            net.socket(c).send_slice(&GET_RANDOM_8[..7]).unwrap();
            if i % 2 == 0 {
                net.run(2);
                net.socket(c).abort();
            }
        }
        net.run(5);
        // The aborted ones are free again right away.
        let fresh = net.client(52000);
        net.run(5);
        net.socket(fresh).send_slice(&GET_RANDOM_8).unwrap();
        net.run(5);
        assert_eq!(net.received(fresh).len(), 10);
        // The stalled ones are cut after STALL_TIMEOUT_MS.
        assert!(net.server.next_deadline().is_some());
        net.run((STALL_TIMEOUT_MS / 10) as usize + 5);
        for (i, &c) in clients.iter().enumerate() {
            if i % 2 == 1 {
                assert!(
                    !net.socket(c).is_active(),
                    "stalled client {i} still connected"
                );
            }
        }
        assert_eq!(net.executed, 1);
    }

    /// Every server socket is listening again.
    fn all_listening(net: &mut Net) -> bool {
        let handles: Vec<_> = net.server.connections.iter().map(|c| c.handle).collect();
        handles
            .into_iter()
            .all(|h| net.socket(h).state() == tcp::State::Listen)
    }

    #[test]
    fn closed_connections_are_recycled_at_once() {
        let mut net = Net::new();
        // Far more reconnects than sockets: each client gets the bad-size error and the
        // server's FIN, closes too, and the socket must be listening again within 50 ms.
        for i in 0..(4 * CONNECTIONS as u16) {
            let c = net.client(54000 + i);
            net.run(5);
            net.socket(c)
                .send_slice(&[0x80, 1, 0, 0, 0, 4, 0, 0, 1, 0x7b])
                .unwrap();
            net.run(10);
            assert_eq!(net.received(c), crate::swtpm::size_error_response());
            net.socket(c).close();
            net.run(5);
            assert!(
                all_listening(&mut net),
                "round {i}: a socket is still closing"
            );
        }
    }

    #[test]
    fn a_peer_that_vanishes_after_our_fin_frees_the_socket() {
        let mut net = Net::new();
        let c = net.client(55000);
        net.run(5);
        net.socket(c)
            .send_slice(&[0x80, 1, 0, 0, 0, 4, 0, 0, 1, 0x7b])
            .unwrap();
        // Once the server has sent its FIN, the network goes silent: nothing it sends is
        // acknowledged and the peer never closes.
        let server = net.server.connections[0].handle;
        for _ in 0..20 {
            if net.socket(server).state() == tcp::State::FinWait1 {
                break;
            }
            net.run(1);
        }
        assert_eq!(net.socket(server).state(), tcp::State::FinWait1);
        net.device.set_drop_chance(100);
        net.run(20);
        assert_eq!(net.socket(server).state(), tcp::State::FinWait1);
        assert!(
            net.server.next_deadline().is_some(),
            "closing has a deadline"
        );
        net.run((CLOSE_TIMEOUT_MS / 10) as usize);
        assert!(
            all_listening(&mut net),
            "socket not released after CLOSE_TIMEOUT_MS"
        );
    }

    #[test]
    fn control_channel_sets_the_locality() {
        let mut net = Net::new();
        let ctrl = net.client_to(53000, PORT + 1);
        let data = net.client(53001);
        net.run(5);
        net.socket(ctrl).send_slice(&[0, 0, 0, 5]).unwrap();
        net.run(2);
        net.socket(ctrl).send_slice(&[3, 0, 0, 0, 1]).unwrap();
        net.run(5);
        assert_eq!(net.received(ctrl), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8]);
        net.socket(data).send_slice(&GET_RANDOM_8).unwrap();
        net.run(5);
        assert_eq!(net.received(data), [0x80, 1, 0, 0, 0, 10, 3, 0, 1, 0x7b]);
    }
}
