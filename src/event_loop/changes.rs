//! What a reload changes (superd(8), LOGS): the services added, removed
//! and changed, by name and field, told before the `reloaded` line.

use std::collections::{HashMap, HashSet};

use log::info;

use crate::service::{Service, ServiceId};

use super::Daemon;

impl Daemon {
    /// What a reload to `new` adds, removes and changes, by service name;
    /// `kept_whole` tells those found unchanged already, `old` the running
    /// services by name.
    pub(super) fn reload_changes(
        &self,
        new: &[Service],
        kept_whole: &[bool],
        old: &HashMap<String, ServiceId>,
    ) -> ReloadChanges {
        let mut c = ReloadChanges::default();
        // How many running services `new` names again.
        let mut matched = 0;
        for (i, s) in new.iter().enumerate() {
            if kept_whole.get(i).copied().unwrap_or(false) {
                c.unchanged += 1;
                matched += 1;
                continue;
            }
            match old.get(&s.name).and_then(|id| self.services.get(id)) {
                None => c.added.push(s.name.clone()),
                Some(st) => {
                    matched += 1;
                    let fields = st.service.changed_fields(s);
                    if fields.is_empty() {
                        c.unchanged += 1;
                    } else {
                        c.changed.push((s.name.clone(), fields));
                    }
                }
            }
        }
        // Names are unique on both sides: when `new` names every running
        // service, none is removed. Otherwise a set of the new names (a
        // scan of `new` per running service is quadratic, which at 10,000
        // services was most of a reload).
        if matched < old.len() {
            let kept: HashSet<&str> = new.iter().map(|s| s.name.as_str()).collect();
            let mut removed: Vec<&str> = old
                .keys()
                .map(String::as_str)
                .filter(|name| !kept.contains(name))
                .collect();
            removed.sort_unstable();
            c.removed = removed.into_iter().map(str::to_owned).collect();
        }
        c
    }
}

/// What a reload changed (superd(8), LOGS): a line per service added,
/// removed or changed, then the `reloaded` line with the counts.
#[derive(Default)]
pub(super) struct ReloadChanges {
    pub(super) added: Vec<String>,
    pub(super) removed: Vec<String>,
    /// With the fields that changed.
    pub(super) changed: Vec<(String, Vec<&'static str>)>,
    pub(super) unchanged: usize,
}

impl ReloadChanges {
    pub(super) fn log(&self, services: usize) {
        for name in &self.added {
            info!("service added service={name}");
        }
        for name in &self.removed {
            info!("service removed service={name}");
        }
        for (name, fields) in &self.changed {
            info!("service changed service={name} fields={}", fields.join(","));
        }
        info!(
            "reloaded services={services} added={} removed={} changed={} unchanged={}",
            self.added.len(),
            self.removed.len(),
            self.changed.len(),
            self.unchanged
        );
    }
}
