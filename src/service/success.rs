//! `success_status`: the exits of a child that count as a normal end.

use std::fmt;

/// One `success_status` entry: an exit status or a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitMatch {
    Status(u8),
    Signal(nix::sys::signal::Signal),
}

/// The exits of a child that count as a normal end of its connection
/// (`success_status`, as systemd's `SuccessExitStatus=`): status 0 always,
/// and the statuses and signals listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SuccessStatus {
    /// Bit `n` for status `n`.
    codes: [u64; 4],
    /// Bit `n - 1` for signal `n`.
    signals: u64,
}

impl Default for SuccessStatus {
    fn default() -> SuccessStatus {
        SuccessStatus {
            codes: [1, 0, 0, 0],
            signals: 0,
        }
    }
}

impl SuccessStatus {
    /// Status 0 and every entry of `list`.
    pub fn new(list: &[ExitMatch]) -> SuccessStatus {
        let mut s = SuccessStatus::default();
        for m in list {
            match *m {
                ExitMatch::Status(n) => s.codes[usize::from(n / 64)] |= 1 << (n % 64),
                ExitMatch::Signal(sig) => s.signals |= Self::signal_bit(sig),
            }
        }
        s
    }

    fn signal_bit(sig: nix::sys::signal::Signal) -> u64 {
        1u64.checked_shl(sig as u32 - 1).unwrap_or(0)
    }

    /// Whether exit status `code` is a normal end.
    pub fn has_status(&self, code: i32) -> bool {
        u8::try_from(code).is_ok_and(|n| self.codes[usize::from(n / 64)] & (1 << (n % 64)) != 0)
    }

    /// Whether death by `sig` is a normal end.
    pub fn has_signal(&self, sig: nix::sys::signal::Signal) -> bool {
        self.signals & Self::signal_bit(sig) != 0
    }
}

/// `0,255,SIGPIPE`: the statuses in order, then the signals by number.
impl fmt::Display for SuccessStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            let s = if first { "" } else { "," };
            first = false;
            f.write_str(s)
        };
        for n in 0..=255u8 {
            if self.has_status(n.into()) {
                sep(f)?;
                write!(f, "{n}")?;
            }
        }
        for sig in nix::sys::signal::Signal::iterator() {
            if self.has_signal(sig) {
                sep(f)?;
                f.write_str(sig.as_str())?;
            }
        }
        Ok(())
    }
}
