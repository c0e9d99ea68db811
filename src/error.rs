//! Every failure that ends superd, or one of its commands, before or
//! instead of the loop: one enum, each variant with its context, its
//! message written once (`Display`) and its exit status (`exit_code`,
//! superd.8, EXIT STATUS). What the loop meets while it runs is logged and
//! survived, never an `Error`.

use std::fmt;
use std::path::PathBuf;

use crate::ExitCode;

/// Why superd stops.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// The command line is not one superd takes: exit 2.
    Usage(String),
    /// The configuration has `count` errors, each reported already.
    Config { count: usize },
    /// A listening socket of `service` could not be bound (at start; on a
    /// reload, the reload is rolled back).
    Bind { service: String, reason: String },
    /// The namespaces a service's fences ask for could not be made.
    Fences { service: String, reason: String },
    /// The pid file could not be taken.
    PidFile { path: PathBuf, reason: String },
    /// Signals could not be blocked and read through a signalfd.
    Signals { reason: String },
    /// The loop's own setup: `what` failed with `reason`.
    Setup { what: &'static str, reason: String },
}

impl Error {
    /// The exit status superd ends with (superd.8, EXIT STATUS): 2 for bad
    /// usage, 1 for everything else.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) => ExitCode::Usage,
            _ => ExitCode::Failure,
        }
    }

    /// Whether the log says `start failed: ` before the message (a failure
    /// of the daemon's start, not of what comes before it).
    pub fn is_start(&self) -> bool {
        matches!(
            self,
            Error::Bind { .. } | Error::Fences { .. } | Error::Setup { .. }
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(why) => f.write_str(why),
            Error::Config { count } => write!(
                f,
                "{count} error{} in the configuration",
                if *count == 1 { "" } else { "s" }
            ),
            Error::Bind { service, reason } => write!(f, "service {service}: {reason}"),
            Error::Fences { service, reason } => {
                write!(f, "service {service}: cannot set up its fences: {reason}")
            }
            Error::PidFile { path, reason } => write!(f, "pidfile {}: {reason}", path.display()),
            Error::Signals { reason } => write!(f, "cannot set up signals: {reason}"),
            Error::Setup { what, reason } => write!(f, "{what}: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_exits_2_and_everything_else_1() {
        assert_eq!(Error::Usage("x".into()).exit_code(), ExitCode::Usage);
        assert_eq!(Error::Config { count: 2 }.exit_code(), ExitCode::Failure);
        let e = Error::PidFile {
            path: "/run/superd.pid".into(),
            reason: "held by another superd (pid 7)".into(),
        };
        assert_eq!(e.exit_code(), ExitCode::Failure);
    }

    #[test]
    fn each_message_reads_as_the_logs_show_it() {
        assert_eq!(
            Error::Config { count: 1 }.to_string(),
            "1 error in the configuration"
        );
        assert_eq!(
            Error::Config { count: 3 }.to_string(),
            "3 errors in the configuration"
        );
        let bind = Error::Bind {
            service: "echo".into(),
            reason: "127.0.0.1:7: Address in use".into(),
        };
        assert_eq!(
            bind.to_string(),
            "service echo: 127.0.0.1:7: Address in use"
        );
        let pid = Error::PidFile {
            path: "/run/x.pid".into(),
            reason: "lock: EIO".into(),
        };
        assert_eq!(pid.to_string(), "pidfile /run/x.pid: lock: EIO");
        let setup = Error::Setup {
            what: "cannot create poll",
            reason: "EMFILE".into(),
        };
        assert_eq!(setup.to_string(), "cannot create poll: EMFILE");
        assert!(setup.is_start() && bind.is_start() && !pid.is_start());
    }
}
