//! The fences of a service's children (superd.yaml(5), "Fences") and the
//! capability names `capabilities:` takes.

use std::path::PathBuf;

/// The fences of a service's children (superd.yaml(5), "Fences"): what
/// each child joins or drops between clone and exec. The namespaces are
/// made once per service when the configuration loads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Fences {
    pub no_new_privs: bool,
    pub private_network: bool,
    pub private_tmp: bool,
    pub read_only_paths: Vec<PathBuf>,
    pub writable_paths: Vec<PathBuf>,
    pub inaccessible_paths: Vec<PathBuf>,
    /// Capability numbers (linux/capability.h), in the order written.
    pub capabilities: Vec<u8>,
}

impl Fences {
    /// The fields that shape the service's mount namespace.
    pub fn needs_mount_namespace(&self) -> bool {
        self.private_tmp
            || !self.read_only_paths.is_empty()
            || !self.writable_paths.is_empty()
            || !self.inaccessible_paths.is_empty()
    }

    /// Whether the service needs namespaces of its own.
    pub fn needs_namespaces(&self) -> bool {
        self.private_network || self.needs_mount_namespace()
    }

    /// What the namespaces are made of: two services (or one across a
    /// reload) with equal keys could share them.
    pub fn namespace_key(&self) -> (bool, bool, &[PathBuf], &[PathBuf], &[PathBuf]) {
        (
            self.private_network,
            self.private_tmp,
            &self.read_only_paths,
            &self.writable_paths,
            &self.inaccessible_paths,
        )
    }
}

/// The capabilities `capabilities:` may name, as capabilities(7) spells
/// them, with their numbers (linux/capability.h).
pub const CAPABILITIES: [(&str, u8); 41] = [
    ("CAP_CHOWN", 0),
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_DAC_READ_SEARCH", 2),
    ("CAP_FOWNER", 3),
    ("CAP_FSETID", 4),
    ("CAP_KILL", 5),
    ("CAP_SETGID", 6),
    ("CAP_SETUID", 7),
    ("CAP_SETPCAP", 8),
    ("CAP_LINUX_IMMUTABLE", 9),
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_NET_BROADCAST", 11),
    ("CAP_NET_ADMIN", 12),
    ("CAP_NET_RAW", 13),
    ("CAP_IPC_LOCK", 14),
    ("CAP_IPC_OWNER", 15),
    ("CAP_SYS_MODULE", 16),
    ("CAP_SYS_RAWIO", 17),
    ("CAP_SYS_CHROOT", 18),
    ("CAP_SYS_PTRACE", 19),
    ("CAP_SYS_PACCT", 20),
    ("CAP_SYS_ADMIN", 21),
    ("CAP_SYS_BOOT", 22),
    ("CAP_SYS_NICE", 23),
    ("CAP_SYS_RESOURCE", 24),
    ("CAP_SYS_TIME", 25),
    ("CAP_SYS_TTY_CONFIG", 26),
    ("CAP_MKNOD", 27),
    ("CAP_LEASE", 28),
    ("CAP_AUDIT_WRITE", 29),
    ("CAP_AUDIT_CONTROL", 30),
    ("CAP_SETFCAP", 31),
    ("CAP_MAC_OVERRIDE", 32),
    ("CAP_MAC_ADMIN", 33),
    ("CAP_SYSLOG", 34),
    ("CAP_WAKE_ALARM", 35),
    ("CAP_BLOCK_SUSPEND", 36),
    ("CAP_AUDIT_READ", 37),
    ("CAP_PERFMON", 38),
    ("CAP_BPF", 39),
    ("CAP_CHECKPOINT_RESTORE", 40),
];

/// The name of capability `n`.
pub fn capability_name(n: u8) -> &'static str {
    CAPABILITIES
        .iter()
        .find(|(_, c)| *c == n)
        .map_or("CAP_UNKNOWN", |(name, _)| name)
}
