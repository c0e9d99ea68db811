//! The builtin services (echo, discard, daytime, chargen, time): their RFC
//! formats, a non-blocking stream [`Session`] pumped on every readiness event,
//! and a UDP drain ([`UdpServer`]). Sockets, registration, timers, limits and
//! logs belong to the event loop; nothing here blocks, sleeps or logs.

use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::service::Builtin;

/// The most a stream session holds for one peer (superd(8), BUILTINS): echo stops
/// reading while this much is waiting to be written back.
pub const MAX_BUFFERED: usize = 64 * 1024;

/// Bytes one [`Session::pump`] call may move before it yields with
/// [`Pump::again`], so that one fast peer cannot starve the loop.
pub const PUMP_BUDGET: usize = 256 * 1024;

/// Datagrams one [`UdpServer::serve`] call may handle before it yields with
/// [`UdpDrain::again`].
pub const UDP_BUDGET: usize = 64;

/// The largest datagram read (and so echoed); larger ones are truncated by
/// the kernel. 65535 minus the UDP and IP headers fits.
pub const MAX_DATAGRAM: usize = 64 * 1024;

/// Where echo's buffer starts; it doubles up to [`MAX_BUFFERED`] only for a
/// peer that sends faster than it reads.
const ECHO_INITIAL: usize = 4096;

/// Scratch for input that is read only to be dropped (discard, chargen,
/// daytime, time).
const SCRATCH: usize = 16 * 1024;

// ---------------------------------------------------------------------------
// Formats
// ---------------------------------------------------------------------------

/// Seconds from 1900-01-01 (RFC 868's epoch) to 1970-01-01 (Unix's).
pub const RFC868_OFFSET: i64 = 2_208_988_800;

/// RFC 868: the time as a 32-bit big-endian count of seconds since
/// 1900-01-01 00:00 UTC. The count wraps modulo 2^32 (next in 2036), as the
/// RFC's fixed 32-bit field forces every implementation to.
pub fn format_time(unix_secs: i64) -> [u8; 4] {
    (unix_secs.wrapping_add(RFC868_OFFSET) as u32).to_be_bytes()
}

/// RFC 867 leaves the daytime format free; like inetd we send ctime(3)'s
/// 24 characters (`"%.3s %.3s%3d %.2d:%.2d:%.2d %d"`, so a single-digit day
/// is padded with a space) followed by CRLF. `utc_offset_secs` is added to
/// shift UTC to local time (the event loop passes the local zone's offset
/// from `sys::utc_offset`; 0 gives UTC).
pub fn format_daytime(unix_secs: i64, utc_offset_secs: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let local = unix_secs.saturating_add(utc_offset_secs);
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = (days + 4).rem_euclid(7) as usize;
    format!(
        "{} {}{:3} {:02}:{:02}:{:02} {}\r\n",
        DAYS[weekday],
        MONTHS[(month - 1) as usize],
        day,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        year
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month 1..=12,
/// day 1..=31): Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Characters per chargen line, without the CRLF (RFC 864).
pub const CHARGEN_LINE: usize = 72;
/// One chargen line on the wire, CRLF included.
pub const CHARGEN_LINE_BYTES: usize = CHARGEN_LINE + 2;
/// The 95 printing ASCII characters, space (32) to tilde (126), RFC 864.
const PRINTABLE: usize = 95;
/// The chargen stream repeats after 95 lines.
const CHARGEN_PERIOD: usize = PRINTABLE * CHARGEN_LINE_BYTES;

/// RFC 864's "popular pattern": line k is the 72 printing characters that
/// start at character k (mod 95), cyclically, then CRLF. One whole period,
/// built at compile time; every chargen byte is read from it.
static CHARGEN: [u8; CHARGEN_PERIOD] = chargen_period();

const fn chargen_period() -> [u8; CHARGEN_PERIOD] {
    let mut out = [0u8; CHARGEN_PERIOD];
    let mut line = 0;
    while line < PRINTABLE {
        let mut col = 0;
        while col < CHARGEN_LINE {
            out[line * CHARGEN_LINE_BYTES + col] = b' ' + ((line + col) % PRINTABLE) as u8;
            col += 1;
        }
        out[line * CHARGEN_LINE_BYTES + CHARGEN_LINE] = b'\r';
        out[line * CHARGEN_LINE_BYTES + CHARGEN_LINE + 1] = b'\n';
        line += 1;
    }
    out
}

/// Chargen line `k` (RFC 864), CRLF included; line 95 is line 0 again.
pub fn chargen_line(k: usize) -> &'static [u8] {
    let start = (k % PRINTABLE) * CHARGEN_LINE_BYTES;
    &CHARGEN[start..start + CHARGEN_LINE_BYTES]
}

/// The current time as Unix seconds (what the event loop gives sessions);
/// before 1970 (a broken clock) reads as negative.
pub fn now_unix() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

// ---------------------------------------------------------------------------
// Stream sessions (TCP, unix stream)
// ---------------------------------------------------------------------------

/// A connected stream a [`Session`] pumps.
pub trait Conn: Read + Write {
    /// Writes `buf`, the last bytes of a session that closes the
    /// connection as soon as they are all taken. TCP holds them back
    /// (`MSG_MORE`) so that the FIN of the close leaves in the same
    /// segment: one packet fewer for the peer to receive and acknowledge.
    /// A partial write is pushed by the kernel as usual.
    fn write_final(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write(buf)
    }
}

impl Conn for std::net::TcpStream {
    fn write_final(&mut self, buf: &[u8]) -> io::Result<usize> {
        use nix::sys::socket::{MsgFlags, send};
        use std::os::fd::AsRawFd;
        send(
            self.as_raw_fd(),
            buf,
            // nix names no MSG_MORE; the bit is libc's.
            MsgFlags::from_bits_retain(libc::MSG_MORE) | MsgFlags::MSG_NOSIGNAL,
        )
        .map_err(io::Error::from)
    }
}

impl Conn for std::os::unix::net::UnixStream {}

/// A stream session where an upgrade found it (see [`Session::carry`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Carried {
    pub kind: CarriedKind,
    pub read_eof: bool,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CarriedKind {
    /// The bytes read and not yet written back.
    Echo(Vec<u8>),
    Discard,
    Reply {
        data: Vec<u8>,
        sent: usize,
    },
    /// The offset of the next byte in the 95-line period.
    Chargen(usize),
}

/// What one [`Session::pump`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pump {
    /// A byte moved one way or the other: restart the idle timer.
    pub progressed: bool,
    /// Close the connection now (and drop the session): the peer finished
    /// (EOF) and everything owed was sent, the daytime/time reply is out,
    /// or the connection failed.
    pub done: bool,
    /// The call stopped after [`PUMP_BUDGET`] bytes although the socket
    /// could still move more. No new edge will announce that, so the loop
    /// must call `pump` again soon (next turn, before sleeping).
    pub again: bool,
}

/// One builtin stream connection. The loop registers the socket for
/// READABLE | WRITABLE (edge-triggered), calls [`Session::pump`] once right
/// after accept and then on every event for it, spurious ones included.
#[derive(Debug)]
pub struct Session {
    state: State,
    /// The peer shut its write side (read returned 0).
    read_eof: bool,
    /// Set once `done` was returned; later calls do no I/O.
    finished: bool,
    error: Option<io::Error>,
    bytes_in: u64,
    bytes_out: u64,
}

#[derive(Debug)]
enum State {
    /// RFC 862: what was read and is not yet written back.
    Echo(Ring),
    /// RFC 863.
    Discard,
    /// RFC 867 / RFC 868: one reply, then close.
    Reply { data: Vec<u8>, sent: usize },
    /// RFC 864: the offset of the next byte in the 95-line period.
    Chargen { pos: usize },
    /// `metrics`: one HTTP request read (at most metrics::MAX_REQUEST
    /// bytes), then the reply the loop renders for it (see
    /// [`Session::request`]), then close.
    Http {
        req: Vec<u8>,
        parsed: Option<crate::metrics::Request>,
        reply: Option<Vec<u8>>,
        sent: usize,
    },
}

impl Session {
    /// A session for `kind`; daytime and time take their reply from
    /// `now_unix` (shifted by `utc_offset` seconds for daytime).
    pub fn new(kind: Builtin, now_unix: i64, utc_offset: i64) -> Session {
        let state = match kind {
            Builtin::Echo => State::Echo(Ring::default()),
            Builtin::Discard => State::Discard,
            Builtin::Daytime => State::Reply {
                data: format_daytime(now_unix, utc_offset).into_bytes(),
                sent: 0,
            },
            Builtin::Time => State::Reply {
                data: format_time(now_unix).to_vec(),
                sent: 0,
            },
            Builtin::Chargen => State::Chargen { pos: 0 },
            Builtin::Metrics => State::Http {
                req: Vec::new(),
                parsed: None,
                reply: None,
                sent: 0,
            },
            // The loop gives status its document (`Session::reply`).
            Builtin::Status => State::Reply {
                data: Vec::new(),
                sent: 0,
            },
        };
        Session {
            state,
            read_eof: false,
            finished: false,
            error: None,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// A session that sends `data` and closes (`status`: the loop renders
    /// the document).
    pub fn reply(data: Vec<u8>) -> Session {
        Session {
            state: State::Reply { data, sent: 0 },
            read_eof: false,
            finished: false,
            error: None,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// The session as an upgrade carries it (superd.8, UPGRADING); `None`
    /// for one that cannot be carried (an HTTP request half read) or is
    /// over.
    pub fn carry(&self) -> Option<Carried> {
        if self.finished || self.error.is_some() {
            return None;
        }
        let kind = match &self.state {
            State::Echo(ring) => CarriedKind::Echo(ring.pending().to_vec()),
            State::Discard => CarriedKind::Discard,
            State::Reply { data, sent } => CarriedKind::Reply {
                data: data.clone(),
                sent: *sent,
            },
            State::Chargen { pos } => CarriedKind::Chargen(*pos),
            State::Http { .. } => return None,
        };
        Some(Carried {
            kind,
            read_eof: self.read_eof,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
        })
    }

    /// A session carried across an upgrade, where it stopped.
    pub fn carried(c: Carried) -> Session {
        let state = match c.kind {
            CarriedKind::Echo(pending) => State::Echo(Ring {
                head: 0,
                tail: pending.len(),
                buf: pending,
            }),
            CarriedKind::Discard => State::Discard,
            CarriedKind::Reply { data, sent } => State::Reply {
                sent: sent.min(data.len()),
                data,
            },
            CarriedKind::Chargen(pos) => State::Chargen {
                pos: pos % CHARGEN_PERIOD,
            },
        };
        Session {
            state,
            read_eof: c.read_eof,
            finished: false,
            error: None,
            bytes_in: c.bytes_in,
            bytes_out: c.bytes_out,
        }
    }

    /// `metrics`: the request read, once complete, while it has no reply;
    /// the loop answers with [`Session::set_reply`] and pumps again.
    pub fn request(&self) -> Option<crate::metrics::Request> {
        match &self.state {
            State::Http {
                parsed: Some(r),
                reply: None,
                ..
            } => Some(*r),
            _ => None,
        }
    }

    /// `metrics`: the response to the request (see [`Session::request`]).
    pub fn set_reply(&mut self, data: Vec<u8>) {
        if let State::Http { reply, .. } = &mut self.state {
            *reply = Some(data);
        }
    }

    /// Bytes received from the peer so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    /// Bytes sent to the peer so far.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out
    }

    /// Bytes held for the peer (echo only; never above [`MAX_BUFFERED`]).
    #[cfg(test)]
    fn buffered(&self) -> usize {
        match &self.state {
            State::Echo(ring) => ring.len(),
            _ => 0,
        }
    }

    /// The error that ended the session, if one did (for the exit log).
    pub fn error(&self) -> Option<&io::Error> {
        self.error.as_ref()
    }

    /// Moves bytes both ways until each direction would block or is paused
    /// (echo with [`MAX_BUFFERED`] pending), the session is done, or the
    /// [`PUMP_BUDGET`] is spent. Safe on any event: with nothing to do it
    /// makes one read attempt that returns `WouldBlock`. Reading resumes in
    /// the same call once writing frees room, because data already queued in
    /// the kernel raises no new readable edge.
    pub fn pump<S: Conn>(&mut self, stream: &mut S) -> Pump {
        let mut pump = Pump::default();
        if self.finished {
            pump.done = true;
            return pump;
        }
        // Filled with zeroes only when a session that drops input reads.
        let mut scratch: Option<[u8; SCRATCH]> = None;
        let mut read_blocked = false;
        let mut write_blocked = false;
        let mut moved_total = 0usize;
        loop {
            let mut changed = false;

            // Read first, as far as there is room: a session that sees the
            // peer's EOF before it writes can send its last bytes with the
            // FIN (see `Conn::write_final`).
            while !read_blocked && !self.read_eof && moved_total < PUMP_BUDGET {
                match self.read_step(stream, &mut scratch) {
                    Step::Moved(n) => {
                        self.bytes_in += n as u64;
                        moved_total += n;
                        changed = true;
                    }
                    Step::Blocked => read_blocked = true,
                    Step::Eof => {
                        self.read_eof = true;
                        changed = true;
                    }
                    Step::Idle => break,
                    Step::Failed(e) => return self.fail(pump, moved_total, e),
                }
            }

            if let State::Http {
                req,
                parsed: parsed @ None,
                ..
            } = &mut self.state
            {
                *parsed = crate::metrics::parse_request(req, self.read_eof);
            }
            if self.request().is_some() {
                // The loop renders the reply and pumps again.
                pump.progressed = moved_total > 0;
                return pump;
            }

            if !write_blocked {
                match self.write_step(stream) {
                    Step::Moved(n) => {
                        self.bytes_out += n as u64;
                        moved_total += n;
                        changed = true;
                    }
                    Step::Blocked => write_blocked = true,
                    Step::Idle | Step::Eof => {}
                    Step::Failed(e) => return self.fail(pump, moved_total, e),
                }
            }

            pump.progressed = moved_total > 0;
            if self.complete() {
                self.finished = true;
                pump.done = true;
                return pump;
            }
            if !changed {
                return pump;
            }
            if moved_total >= PUMP_BUDGET {
                pump.again = true;
                return pump;
            }
        }
    }

    fn fail(&mut self, mut pump: Pump, moved: usize, e: io::Error) -> Pump {
        self.error = Some(e);
        self.finished = true;
        pump.progressed = moved > 0;
        pump.done = true;
        pump
    }

    /// Whether the session has nothing left to do.
    fn complete(&self) -> bool {
        match &self.state {
            // RFC 862: echo until the peer stops, then flush what we owe.
            State::Echo(ring) => self.read_eof && ring.len() == 0,
            State::Discard => self.read_eof,
            // RFC 864: the stream goes on "until the calling user
            // terminates the connection": a half-close is not that (a
            // client may shut its write side and go on reading); the
            // peer's close ends it with a write error, a peer that stops
            // reading with idle_timeout.
            State::Chargen { .. } => false,
            // RFC 867/868: "the server closes the connection" once sent.
            State::Reply { data, sent } => *sent == data.len(),
            State::Http {
                reply: Some(data),
                sent,
                ..
            } => *sent == data.len(),
            State::Http { .. } => false,
        }
    }

    fn write_step<S: Conn>(&mut self, stream: &mut S) -> Step {
        let read_eof = self.read_eof;
        match &mut self.state {
            State::Discard | State::Http { reply: None, .. } => Step::Idle,
            State::Echo(ring) => {
                if ring.len() == 0 {
                    return Step::Idle;
                }
                // After the peer's EOF, what is pending is all there is.
                let step = if read_eof {
                    retry(|| stream.write_final(ring.pending()))
                } else {
                    write_retry(stream, &[IoSlice::new(ring.pending())])
                };
                if let Step::Moved(n) = step {
                    ring.consume(n);
                }
                step
            }
            State::Reply { data, sent }
            | State::Http {
                reply: Some(data),
                sent,
                ..
            } => {
                if *sent == data.len() {
                    return Step::Idle;
                }
                let step = retry(|| stream.write_final(&data[*sent..]));
                if let Step::Moved(n) = step {
                    *sent += n;
                }
                step
            }
            State::Chargen { pos } => {
                // Generated on demand from the static period: nothing is
                // buffered, so a peer that never reads costs a socket buffer.
                let slices = [
                    IoSlice::new(&CHARGEN[*pos..]),
                    IoSlice::new(&CHARGEN),
                    IoSlice::new(&CHARGEN),
                    IoSlice::new(&CHARGEN),
                    IoSlice::new(&CHARGEN),
                    IoSlice::new(&CHARGEN),
                    IoSlice::new(&CHARGEN),
                    IoSlice::new(&CHARGEN),
                    IoSlice::new(&CHARGEN),
                ];
                let step = write_retry(stream, &slices);
                if let Step::Moved(n) = step {
                    *pos = (*pos + n) % CHARGEN_PERIOD;
                }
                step
            }
        }
    }

    fn read_step<S: Read>(&mut self, stream: &mut S, scratch: &mut Option<[u8; SCRATCH]>) -> Step {
        match &mut self.state {
            State::Echo(ring) => {
                let Some(space) = ring.space() else {
                    // Full: paused until the peer reads what it sent.
                    return Step::Idle;
                };
                let step = read_retry(stream, space);
                if let Step::Moved(n) = step {
                    ring.fill(n);
                }
                step
            }
            // The request, up to its cap; what follows it is dropped.
            State::Http {
                req, parsed: None, ..
            } => {
                let room = crate::metrics::MAX_REQUEST.saturating_sub(req.len());
                if room == 0 {
                    return Step::Idle;
                }
                let buf = scratch.get_or_insert([0; SCRATCH]);
                let room = room.min(buf.len());
                let step = read_retry(stream, &mut buf[..room]);
                if let Step::Moved(n) = step {
                    req.extend_from_slice(&buf[..n]);
                }
                step
            }
            // RFC 863 and RFC 864 throw input away. Daytime and time read
            // and drop it too: closing a socket with unread input makes the
            // kernel send a RST, which can destroy the reply in flight.
            _ => read_retry(stream, scratch.get_or_insert([0; SCRATCH])),
        }
    }
}

/// The result of one read or write attempt.
#[derive(Debug)]
enum Step {
    Moved(usize),
    /// `WouldBlock`: wait for the next edge in that direction.
    Blocked,
    /// Nothing to attempt (nothing to write, or no room to read into).
    Idle,
    /// Read returned 0: the peer closed its write side.
    Eof,
    /// Reset, broken pipe, and every other hard error.
    Failed(io::Error),
}

fn read_retry<S: Read>(stream: &mut S, buf: &mut [u8]) -> Step {
    loop {
        return match stream.read(buf) {
            Ok(0) => Step::Eof,
            Ok(n) => Step::Moved(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Step::Blocked,
            Err(e) => Step::Failed(e),
        };
    }
}

fn write_retry<S: Write>(stream: &mut S, bufs: &[IoSlice<'_>]) -> Step {
    retry(|| stream.write_vectored(bufs))
}

/// One write attempt, retried on EINTR.
fn retry(mut write: impl FnMut() -> io::Result<usize>) -> Step {
    loop {
        return match write() {
            Ok(0) => Step::Failed(io::ErrorKind::WriteZero.into()),
            Ok(n) => Step::Moved(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Step::Blocked,
            Err(e) => Step::Failed(e),
        };
    }
}

/// Echo's pending bytes, `buf[head..tail]`. It grows from
/// [`ECHO_INITIAL`] to [`MAX_BUFFERED`] and never past it; it compacts only
/// when at least half of it is already sent, so the copying costs O(1) per
/// byte however small the peer's reads are.
#[derive(Debug, Default)]
struct Ring {
    buf: Vec<u8>,
    head: usize,
    tail: usize,
}

impl Ring {
    fn len(&self) -> usize {
        self.tail - self.head
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.head..self.tail]
    }

    fn consume(&mut self, n: usize) {
        self.head += n;
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
    }

    fn fill(&mut self, n: usize) {
        self.tail += n;
    }

    /// Room to read into, or `None` when reading must pause.
    fn space(&mut self) -> Option<&mut [u8]> {
        if self.tail == self.buf.len() {
            let cap = self.buf.len();
            if self.head > 0 && self.head >= cap / 2 {
                self.buf.copy_within(self.head..self.tail, 0);
                self.tail -= self.head;
                self.head = 0;
            } else if cap < MAX_BUFFERED {
                let grown = (cap * 2).clamp(ECHO_INITIAL, MAX_BUFFERED);
                self.buf.resize(grown, 0);
            } else {
                return None;
            }
        }
        Some(&mut self.buf[self.tail..])
    }
}

// ---------------------------------------------------------------------------
// Datagrams (UDP)
// ---------------------------------------------------------------------------

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
    /// A receive error that is not a consumed ICMP report; the drain
    /// stopped on it.
    pub error: Option<io::Error>,
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
}

impl UdpServer {
    pub fn new(kind: Builtin) -> UdpServer {
        UdpServer {
            kind,
            recv: Vec::new(),
            reply: Vec::new(),
            chargen_next: 0,
        }
    }

    pub fn kind(&self) -> Builtin {
        self.kind
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
                        drain.error = Some(e);
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
    use std::net::{Shutdown, UdpSocket};
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

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
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

    // --- formats ---------------------------------------------------------

    #[test]
    fn daytime_is_ctime_with_crlf() {
        let cases = [
            (0, "Thu Jan  1 00:00:00 1970\r\n"),
            (-1, "Wed Dec 31 23:59:59 1969\r\n"),
            (951_123_600, "Mon Feb 21 09:00:00 2000\r\n"),
            (1_709_164_800, "Thu Feb 29 00:00:00 2024\r\n"), // leap day
            (1_699_999_999, "Tue Nov 14 22:13:19 2023\r\n"),
            (1_772_841_600, "Sat Mar  7 00:00:00 2026\r\n"), // single-digit day
            (2_085_978_496, "Thu Feb  7 06:28:16 2036\r\n"), // RFC 868 wraps here
            (4_102_444_800, "Fri Jan  1 00:00:00 2100\r\n"),
            (4_107_542_400, "Mon Mar  1 00:00:00 2100\r\n"), // 2100 is no leap year
        ];
        for (t, want) in cases {
            assert_eq!(format_daytime(t, 0), want, "t={t}");
        }
    }

    #[test]
    fn daytime_applies_the_offset() {
        assert_eq!(format_daytime(0, 19_800), "Thu Jan  1 05:30:00 1970\r\n");
        assert_eq!(format_daytime(0, -3_600), "Wed Dec 31 23:00:00 1969\r\n");
    }

    #[test]
    fn time_is_big_endian_seconds_since_1900() {
        assert_eq!(format_time(0), [0x83, 0xAA, 0x7E, 0x80]); // 2208988800
        assert_eq!(format_time(1_700_000_000), 3_908_988_800u32.to_be_bytes());
        // 2036-02-07T06:28:16Z: the 32-bit count wraps to 0.
        assert_eq!(format_time(2_085_978_495), [0xFF; 4]);
        assert_eq!(format_time(2_085_978_496), [0, 0, 0, 0]);
        assert_eq!(format_time(2_085_978_497), [0, 0, 0, 1]);
    }

    #[test]
    fn chargen_lines_follow_rfc_864() {
        let want = [
            " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefg\r\n",
            "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh\r\n",
            "\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghi\r\n",
        ];
        for (k, w) in want.iter().enumerate() {
            assert_eq!(chargen_line(k), w.as_bytes(), "line {k}");
        }
        assert_eq!(chargen_line(95), chargen_line(0));
        assert_eq!(chargen_line(96), chargen_line(1));
        // Line 94 starts with '~' and wraps to the space.
        assert_eq!(&chargen_line(94)[..3], b"~ !");
        assert!(CHARGEN.chunks(CHARGEN_LINE_BYTES).all(|l| l.len() == 74
            && l[..72].iter().all(|&c| (32..=126).contains(&c))
            && &l[72..] == b"\r\n"));
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
        assert!(d.datagrams.is_empty() && !d.again && d.error.is_none());

        let big = pattern(60_000);
        client.send(b"one").unwrap();
        client.send(&big).unwrap();
        let d = echo.serve(&server, 0, 0, usize::MAX, &[], |_| true);
        assert!(!d.again && d.error.is_none());
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
}
