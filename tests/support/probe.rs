//! A test program that reports, as `key=value` lines on stdout, what a legacy
//! inetd program would check about its process: fds, signals, session, ids,
//! environment, limits, umask, cwd, nice and peer. `probe stderr` first writes
//! a line to stderr; `probe accept` (wait mode) accepts on fd 0 and reports there;
//! `probe euid` prints only its effective uid. The `PROBE_*` variables ask
//! for tests of the fences from inside (see `fences`).
//! `probe listen` (pass: listen_fds, wait mode) waits for the first of fds
//! 3 … 3+LISTEN_FDS-1 to be readable and answers there (an accepted
//! connection, or the datagram's sender); `probe fd3` (pass: listen_fds,
//! nowait) reports on fd 3. Every fd above 2 is described (`fdinfo.N=`).

// `no_main`: Rust's runtime start-up ignores SIGPIPE and installs SIGSEGV/SIGBUS
// handlers; skipping it lets the probe report the state it was exec'd with.
#![no_main]

use std::ffi::{c_char, c_int};
use std::fmt::Write as _;
use std::mem;

#[unsafe(no_mangle)]
pub extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let mut out_fd = 1;
    match mode.as_str() {
        "stderr" => write_all(2, b"probe-stderr: hello\nprobe-stderr: second line\n"),
        "accept" => {
            // SAFETY: accept(2) on fd 0 without an address buffer.
            let fd = unsafe { libc::accept(0, std::ptr::null_mut(), std::ptr::null_mut()) };
            if fd == -1 {
                return 3;
            }
            out_fd = fd;
        }
        "udp" => return udp(),
        "euid" => {
            // SAFETY: geteuid(2) takes no pointer.
            let euid = unsafe { libc::geteuid() };
            write_all(1, format!("{euid}\n").as_bytes());
            return 0;
        }
        "listen" => return listen(),
        "fd3" => out_fd = 3,
        _ => {}
    }
    let report = report();
    write_all(out_fd, report.as_bytes());
    0
}

fn write_all(fd: c_int, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: write(2) from a live buffer.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n <= 0 {
            return;
        }
        buf = &buf[n as usize..];
    }
}

fn report() -> String {
    let mut r = String::new();
    // SAFETY: getpid/getsid/getpgid(2) on this process take no pointers.
    let (pid, sid, pgid) = unsafe { (libc::getpid(), libc::getsid(0), libc::getpgid(0)) };
    let _ = writeln!(r, "pid={pid}");
    let _ = writeln!(r, "sid={sid}");
    let _ = writeln!(r, "pgid={pgid}");

    // Open fds, without the one read_dir itself uses.
    let mut fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|fd: &i32| {
                    let link = std::fs::read_link(format!("/proc/self/fd/{fd}"));
                    !matches!(&link, Ok(p) if p.starts_with("/proc/") && p.ends_with("fd"))
                        && link.is_ok()
                })
                .collect()
        })
        .unwrap_or_default();
    fds.sort();
    let list: Vec<String> = fds.iter().map(|f| f.to_string()).collect();
    let _ = writeln!(r, "fds={}", list.join(","));
    for &fd in fds.iter().filter(|&&fd| fd > 2) {
        let _ = writeln!(r, "fdinfo.{fd}={}", fdinfo(fd));
    }

    let mut ids = Vec::new();
    for fd in 0..3 {
        // SAFETY: fcntl(2) F_GETFL takes no pointer; a closed fd gives -1.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        let nonblock = flags != -1 && flags & libc::O_NONBLOCK != 0;
        let _ = writeln!(r, "nonblock.{fd}={}", nonblock as u8);
        // SAFETY: `stat` is plain data; all-zero is a valid value.
        let mut st: libc::stat = unsafe { mem::zeroed() };
        // SAFETY: fstat(2) writes into the local `st`.
        let ret = unsafe { libc::fstat(fd, &mut st) };
        let kind = if ret == -1 {
            "closed"
        } else {
            match st.st_mode & libc::S_IFMT {
                libc::S_IFSOCK => "sock",
                libc::S_IFCHR => "chr",
                libc::S_IFIFO => "fifo",
                libc::S_IFREG => "reg",
                _ => "other",
            }
        };
        let _ = writeln!(r, "kind.{fd}={kind}");
        ids.push((kind, st.st_dev, st.st_ino));
    }
    let same = ids[0].0 == "sock" && ids.iter().all(|i| *i == ids[0]);
    let _ = writeln!(r, "same_socket_012={}", same as u8);
    let _ = writeln!(
        r,
        "same_socket_01={}",
        (ids[0].0 == "sock" && ids[0] == ids[1]) as u8
    );

    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for line in status.lines() {
        if let Some((k, v)) = line.split_once(':') {
            let key = match k {
                "SigBlk" => "sigblk",
                "SigIgn" => "sigign",
                "SigCgt" => "sigcgt",
                "Umask" => "umask",
                "Uid" => "status.uid",
                "Gid" => "status.gid",
                "Groups" => "status.groups",
                "NoNewPrivs" => "status.nonewprivs",
                "CapPrm" => "status.capprm",
                "CapEff" => "status.capeff",
                "CapAmb" => "status.capamb",
                _ => continue,
            };
            let v: Vec<&str> = v.split_whitespace().collect();
            let _ = writeln!(r, "{key}={}", v.join(" "));
        }
    }

    // SAFETY: id getters take no pointers; getgroups(2) writes at most
    // `groups.len()` entries into the local array; errno is this thread's.
    unsafe {
        let _ = writeln!(r, "uid={}", libc::getuid());
        let _ = writeln!(r, "euid={}", libc::geteuid());
        let _ = writeln!(r, "gid={}", libc::getgid());
        let _ = writeln!(r, "egid={}", libc::getegid());
        let mut groups = [0 as libc::gid_t; 256];
        let n = libc::getgroups(groups.len() as c_int, groups.as_mut_ptr());
        let list: Vec<String> = groups[..n.max(0) as usize]
            .iter()
            .map(|g| g.to_string())
            .collect();
        let _ = writeln!(r, "groups={}", list.join(","));
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
        let _ = writeln!(r, "nice={nice}");
    }

    let cwd = std::env::current_dir().map(|p| p.display().to_string());
    let _ = writeln!(r, "cwd={}", cwd.unwrap_or_else(|e| format!("error:{e}")));

    let limits = [
        ("nofile", libc::RLIMIT_NOFILE),
        ("nproc", libc::RLIMIT_NPROC),
        ("as", libc::RLIMIT_AS),
        ("data", libc::RLIMIT_DATA),
        ("stack", libc::RLIMIT_STACK),
        ("fsize", libc::RLIMIT_FSIZE),
        ("core", libc::RLIMIT_CORE),
        ("cpu", libc::RLIMIT_CPU),
        ("memlock", libc::RLIMIT_MEMLOCK),
    ];
    for (name, res) in limits {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit(2) writes into the local `lim`.
        if unsafe { libc::getrlimit(res, &mut lim) } == 0 {
            let f = |v: libc::rlim_t| {
                if v == libc::RLIM_INFINITY {
                    "unlimited".to_string()
                } else {
                    v.to_string()
                }
            };
            let _ = writeln!(r, "rlimit.{name}={}:{}", f(lim.rlim_cur), f(lim.rlim_max));
        }
    }

    let _ = writeln!(r, "peer={}", peer());
    for (name, level, opt) in [
        ("keepalive", libc::SOL_SOCKET, libc::SO_KEEPALIVE),
        ("nodelay", libc::IPPROTO_TCP, libc::TCP_NODELAY),
    ] {
        let mut v: c_int = 0;
        let mut len = mem::size_of::<c_int>() as libc::socklen_t;
        // SAFETY: getsockopt(2) into a local int of the stated size.
        let ok = unsafe { libc::getsockopt(0, level, opt, (&raw mut v).cast(), &mut len) } == 0;
        let _ = writeln!(
            r,
            "sockopt.{name}={}",
            if ok { v.to_string() } else { "error".into() }
        );
    }

    for (i, a) in std::env::args_os().enumerate() {
        let _ = writeln!(r, "argv.{i}={}", a.to_string_lossy());
    }
    for ns in ["net", "mnt"] {
        let link = std::fs::read_link(format!("/proc/self/ns/{ns}"));
        let _ = writeln!(
            r,
            "ns.{ns}={}",
            link.map_or_else(|e| format!("error:{e}"), |l| l.display().to_string())
        );
    }
    // The cgroup v2 line: where superd started this process.
    if let Some(cg) = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        })
    {
        let _ = writeln!(r, "cgroup={cg}");
    }
    fences(&mut r);

    for (k, v) in std::env::vars_os() {
        let _ = writeln!(r, "env.{}={}", k.to_string_lossy(), v.to_string_lossy());
    }
    r
}

/// What the `PROBE_*` variables ask: `PROBE_CONNECT=ip:port` (a TCP
/// connect), `PROBE_WRITE=/dir,...` (create and remove a file there),
/// `PROBE_TOUCH=/dir` (create `probe-touch-<pid>` there), `PROBE_LIST=/dir`, `PROBE_STAT=/path,...`, `PROBE_OPEN=
/// /file,...` (open for reading), `PROBE_BIND=port` (a TCP bind on
/// 127.0.0.1), `PROBE_EXEC=/prog` (runs `prog euid`). Each result is `ok`
/// or `error:<errno>`.
fn fences(r: &mut String) {
    fn res<T>(x: std::io::Result<T>) -> String {
        match x {
            Ok(_) => "ok".into(),
            Err(e) => format!("error:{}", e.raw_os_error().unwrap_or(0)),
        }
    }
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(a) = var("PROBE_CONNECT") {
        let addr: std::net::SocketAddr = a.parse().expect("PROBE_CONNECT");
        let c = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5));
        let _ = writeln!(r, "connect={}", res(c));
    }
    if let Some(list) = var("PROBE_WRITE") {
        for dir in list.split(',') {
            let f = format!("{dir}/probe-write-{}", std::process::id());
            let w = std::fs::write(&f, b"x");
            let _ = std::fs::remove_file(&f);
            let _ = writeln!(r, "write.{dir}={}", res(w));
        }
    }
    if let Some(dir) = var("PROBE_TOUCH") {
        let f = format!("{dir}/probe-touch-{}", std::process::id());
        let _ = writeln!(r, "touch={}", res(std::fs::write(&f, b"x")));
    }
    if let Some(dir) = var("PROBE_LIST") {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        let _ = writeln!(r, "list={}", names.join(","));
    }
    if let Some(list) = var("PROBE_STAT") {
        for p in list.split(',') {
            let _ = writeln!(r, "stat.{p}={}", res(std::fs::metadata(p)));
        }
    }
    if let Some(list) = var("PROBE_OPEN") {
        for p in list.split(',') {
            let _ = writeln!(r, "open.{p}={}", res(std::fs::File::open(p)));
        }
    }
    if let Some(port) = var("PROBE_BIND") {
        let b = std::net::TcpListener::bind(format!("127.0.0.1:{port}"));
        let _ = writeln!(r, "bind={}", res(b));
    }
    if let Some(prog) = var("PROBE_EXEC") {
        let out = std::process::Command::new(&prog)
            .arg("euid")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output();
        let euid = match out {
            Ok(o) => String::from_utf8_lossy(&o.stdout).trim().to_string(),
            Err(e) => format!("error:{}", e.raw_os_error().unwrap_or(0)),
        };
        let _ = writeln!(r, "exec.euid={euid}");
    }
}

/// `nonblock=0|1,cloexec=0|1,type=stream|dgram|seqpacket|-,addr=…` of `fd`.
fn fdinfo(fd: c_int) -> String {
    // SAFETY: fcntl(2) and getsockopt(2) into a local int of the stated size.
    let (fl, fdfl, ty) = unsafe {
        let mut v: c_int = 0;
        let mut len = mem::size_of::<c_int>() as libc::socklen_t;
        let ok = libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&raw mut v).cast(),
            &mut len,
        ) == 0;
        (
            libc::fcntl(fd, libc::F_GETFL),
            libc::fcntl(fd, libc::F_GETFD),
            if ok { v } else { -1 },
        )
    };
    let ty = match ty {
        libc::SOCK_STREAM => "stream",
        libc::SOCK_DGRAM => "dgram",
        libc::SOCK_SEQPACKET => "seqpacket",
        _ => "-",
    };
    format!(
        "nonblock={},cloexec={},type={ty},addr={}",
        (fl & libc::O_NONBLOCK != 0) as u8,
        (fdfl & libc::FD_CLOEXEC != 0) as u8,
        sockname(fd)
    )
}

/// getsockname(fd) like a Rust SocketAddr, a unix path, `@name`, or `-`.
fn sockname(fd: c_int) -> String {
    // SAFETY: getsockname(2) into a sockaddr_storage large enough for any
    // family; the casts read only the family the kernel reported.
    unsafe {
        let mut ss: libc::sockaddr_storage = mem::zeroed();
        let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getsockname(fd, (&raw mut ss).cast(), &mut len) == -1 {
            return "-".into();
        }
        match ss.ss_family as c_int {
            libc::AF_INET => {
                let sin = &*(&raw const ss).cast::<libc::sockaddr_in>();
                let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                format!("{ip}:{}", u16::from_be(sin.sin_port))
            }
            libc::AF_INET6 => {
                let sin6 = &*(&raw const ss).cast::<libc::sockaddr_in6>();
                let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                format!("[{ip}]:{}", u16::from_be(sin6.sin6_port))
            }
            libc::AF_UNIX => {
                let sun = &*(&raw const ss).cast::<libc::sockaddr_un>();
                let off = mem::size_of::<libc::sa_family_t>();
                let n = (len as usize).saturating_sub(off);
                let bytes: Vec<u8> = sun.sun_path[..n.min(108)]
                    .iter()
                    .map(|&c| c as u8)
                    .collect();
                match bytes.first() {
                    Some(0) => format!("@{}", String::from_utf8_lossy(&bytes[1..])),
                    Some(_) => {
                        String::from_utf8_lossy(bytes.split(|&b| b == 0).next().unwrap_or(&[]))
                            .into_owned()
                    }
                    None => "unnamed".into(),
                }
            }
            f => format!("family:{f}"),
        }
    }
}

/// pass: listen_fds in wait mode: waits for the first readable socket of
/// fds 3 … 3+LISTEN_FDS-1 and answers there with the report (taken before
/// anything is accepted, so it shows exactly what the child was given).
fn listen() -> c_int {
    let n: usize = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let report = report();
    let mut pfds: Vec<libc::pollfd> = (0..n)
        .map(|i| libc::pollfd {
            fd: 3 + i as c_int,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: poll(2) on a local array of the stated length.
    if n == 0 || unsafe { libc::poll(pfds.as_mut_ptr(), n as libc::nfds_t, -1) } <= 0 {
        return 3;
    }
    let Some(p) = pfds.iter().find(|p| p.revents & libc::POLLIN != 0) else {
        return 3;
    };
    let fd = p.fd;
    if fdinfo(fd).contains("type=dgram") {
        let mut buf = [0u8; 2048];
        // SAFETY: recvfrom/sendto(2) with local buffers of the stated sizes.
        unsafe {
            let mut ss: libc::sockaddr_storage = mem::zeroed();
            let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            let got = libc::recvfrom(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&raw mut ss).cast(),
                &mut len,
            );
            if got < 0 {
                return 4;
            }
            let sent = libc::sendto(
                fd,
                report.as_ptr().cast(),
                report.len(),
                0,
                (&raw const ss).cast(),
                len,
            );
            return if sent < 0 { 5 } else { 0 };
        }
    }
    // SAFETY: accept(2) without an address buffer.
    let conn = unsafe { libc::accept(fd, std::ptr::null_mut(), std::ptr::null_mut()) };
    if conn == -1 {
        return 3;
    }
    write_all(conn, report.as_bytes());
    0
}

/// getpeername(0), formatted like a Rust SocketAddr, or `error:<errno>`.
fn peer() -> String {
    // SAFETY: getpeername(2) into a sockaddr_storage large enough for any
    // family; the casts below read only the family the kernel reported.
    unsafe {
        let mut ss: libc::sockaddr_storage = mem::zeroed();
        let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getpeername(0, (&raw mut ss).cast(), &mut len) == -1 {
            return format!("error:{}", *libc::__errno_location());
        }
        match ss.ss_family as c_int {
            libc::AF_INET => {
                let sin = &*(&raw const ss).cast::<libc::sockaddr_in>();
                let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                format!("{ip}:{}", u16::from_be(sin.sin_port))
            }
            libc::AF_INET6 => {
                let sin6 = &*(&raw const ss).cast::<libc::sockaddr_in6>();
                let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                format!("[{ip}]:{}", u16::from_be(sin6.sin6_port))
            }
            libc::AF_UNIX => "unix".to_string(),
            f => format!("family:{f}"),
        }
    }
}

/// wait-mode datagram service: take one datagram from fd 0 and answer its
/// sender with the report plus `udp.request=<payload>`.
fn udp() -> c_int {
    let mut buf = [0u8; 2048];
    // SAFETY: recvfrom(2) into a local buffer and sockaddr_storage of the
    // stated sizes; sendto(2) from the same, unchanged.
    unsafe {
        let mut ss: libc::sockaddr_storage = mem::zeroed();
        let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let n = libc::recvfrom(
            0,
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            (&raw mut ss).cast(),
            &mut len,
        );
        if n < 0 {
            return 4;
        }
        let mut r = report();
        let _ = writeln!(
            r,
            "udp.request={}",
            String::from_utf8_lossy(&buf[..n as usize])
        );
        let sent = libc::sendto(
            0,
            r.as_ptr().cast(),
            r.len(),
            0,
            (&raw const ss).cast(),
            len,
        );
        if sent < 0 { 5 } else { 0 }
    }
}
