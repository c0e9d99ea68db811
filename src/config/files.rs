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
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::ConfigError;
use crate::sys;

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
            if root && let Err(m) = safe_dir(path, &meta) {
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
                    .and_then(|m| safe_dir(parent, &m))
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

/// Refuses what someone other than root can write (superd.yaml(5),
/// SECURITY): the owner, the mode bits, and the POSIX access ACL (`acl`,
/// the `system.posix_acl_access` attribute, when the file has one).
fn writable_by_others(meta: &Metadata, acl: Option<&[u8]>) -> Option<String> {
    let mode = meta.mode();
    if meta.uid() != 0 {
        return Some(format!("owned by uid {}, not root", meta.uid()));
    }
    if mode & 0o002 != 0 {
        return Some("writable by everyone".into());
    }
    let entries = match acl.map(parse_acl) {
        None => Vec::new(),
        Some(Ok(e)) => e,
        Some(Err(why)) => return Some(format!("ACL not understood ({why})")),
    };
    acl_writer(&entries, meta.gid()).or_else(|| {
        // Without a mask the group bits are the owning group's; with one
        // they are the mask, and acl_writer judged the group.
        let masked = entries.iter().any(|e| e.tag == ACL_MASK);
        (!masked && mode & 0o020 != 0 && meta.gid() != 0)
            .then(|| format!("writable by group {}", meta.gid()))
    })
}

/// One entry of a POSIX ACL (acl(5)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AclEntry {
    tag: u16,
    perm: u16,
    id: u32,
}

const ACL_USER_OBJ: u16 = 0x01;
const ACL_USER: u16 = 0x02;
const ACL_GROUP_OBJ: u16 = 0x04;
const ACL_GROUP: u16 = 0x08;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;
const ACL_WRITE: u16 = 0x02;
/// The version of the extended attribute's format (linux/posix_acl_xattr.h).
const ACL_XATTR_VERSION: u32 = 2;

/// Parses the value of `system.posix_acl_access`: a little-endian u32
/// version, then entries of a u16 tag, a u16 permission set and a u32 id.
fn parse_acl(bytes: &[u8]) -> Result<Vec<AclEntry>, String> {
    let (head, body) = bytes
        .split_first_chunk::<4>()
        .ok_or_else(|| "shorter than its header".to_string())?;
    let version = u32::from_le_bytes(*head);
    if version != ACL_XATTR_VERSION {
        return Err(format!("version {version}"));
    }
    if body.len() % 8 != 0 {
        return Err("a partial entry".into());
    }
    body.chunks_exact(8)
        .map(|c| {
            let e = AclEntry {
                tag: u16::from_le_bytes([c[0], c[1]]),
                perm: u16::from_le_bytes([c[2], c[3]]),
                id: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            };
            match e.tag {
                ACL_USER_OBJ | ACL_USER | ACL_GROUP_OBJ | ACL_GROUP | ACL_MASK | ACL_OTHER => Ok(e),
                t => Err(format!("entry tag {t:#x}")),
            }
        })
        .collect()
}

/// Who other than root the ACL lets write, if anyone: a named user other
/// than uid 0, a named group other than gid 0, or the owning group (`gid`)
/// when it is not root's, each with the write bit left by the mask.
fn acl_writer(entries: &[AclEntry], gid: u32) -> Option<String> {
    let mask = entries
        .iter()
        .find(|e| e.tag == ACL_MASK)
        .map_or(u16::MAX, |e| e.perm);
    entries.iter().find_map(|e| {
        let writes = e.perm & mask & ACL_WRITE != 0;
        match e.tag {
            ACL_USER if writes && e.id != 0 => Some(format!("writable by user {} (ACL)", e.id)),
            ACL_GROUP if writes && e.id != 0 => Some(format!("writable by group {} (ACL)", e.id)),
            ACL_GROUP_OBJ if writes && gid != 0 => Some(format!("writable by group {gid}")),
            _ => None,
        }
    })
}

/// The access ACL of a file, if it has one.
fn access_acl(of: sys::XattrOf<'_>) -> Result<Option<Vec<u8>>, String> {
    sys::xattr(of, c"system.posix_acl_access").map_err(|e| format!("cannot read its ACL: {e}"))
}

const ROOT_SHELL: &str =
    "refused: superd runs as root and a config others can write is a root shell";

/// A directory config files are read from, as root: refused when others
/// can write it.
fn safe_dir(dir: &Path, meta: &Metadata) -> Result<(), String> {
    let acl = access_acl(sys::XattrOf::Path(dir))?;
    match writable_by_others(meta, acl.as_deref()) {
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
            safe_dir(dir, &m).map_err(|m| format!("directory {}: {m}", dir.display()))?;
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
    if root {
        let acl = access_acl(sys::XattrOf::Fd(file.as_fd()))?;
        if let Some(why) = writable_by_others(&meta, acl.as_deref()) {
            return Err(format!("{why}; {ROOT_SHELL}"));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The xattr bytes of an ACL made of `(tag, perm, id)` entries.
    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut b = ACL_XATTR_VERSION.to_le_bytes().to_vec();
        for &(tag, perm, id) in entries {
            b.extend_from_slice(&tag.to_le_bytes());
            b.extend_from_slice(&perm.to_le_bytes());
            b.extend_from_slice(&id.to_le_bytes());
        }
        b
    }

    const RW: u16 = 6;
    const R: u16 = 4;
    /// The id the kernel stores in entries that have none.
    const NONE: u32 = u32::MAX;

    fn writer(entries: &[(u16, u16, u32)], gid: u32) -> Option<String> {
        acl_writer(&parse_acl(&acl(entries)).unwrap(), gid)
    }

    #[test]
    fn the_xattr_format_is_parsed() {
        let bytes = acl(&[(ACL_USER_OBJ, RW, NONE), (ACL_USER, RW, 65534)]);
        assert_eq!(
            parse_acl(&bytes).unwrap(),
            vec![
                AclEntry {
                    tag: ACL_USER_OBJ,
                    perm: RW,
                    id: NONE
                },
                AclEntry {
                    tag: ACL_USER,
                    perm: RW,
                    id: 65534
                },
            ]
        );
        assert!(parse_acl(&[2, 0]).is_err(), "short header");
        assert!(parse_acl(&[1, 0, 0, 0]).is_err(), "another version");
        assert!(
            parse_acl(&bytes[..bytes.len() - 1]).is_err(),
            "partial entry"
        );
        assert!(parse_acl(&acl(&[(0x40, RW, 0)])).is_err(), "unknown tag");
        assert_eq!(parse_acl(&acl(&[])).unwrap(), vec![]);
    }

    #[test]
    fn a_named_user_or_group_that_can_write_is_found() {
        let base = [
            (ACL_USER_OBJ, RW, NONE),
            (ACL_GROUP_OBJ, R, NONE),
            (ACL_OTHER, R, NONE),
        ];
        let with = |extra: &[(u16, u16, u32)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            v
        };
        // u:nobody:rw, mask rw: refused.
        assert_eq!(
            writer(&with(&[(ACL_USER, RW, 65534), (ACL_MASK, RW, NONE)]), 0).as_deref(),
            Some("writable by user 65534 (ACL)")
        );
        // g:staff:rw: refused.
        assert_eq!(
            writer(&with(&[(ACL_GROUP, RW, 50), (ACL_MASK, RW, NONE)]), 0).as_deref(),
            Some("writable by group 50 (ACL)")
        );
        // Root's own entries are fine.
        assert_eq!(
            writer(
                &with(&[(ACL_USER, RW, 0), (ACL_GROUP, RW, 0), (ACL_MASK, RW, NONE)]),
                0
            ),
            None
        );
        // Read only: fine.
        assert_eq!(
            writer(&with(&[(ACL_USER, R, 65534), (ACL_MASK, R, NONE)]), 0),
            None
        );
        // The mask takes the write away: fine.
        assert_eq!(
            writer(&with(&[(ACL_USER, RW, 65534), (ACL_MASK, R, NONE)]), 0),
            None
        );
        // The owning group writes, and is not root's: refused.
        assert_eq!(
            writer(
                &[
                    (ACL_USER_OBJ, RW, NONE),
                    (ACL_GROUP_OBJ, RW, NONE),
                    (ACL_MASK, RW, NONE),
                    (ACL_OTHER, R, NONE)
                ],
                100
            )
            .as_deref(),
            Some("writable by group 100")
        );
    }
}
