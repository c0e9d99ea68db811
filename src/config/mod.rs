//! Loading the configuration: paths to files (`files`), each file walked
//! for structure (`tree`), deserialized (`raw`) and validated with the others
//! (`validate`). Every error carries file:line:column; the errors of every
//! file are collected, not only the first.

mod files;
mod raw;
mod tree;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::service::Service;
pub use raw::parse_size;
pub use validate::{Context, MAX_REFUSE_MESSAGE, exec_access_warning};

/// A duration in the configuration's syntax (`500ms`, `30s`, `5m`, `1h`, or
/// seconds), bounded like every duration field: for `--grace`, so the
/// command line and the files read durations alike.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    use raw::Scalar as _;
    raw::Dur::from_str(s.trim()).map(|d| d.0)
}

/// A validated configuration: every service, in load order (files in the
/// order given, a directory's files in byte order of their names, services in
/// file order).
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub services: Vec<Service>,
}

/// One configuration error.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; `None` when the error is about the file as a whole.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, whatever the file's name or text holds (a newline in
        // a quoted key or a path would otherwise start a fake line).
        let file = self.file.display().to_string();
        write!(f, "{}", crate::logging::one_line(&file))?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, ":{l}:{c}")?;
        }
        write!(f, ": {}", crate::logging::one_line(&self.message))
    }
}

/// Whether superd runs as root, which decides the ownership rule for
/// config files and the user rule for services (superd(8), FILES; superd.yaml(5), THE ROOT RULE).
pub fn euid_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Loads and validates every file under `paths`.
pub fn load(paths: &[PathBuf]) -> Result<Config, Vec<ConfigError>> {
    load_with(paths, &Context::current())
}

/// `load` for a given view of the running superd (tests use it to check
/// the non-root rules while running as root, and the other way round).
pub fn load_with(paths: &[PathBuf], ctx: &Context) -> Result<Config, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let sources = files::collect(paths, ctx.euid == 0, &mut errors);
    finish(&sources, ctx, errors).map_err(|mut errors| {
        in_file_order(&mut errors, paths);
        errors
    })
}

/// Parses and validates one file's bytes as if read from `name`, with the
/// same size and UTF-8 rules as a file on disk, without opening anything
/// (user, group and program lookups aside). For fuzzing and tests: every
/// input must end in `Ok` or in errors, never in a panic.
pub fn check_text(name: &str, text: &[u8], ctx: &Context) -> Result<Config, Vec<ConfigError>> {
    let path = PathBuf::from(name);
    let whole = |m: &str| {
        Err(vec![ConfigError {
            file: path.clone(),
            line: None,
            column: None,
            message: m.to_owned(),
        }])
    };
    if text.len() as u64 > files::MAX_FILE {
        return whole("larger than the size limit");
    }
    let text = match files::decode(text.to_vec()) {
        Ok(t) => t,
        Err((line, column, message)) => {
            return Err(vec![ConfigError {
                file: path.clone(),
                line: Some(line),
                column: Some(column),
                message,
            }]);
        }
    };
    let sources = [files::Source {
        path: path.clone(),
        text,
    }];
    finish(&sources, ctx, Vec::new())
}

fn finish(
    sources: &[files::Source],
    ctx: &Context,
    mut errors: Vec<ConfigError>,
) -> Result<Config, Vec<ConfigError>> {
    let mut defaults_broken = false;
    let parsed: Vec<validate::Parsed> = sources
        .iter()
        .filter_map(|s| parse(&s.path, &s.text, &mut errors, &mut defaults_broken))
        .collect();
    // Every service of every file may inherit from a broken `defaults`:
    // checking them would report what follows from it (a misspelt user is
    // not also a missing one).
    let services = if defaults_broken {
        Vec::new()
    } else {
        validate::validate(&parsed, ctx, &mut errors)
    };
    if errors.is_empty() {
        Ok(Config { services })
    } else {
        // One value inherited from defaults by many services is one error.
        let mut seen = std::collections::HashSet::new();
        errors.retain(|e| seen.insert(e.clone()));
        Err(errors)
    }
}

/// Sorts errors as the files were read (PATH arguments in order, a
/// directory's files in byte order of their names), then by line and
/// column; an error about a file as a whole comes first in it.
fn in_file_order(errors: &mut [ConfigError], paths: &[PathBuf]) {
    let arg = |f: &Path| {
        paths
            .iter()
            .position(|p| p == f || f.parent() == Some(p.as_path()))
            .unwrap_or(paths.len())
    };
    errors.sort_by_cached_key(|e| {
        (
            arg(&e.file),
            e.file.as_os_str().to_owned(),
            e.line.unwrap_or(0),
            e.column.unwrap_or(0),
        )
    });
}

fn yaml_error(file: &Path, e: &serde_yaml::Error) -> ConfigError {
    let loc = e.location();
    ConfigError {
        file: file.to_path_buf(),
        line: loc.as_ref().map(|l| l.line()),
        column: loc.as_ref().map(|l| l.column()),
        message: clean_message(e),
    }
}

fn at(file: &Path, pos: Option<tree::Pos>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        line: pos.map(|p| p.line),
        column: pos.map(|p| p.column),
        message: message.into(),
    }
}

/// Errors after which the rest of a file goes unchecked (each costs
/// another reading of the file).
const MAX_ERRORS_PER_FILE: usize = 20;

/// Walks and deserializes one file. `None` when nothing more can be said
/// about it (its errors are in `errors`).
fn parse(
    path: &Path,
    text: &str,
    errors: &mut Vec<ConfigError>,
    defaults_broken: &mut bool,
) -> Option<validate::Parsed> {
    if let Some(pos) = tree::flow_too_deep(text) {
        errors.push(at(
            path,
            Some(pos),
            format!(
                "brackets ([ and {{) nested deeper than {} levels",
                tree::MAX_FLOW_BRACKETS
            ),
        ));
        return None;
    }
    let mut docs = serde_yaml::Deserializer::from_str(text);
    let Some(first) = docs.next() else {
        // Empty, or only comments: no services.
        return Some(validate::Parsed {
            path: path.to_path_buf(),
            raw: raw::RawFile::default(),
            index: tree::Index::default(),
        });
    };
    let walked = match tree::walk(first, text) {
        Ok(w) => w,
        Err(e) => {
            errors.push(yaml_error(path, &e));
            return None;
        }
    };
    if let Some(second) = docs.next() {
        errors.push(at(
            path,
            tree::first_node(second),
            "a second YAML document: a file holds one mapping (no --- separators)",
        ));
        return None;
    }
    // A bare octal is an error of its field: that field is skipped below,
    // and the rest of the file is read.
    let mut skip = raw::Skip::default();
    for (p, field) in &walked.bare_octals {
        let name = field.last().map_or("", String::as_str);
        errors.push(at(
            path,
            Some(*p),
            format!("{name}: {}", raw::bare_octal_message()),
        ));
        skip.insert(field.clone());
    }
    if walked.root_is_null {
        return Some(validate::Parsed {
            path: path.to_path_buf(),
            raw: raw::RawFile::default(),
            index: walked.index,
        });
    }
    // serde stops at the first error: note it, skip the field (or the
    // service, or defaults) it is in, and read the file again, so that
    // every error of the file is reported, not only the first.
    let raw = loop {
        let doc = serde_yaml::Deserializer::from_str(text).next()?;
        match raw::RawFile::deserialize_skipping(doc, &skip) {
            Ok(raw) => break raw,
            Err(e) => {
                errors.push(yaml_error(path, &e));
                // Past an error outside any service (a top-level key) the
                // rest is unknown.
                let within = skip.current();
                if within.is_empty() || !skip.insert(within) {
                    return None;
                }
                if skip.paths().count() >= MAX_ERRORS_PER_FILE {
                    errors.push(at(
                        path,
                        None,
                        format!(
                            "{MAX_ERRORS_PER_FILE} errors: the rest of the file was not checked"
                        ),
                    ));
                    return None;
                }
            }
        }
    };
    if skip.paths().any(|p| p[0] == "defaults") {
        *defaults_broken = true;
        return None;
    }
    // A service with a broken field is left out of the checks that follow:
    // they would report what the broken field means (a misspelt listen is
    // not a missing one).
    let mut raw = raw;
    if let Some(services) = &mut raw.services {
        services
            .0
            .retain(|(name, _)| !skip.paths().any(|p| p.get(1) == Some(name)));
    }
    Some(validate::Parsed {
        path: path.to_path_buf(),
        raw,
        index: walked.index,
    })
}

/// serde_yaml's message without its ` at line N column M` suffix and its
/// `services.echo.listen: ` prefix (the position says both), and serde's
/// backticks in the style of our messages: `unknown field "lisen",
/// expected one of listen, socket, ...`.
fn clean_message(e: &serde_yaml::Error) -> String {
    let mut s = e.to_string();
    if let Some(loc) = e.location() {
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(i) = s.find(&suffix) {
            s.replace_range(i..i + suffix.len(), "");
        }
    }
    // serde_yaml's path (`services.web.max_connections`) before the
    // message: keep its field, the last segment, so the message says what
    // it is about (`max_connections: expected an integer >= 1, ...`).
    let field = s
        .split_once(": ")
        .map(|(p, _)| p)
        .filter(|p| !p.contains(' '))
        .and_then(|p| {
            let segs: Vec<&str> = p.split('.').collect();
            let deep = match segs.first() {
                Some(&"services") => segs.len() >= 3,
                Some(&"defaults") => segs.len() >= 2,
                _ => false,
            };
            deep.then(|| segs[segs.len() - 1].to_owned())
        });
    if let Some(i) = s.find(raw::MSG) {
        let msg = &s[i + raw::MSG.len_utf8()..];
        return match field {
            Some(f) => format!("{f}: {msg}"),
            None => msg.to_owned(),
        };
    }
    const SERDE: [&str; 7] = [
        "unknown field",
        "unknown variant",
        "invalid type",
        "invalid value",
        "invalid length",
        "missing field",
        "duplicate field",
    ];
    let start = SERDE
        .iter()
        .filter_map(|p| {
            s.match_indices(p)
                .map(|(i, _)| i)
                .find(|&i| i == 0 || s[..i].ends_with(": "))
        })
        .min();
    if let Some(i) = start {
        s.drain(..i);
        // The first `name` is what was found: quote it; the rest is the
        // list of what was expected: bare words.
        if let Some(a) = s.find('`')
            && let Some(b) = s[a + 1..].find('`')
        {
            s.replace_range(a + 1 + b..a + 2 + b, "\"");
            s.replace_range(a..a + 1, "\"");
        }
        s = s.replace('`', "");
        // serde says "expected a or b" for two choices, "expected one of
        // a, b, c" for more: one wording for every list.
        if let Some(at) = s.find(", expected ") {
            let list = &s[at + ", expected ".len()..];
            if let Some((a, b)) = list.split_once(" or ")
                && !a.contains(' ')
                && !b.contains(' ')
            {
                s = format!("{}, expected one of {a}, {b}", &s[..at]);
            }
        }
    }
    hint(s)
}

/// Adds what an inetd or xinetd admin probably meant: YAML 1.1's
/// `yes`/`no` (strings in the YAML superd reads), and a field name close
/// to a known one.
fn hint(mut s: String) -> String {
    if let Some(rest) = s.strip_prefix("invalid type: string \"")
        && let Some((word, _)) = rest.split_once('"')
        && s.ends_with("expected a boolean")
        && matches!(
            word.to_ascii_lowercase().as_str(),
            "yes" | "no" | "on" | "off" | "y" | "n"
        )
    {
        s.push_str(&format!(
            " ({word:?} is a string here, not YAML 1.1's boolean: use true or false)"
        ));
        return s;
    }
    if let Some(rest) = s.strip_prefix("unknown field \"")
        && let Some((word, tail)) = rest.split_once('"')
        && let Some(list) = tail.strip_prefix(", expected one of ")
        && let Some(near) = closest(word, list.split(", "))
    {
        return format!(
            "unknown field \"{word}\", expected one of {list}; did you mean \"{near}\"?"
        );
    }
    s
}

/// The candidate within two edits of `word` (the nearest, the first of
/// equals), if any.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let w: Vec<char> = word.to_ascii_lowercase().chars().collect();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let k: Vec<char> = c.chars().collect();
        // Levenshtein distance, one row at a time.
        let mut row: Vec<usize> = (0..=k.len()).collect();
        for (i, a) in w.iter().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, b) in k.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(a != b)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        let d = row[k.len()];
        let limit = if w.len() <= 3 { 1 } else { 2 };
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// The file name one-line mode reports errors under.
pub const COMMAND_LINE: &str = "<command line>";

/// Builds the one service of the one-line mode: named after the program,
/// listening on `listen`, running `program`, with each `--set FIELD=VALUE`
/// read as YAML exactly as `FIELD: VALUE` in a file.
pub fn load_oneline(
    listen: &[String],
    sets: &[(String, String)],
    program: &[String],
) -> Result<Config, Vec<ConfigError>> {
    oneline_with(listen, sets, program, &Context::current())
}

/// `load_oneline` for a given view of the running superd.
pub fn oneline_with(
    listen: &[String],
    sets: &[(String, String)],
    program: &[String],
    ctx: &Context,
) -> Result<Config, Vec<ConfigError>> {
    use serde_yaml::{Mapping, Value};
    let file = PathBuf::from(COMMAND_LINE);
    let whole = |m: String| ConfigError {
        file: file.clone(),
        line: None,
        column: None,
        message: m,
    };
    let mut errors = Vec::new();
    let Some(prog) = program.first() else {
        return Err(vec![whole("no program given after --".into())]);
    };
    let name = service_name(prog);

    // Each field becomes its own block of lines, so an error's line says
    // which argument it came from. Values are parsed alone and serialized
    // back: no VALUE can add a key or close the mapping.
    let strings = |v: &[String]| Value::Sequence(v.iter().cloned().map(Value::String).collect());
    let mut fields: Vec<(String, Value)> = vec![
        ("--listen".into(), strings(listen)),
        ("program".into(), strings(program)),
    ];
    let mut keys = vec!["listen".to_owned(), "exec".to_owned()];
    for (field, value) in sets {
        let label = format!("--set {field}={value}");
        if !field.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') || field.is_empty() {
            errors.push(whole(format!("{label}: bad field name {field:?}")));
            continue;
        }
        match field.as_str() {
            "listen" => errors.push(whole(format!("{label}: use --listen"))),
            "exec" | "builtin" => {
                errors.push(whole(format!("{label}: the program is given after --")))
            }
            _ if keys.contains(field) => {
                errors.push(whole(format!("{label}: {field} is set twice")))
            }
            _ => {}
        }
        if (field == "umask" || field == "socket_mode")
            && value.trim_start().starts_with(|c: char| c.is_ascii_digit())
        {
            errors.push(whole(format!("{label}: {}", raw::bare_octal_message())));
            continue;
        }
        match serde_yaml::from_str::<Value>(value) {
            Ok(v) => {
                keys.push(field.clone());
                fields.push((label, v));
            }
            Err(e) => errors.push(whole(format!("{label}: {}", clean_message(&e)))),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    // As root, a quick tool runs as nobody unless told otherwise: the
    // command line is a configuration whose `defaults` name that user
    // (defaults can never make a service root), so `superd --listen ADDR
    // -- PROG` works for root too, and nothing runs as root by accident.
    let as_nobody = ctx.euid == 0
        && !fields
            .iter()
            .zip(&keys)
            .any(|((_, v), k)| k == "user" && !v.is_null());
    let mut text = String::from("services:\n");
    let name_yaml = serde_yaml::to_string(&Value::String(name)).unwrap_or_default();
    text.push_str(&format!("  {}:\n", name_yaml.trim_end()));
    let mut lines = 2;
    let mut ranges: Vec<(usize, usize, String)> = Vec::new();
    for ((label, value), key) in fields.into_iter().zip(keys) {
        let mut m = Mapping::new();
        m.insert(Value::String(key), value);
        let block = serde_yaml::to_string(&m).unwrap_or_default();
        let first = lines + 1;
        for line in block.lines() {
            text.push_str("    ");
            text.push_str(line);
            text.push('\n');
            lines += 1;
        }
        ranges.push((first, lines, label));
    }

    if as_nobody {
        text.push_str("defaults:\n  user: nobody\n");
    }
    let sources = [files::Source {
        path: file.clone(),
        text,
    }];
    finish(&sources, ctx, Vec::new()).map_err(|errs| {
        errs.into_iter()
            .map(|e| {
                let label = e
                    .line
                    .and_then(|l| ranges.iter().find(|(a, b, _)| (*a..=*b).contains(&l)))
                    .map(|(_, _, label)| label.as_str());
                // The label names the field already.
                let field = label
                    .and_then(|l| l.strip_prefix("--set "))
                    .and_then(|l| l.split_once('='))
                    .map(|(f, _)| format!("{f}: "));
                let msg = field
                    .and_then(|f| e.message.strip_prefix(f.as_str()))
                    .unwrap_or(&e.message);
                // No file to edit in this mode: say which option to add.
                let mut msg =
                    msg.replace("(set user: here or in defaults)", "(add --set user=NAME)");
                // The implied user (no --set user= as root) is not there.
                if as_nobody && label.is_none() && msg.contains("\"nobody\"") {
                    msg.push_str(
                        " (as root the one-line mode runs as nobody: add --set user=NAME)",
                    );
                }
                match label {
                    Some(label) => whole(format!("{label}: {msg}")),
                    // An error of the service as a whole.
                    None => whole(msg),
                }
            })
            .collect()
    })
}

/// The program's file name, made a valid service name.
fn service_name(prog: &str) -> String {
    let base = prog.rsplit('/').next().unwrap_or(prog);
    let name: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "service".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests;
