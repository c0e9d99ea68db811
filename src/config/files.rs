//! From the PATHs on the command line to file contents: directory listing
//! (only `*.yaml` / `*.yml`, no dot files, byte order), the size and
//! file-type limits, and, when superd is root, the ownership rule (a config
//! someone else can write is a root shell).
//!
//! Symlinks are followed, both when named on the command line and inside a
//! directory (the `sites-enabled` habit): the target must itself be a
//! regular file, and when root, it and the directory holding it must be
//! safe too. The final open uses O_NOFOLLOW on the resolved path, so a
//! link swapped in after resolution is refused rather than followed.

use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::ConfigError;

/// Files larger than this are refused.
pub const MAX_FILE: u64 = 1 << 20;

/// One file's text, with the path as the admin wrote it (for messages).
#[derive(Debug)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

fn whole(path: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: path.to_path_buf(),
        line: None,
        column: None,
        message: message.into(),
    }
}

/// What a config file's bytes say, as text: or the first byte that makes
/// them no YAML at all (not UTF-8, or a control character YAML does not
/// allow), with its line and column, so that the error points at it.
pub fn decode(bytes: Vec<u8>) -> Result<String, (usize, usize, String)> {
    // Lines end at LF, CRLF or a lone CR, as YAML's line breaks do.
    let at = |prefix: &str| {
        let line = prefix.matches('\n').count() + prefix.matches('\r').count()
            - prefix.matches("\r\n").count()
            + 1;
        let col = prefix
            .rsplit(['\n', '\r'])
            .next()
            .map_or(0, |l| l.chars().count())
            + 1;
        (line, col)
    };
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let bytes = e.as_bytes();
            let good = e.utf8_error().valid_up_to();
            // The prefix up to `good` is valid UTF-8 by definition.
            let (line, col) = at(std::str::from_utf8(&bytes[..good]).unwrap_or_default());
            return Err((
                line,
                col,
                format!("not valid UTF-8 (byte 0x{:02x})", bytes[good]),
            ));
        }
    };
    // What the YAML reader refuses (libyaml's printable set): C0 controls
    // but tab, LF and CR; DEL; C1 controls but NEL; U+FFFE and U+FFFF.
    let bad = text.char_indices().find(|&(_, c)| {
        matches!(c, '\0'..='\x08' | '\x0b' | '\x0c' | '\x0e'..='\x1f' | '\x7f')
            || ('\u{80}'..='\u{9f}').contains(&c) && c != '\u{85}'
            || c == '\u{fffe}'
            || c == '\u{ffff}'
    });
    if let Some((i, c)) = bad {
        let (line, col) = at(&text[..i]);
        return Err((
            line,
            col,
            format!(
                "control character U+{:04X} is not allowed in YAML",
                c as u32
            ),
        ));
    }
    Ok(text)
}

/// Whether a directory entry name is a config file.
pub fn is_config_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    !b.starts_with(b".") && (b.ends_with(b".yaml") || b.ends_with(b".yml"))
}

/// Reads every file under `paths`, in order; errors are appended.
pub fn collect(paths: &[PathBuf], root: bool, errors: &mut Vec<ConfigError>) -> Vec<Source> {
    let mut out = Vec::new();
    for path in paths {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                errors.push(whole(path, io_message(&e)));
                continue;
            }
        };
        if meta.is_dir() {
            if root && let Err(m) = safe_dir(&meta) {
                errors.push(whole(path, m));
                continue;
            }
            let mut names = match fs::read_dir(path) {
                Ok(rd) => rd
                    .filter_map(|e| e.ok().map(|e| e.file_name()))
                    .filter(|n| is_config_name(n))
                    .collect::<Vec<_>>(),
                Err(e) => {
                    errors.push(whole(path, io_message(&e)));
                    continue;
                }
            };
            names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            for name in names {
                let file = path.join(&name);
                match read(&file, root) {
                    Ok(text) => out.push(Source { path: file, text }),
                    Err(e) => errors.push(e),
                }
            }
        } else {
            if root {
                let parent = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                match fs::metadata(parent)
                    .map_err(|e| io_message(&e))
                    .and_then(|m| safe_dir(&m))
                {
                    Ok(()) => {}
                    Err(m) => {
                        errors.push(whole(path, format!("directory {}: {m}", parent.display())));
                        continue;
                    }
                }
            }
            match read(path, root) {
                Ok(text) => out.push(Source {
                    path: path.clone(),
                    text,
                }),
                Err(e) => errors.push(e),
            }
        }
    }
    out
}

fn io_message(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        _ => e.to_string(),
    }
}

/// Refuses what someone other than root can write (SPEC §2).
fn writable_by_others(meta: &Metadata) -> Option<String> {
    let mode = meta.mode();
    if meta.uid() != 0 {
        return Some(format!("owned by uid {}, not root", meta.uid()));
    }
    if mode & 0o002 != 0 {
        return Some("writable by everyone".into());
    }
    if mode & 0o020 != 0 && meta.gid() != 0 {
        return Some(format!("writable by group {}", meta.gid()));
    }
    None
}

const ROOT_SHELL: &str =
    "refused: superd runs as root and a config others can write is a root shell";

fn safe_dir(meta: &Metadata) -> Result<(), String> {
    match writable_by_others(meta) {
        Some(why) => Err(format!("{why}; {ROOT_SHELL}")),
        None => Ok(()),
    }
}

/// Opens and reads one config file, refusing anything but a small regular
/// file (and, as root, an unsafe one).
fn read(path: &Path, root: bool) -> Result<String, ConfigError> {
    read_bytes(path, root)
        .map_err(|m| whole(path, m))
        .and_then(|bytes| {
            decode(bytes).map_err(|(line, column, message)| ConfigError {
                file: path.to_path_buf(),
                line: Some(line),
                column: Some(column),
                message,
            })
        })
}

fn read_bytes(path: &Path, root: bool) -> Result<Vec<u8>, String> {
    let real = fs::canonicalize(path).map_err(|e| io_message(&e))?;
    if root && real != path {
        // Followed a symlink: the directory really holding the file counts.
        if let Some(dir) = real.parent() {
            let m = fs::metadata(dir).map_err(|e| io_message(&e))?;
            safe_dir(&m).map_err(|m| format!("directory {}: {m}", dir.display()))?;
        }
    }
    // O_NONBLOCK: opening a fifo must not hang the daemon; fstat then
    // refuses it. O_NOFOLLOW: `real` has no symlink left to follow.
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&real)
        .map_err(|e| io_message(&e))?;
    let meta = file.metadata().map_err(|e| io_message(&e))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_FILE {
        return Err(format!("larger than {} bytes", MAX_FILE));
    }
    if root && let Some(why) = writable_by_others(&meta) {
        return Err(format!("{why}; {ROOT_SHELL}"));
    }
    let mut buf = Vec::new();
    // The file may have grown since fstat: read one byte past the limit.
    (&mut file)
        .take(MAX_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > MAX_FILE {
        return Err(format!("larger than {} bytes", MAX_FILE));
    }
    Ok(buf)
}
