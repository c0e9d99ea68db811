//! Unit tests of the stream sessions: pumps, rings, chargen and echo over socket pairs.

use super::*;
use crate::builtins::tests::pattern;
use crate::builtins::{CHARGEN_LINE_BYTES, chargen_line};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;

/// A connected non-blocking pair: (superd's side, the peer).
fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

/// Reads what is available into `into`; true at EOF.
fn drain(peer: &mut UnixStream, into: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 65536];
    loop {
        match peer.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) => panic!("peer read: {e}"),
        }
    }
}

/// Writes what fits; the number of bytes written.
fn fill(peer: &mut UnixStream, data: &[u8]) -> usize {
    let mut sent = 0;
    while sent < data.len() {
        match peer.write(&data[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("peer write: {e}"),
        }
    }
    sent
}

// --- upgrade ---------------------------------------------------------

/// A session carried across an upgrade goes on where it stopped: echo
/// sends what it still owed, chargen goes on with the next byte.
#[test]
fn a_carried_session_goes_on_where_it_stopped() {
    let (mut ours, mut peer) = pair();
    let mut echo = Session::new(Builtin::Echo, 0, 0);
    // Read without room to write: the peer's side is full.
    let big = pattern(8 * 1024 * 1024);
    let mut sent = 0;
    for _ in 0..1000 {
        sent += fill(&mut peer, &big[sent..]);
        let _ = echo.pump(&mut ours);
        if echo.buffered() > 0 {
            break;
        }
    }
    let c = echo.carry().expect("echo is carried");
    let CarriedKind::Echo(pending) = &c.kind else {
        panic!("{c:?}")
    };
    assert!(!pending.is_empty());
    assert_eq!(c.bytes_in, echo.bytes_in());
    let mut again = Session::carried(c);
    assert_eq!(again.bytes_out(), echo.bytes_out());
    let mut got = Vec::new();
    for _ in 0..10_000 {
        drain(&mut peer, &mut got);
        let _ = again.pump(&mut ours);
        if got.len() >= sent {
            break;
        }
    }
    assert_eq!(got, big[..sent]);

    let (mut ours, mut peer) = pair();
    let mut chargen = Session::new(Builtin::Chargen, 0, 0);
    let mut first = Vec::new();
    let _ = chargen.pump(&mut ours);
    drain(&mut peer, &mut first);
    let c = chargen.carry().expect("chargen is carried");
    assert_eq!(c.kind, CarriedKind::Chargen(first.len() % CHARGEN_PERIOD));
    drop(chargen);
    let mut again = Session::carried(c);
    let mut next = Vec::new();
    let _ = again.pump(&mut ours);
    drain(&mut peer, &mut next);
    let k = first.len() % CHARGEN_PERIOD;
    let want: Vec<u8> = (0..10).map(|i| CHARGEN[(k + i) % CHARGEN_PERIOD]).collect();
    assert_eq!(next[..10], want[..]);

    let metrics = Session::new(Builtin::Metrics, 0, 0);
    assert!(metrics.carry().is_none());
}

// --- stream sessions ---------------------------------------------------

#[test]
fn echo_round_trips_one_mib() {
    let (mut server, mut peer) = pair();
    let mut s = Session::new(Builtin::Echo, 0, 0);
    let data = pattern(1 << 20);
    let (mut sent, mut got) = (0, Vec::new());
    let mut rounds = 0;
    while got.len() < data.len() {
        rounds += 1;
        assert!(rounds < 100_000, "no progress");
        sent += fill(&mut peer, &data[sent..]);
        let p = s.pump(&mut server);
        assert!(!p.done);
        assert!(s.buffered() <= MAX_BUFFERED);
        assert!(!drain(&mut peer, &mut got));
    }
    assert_eq!(got, data);
    assert_eq!(s.bytes_in(), 1 << 20);
    assert_eq!(s.bytes_out(), 1 << 20);

    peer.shutdown(Shutdown::Write).unwrap();
    let p = s.pump(&mut server);
    assert!(p.done && !p.progressed);
    assert!(s.error().is_none());
    drop(server);
    assert!(drain(&mut peer, &mut got));
    assert_eq!(got.len(), 1 << 20);
}

#[test]
fn echo_buffers_at_most_64k_and_resumes_by_itself() {
    let (mut server, mut peer) = pair();
    let mut s = Session::new(Builtin::Echo, 0, 0);
    let data = pattern(4 << 20);
    let mut sent = 0;
    // The peer writes without reading until everything is full.
    loop {
        let n = fill(&mut peer, &data[sent..]);
        sent += n;
        // `again` may be set (socket buffers exceed the budget): the
        // next turn calls pump again, as the loop would.
        let p = s.pump(&mut server);
        assert!(!p.done);
        assert!(s.buffered() <= MAX_BUFFERED);
        if n == 0 && !p.progressed {
            break;
        }
    }
    assert!(
        sent < data.len(),
        "1 MiB cannot fit in two socket buffers and 64 KiB"
    );
    assert_eq!(s.buffered(), MAX_BUFFERED);
    // Paused, not spinning: further calls return at once with nothing done.
    for _ in 0..3 {
        assert_eq!(s.pump(&mut server), Pump::default());
    }
    let before_in = s.bytes_in();

    // The peer reads once; a single pump writes AND resumes reading data
    // that is already queued (no new readable edge would announce it).
    let mut got = Vec::new();
    drain(&mut peer, &mut got);
    assert!(!got.is_empty());
    let p = s.pump(&mut server);
    assert!(p.progressed);
    assert!(s.bytes_in() > before_in, "reading resumed in the same call");
    assert!(s.buffered() <= MAX_BUFFERED);

    // Then everything comes back, in order.
    let mut rounds = 0;
    while got.len() < data.len() {
        rounds += 1;
        assert!(rounds < 100_000, "no progress");
        sent += fill(&mut peer, &data[sent..]);
        s.pump(&mut server);
        assert!(s.buffered() <= MAX_BUFFERED);
        drain(&mut peer, &mut got);
    }
    assert_eq!(got, data);
}

#[test]
fn echo_flushes_then_ends_at_eof() {
    let (mut server, mut peer) = pair();
    let mut s = Session::new(Builtin::Echo, 0, 0);
    peer.write_all(b"hello\r\n").unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    let p = s.pump(&mut server);
    assert!(p.done && p.progressed);
    drop(server);
    let mut got = Vec::new();
    assert!(drain(&mut peer, &mut got));
    assert_eq!(got, b"hello\r\n");
    assert_eq!((s.bytes_in(), s.bytes_out()), (7, 7));
    // Once done, always done, without touching the socket.
    assert!(s.pump(&mut peer).done);
}

#[test]
fn echo_ends_when_the_peer_vanishes() {
    let (mut server, mut peer) = pair();
    let mut s = Session::new(Builtin::Echo, 0, 0);
    peer.write_all(b"abc").unwrap();
    drop(peer);
    let p = s.pump(&mut server);
    assert!(p.done);
    // EOF after the data or EPIPE on the write back: either way done.
    assert_eq!(s.bytes_in(), 3);
}

#[test]
fn discard_reads_and_ends_at_eof() {
    let (mut server, mut peer) = pair();
    let mut s = Session::new(Builtin::Discard, 0, 0);
    let p = s.pump(&mut server);
    assert_eq!(p, Pump::default()); // spurious event: harmless
    let data = pattern(100_000);
    let sent = fill(&mut peer, &data);
    let p = s.pump(&mut server);
    assert!(p.progressed && !p.done);
    assert_eq!(s.bytes_in(), sent as u64);
    peer.shutdown(Shutdown::Write).unwrap();
    assert!(s.pump(&mut server).done);
    assert_eq!(s.bytes_out(), 0);
    drop(server);
    let mut got = Vec::new();
    assert!(drain(&mut peer, &mut got));
    assert!(got.is_empty());
}

#[test]
fn daytime_and_time_send_then_end() {
    for (kind, want) in [
        (Builtin::Daytime, b"Sat Mar  7 00:00:00 2026\r\n".to_vec()),
        (Builtin::Time, format_time(1_772_841_600).to_vec()),
    ] {
        let (mut server, mut peer) = pair();
        let mut s = Session::new(kind, 1_772_841_600, 0);
        // Input is read and dropped, so closing sends no RST.
        peer.write_all(b"ignored\n").unwrap();
        let p = s.pump(&mut server);
        assert!(p.done && p.progressed, "{kind}");
        drop(server);
        let mut got = Vec::new();
        assert!(drain(&mut peer, &mut got));
        assert_eq!(got, want, "{kind}");
        assert_eq!(s.bytes_out(), want.len() as u64);
    }
}

#[test]
fn chargen_streams_the_pattern_and_is_bounded() {
    let (mut server, mut peer) = pair();
    let mut s = Session::new(Builtin::Chargen, 0, 0);
    // The peer never reads: pump fills the socket buffer and returns
    // (over several calls if the buffer exceeds the budget).
    let mut calls = 0;
    loop {
        calls += 1;
        assert!(calls < 1000, "no end to a full socket");
        let p = s.pump(&mut server);
        assert!(!p.done);
        if !p.again {
            break;
        }
    }
    let filled = s.bytes_out();
    assert!(filled > 0);
    for _ in 0..3 {
        assert_eq!(s.pump(&mut server), Pump::default());
    }
    assert_eq!(s.bytes_out(), filled);
    // Nothing buffered: the session is a few words, whatever the peer does.
    assert!(std::mem::size_of::<Session>() < 256);
    assert_eq!(s.buffered(), 0);

    // Input is discarded; the stream is RFC 864's, from line 0.
    peer.write_all(b"noise").unwrap();
    let mut got = Vec::new();
    let mut rounds = 0;
    while got.len() < 3 * CHARGEN_PERIOD {
        rounds += 1;
        assert!(rounds < 100_000, "no progress");
        drain(&mut peer, &mut got);
        assert!(!s.pump(&mut server).done);
    }
    assert_eq!(s.bytes_in(), 5);
    for (k, line) in got.chunks_exact(CHARGEN_LINE_BYTES).enumerate() {
        assert_eq!(line, chargen_line(k), "line {k}");
    }

    // A half-close does not end the stream; the peer's close does.
    peer.shutdown(Shutdown::Write).unwrap();
    let before = got.len();
    let mut rounds = 0;
    while got.len() < before + CHARGEN_PERIOD {
        rounds += 1;
        assert!(rounds < 100_000, "no progress after the half-close");
        assert!(!s.pump(&mut server).done, "ended at the peer's EOF");
        drain(&mut peer, &mut got);
    }
    drop(peer);
    let mut rounds = 0;
    while !s.pump(&mut server).done {
        rounds += 1;
        assert!(rounds < 1000, "no end after the peer closed");
    }
    assert!(s.error().is_some(), "ended on the write error");
}

/// A stream that accepts every write and has nothing to read, after
/// one EINTR each way.
struct Sink {
    written: usize,
    interrupted_read: bool,
    interrupted_write: bool,
}

impl Read for Sink {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        if !self.interrupted_read {
            self.interrupted_read = true;
            return Err(io::ErrorKind::Interrupted.into());
        }
        Err(io::ErrorKind::WouldBlock.into())
    }
}

impl Conn for Sink {}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.interrupted_write {
            self.interrupted_write = true;
            return Err(io::ErrorKind::Interrupted.into());
        }
        self.written += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn pump_retries_eintr_and_yields_after_its_budget() {
    let mut sink = Sink {
        written: 0,
        interrupted_read: false,
        interrupted_write: false,
    };
    let mut s = Session::new(Builtin::Chargen, 0, 0);
    let p = s.pump(&mut sink);
    assert!(p.progressed && p.again && !p.done);
    assert!(sink.written >= PUMP_BUDGET && sink.written < PUMP_BUDGET + CHARGEN_PERIOD);
    assert_eq!(s.bytes_out(), sink.written as u64);
    assert!(s.pump(&mut sink).again);
}
