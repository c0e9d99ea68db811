//! From paths to files: directory listing, sizes and file types, the ownership rule as root, errors across files.

use super::*;

#[test]
fn duplicate_service_across_files() {
    let d = tmpdir();
    let a = write(&d, "a.yaml", ECHO);
    let b = write(
        &d,
        "b.yaml",
        "\nservices:\n  echo:\n    listen: 7008\n    builtin: echo\n",
    );
    let e = load_as(&[d.to_path_buf()], &root_ctx()).unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].file, b);
    assert_eq!((e[0].line, e[0].column), (Some(3), Some(3)));
    let s = e[0].to_string();
    assert!(
        s.contains(&format!("already defined at {}:2:3", a.display())),
        "{s}"
    );
}

#[test]
fn file_over_one_mib() {
    let d = tmpdir();
    let p = write(&d, "big.yaml", &format!("# {}\n", "x".repeat(1 << 20)));
    let e = load_as(&[p.clone()], &root_ctx()).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].file.clone(), e[0].line), (p, None));
    assert!(e[0].message.contains("larger than 1048576 bytes"));
}

#[test]
fn non_regular_files() {
    let d = tmpdir();
    let fifo = d.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    std::os::unix::fs::symlink(&fifo, d.join("x.yaml")).unwrap();
    std::fs::create_dir(d.join("sub.yaml")).unwrap();
    let e = load_as(&[d.to_path_buf()], &root_ctx()).unwrap_err();
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0].file, d.join("sub.yaml"));
    assert_eq!(e[0].message, "not a regular file");
    assert_eq!(e[1].file, d.join("x.yaml"));
    assert_eq!(e[1].message, "not a regular file");
    // A symlink to a regular file is followed.
    let real = write(&d, "real", ECHO);
    std::os::unix::fs::symlink(&real, d.join("link.yaml")).unwrap();
    assert!(load_as(&[d.join("link.yaml")], &root_ctx()).is_ok());
    // A missing path is an error.
    let e = load_as(&[d.join("nope")], &root_ctx()).unwrap_err();
    assert_eq!(e[0].message, "no such file or directory");
}

#[test]
fn writable_config_refused_when_root() {
    if !is_root() {
        skip("the ownership rule applies only when superd runs as root");
        return;
    }
    let d = tmpdir();
    let p = write(&d, "t.yaml", ECHO);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o646)).unwrap();
    let e = load_with(&[p.clone()], &root_ctx()).unwrap_err();
    assert!(e[0].message.contains("writable by everyone"), "{}", e[0]);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    nix::unistd::chown(&p, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let e = load_with(&[p.clone()], &root_ctx()).unwrap_err();
    assert!(
        e[0].message.contains("owned by uid 65534, not root"),
        "{}",
        e[0]
    );
    // The directory counts too.
    nix::unistd::chown(&p, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = load_with(&[d.to_path_buf()], &root_ctx()).unwrap_err();
    assert!(e[0].message.contains("writable by everyone"), "{}", e[0]);
    // Not root: no ownership rule.
    assert!(load_with(&[p], &user_ctx()).is_ok());
}

#[test]
fn defaults_in_two_files() {
    let d = tmpdir();
    let a = write(&d, "a.yaml", "defaults:\n  user: nobody\n");
    let b = write(&d, "b.yaml", "services: {}\ndefaults:\n  user: nobody\n");
    let e = load_as(&[d.to_path_buf()], &root_ctx()).unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        (e[0].file.clone(), e[0].line, e[0].column),
        (b, Some(2), Some(1))
    );
    assert!(
        e[0].message
            .contains(&format!("already set in {}:1:1", a.display()))
    );
    one(
        "defaults:\n  listen: 7\n",
        2,
        3,
        "listen cannot be set in defaults",
    );
}

#[test]
fn directory_listing() {
    let d = tmpdir();
    for junk in [
        "x.yaml~",
        ".x.yaml",
        ".x.yaml.swp",
        "x.yaml.dpkg-old",
        "x.txt",
    ] {
        write(&d, junk, "garbage: [");
    }
    write(
        &d,
        "b.yml",
        "services:\n  b:\n    listen: 2\n    builtin: echo\n",
    );
    write(
        &d,
        "a.yaml",
        "services:\n  a:\n    listen: 1\n    builtin: echo\n",
    );
    write(
        &d,
        "C.yaml",
        "services:\n  c:\n    listen: 3\n    builtin: echo\n",
    );
    write(&d, "empty.yaml", "");
    write(&d, "comments.yaml", "# nothing here\n");
    let c = load_as(&[d.to_path_buf()], &root_ctx()).unwrap();
    let names: Vec<&str> = c.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["c", "a", "b"]);
}

#[test]
fn errors_from_every_file() {
    let d = tmpdir();
    write(&d, "a.yaml", "services:\n  a:\n    lisen: 1\n");
    write(&d, "b.yaml", "services:\n  b:\n    listen: nope\n");
    let e = load_as(&[d.to_path_buf()], &root_ctx()).unwrap_err();
    assert_eq!(e.len(), 2, "{e:?}");
}

#[test]
fn a_fifo_in_place_of_the_program_never_blocks_the_warning_check() {
    // A FIFO swapped in after the load's check: open(2) without O_NONBLOCK
    // would wait for a writer for ever, inside the event loop.
    let d = tmpdir();
    let fifo = d.join("prog");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o755)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let f2 = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(validate::open_regular(&f2).is_some());
    });
    let got = rx.recv_timeout(Duration::from_secs(10));
    // Unblock a thread stuck in open(2), whatever happened.
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo);
    assert_eq!(
        got,
        Ok(false),
        "a FIFO is not a program, and is refused at once"
    );
    let prog = d.join("real");
    std::fs::write(&prog, "#!/bin/sh\n").unwrap();
    assert!(validate::open_regular(&prog).is_some());
}
