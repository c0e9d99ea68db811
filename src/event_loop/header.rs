//! PROXY protocol headers (superd.yaml(5), PROXY PROTOCOL): a connection
//! of a `proxy_protocol` service waits, holding a max_connections slot,
//! until its header is read, refused, or `proxy_timeout` passes.

use std::os::fd::{AsFd, AsRawFd};
use std::time::Instant;

use log::{debug, warn};
use mio::{Interest, Token};
use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags};

use crate::access::Refusal;
use crate::listener::{self, Accepted, Peer};
use crate::logging::quote;
use crate::proxy;

use super::Daemon;
use super::timers::Timer;
use super::watch::Watched;
use crate::service::ServiceId;

/// A connection of a `proxy_protocol` service waiting for its PROXY
/// header (superd.yaml(5), PROXY PROTOCOL). Its peer is the proxy; it
/// holds a max_connections slot, and no per-source slot (the proxy is not
/// a source).
pub(super) struct HeaderWait {
    pub(super) conn: Accepted,
    pub(super) service_id: ServiceId,
    pub(super) accept: proxy::Accept,
    /// Registered with the poll: the first read found no complete header.
    pub(super) watched: bool,
}

/// What one look at a connection's first bytes found.
pub(super) enum HeaderRead {
    /// Not all there yet: wait for more (or for `proxy_timeout`).
    Wait,
    /// The header, read off the socket up to its last byte and no further.
    Read(Box<proxy::Header>),
    /// Refused, `reason=proxy_header`: why, for the log line.
    Refuse(String),
}

impl Daemon {
    /// A connection accepted by a `proxy_protocol` service (superd.yaml(5),
    /// PROXY PROTOCOL): refused at once from outside `proxy_from`, else
    /// held, with a max_connections slot, until its header is read
    /// (`read_header`) or `proxy_timeout` passes. Returns the connection
    /// to start now when its header was already there.
    pub(super) fn wait_header(
        &mut self,
        sid: ServiceId,
        conn: Accepted,
    ) -> Option<(ServiceId, Accepted)> {
        let st = self.services.get_mut(&sid).expect("live");
        let p = st.service.proxy.as_ref()?;
        if !conn.peer.ip().is_some_and(|ip| p.trusts(ip)) {
            st.counters.refuse(Refusal::ProxyFrom);
            warn!(
                "refused service={} peer={} reason={}",
                st.service.name,
                conn.peer,
                Refusal::ProxyFrom.as_str()
            );
            self.close_after_log(conn.fd);
            return None;
        }
        let accept = p.accept;
        st.limits.connection_started();
        let token = self.watch.token(Watched::Header);
        self.headers.insert(
            token,
            HeaderWait {
                conn,
                service_id: sid,
                accept,
                watched: false,
            },
        );
        // A proxy writes the header as soon as it connects: it is most
        // often here already, and the connection goes on without a poll.
        self.read_header(token)
    }

    /// Looks at the first bytes of a connection waiting for its header:
    /// goes on with the client once it is read, refuses a bad one, or
    /// waits for more (watched, under `proxy_timeout`). mio is
    /// edge-triggered and a peek consumes nothing: each arrival of bytes
    /// is a new edge, and a peer that sends part of a header and then
    /// nothing is ended by the timer.
    pub(super) fn read_header(&mut self, token: Token) -> Option<(ServiceId, Accepted)> {
        let w = self.headers.get_mut(&token)?;
        match peek_header(w.conn.fd.as_fd(), w.accept) {
            HeaderRead::Wait => {
                if w.watched {
                    return None;
                }
                w.watched = true;
                let sid = w.service_id;
                let registered =
                    self.watch
                        .register(w.conn.fd.as_raw_fd(), token, Interest::READABLE);
                if let Err(e) = registered {
                    self.refuse_header(token, &format!("cannot watch: {e}"));
                    return None;
                }
                let timeout = self
                    .services
                    .get(&sid)
                    .and_then(|st| st.service.proxy.as_ref())
                    .map_or(crate::service::ProxyConfig::DEFAULT_TIMEOUT, |p| p.timeout);
                self.timer(Instant::now() + timeout, Timer::ProxyHeader(token));
                None
            }
            HeaderRead::Refuse(why) => {
                self.refuse_header(token, &why);
                None
            }
            HeaderRead::Read(header) => {
                let w = self.headers.remove(&token).expect("present");
                self.watch.forget(token);
                if w.watched {
                    // Its builtin session or child registers it anew.
                    self.watch.deregister(w.conn.fd.as_raw_fd());
                }
                self.header_read(w, &header)
            }
        }
    }

    /// The header of `w` is read: the connection is the client's from now
    /// on (`peer` the client, `local` the address it connected to), for
    /// the access rules, `max_per_source`, the logs and the child.
    /// The connection to start now, if any: the router starts it.
    pub(super) fn header_read(
        &mut self,
        w: HeaderWait,
        header: &proxy::Header,
    ) -> Option<(ServiceId, Accepted)> {
        let sid = w.service_id;
        let mut conn = w.conn;
        let Peer::Inet(proxy_addr) = conn.peer else {
            // Refused at load: a unix socket service reads no header.
            self.connection_ended(sid, None);
            return None;
        };
        let local = conn
            .local
            .or_else(|| listener::local_inet(conn.fd.as_fd()))
            .unwrap_or(proxy_addr);
        let (remote, local) = header.connection(proxy_addr, local);
        conn.peer = Peer::Inet(remote);
        conn.local = Some(local);
        conn.proxy = Some(Box::new(proxy::Relayed {
            proxy: proxy_addr,
            vars: header.proxy_vars(proxy_addr),
        }));
        let Some(st) = self.services.get(&sid) else {
            // The service is gone (a reload): so is the connection.
            return None;
        };
        debug!(
            "proxy header service={} peer={} proxy={proxy_addr}",
            st.service.name, conn.peer
        );
        if !self.admit(sid, &conn) {
            self.close_after_log(conn.fd);
            self.connection_ended(sid, None);
            return None;
        }
        let st = self.services.get_mut(&sid).expect("live");
        if st.gated() {
            // It keeps its slot and starts when the service may start one
            // (drain_listener), in order.
            st.proxied.push_back(conn);
            return None;
        }
        // The slot it held is the one its session or child takes.
        st.limits.connection_ended(None);
        Some((sid, conn))
    }

    /// Ends a connection waiting for its header: `refused … reason=
    /// proxy_header`, closed, its slot released.
    pub(super) fn refuse_header(&mut self, token: Token, why: &str) {
        let Some(w) = self.headers.remove(&token) else {
            return;
        };
        self.watch.forget(token);
        if let Some(st) = self.services.get_mut(&w.service_id) {
            st.counters.refuse(Refusal::ProxyHeader);
            warn!(
                "refused service={} peer={} reason={} error={}",
                st.service.name,
                w.conn.peer,
                Refusal::ProxyHeader.as_str(),
                quote(why)
            );
        }
        self.close_after_log(w.conn.fd);
        self.connection_ended(w.service_id, None);
    }
}

/// Peeks at the start of a connection (up to the most a header of
/// `accept` may take: 107 bytes for v1, 4096 otherwise) and parses it;
/// when a header is complete, reads exactly its bytes off the socket and
/// no more, so the program's first read is the client's first byte.
pub(super) fn peek_header(fd: std::os::fd::BorrowedFd<'_>, accept: proxy::Accept) -> HeaderRead {
    let cap = match accept {
        proxy::Accept::V1 => proxy::V1_MAX,
        proxy::Accept::V2 | proxy::Accept::Any => proxy::V2_MAX,
    };
    let mut buf = [0u8; proxy::V2_MAX];
    let peek = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
    let n = loop {
        match socket::recv(fd.as_raw_fd(), &mut buf[..cap], peek) {
            Ok(0) => return HeaderRead::Refuse("closed before a complete header".into()),
            Ok(n) => break n,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return HeaderRead::Wait,
            Err(e) => return HeaderRead::Refuse(e.desc().into()),
        }
    };
    let (header_len, header) = match proxy::parse(&buf[..n], accept) {
        proxy::Parse::Complete { header_len, header } => (header_len, header),
        proxy::Parse::Invalid(why) => return HeaderRead::Refuse(why.to_string()),
        // Every header fits the cap (the parser refuses longer ones): a
        // full buffer that is still incomplete is not one.
        proxy::Parse::Incomplete { .. } if n == cap => {
            return HeaderRead::Refuse("longer than a PROXY header".into());
        }
        // A peek returns what is queued even after the peer's FIN, so the
        // edge that reported a close looks like one without new bytes: a
        // peer that has stopped sending is asked about (one more call,
        // only for a header that is not all there).
        proxy::Parse::Incomplete { .. } if crate::sys::peer_shut_down(fd) => {
            return HeaderRead::Refuse("closed before a complete header".into());
        }
        proxy::Parse::Incomplete { .. } => return HeaderRead::Wait,
    };
    // The bytes are queued (just peeked): one read takes them, never more.
    let mut got = 0;
    while got < header_len {
        match socket::recv(
            fd.as_raw_fd(),
            &mut buf[got..header_len],
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(0) => return HeaderRead::Refuse("closed before a complete header".into()),
            Ok(k) => got += k,
            Err(Errno::EINTR) => continue,
            Err(e) => return HeaderRead::Refuse(e.desc().into()),
        }
    }
    HeaderRead::Read(header)
}
