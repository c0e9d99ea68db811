//! The pid file: opened without following a symlink, locked for the life of
//! the process (so a second superd on it refuses to start and leaves the
//! first one's file alone), removed at exit.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// A held pid file; dropping it removes the file.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    _lock: Flock<File>,
}

impl PidFile {
    /// Creates (or takes over a stale) pid file and writes our pid.
    pub fn acquire(path: &Path) -> Result<PidFile, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => format!(
                    "pidfile {}: is a symbolic link (refused, never followed)",
                    path.display()
                ),
                _ => format!("pidfile {}: {e}", path.display()),
            })?;
        let meta = file
            .metadata()
            .map_err(|e| format!("pidfile {}: {e}", path.display()))?;
        if !meta.file_type().is_file() || meta.nlink() > 1 {
            return Err(format!(
                "pidfile {}: not a regular file with a single link (refused)",
                path.display()
            ));
        }
        let mut lock =
            Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(mut f, e)| {
                let mut other = String::new();
                let _ = f.read_to_string(&mut other);
                match e {
                    nix::errno::Errno::EWOULDBLOCK => format!(
                        "pidfile {}: held by another superd (pid {})",
                        path.display(),
                        other.trim()
                    ),
                    e => format!("pidfile {}: lock: {e}", path.display()),
                }
            })?;
        let write = |f: &mut File| -> io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            writeln!(f, "{}", std::process::id())?;
            f.flush()
        };
        write(&mut lock).map_err(|e| format!("pidfile {}: {e}", path.display()))?;
        Ok(PidFile {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Still locked by us, so the file is ours to remove.
        let _ = std::fs::remove_file(&self.path);
    }
}
