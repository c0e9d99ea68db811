//! The state one superd image hands to the next across `execve` (superd.8,
//! UPGRADING): a JSON document with a magic and a version number, written
//! and read here only. A reader refuses a magic or a version it does not
//! know, and any field it does not know: the previous binary then serves
//! on with the same state (a rollback).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Names the document; anything else in the memfd is not superd's state.
pub const MAGIC: &str = "superd-upgrade-state";
/// The format this binary writes and the only one it reads.
pub const VERSION: u32 = 1;

/// Everything that survives an upgrade.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub magic: String,
    pub version: u32,
    /// The version of the image that wrote the state (`upgraded from=`).
    pub from: String,
    /// The path superd was started from, the one an upgrade executes.
    pub exe: String,
    /// An open descriptor of the binary that wrote the state, executed
    /// again if the new one cannot restore it.
    pub previous_exe_fd: Option<i32>,
    /// The state is handed back to the previous binary after a failed
    /// restore: it logs `upgrade failed … rolled back`.
    pub rollback: Option<String>,
    /// `NOTIFY_SOCKET` as superd found it at start (it removes it from its
    /// environment).
    pub notify_socket: Option<String>,
    /// The locked pid file (the lock, an flock, is the descriptor's).
    pub pidfile: Option<PidFileState>,
    /// When the first image started (Unix seconds).
    pub started_unix: f64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub next_serial: u64,
    /// CLOCK_MONOTONIC (nanoseconds) when the state was written: the
    /// next image adds the time since to every age and takes it from
    /// every deadline, so that durations cover the exec too.
    pub written_ns: u64,
    pub listeners: Vec<ListenerState>,
    pub children: Vec<ChildState>,
    pub pipes: Vec<PipeState>,
    pub sessions: Vec<SessionState>,
    pub services: Vec<ServiceCounters>,
    /// Connections of `proxy_protocol` services waiting for their PROXY
    /// header.
    #[serde(default)]
    pub headers: Vec<HeaderState>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PidFileState {
    pub fd: i32,
    pub path: String,
}

/// A listening (or bound datagram) socket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerState {
    pub fd: i32,
    pub service: String,
    /// As the `listening` line shows it.
    pub addr: String,
    /// `stream`, `dgram` or `seqpacket`.
    pub socket: String,
    /// Inherited from superd's parent (LISTEN_FDS), not bound by superd.
    pub inherited: bool,
    /// A UDP chargen's rotation: the line its next datagram starts at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chargen_next: Option<usize>,
}

/// Who is on the other end of a child's connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum PeerState {
    Inet(SocketAddr),
    Unix { pid: i32, uid: u32, gid: u32 },
}

/// A running child (past exec: children still in exec are waited for).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChildState {
    pub pid: i32,
    pub service: String,
    pub peer: Option<PeerState>,
    /// It holds a per-source slot (the key is its peer's).
    pub per_source: bool,
    /// How long it had run when the state was written (nanoseconds): its
    /// start time is now minus this in the next image.
    pub age_ns: u64,
    pub serial: u64,
    pub timed_out: bool,
    pub killed: bool,
    pub exec_failed: bool,
    /// Nanoseconds to its `timeout` SIGTERM, if one is due.
    pub timeout_in_ns: Option<u64>,
    /// Nanoseconds to its SIGKILL, if one is due.
    pub kill_in_ns: Option<u64>,
    /// Its connection cgroup's path.
    pub cgroup: Option<String>,
    /// wait mode: the descriptor of the listener it holds.
    pub wait_listener_fd: Option<i32>,
    /// `pass: listen_fds` wait mode: the descriptors of every listener it
    /// holds.
    pub listen_fds: Vec<i32>,
}

/// A child's stderr pipe (`stderr: log`) with what it had not yet logged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipeState {
    pub fd: i32,
    pub service: String,
    pub pid: i32,
    pub pending: Vec<u8>,
    pub cut: bool,
}

/// A connection waiting for its PROXY header (superd.yaml(5), PROXY
/// PROTOCOL). What it sent so far is still queued on the socket (the wait
/// only peeks), so the descriptor is all of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderState {
    pub fd: i32,
    pub service: String,
    /// The proxy (the header names the client).
    pub peer: PeerState,
    /// The address it connected to, when the listener's own says it.
    pub local: Option<SocketAddr>,
    /// Nanoseconds left of its `proxy_timeout`.
    pub timeout_in_ns: Option<u64>,
}

/// A builtin stream session (echo, discard, chargen, a daytime or time
/// reply not yet all sent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionState {
    pub fd: i32,
    pub service: String,
    pub peer: PeerState,
    pub per_source: bool,
    pub age_ns: u64,
    /// Nanoseconds since the last byte moved (the idle timer's start).
    pub idle_ns: u64,
    pub idle_timeout_ns: u64,
    pub kind: SessionKind,
    pub read_eof: bool,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum SessionKind {
    /// The bytes read and not yet written back.
    Echo {
        pending: Vec<u8>,
    },
    Discard,
    Reply {
        data: Vec<u8>,
        sent: usize,
    },
    /// The offset of the next byte in chargen's period.
    Chargen {
        pos: usize,
    },
}

/// A service's counters and `rate` bucket (by name: ids are the image's
/// own).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceCounters {
    pub service: String,
    pub accepted: u64,
    pub served: u64,
    pub refused: Vec<u64>,
    pub exec_failures: u64,
    pub exits: Vec<u64>,
    /// The `rate` bucket's fill: whole tokens, the remainder and the
    /// period in nanoseconds.
    pub rate_fill: Option<[u64; 3]>,
    /// The duration histogram: counts per bucket and the sum of seconds.
    #[serde(default)]
    pub duration_buckets: Vec<u64>,
    #[serde(default)]
    pub duration_sum: f64,
    /// Nanoseconds paused per reason, up to the writing.
    #[serde(default)]
    pub paused_ns: Vec<u64>,
}

/// Why a state document was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    NotJson(String),
    Magic,
    Version(u32),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::NotJson(e) => write!(f, "not a state document: {e}"),
            Refused::Magic => write!(f, "not a superd state (magic)"),
            Refused::Version(v) => {
                write!(
                    f,
                    "state format version {v} (this binary reads {})",
                    version()
                )
            }
        }
    }
}

/// The version this binary reads and writes. `SUPERD_STATE_VERSION`
/// overrides it in debug builds only, so a test can make a binary that
/// refuses the state (superd.8, UPGRADING: the rollback).
/// Read once, at the first call (superd's start, which then removes the
/// variable: the binary a rollback runs does not see it).
pub fn version() -> u32 {
    static V: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *V.get_or_init(|| {
        let over = std::env::var("SUPERD_STATE_VERSION")
            .ok()
            .and_then(|v| v.parse().ok());
        match over {
            Some(v) if cfg!(debug_assertions) => v,
            _ => VERSION,
        }
    })
}

/// CLOCK_MONOTONIC in nanoseconds (the clock `Instant` reads, which goes
/// on across `execve`).
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

impl State {
    /// How long ago the state was written (zero if the clock says
    /// otherwise).
    pub fn since_written(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(monotonic_ns().saturating_sub(self.written_ns))
    }

    /// An empty state of this binary's version.
    pub fn new(exe: String) -> State {
        State {
            magic: MAGIC.to_string(),
            version: version(),
            from: env!("CARGO_PKG_VERSION").to_string(),
            exe,
            previous_exe_fd: None,
            rollback: None,
            notify_socket: None,
            pidfile: None,
            started_unix: 0.0,
            reloads_ok: 0,
            reloads_failed: 0,
            next_serial: 0,
            written_ns: 0,
            listeners: Vec::new(),
            children: Vec::new(),
            pipes: Vec::new(),
            sessions: Vec::new(),
            services: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("the state serializes")
    }

    /// Reads a document; refuses another magic or version before looking
    /// at the rest.
    pub fn from_bytes(bytes: &[u8]) -> Result<State, Refused> {
        #[derive(Deserialize)]
        struct Header {
            magic: String,
            version: u32,
        }
        let h: Header =
            serde_json::from_slice(bytes).map_err(|e| Refused::NotJson(e.to_string()))?;
        if h.magic != MAGIC {
            return Err(Refused::Magic);
        }
        if h.version != version() {
            return Err(Refused::Version(h.version));
        }
        serde_json::from_slice(bytes).map_err(|e| Refused::NotJson(e.to_string()))
    }

    /// Every descriptor the state names (cleared of close-on-exec before
    /// the exec, set again after the restore).
    pub fn fds(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.listeners.iter().map(|l| l.fd).collect();
        v.extend(self.pipes.iter().map(|p| p.fd));
        v.extend(self.sessions.iter().map(|s| s.fd));
        v.extend(self.headers.iter().map(|h| h.fd));
        v.extend(self.pidfile.as_ref().map(|p| p.fd));
        v.extend(self.previous_exe_fd);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> State {
        let mut s = State::new("/usr/sbin/superd".into());
        s.previous_exe_fd = Some(9);
        s.rollback = Some("restore failed".into());
        s.notify_socket = Some("@notify".into());
        s.pidfile = Some(PidFileState {
            fd: 4,
            path: "/run/superd.pid".into(),
        });
        s.started_unix = 1234.5;
        s.reloads_ok = 3;
        s.reloads_failed = 1;
        s.next_serial = 77;
        s.written_ns = 123_456_789;
        s.listeners.push(ListenerState {
            fd: 5,
            service: "echo".into(),
            addr: "127.0.0.1:7".into(),
            socket: "stream".into(),
            inherited: true,
            chargen_next: Some(3),
        });
        s.children.push(ChildState {
            pid: 4242,
            service: "hello".into(),
            peer: Some(PeerState::Inet("10.0.0.1:5555".parse().unwrap())),
            per_source: true,
            age_ns: 1_500_000_000,
            serial: 12,
            timed_out: true,
            killed: false,
            exec_failed: false,
            timeout_in_ns: Some(2_000_000_000),
            kill_in_ns: Some(3_000_000_000),
            cgroup: Some("/sys/fs/cgroup/superd/c12".into()),
            wait_listener_fd: Some(5),
            listen_fds: vec![5, 6],
        });
        s.children.push(ChildState {
            pid: 4243,
            service: "local".into(),
            peer: Some(PeerState::Unix {
                pid: 1,
                uid: 2,
                gid: 3,
            }),
            per_source: false,
            age_ns: 1,
            serial: 13,
            timed_out: false,
            killed: true,
            exec_failed: true,
            timeout_in_ns: None,
            kill_in_ns: None,
            cgroup: None,
            wait_listener_fd: None,
            listen_fds: vec![],
        });
        s.pipes.push(PipeState {
            fd: 7,
            service: "hello".into(),
            pid: 4242,
            pending: b"half a li".to_vec(),
            cut: true,
        });
        for (fd, kind) in [
            (
                10,
                SessionKind::Echo {
                    pending: b"owed".to_vec(),
                },
            ),
            (11, SessionKind::Discard),
            (
                12,
                SessionKind::Reply {
                    data: b"Sunday".to_vec(),
                    sent: 2,
                },
            ),
            (13, SessionKind::Chargen { pos: 7000 }),
        ] {
            s.sessions.push(SessionState {
                fd,
                service: "echo".into(),
                peer: PeerState::Inet("[::1]:4000".parse().unwrap()),
                per_source: fd % 2 == 0,
                age_ns: 5,
                idle_ns: 6,
                idle_timeout_ns: 7,
                kind,
                read_eof: fd == 10,
                bytes_in: 8,
                bytes_out: 9,
            });
        }
        s.services.push(ServiceCounters {
            service: "hello".into(),
            accepted: 10,
            served: 9,
            refused: vec![1, 2, 3],
            exec_failures: 4,
            exits: vec![5, 6, 7, 8],
            rate_fill: Some([1, 2, 3]),
            duration_buckets: (0..17).collect(),
            duration_sum: 12.5,
            paused_ns: vec![1, 2, 3, 4],
        });
        s.headers.push(HeaderState {
            fd: 14,
            service: "proxied".into(),
            peer: PeerState::Inet("127.0.0.1:6000".parse().unwrap()),
            local: Some("127.0.0.1:80".parse().unwrap()),
            timeout_in_ns: Some(4_000_000_000),
        });
        s
    }

    #[test]
    fn every_field_survives_the_round_trip() {
        let s = full();
        let back = State::from_bytes(&s.to_bytes()).expect("reads its own");
        assert_eq!(back, s);
        assert_eq!(back.from, env!("CARGO_PKG_VERSION"));
        assert_eq!(back.fds(), vec![5, 7, 10, 11, 12, 13, 14, 4, 9]);
    }

    #[test]
    fn a_state_without_the_chargen_rotation_still_reads() {
        // As an image from before the field wrote it.
        let text = String::from_utf8(full().to_bytes()).unwrap();
        let older = text.replacen(",\"chargen_next\":3", "", 1);
        assert_ne!(older, text);
        let back = State::from_bytes(older.as_bytes()).expect("reads the older form");
        assert_eq!(back.listeners[0].chargen_next, None);
        let mut want = full();
        want.listeners[0].chargen_next = None;
        assert_eq!(back, want);
    }

    #[test]
    fn a_state_without_header_waits_still_reads() {
        let text = String::from_utf8(full().to_bytes()).unwrap();
        let at = text.find(",\"headers\":").expect("written");
        let older = format!("{}}}", &text[..at]);
        let back = State::from_bytes(older.as_bytes()).expect("reads the older form");
        let mut want = full();
        want.headers.clear();
        assert_eq!(back, want);
    }

    #[test]
    fn another_version_is_refused() {
        let mut s = full();
        s.version = VERSION + 1;
        assert_eq!(
            State::from_bytes(&s.to_bytes()),
            Err(Refused::Version(VERSION + 1))
        );
        s.version = 0;
        assert_eq!(State::from_bytes(&s.to_bytes()), Err(Refused::Version(0)));
    }

    #[test]
    fn another_magic_is_refused() {
        let mut s = full();
        s.magic = "something-else".into();
        assert_eq!(State::from_bytes(&s.to_bytes()), Err(Refused::Magic));
    }

    #[test]
    fn an_unknown_field_or_garbage_is_refused() {
        let text = String::from_utf8(full().to_bytes()).unwrap();
        let extra = text.replacen('{', "{\"surprise\":1,", 1);
        assert!(matches!(
            State::from_bytes(extra.as_bytes()),
            Err(Refused::NotJson(_))
        ));
        assert!(matches!(
            State::from_bytes(b"\x00\x01"),
            Err(Refused::NotJson(_))
        ));
        let missing = text.replacen("\"reloads_ok\":3,", "", 1);
        assert!(matches!(
            State::from_bytes(missing.as_bytes()),
            Err(Refused::NotJson(_))
        ));
    }
}
