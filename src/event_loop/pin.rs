//! superd on one CPU while it starts one child at a time (superd.8, THE
//! CHILD): a child starts on superd's CPU, where its start is cheapest,
//! rather than on an idle one that must be woken first; the child gives
//! the program superd's own CPUs back before exec. Held for a window at
//! most, and given up before any start with other children about, so
//! that under load the scheduler spreads superd and its children as
//! before.

use std::time::{Duration, Instant};

use crate::sys::CpuMask;

/// How long superd stays on one CPU after the start that pinned it: the
/// next lone start within it costs no system call.
pub(super) const PIN_WINDOW: Duration = Duration::from_secs(1);

/// Whether superd is pinned, with its own CPUs and the one it is on.
#[derive(Debug, Default)]
pub(super) struct Pin {
    held: Option<Held>,
    /// No pin before this instant: a start with other children about came
    /// less than a window ago (under load, children come and go, and a pin
    /// made and given up at every turn would cost four calls a start).
    quiet_from: Option<Instant>,
}

#[derive(Debug)]
struct Held {
    /// superd's CPUs before the pin: what every child gets back.
    own: CpuMask,
    /// The one CPU it was pinned to.
    one: CpuMask,
}

impl Pin {
    /// For a start with no other child to look after: superd pinned to
    /// the CPU it runs on (if it may run on others too, and no start with
    /// other children about came within a window), and the CPUs the child
    /// is to give its program; `true` in the second place when this call
    /// pinned it (a window starts).
    pub(super) fn for_lone_start(&mut self, now: Instant) -> (Option<CpuMask>, bool) {
        if let Some(h) = &self.held {
            return (Some(h.own), false);
        }
        if self.quiet_from.is_some_and(|t| now < t) {
            return (None, false);
        }
        let Ok(own) = CpuMask::current() else {
            return (None, false);
        };
        let Some(one) = own.narrowed_to_current() else {
            return (None, false);
        };
        if one.apply().is_err() {
            return (None, false);
        }
        self.held = Some(Held { own, one });
        (Some(own), true)
    }

    /// superd's own CPUs back: before a start with other children about,
    /// at the end of a window, before an upgrade's exec. Unless someone
    /// else set superd's CPUs meanwhile (`taskset -p`): theirs stay.
    pub(super) fn release(&mut self) {
        let Some(h) = self.held.take() else {
            return;
        };
        if CpuMask::current().is_ok_and(|now| now.same(&h.one)) {
            let _ = h.own.apply();
        }
    }

    /// Before a start with other children about: released, and no pin
    /// for a window.
    pub(super) fn for_busy_start(&mut self, now: Instant) {
        self.release();
        self.quiet_from = Some(now + PIN_WINDOW);
    }

    pub(super) fn is_held(&self) -> bool {
        self.held.is_some()
    }
}
