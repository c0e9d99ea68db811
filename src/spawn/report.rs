//! The failure report a child writes before it exits 127: the step of
//! the child sequence that failed ([`Step`]) and its errno, as superd
//! logs them ([`ExecFailure`]), packed in one word of superd's memory.

use std::fmt;

use nix::errno::Errno;

/// The step of the child sequence that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Signals,
    Setsid,
    Dup2,
    Fds,
    Rlimit,
    Nice,
    Umask,
    SetnsNet,
    SetnsMnt,
    Chroot,
    Chdir,
    Setgroups,
    Setgid,
    Setuid,
    Verify,
    Capabilities,
    NoNewPrivs,
    Exec,
}
// `Umask` never fails (umask(2) cannot) but keeps its place in the
// vocabulary; `Verify` reports EPERM: the ids did not stick, or a non-root
// child could become root again.

impl Step {
    /// In sequence order; the index is the code in the failure report.
    const ALL: [Step; 18] = [
        Step::Signals,
        Step::Setsid,
        Step::Dup2,
        Step::Fds,
        Step::Rlimit,
        Step::Nice,
        Step::Umask,
        Step::SetnsNet,
        Step::SetnsMnt,
        Step::Chroot,
        Step::Chdir,
        Step::Setgroups,
        Step::Setgid,
        Step::Setuid,
        Step::Verify,
        Step::Capabilities,
        Step::NoNewPrivs,
        Step::Exec,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Signals => "signals",
            Step::Setsid => "setsid",
            Step::Dup2 => "dup2",
            Step::Fds => "fds",
            Step::Rlimit => "rlimit",
            Step::Nice => "nice",
            Step::Umask => "umask",
            Step::SetnsNet => "setns_net",
            Step::SetnsMnt => "setns_mnt",
            Step::Chroot => "chroot",
            Step::Chdir => "chdir",
            Step::Setgroups => "setgroups",
            Step::Setgid => "setgid",
            Step::Setuid => "setuid",
            Step::Verify => "verify",
            Step::Capabilities => "capabilities",
            Step::NoNewPrivs => "no_new_privs",
            Step::Exec => "exec",
        }
    }

    fn code(self) -> u32 {
        self as u32
    }

    fn from_code(code: u32) -> Option<Step> {
        Step::ALL.get(code as usize).copied()
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A child that reported a failure before exec (it exits 127).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecFailure {
    pub step: Step,
    pub errno: Errno,
}

impl fmt::Display for ExecFailure {
    /// The fields of the `exec failed` log line: `step=exec error="…"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step={} error={:?}", self.step, self.errno.desc())
    }
}

/// The failure report as the child stores it: the step's code plus one
/// in the high half (so that 0 is "no failure"), the errno in the low.
pub(super) fn encode(step: Step, errno: libc::c_int) -> u64 {
    (u64::from(step.code()) + 1) << 32 | u64::from(errno as u32)
}

/// The failure a report word holds; `None` for 0.
pub(super) fn decode(word: u64) -> Option<ExecFailure> {
    let code = (word >> 32) as u32;
    let step = code.checked_sub(1)?;
    Some(ExecFailure {
        step: Step::from_code(step).unwrap_or(Step::Exec),
        errno: Errno::from_raw(word as u32 as i32),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_codes_round_trip() {
        for step in Step::ALL {
            assert_eq!(Step::from_code(step.code()), Some(step));
        }
        assert_eq!(Step::from_code(99), None);
        assert_eq!(decode(0), None);
        let f = decode(encode(Step::Setuid, libc::EPERM)).expect("a failure");
        assert_eq!((f.step, f.errno), (Step::Setuid, Errno::EPERM));
        let f = decode(encode(Step::Signals, 0)).expect("a failure");
        assert_eq!((f.step, f.errno), (Step::Signals, Errno::from_raw(0)));
        assert_eq!(Step::Exec.as_str(), "exec");
        assert_eq!(Step::Setgroups.to_string(), "setgroups");
    }

    #[test]
    fn failure_formats_as_log_fields() {
        let f = ExecFailure {
            step: Step::Exec,
            errno: Errno::ENOENT,
        };
        assert_eq!(
            f.to_string(),
            r#"step=exec error="No such file or directory""#
        );
    }
}
