//! The log: `LEVEL message key=value…` records onto stderr, as text (a
//! timestamp first, or systemd's `<N>` priority prefix when stderr is the
//! journal) or as one JSON object per line (`--log-format json`; see
//! superd(8), LOGS), through a writer that never blocks the event loop.
//! A reader that stops reading costs dropped lines (counted, and announced
//! when it comes back), never a stalled superd. While the loop runs, the
//! lines of one turn go out together, before the loop sleeps; the loop also
//! flushes before anything a line is about can be seen from outside (a
//! child starting, a connection closing, an sd_notify message).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter};

/// `--log-format`: how each record is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `TIMESTAMP LEVEL message key=value…` (no timestamp, and a `<N>`
    /// priority prefix, when stderr is the journal).
    #[default]
    Text,
    /// One JSON object per line: `ts`, `level`, `msg` and the fields.
    Json,
}

impl LogFormat {
    pub fn parse(s: &str) -> Option<LogFormat> {
        match s {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// How records are rendered, fixed at [`init`].
#[derive(Clone, Copy, Debug)]
struct Style {
    format: LogFormat,
    /// stderr is a journald stream (`JOURNAL_STREAM` names its device and
    /// inode): the journal stamps the time itself and reads the priority
    /// from a `<N>` prefix (sd-daemon(3)).
    journal: bool,
}

static STYLE: OnceLock<Style> = OnceLock::new();

fn style() -> Style {
    STYLE.get().copied().unwrap_or(Style {
        format: LogFormat::Text,
        journal: false,
    })
}

/// Initialises the global logger at `info`, moved by `verbosity` (+1 per
/// `-v`, -1 per `-q`); `RUST_LOG`, when set, wins as env_logger does.
pub fn init(verbosity: i32, format: LogFormat) {
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
    let _ = STYLE.set(Style {
        format,
        journal: stderr_is_journal(),
    });
    lock().open();
    builder
        .format(|buf, record| {
            let body = record.args().to_string();
            buf.write_all(render(style(), record.level(), &body, SystemTime::now()).as_bytes())
        })
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

/// Whether fd 2 is the stream `JOURNAL_STREAM` (`DEVICE:INODE`, as systemd
/// sets it) names: only then is a `<N>` prefix read as a priority.
fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    journal_matches(v.to_str(), nix::sys::stat::fstat(2).ok())
}

// dev_t and ino_t are not u64 on every target.
#[allow(clippy::unnecessary_cast)]
fn journal_matches(var: Option<&str>, st: Option<nix::sys::stat::FileStat>) -> bool {
    let (Some((dev, ino)), Some(st)) = (var.and_then(|v| v.split_once(':')), st) else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(st.st_dev as u64)
        && ino.parse::<u64>().ok() == Some(st.st_ino as u64)
}

/// One record as a whole line, newline included: `body` is the message
/// and its `key=value` fields as the call site wrote them.
fn render(style: Style, level: Level, body: &str, now: SystemTime) -> String {
    let mut out = String::with_capacity(body.len() + 48);
    if style.journal {
        // sd-daemon(3): <3> error, <4> warning, <6> info, <7> debug.
        let prio = match level {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
            Level::Debug | Level::Trace => 7,
        };
        out.push_str(&format!("<{prio}>"));
    }
    match style.format {
        LogFormat::Text => {
            if !style.journal {
                out.push_str(&timestamp(now, 3));
                out.push(' ');
            }
            out.push_str(&format!("{:<5} {body}", level.as_str()));
        }
        LogFormat::Json => json_record(&mut out, &timestamp(now, 6), level, body),
    }
    out.push('\n');
    out
}

/// `now` in RFC 3339, UTC, with `digits` (3 or 6) fractional digits:
/// `2026-01-02T03:04:05.678Z`.
fn timestamp(now: SystemTime, digits: u32) -> String {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    let frac = d.subsec_nanos() / 10u32.pow(9 - digits);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{frac:0w$}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        w = digits as usize
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Appends `{"ts":…,"level":…,"msg":…,KEY:VALUE…}`: the message and the
/// fields of `body` (see [`split_fields`]), every value a string with the
/// text form's quoting undone.
fn json_record(out: &mut String, ts: &str, level: Level, body: &str) {
    let (msg, fields) = split_record(body);
    out.push_str("{\"ts\":");
    json_str(out, ts);
    out.push_str(",\"level\":");
    json_str(out, level.as_str());
    out.push_str(",\"msg\":");
    json_str(out, &msg);
    for (key, value) in &fields {
        out.push(',');
        // A field never takes the place of the three keys every record has.
        if matches!(*key, "ts" | "level" | "msg") {
            json_str(out, &format!("field_{key}"));
        } else {
            json_str(out, key);
        }
        out.push(':');
        json_str(out, value);
    }
    out.push('}');
}

/// `s` as a JSON string. Besides what JSON requires, DEL, the C1 controls
/// and U+2028/U+2029 are escaped too: a record is one line for any reader
/// (see [`needs_escape`]).
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// [`split_fields`], and a remark in parentheses after the fields
/// (`inherited socket unused fd=3 addr=… (closed)`, `reload failed
/// errors=2 (the running configuration is unchanged)`) is the end of the
/// message: the fields before it stay fields.
fn split_record(body: &str) -> (std::borrow::Cow<'_, str>, Vec<(&str, String)>) {
    if body.ends_with(')')
        && let Some(i) = body.rfind(" (")
    {
        let (head, note) = (&body[..i], &body[i..]);
        let (msg, fields) = split_fields(head);
        if !fields.is_empty() {
            return (format!("{msg}{note}").into(), fields);
        }
    }
    let (msg, fields) = split_fields(body);
    (msg.into(), fields)
}

/// Splits a record's text into its message and its `key=value` fields:
/// the message is the text before the first ` key=` from which the rest
/// of the record reads as fields (values bare, or quoted as [`quote`] and
/// [`quote_bytes`] quote them). A record whose end is no list of fields
/// is all message.
fn split_fields(body: &str) -> (&str, Vec<(&str, String)>) {
    for (i, _) in body.match_indices(' ') {
        let rest = &body[i + 1..];
        let key_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
            .count();
        if key_len == 0 || rest.as_bytes().get(key_len) != Some(&b'=') {
            continue;
        }
        if let Some(fields) = parse_fields(rest) {
            return (&body[..i], fields);
        }
    }
    (body, Vec::new())
}

/// `key=value key="quoted value" …` to the end of `s`, or `None`.
fn parse_fields(mut s: &str) -> Option<Vec<(&str, String)>> {
    let mut out = Vec::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once('=')?;
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return None;
        }
        let (value, rest) = match rest.strip_prefix('"') {
            Some(q) => unquote(q)?,
            None => {
                let end = rest.find(' ').unwrap_or(rest.len());
                (rest[..end].to_string(), &rest[end..])
            }
        };
        out.push((key, value));
        s = match rest.strip_prefix(' ') {
            Some(r) if !r.is_empty() => r,
            Some(_) => return None,
            None if rest.is_empty() => rest,
            None => return None,
        };
    }
    Some(out)
}

/// The value of a quoted field, `s` starting after its opening quote: the
/// text with [`quote`]'s escapes undone, and the rest after the closing
/// quote. A byte that is not UTF-8 (`\xNN` from 80 up, see
/// [`quote_bytes`]) cannot be a character: it stays the escape.
fn unquote(s: &str) -> Option<(String, &str)> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                c @ ('"' | '\\') => out.push(c),
                'x' => {
                    let hex: String = (0..2)
                        .filter_map(|_| chars.next().map(|(_, c)| c))
                        .collect();
                    let n = u32::from_str_radix(&hex, 16)
                        .ok()
                        .filter(|_| hex.len() == 2)?;
                    if n < 0x80 {
                        out.push(char::from_u32(n)?);
                    } else {
                        out.push_str(&format!("\\x{hex}"));
                    }
                }
                'u' => {
                    if chars.next()?.1 != '{' {
                        return None;
                    }
                    let mut hex = String::new();
                    loop {
                        match chars.next()?.1 {
                            '}' => break,
                            c if c.is_ascii_hexdigit() && hex.len() < 6 => hex.push(c),
                            _ => return None,
                        }
                    }
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                _ => return None,
            },
            c => out.push(c),
        }
    }
    None
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

/// Every log line dropped since start (`superd_log_lines_dropped_total`).
static DROPPED_TOTAL: AtomicU64 = AtomicU64::new(0);

/// Log lines dropped since superd started, because stderr could not take
/// them (each gap is announced in the log once the reader is back).
pub fn dropped_total() -> u64 {
    DROPPED_TOTAL.load(Ordering::Relaxed)
}

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
/// so every line stays `key=value` parseable. Inside quotes: `\"`, `\\`,
/// `\n`, `\r`, `\t`, `\xNN` for the other ASCII controls and `\u{NNNN}`
/// for the other control characters; `\xNN` from 80 up is a byte that is
/// not UTF-8 (only [`quote_bytes`] writes it).
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '\\' && c != '=')
    {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    push_quoted(&mut out, s);
    out.push('"');
    out
}

fn push_quoted(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
}

/// [`quote`] for bytes that may not be UTF-8 (a line a child wrote): each
/// byte that is not part of a UTF-8 character is written `\xNN`, so the
/// text form keeps every byte and JSON shows it as that escape.
pub fn quote_bytes(bytes: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return quote(s);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        push_quoted(&mut out, chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
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

    fn text(journal: bool) -> super::Style {
        super::Style {
            format: super::LogFormat::Text,
            journal,
        }
    }

    fn json(journal: bool) -> super::Style {
        super::Style {
            format: super::LogFormat::Json,
            journal,
        }
    }

    fn at(secs: u64, micros: u32) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::new(secs, micros * 1000)
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        use super::timestamp;
        assert_eq!(timestamp(at(0, 0), 3), "1970-01-01T00:00:00.000Z");
        // A leap day, and truncation (never rounding up into the next
        // second).
        assert_eq!(
            timestamp(at(951_782_399, 999_999), 3),
            "2000-02-28T23:59:59.999Z"
        );
        assert_eq!(
            timestamp(at(951_782_400, 1), 6),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(
            timestamp(at(1_798_761_599, 123_456), 6),
            "2026-12-31T23:59:59.123456Z"
        );
        assert_eq!(
            timestamp(at(4_107_542_400, 0), 3),
            "2100-03-01T00:00:00.000Z"
        );
    }

    #[test]
    fn text_has_the_time_or_the_journal_priority() {
        use log::Level;
        let t = at(0, 5000);
        assert_eq!(
            super::render(text(false), Level::Info, "ready pid=1", t),
            "1970-01-01T00:00:00.005Z INFO  ready pid=1\n"
        );
        for (level, want) in [
            (Level::Error, "<3>ERROR x\n"),
            (Level::Warn, "<4>WARN  x\n"),
            (Level::Info, "<6>INFO  x\n"),
            (Level::Debug, "<7>DEBUG x\n"),
            (Level::Trace, "<7>TRACE x\n"),
        ] {
            assert_eq!(super::render(text(true), level, "x", t), want);
        }
        assert!(super::render(json(true), Level::Warn, "x", t).starts_with("<4>{\"ts\":"));
    }

    #[test]
    fn the_journal_is_stderr_only_when_device_and_inode_match() {
        let st = nix::sys::stat::fstat(0).unwrap();
        let both = format!("{}:{}", st.st_dev, st.st_ino);
        assert!(super::journal_matches(Some(&both), Some(st)));
        let other = format!("{}:{}", st.st_dev, st.st_ino + 1);
        assert!(!super::journal_matches(Some(&other), Some(st)));
        for bad in ["", ":", "1", "x:y", &format!("{}", st.st_dev)] {
            assert!(!super::journal_matches(Some(bad), Some(st)), "{bad:?}");
        }
        assert!(!super::journal_matches(None, Some(st)));
        assert!(!super::journal_matches(Some(&both), None));
    }

    #[test]
    fn json_records_carry_message_and_fields() {
        use log::Level;
        let line = super::render(
            json(false),
            Level::Error,
            "exec failed service=a step=exec error=\"No such file\"",
            at(0, 0),
        );
        assert_eq!(
            line,
            "{\"ts\":\"1970-01-01T00:00:00.000000Z\",\"level\":\"ERROR\",\"msg\":\"exec failed\",\
             \"service\":\"a\",\"step\":\"exec\",\"error\":\"No such file\"}\n"
        );
        // The three keys are never taken by a field.
        let line = super::render(json(false), Level::Info, "x msg=a ts=b", at(0, 0));
        assert!(
            line.ends_with("\"msg\":\"x\",\"field_msg\":\"a\",\"field_ts\":\"b\"}\n"),
            "{line}"
        );
    }

    /// What `quote` writes, `split_fields` reads back exactly; text that
    /// no field list ends is all message.
    #[test]
    fn fields_round_trip_through_quote() {
        use super::{quote, split_fields};
        for v in [
            "plain",
            "",
            "two words",
            "a\"b\\c",
            "tab\tnl\ncr\r",
            "\x1b[2J \x7f",
            "c1 \u{85} \u{9f}",
            "k=v",
            "\u{2028} µ 日本",
            "\\x41",
        ] {
            let body = format!("stderr service=s line={} cut=true", quote(v));
            let (msg, fields) = split_fields(&body);
            assert_eq!(msg, "stderr", "{body}");
            assert_eq!(
                fields,
                vec![
                    ("service", "s".to_string()),
                    ("line", v.to_string()),
                    ("cut", "true".to_string())
                ],
                "{body}"
            );
        }
        for whole in [
            "reload failed errors=2 (the running configuration is unchanged)",
            "config error: /x.yaml:1:2: bad \"k=v\"",
            "reloading",
            "x key=\"unterminated",
            "x key=\"bad\\q\"",
            "x =v",
        ] {
            assert_eq!(split_fields(whole), (whole, Vec::new()), "{whole}");
        }
        // The first ` key=` from which the rest is fields starts them.
        assert_eq!(
            split_fields("closed at=5 addr=1.2.3.4:5"),
            (
                "closed",
                vec![("at", "5".into()), ("addr", "1.2.3.4:5".into())]
            )
        );
    }

    /// A remark in parentheses after the fields ends the message; the
    /// fields before it stay fields.
    #[test]
    fn a_remark_after_the_fields_is_message() {
        use super::split_record;
        let (msg, fields) =
            split_record("inherited socket unused fd=3 addr=127.0.0.1:5 socket=stream (closed)");
        assert_eq!(msg, "inherited socket unused (closed)");
        assert_eq!(
            fields,
            vec![
                ("fd", "3".into()),
                ("addr", "127.0.0.1:5".into()),
                ("socket", "stream".into())
            ]
        );
        let (msg, fields) =
            split_record("reload failed errors=2 (the running configuration is unchanged)");
        assert_eq!(
            msg,
            "reload failed (the running configuration is unchanged)"
        );
        assert_eq!(fields, vec![("errors", "2".into())]);
        let (msg, fields) = split_record("exit service=s error=\"a (b)\"");
        assert_eq!(msg, "exit");
        assert_eq!(fields[1], ("error", "a (b)".into()));
        for whole in ["nothing (here)", "reloading", "x (y=z)"] {
            assert_eq!(split_record(whole), (whole.into(), Vec::new()), "{whole}");
        }
    }

    /// Bytes that are not UTF-8 are `\xNN` (from 80 up) in the text form,
    /// apart from a backslash the child wrote; JSON shows the escape.
    #[test]
    fn bytes_that_are_not_utf8_are_escapes() {
        use super::{quote_bytes, split_fields};
        let q = quote_bytes(b"a\xffb\\x41 \xc3");
        assert_eq!(q, "\"a\\xffb\\\\x41 \\xc3\"");
        let body = format!("stderr line={q}");
        assert_eq!(
            split_fields(&body).1,
            vec![("line", "a\\xffb\\x41 \\xc3".to_string())]
        );
        assert_eq!(quote_bytes("ok µ".as_bytes()), "\"ok µ\"");
        let mut out = String::new();
        super::json_str(&mut out, "a\"\\\n\u{1b}\u{85}\u{2028}é");
        assert_eq!(out, "\"a\\\"\\\\\\n\\u001b\\u0085\\u2028é\"");
    }

    #[test]
    fn quote_only_when_needed() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("No such file"), "\"No such file\"");
        assert_eq!(quote("a\"b\n"), "\"a\\\"b\\n\"");
        assert_eq!(quote(""), "\"\"");
        // C1 controls as \u{…}: \xNN from 80 up is left to bytes.
        assert_eq!(quote("a\u{85}"), "\"a\\u{0085}\"");
    }
}
