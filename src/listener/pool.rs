//! Listener reuse on a reload, matched by key as OpenBSD inetd's
//! `matchconf` does: a socket whose key is unchanged stays open, one whose
//! changeable options differ is adjusted in place once the whole reload
//! has bound, and a failed bind rolls everything back (superd.8, SIGNALS).

use std::collections::HashMap;
use std::io;

use log::{error, warn};

use super::Listener;
use crate::error::Error;
use crate::logging::quote;
use crate::service::ServiceId;
use crate::service::{ListenerKey, Service};

/// A listening socket between the loop and a (re)configuration: an old one
/// keeps what the loop kept with it (`kept`: its token and registration);
/// a new one has nothing kept yet.
#[derive(Debug)]
pub struct Slot<T> {
    /// The service that had it before the reload (0: none yet).
    pub service_id: ServiceId,
    /// Held by a `wait` child: not watched until it exits.
    pub busy: bool,
    pub listener: Listener,
    /// What the loop kept with an old listener; `None` for a new one.
    pub kept: Option<T>,
    /// The key an old socket takes once the whole reload has bound (its
    /// backlog, socket file mode and owner change then, so that a reload
    /// rolled back leaves them as they were).
    adjust: Option<ListenerKey>,
}

impl<T> Slot<T> {
    /// A listener the loop has not had before (bound now, or inherited).
    pub fn new(listener: Listener) -> Slot<T> {
        Slot {
            service_id: ServiceId(0),
            busy: false,
            listener,
            kept: None,
            adjust: None,
        }
    }

    /// A running listener offered for reuse by `service_id`.
    pub fn old(listener: Listener, service_id: ServiceId, busy: bool, kept: T) -> Slot<T> {
        Slot {
            service_id,
            busy,
            listener,
            kept: Some(kept),
            adjust: None,
        }
    }
}

/// The running listeners offered for reuse on a reload, by key.
pub type Pool<T> = HashMap<ListenerKey, Vec<Slot<T>>>;

/// Takes the listener for `key` out of the pool for the service that had
/// the id `owner` before the reload (`None`: a new service): the same key,
/// or a socket that was configured with port 0 and got exactly the port
/// `key` names (an admin who pins the port the kernel chose keeps the
/// socket). A service gets its own socket back first; a port-0 socket
/// goes to no other service, since port 0 names no socket in particular
/// (several services on `127.0.0.1:0` have the same key, and each keeps
/// the port it was given).
fn take_from_pool<T>(
    pool: &mut Pool<T>,
    key: &ListenerKey,
    owner: Option<ServiceId>,
) -> Option<Slot<T>> {
    let any_port = key.addr.port() == Some(0);
    let mine = |s: &Slot<T>| Some(s.service_id) == owner;
    if let Some(slots) = pool.get_mut(key) {
        // From the end: `bind_all` goes through the services in order, and
        // a pool filled in service order from the last (as a reload fills
        // it) has each one's socket last (10,000 services on `127.0.0.1:0`
        // share one key: a scan from the front is quadratic).
        if let Some(i) = slots.iter().rposition(mine) {
            return Some(slots.swap_remove(i));
        }
        if !any_port && let Some(slot) = slots.pop() {
            return Some(slot);
        }
    }
    // The same address with other options that an open socket can take
    // (backlog, socket file mode and owner): adjust it in place, once the
    // reload is known to succeed (bind_all), rather than fail to bind the
    // address a second time.
    let same_addr = |k: &ListenerKey, s: &Slot<T>| {
        k.addr == key.addr && (!any_port || mine(s))
            || key.addr.port().is_some_and(|p| p != 0)
                && key.addr.with_port(0).as_ref() == Some(&k.addr)
                && s.listener.port == key.addr.port()
                && mine(s)
    };
    let found = pool.iter().find_map(|(k, slots)| {
        slots
            .iter()
            .position(|s| same_addr(k, s) && s.listener.can_adjust_to(key))
            .map(|i| (k.clone(), i))
    });
    let (k, i) = found?;
    let slots = pool.get_mut(&k)?;
    let mut slot = slots.swap_remove(i);
    slot.adjust = Some(key.clone());
    Some(slot)
}

/// Binds a listener for every address of every enabled service, taking an
/// existing one from `pool` when its key matches (reload). A service whose
/// `kept_whole` entry is true keeps the listeners it runs with (a reload
/// that left it unchanged): it gets none here, and its sockets are not in
/// `pool`. All or nothing: on failure, listeners bound here are closed
/// (their socket files removed) and those taken from the pool are put
/// back.
pub fn bind_all<T>(
    services: &[Service],
    kept_whole: &[bool],
    pool: &mut Pool<T>,
    old: &HashMap<String, ServiceId>,
    inherited: &mut HashMap<(usize, usize), Listener>,
) -> Result<Vec<Vec<Slot<T>>>, Error> {
    let mut out: Vec<Vec<Slot<T>>> = Vec::with_capacity(services.len());
    let mut failure = None;
    'outer: for (si, s) in services.iter().enumerate() {
        let mut slots = Vec::new();
        if s.enabled && !kept_whole.get(si).copied().unwrap_or(false) {
            for i in 0..s.listen.len() {
                if let Some(listener) = inherited.remove(&(si, i)) {
                    slots.push(Slot::new(listener));
                    continue;
                }
                let key = s.listener_key_at(i);
                if let Some(slot) = take_from_pool(pool, &key, old.get(&s.name).copied()) {
                    slots.push(slot);
                    continue;
                }
                // A socket file of ours at this path, whose socket cannot
                // take the new key (another socket type): moved aside
                // until the reload is known to succeed, and put back if it
                // is rolled back.
                if let crate::service::Address::UnixPath(path) = &key.addr
                    && let Some(old) = pool.values_mut().flatten().find(|slot| {
                        slot.listener
                            .socket_file
                            .as_ref()
                            .is_some_and(|f| f.path == *path)
                    })
                    && let Err(e) = old.listener.stash_socket_file()
                {
                    failure = Some(Error::Bind {
                        service: s.name.clone(),
                        reason: format!(
                            "cannot move the old socket file {} aside: {e}",
                            path.display()
                        ),
                    });
                    out.push(slots);
                    break 'outer;
                }
                match Listener::bind(&key) {
                    Ok(listener) => slots.push(Slot::new(listener)),
                    Err(e) => {
                        // The address is ours already, with options a
                        // socket cannot change once bound; or one of ours
                        // on the same port overlaps it (a wildcard and a
                        // specific address), and ours stays bound until
                        // the reload has bound everything new.
                        let in_use = e.error.kind() == io::ErrorKind::AddrInUse;
                        let held = in_use && pool.keys().any(|k| k.addr == key.addr);
                        let overlaps = in_use
                            && pool.iter().any(|(k, slots)| {
                                k.socket == key.socket
                                    && slots.iter().any(|s| {
                                        // The port actually bound (the key
                                        // may say 0).
                                        let bound =
                                            s.listener.port.and_then(|p| k.addr.with_port(p));
                                        bound
                                            .as_ref()
                                            .unwrap_or(&k.addr)
                                            .conflicts_with(k.v6only, &key.addr, key.v6only)
                                    })
                            });
                        let hint = if held {
                            " (v6only and reuse_port cannot change on a reload: restart superd)"
                        } else if overlaps {
                            " (an address this reload replaces holds that port: moving between a wildcard and a specific address on one port needs a restart of superd)"
                        } else {
                            ""
                        };
                        failure = Some(Error::Bind {
                            service: s.name.clone(),
                            reason: format!("{e}{hint}"),
                        });
                        out.push(slots);
                        break 'outer;
                    }
                }
            }
        }
        out.push(slots);
    }
    let Some(f) = failure else {
        // Everything is bound: the old sockets kept take their new options.
        for slot in out.iter_mut().flatten() {
            if let Some(key) = slot.adjust.take()
                && let Err(e) = slot.listener.adjust(&key)
            {
                warn!(
                    "cannot change socket options addr={} error={}",
                    quote(&slot.listener.local),
                    quote(&e.to_string())
                );
            }
        }
        return Ok(out);
    };
    // Roll back: old listeners go back to the pool, as they were; new ones
    // are dropped, which closes them and removes their socket files; then
    // socket files moved aside for them go back to their paths.
    for mut slot in out.into_iter().flatten() {
        if slot.kept.is_some() {
            slot.adjust = None;
            pool.entry(slot.listener.key.clone())
                .or_default()
                .push(slot);
        }
    }
    for slot in pool.values_mut().flatten() {
        if let Err(e) = slot.listener.restore_socket_file() {
            error!(
                "cannot put the socket file back addr={} error={}",
                quote(&slot.listener.local),
                quote(&e.to_string())
            );
        }
    }
    Err(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{Address, Builtin, Program};
    use std::net::SocketAddr;

    fn service(name: &str, listen: &[&str]) -> Service {
        let mut s = Service::new(
            name.into(),
            "test.yaml".into(),
            Program::Builtin(Builtin::Echo),
        );
        s.listen = listen
            .iter()
            .map(|a| Address::Inet(a.parse::<SocketAddr>().unwrap()))
            .collect();
        s
    }

    /// The running listeners of `services` as a reload offers them, each
    /// kept with its service id (1, 2, ...).
    fn running(services: &[Service]) -> (Pool<u64>, HashMap<String, ServiceId>) {
        let bound = bind_all::<u64>(
            services,
            &[],
            &mut Pool::new(),
            &HashMap::new(),
            &mut HashMap::new(),
        )
        .unwrap();
        let mut pool = Pool::new();
        let mut ids = HashMap::new();
        for (i, (s, slots)) in services.iter().zip(bound).enumerate() {
            let id = i as u64 + 1;
            ids.insert(s.name.clone(), ServiceId(id));
            for slot in slots {
                pool.entry(slot.listener.key.clone())
                    .or_default()
                    .push(Slot::old(slot.listener, ServiceId(id), false, id));
            }
        }
        (pool, ids)
    }

    fn port(slot: &Slot<u64>) -> u16 {
        slot.listener.port.unwrap()
    }

    /// Two services on `127.0.0.1:0` have the same key: each gets its own
    /// socket (and port) back, whatever order the reload lists them in.
    #[test]
    fn a_port_0_socket_goes_back_to_its_own_service() {
        let old = [
            service("a", &["127.0.0.1:0"]),
            service("b", &["127.0.0.1:0"]),
        ];
        let (mut pool, ids) = running(&old);
        let ports: HashMap<u64, u16> = pool
            .values()
            .flatten()
            .map(|s| (s.service_id.0, port(s)))
            .collect();
        let new = [
            service("b", &["127.0.0.1:0"]),
            service("a", &["127.0.0.1:0"]),
        ];
        let bound = bind_all(&new, &[], &mut pool, &ids, &mut HashMap::new()).unwrap();
        assert_eq!(bound[0][0].kept, Some(2));
        assert_eq!(port(&bound[0][0]), ports[&2]);
        assert_eq!(bound[1][0].kept, Some(1));
        assert_eq!(port(&bound[1][0]), ports[&1]);
        assert!(pool.values().all(Vec::is_empty));
    }

    /// A new service on `127.0.0.1:0` does not take another's socket: port
    /// 0 names no socket in particular. A specific port, configured the
    /// same, is the same socket for any service.
    #[test]
    fn a_port_0_socket_goes_to_no_other_service() {
        let old = [service("a", &["127.0.0.1:0"])];
        let (mut pool, ids) = running(&old);
        let new = [service("c", &["127.0.0.1:0"])];
        let bound = bind_all(&new, &[], &mut pool, &ids, &mut HashMap::new()).unwrap();
        assert_eq!(bound[0][0].kept, None, "bound anew");
        assert_eq!(pool.values().flatten().count(), 1, "a's socket is left");
    }

    /// An admin who pins the port the kernel chose keeps the socket; a
    /// backlog changed on it is adjusted in place, not bound again.
    #[test]
    fn pinning_the_chosen_port_keeps_the_socket() {
        let old = [service("a", &["127.0.0.1:0"])];
        let (mut pool, ids) = running(&old);
        let p = port(pool.values().flatten().next().unwrap());
        let mut new = [service("a", &[&format!("127.0.0.1:{p}")])];
        new[0].backlog = 7;
        let mut bound = bind_all(&new, &[], &mut pool, &ids, &mut HashMap::new()).unwrap();
        let slot = bound[0].pop().unwrap();
        assert_eq!(slot.kept, Some(1));
        assert_eq!(slot.listener.key.backlog, 7);
        assert!(slot.adjust.is_none(), "adjusted once all was bound");
    }

    /// One address that cannot be bound rolls the whole reload back: the
    /// old sockets return to the pool as they were, the new ones close.
    #[test]
    fn a_failed_bind_puts_every_old_socket_back() {
        let old = [service("a", &["127.0.0.1:0"])];
        let (mut pool, ids) = running(&old);
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = taken.local_addr().unwrap().to_string();
        let new = [
            service("a", &["127.0.0.1:0"]),
            service("n", &["127.0.0.1:0"]),
            service("z", &[&busy]),
        ];
        let e = bind_all(&new, &[], &mut pool, &ids, &mut HashMap::new()).unwrap_err();
        assert!(e.to_string().starts_with("service z: "), "{e}");
        let back: Vec<Option<u64>> = pool.values().flatten().map(|s| s.kept).collect();
        assert_eq!(back, [Some(1)]);
    }
}
