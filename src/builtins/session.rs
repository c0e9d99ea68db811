//! One builtin stream connection ([`Session`]): pumped on every readiness
//! event, never blocking, with echo's bounded [`Ring`] and the state an
//! upgrade carries ([`Carried`]).

use std::io::{self, IoSlice, Read, Write};

use super::{
    CHARGEN, CHARGEN_PERIOD, ECHO_INITIAL, MAX_BUFFERED, PUMP_BUDGET, SCRATCH, format_daytime,
    format_time,
};
use crate::service::Builtin;

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

#[cfg(test)]
mod tests;
