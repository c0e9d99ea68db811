//! The superd binary: parse the command line, set up logging, load the
//! configuration, run the daemon; map every failure to its exit status (superd(8), EXIT STATUS).

use std::process::ExitCode as ProcessExit;

use superd::cli::{self, Command};
use superd::event_loop::{Daemon, Source};
use superd::logging::LogFormat;
use superd::{ExitCode, check, notify, pidfile, signals, startup, upgrade};

fn main() -> ProcessExit {
    // Before anything can open a descriptor: fds 0-2 must be open, or the
    // first socket would land on one and reach a child as its stderr.
    startup::ensure_std_fds();
    let code = run();
    ProcessExit::from(code as u8)
}

fn run() -> ExitCode {
    let opts = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            return ExitCode::Ok;
        }
        Ok(Command::Version) => {
            println!("superd {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::Ok;
        }
        Ok(Command::Import { kind, path, out }) => {
            return match superd::import::run(kind, &path, out.as_deref()) {
                0 => ExitCode::Ok,
                superd::import::EXIT_INEXACT => ExitCode::Inexact,
                _ => ExitCode::Failure,
            };
        }
        Ok(Command::Status { address, json }) => {
            return superd::status::run(&address, json);
        }
        Ok(Command::Run(o)) => o,
        Err(msg) => {
            eprintln!("superd: {msg}");
            eprintln!("Try 'superd --help'.");
            return ExitCode::Usage;
        }
    };
    superd::logging::init(opts.verbosity, opts.log_format);
    startup::not_dumpable();
    upgrade::settle_version();
    // After an upgrade (superd.8, UPGRADING): the previous image's state.
    let incoming = if opts.check {
        None
    } else {
        upgrade::take_from_env()
    };
    if let Some(incoming) = incoming {
        return run_upgraded(opts, incoming);
    }
    let source = source_of(&opts);
    let config = match source.load() {
        Ok(c) => c,
        Err(errors) if opts.log_format == LogFormat::Json && !opts.check => {
            // A daemon logging JSON keeps every line of its stderr JSON;
            // --check speaks to a person and keeps the plain lines.
            for e in &errors {
                log::error!("config error: {e}");
            }
            log::error!("start failed errors={}", errors.len());
            return ExitCode::Failure;
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!(
                "superd: {} error{} in the configuration",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            // A value the service cannot take is an invalid configuration
            // whether it came from a file or from --set/--listen (superd(8),
            // --set: "with the same validation"); only the shape of the command
            // line itself, checked by cli::parse, is bad usage.
            return ExitCode::Failure;
        }
    };
    if opts.check {
        print!("{}", check::describe(&config));
        return ExitCode::Ok;
    }
    let notify_socket = std::env::var("NOTIFY_SOCKET").ok();
    let notifier = notify::Notifier::from_env();
    let signals = match signals::Signals::install() {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot set up signals: {e}");
            return ExitCode::Failure;
        }
    };
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
        Some(path) => match pidfile::PidFile::acquire(path) {
            Ok(p) => Some(p),
            Err(msg) => {
                log::error!("{msg}");
                return ExitCode::Failure;
            }
        },
        None => None,
    };
    // Before the listeners are bound and logged: whoever counts superd's
    // descriptors once it listens finds them all.
    let mut ctx = upgrade::Context::at_start(None, notify_socket);
    ctx.pidfile = _pidfile.as_ref().map(pidfile::PidFile::held);
    let mut daemon = match Daemon::start(config, source, opts.grace, signals, notifier) {
        Ok(d) => d,
        Err(e) => {
            log::error!("start failed: {e}");
            return ExitCode::Failure;
        }
    };
    daemon.set_upgrade(ctx);
    daemon.run()
}

fn source_of(opts: &cli::Options) -> Source {
    if opts.is_oneline() {
        Source::OneLine {
            listen: opts.listen.clone(),
            sets: opts.sets.clone(),
            program: opts.program.clone(),
        }
    } else {
        Source::Paths(opts.paths.clone())
    }
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
    let source = source_of(&opts);
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
    superd::event_loop::log_restored(&state, incoming.failed.as_deref());
    drop(copies);
    drop(incoming);
    ctx.pidfile = _pidfile.as_ref().map(pidfile::PidFile::held);
    daemon.set_upgrade(ctx);
    daemon.run()
}
