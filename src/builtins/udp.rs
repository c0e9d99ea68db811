//! The UDP side of the builtins: one [`UdpServer`] per bound datagram
//! socket drains it to `WouldBlock` and answers each datagram whose source
//! may be answered ([`udp_source_allowed`]).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use log::warn;

use super::{MAX_DATAGRAM, PRINTABLE, UDP_BUDGET, chargen_line, format_daytime, format_time};
use crate::limits::LogBudget;
use crate::logging::quote;
use crate::service::Builtin;

/// Whether a UDP builtin may answer a datagram from `peer`. Never to a
/// source port below 1024 (superd(8), CAVEATS: two servers, e.g. echo and chargen,
/// must not be made to answer each other forever) nor to 2049 (NFS, as
/// OpenBSD inetd's `dg_badinput`), and never to a source no host can own:
/// unspecified, "this network" (0.0.0.0/8, RFC 1122), multicast
/// (224.0.0.0/4, ff00::/8), reserved and limited broadcast (240.0.0.0/4,
/// including 255.255.255.255), in IPv4-mapped form too. Subnet-directed
/// broadcast addresses depend on the interfaces and are not caught here.
pub fn udp_source_allowed(peer: SocketAddr) -> bool {
    if peer.port() < 1024 || peer.port() == 2049 {
        return false;
    }
    match peer.ip() {
        IpAddr::V4(v4) => v4_source_ok(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4_source_ok(v4),
            None => !v6.is_multicast() && !v6.is_unspecified(),
        },
    }
}

fn v4_source_ok(ip: Ipv4Addr) -> bool {
    let first = ip.octets()[0];
    first != 0 && first < 224
}

/// The reply to one datagram, written into `out` (cleared first); `false`
/// means no reply (discard). Daytime and time ignore the request's content
/// (RFC 867, 868); echo returns it whole (RFC 862). Chargen answers with
/// one 74-byte line, as BSD inetd does: RFC 864 allows 0 to 512 characters,
/// and one line keeps the answer small for a spoofed request. This
/// stateless form always sends line 0; [`UdpServer`] rotates the line.
#[cfg(test)]
fn udp_reply(
    kind: Builtin,
    request: &[u8],
    now_unix: i64,
    utc_offset: i64,
    out: &mut Vec<u8>,
) -> bool {
    udp_reply_at(kind, request, now_unix, utc_offset, 0, out)
}

fn udp_reply_at(
    kind: Builtin,
    request: &[u8],
    now_unix: i64,
    utc_offset: i64,
    chargen_line_no: usize,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    match kind {
        Builtin::Echo => out.extend_from_slice(request),
        Builtin::Discard => return false,
        Builtin::Daytime => out.extend_from_slice(format_daytime(now_unix, utc_offset).as_bytes()),
        Builtin::Time => out.extend_from_slice(&format_time(now_unix)),
        Builtin::Chargen => out.extend_from_slice(chargen_line(chargen_line_no)),
        // Stream only (refused at load on a datagram socket).
        Builtin::Metrics | Builtin::Status => return false,
    }
    true
}

/// A datagram socket a [`UdpServer`] can drain; implemented for mio's and
/// std's `UdpSocket`, both used non-blocking.
pub trait DatagramSocket {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)>;
    fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize>;
}

impl DatagramSocket for std::net::UdpSocket {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        std::net::UdpSocket::recv_from(self, buf)
    }
    fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        std::net::UdpSocket::send_to(self, buf, target)
    }
}

/// What became of one datagram, for the loop's logs and counters.
#[derive(Debug, PartialEq, Eq)]
pub enum UdpOutcome {
    /// A reply of this many bytes was sent.
    Replied(usize),
    /// The service sends nothing (discard).
    NoReply,
    /// [`udp_source_allowed`] said no.
    BadSource,
    /// The loop's `admit` said no (access rules, limits).
    Refused,
    /// The send failed (`WouldBlock` included: a UDP reply is dropped,
    /// never queued).
    SendFailed(io::ErrorKind),
}

/// One datagram handled by [`UdpServer::serve`].
#[derive(Debug, PartialEq, Eq)]
pub struct UdpDatagram {
    pub peer: SocketAddr,
    pub bytes_in: usize,
    pub outcome: UdpOutcome,
}

/// The result of one [`UdpServer::serve`] call.
#[derive(Debug, Default)]
pub struct UdpDrain {
    pub datagrams: Vec<UdpDatagram>,
    /// Stopped after [`UDP_BUDGET`] datagrams without seeing `WouldBlock`:
    /// call `serve` again soon, no new edge will come for what is queued.
    pub again: bool,
}

/// The UDP side of one builtin listener: its buffers and chargen's
/// rotating line. The loop keeps one per bound UDP socket and calls
/// [`UdpServer::serve`] on every readable event.
#[derive(Debug)]
pub struct UdpServer {
    kind: Builtin,
    recv: Vec<u8>,
    reply: Vec<u8>,
    chargen_next: usize,
    /// Receive errors that stopped a drain (not the consumed ICMP reports).
    receive_errors: u64,
    /// Bounds their `receive failed` lines to one per
    /// [`RECEIVE_LOG_INTERVAL`].
    receive_log: LogBudget,
}

/// At most one `receive failed` line per builtin UDP socket this often, the
/// next one saying how many were left out (as the `refused` lines).
const RECEIVE_LOG_INTERVAL: Duration = Duration::from_secs(1);

impl UdpServer {
    pub fn new(kind: Builtin) -> UdpServer {
        UdpServer {
            kind,
            recv: Vec::new(),
            reply: Vec::new(),
            chargen_next: 0,
            receive_errors: 0,
            receive_log: LogBudget::default(),
        }
    }

    pub fn kind(&self) -> Builtin {
        self.kind
    }

    /// Receive errors so far that stopped a drain (each logged, or counted
    /// in the next line's `suppressed=`).
    #[cfg(test)]
    pub fn receive_errors(&self) -> u64 {
        self.receive_errors
    }

    /// A receive error that is not a consumed ICMP report: counted, and
    /// logged at most once per [`RECEIVE_LOG_INTERVAL`]. The drain stops on
    /// it; the next readable event (or `again`) tries again.
    fn receive_failed(&mut self, e: &io::Error) {
        self.receive_errors += 1;
        if let Some(left_out) = self.receive_log.take(Instant::now(), RECEIVE_LOG_INTERVAL) {
            warn!(
                "receive failed builtin={} error={}{}",
                self.kind.as_str(),
                quote(&e.to_string()),
                if left_out > 0 {
                    format!(" suppressed={left_out}")
                } else {
                    String::new()
                }
            );
        }
    }

    /// chargen's rotation: the line the next datagram starts at (carried
    /// across an upgrade).
    pub fn rotation(&self) -> usize {
        self.chargen_next
    }

    pub fn set_rotation(&mut self, next: usize) {
        self.chargen_next = next;
    }

    /// Reads datagrams until `WouldBlock` (or [`UDP_BUDGET`], or `most`:
    /// the tokens the service's `rate` has left) and answers each one
    /// whose source passes [`udp_source_allowed`], does not come from one
    /// of `own_ports` (sorted: superd's own UDP builtins, OpenBSD inetd's
    /// `check_loop`), and passes `admit` (the loop's access checks).
    pub fn serve<S, F>(
        &mut self,
        socket: &S,
        now_unix: i64,
        utc_offset: i64,
        most: usize,
        own_ports: &[u16],
        mut admit: F,
    ) -> UdpDrain
    where
        S: DatagramSocket,
        F: FnMut(SocketAddr) -> bool,
    {
        if self.recv.len() < MAX_DATAGRAM {
            self.recv.resize(MAX_DATAGRAM, 0);
        }
        let mut drain = UdpDrain::default();
        for _ in 0..UDP_BUDGET.min(most) {
            let (n, peer) = match socket.recv_from(&mut self.recv) {
                Ok(got) => got,
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return drain,
                    // Retrying costs budget, so a storm of these cannot spin.
                    io::ErrorKind::Interrupted => continue,
                    // A pending ICMP error reported on the socket: reading
                    // it cleared it, more datagrams may be queued behind.
                    io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::HostUnreachable
                    | io::ErrorKind::NetworkUnreachable => continue,
                    _ => {
                        self.receive_failed(&e);
                        return drain;
                    }
                },
            };
            let outcome =
                if !udp_source_allowed(peer) || own_ports.binary_search(&peer.port()).is_ok() {
                    UdpOutcome::BadSource
                } else if !admit(peer) {
                    UdpOutcome::Refused
                } else if udp_reply_at(
                    self.kind,
                    &self.recv[..n],
                    now_unix,
                    utc_offset,
                    self.chargen_next,
                    &mut self.reply,
                ) {
                    if self.kind == Builtin::Chargen {
                        self.chargen_next = (self.chargen_next + 1) % PRINTABLE;
                    }
                    send_reply(socket, &self.reply, peer)
                } else {
                    UdpOutcome::NoReply
                };
            drain.datagrams.push(UdpDatagram {
                peer,
                bytes_in: n,
                outcome,
            });
        }
        drain.again = true;
        drain
    }
}

fn send_reply<S: DatagramSocket>(socket: &S, reply: &[u8], peer: SocketAddr) -> UdpOutcome {
    loop {
        return match socket.send_to(reply, peer) {
            Ok(n) => UdpOutcome::Replied(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => UdpOutcome::SendFailed(e.kind()),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtins::tests::pattern;
    use std::net::UdpSocket;

    // --- UDP -----------------------------------------------------------------

    #[test]
    fn udp_sources_table() {
        let v4 = |s: &str, port| SocketAddr::new(s.parse().unwrap(), port);
        let cases = [
            (v4("127.0.0.1", 40000), true),
            (v4("192.0.2.7", 1024), true),
            (v4("192.0.2.7", 1023), false),
            (v4("192.0.2.7", 7), false),
            (v4("192.0.2.7", 19), false),
            (v4("192.0.2.7", 0), false),
            (v4("192.0.2.7", 2049), false),
            (v4("0.0.0.0", 40000), false),
            (v4("0.1.2.3", 40000), false),
            (v4("255.255.255.255", 40000), false),
            (v4("240.0.0.1", 40000), false),
            (v4("224.0.0.1", 40000), false),
            (v4("239.255.255.250", 40000), false),
            (v4("223.255.255.255", 40000), true),
            (v4("::1", 40000), true),
            (v4("2001:db8::1", 40000), true),
            (v4("2001:db8::1", 123), false),
            (v4("::", 40000), false),
            (v4("ff02::1", 40000), false),
            (v4("ff05::2", 40000), false),
            (v4("::ffff:127.0.0.1", 40000), true),
            (v4("::ffff:255.255.255.255", 40000), false),
            (v4("::ffff:224.0.0.9", 40000), false),
            (v4("::ffff:0.0.0.0", 40000), false),
        ];
        for (addr, want) in cases {
            assert_eq!(udp_source_allowed(addr), want, "{addr}");
        }
    }

    #[test]
    fn udp_replies() {
        let mut out = vec![9; 3];
        assert!(!udp_reply(Builtin::Discard, b"x", 0, 0, &mut out));
        assert!(udp_reply(Builtin::Echo, b"ping", 0, 0, &mut out));
        assert_eq!(out, b"ping");
        assert!(udp_reply(Builtin::Time, b"", 0, 0, &mut out));
        assert_eq!(out, format_time(0));
        assert!(udp_reply(Builtin::Daytime, b"", 0, 0, &mut out));
        assert_eq!(out, b"Thu Jan  1 00:00:00 1970\r\n");
        assert!(udp_reply(Builtin::Chargen, b"", 0, 0, &mut out));
        assert_eq!(out, chargen_line(0));
        assert!(out.len() <= 512);
    }

    fn udp_pair() -> (UdpSocket, UdpSocket) {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_nonblocking(true).unwrap();
        client.connect(server.local_addr().unwrap()).unwrap();
        (server, client)
    }

    fn recv(client: &UdpSocket) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        match client.recv(&mut buf) {
            Ok(n) => Some(buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) => panic!("client recv: {e}"),
        }
    }

    /// A datagram from one of superd's own UDP builtin ports is never
    /// answered, whatever its address: a spoofed source would have two
    /// builtins (or one and itself) answer each other forever.
    #[test]
    fn udp_server_never_answers_its_own_ports() {
        let (server, client) = udp_pair();
        let me = client.local_addr().unwrap();
        let mut echo = UdpServer::new(Builtin::Echo);
        client.send(b"loop?").unwrap();
        let d = echo.serve(&server, 0, 0, usize::MAX, &[me.port()], |_| true);
        assert_eq!(d.datagrams[0].outcome, UdpOutcome::BadSource);
        assert_eq!(recv(&client), None);
    }

    /// `most` (the rate's tokens) stops the drain early; the rest stay
    /// queued for the next call.
    #[test]
    fn udp_server_reads_at_most_its_tokens() {
        let (server, client) = udp_pair();
        let mut echo = UdpServer::new(Builtin::Echo);
        for p in [b"a", b"b", b"c"] {
            client.send(p).unwrap();
        }
        let d = echo.serve(&server, 0, 0, 2, &[], |_| true);
        assert_eq!(d.datagrams.len(), 2);
        assert!(d.again, "stopped before WouldBlock");
        let d = echo.serve(&server, 0, 0, usize::MAX, &[], |_| true);
        assert_eq!(d.datagrams.len(), 1);
        assert!(!d.again);
    }

    #[test]
    fn udp_server_answers_until_wouldblock() {
        let (server, client) = udp_pair();
        let me = client.local_addr().unwrap();
        let mut echo = UdpServer::new(Builtin::Echo);

        // Nothing queued: nothing done.
        let d = echo.serve(&server, 0, 0, usize::MAX, &[], |_| true);
        assert!(d.datagrams.is_empty() && !d.again && echo.receive_errors() == 0);

        let big = pattern(60_000);
        client.send(b"one").unwrap();
        client.send(&big).unwrap();
        let d = echo.serve(&server, 0, 0, usize::MAX, &[], |_| true);
        assert!(!d.again && echo.receive_errors() == 0);
        assert_eq!(
            d.datagrams,
            vec![
                UdpDatagram {
                    peer: me,
                    bytes_in: 3,
                    outcome: UdpOutcome::Replied(3)
                },
                UdpDatagram {
                    peer: me,
                    bytes_in: 60_000,
                    outcome: UdpOutcome::Replied(60_000)
                },
            ]
        );
        assert_eq!(recv(&client).unwrap(), b"one");
        assert_eq!(recv(&client).unwrap(), big);

        // The loop's admit says no: no reply.
        client.send(b"two").unwrap();
        let d = echo.serve(&server, 0, 0, usize::MAX, &[], |peer| peer != me);
        assert_eq!(d.datagrams[0].outcome, UdpOutcome::Refused);
        assert_eq!(recv(&client), None);
    }

    #[test]
    fn udp_chargen_rotates_and_discard_is_silent() {
        let (server, client) = udp_pair();
        let mut chargen = UdpServer::new(Builtin::Chargen);
        client.send(b"").unwrap();
        client.send(b"x").unwrap();
        let d = chargen.serve(&server, 0, 0, usize::MAX, &[], |_| true);
        assert_eq!(d.datagrams.len(), 2);
        assert_eq!(recv(&client).unwrap(), chargen_line(0));
        let second = recv(&client).unwrap();
        assert_eq!(second, chargen_line(1));
        assert!(second.len() <= 512);

        let mut discard = UdpServer::new(Builtin::Discard);
        client.send(b"drop me").unwrap();
        let d = discard.serve(&server, 0, 0, usize::MAX, &[], |_| true);
        assert_eq!(d.datagrams[0].outcome, UdpOutcome::NoReply);
        assert_eq!(recv(&client), None);

        let mut time = UdpServer::new(Builtin::Time);
        client.send(b"").unwrap();
        time.serve(&server, 0, 0, usize::MAX, &[], |_| true);
        assert_eq!(recv(&client).unwrap(), format_time(0));
    }

    #[test]
    fn udp_server_yields_after_its_budget() {
        let (server, client) = udp_pair();
        let mut discard = UdpServer::new(Builtin::Discard);
        for _ in 0..UDP_BUDGET + 3 {
            client.send(b"x").unwrap();
        }
        let d = discard.serve(&server, 0, 0, usize::MAX, &[], |_| true);
        assert!(d.again);
        assert_eq!(d.datagrams.len(), UDP_BUDGET);
        let d = discard.serve(&server, 0, 0, usize::MAX, &[], |_| true);
        assert!(!d.again);
        assert_eq!(d.datagrams.len(), 3);
    }

    /// A socket whose every receive fails as given.
    struct Failing(io::ErrorKind);

    impl DatagramSocket for Failing {
        fn recv_from(&self, _: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
            Err(io::Error::from(self.0))
        }
        fn send_to(&self, _: &[u8], _: SocketAddr) -> io::Result<usize> {
            unreachable!("nothing was received")
        }
    }

    /// A receive error stops the drain and is counted (and logged), not
    /// dropped; the ICMP reports a read consumes are neither.
    #[test]
    fn udp_server_counts_receive_errors() {
        let mut echo = UdpServer::new(Builtin::Echo);
        for _ in 0..3 {
            let d = echo.serve(
                &Failing(io::ErrorKind::PermissionDenied),
                0,
                0,
                10,
                &[],
                |_| true,
            );
            assert!(d.datagrams.is_empty() && !d.again);
        }
        assert_eq!(echo.receive_errors(), 3);
        let d = echo.serve(
            &Failing(io::ErrorKind::ConnectionRefused),
            0,
            0,
            10,
            &[],
            |_| true,
        );
        assert!(d.datagrams.is_empty());
        assert_eq!(echo.receive_errors(), 3);
    }
}
