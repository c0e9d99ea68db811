//! fork, the child sequence, exec. STUB: replaced by the spawn helper.

use std::os::fd::{BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::plan::{ConnInfo, SpawnPlan};

/// The step of the child sequence that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Exec,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        "exec"
    }
}

/// A child that reported a failure before exec (it exits 127).
#[derive(Clone, Copy, Debug)]
pub struct ExecFailure {
    pub step: Step,
    pub errno: Errno,
}

/// A started child.
#[derive(Debug)]
pub struct Spawned {
    pub pid: Pid,
    /// The read end of the child's stderr pipe (`stderr: log`), non-blocking.
    pub stderr: Option<OwnedFd>,
    /// `Some` when the child failed before exec.
    pub exec_failure: Option<ExecFailure>,
}

/// Forks and execs the plan's program on `sock`.
pub fn spawn(_plan: &SpawnPlan, _sock: BorrowedFd<'_>, _conn: &ConnInfo) -> Result<Spawned, Errno> {
    Err(Errno::ENOSYS)
}
