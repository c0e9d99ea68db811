//! The program from its command line to its exit status: parse the command
//! line, set up logging, load the configuration, run the daemon (or restore
//! it after an upgrade); every failure becomes its message and exit status
//! in one place, `report` (superd(8), EXIT STATUS).

use crate::cli::{self, Command};
use crate::config::Source;
use crate::error::Error;
use crate::event_loop::Daemon;
use crate::logging::LogFormat;
use crate::{ExitCode, check, notify, pidfile, signals, startup, upgrade};

/// The whole program: its exit status (superd(8), EXIT STATUS).
pub fn main() -> ExitCode {
    // Before anything can open a descriptor: fds 0-2 must be open, or the
    // first socket would land on one and reach a child as its stderr.
    startup::ensure_std_fds();
    match cli::parse(std::env::args_os().skip(1)) {
        Err(e) => report(&e, false),
        Ok(Command::Run(opts)) => {
            // A daemon logging JSON keeps every line of its stderr JSON;
            // --check speaks to a person and keeps the plain lines.
            let json = opts.log_format == LogFormat::Json && !opts.check;
            run(opts).unwrap_or_else(|e| report(&e, json))
        }
        Ok(other) => command(other),
    }
}

/// The one place a failure becomes its message and exit status (superd.8,
/// EXIT STATUS); `json`: the daemon logs JSON, every line through the log.
fn report(e: &Error, json: bool) -> ExitCode {
    match e {
        Error::Usage(_) => {
            eprintln!("superd: {e}");
            eprintln!("Try 'superd --help'.");
        }
        Error::Config { count } if json => log::error!("start failed errors={count}"),
        // A value the service cannot take is an invalid configuration
        // whether it came from a file or from --set/--listen (superd(8),
        // --set: "with the same validation"); only the shape of the
        // command line itself, checked by cli::parse, is bad usage.
        Error::Config { .. } => eprintln!("superd: {e}"),
        e if e.is_start() => log::error!("start failed: {e}"),
        e => log::error!("{e}"),
    }
    e.exit_code()
}

/// The commands that are not the daemon.
fn command(cmd: Command) -> ExitCode {
    match cmd {
        Command::Help => {
            print!("{}", cli::USAGE);
            ExitCode::Ok
        }
        Command::Version => {
            println!("superd {}", env!("CARGO_PKG_VERSION"));
            ExitCode::Ok
        }
        Command::Import { kind, path, out } => {
            match crate::import::run(kind, &path, out.as_deref()) {
                0 => ExitCode::Ok,
                crate::import::EXIT_INEXACT => ExitCode::Inexact,
                _ => ExitCode::Failure,
            }
        }
        Command::Status { address, json } => crate::status::run(&address, json),
        Command::Run(_) => unreachable!("the daemon is run by main"),
    }
}

/// The daemon: its exit status, or the failure that stops it.
fn run(opts: cli::Options) -> Result<ExitCode, Error> {
    crate::logging::init(opts.verbosity, opts.log_format);
    startup::not_dumpable();
    upgrade::settle_version();
    // After an upgrade (superd.8, UPGRADING): the previous image's state.
    let incoming = if opts.check {
        None
    } else {
        upgrade::take_from_env()
    };
    if let Some(incoming) = incoming {
        return Ok(run_upgraded(opts, incoming));
    }
    let source = Source::of(&opts);
    let config = source.load().map_err(|errors| {
        for e in &errors {
            if opts.log_format == LogFormat::Json && !opts.check {
                log::error!("config error: {e}");
            } else {
                eprintln!("{e}");
            }
        }
        Error::Config {
            count: errors.len(),
        }
    })?;
    if opts.check {
        print!("{}", check::describe(&config));
        return Ok(ExitCode::Ok);
    }
    let notify_socket = std::env::var("NOTIFY_SOCKET").ok();
    let notifier = notify::Notifier::from_env();
    let signals = signals::Signals::install().map_err(|e| Error::Signals {
        reason: e.to_string(),
    })?;
    // superd holds a pidfd for each live child (and a connection cgroup's
    // two descriptors): its soft `nofile` goes up to the hard limit.
    // Children do not inherit it (superd.yaml(5), `rlimits`: their soft
    // `nofile` is 1024 unless set).
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    let _pidfile = match &opts.pidfile {
        Some(path) => Some(pidfile::PidFile::acquire(path)?),
        None => None,
    };
    // Before the listeners are bound and logged: whoever counts superd's
    // descriptors once it listens finds them all.
    let mut ctx = upgrade::Context::at_start(None, notify_socket);
    ctx.pidfile = _pidfile.as_ref().map(pidfile::PidFile::held);
    let mut daemon = Daemon::start(config, source, opts.grace, signals, notifier)?;
    daemon.set_upgrade(ctx);
    Ok(daemon.run())
}

/// The start of an image after an upgrade: restores the state, or, when
/// it cannot, executes the previous binary with it (a rollback).
fn run_upgraded(opts: cli::Options, incoming: upgrade::Incoming) -> ExitCode {
    let fail = |incoming: upgrade::Incoming, copies: Option<upgrade::Copies>, why: String| {
        log::error!("cannot restore the upgrade state reason={why:?}");
        if let Some(c) = copies {
            c.put_back();
        }
        let failed = incoming.failed.clone();
        let err = incoming.roll_back(&why);
        log::error!(
            "start failed: upgrade could not be rolled back error={err:?} first={failed:?}"
        );
        ExitCode::Failure
    };
    let state = match incoming.read() {
        Ok(s) => s,
        Err(why) => return fail(incoming, None, why),
    };
    let copies = upgrade::Copies::of(&state);
    let source = Source::of(&opts);
    let config = match source.load() {
        Ok(c) => c,
        Err(errors) => {
            let why = errors.first().map_or_else(String::new, |e| e.to_string());
            return fail(incoming, Some(copies), format!("configuration: {why}"));
        }
    };
    let notifier = notify::Notifier::from_value(state.notify_socket.as_deref());
    let signals = match signals::Signals::install() {
        Ok(s) => s,
        Err(e) => return fail(incoming, Some(copies), format!("signals: {e}")),
    };
    let mut ctx =
        upgrade::Context::at_start(Some(state.exe.clone().into()), state.notify_socket.clone());
    let daemon = Daemon::restore(config, source, opts.grace, signals, notifier, &state);
    let mut daemon = match daemon {
        Ok(d) => d,
        Err(e) => return fail(incoming, Some(copies), e.to_string()),
    };
    let _pidfile = state.pidfile.as_ref().and_then(|p| {
        let fd = upgrade::take_fd(p.fd)?;
        pidfile::PidFile::adopt(fd, std::path::Path::new(&p.path))
            .inspect_err(|e| log::warn!("{e}"))
            .ok()
    });
    crate::event_loop::log_restored(&state, incoming.failed.as_deref());
    drop(copies);
    drop(incoming);
    ctx.pidfile = _pidfile.as_ref().map(pidfile::PidFile::held);
    daemon.set_upgrade(ctx);
    daemon.run()
}
