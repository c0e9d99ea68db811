//! All the limit state of one service — the connection count against
//! `max_connections`, per-source counts against `max_per_source`, and the
//! `rate` token bucket — in one [`ServiceLimits`] a reload carries over.
//! Pure: the event loop passes time in and does the accepting and closing.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

pub use crate::access::Refusal;
use crate::service::{Rate, canonical_ip};

/// What `max_per_source` counts by: one IPv4 address (an IPv4-mapped peer is
/// its IPv4 address, superd(8), LIMITS AND ACCESS), or one IPv6 /64, because a single IPv6 host
/// usually owns a whole /64 and could otherwise dodge the limit at will.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceKey(Source);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    V4(Ipv4Addr),
    /// The upper 64 bits of the address.
    V6Net(u64),
}

/// The per-source key of a peer address.
pub fn source_key(ip: IpAddr) -> SourceKey {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => SourceKey(Source::V4(v4)),
        IpAddr::V6(v6) => SourceKey(Source::V6Net((u128::from(v6) >> 64) as u64)),
    }
}

/// `10.1.2.3` or `2001:db8:1:2::/64`, for status output.
impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Source::V4(v4) => write!(f, "{v4}"),
            Source::V6Net(net) => write!(f, "{}/64", Ipv6Addr::from(u128::from(net) << 64)),
        }
    }
}

/// A token bucket for `rate: N/period`: holds at most N tokens (the burst),
/// starts full and refills continuously at N per period.
///
/// The fill is kept in exact integers: one token is `per_ns` units and every
/// nanosecond adds `tokens` units, so refills never round and never drift,
/// however often or seldom the loop looks.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    /// N, the burst and the tokens per period; at least 1.
    tokens: u128,
    /// The period in nanoseconds; at least 1.
    per_ns: u128,
    /// The fill at `last`, in units (at most `tokens * per_ns`).
    level: u128,
    /// When `level` was last brought up to date.
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. The config layer rejects a zero rate or period; they
    /// are clamped to 1 here so a hand-built `Rate` can never divide by zero
    /// or stall the listener forever.
    pub fn new(rate: Rate, now: Instant) -> TokenBucket {
        let (tokens, per_ns) = Self::params(rate);
        TokenBucket {
            tokens,
            per_ns,
            level: tokens * per_ns,
            last: now,
        }
    }

    fn params(rate: Rate) -> (u128, u128) {
        let tokens = u128::from(rate.tokens.max(1));
        // Capped to u64 so a wait always fits a `Duration::from_nanos`.
        let per_ns = rate.per.as_nanos().clamp(1, u128::from(u64::MAX));
        (tokens, per_ns)
    }

    fn capacity(&self) -> u128 {
        self.tokens * self.per_ns
    }

    /// The fill at `now`. An instant before `last` (the caller's clocks are
    /// monotonic, but be safe) adds nothing rather than panicking.
    fn level_at(&self, now: Instant) -> u128 {
        match now.checked_duration_since(self.last) {
            Some(elapsed) => self
                .level
                .saturating_add(elapsed.as_nanos().saturating_mul(self.tokens))
                .min(self.capacity()),
            None => self.level,
        }
    }

    fn advance(&mut self, now: Instant) {
        if now > self.last {
            self.level = self.level_at(now);
            self.last = now;
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.advance(now);
        if self.level >= self.per_ns {
            self.level -= self.per_ns;
            true
        } else {
            false
        }
    }

    /// `now` if a token is available, else the first instant at which one
    /// is: the exact nanosecond, so a timer set for it never wakes early.
    pub fn next_token_at(&self, now: Instant) -> Instant {
        let base = now.max(self.last);
        let level = self.level_at(base);
        if level >= self.per_ns {
            return now;
        }
        let wait_ns = (self.per_ns - level).div_ceil(self.tokens);
        // wait_ns <= per_ns <= u64::MAX; an Instant that far away cannot be
        // represented, and then "now" is the only honest answer.
        base.checked_add(Duration::from_nanos(wait_ns as u64))
            .unwrap_or(base)
    }

    /// Whole tokens available at `now`.
    pub fn available(&self, now: Instant) -> u32 {
        // At most `tokens`, which came from a u32.
        (self.level_at(now) / self.per_ns) as u32
    }

    /// The fill at `now` as whole tokens, the remainder (in nanoseconds of
    /// the period) and the period, for an upgrade (superd.8, UPGRADING).
    pub fn fill(&self, now: Instant) -> [u64; 3] {
        let level = self.level_at(now);
        [
            (level / self.per_ns) as u64,
            (level % self.per_ns) as u64,
            self.per_ns as u64,
        ]
    }

    /// Takes back a fill from [`TokenBucket::fill`] as of `now` (another
    /// period is converted, and the whole clamped to the burst).
    pub fn set_fill(&mut self, [whole, rem, per_ns]: [u64; 3], now: Instant) {
        let per = u128::from(per_ns.max(1));
        let rem = u128::from(rem).min(per - 1);
        self.level =
            (u128::from(whole) * self.per_ns + rem * self.per_ns / per).min(self.capacity());
        self.last = now;
    }

    /// A reload: the new rate applies from `now`; the fill earned so far
    /// under the old rate is kept (fraction included), clamped to the new
    /// burst, so a reload neither grants a fresh burst nor takes one away.
    pub fn set_rate(&mut self, rate: Rate, now: Instant) {
        self.advance(now);
        let (tokens, per_ns) = Self::params(rate);
        if per_ns != self.per_ns {
            // Convert units one token = old per_ns to one token = new
            // per_ns; whole tokens and the remainder apart, so neither
            // product can overflow (rem and per_ns are both < 2^64).
            let whole = self.level / self.per_ns;
            let rem = self.level % self.per_ns;
            self.level = whole * per_ns + rem * per_ns / self.per_ns;
        }
        self.tokens = tokens;
        self.per_ns = per_ns;
        self.level = self.level.min(self.capacity());
    }
}

/// The limit state of one service.
///
/// # How the event loop pairs the calls
///
/// For each readiness event on a listener of the service, per connection:
///
/// 1. `at_capacity()`: if true, stop accepting on the service's listeners
///    until a `connection_ended` brings it back under (connections wait in
///    the kernel backlog; superd(8), LIMITS AND ACCESS).
/// 2. `rate_ready(now)`: if `Err(at)`, stop accepting until `at`.
/// 3. `accept()`. On `WouldBlock` stop: nothing was spent. On a connection,
///    `take_rate_token(now)` — every accepted connection takes a token,
///    refused or not; after `rate_ready` said `Ok` at an earlier or equal
///    `now` it cannot fail (a bucket only fills with time).
/// 4. `access::check(peer, ..)`: if refused, close and log; no call here.
/// 5. `admit_source(source_key(peer))`: if `Err(MaxPerSource)`, close and
///    log; the count was not changed, so there is nothing to undo.
/// 6. `connection_started()`. From here on, exactly one
///    `connection_ended(Some(key))` with the same key, however the
///    connection ends: its child reaped (any status, exec failure and
///    timeout kills included), its builtin session closed (EOF, error, idle
///    timeout, shutdown), or the spawn failing before any child existed
///    (fork `EAGAIN`, …) — then call it at once.
///
/// A connection with no per-source slot (a `wait: true` service handing its
/// listening socket to one child, a unix socket peer without an IP) is
/// `connection_started()` … `connection_ended(None)`.
///
/// On reload, keep this struct for a service that stays and call
/// [`reconfigure`](Self::reconfigure); children that started before still
/// end against it. Unmatched `connection_ended` calls saturate at zero
/// instead of underflowing, but they are a loop bug.
#[derive(Clone, Debug)]
pub struct ServiceLimits {
    max_connections: u32,
    max_per_source: Option<u32>,
    active: u32,
    /// Live connections per source. Counted even when `max_per_source` is
    /// unlimited, so a reload that sets it starts from the true counts.
    /// Entries are removed at zero: the map holds only sources with live
    /// connections, never every peer ever seen.
    per_source: HashMap<SourceKey, u32>,
    /// Boxed: most services have no `rate` (8 bytes, not 64, for each).
    bucket: Option<Box<TokenBucket>>,
}

impl ServiceLimits {
    pub fn new(
        max_connections: u32,
        max_per_source: Option<u32>,
        rate: Option<Rate>,
        now: Instant,
    ) -> ServiceLimits {
        ServiceLimits {
            max_connections,
            max_per_source,
            active: 0,
            per_source: HashMap::new(),
            bucket: rate.map(|r| Box::new(TokenBucket::new(r, now))),
        }
    }

    /// A reload: new limits, same counts and bucket fill. A lowered
    /// `max_connections` or `max_per_source` closes nothing: it only
    /// holds back new connections until enough have ended. A newly set
    /// `rate` starts full; a removed one is dropped.
    pub fn reconfigure(
        &mut self,
        max_connections: u32,
        max_per_source: Option<u32>,
        rate: Option<Rate>,
        now: Instant,
    ) {
        self.max_connections = max_connections;
        self.max_per_source = max_per_source;
        self.bucket = match (self.bucket.take(), rate) {
            (Some(mut bucket), Some(rate)) => {
                bucket.set_rate(rate, now);
                Some(bucket)
            }
            (None, Some(rate)) => Some(Box::new(TokenBucket::new(rate, now))),
            (_, None) => None,
        };
    }

    /// Whether `max_connections` are running: stop accepting.
    pub fn at_capacity(&self) -> bool {
        self.active >= self.max_connections
    }

    /// Whether `rate` lets a connection be accepted now, without taking a
    /// token: `Err(at)` is when it will. Always `Ok` without a `rate`.
    pub fn rate_ready(&self, now: Instant) -> Result<(), Instant> {
        match &self.bucket {
            Some(bucket) => match bucket.next_token_at(now) {
                at if at > now => Err(at),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// The `rate` bucket's fill (see [`TokenBucket::fill`]).
    pub fn rate_fill(&self, now: Instant) -> Option<[u64; 3]> {
        self.bucket.as_ref().map(|b| b.fill(now))
    }

    /// Takes back a `rate` bucket's fill after an upgrade.
    pub fn set_rate_fill(&mut self, fill: [u64; 3], now: Instant) {
        if let Some(b) = &mut self.bucket {
            b.set_fill(fill, now);
        }
    }

    /// Whole tokens `rate` has left at `now`; `None` without a `rate`.
    pub fn rate_tokens(&self, now: Instant) -> Option<u32> {
        self.bucket.as_ref().map(|b| b.available(now))
    }

    /// Spends the token of an accepted connection: `Err(at)` (nothing
    /// taken) means none is left until `at`. Always `Ok` without a `rate`.
    pub fn take_rate_token(&mut self, now: Instant) -> Result<(), Instant> {
        match &mut self.bucket {
            Some(bucket) => match bucket.try_take(now) {
                true => Ok(()),
                false => Err(bucket.next_token_at(now)),
            },
            None => Ok(()),
        }
    }

    /// Counts a connection against its source: `Err(MaxPerSource)` (count
    /// unchanged) when the source already has `max_per_source`.
    pub fn admit_source(&mut self, key: SourceKey) -> Result<(), Refusal> {
        let limit = self.max_per_source.unwrap_or(u32::MAX);
        let count = self.per_source.entry(key).or_insert(0);
        if *count >= limit {
            // A limit of 0 would otherwise leave an empty entry behind.
            if *count == 0 {
                self.per_source.remove(&key);
            }
            return Err(Refusal::MaxPerSource);
        }
        *count += 1;
        Ok(())
    }

    /// A connection (child or builtin session) is running.
    pub fn connection_started(&mut self) {
        self.active = self.active.saturating_add(1);
    }

    /// A connection ended; `key` releases its per-source slot (the key given
    /// to a successful `admit_source`, or `None` if it had none).
    pub fn connection_ended(&mut self, key: Option<SourceKey>) {
        self.active = self.active.saturating_sub(1);
        if let Some(key) = key
            && let Entry::Occupied(mut slot) = self.per_source.entry(key)
        {
            if *slot.get() <= 1 {
                slot.remove();
            } else {
                *slot.get_mut() -= 1;
            }
        }
    }

    /// Connections running now.
    pub fn active(&self) -> u32 {
        self.active
    }

    /// Live connections of one source.
    #[cfg(test)]
    pub fn source_count(&self, key: SourceKey) -> u32 {
        self.per_source.get(&key).copied().unwrap_or(0)
    }

    /// Sources with at least one live connection.
    #[cfg(test)]
    pub fn per_source_len(&self) -> usize {
        self.per_source.len()
    }

    pub fn max_connections(&self) -> u32 {
        self.max_connections
    }

    #[cfg(test)]
    pub fn max_per_source(&self) -> Option<u32> {
        self.max_per_source
    }
}

/// Bounds the log lines about something a remote peer can cause at will
/// (a refused datagram: its source can be forged, so no one can be held to
/// it): one line per interval; the next line says how many were left out.
#[derive(Debug, Default)]
pub struct LogBudget {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogBudget {
    /// `Some(n)`: log this one, saying `n` were left out since the last
    /// line; `None`: leave it out.
    pub fn take(&mut self, now: Instant, interval: Duration) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < interval)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// A `nowait` service may fail to exec at most this often per second
/// (burst the same): a client flood against a broken program costs a few
/// forks a second, never a tight loop.
pub const NOWAIT_FAILURES_PER_SEC: u32 = 50;

/// A `wait` service without a `rate` may start this many children a
/// second (burst the same); past that it is looping (a child that ends at
/// once leaves its socket readable, and the next starts at once) and
/// pauses for LOOP_PAUSE, as xinetd's `cps` default does. Never disabled.
pub const WAIT_STARTS_PER_SEC: u32 = 50;
pub const LOOP_PAUSE: Duration = Duration::from_secs(10);

/// A `wait` service whose program fails before exec is retried after this
/// delay, doubled for every further failure in a row, up to the cap.
pub const WAIT_BACKOFF_START: Duration = Duration::from_millis(100);
pub const WAIT_BACKOFF_CAP: Duration = Duration::from_secs(10);

/// The pacing of a service whose children fail before exec, or whose
/// `wait` children end as soon as they start: how long it pauses. Its
/// buckets are made at their first use: a bucket made full earlier and
/// never drawn from would be full then too (it never holds more than its
/// burst), and most services never need them (24 bytes, not 144, for
/// each of 10,000 services).
#[derive(Clone, Debug, Default)]
pub struct Pacing {
    /// Exec failures in a row (reset by a successful exec).
    fail_streak: u32,
    failures: Option<Box<TokenBucket>>,
    /// wait mode without `rate`: children started.
    wait_starts: Option<Box<TokenBucket>>,
}

/// `tokens` per second.
fn per_sec(tokens: u32) -> Rate {
    Rate {
        tokens,
        per: Duration::from_secs(1),
    }
}

impl Pacing {
    /// Exec failures in a row.
    pub fn fail_streak(&self) -> u32 {
        self.fail_streak
    }

    /// A child got past exec.
    pub fn exec_ok(&mut self) {
        self.fail_streak = 0;
    }

    /// A child failed before exec: how long its service pauses, if at all.
    /// `wait` mode backs off (the unread datagram or connection would
    /// otherwise start the next child at once); `nowait` is held to
    /// NOWAIT_FAILURES_PER_SEC: this failure spends a token, and if none
    /// is left for the next attempt, it waits until there is one.
    pub fn exec_failed(&mut self, wait: bool, now: Instant) -> Option<Duration> {
        self.fail_streak += 1;
        let delay = if wait {
            let shift = self.fail_streak.saturating_sub(1).min(10);
            Some((WAIT_BACKOFF_START * (1u32 << shift)).min(WAIT_BACKOFF_CAP))
        } else {
            let failures = self.failures.get_or_insert_with(|| {
                Box::new(TokenBucket::new(per_sec(NOWAIT_FAILURES_PER_SEC), now))
            });
            let _ = failures.try_take(now);
            let next = failures.next_token_at(now);
            (next > now).then(|| next.saturating_duration_since(now))
        };
        delay.map(|d| d.max(Duration::from_millis(1)))
    }

    /// A `wait` child (of a service without `rate`) is to start: `false`
    /// when the service is looping and pauses for LOOP_PAUSE instead.
    pub fn wait_start(&mut self, now: Instant) -> bool {
        self.wait_starts
            .get_or_insert_with(|| Box::new(TokenBucket::new(per_sec(WAIT_STARTS_PER_SEC), now)))
            .try_take(now)
    }
}

#[cfg(test)]
mod tests;
