//! The builtin services (echo, discard, daytime, chargen, time): their RFC
//! formats here, a non-blocking stream [`Session`] in `session.rs`, and a UDP
//! drain ([`UdpServer`]) in `udp.rs`. Sockets, registration, timers, limits
//! and logs belong to the event loop; nothing here blocks or sleeps.

mod session;
mod udp;

use std::time::{SystemTime, UNIX_EPOCH};

pub use session::{Carried, CarriedKind, Pump, Session};
pub use udp::{DatagramSocket, UdpServer};

/// The most a stream session holds for one peer (superd(8), BUILTINS): echo stops
/// reading while this much is waiting to be written back.
pub const MAX_BUFFERED: usize = 64 * 1024;

/// Bytes one [`Session::pump`] call may move before it yields with
/// [`Pump::again`], so that one fast peer cannot starve the loop.
pub const PUMP_BUDGET: usize = 256 * 1024;

/// Datagrams one [`UdpServer::serve`] call may handle before it yields with
/// [`UdpDrain::again`].
pub const UDP_BUDGET: usize = 64;

/// The largest datagram read (and so echoed); larger ones are truncated by
/// the kernel. 65535 minus the UDP and IP headers fits.
pub const MAX_DATAGRAM: usize = 64 * 1024;

/// Where echo's buffer starts; it doubles up to [`MAX_BUFFERED`] only for a
/// peer that sends faster than it reads.
const ECHO_INITIAL: usize = 4096;

/// Scratch for input that is read only to be dropped (discard, chargen,
/// daytime, time).
const SCRATCH: usize = 16 * 1024;

// ---------------------------------------------------------------------------
// Formats
// ---------------------------------------------------------------------------

/// Seconds from 1900-01-01 (RFC 868's epoch) to 1970-01-01 (Unix's).
pub const RFC868_OFFSET: i64 = 2_208_988_800;

/// RFC 868: the time as a 32-bit big-endian count of seconds since
/// 1900-01-01 00:00 UTC. The count wraps modulo 2^32 (next in 2036), as the
/// RFC's fixed 32-bit field forces every implementation to.
pub fn format_time(unix_secs: i64) -> [u8; 4] {
    (unix_secs.wrapping_add(RFC868_OFFSET) as u32).to_be_bytes()
}

/// RFC 867 leaves the daytime format free; like inetd we send ctime(3)'s
/// 24 characters (`"%.3s %.3s%3d %.2d:%.2d:%.2d %d"`, so a single-digit day
/// is padded with a space) followed by CRLF. `utc_offset_secs` is added to
/// shift UTC to local time (the event loop passes the local zone's offset
/// from `sys::utc_offset`; 0 gives UTC).
pub fn format_daytime(unix_secs: i64, utc_offset_secs: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let local = unix_secs.saturating_add(utc_offset_secs);
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = (days + 4).rem_euclid(7) as usize;
    format!(
        "{} {}{:3} {:02}:{:02}:{:02} {}\r\n",
        DAYS[weekday],
        MONTHS[(month - 1) as usize],
        day,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        year
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month 1..=12,
/// day 1..=31): Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Characters per chargen line, without the CRLF (RFC 864).
pub const CHARGEN_LINE: usize = 72;
/// One chargen line on the wire, CRLF included.
pub const CHARGEN_LINE_BYTES: usize = CHARGEN_LINE + 2;
/// The 95 printing ASCII characters, space (32) to tilde (126), RFC 864.
const PRINTABLE: usize = 95;
/// The chargen stream repeats after 95 lines.
const CHARGEN_PERIOD: usize = PRINTABLE * CHARGEN_LINE_BYTES;

/// RFC 864's "popular pattern": line k is the 72 printing characters that
/// start at character k (mod 95), cyclically, then CRLF. One whole period,
/// built at compile time; every chargen byte is read from it.
static CHARGEN: [u8; CHARGEN_PERIOD] = chargen_period();

const fn chargen_period() -> [u8; CHARGEN_PERIOD] {
    let mut out = [0u8; CHARGEN_PERIOD];
    let mut line = 0;
    while line < PRINTABLE {
        let mut col = 0;
        while col < CHARGEN_LINE {
            out[line * CHARGEN_LINE_BYTES + col] = b' ' + ((line + col) % PRINTABLE) as u8;
            col += 1;
        }
        out[line * CHARGEN_LINE_BYTES + CHARGEN_LINE] = b'\r';
        out[line * CHARGEN_LINE_BYTES + CHARGEN_LINE + 1] = b'\n';
        line += 1;
    }
    out
}

/// Chargen line `k` (RFC 864), CRLF included; line 95 is line 0 again.
pub fn chargen_line(k: usize) -> &'static [u8] {
    let start = (k % PRINTABLE) * CHARGEN_LINE_BYTES;
    &CHARGEN[start..start + CHARGEN_LINE_BYTES]
}

/// The current time as Unix seconds (what the event loop gives sessions);
/// before 1970 (a broken clock) reads as negative.
pub fn now_unix() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test bytes that repeat only every 251.
    pub(super) fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    // --- formats ---------------------------------------------------------

    #[test]
    fn daytime_is_ctime_with_crlf() {
        let cases = [
            (0, "Thu Jan  1 00:00:00 1970\r\n"),
            (-1, "Wed Dec 31 23:59:59 1969\r\n"),
            (951_123_600, "Mon Feb 21 09:00:00 2000\r\n"),
            (1_709_164_800, "Thu Feb 29 00:00:00 2024\r\n"), // leap day
            (1_699_999_999, "Tue Nov 14 22:13:19 2023\r\n"),
            (1_772_841_600, "Sat Mar  7 00:00:00 2026\r\n"), // single-digit day
            (2_085_978_496, "Thu Feb  7 06:28:16 2036\r\n"), // RFC 868 wraps here
            (4_102_444_800, "Fri Jan  1 00:00:00 2100\r\n"),
            (4_107_542_400, "Mon Mar  1 00:00:00 2100\r\n"), // 2100 is no leap year
        ];
        for (t, want) in cases {
            assert_eq!(format_daytime(t, 0), want, "t={t}");
        }
    }

    #[test]
    fn daytime_applies_the_offset() {
        assert_eq!(format_daytime(0, 19_800), "Thu Jan  1 05:30:00 1970\r\n");
        assert_eq!(format_daytime(0, -3_600), "Wed Dec 31 23:00:00 1969\r\n");
    }

    #[test]
    fn time_is_big_endian_seconds_since_1900() {
        assert_eq!(format_time(0), [0x83, 0xAA, 0x7E, 0x80]); // 2208988800
        assert_eq!(format_time(1_700_000_000), 3_908_988_800u32.to_be_bytes());
        // 2036-02-07T06:28:16Z: the 32-bit count wraps to 0.
        assert_eq!(format_time(2_085_978_495), [0xFF; 4]);
        assert_eq!(format_time(2_085_978_496), [0, 0, 0, 0]);
        assert_eq!(format_time(2_085_978_497), [0, 0, 0, 1]);
    }

    #[test]
    fn chargen_lines_follow_rfc_864() {
        let want = [
            " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefg\r\n",
            "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh\r\n",
            "\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghi\r\n",
        ];
        for (k, w) in want.iter().enumerate() {
            assert_eq!(chargen_line(k), w.as_bytes(), "line {k}");
        }
        assert_eq!(chargen_line(95), chargen_line(0));
        assert_eq!(chargen_line(96), chargen_line(1));
        // Line 94 starts with '~' and wraps to the space.
        assert_eq!(&chargen_line(94)[..3], b"~ !");
        assert!(CHARGEN.chunks(CHARGEN_LINE_BYTES).all(|l| l.len() == 74
            && l[..72].iter().all(|&c| (32..=126).contains(&c))
            && &l[72..] == b"\r\n"));
    }
}
