//! Users and groups: unknown ones, the root rule both ways, what defaults may not make root.

use super::*;

/// Only a service's own `user:` may make it root: not `defaults`, and not
/// a mapping it merges.
#[test]
fn a_merge_key_cannot_make_a_service_root() {
    let (_, e) = errs(
        "services:\n  a: &a\n    listen: 127.0.0.1:7611\n    exec: /bin/cat\n    user: root\n  b:\n    <<: *a\n    listen: 127.0.0.1:7612\n",
    );
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!((e[0].line, e[0].column), (Some(6), Some(3)));
    assert!(e[0].message.contains("through a merge key"), "{e:#?}");
}

#[test]
fn unknown_user_and_group() {
    one(
        "services:\n  a:\n    listen: 1\n    exec: /bin/cat\n    user: no-such-user-x\n",
        5,
        11,
        "unknown user \"no-such-user-x\"",
    );
    one(
        "services:\n  a:\n    listen: 1\n    exec: /bin/cat\n    user: nobody\n    groups: [root, nogroupx]\n",
        6,
        20,
        "unknown group \"nogroupx\"",
    );
    // In defaults, whether or not a service inherits it.
    one(
        "defaults:\n  socket_group: nogroupx\nservices: {}\n",
        2,
        17,
        "unknown group \"nogroupx\"",
    );
    one(
        "defaults:\n  user: no-such-user-x\nservices:\n  a:\n    listen: 1\n    exec: /bin/cat\n",
        2,
        9,
        "unknown user \"no-such-user-x\"",
    );
}

#[test]
fn root_rule() {
    if !is_root() {
        skip("the root rule is only checked when the tests run as root");
        return;
    }
    // The real context: superd as root refuses an exec service without a
    // user, and a root user coming from defaults.
    let d = tmpdir();
    let p = write(
        &d,
        "t.yaml",
        "defaults:\n  user: 0\nservices:\n  a:\n    listen: 1\n    exec: /bin/cat\n",
    );
    let e = load(&[p]).unwrap_err();
    assert_eq!((e[0].line, e[0].column), (Some(4), Some(3)));
    assert!(
        e[0].message.contains("would run as root through defaults"),
        "{}",
        e[0]
    );
    let p = write(
        &d,
        "u.yaml",
        "services:\n  a:\n    listen: 1\n    exec: /bin/cat\n",
    );
    let e = load(&[p]).unwrap_err();
    assert!(e[0].message.contains("needs a user"), "{}", e[0]);
}

#[test]
fn root_rule_with_root_context() {
    // These use a root context, so they hold whoever runs the tests.
    one(
        "services:\n  a:\n    listen: 1\n    exec: /bin/cat\n",
        2,
        3,
        "needs a user: superd runs as root",
    );
    let d = tmpdir();
    let p = write(
        &d,
        "t.yaml",
        "defaults:\n  user: root\nservices:\n  a:\n    listen: 1\n    exec: /bin/cat\n  b:\n    listen: 2\n    exec: /bin/cat\n    user: root\n",
    );
    let e = load_as(&[p.clone()], &root_ctx()).unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].line, e[0].column), (Some(4), Some(3)));
    assert!(
        e[0].message.contains("would run as root through defaults"),
        "{}",
        e[0]
    );
    // A service's own `user: 0` is fine; builtins need no user.
    let c = ok(
        "services:\n  a:\n    listen: 1\n    exec: /bin/cat\n    user: 0\n  b:\n    listen: 2\n    builtin: echo\n",
    );
    assert_eq!(c.services[0].credentials.as_ref().unwrap().uid, 0);
    assert_eq!(c.services[1].credentials, None);
}

#[test]
fn not_root_rules() {
    let d = tmpdir();
    let p = write(
        &d,
        "t.yaml",
        "services:\n  a:\n    listen: 1\n    exec: /bin/cat\n",
    );
    let c = load_as(&[p], &user_ctx()).unwrap();
    assert_eq!(c.services[0].credentials, None);
    let p = write(
        &d,
        "u.yaml",
        "services:\n  a:\n    listen: 1\n    exec: /bin/cat\n    user: root\n",
    );
    // Not root: the user is validated, then the child keeps superd's
    // identity (as xinetd does).
    let c = load_as(&[p], &user_ctx()).unwrap();
    assert_eq!(c.services[0].credentials, None);
    let p = write(
        &d,
        "v.yaml",
        "services:\n  a:\n    listen: 1\n    exec: /bin/cat\n    user: no-such-user-x\n",
    );
    let e = load_as(&[p], &user_ctx()).unwrap_err();
    assert_eq!((e[0].line, e[0].column), (Some(5), Some(11)), "{}", e[0]);
}

#[test]
fn group_root_never_through_defaults() {
    let (_, e) = errs(
        "defaults:\n  user: nobody\n  group: root\nservices:\n  a:\n    listen: 1\n    exec: /bin/cat\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].line, e[0].column), (Some(5), Some(3)));
    assert!(
        e[0].message
            .contains("would run with group root through defaults"),
        "{}",
        e[0]
    );
    // Through a merge key neither; a service's own group: root is allowed.
    let (_, e) = errs(
        "services:\n  a: &x\n    listen: 1\n    exec: /bin/cat\n    user: nobody\n    group: 0\n  b:\n    <<: *x\n    listen: 2\n",
    );
    assert!(
        e[0].message.contains("group root through a merge key"),
        "{}",
        e[0]
    );
    ok("services:\n  a:\n    listen: 1\n    exec: /bin/cat\n    user: nobody\n    group: root\n");
}
