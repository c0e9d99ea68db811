//! The one writer to fd 2: never blocks, batches a loop turn's lines,
//! and counts and announces what a slow reader made it drop.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use log::Level;

use super::{needs_escape, one_line, record::render, style};

/// The most a batch holds before it is written at once.
const BATCH_BYTES: usize = 16 * 1024;

pub(super) static STDERR: Mutex<Writer> = Mutex::new(Writer::new(false));

/// Every log line dropped since start (`superd_log_lines_dropped_total`).
static DROPPED_TOTAL: AtomicU64 = AtomicU64::new(0);

/// Log lines dropped since superd started, because stderr could not take
/// them (each gap is announced in the log once the reader is back).
pub fn dropped_total() -> u64 {
    DROPPED_TOTAL.load(Ordering::Relaxed)
}

pub(super) fn lock() -> MutexGuard<'static, Writer> {
    // Single-threaded: a poisoned lock only means a panic mid-line.
    STDERR.lock().unwrap_or_else(|e| e.into_inner())
}

/// env_logger's target: every line goes to the one [`Writer`].
pub(super) struct Handle;

impl Write for Handle {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        lock().take(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// fd 2, written without ever blocking: a pipe or terminal is reopened
/// through /proc as a separate, non-blocking open file description (so the
/// flag does not leak to whoever shares our stderr); anything else is
/// checked with a zero-timeout poll before each write.
pub(super) struct Writer {
    file: Option<File>,
    always_ready: bool,
    /// fd 2 is a socket (journald's stream, say): written with
    /// MSG_DONTWAIT, so that a reader who stops can never block a write.
    socket: bool,
    dropped: u64,
    /// Bytes of the current line already accepted by env_logger's buffer.
    line: Vec<u8>,
    /// Whole lines held back while batching.
    pub(super) pending: Vec<u8>,
    pub(super) pending_lines: u64,
    pub(super) batching: bool,
    /// The rest of a line a reader took only part of (a line longer than
    /// PIPE_BUF has no atomic write): it goes out before anything else, so
    /// no line is ever cut by another in the output.
    unfinished: Vec<u8>,
}

impl Writer {
    /// A writer with nothing held and no file yet (see `open`).
    pub(super) const fn new(batching: bool) -> Writer {
        Writer {
            file: None,
            always_ready: false,
            socket: false,
            dropped: 0,
            line: Vec::new(),
            pending: Vec::new(),
            pending_lines: 0,
            batching,
            unfinished: Vec::new(),
        }
    }

    pub(super) fn open(&mut self) {
        // Only pipes and terminals: reopening a regular file would lose its
        // O_APPEND offset, and sockets cannot be reopened through /proc.
        let fmt = nix::sys::stat::fstat(2).map_or(0, |st| st.st_mode & libc::S_IFMT);
        let reopen = fmt == libc::S_IFIFO || fmt == libc::S_IFCHR;
        self.file = reopen
            .then(|| {
                OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                    .open("/proc/self/fd/2")
                    .ok()
            })
            .flatten();
        // A regular file never blocks a write: no poll needed.
        self.always_ready = fmt == libc::S_IFREG;
        self.socket = fmt == libc::S_IFSOCK;
    }

    /// Takes what env_logger hands over: one record, ending with its
    /// newline (the pieces of one, if it ever came in several writes).
    /// A record stays one line whatever text it carries: a newline or
    /// another control character inside it (a file name, a path from the
    /// configuration) is escaped, so no record can end early or pass for
    /// another.
    pub(super) fn take(&mut self, buf: &[u8]) {
        if self.line.is_empty()
            && let Some(body) = buf.strip_suffix(b"\n")
            && !needs_escape(body)
        {
            self.emit(buf);
            return;
        }
        self.line.extend_from_slice(buf);
        if self.line.last() != Some(&b'\n') {
            return;
        }
        let record = std::mem::take(&mut self.line);
        let body = String::from_utf8_lossy(&record[..record.len() - 1]);
        let mut line = one_line(&body).into_owned().into_bytes();
        line.push(b'\n');
        self.emit(&line);
    }

    fn emit(&mut self, line: &[u8]) {
        self.pending.extend_from_slice(line);
        self.pending_lines += 1;
        if !self.batching || self.pending.len() >= BATCH_BYTES {
            self.flush_pending();
        }
    }

    /// Writes the pending lines, preceded by the rest of a line started
    /// earlier and by the count of lines lost before them, if any. Lines
    /// the reader cannot take are dropped.
    pub(super) fn flush_pending(&mut self) {
        if self.pending.is_empty() && self.unfinished.is_empty() {
            return;
        }
        let lines = std::mem::take(&mut self.pending_lines);
        if !self.finish_line() {
            self.drop_lines(lines);
            self.pending.clear();
            return;
        }
        if self.pending.is_empty() {
            return;
        }
        if self.dropped > 0 {
            let note = render(
                style(),
                Level::Warn,
                &format!(
                    "log lines dropped count={} reason=stderr_blocked",
                    self.dropped
                ),
                SystemTime::now(),
            );
            if self.write_lines(note.as_bytes()) == 0 {
                self.drop_lines(lines);
                self.pending.clear();
                return;
            }
            self.dropped = 0;
            if !self.finish_line() {
                self.drop_lines(lines);
                self.pending.clear();
                return;
            }
        }
        let pending = std::mem::take(&mut self.pending);
        let written = self.write_lines(&pending);
        self.drop_lines(lines - written);
        self.pending = pending;
        self.pending.clear();
    }

    /// `n` lines are lost: counted for the next note and for the total.
    fn drop_lines(&mut self, n: u64) {
        self.dropped += n;
        DROPPED_TOTAL.fetch_add(n, Ordering::Relaxed);
    }

    /// Writes what is left of a line started earlier; whether it is done.
    fn finish_line(&mut self) -> bool {
        while !self.unfinished.is_empty() {
            if !self.ready() {
                return false;
            }
            let rest = std::mem::take(&mut self.unfinished);
            match self.write_fd(&rest) {
                Ok(n) if n > 0 => self.unfinished = rest[n..].to_vec(),
                _ => {
                    self.unfinished = rest;
                    return false;
                }
            }
        }
        true
    }

    /// Writes `bytes` (whole lines) while the reader takes them; returns
    /// how many lines went out (see [`whole_lines`]), a line the reader
    /// took only part of included: its rest is kept for [`Self::finish_line`].
    fn write_lines(&mut self, bytes: &[u8]) -> u64 {
        if !self.ready() {
            return 0;
        }
        // A regular file takes any write whole; a pipe only up to PIPE_BUF.
        let chunk = if self.always_ready {
            usize::MAX
        } else {
            libc::PIPE_BUF
        };
        let (lines, rest) = whole_lines(bytes, chunk, |b| self.write_fd(b));
        self.unfinished = rest.to_vec();
        lines
    }

    fn write_fd(&mut self, bytes: &[u8]) -> io::Result<usize> {
        use nix::sys::socket::{MsgFlags, send};
        match &mut self.file {
            Some(f) => f.write(bytes),
            // A socket cannot be reopened non-blocking through /proc; a
            // poll that says writable does not promise room for a whole
            // write either. Partial sends are finished later (`unfinished`).
            None if self.socket => send(2, bytes, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL)
                .map_err(io::Error::from),
            None => io::stderr().write(bytes),
        }
    }

    fn ready(&self) -> bool {
        if self.file.is_some() || self.always_ready {
            return true;
        }
        let stderr = io::stderr();
        let fd = stderr.as_fd();
        let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLOUT)];
        matches!(
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO),
            Ok(1)
        ) && fds[0]
            .revents()
            .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLOUT))
    }
}

/// Writes `bytes` (whole lines) in writes of at most `chunk` bytes that
/// end at a line's end, while the reader takes them; returns how many lines
/// went out, and the rest of a line the reader took only part of. With
/// `chunk` at most PIPE_BUF a pipe takes each write whole or not at all, so
/// only a line longer than `chunk` (or a partial write to a socket) can be
/// started and not finished; it counts as written, the caller writes its
/// rest before anything else, and the lines after it are not tried (they
/// count as dropped).
pub(super) fn whole_lines(
    bytes: &[u8],
    chunk: usize,
    mut write: impl FnMut(&[u8]) -> io::Result<usize>,
) -> (u64, &[u8]) {
    let mut lines = 0;
    let mut rest = bytes;
    while !rest.is_empty() {
        let end = if rest.len() <= chunk {
            rest.len()
        } else {
            rest[..chunk]
                .iter()
                .rposition(|&b| b == b'\n')
                .or_else(|| rest.iter().position(|&b| b == b'\n'))
                .map_or(rest.len(), |i| i + 1)
        };
        let piece = &rest[..end];
        let n = match write(piece) {
            Ok(n) => n,
            Err(_) => return (lines, &[]),
        };
        if n == piece.len() {
            lines += count_lines(piece);
            rest = &rest[end..];
            continue;
        }
        if n == 0 || piece[n - 1] == b'\n' {
            return (lines + count_lines(&piece[..n]), &[]);
        }
        // Cut inside a line: finish it now if the reader takes it, else
        // hand its rest back.
        let cut_end = piece[n..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(piece.len(), |i| n + i + 1);
        let mut left = &piece[n..cut_end];
        while !left.is_empty() {
            match write(left) {
                Ok(m) if m > 0 => left = &left[m..],
                _ => break,
            }
        }
        return (lines + count_lines(&piece[..cut_end]), left);
    }
    (lines, &[])
}

pub(super) fn count_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}
