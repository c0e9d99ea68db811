//! Everything a child needs, built before `fork`. STUB: replaced by the spawn helper.

use std::net::SocketAddr;

use crate::service::Service;

/// What the connection tells the child through its environment.
#[derive(Clone, Copy, Debug)]
pub enum ConnInfo {
    /// TCP; addresses already canonical (IPv4-mapped shown as IPv4).
    Tcp {
        remote: SocketAddr,
        local: SocketAddr,
    },
    /// A unix stream/seqpacket peer, from SO_PEERCRED.
    Unix { pid: i32, uid: u32, gid: u32 },
    /// wait mode, or a datagram socket: no connection variables.
    None,
}

/// A service's spawn template.
#[derive(Debug)]
pub struct SpawnPlan {}

impl SpawnPlan {
    pub fn new(_service: &Service) -> SpawnPlan {
        SpawnPlan {}
    }
}
