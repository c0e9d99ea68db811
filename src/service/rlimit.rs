//! `rlimits:` (superd.yaml(5)): the resources a service may limit, in one
//! table of name and `RLIMIT_*` constant.

use nix::sys::resource::Resource;

/// The resources `rlimits:` may set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RlimitResource {
    Nofile,
    Nproc,
    As,
    Data,
    Stack,
    Fsize,
    Core,
    Cpu,
    Memlock,
}

/// Every resource, with its name in the configuration and its `RLIMIT_*`
/// constant: the one table of them.
const TABLE: [(RlimitResource, &str, Resource); 9] = [
    (RlimitResource::Nofile, "nofile", Resource::RLIMIT_NOFILE),
    (RlimitResource::Nproc, "nproc", Resource::RLIMIT_NPROC),
    (RlimitResource::As, "as", Resource::RLIMIT_AS),
    (RlimitResource::Data, "data", Resource::RLIMIT_DATA),
    (RlimitResource::Stack, "stack", Resource::RLIMIT_STACK),
    (RlimitResource::Fsize, "fsize", Resource::RLIMIT_FSIZE),
    (RlimitResource::Core, "core", Resource::RLIMIT_CORE),
    (RlimitResource::Cpu, "cpu", Resource::RLIMIT_CPU),
    (RlimitResource::Memlock, "memlock", Resource::RLIMIT_MEMLOCK),
];

impl RlimitResource {
    pub const ALL: [RlimitResource; 9] = {
        let mut all = [RlimitResource::Nofile; 9];
        let mut i = 0;
        while i < TABLE.len() {
            all[i] = TABLE[i].0;
            i += 1;
        }
        all
    };

    /// The row of the table (the enum's order is the table's).
    fn row(self) -> (RlimitResource, &'static str, Resource) {
        TABLE[self as usize]
    }

    pub fn as_str(self) -> &'static str {
        self.row().1
    }

    /// The resource as nix names it (what superd checks at load and
    /// what the child is given both come from this table).
    pub fn resource(self) -> Resource {
        self.row().2
    }

    /// The `RLIMIT_*` constant (nix's discriminants are libc's).
    pub fn raw(self) -> libc::__rlimit_resource_t {
        self.row().2 as libc::__rlimit_resource_t
    }
}

/// One value of an rlimit: a number or `unlimited` (`None`).
pub type RlimValue = Option<u64>;

/// One configured rlimit. `soft: None` means `unlimited`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: RlimitResource,
    pub soft: RlimValue,
    pub hard: RlimValue,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_the_enums_order() {
        for (i, (r, name, _)) in TABLE.iter().enumerate() {
            assert_eq!(*r as usize, i, "{name}");
            assert_eq!(RlimitResource::ALL[i], *r);
            assert_eq!(r.as_str(), *name);
        }
        assert_eq!(RlimitResource::Cpu.raw(), libc::RLIMIT_CPU);
    }
}
