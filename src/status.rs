//! `builtin: status` and `superd status` (superd(8), STATUS): the loop's
//! [`Snapshot`] as one JSON document, and the command that fetches that
//! document from a running superd and prints it for people (or as it came,
//! with `--json`).

use std::io::{self, Read};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::access::Refusal;
use crate::children::Outcome;
use crate::metrics::{ConnectionView, PauseReason, Snapshot};

/// Where `superd status` looks when no address is given.
pub const DEFAULT_ADDRESS: &str = "/run/superd/status.sock";

/// How long `superd status` waits to connect, and for the document.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest document `superd status` reads (a superd with thousands of
/// services and children stays far below).
const MAX_DOCUMENT: u64 = 64 * 1024 * 1024;

/// The document: one JSON object, ending with a newline.
pub fn document(snap: &Snapshot) -> Vec<u8> {
    let services: Vec<Value> = snap
        .services
        .iter()
        .map(|s| {
            let c = &s.counters;
            let refused: Map<String, Value> = Refusal::ALL
                .iter()
                .map(|r| (r.as_str().to_owned(), json!(c.refused_by(*r))))
                .collect();
            let exits: Map<String, Value> = Outcome::ALL
                .iter()
                .map(|o| (o.as_str().to_owned(), json!(c.exits_by(*o))))
                .collect();
            let paused: Map<String, Value> = PauseReason::ALL
                .iter()
                .zip(s.paused_seconds)
                .map(|(r, secs)| (r.as_str().to_owned(), json!(round_ms(secs))))
                .collect();
            json!({
                "name": s.name,
                "addresses": s.listeners.iter().map(|l| &l.address).collect::<Vec<_>>(),
                "socket": s.socket,
                "program": s.program,
                "state": s.state.as_str(),
                "active": s.active,
                "max_connections": s.max_connections,
                "counters": {
                    "accepted": c.accepted,
                    "served": c.served,
                    "refused": refused,
                    "exec_failures": c.exec_failures,
                    "pending": s.pending,
                    "exits": exits,
                    "paused_seconds": paused,
                },
            })
        })
        .collect();
    let conns = |list: &[ConnectionView]| -> Vec<Value> {
        list.iter()
            .map(|c| {
                let mut o = json!({
                    "service": c.service,
                    "peer": c.peer,
                    "age_seconds": round_ms(c.age.as_secs_f64()),
                });
                if let Some(pid) = c.pid {
                    o["pid"] = json!(pid);
                }
                if let Some(proxy) = &c.proxy {
                    o["proxy"] = json!(proxy);
                }
                o
            })
            .collect()
    };
    let doc = json!({
        "version": snap.version,
        "pid": snap.pid,
        "start_time": snap.start_time,
        "reloads": {"ok": snap.reloads_ok, "failed": snap.reloads_failed},
        "log_lines_dropped": snap.log_lines_dropped,
        "services": services,
        "children": conns(&snap.children),
        "sessions": conns(&snap.sessions),
    });
    let mut out = serde_json::to_vec(&doc).expect("a Value always serializes");
    out.push(b'\n');
    out
}

fn round_ms(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

/// `superd status [ADDRESS] [--json]`: fetches the document and prints it;
/// on any failure a one-line reason on stderr and exit 1.
pub fn run(address: &str, raw: bool) -> crate::ExitCode {
    let fail = |what: String| {
        eprintln!("superd status: {what}");
    };
    let bytes = match fetch(address) {
        Ok(b) => b,
        Err(e) => {
            fail(format!("cannot read the status from {address}: {e}"));
            return crate::ExitCode::Failure;
        }
    };
    let doc: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            fail(format!(
                "{address} did not answer with a status document: {e}"
            ));
            return crate::ExitCode::Failure;
        }
    };
    if raw {
        print!("{}", String::from_utf8_lossy(&bytes));
        if bytes.last() != Some(&b'\n') {
            println!();
        }
    } else {
        print!("{}", table(&doc));
    }
    crate::ExitCode::Ok
}

/// Connects to `address` (a unix socket path: anything with a slash;
/// `@name` for an abstract one; else host:port) and reads until the peer
/// closes.
fn fetch(address: &str) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    if address.contains('/') {
        let s = UnixStream::connect(Path::new(address))?;
        s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        s.take(MAX_DOCUMENT).read_to_end(&mut out)?;
    } else if let Some(name) = address.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        let s = UnixStream::connect_addr(&addr)?;
        s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        s.take(MAX_DOCUMENT).read_to_end(&mut out)?;
    } else {
        let addrs: Vec<_> = address.to_socket_addrs()?.collect();
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address");
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, CLIENT_TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let s = stream.ok_or(last)?;
        s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        s.take(MAX_DOCUMENT).read_to_end(&mut out)?;
    }
    if out.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection closed without a document (refused by only_from, deny_from or a limit?)",
        ));
    }
    Ok(out)
}

/// The document as tables for people: services, then live connections.
pub fn table(doc: &Value) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        v => v.to_string(),
    };
    let num = |v: &Value| v.as_u64().unwrap_or(0);
    let mut out = String::new();
    out.push_str(&format!(
        "superd {} pid {}\n\n",
        text(&doc["version"]),
        text(&doc["pid"])
    ));
    let mut rows = vec![
        [
            "SERVICE",
            "STATE",
            "ACTIVE",
            "ACCEPTED",
            "SERVED",
            "REFUSED",
            "FAILED",
            "PENDING",
            "ADDRESSES",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for s in doc["services"].as_array().into_iter().flatten() {
        let c = &s["counters"];
        let refused: u64 = c["refused"]
            .as_object()
            .map_or(0, |m| m.values().map(num).sum());
        let addrs: Vec<String> = s["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect();
        rows.push(vec![
            text(&s["name"]),
            text(&s["state"]),
            num(&s["active"]).to_string(),
            num(&c["accepted"]).to_string(),
            num(&c["served"]).to_string(),
            refused.to_string(),
            num(&c["exec_failures"]).to_string(),
            num(&c["pending"]).to_string(),
            if addrs.is_empty() {
                "-".to_owned()
            } else {
                addrs.join(",")
            },
        ]);
    }
    out.push_str(&columns(&rows));
    let mut conns = vec![
        ["KIND", "SERVICE", "PID", "PEER", "AGE"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for (kind, list) in [("child", &doc["children"]), ("session", &doc["sessions"])] {
        for c in list.as_array().into_iter().flatten() {
            conns.push(vec![
                kind.to_owned(),
                text(&c["service"]),
                c.get("pid").map_or("-".to_owned(), text),
                text(&c["peer"]),
                format!("{:.1}s", c["age_seconds"].as_f64().unwrap_or(0.0)),
            ]);
        }
    }
    out.push('\n');
    if conns.len() == 1 {
        out.push_str("no live connections\n");
    } else {
        out.push_str(&columns(&conns));
    }
    out
}

/// Left-aligned columns, two spaces apart, the last one unpadded.
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Counters, ListenerView, ProcessView, ServiceState, ServiceView};

    fn snapshot() -> Snapshot {
        let mut c = Counters {
            accepted: 5,
            served: 3,
            ..Counters::default()
        };
        c.refuse(Refusal::DenyFrom);
        c.exec_failures = 1;
        Snapshot {
            version: "0.1.0",
            pid: 42,
            start_time: 1.0,
            reloads_ok: 0,
            reloads_failed: 0,
            log_lines_dropped: 0,
            services: vec![ServiceView {
                name: "hello".into(),
                socket: "stream",
                program: "/bin/cat".into(),
                listeners: vec![ListenerView {
                    address: "127.0.0.1:7000".into(),
                    queue: Some(0),
                }],
                state: ServiceState::Listening,
                active: 1,
                max_connections: 256,
                pending: 0,
                counters: c,
                paused_seconds: [0.0; 4],
            }],
            children: vec![ConnectionView {
                service: "hello".into(),
                pid: Some(4242),
                peer: Some("127.0.0.1:5000".into()),
                proxy: None,
                age: Duration::from_millis(1500),
            }],
            sessions: Vec::new(),
            process: ProcessView::default(),
        }
    }

    #[test]
    fn the_document_is_one_line_of_json_with_the_counters() {
        let doc = document(&snapshot());
        assert_eq!(doc.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: Value = serde_json::from_slice(&doc).unwrap();
        let s = &v["services"][0];
        assert_eq!(s["name"], "hello");
        assert_eq!(s["state"], "listening");
        assert_eq!(s["addresses"][0], "127.0.0.1:7000");
        assert_eq!(s["counters"]["refused"]["deny_from"], 1);
        assert_eq!(s["counters"]["refused"]["max_per_source"], 0);
        assert_eq!(s["counters"]["exits"]["timeout"], 0);
        assert_eq!(v["children"][0]["pid"], 4242);
        assert_eq!(v["children"][0]["age_seconds"], 1.5);
    }

    #[test]
    fn the_table_shows_services_and_children() {
        let doc: Value = serde_json::from_slice(&document(&snapshot())).unwrap();
        let t = table(&doc);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[2].starts_with("SERVICE  STATE"), "{t}");
        assert!(
            lines[3].split_whitespace().collect::<Vec<_>>()
                == [
                    "hello",
                    "listening",
                    "1",
                    "5",
                    "3",
                    "1",
                    "1",
                    "0",
                    "127.0.0.1:7000"
                ],
            "{t}"
        );
        assert!(
            t.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["child", "hello", "4242", "127.0.0.1:5000", "1.5s"]),
            "{t}"
        );
    }
}
