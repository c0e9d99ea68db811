//! The pid file: opened without following a symlink, locked for the life of
//! the process (so a second superd on it refuses to start and leaves the
//! first one's file alone), removed at exit if the path still names the
//! file that was locked.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::Error;
use nix::fcntl::{Flock, FlockArg};

/// A held pid file; dropping it removes the file.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    /// Device and inode of the locked file.
    dev: u64,
    ino: u64,
    _lock: Flock<File>,
}

/// Times the open and lock are tried again when the file at the path was
/// replaced (removed by an exiting superd) between the two.
const ATTEMPTS: usize = 3;

/// A failure to take the pid file at `path`.
fn fail(path: &Path, reason: String) -> Error {
    Error::PidFile {
        path: path.to_path_buf(),
        reason,
    }
}

impl PidFile {
    /// Creates (or takes over a stale) pid file and writes our pid.
    pub fn acquire(path: &Path) -> Result<PidFile, Error> {
        for _ in 1..ATTEMPTS {
            if let Some(p) = PidFile::try_acquire(path)? {
                return Ok(p);
            }
        }
        PidFile::try_acquire(path)?.ok_or_else(|| {
            fail(
                path,
                "replaced by another file while superd locked it (refused)".into(),
            )
        })
    }

    /// One open and lock; `None` when the file locked is no longer the
    /// one at the path (a superd that exited removed it, and another may
    /// have created a new one meanwhile): locking it would be no lock at
    /// all.
    fn try_acquire(path: &Path) -> Result<Option<PidFile>, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => {
                    fail(path, "is a symbolic link (refused, never followed)".into())
                }
                _ => fail(path, e.to_string()),
            })?;
        let meta = file.metadata().map_err(|e| fail(path, e.to_string()))?;
        if !meta.file_type().is_file() || meta.nlink() > 1 {
            return Err(fail(
                path,
                "not a regular file with a single link (refused)".into(),
            ));
        }
        // A pid file someone else owns, they can rewrite: whoever reads it
        // to signal superd would signal the pid they chose.
        let euid = nix::unistd::geteuid().as_raw();
        if meta.uid() != euid {
            return Err(fail(
                path,
                format!(
                    "owned by uid {}, not superd's uid {euid} (refused)",
                    meta.uid()
                ),
            ));
        }
        let mut lock =
            Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(mut f, e)| {
                let mut other = String::new();
                let _ = f.read_to_string(&mut other);
                match e {
                    nix::errno::Errno::EWOULDBLOCK => fail(
                        path,
                        format!("held by another superd (pid {})", other.trim()),
                    ),
                    e => fail(path, format!("lock: {e}")),
                }
            })?;
        if !names(path, meta.dev(), meta.ino()) {
            return Ok(None);
        }
        let write = |f: &mut File| -> io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            writeln!(f, "{}", std::process::id())?;
            f.flush()
        };
        write(&mut lock).map_err(|e| fail(path, e.to_string()))?;
        Ok(Some(PidFile {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
            _lock: lock,
        }))
    }
}

impl PidFile {
    /// The pid file as the previous image held it (superd.8, UPGRADING):
    /// the same open file, so the lock is already ours (taking it again on
    /// the same open file keeps it).
    pub fn adopt(fd: std::os::fd::OwnedFd, path: &Path) -> Result<PidFile, Error> {
        let file = File::from(fd);
        let meta = file.metadata().map_err(|e| fail(path, e.to_string()))?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| fail(path, format!("lock: {e}")))?;
        Ok(PidFile {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
            _lock: lock,
        })
    }

    /// Its descriptor and path, for the upgrade state.
    pub fn held(&self) -> (std::os::fd::RawFd, String) {
        use std::os::fd::AsRawFd;
        (self._lock.as_raw_fd(), self.path.display().to_string())
    }
}

/// Whether `path` names the file with this device and inode (lstat: a
/// symlink there does not).
fn names(path: &Path, dev: u64, ino: u64) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Still locked by us; removed only if the path still names the
        // file we locked (one put there since is not ours). Between the
        // check and the unlink only someone who can write the directory
        // can swap the name.
        if names(&self.path, self.dev, self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("superd-pidfile-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_pidfile_replaced_after_the_lock_is_kept_at_exit() {
        let d = temp("replaced");
        let path = d.join("p.pid");
        let p = PidFile::acquire(&path).unwrap();
        std::fs::rename(&path, d.join("moved")).unwrap();
        std::fs::write(&path, "other").unwrap();
        drop(p);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "other");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_lock_must_be_on_the_file_at_the_path() {
        let d = temp("names");
        let path = d.join("p.pid");
        std::fs::write(&path, "").unwrap();
        let m = std::fs::metadata(&path).unwrap();
        assert!(names(&path, m.dev(), m.ino()));
        // Removed and created again (an exiting superd, then a new one):
        // the inode locked before is not the one at the path.
        std::fs::rename(&path, d.join("old")).unwrap();
        std::fs::write(&path, "").unwrap();
        assert!(!names(&path, m.dev(), m.ino()));
        let _ = std::fs::remove_dir_all(&d);
    }
}
