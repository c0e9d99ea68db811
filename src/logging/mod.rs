//! The log: `LEVEL message key=value…` records onto stderr, as text (a
//! timestamp first, or systemd's `<N>` priority prefix when stderr is the
//! journal) or as one JSON object per line (`--log-format json`; see
//! superd(8), LOGS), through a writer that never blocks the event loop.
//! A reader that stops reading costs dropped lines (counted, and announced
//! when it comes back), never a stalled superd. While the loop runs, the
//! lines of one turn go out together, before the loop sleeps; the loop also
//! flushes before anything a line is about can be seen from outside (a
//! child starting, a connection closing, an sd_notify message).

use std::io::Write;
use std::sync::OnceLock;
use std::time::SystemTime;

use log::LevelFilter;

mod record;
mod writer;

use record::render;
pub use writer::dropped_total;
use writer::{Handle, STDERR, lock};

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
mod tests;
