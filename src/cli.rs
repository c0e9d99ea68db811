//! The command line (superd(8), SYNOPSIS and OPTIONS): argv to [`Options`]. Usage errors are
//! returned as text; `main` prints them and exits 2.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;
use crate::logging::LogFormat;

/// The default configuration directory.
pub const DEFAULT_PATH: &str = "/etc/superd/services.d";

pub const USAGE: &str = "\
usage: superd [OPTIONS] [PATH...]
       superd [OPTIONS] --listen ADDR [--listen ADDR]... [--set FIELD=VALUE]... -- PROGRAM [ARG...]
       superd import inetd FILE [-o DIR]
       superd import xinetd FILE|DIR [-o DIR]
       superd status [ADDRESS] [--json]

An inetd-style superserver: services declared in YAML files (PATH: files or
directories of *.yaml / *.yml; default /etc/superd/services.d).

Options:
  --check              validate the configuration, print every service, exit
  --grace DURATION     how long shutdown waits for children (default 10s)
  --pidfile PATH       write and lock a pid file
  -v, -q               more / less logging (repeatable; RUST_LOG is honoured)
  --log-format FORMAT  text (default) or json: one JSON object per line
  --listen ADDR        one-line mode: serve PROGRAM on ADDR (repeatable)
  --set FIELD=VALUE    one-line mode: set a service field (VALUE is YAML)
  -o DIR               import: write one YAML file per source file into DIR
                       (default: everything on stdout)
  --json               status: print the document as it came
  -h, --help           print this help
  -V, --version        print the version

import translates an inetd.conf, or an xinetd.conf with its includes (or a
directory of xinetd service files), into superd YAML; what maps only
approximately or not at all is a comment naming the source file:line, and a
line on stderr.

status asks a running superd's `builtin: status` service at ADDRESS (a unix
socket path, @name, or host:port; default /run/superd/status.sock) and prints
its services and live connections.

Exit status: 0 clean shutdown or valid --check; 1 invalid configuration or
failure at start; 2 bad usage. import: 0 everything mapped exactly, 3 something
approximated or dropped, 1 a source that cannot be parsed. status: 0, or 1 when
nothing answers. See superd(8) and
superd.yaml(5).
";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    Run(Options),
    /// `superd import inetd|xinetd PATH [-o DIR]`.
    Import {
        kind: crate::import::Kind,
        path: PathBuf,
        out: Option<PathBuf>,
    },
    /// `superd status [ADDRESS] [--json]`.
    Status {
        address: String,
        json: bool,
    },
    Help,
    Version,
}

/// The parsed options of a run (or a `--check`).
#[derive(Debug, PartialEq)]
pub struct Options {
    pub paths: Vec<PathBuf>,
    pub check: bool,
    pub grace: Duration,
    pub pidfile: Option<PathBuf>,
    /// +1 per `-v`, -1 per `-q`.
    pub verbosity: i32,
    pub log_format: LogFormat,
    /// One-line mode: `--listen` addresses, `--set` pairs and the program.
    pub listen: Vec<String>,
    pub sets: Vec<(String, String)>,
    pub program: Vec<String>,
}

impl Options {
    pub fn is_oneline(&self) -> bool {
        !self.listen.is_empty()
    }
}

/// Parses the arguments after `argv[0]`; bad usage is `Error::Usage`.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, Error> {
    parse_args(args).map_err(Error::Usage)
}

fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|a| a == "import") {
        args.next();
        return parse_import(args);
    }
    if args.peek().is_some_and(|a| a == "status") {
        args.next();
        return parse_status(args);
    }
    let mut opts = Options {
        paths: Vec::new(),
        check: false,
        grace: Duration::from_secs(10),
        pidfile: None,
        verbosity: 0,
        log_format: LogFormat::Text,
        listen: Vec::new(),
        sets: Vec::new(),
        program: Vec::new(),
    };
    let mut saw_dashdash = false;
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str().map(str::to_owned) else {
            // Non-UTF-8 is fine for a path, nowhere else.
            if text_is_option(&arg) {
                return Err(format!("invalid option {:?}", arg));
            }
            opts.paths.push(PathBuf::from(arg));
            continue;
        };
        // `--name=value` and `--name value` both work.
        let (name, inline) = match text.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (text.clone(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .ok_or_else(|| format!("{name} needs {what}")),
            }
        };
        // A flag takes no `=value`: `--check=no` must not mean --check.
        let flag = || -> Result<(), String> {
            match &inline {
                Some(v) => Err(format!("{name} takes no value (got {name}={v})")),
                None => Ok(()),
            }
        };
        match name.as_str() {
            "--" => {
                saw_dashdash = true;
                for rest in args.by_ref() {
                    opts.program.push(
                        rest.into_string()
                            .map_err(|a| format!("program argument {a:?} is not UTF-8"))?,
                    );
                }
            }
            "--help" => return flag().map(|()| Command::Help),
            "--version" => return flag().map(|()| Command::Version),
            "--check" => {
                flag()?;
                opts.check = true;
            }
            "--grace" => {
                let v = value("a duration")?;
                opts.grace =
                    crate::config::parse_duration(&v).map_err(|e| format!("--grace: {e}"))?;
            }
            "--log-format" => {
                let v = value("text or json")?;
                opts.log_format = LogFormat::parse(&v)
                    .ok_or_else(|| format!("--log-format {v:?}: expected text or json"))?;
            }
            "--pidfile" => opts.pidfile = Some(PathBuf::from(value("a path")?)),
            "--listen" => opts.listen.push(value("an address")?),
            "--set" => {
                let v = value("FIELD=VALUE")?;
                let (field, val) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--set {v:?}: expected FIELD=VALUE"))?;
                if field.is_empty() {
                    return Err(format!("--set {v:?}: empty field name"));
                }
                opts.sets.push((field.to_string(), val.to_string()));
            }
            s if s.len() > 1 && s.starts_with('-') && !s.starts_with("--") => {
                // Short flags, bundled: -vv, -q.
                for c in s[1..].chars() {
                    match c {
                        'v' => opts.verbosity += 1,
                        'q' => opts.verbosity -= 1,
                        'h' => return Ok(Command::Help),
                        'V' => return Ok(Command::Version),
                        _ => return Err(format!("unknown option -{c}")),
                    }
                }
            }
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ => opts.paths.push(PathBuf::from(arg)),
        }
    }
    if opts.is_oneline() {
        if opts.program.is_empty() {
            return Err("--listen needs a program after --".into());
        }
        if !opts.paths.is_empty() {
            return Err("one-line mode (--listen) takes no configuration PATH".into());
        }
    } else {
        if saw_dashdash || !opts.program.is_empty() {
            return Err("a program after -- needs --listen".into());
        }
        if !opts.sets.is_empty() {
            return Err("--set needs --listen (one-line mode)".into());
        }
        if opts.paths.is_empty() {
            opts.paths.push(PathBuf::from(DEFAULT_PATH));
        }
    }
    Ok(Command::Run(opts))
}

/// `import KIND PATH [-o DIR]` (options before or after PATH).
fn parse_import(args: impl Iterator<Item = OsString>) -> Result<Command, String> {
    let mut words: Vec<OsString> = Vec::new();
    let mut out = None;
    let mut args = args;
    while let Some(a) = args.next() {
        if a == "-o" {
            let dir = args.next().ok_or("import: -o needs a directory")?;
            out = Some(PathBuf::from(dir));
        } else if a == "-h" || a == "--help" {
            return Ok(Command::Help);
        } else if text_is_option(&a) && a != "-" {
            return Err(format!("import: unknown option {a:?}"));
        } else {
            words.push(a);
        }
    }
    let [kind, path] = <[OsString; 2]>::try_from(words).map_err(
        |_| "import needs a format and a path: import inetd FILE, import xinetd FILE|DIR",
    )?;
    let kind = kind
        .to_str()
        .and_then(crate::import::Kind::parse)
        .ok_or_else(|| format!("import: unknown format {kind:?}: expected inetd or xinetd"))?;
    Ok(Command::Import {
        kind,
        path: PathBuf::from(path),
        out,
    })
}

/// `status [ADDRESS] [--json]` (in either order).
fn parse_status(args: impl Iterator<Item = OsString>) -> Result<Command, String> {
    let mut address = None;
    let mut json = false;
    for a in args {
        let a = a
            .into_string()
            .map_err(|a| format!("status: {a:?} is not UTF-8"))?;
        match a.as_str() {
            "--json" => json = true,
            "-h" | "--help" => return Ok(Command::Help),
            s if s.starts_with('-') => return Err(format!("status: unknown option {s}")),
            _ if address.is_some() => return Err("status takes one ADDRESS".into()),
            _ => address = Some(a),
        }
    }
    Ok(Command::Status {
        address: address.unwrap_or_else(|| crate::status::DEFAULT_ADDRESS.to_owned()),
        json,
    })
}

fn text_is_option(arg: &std::ffi::OsStr) -> bool {
    use std::os::unix::ffi::OsStrExt;
    arg.as_bytes().first() == Some(&b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(OsString::from)).map_err(|e| e.to_string())
    }

    fn opts(args: &[&str]) -> Options {
        match p(args) {
            Ok(Command::Run(o)) => o,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn status_takes_an_address_and_json() {
        assert_eq!(
            p(&["status"]),
            Ok(Command::Status {
                address: "/run/superd/status.sock".into(),
                json: false
            })
        );
        assert_eq!(
            p(&["status", "--json", "127.0.0.1:9"]),
            Ok(Command::Status {
                address: "127.0.0.1:9".into(),
                json: true
            })
        );
        assert!(p(&["status", "a", "b"]).is_err());
        assert!(p(&["status", "--jsn"]).is_err());
    }

    #[test]
    fn defaults() {
        let o = opts(&[]);
        assert_eq!(o.paths, vec![PathBuf::from(DEFAULT_PATH)]);
        assert_eq!(o.grace, Duration::from_secs(10));
        assert!(!o.check);
    }

    #[test]
    fn flags_and_values() {
        let o = opts(&[
            "--check",
            "-vv",
            "-q",
            "--grace=500ms",
            "--pidfile",
            "/run/x",
            "a",
            "b",
        ]);
        assert!(o.check);
        assert_eq!(o.verbosity, 1);
        assert_eq!(o.grace, Duration::from_millis(500));
        assert_eq!(o.pidfile, Some(PathBuf::from("/run/x")));
        assert_eq!(o.log_format, LogFormat::Text);
        assert_eq!(opts(&["--log-format", "json"]).log_format, LogFormat::Json);
        assert_eq!(opts(&["--log-format=text"]).log_format, LogFormat::Text);
        assert_eq!(o.paths, vec![PathBuf::from("a"), PathBuf::from("b")]);
    }

    #[test]
    fn oneline() {
        let o = opts(&[
            "--listen",
            "127.0.0.1:0",
            "--set",
            "max_connections=8",
            "--",
            "/bin/cat",
            "-u",
        ]);
        assert_eq!(o.listen, vec!["127.0.0.1:0"]);
        assert_eq!(o.sets, vec![("max_connections".into(), "8".into())]);
        assert_eq!(o.program, vec!["/bin/cat", "-u"]);
        assert!(o.paths.is_empty());
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &["--bogus"][..],
            &["-x"],
            &["--grace"],
            &["--grace", "soon"],
            &["--listen", "1"],
            &["--", "/bin/cat"],
            &["--set", "a=b"],
            &["--listen", "1", "--set", "novalue", "--", "x"],
            &["--listen", "1", "dir", "--", "x"],
            &["--check=no"],
            &["--log-format"],
            &["--log-format", "JSON"],
            &["--log-format=syslog"],
            &["--check="],
            &["--help=foo"],
            &["--version=1"],
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
        assert_eq!(p(&["-h"]), Ok(Command::Help));
        assert_eq!(p(&["--version"]), Ok(Command::Version));
    }

    #[test]
    fn import() {
        use crate::import::Kind;
        assert_eq!(
            p(&["import", "inetd", "/etc/inetd.conf"]),
            Ok(Command::Import {
                kind: Kind::Inetd,
                path: PathBuf::from("/etc/inetd.conf"),
                out: None
            })
        );
        assert_eq!(
            p(&["import", "-o", "out", "xinetd", "/etc/xinetd.d"]),
            Ok(Command::Import {
                kind: Kind::Xinetd,
                path: PathBuf::from("/etc/xinetd.d"),
                out: Some(PathBuf::from("out"))
            })
        );
        for bad in [
            &["import"][..],
            &["import", "inetd"],
            &["import", "bsd", "x"],
            &["import", "inetd", "a", "b"],
            &["import", "inetd", "a", "-o"],
            &["import", "inetd", "a", "--check"],
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn grace_durations() {
        let grace = |v: &str| match p(&["--grace", v]) {
            Ok(Command::Run(o)) => Some(o.grace),
            _ => None,
        };
        assert_eq!(grace("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(grace("30s"), Some(Duration::from_secs(30)));
        assert_eq!(grace("5m"), Some(Duration::from_secs(300)));
        assert_eq!(grace("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(grace("2.5"), Some(Duration::from_millis(2500)));
        assert_eq!(grace("x"), None);
        assert_eq!(grace("-1s"), None);
        assert_eq!(grace("99999999999999"), None);
    }
}
