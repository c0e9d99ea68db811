//! The log: env_logger formatting `LEVEL message key=value…` lines onto
//! stderr through a writer that never blocks the event loop. A reader that
//! stops reading costs dropped lines (counted, and announced when it comes
//! back), never a stalled superd. While the loop runs, the lines of one
//! turn go out together, before the loop sleeps; the loop also flushes
//! before anything a line is about can be seen from outside (a child
//! starting, a connection closing, an sd_notify message).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Mutex, MutexGuard};

use log::LevelFilter;

/// Initialises the global logger at `info`, moved by `verbosity` (+1 per
/// `-v`, -1 per `-q`); `RUST_LOG`, when set, wins as env_logger does.
pub fn init(verbosity: i32) {
    let level = match verbosity {
        i32::MIN..=-2 => LevelFilter::Error,
        -1 => LevelFilter::Warn,
        0 => LevelFilter::Info,
        1 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    };
    let mut builder = env_logger::Builder::new();
    builder.filter_level(level);
    if let Ok(spec) = std::env::var("RUST_LOG") {
        builder.parse_filters(&spec);
    }
    lock().open();
    builder
        .format(|buf, record| writeln!(buf, "{:<5} {}", record.level(), record.args()))
        .target(env_logger::Target::Pipe(Box::new(Handle)))
        .try_init()
        .ok();
    // A panic aborts the process: the lines of the current turn go out
    // before the panic message does.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(mut w) = STDERR.try_lock() {
            w.flush_pending();
        }
        default_hook(info);
    }));
}

/// Holds lines back until [`flush`] while `on`, so that a busy loop turn
/// costs one write however many lines it logs; turning it off flushes.
/// The event loop batches while it runs and flushes before it sleeps.
pub fn batch(on: bool) {
    let mut w = lock();
    w.batching = on;
    if !on {
        w.flush_pending();
    }
}

/// Writes the lines held back by [`batch`]; what the reader cannot take
/// now is dropped and counted, never kept for later.
pub fn flush() {
    lock().flush_pending();
}

/// The most a batch holds before it is written at once.
const BATCH_BYTES: usize = 16 * 1024;

static STDERR: Mutex<Writer> = Mutex::new(Writer::new(false));

fn lock() -> MutexGuard<'static, Writer> {
    // Single-threaded: a poisoned lock only means a panic mid-line.
    STDERR.lock().unwrap_or_else(|e| e.into_inner())
}

/// env_logger's target: every line goes to the one [`Writer`].
struct Handle;

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
struct Writer {
    file: Option<File>,
    always_ready: bool,
    /// fd 2 is a socket (journald's stream, say): written with
    /// MSG_DONTWAIT, so that a reader who stops can never block a write.
    socket: bool,
    dropped: u64,
    /// Bytes of the current line already accepted by env_logger's buffer.
    line: Vec<u8>,
    /// Whole lines held back while batching.
    pending: Vec<u8>,
    pending_lines: u64,
    batching: bool,
    /// The rest of a line a reader took only part of (a line longer than
    /// PIPE_BUF has no atomic write): it goes out before anything else, so
    /// no line is ever cut by another in the output.
    unfinished: Vec<u8>,
}

impl Writer {
    /// A writer with nothing held and no file yet (see `open`).
    const fn new(batching: bool) -> Writer {
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

    fn open(&mut self) {
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
    fn take(&mut self, buf: &[u8]) {
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
    fn flush_pending(&mut self) {
        if self.pending.is_empty() && self.unfinished.is_empty() {
            return;
        }
        let lines = std::mem::take(&mut self.pending_lines);
        if !self.finish_line() {
            self.dropped += lines;
            self.pending.clear();
            return;
        }
        if self.pending.is_empty() {
            return;
        }
        if self.dropped > 0 {
            let note = format!(
                "WARN  log lines dropped count={} reason=stderr_blocked\n",
                self.dropped
            );
            if self.write_lines(note.as_bytes()) == 0 {
                self.dropped += lines;
                self.pending.clear();
                return;
            }
            self.dropped = 0;
            if !self.finish_line() {
                self.dropped += lines;
                self.pending.clear();
                return;
            }
        }
        let pending = std::mem::take(&mut self.pending);
        let written = self.write_lines(&pending);
        self.dropped += lines - written;
        self.pending = pending;
        self.pending.clear();
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
    /// took only part of included: its rest is kept for [`finish_line`].
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
fn whole_lines(
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

fn count_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Whether `bytes` (UTF-8) hold something [`one_line`] escapes: an ASCII
/// control, a C1 control (U+0080..U+009F: C2 80..9F), or U+2028/U+2029
/// (E2 80 A8/A9), which some viewers take for line breaks.
fn needs_escape(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, &b)| match b {
        0..0x20 | 0x7f => true,
        0xc2 => bytes.get(i + 1).is_some_and(|n| (0x80..0xa0).contains(n)),
        0xe2 => bytes.get(i + 1) == Some(&0x80) && matches!(bytes.get(i + 2), Some(0xa8 | 0xa9)),
        _ => false,
    })
}

/// `s` with every control character and line separator escaped (`\n`,
/// `\x1b`, `\u{2028}`), so that it prints as part of one line.
pub fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !s.chars().any(bad) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if bad(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Quotes a log value when it holds spaces, quotes or control characters,
/// so every line stays `key=value` parseable.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '\\' && c != '=')
    {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::{quote, whole_lines};
    use std::io;

    /// A reader that takes `first` bytes of the first write, then
    /// everything (`None`: nothing at all after the first write).
    fn reader(
        first: usize,
        then: Option<()>,
        out: &mut Vec<u8>,
    ) -> impl FnMut(&[u8]) -> io::Result<usize> + '_ {
        let mut calls = 0;
        move |b: &[u8]| {
            calls += 1;
            let n = match (calls, then) {
                (1, _) => b.len().min(first),
                (_, Some(())) => b.len(),
                (_, None) => 0,
            };
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            out.extend_from_slice(&b[..n]);
            Ok(n)
        }
    }

    #[test]
    fn a_batch_goes_out_in_whole_lines() {
        let batch = b"one\ntwo\nthree\n";
        let mut out = Vec::new();
        assert_eq!(
            whole_lines(batch, 100, reader(100, None, &mut out)),
            (3, &b""[..])
        );
        assert_eq!(out, batch);
        // Cut at a line's end: two out, the third dropped, not retried.
        let mut out = Vec::new();
        assert_eq!(
            whole_lines(batch, 100, reader(8, Some(()), &mut out)),
            (2, &b""[..])
        );
        assert_eq!(out, b"one\ntwo\n");
        // Cut mid-line: that line is finished, the next is dropped.
        let mut out = Vec::new();
        assert_eq!(
            whole_lines(batch, 100, reader(6, Some(()), &mut out)),
            (2, &b""[..])
        );
        assert_eq!(out, b"one\ntwo\n");
        // Cut mid-line and the reader takes no more: the line counts as
        // written (it was started) and its rest comes back to be written
        // before anything else; what follows is dropped.
        let mut out = Vec::new();
        assert_eq!(
            whole_lines(batch, 100, reader(6, None, &mut out)),
            (2, &b"o\n"[..])
        );
        assert_eq!(out, b"one\ntw");
        // In chunks that end at a line's end: a reader that takes the
        // first chunk and no more loses whole lines only.
        let mut out = Vec::new();
        assert_eq!(
            whole_lines(batch, 9, reader(8, None, &mut out)),
            (2, &b""[..])
        );
        assert_eq!(out, b"one\ntwo\n");
        let mut out = Vec::new();
        assert_eq!(
            whole_lines(batch, 2, reader(100, Some(()), &mut out)),
            (3, &b""[..])
        );
        assert_eq!(out, batch);
        // Nothing taken: nothing out.
        let mut out = Vec::new();
        assert_eq!(
            whole_lines(batch, 100, reader(0, None, &mut out)),
            (0, &b""[..])
        );
        assert!(out.is_empty());
    }

    fn held_writer() -> super::Writer {
        super::Writer::new(true)
    }

    /// A record is one line whatever its text holds: a newline or an
    /// escape sequence inside it (a path from the configuration, say) is
    /// escaped, never written as the start of another record.
    #[test]
    fn a_record_stays_one_line() {
        let mut w = held_writer();
        w.take(b"INFO  listening service=a addr=1.2.3.4:1 socket=stream\n");
        w.take(b"ERROR program /x\nERROR forged \x1b[2J not found\n");
        w.take("WARN  a \u{2028} b \u{85} c\n".as_bytes());
        // Pieces of one record are one record.
        w.take(b"INFO  part ");
        w.take(b"one\n");
        assert_eq!(
            String::from_utf8(w.pending.clone()).unwrap(),
            "INFO  listening service=a addr=1.2.3.4:1 socket=stream\n\
             ERROR program /x\\nERROR forged \\x1b[2J not found\n\
             WARN  a \\u{2028} b \\x85 c\n\
             INFO  part one\n"
        );
        assert_eq!(w.pending_lines, 4);
    }

    /// Text in other scripts and symbols stays on the fast path; only
    /// what `one_line` escapes leaves it.
    #[test]
    fn needs_escape_finds_only_what_one_line_escapes() {
        assert!(!super::needs_escape("£ ° § – — “x” … € → µs".as_bytes()));
        for bad in [
            "a\nb", "\x1b[2J", "\u{85}", "\u{9f}", "\u{2028}", "\u{2029}", "\x7f",
        ] {
            assert!(super::needs_escape(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn one_line_leaves_plain_text_alone() {
        assert!(matches!(
            super::one_line("µs ÷ plain"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(super::one_line("a\tb\rc"), "a\\tb\\rc");
    }

    #[test]
    fn quote_only_when_needed() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("No such file"), "\"No such file\"");
        assert_eq!(quote("a\"b\n"), "\"a\\\"b\\n\"");
        assert_eq!(quote(""), "\"\"");
    }
}
