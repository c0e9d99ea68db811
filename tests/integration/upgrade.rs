//! Signals superd does not act on, and upgrade in place with SIGUSR2
//! (superd.8, SIGNALS and UPGRADING).

use nix::sys::signal::Signal;

use crate::harness::*;

/// No signal ends superd silently: the ones it has no use for are logged
/// (or, for SIGPIPE and the realtime signals, ignored), and it serves on.
#[test]
fn unused_signals_are_logged_and_superd_serves_on() {
    let d = Superd::start("services:\n  echo:\n    listen: 127.0.0.1:0\n    builtin: echo\n");
    let addr = d.addr("echo");
    let logged = [
        Signal::SIGALRM,
        Signal::SIGQUIT,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
        Signal::SIGTSTP,
        Signal::SIGVTALRM,
        Signal::SIGPROF,
        Signal::SIGIO,
        Signal::SIGPWR,
        Signal::SIGXCPU,
        Signal::SIGXFSZ,
    ];
    for sig in logged {
        d.signal(sig);
        d.wait_for(&["signal ignored", &format!("signal={}", sig.as_str())]);
    }
    d.signal(Signal::SIGPIPE);
    let rt = libc::SIGRTMIN() + 3;
    assert_eq!(kill_raw(d.pid(), rt), 0);
    // A signal sent after them is handled: superd is still there.
    d.signal(Signal::SIGUSR1);
    d.wait_for(&["status service=echo "]);
    assert_eq!(exchange(&addr, b"still\n"), b"still\n");
    assert_eq!(proc_state(d.pid()).map(|s| s != 'Z'), Some(true));
    let status = d.stop();
    assert_eq!(status.code(), Some(0));
}

/// kill(2) with a raw signal number (nix's `Signal` has no realtime ones).
fn kill_raw(pid: i32, sig: i32) -> i32 {
    let out = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    out.code().unwrap_or(-1)
}
