//! superd — an inetd-style superserver.
//!
//! One process, one mio event loop, one listening socket per configured
//! address. A map of the crate, in the order a connection meets it:
//!
//! - [`cli`]: argv to [`cli::Options`]; exit codes live in [`ExitCode`].
//! - [`config`]: YAML files to validated [`service::Service`]s, every error
//!   with file:line:column (`raw` mirrors a file, `validate` checks it).
//! - [`service`]: the immutable, validated service and the [`service::ListenerKey`]
//!   that decides which sockets survive a reload.
//! - [`listener`]: binding and configuring listening sockets;
//!   [`listener_inherit`]: the sockets superd inherits (LISTEN_FDS).
//! - [`event_loop`]: the only owner of `mio::Poll`: accept, dispatch,
//!   pause/resume, reload, status, shutdown.
//! - [`access`], [`limits`]: pure policy (only_from/deny_from; connection
//!   caps, per-source counts, rate buckets), time passed in.
//! - [`proxy`]: the PROXY protocol header (v1, v2) a load balancer sends
//!   first, parsed from peeked bytes; the child variables it implies.
//! - [`plan`]: everything a child needs, built before `fork`.
//! - [`spawn`]: the only fork/exec code, small and audited;
//!   [`spawn::sandbox`] makes the namespaces of fenced services, once per
//!   service, for their children to join.
//! - [`children`]: the pid table, reaping, exit lines, timeouts.
//! - [`builtins`]: echo, discard, daytime, chargen, time, served in the loop.
//! - [`signals`]: signals turned into loop events (signalfd).
//! - [`upgrade`]: upgrade in place on SIGUSR2: the versioned state
//!   ([`upgrade::state`]), the new binary's check, the exec, the rollback.
//! - [`notify`]: sd_notify datagrams; [`pidfile`]: the locked pid file.
//! - [`logging`]: the non-blocking stderr logger.
//! - [`metrics`]: the per-service counters, the loop's snapshot of itself,
//!   and `builtin: metrics` (HTTP, Prometheus text format);
//!   [`status`]: `builtin: status` (JSON) and `superd status`.
//! - [`import`]: `superd import`, inetd.conf and xinetd.conf to YAML;
//!   [`services`]: /etc/services.

#![deny(unsafe_code)]

pub mod access;
pub mod builtins;
pub mod check;
pub mod children;
pub mod cli;
pub mod config;
pub mod error;
pub mod event_loop;
pub mod import;
pub mod limits;
pub mod listener;
pub mod listener_inherit;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod pidfile;
pub mod plan;
pub mod proxy;
pub mod service;
pub mod services;
pub mod signals;
pub mod spawn;
pub mod startup;
pub mod status;
pub mod sys;
pub mod tree;
pub mod upgrade;

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
