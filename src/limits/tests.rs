//! Unit tests of the limits: source keys, the token bucket, the
//! per-service limits, the log budget and the pacing of failures.

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

#[test]
fn wait_failures_back_off_doubling_up_to_the_cap() {
    let t0 = Instant::now();
    let mut p = Pacing::default();
    let delays: Vec<u64> = (0..10)
        .map(|_| p.exec_failed(true, t0).unwrap().as_millis() as u64)
        .collect();
    assert_eq!(
        delays,
        [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
    );
    assert_eq!(p.fail_streak(), 10);
    p.exec_ok();
    assert_eq!(p.fail_streak(), 0);
    assert_eq!(p.exec_failed(true, t0), Some(Duration::from_millis(100)));
}

#[test]
fn nowait_failures_pause_only_past_the_failure_rate() {
    let t0 = Instant::now();
    let mut p = Pacing::default();
    for _ in 0..NOWAIT_FAILURES_PER_SEC - 1 {
        assert_eq!(p.exec_failed(false, t0), None);
    }
    // The 50th failure leaves no token for a 51st: wait for one (1/50 s).
    assert_eq!(p.exec_failed(false, t0), Some(Duration::from_millis(20)));
    // A second later the bucket is full again.
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(p.exec_failed(false, t1), None);
}

#[test]
fn wait_starts_past_the_rate_are_looping() {
    let t0 = Instant::now();
    let mut p = Pacing::default();
    for _ in 0..WAIT_STARTS_PER_SEC {
        assert!(p.wait_start(t0));
    }
    assert!(!p.wait_start(t0));
    assert!(p.wait_start(t0 + Duration::from_millis(20)));
}
