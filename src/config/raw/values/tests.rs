//! Unit tests of the value parsers: sizes, durations, modes, counts, rlimits.

use super::*;

#[test]
fn sizes_take_binary_suffixes() {
    assert_eq!(parse_size("0"), Some(0));
    assert_eq!(parse_size("64k"), Some(64 << 10));
    assert_eq!(parse_size("64M"), Some(64 << 20));
    assert_eq!(parse_size("2G"), Some(2 << 30));
    assert_eq!(parse_size("1T"), Some(1 << 40));
    assert_eq!(parse_size(""), None);
    assert_eq!(parse_size("M"), None);
    assert_eq!(parse_size("-1"), None);
    assert_eq!(parse_size("1.5M"), None);
    assert_eq!(parse_size("99999999999T"), None);
}

#[test]
fn durations_in_every_unit() {
    let d = |s: &str| Dur::from_str(s).map(|d| d.0);
    assert_eq!(d("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(d("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(d("30"), Ok(Duration::from_secs(30)));
    assert_eq!(d("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(d("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(d("1.5s"), Ok(Duration::from_millis(1500)));
    assert!(d("5d").is_err());
    assert!(d("").is_err());
    assert!(d("1000000h").unwrap_err().contains("too long"));
}

#[test]
fn modes_are_octal_strings() {
    assert_eq!(Octal::from_str("022").map(|o| o.0), Ok(0o22));
    assert_eq!(Octal::from_str("777").map(|o| o.0), Ok(0o777));
    assert!(Octal::from_str("1777").is_err());
    assert!(Octal::from_str("8").is_err());
    assert!(Octal::from_str("").is_err());
    assert!(Octal::from_u64(22).is_err());
}

#[test]
fn counts_start_at_one() {
    assert_eq!(Count::from_u64(1).map(|c| c.0), Ok(1));
    assert!(Count::from_u64(0).is_err());
    assert!(Count::from_i64(-1).is_err());
    assert!(Count::from_u64(u64::from(u32::MAX)).is_err());
}

#[test]
fn rlimits_soft_and_hard() {
    let r = |s: &str| RlimitSpec::from_str(s).map(|r| (r.soft, r.hard));
    assert_eq!(r("1024"), Ok((Some(1024), Some(1024))));
    assert_eq!(r("64M"), Ok((Some(64 << 20), Some(64 << 20))));
    assert_eq!(r("1024:4096"), Ok((Some(1024), Some(4096))));
    assert_eq!(r("unlimited"), Ok((None, None)));
    assert!(r("4096:1024").is_err());
    assert!(r("unlimited:1024").is_err());
    assert!(r("x").is_err());
}
