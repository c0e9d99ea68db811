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
    bucket: Option<TokenBucket>,
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
            bucket: rate.map(|r| TokenBucket::new(r, now)),
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
            (None, Some(rate)) => Some(TokenBucket::new(rate, now)),
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
    pub fn source_count(&self, key: SourceKey) -> u32 {
        self.per_source.get(&key).copied().unwrap_or(0)
    }

    /// Sources with at least one live connection.
    pub fn per_source_len(&self) -> usize {
        self.per_source.len()
    }

    pub fn max_connections(&self) -> u32 {
        self.max_connections
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(tokens: u32, per_secs: u64) -> Rate {
        Rate {
            tokens,
            per: Duration::from_secs(per_secs),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// An upgrade carries a bucket's fill, fraction included; another
    /// period is converted and the burst caps it.
    #[test]
    fn a_bucket_fill_survives_an_upgrade() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(3, 1), t0);
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        let half = t0 + Duration::from_millis(500);
        let fill = b.fill(half);
        // One token left, and 0.5 s at 3 a second earned one and a half.
        assert_eq!(fill, [2, 500_000_000, 1_000_000_000]);
        let t1 = t0 + Duration::from_secs(100);
        let mut c = TokenBucket::new(rate(3, 1), t1);
        c.set_fill(fill, t1);
        assert_eq!(c.available(t1), b.available(half));
        assert_eq!(c.next_token_at(t1), t1);
        assert!(c.try_take(t1));
        assert!(c.try_take(t1));
        // Half a token left: the next one a sixth of a second later.
        assert_eq!(c.next_token_at(t1) - t1, Duration::from_nanos(166_666_667));
        // Another period: the same share of a token.
        let mut m = TokenBucket::new(rate(3, 60), t1);
        m.set_fill([1, 500_000_000, 1_000_000_000], t1);
        assert_eq!(m.fill(t1), [1, 30_000_000_000, 60_000_000_000]);
        // Never past the burst.
        m.set_fill([10, 0, 1_000_000_000], t1);
        assert_eq!(m.available(t1), 3);
        let mut l = ServiceLimits::new(1, None, Some(rate(3, 1)), t0);
        assert!(l.take_rate_token(t0).is_ok());
        let f = l.rate_fill(t0).unwrap();
        let mut l2 = ServiceLimits::new(1, None, Some(rate(3, 1)), t1);
        l2.set_rate_fill(f, t1);
        assert_eq!(l2.rate_tokens(t1), Some(2));
        assert_eq!(ServiceLimits::new(1, None, None, t0).rate_fill(t0), None);
    }

    fn ns(n: u64) -> Duration {
        Duration::from_nanos(n)
    }

    #[test]
    fn bucket_starts_full_and_bursts() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(3, 1), t0);
        assert_eq!(b.available(t0), 3);
        assert_eq!(b.next_token_at(t0), t0);
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0));
        assert_eq!(b.available(t0), 0);
    }

    #[test]
    fn bucket_refill_timing_is_exact() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(3, 1), t0);
        for _ in 0..3 {
            assert!(b.try_take(t0));
        }
        // 1e9 / 3 ns per token, rounded up to the first whole nanosecond.
        let at = b.next_token_at(t0);
        assert_eq!(at, t0 + ns(333_333_334));
        assert_eq!(b.next_token_at(t0 + ns(100)), at);
        assert!(!b.try_take(at - ns(1)));
        assert_eq!(b.next_token_at(at - ns(1)), at);
        assert_eq!(b.next_token_at(at), at);
        assert!(b.try_take(at));
        assert!(!b.try_take(at));
        // The second token comes at 2e9/3 from t0, not 2 * ceil(1e9/3).
        assert_eq!(b.next_token_at(at), t0 + ns(666_666_667));
    }

    #[test]
    fn bucket_does_not_drift() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(3, 1), t0);
        for _ in 0..3 {
            assert!(b.try_take(t0));
        }
        let mut t = t0;
        for _ in 0..3000 {
            t = b.next_token_at(t);
            assert!(b.try_take(t));
            assert!(!b.try_take(t));
        }
        assert_eq!(t, t0 + Duration::from_secs(1000));
    }

    #[test]
    fn bucket_refill_is_capped_at_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(2, 60), t0);
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(b.available(later), 2);
        assert!(b.try_take(later));
        assert!(b.try_take(later));
        assert!(!b.try_take(later));
        assert_eq!(b.next_token_at(later), later + Duration::from_secs(30));
    }

    #[test]
    fn bucket_ignores_an_earlier_instant() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut b = TokenBucket::new(rate(1, 1), t1);
        assert!(b.try_take(t1));
        assert!(!b.try_take(t0));
        assert_eq!(b.next_token_at(t0), t1 + Duration::from_secs(1));
    }

    #[test]
    fn bucket_set_rate_keeps_fill_clamped() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(10, 1), t0);
        for _ in 0..4 {
            assert!(b.try_take(t0));
        }
        b.set_rate(rate(20, 1), t0);
        assert_eq!(b.available(t0), 6, "a reload grants no fresh burst");
        b.set_rate(rate(3, 1), t0);
        assert_eq!(b.available(t0), 3, "clamped to the new burst");
        for _ in 0..3 {
            assert!(b.try_take(t0));
        }
        // Refills at the new rate from now on.
        assert_eq!(b.next_token_at(t0), t0 + ns(333_333_334));
    }

    #[test]
    fn bucket_set_rate_keeps_a_fraction_across_periods() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(1, 1), t0);
        assert!(b.try_take(t0));
        let half = t0 + Duration::from_millis(500);
        // Half a token earned at 1/s; at 60/m (the same rate in other
        // units) it is still half a token.
        b.set_rate(rate(60, 60), half);
        assert_eq!(b.next_token_at(half), t0 + Duration::from_secs(1));
        // At 1/m the missing half takes 30 s.
        b.set_rate(rate(1, 60), half);
        assert_eq!(b.next_token_at(half), half + Duration::from_secs(30));
    }

    #[test]
    fn bucket_clamps_a_zero_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(
            Rate {
                tokens: 0,
                per: Duration::ZERO,
            },
            t0,
        );
        assert!(b.try_take(t0));
        assert_eq!(b.next_token_at(t0), t0 + ns(1));
    }

    #[test]
    fn source_keys() {
        let a = source_key(ip("10.0.0.1"));
        let b = source_key(ip("10.0.0.2"));
        assert_ne!(a, b);
        assert_eq!(a, source_key(ip("::ffff:10.0.0.1")));
        assert_eq!(
            source_key(ip("2001:db8:1:2::1")),
            source_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            source_key(ip("2001:db8:1:2::1")),
            source_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(a.to_string(), "10.0.0.1");
        assert_eq!(
            source_key(ip("2001:db8:1:2::1")).to_string(),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn per_source_v4() {
        let t0 = Instant::now();
        let mut l = ServiceLimits::new(100, Some(2), None, t0);
        let a = source_key(ip("192.0.2.1"));
        let b = source_key(ip("192.0.2.2"));
        assert_eq!(l.admit_source(a), Ok(()));
        assert_eq!(l.admit_source(a), Ok(()));
        assert_eq!(l.admit_source(a), Err(Refusal::MaxPerSource));
        assert_eq!(l.source_count(a), 2, "a refusal changes nothing");
        assert_eq!(l.admit_source(b), Ok(()));
        assert_eq!(l.admit_source(b), Ok(()));
        assert_eq!(l.admit_source(b), Err(Refusal::MaxPerSource));
        assert_eq!(l.per_source_len(), 2);
    }

    #[test]
    fn per_source_mapped_v4_is_v4() {
        let t0 = Instant::now();
        let mut l = ServiceLimits::new(100, Some(1), None, t0);
        assert_eq!(l.admit_source(source_key(ip("192.0.2.1"))), Ok(()));
        assert_eq!(
            l.admit_source(source_key(ip("::ffff:192.0.2.1"))),
            Err(Refusal::MaxPerSource)
        );
    }

    #[test]
    fn per_source_v6_by_64() {
        let t0 = Instant::now();
        let mut l = ServiceLimits::new(100, Some(1), None, t0);
        assert_eq!(l.admit_source(source_key(ip("2001:db8:0:1::1"))), Ok(()));
        assert_eq!(
            l.admit_source(source_key(ip("2001:db8:0:1::2"))),
            Err(Refusal::MaxPerSource),
            "same /64"
        );
        assert_eq!(l.admit_source(source_key(ip("2001:db8:0:2::1"))), Ok(()));
        assert_eq!(l.per_source_len(), 2);
    }

    #[test]
    fn release_at_end_and_no_underflow() {
        let t0 = Instant::now();
        let mut l = ServiceLimits::new(100, Some(1), None, t0);
        let a = source_key(ip("192.0.2.1"));
        assert_eq!(l.admit_source(a), Ok(()));
        l.connection_started();
        assert_eq!(l.active(), 1);
        assert_eq!(l.admit_source(a), Err(Refusal::MaxPerSource));
        l.connection_ended(Some(a));
        assert_eq!(l.active(), 0);
        assert_eq!(l.per_source_len(), 0);
        assert_eq!(l.admit_source(a), Ok(()));
        l.connection_started();
        l.connection_ended(Some(a));
        // Unmatched ends saturate at zero.
        l.connection_ended(Some(a));
        l.connection_ended(None);
        assert_eq!(l.active(), 0);
        assert_eq!(l.source_count(a), 0);
        assert_eq!(l.per_source_len(), 0);
        assert_eq!(l.admit_source(a), Ok(()));
        assert_eq!(l.source_count(a), 1);
    }

    #[test]
    fn map_stays_small_over_many_peers() {
        let t0 = Instant::now();
        let mut l = ServiceLimits::new(100, Some(1), None, t0);
        let busy = source_key(ip("198.51.100.1"));
        assert_eq!(l.admit_source(busy), Ok(()));
        l.connection_started();
        for i in 0..100_000u32 {
            let peer = source_key(IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
            assert_eq!(l.admit_source(peer), Ok(()));
            l.connection_started();
            l.connection_ended(Some(peer));
            // Refused ones leave nothing behind either.
            assert_eq!(l.admit_source(busy), Err(Refusal::MaxPerSource));
        }
        assert_eq!(l.active(), 1);
        assert_eq!(l.per_source_len(), 1);
        assert!(l.per_source.capacity() < 16);
        l.connection_ended(Some(busy));
        assert_eq!(l.per_source_len(), 0);
    }

    #[test]
    fn zero_per_source_refuses_and_leaves_nothing() {
        let t0 = Instant::now();
        let mut l = ServiceLimits::new(100, Some(0), None, t0);
        let a = source_key(ip("192.0.2.1"));
        assert_eq!(l.admit_source(a), Err(Refusal::MaxPerSource));
        assert_eq!(l.per_source_len(), 0);
    }

    #[test]
    fn unlimited_per_source_still_counts() {
        let t0 = Instant::now();
        let mut l = ServiceLimits::new(100, None, None, t0);
        let a = source_key(ip("192.0.2.1"));
        for _ in 0..3 {
            assert_eq!(l.admit_source(a), Ok(()));
            l.connection_started();
        }
        // A reload that sets the limit starts from the true count.
        l.reconfigure(100, Some(3), None, t0);
        assert_eq!(l.admit_source(a), Err(Refusal::MaxPerSource));
        l.connection_ended(Some(a));
        assert_eq!(l.admit_source(a), Ok(()));
    }

    #[test]
    fn capacity() {
        let t0 = Instant::now();
        let mut l = ServiceLimits::new(2, None, None, t0);
        assert!(!l.at_capacity());
        l.connection_started();
        assert!(!l.at_capacity());
        l.connection_started();
        assert!(l.at_capacity());
        l.connection_ended(None);
        assert!(!l.at_capacity());
        l.connection_started();
        // Lowering the cap on reload closes nothing; it holds back new ones.
        l.reconfigure(1, None, None, t0);
        assert!(l.at_capacity());
        assert_eq!(l.active(), 2);
        l.connection_ended(None);
        assert!(l.at_capacity());
        l.connection_ended(None);
        assert!(!l.at_capacity());
    }

    #[test]
    fn rate_gates_accept() {
        let t0 = Instant::now();
        let mut l = ServiceLimits::new(100, None, Some(rate(2, 1)), t0);
        assert_eq!(l.rate_ready(t0), Ok(()));
        assert_eq!(l.take_rate_token(t0), Ok(()));
        assert_eq!(l.take_rate_token(t0), Ok(()));
        let at = t0 + Duration::from_millis(500);
        assert_eq!(l.rate_ready(t0), Err(at));
        assert_eq!(l.take_rate_token(t0), Err(at));
        assert_eq!(l.rate_ready(at), Ok(()));
        assert_eq!(l.take_rate_token(at), Ok(()));

        let mut free = ServiceLimits::new(100, None, None, t0);
        for _ in 0..1000 {
            assert_eq!(free.take_rate_token(t0), Ok(()));
        }
    }

    #[test]
    fn reconfigure_keeps_counts_and_fill() {
        let t0 = Instant::now();
        let mut l = ServiceLimits::new(10, Some(5), Some(rate(4, 1)), t0);
        let a = source_key(ip("192.0.2.1"));
        assert_eq!(l.admit_source(a), Ok(()));
        l.connection_started();
        for _ in 0..3 {
            assert_eq!(l.take_rate_token(t0), Ok(()));
        }
        l.reconfigure(20, Some(1), Some(rate(8, 1)), t0);
        assert_eq!(l.active(), 1);
        assert_eq!(l.source_count(a), 1);
        assert_eq!(l.max_connections(), 20);
        assert_eq!(l.max_per_source(), Some(1));
        assert_eq!(l.admit_source(a), Err(Refusal::MaxPerSource));
        // One token was left; the new rate does not refill it.
        assert_eq!(l.take_rate_token(t0), Ok(()));
        assert_eq!(l.take_rate_token(t0), Err(t0 + ns(125_000_000)));
        // Dropping the rate frees accept; setting it again starts full.
        l.reconfigure(20, Some(1), None, t0);
        assert_eq!(l.rate_ready(t0), Ok(()));
        l.reconfigure(20, Some(1), Some(rate(2, 1)), t0);
        assert_eq!(l.take_rate_token(t0), Ok(()));
        assert_eq!(l.take_rate_token(t0), Ok(()));
        assert!(l.take_rate_token(t0).is_err());
    }
}

#[cfg(test)]
mod log_budget_tests {
    use super::*;

    #[test]
    fn one_line_per_interval_then_the_count() {
        let t0 = Instant::now();
        let i = Duration::from_secs(1);
        let mut b = LogBudget::default();
        assert_eq!(b.take(t0, i), Some(0));
        for k in 1..=5 {
            assert_eq!(b.take(t0 + Duration::from_millis(k * 100), i), None);
        }
        assert_eq!(b.take(t0 + i, i), Some(5));
        assert_eq!(b.take(t0 + i + Duration::from_millis(1), i), None);
        assert_eq!(b.take(t0 + 3 * i, i), Some(1));
    }
}
