//! sd_notify without libsystemd: one datagram per state change to the unix
//! socket named by `NOTIFY_SOCKET` (a path, or `@name` for an abstract one).

use std::os::fd::AsRawFd;

use log::debug;
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};

/// Where to send notifications; inert when `NOTIFY_SOCKET` is unset.
#[derive(Debug, Default)]
pub struct Notifier {
    addr: Option<UnixAddr>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and removes it from superd's environment, so
    /// nothing superd starts can see it (children get a clean environment
    /// anyway).
    pub fn from_env() -> Notifier {
        let Some(value) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier::default();
        };
        Notifier::parse(value)
    }

    /// The notifier for a `NOTIFY_SOCKET` value kept across an upgrade.
    pub fn from_value(value: Option<&str>) -> Notifier {
        value.map_or_else(Notifier::default, |v| Notifier::parse(v.into()))
    }

    fn parse(value: std::ffi::OsString) -> Notifier {
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(value.as_os_str()).to_vec();
        let addr = match bytes.strip_prefix(b"@") {
            Some(name) => UnixAddr::new_abstract(name).ok(),
            None if bytes.first() == Some(&b'/') => {
                UnixAddr::new(std::path::Path::new(&value)).ok()
            }
            None => None,
        };
        Notifier { addr }
    }

    /// Sends `state` (e.g. `READY=1`); failures are logged at debug only:
    /// the supervisor's notification socket is not superd's to fix.
    pub fn notify(&self, state: &str) {
        // What was logged before a state change is on stderr before the
        // supervisor hears of it (the loop batches a turn's lines).
        crate::logging::flush();
        let Some(addr) = &self.addr else { return };
        let sent = socket::socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        // Never blocking: a supervisor that stops reading (its queue full)
        // loses a notification, and superd goes on serving.
        .and_then(|fd| {
            socket::sendto(
                fd.as_raw_fd(),
                state.as_bytes(),
                addr,
                MsgFlags::MSG_DONTWAIT,
            )
        });
        if let Err(e) = sent {
            debug!("sd_notify failed state={state:?} error=\"{e}\"");
        }
    }

    /// `RELOADING=1` with the monotonic timestamp systemd asks for
    /// (`Type=notify-reload` requires it).
    pub fn reloading(&self) {
        let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
            .unwrap_or(0);
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={ts}"));
    }
}
