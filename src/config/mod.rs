//! Loading the configuration: paths to files (`files`), each file walked
//! for structure (`tree`) and deserialized (`raw`) by `parse`, serde's
//! messages reworded (`message`), then validated with the others
//! (`validate`); `oneline` makes the command line of the one-line mode a
//! file. Every error carries file:line:column; the errors of every file are
//! collected, not only the first.

mod files;
mod message;
mod oneline;
mod parse;
mod raw;
mod replay;
mod source;
mod tree;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::service::Service;
pub use oneline::{COMMAND_LINE, load_oneline, oneline_with};
pub use raw::parse_size;
pub use source::Source;
pub use validate::{Context, MAX_REFUSE_MESSAGE, exec_access_warning};

use parse::parse;

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
    let (texts, mut parsed): (Vec<&str>, Vec<validate::Parsed>) = sources
        .iter()
        .filter_map(|s| {
            let p = parse(&s.path, &s.text, &mut errors, &mut defaults_broken)?;
            Some((s.text.as_str(), p))
        })
        .unzip();
    // Every service of every file may inherit from a broken `defaults`:
    // checking them would report what follows from it (a misspelt user is
    // not also a missing one).
    let services = if defaults_broken {
        Vec::new()
    } else {
        let before = errors.len();
        let services = validate::validate(&parsed, ctx, &mut errors);
        if errors.len() == before && services.iter().all(|s| s.notes.is_empty()) {
            services
        } else {
            // The walk left the index of positions out (most loads have
            // nothing to place): build it and check again, so that every
            // error, and every note, names its line and column.
            errors.truncate(before);
            for (p, text) in parsed.iter_mut().zip(texts) {
                p.index = tree::index(text);
            }
            validate::validate(&parsed, ctx, &mut errors)
        }
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
#[cfg(test)]
mod tests;
