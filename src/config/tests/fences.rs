//! The sandbox fields: where each may be written, what each needs, what it must not hide.

use super::*;

const CAT: &str =
    "services:\n  cat:\n    listen: 127.0.0.1:7007\n    exec: /bin/cat\n    user: nobody\n";

/// The fences: paths that exist, are absolute and plain; writable paths
/// under a read-only one; capabilities written as capabilities(7) does,
/// for a non-root user; none on a builtin of its own.
#[test]
fn fences_are_validated_where_they_are_written() {
    let c = ok(&format!(
        "{CAT}    no_new_privs: true\n    private_network: true\n    private_tmp: true\n    read_only_paths: [/, /usr, /usr]\n    writable_paths: /var\n    inaccessible_paths: [/etc/shadow]\n"
    ));
    let f = &c.services[0].fences;
    assert!(f.no_new_privs && f.private_network && f.private_tmp);
    assert_eq!(
        f.read_only_paths,
        [PathBuf::from("/"), PathBuf::from("/usr")]
    );
    assert_eq!(f.writable_paths, [PathBuf::from("/var")]);
    assert_eq!(f.inaccessible_paths, [PathBuf::from("/etc/shadow")]);
    one(
        &format!("{CAT}    read_only_paths: [/usr, /nonexistent-superd]\n"),
        6,
        29,
        "read_only_paths: /nonexistent-superd: no such file or directory",
    );
    one(
        &format!("{CAT}    read_only_paths: [usr]\n"),
        6,
        23,
        "expected an absolute path, found \"usr\"",
    );
    one(
        &format!("{CAT}    read_only_paths: [/usr/../etc]\n"),
        6,
        23,
        "has . or .. in it",
    );
    one(
        &format!("{CAT}    read_only_paths: [/usr]\n    writable_paths: [/var]\n"),
        7,
        22,
        "writable_paths: /var is under no read_only_paths entry",
    );
    one(
        &format!("{CAT}    capabilities: [cap_net_bind_service]\n"),
        6,
        20,
        "unknown capability \"cap_net_bind_service\": write it as capabilities(7) does, CAP_NET_BIND_SERVICE",
    );
    one(
        &format!("{CAT}    capabilities: [NET_RAW]\n"),
        6,
        20,
        "write it as capabilities(7) does, CAP_NET_RAW",
    );
    one(
        &format!("{CAT}    capabilities: [CAP_FLY]\n"),
        6,
        20,
        "unknown capability \"CAP_FLY\"",
    );
    one(
        "services:\n  cat:\n    listen: 127.0.0.1:7007\n    exec: /bin/cat\n    user: root\n    capabilities: [CAP_NET_RAW]\n",
        6,
        5,
        "capabilities are kept by a non-root user",
    );
    one(
        &format!("{ECHO}    private_network: true\n"),
        5,
        5,
        "private_network: a builtin is served inside superd: there is no child to fence",
    );
    one(
        &format!("{CAT}    inaccessible_paths: [/bin]\n"),
        6,
        26,
        "inaccessible_paths: /bin would hide the program /bin/cat",
    );
    // A program under the /tmp or /var/tmp that private_tmp replaces.
    for tmp in ["/tmp", "/var/tmp"] {
        let prog = Path::new(tmp).join(format!("superd-test-prog-{}", std::process::id()));
        std::fs::write(&prog, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (_, e) = errs(&format!(
            "{}    private_tmp: true\n",
            CAT.replace("/bin/cat", prog.to_str().unwrap())
        ));
        let _ = std::fs::remove_file(&prog);
        assert_eq!(e.len(), 1, "{e:#?}");
        assert_eq!((e[0].line, e[0].column), (Some(6), Some(5)), "{}", e[0]);
        let want = format!(
            "private_tmp: the private {tmp} would hide the program {}",
            prog.display()
        );
        assert!(e[0].to_string().contains(&want), "{}", e[0]);
    }
    // From defaults, fences do not concern a builtin.
    let c = ok(&format!(
        "defaults:\n  private_tmp: true\n  user: nobody\n{ECHO}"
    ));
    assert_eq!(c.services[0].fences, crate::service::Fences::default());
}

#[test]
fn capabilities_are_numbered_as_in_linux_capability_h() {
    if !is_root() {
        eprintln!("skipped: superd must hold the capabilities it passes on (root)");
        return;
    }
    let c = ok(&format!(
        "{CAT}    capabilities: [CAP_NET_BIND_SERVICE, CAP_CHECKPOINT_RESTORE, CAP_CHOWN]\n"
    ));
    assert_eq!(c.services[0].fences.capabilities, [10, 40, 0]);
}

/// When superd is not root, every fence but no_new_privs is an error
/// naming the field, where it is written.
#[test]
fn fences_need_root_except_no_new_privs() {
    let d = tmpdir();
    let p = write(
        &d,
        "t.yaml",
        "services:\n  cat:\n    listen: 127.0.0.1:7007\n    exec: /bin/cat\n    no_new_privs: true\n    private_tmp: true\n    read_only_paths: [/]\n    capabilities: [CAP_NET_RAW]\n",
    );
    let e = load_with(&[p.clone()], &user_ctx()).expect_err("fences need root");
    let msgs: Vec<String> = e.iter().map(ToString::to_string).collect();
    let at = |l: usize, field: &str| {
        format!(
            "{}:{l}:5: {field} needs superd to run as root (namespaces, mounts and capabilities are privileged)",
            p.display()
        )
    };
    assert_eq!(
        msgs,
        [
            at(6, "private_tmp"),
            at(7, "read_only_paths"),
            at(8, "capabilities")
        ]
    );
    let p = write(
        &d,
        "t.yaml",
        "services:\n  cat:\n    listen: 127.0.0.1:7007\n    exec: /bin/cat\n    no_new_privs: true\n",
    );
    let c = load_with(&[p], &user_ctx()).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(c.services[0].fences.no_new_privs);
}

/// A program or a cwd under the host's /tmp is not there for a child whose
/// private_tmp replaces /tmp with an empty directory: an error at load,
/// where private_tmp is written, not an exec failure at every connection.
#[test]
fn private_tmp_hiding_the_program_or_the_cwd_is_an_error() {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let d =
        TmpDir(Path::new("/tmp").join(format!("superd-config-hidden-{}-{n}", std::process::id())));
    let _ = std::fs::remove_dir_all(&d.0);
    std::fs::create_dir(&d.0).unwrap();
    std::fs::set_permissions(&d.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let prog = write(&d.0, "prog.sh", "#!/bin/sh\n");
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let text = |fence: &str| {
        format!(
            "services:\n  t:\n    listen: 127.0.0.1:7007\n    exec: {}\n    user: nobody\n    cwd: {}\n{fence}",
            prog.display(),
            d.0.display()
        )
    };
    let (p, e) = errs(&text("    private_tmp: true\n"));
    let msgs: Vec<String> = e.iter().map(ToString::to_string).collect();
    assert_eq!(
        msgs,
        [
            format!(
                "{}:7:5: private_tmp: the private /tmp would hide the program {}",
                p.display(),
                prog.display()
            ),
            format!(
                "{}:7:5: private_tmp: the private /tmp would hide the cwd {}",
                p.display(),
                d.0.display()
            ),
        ]
    );
    // Without the fence both are found; /tmp itself is a fine cwd with it.
    ok(&text(""));
    let c = ok(
        "services:\n  t:\n    listen: 127.0.0.1:7007\n    exec: /bin/cat\n    user: nobody\n    cwd: /tmp\n    private_tmp: true\n",
    );
    assert!(c.services[0].fences.private_tmp);
}
