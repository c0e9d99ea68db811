//! `superd import inetd FILE` and `superd import xinetd FILE|DIR`: an
//! inetd.conf or an xinetd configuration turned into superd YAML, lossless
//! or loud. `inetd` and `xinetd` parse text into [`Entry`]s (pure functions
//! over text, with /etc/services and file reading passed in); `emit` writes
//! YAML; this module runs an import end to end and says how exact it was.
//!
//! Every attribute that maps only approximately, or not at all, becomes a
//! [`Note`]: a YAML comment naming the source `file:line` and a line on
//! stderr. The exit status says which: 0 exact, 3 something approximated
//! or dropped, 1 a source that cannot be parsed (see superd(8), IMPORT).

mod emit;
mod inetd;
mod xinetd;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::services::Services;

pub use emit::yaml;

/// Exit status of an import that approximated or dropped something.
pub const EXIT_INEXACT: u8 = 3;

/// Which format is imported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Inetd,
    Xinetd,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "inetd" => Some(Kind::Inetd),
            "xinetd" => Some(Kind::Xinetd),
            _ => None,
        }
    }
}

/// A place in a source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loc {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// How far a note's attribute is from what superd does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Said for the reader; nothing changed (not counted).
    Info,
    /// Mapped, but superd behaves differently in some case.
    Approximated,
    /// Not carried over at all.
    Dropped,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "note",
            Severity::Approximated => "approximated",
            Severity::Dropped => "dropped",
        }
    }
}

/// One remark about an attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub loc: Loc,
    pub severity: Severity,
    pub text: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.loc, self.severity.as_str(), self.text)
    }
}

/// A YAML value to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<Value>),
    Map(Vec<(String, Value)>),
}

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }
}

/// One imported service (or one dropped: `fields` empty, `dropped` set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub loc: Loc,
    /// The source text the entry came from, for the comment above it.
    pub source: String,
    pub fields: Vec<(&'static str, Value)>,
    pub notes: Vec<Note>,
    /// The whole service could not be carried over.
    pub dropped: bool,
}

impl Entry {
    fn new(name: &str, loc: Loc, source: String) -> Entry {
        Entry {
            name: name.to_owned(),
            loc,
            source,
            fields: Vec::new(),
            notes: Vec::new(),
            dropped: false,
        }
    }

    fn set(&mut self, field: &'static str, v: Value) {
        match self.fields.iter_mut().find(|(f, _)| *f == field) {
            Some(slot) => slot.1 = v,
            None => self.fields.push((field, v)),
        }
    }

    fn get(&self, field: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v)
    }

    fn note(&mut self, line: usize, severity: Severity, text: impl Into<String>) {
        self.notes.push(Note {
            loc: Loc {
                file: self.loc.file.clone(),
                line,
            },
            severity,
            text: text.into(),
        });
    }

    /// Drops the whole entry, saying why.
    fn drop_all(&mut self, line: usize, why: impl Into<String>) {
        self.fields.clear();
        self.dropped = true;
        self.note(line, Severity::Dropped, why);
    }
}

/// A source that cannot be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub loc: Loc,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.loc, self.message)
    }
}

/// What an import reads from the system, passed in so that the parsers are
/// pure functions (tests give their own).
pub struct Env<'a> {
    pub services: &'a Services,
    /// Reads a file (xinetd's includes, `banner_fail`).
    pub read: &'a dyn Fn(&Path) -> io::Result<Vec<u8>>,
    /// The names in a directory (xinetd's `includedir`).
    pub list: &'a dyn Fn(&Path) -> io::Result<Vec<String>>,
}

/// The entries of one source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    pub path: PathBuf,
    pub entries: Vec<Entry>,
}

/// Parses `path` as `kind`: the entries of every source file read, in
/// order, names made unique across all of them.
pub fn import(kind: Kind, path: &Path, env: &Env) -> Result<Vec<SourceFile>, Vec<ParseError>> {
    let mut files = match kind {
        Kind::Inetd => {
            let text = (env.read)(path).map_err(|e| {
                vec![ParseError {
                    loc: Loc {
                        file: path.to_path_buf(),
                        line: 0,
                    },
                    message: format!("cannot read: {e}"),
                }]
            })?;
            let text = String::from_utf8_lossy(&text);
            vec![SourceFile {
                path: path.to_path_buf(),
                entries: inetd::parse(path, &text, env)?,
            }]
        }
        Kind::Xinetd => xinetd::import(path, env)?,
    };
    unique_names(&mut files);
    // Each entry's notes in the order of the source: those about `defaults`
    // (another file) first, then by line.
    for e in files.iter_mut().flat_map(|f| f.entries.iter_mut()) {
        let own = e.loc.file.clone();
        e.notes.sort_by_key(|n| (n.loc.file == own, n.loc.line));
    }
    Ok(files)
}

/// superd's service names are unique across files: a second `echo` becomes
/// `echo-2` (xinetd tells such entries apart by `id`, inetd by protocol).
fn unique_names(files: &mut [SourceFile]) {
    let mut seen: Vec<String> = Vec::new();
    for f in files.iter_mut() {
        for e in &mut f.entries {
            let base = e.name.clone();
            let mut n = 2;
            while seen.contains(&e.name) {
                e.name = format!("{base}-{n}");
                n += 1;
            }
            if e.name != base {
                let line = e.loc.line;
                e.note(
                    line,
                    Severity::Info,
                    format!("named {} here: {base} is taken by an earlier entry", e.name),
                );
            }
            seen.push(e.name.clone());
        }
    }
}

/// Every note of every file, in order.
pub fn notes(files: &[SourceFile]) -> impl Iterator<Item = &Note> {
    files
        .iter()
        .flat_map(|f| f.entries.iter().flat_map(|e| &e.notes))
}

/// Whether everything mapped exactly.
#[cfg(test)]
pub fn is_exact(files: &[SourceFile]) -> bool {
    notes(files).all(|n| n.severity == Severity::Info)
}

/// Turns a name into a superd service name (`[A-Za-z0-9_.-]+`).
fn service_name(s: &str) -> String {
    crate::service::name_from(s)
}

/// The system's view: /etc/services and the real file system.
fn system_env<'a>() -> Env<'a> {
    Env {
        services: Services::system(),
        read: &|p: &Path| std::fs::read(p),
        list: &|p: &Path| {
            let mut names = Vec::new();
            for e in std::fs::read_dir(p)? {
                names.push(e?.file_name().to_string_lossy().into_owned());
            }
            Ok(names)
        },
    }
}

/// The output file for a source file in `-o DIR`: its name with `.yaml`
/// (`inetd.conf` → `inetd.yaml`, `xinetd.d/echo` → `echo.yaml`).
fn out_name(source: &Path) -> String {
    let name = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "import".into());
    let stem = name.strip_suffix(".conf").unwrap_or(&name);
    format!("{}.yaml", service_name(stem))
}

/// `superd import KIND PATH [-o DIR]`: runs the import and returns the exit
/// status (0, 3, or 1).
pub fn run(kind: Kind, path: &Path, out_dir: Option<&Path>) -> u8 {
    let env = system_env();
    let files = match import(kind, path, &env) {
        Ok(f) => f,
        Err(errors) => {
            for e in &errors {
                eprintln!("superd import: {e}");
            }
            return 1;
        }
    };
    let what = match kind {
        Kind::Inetd => "inetd",
        Kind::Xinetd => "xinetd",
    };
    for n in notes(&files) {
        if n.severity != Severity::Info {
            eprintln!("superd import: {n}");
        }
    }
    match out_dir {
        None => {
            let mut all = String::new();
            let entries: Vec<&Entry> = files.iter().flat_map(|f| &f.entries).collect();
            all.push_str(&yaml(what, &path.display().to_string(), &entries));
            print!("{all}");
        }
        Some(dir) => {
            if let Err(e) = std::fs::create_dir_all(dir) {
                eprintln!("superd import: {}: {e}", dir.display());
                return 1;
            }
            let mut written: Vec<String> = Vec::new();
            for f in &files {
                let mut name = out_name(&f.path);
                let mut n = 2;
                while written.contains(&name) {
                    name = format!("{}-{n}.yaml", out_name(&f.path).trim_end_matches(".yaml"));
                    n += 1;
                }
                let entries: Vec<&Entry> = f.entries.iter().collect();
                let text = yaml(what, &f.path.display().to_string(), &entries);
                let target = dir.join(&name);
                if let Err(e) = std::fs::write(&target, text) {
                    eprintln!("superd import: {}: {e}", target.display());
                    return 1;
                }
                written.push(name);
            }
        }
    }
    let counted = notes(&files)
        .filter(|n| n.severity != Severity::Info)
        .count();
    if counted == 0 {
        0
    } else {
        eprintln!(
            "superd import: {counted} attribute{} approximated or dropped (see the comments in the output)",
            if counted == 1 { "" } else { "s" }
        );
        EXIT_INEXACT
    }
}

#[cfg(test)]
pub(crate) mod testenv {
    use super::*;
    use std::collections::HashMap;

    pub const SERVICES: &str = "echo 7/tcp\necho 7/udp\ndiscard 9/tcp sink null\ndiscard 9/udp sink null\n\
daytime 13/tcp\ndaytime 13/udp\nchargen 19/tcp ttytst source\nchargen 19/udp ttytst source\n\
ftp 21/tcp\ntime 37/tcp timserver\ntime 37/udp timserver\nfinger 79/tcp\ntftp 69/udp\n\
login 513/tcp\ntalk 517/udp\nshell 514/tcp cmd\ntelnet 23/tcp\nrstatd 1/udp\n";

    /// An environment of in-memory files.
    pub fn with_files(services: &Services, files: HashMap<PathBuf, Vec<u8>>, f: impl FnOnce(&Env)) {
        let read = |p: &Path| {
            files
                .get(p)
                .cloned()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        };
        let list = |p: &Path| {
            let mut v: Vec<String> = files
                .keys()
                .filter(|k| k.parent() == Some(p))
                .filter_map(|k| Some(k.file_name()?.to_string_lossy().into_owned()))
                .collect();
            v.sort();
            if v.is_empty() {
                Err(io::Error::from(io::ErrorKind::NotFound))
            } else {
                Ok(v)
            }
        };
        f(&Env {
            services,
            read: &read,
            list: &list,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testenv::{SERVICES, with_files};
    use super::*;
    use std::collections::HashMap;

    /// Any text ends in entries or parse errors, never a panic; and what
    /// parses emits YAML that loads (or fails to load) without a panic.
    #[test]
    fn arbitrary_text_never_panics() {
        let s = Services::parse(SERVICES);
        let pieces = [
            "service",
            "defaults",
            "{",
            "}",
            "=",
            "+=",
            "-=",
            " ",
            "\t",
            "\n",
            "#",
            "echo",
            "stream",
            "dgram",
            "tcp",
            "udp6",
            "unix",
            "/x",
            "internal",
            "nowait.",
            "wait/",
            "root.",
            ":",
            "10.0.0.0",
            "{1,2}",
            "/33",
            "only_from",
            "no_access",
            "flags",
            "NAMEINARGS",
            "server",
            "server_args",
            "type",
            "INTERNAL",
            "port",
            "0",
            "99999",
            "includedir",
            "include",
            "\\",
            "[::1]",
            "*",
            ",",
            "\u{e9}",
            "cps",
            "nice",
            "-99",
            "banner_fail",
            "rlimit_as",
            "8Q",
            "env",
            "A=b",
            "passenv",
            "LISTEN_FDS",
            "\"",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let ctx = crate::config::Context::current();
        for _ in 0..3000 {
            let n = (next() % 40) as usize;
            let text: String = (0..n)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            for kind in [Kind::Inetd, Kind::Xinetd] {
                let files = HashMap::from([(PathBuf::from("/f/c"), text.as_bytes().to_vec())]);
                with_files(&s, files, |env| {
                    if let Ok(out) = import(kind, Path::new("/f/c"), env) {
                        let entries: Vec<&Entry> = out.iter().flat_map(|f| &f.entries).collect();
                        let y = yaml("x", "/f/c", &entries);
                        let _ = crate::config::check_text("y.yaml", y.as_bytes(), &ctx);
                    }
                });
            }
        }
    }

    /// The emitted YAML loads as a configuration, names and values quoted
    /// where YAML would read them as something else.
    #[test]
    fn output_loads_as_a_configuration() {
        let s = Services::parse(SERVICES);
        let conf = "echo stream tcp nowait root internal\n\
                    7 dgram udp wait root internal\n\
                    [::1]:daytime stream tcp6 nowait root internal\n\
                    #<off># chargen stream tcp nowait root internal\n\
                    rstatd/1-3 dgram rpc/udp wait root /usr/sbin/rpc.rstatd rpc.rstatd\n";
        let files = HashMap::from([(PathBuf::from("/x/inetd.conf"), conf.as_bytes().to_vec())]);
        with_files(&s, files, |env| {
            let out = import(Kind::Inetd, Path::new("/x/inetd.conf"), env).expect("parses");
            assert!(!is_exact(&out));
            let entries: Vec<&Entry> = out.iter().flat_map(|f| &f.entries).collect();
            let text = yaml("inetd", "/x/inetd.conf", &entries);
            let ctx = crate::config::Context::current();
            let config = crate::config::check_text("imported.yaml", text.as_bytes(), &ctx)
                .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
            let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(names, ["echo", "7", "daytime", "chargen"], "{text}");
            assert!(!config.services[3].enabled);
            assert!(
                text.contains("# /x/inetd.conf:5: dropped: an RPC service"),
                "{text}"
            );
        });
    }
}
