//! peername — a Rust stdio service that asks the kernel who is on the other
//! end of fd 0, the way an inetd program always could: `getpeername(0)`.
//! It prints that and superd's `REMOTE_ADDR`/`REMOTE_PORT` for comparison.
//!
//! Build: cargo build --example peername
//!        (the binary is target/debug/examples/peername)
//! Run:   superd examples/peername.yaml
//!    or: superd --listen 127.0.0.1:7103 -- target/debug/examples/peername
//!        (as root add --set user=nobody)
//! Try:   nc 127.0.0.1 7103
//!
//! std and libc only.

use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;

fn peer_of_stdin() -> std::io::Result<Option<SocketAddr>> {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getpeername(2) writes at most `len` bytes into `ss`.
    let r = unsafe { libc::getpeername(0, (&raw mut ss).cast(), &mut len) };
    if r == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: libc::sockaddr_in = unsafe { *(&raw const ss).cast() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: libc::sockaddr_in6 = unsafe { *(&raw const ss).cast() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            // An IPv4 client of a dual-stack socket is shown as plain IPv4.
            let ip = ip
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(ip), Into::into);
            Some(SocketAddr::new(ip, u16::from_be(sin6.sin6_port)))
        }
        _ => None,
    })
}

fn main() -> ExitCode {
    match peer_of_stdin() {
        Ok(Some(peer)) => println!("getpeername(0): {peer}"),
        Ok(None) => println!("getpeername(0): not an IP socket"),
        Err(e) => {
            eprintln!("peername: getpeername(0): {e} (run me under superd)");
            return ExitCode::FAILURE;
        }
    }
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| "-".into());
    println!(
        "REMOTE_ADDR={} REMOTE_PORT={}",
        env("REMOTE_ADDR"),
        env("REMOTE_PORT")
    );
    ExitCode::SUCCESS
}
