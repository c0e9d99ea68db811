//! Start and reload (superd.8, SIGNALS): validating first, keeping every
//! listening socket whose key is unchanged (listener::pool), binding new
//! addresses before closing anything, and installing the running set.

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::{AsFd, AsRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use mio::{Interest, Token};

use crate::builtins;
use crate::children::Children;
use crate::config::Config;
use crate::limits::{LogBudget, ServiceLimits};
use crate::listener;
use crate::listener::pool::{self, Pool, Slot};
use crate::logging::quote;
use crate::metrics::{Counters, PauseReason};
use crate::notify::Notifier;
use crate::plan::{PlanCache, SpawnPlan};
use crate::service::{Program, Service, SocketType};
use crate::signals::Signals;
use crate::spawn::sandbox::Namespaces;
use crate::tree::Fence;

use super::accept::ListenerEntry;
use super::services::{Pause, ServiceState};
use super::timers::Timers;
use super::watch::{Watch, Watched};
use super::{Daemon, Source, upgrade};
use crate::error::Error;
use crate::limits::Pacing;
use crate::service::ServiceId;

/// What the loop keeps with a running listener while a reload offers it
/// for reuse (listener::pool).
pub(super) struct Kept {
    pub(super) token: Token,
    pub(super) udp: Option<builtins::UdpServer>,
}

impl Daemon {
    /// Binds every listener of `config` (all or nothing) and prepares the
    /// loop. Signals must already be blocked (`signals`).
    pub fn start(
        config: Config,
        source: Source,
        grace: Duration,
        signals: Signals,
        notifier: Notifier,
    ) -> Result<Daemon, Error> {
        let inherited = crate::listener_inherit::take_from_env();
        let none = upgrade::Adopted::default();
        Daemon::start_with(config, source, grace, signals, notifier, inherited, &none)
    }

    /// `start`, with the sockets to adopt (from LISTEN_FDS, or from the
    /// previous image after an upgrade: `upgraded` says which of those a
    /// `wait` child holds and which the previous image bound itself).
    pub(super) fn start_with(
        config: Config,
        source: Source,
        grace: Duration,
        signals: Signals,
        notifier: Notifier,
        inherited: Vec<crate::listener_inherit::Inherited>,
        upgraded: &upgrade::Adopted,
    ) -> Result<Daemon, Error> {
        let watch = Watch::new(signals.raw_fd())?;
        let mut d = Daemon {
            watch,
            signals,
            source,
            grace,
            notifier,
            services: HashMap::new(),
            order: Vec::new(),
            udp_ports: Vec::new(),
            listeners: HashMap::new(),
            sessions: HashMap::new(),
            headers: HashMap::new(),
            pipes: HashMap::new(),
            children: Children::default(),
            lingering: HashMap::new(),
            fence: Fence::start(),
            dying: Vec::new(),
            timers: Timers::default(),
            pin: super::pin::Pin::default(),
            ready: Vec::new(),
            deferred: Vec::new(),
            closing: Vec::new(),
            next_service_id: 1,
            next_serial: 0,
            parking: Default::default(),
            reload_pending: false,
            status_pending: false,
            reap_pending: false,
            last_sweep: None,
            sweep_due: false,
            shutdown: None,
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            reloads_ok: 0,
            reloads_failed: 0,
            upgrade: None,
            // A restored image accepts only once its children, sessions
            // and limits are back (see upgrade::Daemon::restore).
            upgrade_pending: upgraded.hold_accepts.then(Instant::now),
        };
        let namespaces = d.namespaces_for(&config.services, &HashMap::new())?;
        // Sockets from superd's parent (LISTEN_FDS) first: a service they
        // match is not bound again (superd.8, SOCKET ACTIVATION).
        let mut inherited = crate::listener_inherit::adopt(inherited, &config.services);
        let mut bound = pool::bind_all(
            &config.services,
            &[],
            &mut Pool::new(),
            &HashMap::new(),
            &mut inherited,
        )?;
        for slot in bound.iter_mut().flatten() {
            let fd = slot.listener.fd.as_raw_fd();
            if upgraded.own.contains(&fd) {
                slot.listener.inherited = false;
            }
            if upgraded.busy.contains(&fd) {
                slot.busy = true;
                let _ = listener::set_nonblocking(slot.listener.fd.as_fd(), false);
            }
        }
        d.install(config.services, &[], bound, HashMap::new(), namespaces);
        // Loading a large configuration peaks well above what stays alive
        // (the YAML event list, the list of services): give that memory
        // back.
        crate::sys::trim_heap();
        Ok(d)
    }

    /// The namespaces of every enabled exec service of `services` whose
    /// fences ask for some (superd.yaml(5), "Fences"): those of the
    /// running service of the same name when its fences made the same
    /// ones, new ones otherwise. All or nothing: the error names the
    /// service and the step.
    pub(super) fn namespaces_for(
        &self,
        services: &[Service],
        old_ids: &HashMap<String, ServiceId>,
    ) -> Result<HashMap<String, Rc<Namespaces>>, Error> {
        let mut out = HashMap::new();
        for s in services {
            if !s.enabled || s.builtin().is_some() || !s.fences.needs_namespaces() {
                continue;
            }
            let kept = old_ids
                .get(&s.name)
                .and_then(|id| self.services.get(id))
                .filter(|st| {
                    st.service.fences.namespace_key() == s.fences.namespace_key()
                        && (!s.fences.private_tmp || st.service.chroot == s.chroot)
                })
                .and_then(|st| st.namespaces.clone());
            let ns = match kept {
                Some(ns) => ns,
                None => match Namespaces::new(&s.fences, s.chroot.as_deref()) {
                    Ok(Some(ns)) => Rc::new(ns),
                    Ok(None) => continue,
                    Err(e) => {
                        return Err(Error::Fences {
                            service: s.name.clone(),
                            reason: e.to_string(),
                        });
                    }
                },
            };
            out.insert(s.name.clone(), ns);
        }
        Ok(out)
    }

    /// Makes `services` the running set. `bound` holds a listener for every
    /// (service, address) of an enabled service, in order, but for those
    /// `kept_whole` (unchanged by a reload), which keep theirs; `old` the
    /// previous states by name (reload); `namespaces` those of the fenced
    /// services, by name.
    pub(super) fn install(
        &mut self,
        services: Vec<Service>,
        kept_whole: &[bool],
        mut bound: Vec<Vec<Slot<Kept>>>,
        old_ids: HashMap<String, ServiceId>,
        mut namespaces: HashMap<String, Rc<Namespaces>>,
    ) {
        let now = Instant::now();
        let mut new_order = Vec::new();
        // Services built alike share the body of their plans.
        let mut plans = PlanCache::default();
        // The listeners that may have connections waiting.
        let mut to_drain = Vec::new();
        for (i, (service, listeners)) in services.into_iter().zip(bound.drain(..)).enumerate() {
            let whole = kept_whole.get(i).copied().unwrap_or(false);
            // An unchanged service keeps the running one's `Rc`: the new
            // copy goes now, and no second copy of 10,000 services is
            // made while the first still lives.
            let running = old_ids
                .get(&service.name)
                .and_then(|id| self.services.get(id))
                .filter(|st| whole || *st.service == service)
                .map(|st| st.service.clone());
            let service = running.unwrap_or_else(|| Rc::new(service));
            let ns = namespaces.remove(&service.name);
            // Built for a new or changed service only: the plan, and the
            // warning that its user could not execute its program.
            let mut new_plan = || match service.program {
                Program::Exec { .. } => {
                    if let Some(why) = crate::config::exec_access_warning(&service) {
                        warn!(
                            "program not executable service={} error={}",
                            service.name,
                            quote(&why)
                        );
                    }
                    Some(Rc::new(SpawnPlan::shared(&service, ns.clone(), &mut plans)))
                }
                Program::Builtin(_) => None,
            };
            // And the configuration's warnings, as --check shows them.
            let mut new_plan = || {
                config_warnings(&service);
                new_plan()
            };
            // A kept listener of this service needs no drain after the
            // reload (see `settled`).
            let mut settled = false;
            let id = match old_ids.get(&service.name) {
                Some(&id) => {
                    let st = self.services.get_mut(&id).expect("old id is live");
                    let same = Rc::ptr_eq(&st.service, &service);
                    settled = same && st.settled();
                    st.limits.reconfigure(
                        service.max_connections,
                        service.max_per_source,
                        service.rate,
                        now,
                    );
                    // A pause for the old rate is the old rate's: the new
                    // one decides at the drain below (and pauses again if
                    // it must).
                    if matches!(st.paused, Some((Pause::Rate, _))) {
                        st.paused = None;
                        st.counters.paused.end(PauseReason::Rate, now);
                    }
                    // An unchanged service keeps its plan (no passwd lookup,
                    // no C strings rebuilt for each of 1000 services).
                    if !same {
                        st.plan = new_plan();
                    }
                    st.namespaces = ns.clone();
                    st.service = service.clone();
                    if whole {
                        // Its listeners stayed where they were; one of a
                        // service not settled may have connections waiting.
                        if !settled {
                            to_drain.extend(st.listeners.iter().copied());
                        }
                    } else {
                        st.listeners.clear();
                    }
                    id
                }
                None => {
                    let id = ServiceId(self.next_service_id);
                    self.next_service_id += 1;
                    self.services.insert(
                        id,
                        Box::new(ServiceState {
                            id,
                            limits: ServiceLimits::new(
                                service.max_connections,
                                service.max_per_source,
                                service.rate,
                                now,
                            ),
                            service: service.clone(),
                            plan: new_plan(),
                            namespaces: ns.clone(),
                            counters: Counters::default(),
                            listeners: Vec::new(),
                            paused: None,
                            pre_exec: 0,
                            pacing: Pacing::default(),
                            last_resource_log: None,
                            refusal_log: LogBudget::default(),
                            pending: None,
                            proxied: VecDeque::new(),
                        }),
                    );
                    id
                }
            };
            new_order.push(id);
            for slot in listeners {
                let is_new = slot.kept.is_none();
                let drain = is_new || !settled;
                let (token, udp) = match slot.kept {
                    Some(k) => (k.token, k.udp),
                    None => (self.watch.token(Watched::Listener), None),
                };
                // A kept UDP builtin keeps its server (chargen's rotation).
                let udp = match (service.builtin(), slot.listener.key.socket) {
                    (Some(kind), SocketType::Dgram) => udp
                        .filter(|u| u.kind() == kind)
                        .or_else(|| Some(builtins::UdpServer::new(kind))),
                    _ => None,
                };
                let mut entry = Box::new(ListenerEntry {
                    listener: slot.listener,
                    service_id: id,
                    busy: slot.busy,
                    udp,
                });
                if is_new {
                    if entry.busy {
                        // Held by a wait child (after an upgrade).
                    } else if let Err(e) = self.watch.register(
                        entry.listener.fd.as_raw_fd(),
                        token,
                        Interest::READABLE,
                    ) {
                        error!(
                            "cannot watch service={} addr={} error={}",
                            service.name,
                            quote(&entry.listener.local),
                            quote(&e.to_string())
                        );
                        entry.busy = true;
                    }
                    info!(
                        "listening service={} addr={} socket={}{}",
                        service.name,
                        quote(&entry.listener.local),
                        entry.listener.key.socket,
                        if entry.listener.inherited {
                            " inherited=yes"
                        } else {
                            ""
                        }
                    );
                }
                self.services
                    .get_mut(&id)
                    .expect("just inserted")
                    .listeners
                    .push(token);
                self.listeners.insert(token, entry);
                if drain {
                    to_drain.push(token);
                }
            }
            if !service.enabled {
                info!("disabled service={}", service.name);
            }
        }
        // Services that are gone: their states go (children keep running
        // and are still reaped and logged by name).
        let live: HashSet<ServiceId> = new_order.iter().copied().collect();
        self.services.retain(|id, _| live.contains(id));
        self.order = new_order;
        self.udp_ports = self
            .listeners
            .values()
            .filter(|e| e.udp.is_some())
            .filter_map(|e| e.listener.port)
            .collect();
        self.udp_ports.sort_unstable();
        self.udp_ports.dedup();
        // Every listener that may have connections waiting: the new ones,
        // and those whose service is not settled or changed. A settled,
        // unchanged service's kept listener was drained to the end, or
        // waits on the ready list, and what came since wakes it (at
        // 10,000 services, a drain of each was a fifth of a reload).
        for t in to_drain {
            self.drain_listener(t);
        }
    }

    /// SIGHUP (superd.8, SIGNALS): validate everything first; keep every listening
    /// socket whose key is unchanged; bind new addresses before closing
    /// anything; roll back whole if one cannot be bound.
    pub(super) fn reload(&mut self) {
        self.notifier.reloading();
        info!("reloading");
        let config = match self.source.load() {
            Ok(c) => c,
            Err(errors) => {
                for e in &errors {
                    error!("config error: {e}");
                }
                error!(
                    "reload failed errors={} (the running configuration is unchanged)",
                    errors.len()
                );
                self.reloads_failed += 1;
                self.reload_done();
                return;
            }
        };
        let old: HashMap<String, ServiceId> = self
            .services
            .values()
            .map(|s| (s.service.name.clone(), s.id))
            .collect();
        // Namespaces before sockets: a fence that cannot be set up fails
        // the reload with nothing changed.
        let namespaces = match self.namespaces_for(&config.services, &old) {
            Ok(n) => n,
            Err(e) => {
                error!("reload failed: {e} (the running configuration is unchanged)");
                self.reload_done();
                return;
            }
        };
        // A service this reload leaves unchanged is kept whole: its state
        // and its listeners stay where they are (at 10,000 services,
        // taking every listener through the pool and back was a third of
        // a reload). Only the others' listeners are offered for reuse.
        let kept_whole: Vec<bool> = config
            .services
            .iter()
            .map(|s| {
                old.get(&s.name)
                    .and_then(|id| self.services.get(id))
                    .is_some_and(|st| *st.service == *s)
            })
            .collect();
        let whole_ids: HashSet<ServiceId> = config
            .services
            .iter()
            .zip(&kept_whole)
            .filter(|(_, whole)| **whole)
            .filter_map(|(s, _)| old.get(&s.name).copied())
            .collect();
        // Every other current listener is offered for reuse, by key; it
        // stays registered with mio under its token while it waits in the
        // pool.
        let mut pool: Pool<Kept> = Pool::new();
        // In service order from the last, as `bind_all` finds them best
        // (see `pool::take_from_pool`); then any other.
        let mut listeners: Vec<(Token, Box<ListenerEntry>)> = Vec::new();
        for id in self.order.iter().rev() {
            if whole_ids.contains(id) {
                continue;
            }
            let Some(st) = self.services.get(id) else {
                continue;
            };
            for t in st.listeners.iter().rev() {
                if let Some(e) = self.listeners.remove(t) {
                    listeners.push((*t, e));
                }
            }
        }
        listeners.extend(
            self.listeners
                .extract_if(|_, e| !whole_ids.contains(&e.service_id)),
        );
        for (token, e) in listeners {
            pool.entry(e.listener.key.clone())
                .or_default()
                .push(Slot::old(
                    e.listener,
                    e.service_id,
                    e.busy,
                    Kept { token, udp: e.udp },
                ));
        }
        match pool::bind_all(
            &config.services,
            &kept_whole,
            &mut pool,
            &old,
            &mut HashMap::new(),
        ) {
            Ok(bound) => {
                let n = config.services.len();
                let changes = self.reload_changes(&config.services, &kept_whole, &old);
                // The new listeners (bound above) are logged first, then
                // what is closed: the log tells the order it happened in.
                self.install(config.services, &kept_whole, bound, old, namespaces);
                // What is left in the pool is no longer configured. Its
                // socket file goes too, if its path still names it (a new
                // listener bound at the same path, for a changed socket
                // type, has a file of its own there).
                for (_, slots) in pool.drain() {
                    for mut slot in slots {
                        if !slot.busy {
                            self.watch.deregister(slot.listener.fd.as_raw_fd());
                        }
                        if let Some(kept) = &slot.kept {
                            self.watch.forget(kept.token);
                        }
                        info!("closed addr={}", quote(&slot.listener.local));
                        slot.listener.remove_socket_file();
                    }
                }
                changes.log(n);
                self.reloads_ok += 1;
            }
            Err(e) => {
                error!("reload failed: {e} (rolled back; the running configuration is unchanged)");
                self.reloads_failed += 1;
                for (_, slots) in pool.drain() {
                    for slot in slots {
                        let kept = slot.kept.expect("only old listeners return to the pool");
                        self.listeners.insert(
                            kept.token,
                            Box::new(ListenerEntry {
                                listener: slot.listener,
                                service_id: slot.service_id,
                                busy: slot.busy,
                                udp: kept.udp,
                            }),
                        );
                    }
                }
            }
        }
        self.reload_done();
    }

    /// The end of a reload, whatever became of it: READY=1, then, a load
    /// peaking well above what stays alive (the YAML event list, the new
    /// list of services, the pool of old listeners), all of which is gone
    /// now, that memory given back (after READY=1: the reload is done,
    /// and the trim takes a few milliseconds at 10,000 services).
    fn reload_done(&mut self) {
        self.notifier.notify("READY=1");
        crate::sys::trim_heap();
    }
}

/// Logs the warnings of a service's configuration (`--check` shows them).
pub(super) fn config_warnings(service: &Service) {
    for n in &service.notes {
        if let Some((at, what)) = n.split_once(": warning: ") {
            warn!("config warning {at}: {what}");
        }
    }
}
