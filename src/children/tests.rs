//! Unit tests of the child records and the timeout machine.

use super::*;

/// A child of no service, as the timeout machine sees it; its pid (and
/// group) is one no process has.
fn child(timed_out: bool, killed: bool, strays: Vec<Stray>) -> (Pid, Child) {
    let c = Child {
        service_id: ServiceId(1),
        service: "s".into(),
        peer: None,
        source: None,
        started: Instant::now(),
        serial: 1,
        wait_listener: None,
        listen_fds: Vec::new(),
        timed_out,
        killed,
        exec_failed: false,
        exec: None,
        success: SuccessStatus::default(),
        cgroup: None,
        strays,
        proxy: None,
        pidfd: None,
    };
    (Pid(i32::MAX - 7), c)
}

#[test]
fn orphan_sweeps_go_on_while_there_are_signs_of_orphans() {
    let mut c = Children::default();
    // Nothing expected: no sweep owed.
    assert!(!c.swept(0, false));
    c.expect_orphans();
    // Orphans reaped, or something still lingering: owed again.
    assert!(c.swept(3, false));
    assert!(c.swept(0, true));
    // Then ORPHAN_SWEEPS quiet sweeps, the last owing none.
    for _ in 1..ORPHAN_SWEEPS {
        assert!(c.swept(0, false));
    }
    assert!(!c.swept(0, false));
    // A sweep that finds an orphan is a sign too.
    assert!(c.swept(1, false));
}

#[test]
fn a_child_that_left_nothing_leaves_nothing_to_do() {
    let (pid, mut c) = child(false, false, Vec::new());
    assert!(matches!(leftover(pid, &mut c, None), Leftover::Nothing));
    // Timed out, its group gone and nothing recorded below it.
    let (pid, mut c) = child(true, false, Vec::new());
    assert!(matches!(leftover(pid, &mut c, None), Leftover::Nothing));
    // Killed already: nothing of it is left to kill.
    let stray = Stray { pid: 1, started: 0 };
    let (pid, mut c) = child(true, true, vec![stray]);
    assert!(matches!(leftover(pid, &mut c, None), Leftover::Nothing));
}

#[test]
fn what_a_timed_out_child_started_lingers_for_its_sigkill() {
    let stray = Stray { pid: 1, started: 0 };
    let (pid, mut c) = child(true, false, vec![stray]);
    match leftover(pid, &mut c, None) {
        Leftover::Lingering(l) => {
            assert!(l.timed_out);
            assert_eq!(l.pid, pid);
            assert_eq!(l.strays.len(), 1);
            assert!(c.strays.is_empty(), "moved to the lingering record");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn lingering_with_nothing_left_kills_nothing() {
    let l = Lingering {
        service: "s".into(),
        pid: Pid(i32::MAX - 7),
        ended: 0,
        timed_out: true,
        cgroup: None,
        strays: Vec::new(),
    };
    assert!(l.kill(false).is_none());
}
