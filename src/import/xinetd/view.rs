//! A service's attributes with `defaults` folded in, as the translation
//! reads them, and the list of attributes xinetd.conf(5) knows.

use super::super::{Entry, Loc, Note, Severity};
use super::{Attr, Op};

/// Attributes whose value is a set: `+=` and `-=` work on them, and in
/// `defaults` they accumulate (xinetd.conf(5)).
pub(super) const SET_VALUED: [&str; 6] = [
    "only_from",
    "no_access",
    "log_on_success",
    "log_on_failure",
    "passenv",
    "env",
];

/// A service's view of its attributes, `defaults` folded in.
pub(super) struct View<'a> {
    pub(super) own: &'a [Attr],
    pub(super) defaults: &'a [&'a Attr],
}

impl<'a> View<'a> {
    /// The last `=` of a single-valued attribute: the service's, else the
    /// default's.
    pub(super) fn single(&self, name: &str) -> Option<&'a Attr> {
        self.own
            .iter()
            .rev()
            .find(|a| a.name == name)
            .or_else(|| self.defaults.iter().rev().find(|a| a.name == name).copied())
    }

    /// A set-valued attribute: the values with the location of each, or
    /// `None` when neither the service nor `defaults` names it.
    pub(super) fn set(&self, name: &str) -> Option<Vec<(String, Loc)>> {
        let mut out: Option<Vec<(String, Loc)>> = None;
        for a in self.defaults.iter().filter(|a| a.name == name) {
            let v = out.get_or_insert_with(Vec::new);
            apply(v, a, true);
        }
        let mut replaced = false;
        for a in self.own.iter().filter(|a| a.name == name) {
            let v = out.get_or_insert_with(Vec::new);
            if a.op == Op::Set && !replaced {
                v.clear();
                replaced = true;
            }
            apply(v, a, false);
        }
        out
    }
}

pub(super) fn apply(v: &mut Vec<(String, Loc)>, a: &Attr, in_defaults: bool) {
    match a.op {
        Op::Remove => v.retain(|(x, _)| !a.values.contains(x)),
        Op::Set if !in_defaults => {
            v.extend(a.values.iter().map(|x| (x.clone(), a.loc.clone())));
        }
        _ => v.extend(a.values.iter().map(|x| (x.clone(), a.loc.clone()))),
    }
}

/// Every attribute xinetd.conf(5) describes. Anything else is reported.
pub(super) const KNOWN: [&str; 46] = [
    "id",
    "type",
    "flags",
    "disable",
    "socket_type",
    "protocol",
    "wait",
    "user",
    "group",
    "instances",
    "nice",
    "server",
    "server_args",
    "libwrap",
    "only_from",
    "no_access",
    "access_times",
    "log_type",
    "log_on_success",
    "log_on_failure",
    "rpc_version",
    "rpc_number",
    "env",
    "passenv",
    "port",
    "redirect",
    "bind",
    "interface",
    "banner",
    "banner_success",
    "banner_fail",
    "per_source",
    "cps",
    "max_load",
    "groups",
    "mdns",
    "umask",
    "enabled",
    "disabled",
    "rlimit_as",
    "rlimit_files",
    "rlimit_cpu",
    "rlimit_data",
    "rlimit_rss",
    "rlimit_stack",
    "deny_time",
];

pub(super) fn note(e: &mut Entry, loc: &Loc, severity: Severity, text: impl Into<String>) {
    e.notes.push(Note {
        loc: loc.clone(),
        severity,
        text: text.into(),
    });
}
