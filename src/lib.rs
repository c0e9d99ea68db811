//! superd — an inetd-style superserver.
//!
//! One process, one mio event loop, one listening socket per configured
//! address; on a connection it clones, puts the socket on the child's fds
//! 0–2 and execs the service's program. The man pages (superd(8),
//! superd.yaml(5)) are the contract; this is the map of the code, in the
//! order a connection meets it.
//!
//! **Start and configuration**
//! - [`main`] (`app.rs`): command line to exit status; every failure
//!   becomes its message and exit code in one place, through [`error`].
//! - `cli`: argv to options. `startup`: fds 0–2, non-dumpable.
//! - [`config`]: YAML files (or the one-line mode) to validated
//!   [`service::Service`]s, every error with file:line:column: `raw` mirrors
//!   a file, `validate` checks it by concern, `source` says where it comes
//!   from on every reload. `services`: /etc/services.
//! - [`service`]: the immutable service, its `ServiceId`, and the
//!   `ListenerKey` that decides which sockets survive a reload.
//! - `check`: the `--check` description.
//!
//! **The loop** (`event_loop/`, the only owner of `mio::Poll`)
//! - `mod.rs` routes: `run` → `dispatch` over `watch::Watched` → the part
//!   that owns the token; `connection_ended` settles a connection's slot.
//! - `accept` (listener → admitted connection → child), `wait` (wait-mode
//!   services), `exec` (a child's start and its exec report), `reap`
//!   (pidfds, the orphan sweep), `builtin` (sessions, UDP), `header`
//!   (PROXY header waits), `stderr` (child stderr lines), `timers`,
//!   `services` (per-service state, the exec gate), `install` (start and
//!   reload), `status` (snapshots, SIGUSR1), `shutdown`.
//! - `listener`: binding, accepting, socket files; `listener::pool`
//!   matches running sockets to a reload's services.
//!   `listener_inherit`: sockets handed to superd (LISTEN_FDS).
//! - `access`, `limits`: pure policy (only_from/deny_from; caps, per-source
//!   counts, rate buckets, exec-failure pacing), time passed in.
//! - [`proxy`]: the PROXY protocol header, parsed from peeked bytes.
//!
//! **A child**
//! - [`plan`]: everything a child needs, built before the clone.
//! - [`spawn`]: the only clone/exec code: `spawn` (parent side),
//!   `spawn::child` (after the clone: raw syscalls only), `spawn::sandbox`
//!   (fences), `spawn::fdpark` (long-lived fds kept high).
//! - `children`: one record per child by `Pid`; exit lines; the timeout
//!   machine (TERM → KILL → leftovers). `tree`: subreaper and per-connection
//!   cgroups.
//! - `builtins`: echo, discard, daytime, chargen, time, served in the loop.
//!
//! **Around it**
//! - `signals` (signalfd), `notify` (sd_notify), `pidfile`, `logging` (the
//!   non-blocking stderr logger), `metrics` and `status` (Prometheus text,
//!   status JSON, `superd status`), `upgrade` (SIGUSR2: the versioned state,
//!   the new binary's check, the exec, the rollback), `import` (`superd
//!   import`), `sys` (every raw syscall outside `spawn`).
//!
//! Modules are crate-private except what the integration tests, benches and
//! fuzz targets drive directly.

#![deny(unsafe_code)]

mod access;
mod app;
mod builtins;
mod check;
mod children;
mod cli;
pub mod config;
mod error;
mod event_loop;
mod import;
mod limits;
mod listener;
mod listener_inherit;
mod logging;
mod metrics;
mod notify;
mod pidfile;
pub mod plan;
pub mod proxy;
pub mod service;
mod services;
mod signals;
pub mod spawn;
mod startup;
mod status;
mod sys;
mod tree;
mod upgrade;

pub use app::main;

/// superd's exit statuses (superd(8), EXIT STATUS), in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// A clean shutdown, or a valid `--check`.
    Ok = 0,
    /// An invalid configuration or a failure at start.
    Failure = 1,
    /// Bad usage.
    Usage = 2,
    /// `superd import`: something was approximated or dropped.
    Inexact = 3,
}
