//! The log: env_logger formatting `LEVEL message key=value…` lines onto
//! stderr through a writer that never blocks the event loop. A reader that
//! stops reading costs dropped lines (counted, and announced when it comes
//! back), never a stalled superd.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;

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
    builder
        .format(|buf, record| writeln!(buf, "{:<5} {}", record.level(), record.args()))
        .target(env_logger::Target::Pipe(
            Box::new(NonBlockingStderr::open()),
        ))
        .try_init()
        .ok();
}

/// fd 2, written without ever blocking: a pipe or terminal is reopened
/// through /proc as a separate, non-blocking open file description (so the
/// flag does not leak to whoever shares our stderr); anything else is
/// checked with a zero-timeout poll before each write.
struct NonBlockingStderr {
    file: Option<File>,
    always_ready: bool,
    dropped: u64,
    /// Bytes of the current line already accepted by env_logger's buffer.
    line: Vec<u8>,
}

impl NonBlockingStderr {
    fn open() -> NonBlockingStderr {
        // Only pipes and terminals: reopening a regular file would lose its
        // O_APPEND offset, and sockets cannot be reopened through /proc.
        let fmt = nix::sys::stat::fstat(2).map_or(0, |st| st.st_mode & libc::S_IFMT);
        let reopen = fmt == libc::S_IFIFO || fmt == libc::S_IFCHR;
        let file = reopen
            .then(|| {
                OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                    .open("/proc/self/fd/2")
                    .ok()
            })
            .flatten();
        NonBlockingStderr {
            file,
            // A regular file never blocks a write: no poll needed.
            always_ready: fmt == libc::S_IFREG,
            dropped: 0,
            line: Vec::new(),
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

    /// Writes one whole line, or drops it. Lines up to PIPE_BUF bytes are
    /// written atomically to a pipe: all or EAGAIN.
    fn emit(&mut self, line: &[u8]) {
        if self.dropped > 0 {
            let note = format!(
                "WARN  log lines dropped count={} reason=stderr_blocked\n",
                self.dropped
            );
            if !self.try_write(note.as_bytes()) {
                self.dropped += 1;
                return;
            }
            self.dropped = 0;
        }
        if !self.try_write(line) {
            self.dropped += 1;
        }
    }

    fn try_write(&mut self, bytes: &[u8]) -> bool {
        if !self.ready() {
            return false;
        }
        let result = match &mut self.file {
            Some(f) => f.write(bytes),
            None => io::stderr().write(bytes),
        };
        match result {
            Ok(n) if n == bytes.len() => true,
            // A partial write is finished when possible, best effort; the
            // line counts as written (the rest may be lost).
            Ok(n) => {
                let rest = &bytes[n..];
                match &mut self.file {
                    Some(f) => f.write(rest).is_ok(),
                    None => io::stderr().write(rest).is_ok(),
                }
            }
            Err(_) => false,
        }
    }
}

impl Write for NonBlockingStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The usual case: env_logger hands over exactly one whole line.
        if self.line.is_empty() && buf.iter().position(|&b| b == b'\n') == buf.len().checked_sub(1)
        {
            if !buf.is_empty() {
                self.emit(buf);
            }
            return Ok(buf.len());
        }
        self.line.extend_from_slice(buf);
        while let Some(end) = self.line.iter().position(|&b| b == b'\n') {
            let rest = self.line.split_off(end + 1);
            let line = std::mem::replace(&mut self.line, rest);
            self.emit(&line);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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
    use super::quote;

    #[test]
    fn quote_only_when_needed() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("No such file"), "\"No such file\"");
        assert_eq!(quote("a\"b\n"), "\"a\\\"b\\n\"");
        assert_eq!(quote(""), "\"\"");
    }
}
