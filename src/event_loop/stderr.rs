//! `stderr: log`: a child's stderr pipe read into `stderr` lines, cut by a
//! pure `LineSplitter` at STDERR_LINE_MAX bytes on a character boundary.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};

use log::info;
use mio::Token;

use super::Daemon;
use super::watch::Watched;
use crate::children::Pid;

/// Reads of 4 KiB from one stderr pipe before the loop looks elsewhere.
pub(super) const STDERR_READS_PER_TURN: usize = 16;

/// Largest line taken from a child's stderr (`stderr: log`) in one piece.
pub(super) const STDERR_LINE_MAX: usize = 4096;

/// A child's stderr pipe (`stderr: log`), read into `stderr` lines.
pub(super) struct StderrPipe {
    pub(super) file: File,
    pub(super) service: String,
    pub(super) pid: Pid,
    pub(super) lines: LineSplitter,
}

/// Cuts a byte stream into lines: a line of at most STDERR_LINE_MAX bytes
/// goes whole; a longer one in pieces of at most that, each cut before a
/// UTF-8 character that would straddle the limit and marked `cut` (it goes
/// on in the next piece), wherever the line falls in the reads. The line
/// end (`\n`, and any `\r` before it) is not part of the text.
#[derive(Debug, Default)]
pub(super) struct LineSplitter {
    buf: Vec<u8>,
    /// The last piece was cut: a line end right after it ends that line,
    /// not an empty one.
    cut: bool,
}

impl LineSplitter {
    /// A splitter carried across an upgrade: the bytes of an unfinished
    /// line, and whether the last piece was cut.
    pub(super) fn carried(pending: Vec<u8>, cut: bool) -> LineSplitter {
        LineSplitter { buf: pending, cut }
    }

    /// The bytes of the line not yet complete.
    pub(super) fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Whether the last piece given out was cut.
    pub(super) fn was_cut(&self) -> bool {
        self.cut
    }

    /// Takes `bytes`; gives every line (or piece) complete now to `emit`
    /// with whether it was cut.
    pub(super) fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&[u8], bool)) {
        self.buf.extend_from_slice(bytes);
        loop {
            let end = match self.buf.iter().position(|&b| b == b'\n') {
                Some(i) if i <= STDERR_LINE_MAX => i + 1,
                _ if self.buf.len() > STDERR_LINE_MAX => utf8_cut(&self.buf),
                _ => break,
            };
            let rest = self.buf.split_off(end);
            let line = std::mem::replace(&mut self.buf, rest);
            let cut = line.last() != Some(&b'\n');
            let was_cut = std::mem::replace(&mut self.cut, cut);
            if !(was_cut && line.iter().all(|&b| b == b'\r' || b == b'\n')) {
                emit(text(&line), cut);
            }
        }
    }

    /// The end of the stream: what is left is a last line, not cut.
    pub(super) fn finish(&mut self, mut emit: impl FnMut(&[u8], bool)) {
        if !self.buf.is_empty() {
            emit(text(&self.buf), false);
            self.buf.clear();
        }
    }
}

/// A line without its line end (and the `\r`s before it).
fn text(mut line: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r'] = line {
        line = rest;
    }
    line
}

/// Where to cut `buf` (longer than STDERR_LINE_MAX) into a piece of at
/// most STDERR_LINE_MAX bytes: before the UTF-8 character that would
/// straddle the limit, so no character is split in two (bytes that are not
/// UTF-8 are cut at the limit).
fn utf8_cut(buf: &[u8]) -> usize {
    let continuation = |i: usize| buf[i] & 0xc0 == 0x80;
    let mut k = STDERR_LINE_MAX;
    while k > STDERR_LINE_MAX - 3 && continuation(k) {
        k -= 1;
    }
    if continuation(k) { STDERR_LINE_MAX } else { k }
}

impl Daemon {
    pub(super) fn watch_stderr(&mut self, fd: OwnedFd, service: &str, pid: Pid) {
        if let Some(token) = self.watch.watch(fd.as_raw_fd(), Watched::Stderr) {
            self.pipes.insert(
                token,
                StderrPipe {
                    file: File::from(fd),
                    service: service.to_string(),
                    pid,
                    lines: LineSplitter::default(),
                },
            );
        }
    }

    pub(super) fn read_stderr(&mut self, token: Token) {
        let Some(pipe) = self.pipes.get_mut(&token) else {
            return;
        };
        let mut chunk = [0u8; 4096];
        let mut reads = 0;
        let eof = loop {
            // A child that writes stderr without pause must not hold the
            // loop: after a budget, this pipe waits its turn (ready list).
            if reads == STDERR_READS_PER_TURN {
                self.ready.push(token);
                break false;
            }
            reads += 1;
            match pipe.file.read(&mut chunk) {
                Ok(0) => break true,
                Ok(n) => {
                    let (service, pid) = (&pipe.service, pipe.pid);
                    pipe.lines
                        .push(&chunk[..n], |line, cut| log_line(service, pid, line, cut));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        if eof {
            let mut pipe = self.pipes.remove(&token).expect("present");
            self.watch.forget(token);
            let (service, pid) = (&pipe.service, pipe.pid);
            pipe.lines
                .finish(|line, cut| log_line(service, pid, line, cut));
            self.watch.deregister(pipe.file.as_raw_fd());
        }
    }
}

/// The `stderr` line (superd.8, LOGS).
fn log_line(service: &str, pid: Pid, text: &[u8], cut: bool) {
    info!(
        "stderr service={service} pid={pid} line={}{}",
        crate::logging::quote_bytes(text),
        if cut { " cut=true" } else { "" }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line `push`es of `chunks` (then `finish`) give, with `cut`.
    fn lines(chunks: &[&[u8]]) -> Vec<(Vec<u8>, bool)> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, |l, cut| out.push((l.to_vec(), cut)));
        }
        s.finish(|l, cut| out.push((l.to_vec(), cut)));
        out
    }

    fn x(n: usize) -> Vec<u8> {
        vec![b'x'; n]
    }

    #[test]
    fn lines_end_at_newline_without_their_cr() {
        assert_eq!(
            lines(&[b"a\nb\r\nc", b"d\n\nlast"]),
            [
                (b"a".to_vec(), false),
                (b"b".to_vec(), false),
                (b"cd".to_vec(), false),
                (b"".to_vec(), false),
                (b"last".to_vec(), false),
            ]
        );
    }

    #[test]
    fn a_line_of_exactly_4096_bytes_goes_whole_even_across_reads() {
        let mut line = x(STDERR_LINE_MAX);
        line.push(b'\n');
        assert_eq!(lines(&[&line]), [(x(4096), false)]);
        assert_eq!(lines(&[&x(4096), b"\n"]), [(x(4096), false)]);
        // The `\r` counts: 4097 bytes before the `\n`, so the piece is cut
        // at 4096, and the line end right after it ends that line.
        assert_eq!(lines(&[&x(4000), &x(96), b"\r\n"]), [(x(4096), true)]);
    }

    #[test]
    fn a_longer_line_goes_in_marked_pieces() {
        let mut line = x(4097);
        line.push(b'\n');
        assert_eq!(lines(&[&line]), [(x(4096), true), (x(1), false)]);
        assert_eq!(
            lines(&[&x(9000)]),
            [(x(4096), true), (x(4096), true), (x(808), false)]
        );
    }

    #[test]
    fn a_line_end_right_after_a_cut_ends_that_line() {
        let mut line = x(4096);
        line.extend_from_slice(b"\r\nnext\n");
        assert_eq!(
            lines(&[&line]),
            [(x(4096), true), (b"next".to_vec(), false)]
        );
    }

    #[test]
    fn no_character_is_split_at_the_cut() {
        // "é" (2 bytes) would straddle byte 4096: the piece ends before it.
        let mut line = x(4095);
        line.extend_from_slice("é\n".as_bytes());
        assert_eq!(
            lines(&[&line]),
            [(x(4095), true), ("é".as_bytes().to_vec(), false)]
        );
        // A 4-byte character starting at 4094 goes whole to the next piece.
        let mut line = x(4094);
        line.extend_from_slice("😀\n".as_bytes());
        let got = lines(&[&line]);
        assert_eq!(got[0], (x(4094), true));
        assert_eq!(got[1], ("😀".as_bytes().to_vec(), false));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_cut_at_the_limit() {
        let bytes = vec![0x80u8; 5000];
        let got = lines(&[&bytes]);
        assert_eq!(got[0].0.len(), STDERR_LINE_MAX);
        assert!(got[0].1);
        assert_eq!(got[1].0.len(), 5000 - STDERR_LINE_MAX);
    }

    #[test]
    fn a_carried_splitter_goes_on_where_the_last_image_stopped() {
        let mut s = LineSplitter::carried(b"half".to_vec(), true);
        let mut out = Vec::new();
        s.push(b" line\n", |l, cut| out.push((l.to_vec(), cut)));
        assert_eq!(out, [(b"half line".to_vec(), false)]);
        assert!(!s.was_cut());
        assert!(s.pending().is_empty());
    }
}
