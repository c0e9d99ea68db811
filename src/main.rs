//! The superd binary: parse the command line, set up logging, load the
//! configuration, run the daemon; map every failure to its exit status (superd(8), EXIT STATUS).

use std::process::ExitCode as ProcessExit;

use superd::cli::{self, Command};
use superd::event_loop::{Daemon, Source};
use superd::logging::LogFormat;
use superd::{ExitCode, check, notify, pidfile, signals, startup};

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
    let source = if opts.is_oneline() {
        Source::OneLine {
            listen: opts.listen.clone(),
            sets: opts.sets.clone(),
            program: opts.program.clone(),
        }
    } else {
        Source::Paths(opts.paths.clone())
    };
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
    let daemon = match Daemon::start(config, source, opts.grace, signals, notifier) {
        Ok(d) => d,
        Err(e) => {
            log::error!("start failed: {e}");
            return ExitCode::Failure;
        }
    };
    daemon.run()
}
