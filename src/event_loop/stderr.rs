//! `stderr: log`: a child's stderr pipe read into `stderr` lines, cut at
//! STDERR_LINE_MAX bytes on a character boundary.

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

pub(super) struct StderrPipe {
    pub(super) file: File,
    pub(super) service: String,
    pub(super) pid: Pid,
    pub(super) buf: Vec<u8>,
    /// The last line logged was cut at STDERR_LINE_MAX: a newline right
    /// after it ends that line, not an empty one.
    pub(super) cut: bool,
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
                    buf: Vec::new(),
                    cut: false,
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
                    pipe.buf.extend_from_slice(&chunk[..n]);
                    // A line of at most STDERR_LINE_MAX bytes goes whole;
                    // a longer one in pieces of at most that, each cut at
                    // a character boundary and marked (it goes on in the
                    // next record), wherever it falls in the reads.
                    loop {
                        let end = match pipe.buf.iter().position(|&b| b == b'\n') {
                            Some(i) if i <= STDERR_LINE_MAX => i + 1,
                            _ if pipe.buf.len() > STDERR_LINE_MAX => utf8_cut(&pipe.buf),
                            _ => break,
                        };
                        let rest = pipe.buf.split_off(end);
                        let line = std::mem::replace(&mut pipe.buf, rest);
                        let cut = line.last() != Some(&b'\n');
                        let was_cut = std::mem::replace(&mut pipe.cut, cut);
                        if !(was_cut && line.iter().all(|&b| b == b'\r' || b == b'\n')) {
                            log_stderr_line(pipe, &line, cut);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        if eof {
            let pipe = self.pipes.remove(&token).expect("present");
            self.watch.forget(token);
            if !pipe.buf.is_empty() {
                log_stderr_line(&pipe, &pipe.buf, false);
            }
            self.watch.deregister(pipe.file.as_raw_fd());
        }
    }
}

/// Where to cut `buf` (longer than STDERR_LINE_MAX) into a piece of at
/// most STDERR_LINE_MAX bytes: before the UTF-8 character that would
/// straddle the limit, so no character is split in two (bytes that are not
/// UTF-8 are cut at the limit).
pub(super) fn utf8_cut(buf: &[u8]) -> usize {
    let continuation = |i: usize| buf[i] & 0xc0 == 0x80;
    let mut k = STDERR_LINE_MAX;
    while k > STDERR_LINE_MAX - 3 && continuation(k) {
        k -= 1;
    }
    if continuation(k) { STDERR_LINE_MAX } else { k }
}

pub(super) fn log_stderr_line(pipe: &StderrPipe, line: &[u8], cut: bool) {
    let mut text = line;
    while let [rest @ .., b'\n' | b'\r'] = text {
        text = rest;
    }
    info!(
        "stderr service={} pid={} line={}{}",
        pipe.service,
        pipe.pid,
        crate::logging::quote_bytes(text),
        if cut { " cut=true" } else { "" }
    );
}
