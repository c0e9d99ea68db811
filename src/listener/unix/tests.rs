//! Unit tests of unix socket files: mode 0 until set, a swapped file
//! never taken for the socket, staleness probes, removal by inode.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::service::{Address, SocketType};

fn key(path: &Path, socket: SocketType) -> ListenerKey {
    ListenerKey {
        addr: Address::UnixPath(path.to_path_buf()),
        socket,
        backlog: 16,
        reuse_port: false,
        v6only: false,
        socket_mode: 0o640,
        socket_user: None,
        socket_group: None,
    }
}

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("superd-listener-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// Nobody but root can connect or send to a socket file between bind
/// and the moment its mode and owner are set: bind makes it mode 0.
#[test]
fn a_socket_file_is_mode_0_until_its_mode_is_set() {
    let d = temp("closed");
    for t in [SocketType::Stream, SocketType::Dgram, SocketType::Seqpacket] {
        let path = d.join(format!("{t}.sock"));
        let k = key(&path, t);
        let fd = bind_closed(&k, &UnixAddr::new(&path).unwrap()).unwrap();
        assert_eq!(mode(&path), 0, "{t}");
        // The fallback accepts what bind just made...
        let file = open_fresh(&path).unwrap();
        let via = bound_file(fd.as_fd(), &path).unwrap();
        let (a, b) = (
            nix::sys::stat::fstat(file.as_raw_fd()).unwrap(),
            nix::sys::stat::fstat(via.as_raw_fd()).unwrap(),
        );
        assert_eq!((a.st_dev, a.st_ino), (b.st_dev, b.st_ino));
        // ...and the mode is set through the inode.
        sys::chmod_fd(file.as_fd(), 0o620).unwrap();
        assert_eq!(mode(&path), 0o620);
        drop(fd);
        fs::remove_file(&path).unwrap();
    }
    let path = d.join("full.sock");
    let l = Listener::bind(&key(&path, SocketType::Dgram)).unwrap();
    assert_eq!(mode(&path), 0o640);
    drop(l);
    assert!(!path.exists(), "removed with the listener");
    let _ = fs::remove_dir_all(&d);
}

/// What `open_fresh` refuses: anything bind did not just make.
#[test]
fn a_file_swapped_in_after_bind_is_not_taken_for_the_socket() {
    let d = temp("fresh");
    let other = d.join("other.sock");
    let _l = std::os::unix::net::UnixListener::bind(&other).unwrap();
    fs::set_permissions(&other, fs::Permissions::from_mode(0o755)).unwrap();
    assert!(open_fresh(&other).is_err(), "a socket with a mode");
    let link = d.join("link.sock");
    std::os::unix::fs::symlink(&other, &link).unwrap();
    assert!(open_fresh(&link).is_err(), "a symlink");
    let plain = d.join("plain");
    fs::write(&plain, "").unwrap();
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o000)).unwrap();
    assert!(open_fresh(&plain).is_err(), "not a socket");
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn only_a_refused_connection_of_the_same_type_is_stale() {
    let d = temp("probe");
    let path = d.join("p.sock");
    let addr = UnixAddr::new(&path).unwrap();
    let stream = key(&path, SocketType::Stream);
    let dgram = key(&path, SocketType::Dgram);
    {
        let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        // Live, of the same type.
        assert!(probe(&stream, &addr).is_err());
        // Live, of another type: EPROTOTYPE, not stale.
        let e = probe(&dgram, &addr).unwrap_err();
        assert!(e.to_string().contains("another type"), "{e}");
    }
    // Closed: nothing bound to the file.
    assert_eq!(probe(&stream, &addr).unwrap(), Probe::Stale);
    assert_eq!(probe(&dgram, &addr).unwrap(), Probe::Stale);
    fs::remove_file(&path).unwrap();
    assert_eq!(probe(&stream, &addr).unwrap(), Probe::Gone);
    {
        let _l = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        assert!(probe(&dgram, &addr).is_err(), "a live datagram socket");
        assert!(probe(&stream, &addr).is_err(), "of another type");
    }
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn a_socket_file_is_removed_only_while_its_path_names_it() {
    let d = temp("remove");
    let path = d.join("r.sock");
    let mut l = Listener::bind(&key(&path, SocketType::Stream)).unwrap();
    fs::remove_file(&path).unwrap();
    fs::write(&path, "theirs").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    // Its mode is not superd's to change...
    let e = l
        .adjust(&ListenerKey {
            socket_mode: 0o666,
            ..key(&path, SocketType::Stream)
        })
        .unwrap_err();
    assert!(e.to_string().contains("no longer superd's"), "{e}");
    assert_eq!(mode(&path), 0o600);
    // ...nor the file superd's to remove.
    l.remove_socket_file();
    assert_eq!(fs::read_to_string(&path).unwrap(), "theirs");
    let _ = fs::remove_dir_all(&d);
}
