//! One record rendered as a line: the text form (timestamp or journal
//! priority first) or a JSON object, and the `key=value` field parsing the
//! JSON form rests on.

use std::time::{SystemTime, UNIX_EPOCH};

use log::Level;

use super::{LogFormat, Style};

/// One record as a whole line, newline included: `body` is the message
/// and its `key=value` fields as the call site wrote them.
pub(super) fn render(style: Style, level: Level, body: &str, now: SystemTime) -> String {
    let mut out = String::with_capacity(body.len() + 48);
    if style.journal {
        // sd-daemon(3): <3> error, <4> warning, <6> info, <7> debug.
        let prio = match level {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
            Level::Debug | Level::Trace => 7,
        };
        out.push_str(&format!("<{prio}>"));
    }
    match style.format {
        LogFormat::Text => {
            if !style.journal {
                out.push_str(&timestamp(now, 3));
                out.push(' ');
            }
            out.push_str(&format!("{:<5} {body}", level.as_str()));
        }
        LogFormat::Json => json_record(&mut out, &timestamp(now, 6), level, body),
    }
    out.push('\n');
    out
}

/// `now` in RFC 3339, UTC, with `digits` (3 or 6) fractional digits:
/// `2026-01-02T03:04:05.678Z`.
pub(super) fn timestamp(now: SystemTime, digits: u32) -> String {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    let frac = d.subsec_nanos() / 10u32.pow(9 - digits);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{frac:0w$}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        w = digits as usize
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
pub(super) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Appends `{"ts":…,"level":…,"msg":…,KEY:VALUE…}`: the message and the
/// fields of `body` (see [`split_fields`]), every value a string with the
/// text form's quoting undone.
pub(super) fn json_record(out: &mut String, ts: &str, level: Level, body: &str) {
    let (msg, fields) = split_record(body);
    out.push_str("{\"ts\":");
    json_str(out, ts);
    out.push_str(",\"level\":");
    json_str(out, level.as_str());
    out.push_str(",\"msg\":");
    json_str(out, &msg);
    for (key, value) in &fields {
        out.push(',');
        // A field never takes the place of the three keys every record has.
        if matches!(*key, "ts" | "level" | "msg") {
            json_str(out, &format!("field_{key}"));
        } else {
            json_str(out, key);
        }
        out.push(':');
        json_str(out, value);
    }
    out.push('}');
}

/// `s` as a JSON string. Besides what JSON requires, DEL, the C1 controls
/// and U+2028/U+2029 are escaped too: a record is one line for any reader
/// (see [`needs_escape`](super::needs_escape)).
pub(super) fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// [`split_fields`], and a remark in parentheses after the fields
/// (`inherited socket unused fd=3 addr=… (closed)`, `reload failed
/// errors=2 (the running configuration is unchanged)`) is the end of the
/// message: the fields before it stay fields.
pub(super) fn split_record(body: &str) -> (std::borrow::Cow<'_, str>, Vec<(&str, String)>) {
    if body.ends_with(')')
        && let Some(i) = body.rfind(" (")
    {
        let (head, note) = (&body[..i], &body[i..]);
        let (msg, fields) = split_fields(head);
        if !fields.is_empty() {
            return (format!("{msg}{note}").into(), fields);
        }
    }
    let (msg, fields) = split_fields(body);
    (msg.into(), fields)
}

/// Splits a record's text into its message and its `key=value` fields:
/// the message is the text before the first ` key=` from which the rest
/// of the record reads as fields (values bare, or quoted as [`quote`](super::quote) and
/// [`quote_bytes`](super::quote_bytes) quote them). A record whose end is no list of fields
/// is all message.
pub(super) fn split_fields(body: &str) -> (&str, Vec<(&str, String)>) {
    for (i, _) in body.match_indices(' ') {
        let rest = &body[i + 1..];
        let key_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
            .count();
        if key_len == 0 || rest.as_bytes().get(key_len) != Some(&b'=') {
            continue;
        }
        if let Some(fields) = parse_fields(rest) {
            return (&body[..i], fields);
        }
    }
    (body, Vec::new())
}

/// `key=value key="quoted value" …` to the end of `s`, or `None`.
pub(super) fn parse_fields(mut s: &str) -> Option<Vec<(&str, String)>> {
    let mut out = Vec::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once('=')?;
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return None;
        }
        let (value, rest) = match rest.strip_prefix('"') {
            Some(q) => unquote(q)?,
            None => {
                let end = rest.find(' ').unwrap_or(rest.len());
                (rest[..end].to_string(), &rest[end..])
            }
        };
        out.push((key, value));
        s = match rest.strip_prefix(' ') {
            Some(r) if !r.is_empty() => r,
            Some(_) => return None,
            None if rest.is_empty() => rest,
            None => return None,
        };
    }
    Some(out)
}

/// The value of a quoted field, `s` starting after its opening quote: the
/// text with [`quote`](super::quote)'s escapes undone, and the rest after the closing
/// quote. A byte that is not UTF-8 (`\xNN` from 80 up, see
/// [`quote_bytes`](super::quote_bytes)) cannot be a character: it stays the escape.
pub(super) fn unquote(s: &str) -> Option<(String, &str)> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                c @ ('"' | '\\') => out.push(c),
                'x' => {
                    let hex: String = (0..2)
                        .filter_map(|_| chars.next().map(|(_, c)| c))
                        .collect();
                    let n = u32::from_str_radix(&hex, 16)
                        .ok()
                        .filter(|_| hex.len() == 2)?;
                    if n < 0x80 {
                        out.push(char::from_u32(n)?);
                    } else {
                        out.push_str(&format!("\\x{hex}"));
                    }
                }
                'u' => {
                    if chars.next()?.1 != '{' {
                        return None;
                    }
                    let mut hex = String::new();
                    loop {
                        match chars.next()?.1 {
                            '}' => break,
                            c if c.is_ascii_hexdigit() && hex.len() < 6 => hex.push(c),
                            _ => return None,
                        }
                    }
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                _ => return None,
            },
            c => out.push(c),
        }
    }
    None
}
