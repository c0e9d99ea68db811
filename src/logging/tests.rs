//! Unit tests of the log: rendering, field parsing, quoting, the writer.

use super::quote;
use super::writer::whole_lines;
use std::io;

/// A reader that takes `first` bytes of the first write, then
/// everything (`None`: nothing at all after the first write).
fn reader(
    first: usize,
    then: Option<()>,
    out: &mut Vec<u8>,
) -> impl FnMut(&[u8]) -> io::Result<usize> + '_ {
    let mut calls = 0;
    move |b: &[u8]| {
        calls += 1;
        let n = match (calls, then) {
            (1, _) => b.len().min(first),
            (_, Some(())) => b.len(),
            (_, None) => 0,
        };
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        out.extend_from_slice(&b[..n]);
        Ok(n)
    }
}

#[test]
fn a_batch_goes_out_in_whole_lines() {
    let batch = b"one\ntwo\nthree\n";
    let mut out = Vec::new();
    assert_eq!(
        whole_lines(batch, 100, reader(100, None, &mut out)),
        (3, &b""[..])
    );
    assert_eq!(out, batch);
    // Cut at a line's end: two out, the third dropped, not retried.
    let mut out = Vec::new();
    assert_eq!(
        whole_lines(batch, 100, reader(8, Some(()), &mut out)),
        (2, &b""[..])
    );
    assert_eq!(out, b"one\ntwo\n");
    // Cut mid-line: that line is finished, the next is dropped.
    let mut out = Vec::new();
    assert_eq!(
        whole_lines(batch, 100, reader(6, Some(()), &mut out)),
        (2, &b""[..])
    );
    assert_eq!(out, b"one\ntwo\n");
    // Cut mid-line and the reader takes no more: the line counts as
    // written (it was started) and its rest comes back to be written
    // before anything else; what follows is dropped.
    let mut out = Vec::new();
    assert_eq!(
        whole_lines(batch, 100, reader(6, None, &mut out)),
        (2, &b"o\n"[..])
    );
    assert_eq!(out, b"one\ntw");
    // In chunks that end at a line's end: a reader that takes the
    // first chunk and no more loses whole lines only.
    let mut out = Vec::new();
    assert_eq!(
        whole_lines(batch, 9, reader(8, None, &mut out)),
        (2, &b""[..])
    );
    assert_eq!(out, b"one\ntwo\n");
    let mut out = Vec::new();
    assert_eq!(
        whole_lines(batch, 2, reader(100, Some(()), &mut out)),
        (3, &b""[..])
    );
    assert_eq!(out, batch);
    // Nothing taken: nothing out.
    let mut out = Vec::new();
    assert_eq!(
        whole_lines(batch, 100, reader(0, None, &mut out)),
        (0, &b""[..])
    );
    assert!(out.is_empty());
}

fn held_writer() -> super::writer::Writer {
    super::writer::Writer::new(true)
}

/// A record is one line whatever its text holds: a newline or an
/// escape sequence inside it (a path from the configuration, say) is
/// escaped, never written as the start of another record.
#[test]
fn a_record_stays_one_line() {
    let mut w = held_writer();
    w.take(b"INFO  listening service=a addr=1.2.3.4:1 socket=stream\n");
    w.take(b"ERROR program /x\nERROR forged \x1b[2J not found\n");
    w.take("WARN  a \u{2028} b \u{85} c\n".as_bytes());
    // Pieces of one record are one record.
    w.take(b"INFO  part ");
    w.take(b"one\n");
    assert_eq!(
        String::from_utf8(w.pending.clone()).unwrap(),
        "INFO  listening service=a addr=1.2.3.4:1 socket=stream\n\
         ERROR program /x\\nERROR forged \\x1b[2J not found\n\
         WARN  a \\u{2028} b \\x85 c\n\
         INFO  part one\n"
    );
    assert_eq!(w.pending_lines, 4);
}

/// Text in other scripts and symbols stays on the fast path; only
/// what `one_line` escapes leaves it.
#[test]
fn needs_escape_finds_only_what_one_line_escapes() {
    assert!(!super::needs_escape("£ ° § – — “x” … € → µs".as_bytes()));
    for bad in [
        "a\nb", "\x1b[2J", "\u{85}", "\u{9f}", "\u{2028}", "\u{2029}", "\x7f",
    ] {
        assert!(super::needs_escape(bad.as_bytes()), "{bad:?}");
    }
}

#[test]
fn one_line_leaves_plain_text_alone() {
    assert!(matches!(
        super::one_line("µs ÷ plain"),
        std::borrow::Cow::Borrowed(_)
    ));
    assert_eq!(super::one_line("a\tb\rc"), "a\\tb\\rc");
}

fn text(journal: bool) -> super::Style {
    super::Style {
        format: super::LogFormat::Text,
        journal,
    }
}

fn json(journal: bool) -> super::Style {
    super::Style {
        format: super::LogFormat::Json,
        journal,
    }
}

fn at(secs: u64, micros: u32) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::new(secs, micros * 1000)
}

#[test]
fn timestamps_are_rfc3339_utc() {
    use super::record::timestamp;
    assert_eq!(timestamp(at(0, 0), 3), "1970-01-01T00:00:00.000Z");
    // A leap day, and truncation (never rounding up into the next
    // second).
    assert_eq!(
        timestamp(at(951_782_399, 999_999), 3),
        "2000-02-28T23:59:59.999Z"
    );
    assert_eq!(
        timestamp(at(951_782_400, 1), 6),
        "2000-02-29T00:00:00.000001Z"
    );
    assert_eq!(
        timestamp(at(1_798_761_599, 123_456), 6),
        "2026-12-31T23:59:59.123456Z"
    );
    assert_eq!(
        timestamp(at(4_107_542_400, 0), 3),
        "2100-03-01T00:00:00.000Z"
    );
}

#[test]
fn text_has_the_time_or_the_journal_priority() {
    use log::Level;
    let t = at(0, 5000);
    assert_eq!(
        super::record::render(text(false), Level::Info, "ready pid=1", t),
        "1970-01-01T00:00:00.005Z INFO  ready pid=1\n"
    );
    for (level, want) in [
        (Level::Error, "<3>ERROR x\n"),
        (Level::Warn, "<4>WARN  x\n"),
        (Level::Info, "<6>INFO  x\n"),
        (Level::Debug, "<7>DEBUG x\n"),
        (Level::Trace, "<7>TRACE x\n"),
    ] {
        assert_eq!(super::record::render(text(true), level, "x", t), want);
    }
    assert!(super::record::render(json(true), Level::Warn, "x", t).starts_with("<4>{\"ts\":"));
}

#[test]
fn the_journal_is_stderr_only_when_device_and_inode_match() {
    let st = nix::sys::stat::fstat(0).unwrap();
    let both = format!("{}:{}", st.st_dev, st.st_ino);
    assert!(super::journal_matches(Some(&both), Some(st)));
    let other = format!("{}:{}", st.st_dev, st.st_ino + 1);
    assert!(!super::journal_matches(Some(&other), Some(st)));
    for bad in ["", ":", "1", "x:y", &format!("{}", st.st_dev)] {
        assert!(!super::journal_matches(Some(bad), Some(st)), "{bad:?}");
    }
    assert!(!super::journal_matches(None, Some(st)));
    assert!(!super::journal_matches(Some(&both), None));
}

#[test]
fn json_records_carry_message_and_fields() {
    use log::Level;
    let line = super::record::render(
        json(false),
        Level::Error,
        "exec failed service=a step=exec error=\"No such file\"",
        at(0, 0),
    );
    assert_eq!(
        line,
        "{\"ts\":\"1970-01-01T00:00:00.000000Z\",\"level\":\"ERROR\",\"msg\":\"exec failed\",\
         \"service\":\"a\",\"step\":\"exec\",\"error\":\"No such file\"}\n"
    );
    // The three keys are never taken by a field.
    let line = super::record::render(json(false), Level::Info, "x msg=a ts=b", at(0, 0));
    assert!(
        line.ends_with("\"msg\":\"x\",\"field_msg\":\"a\",\"field_ts\":\"b\"}\n"),
        "{line}"
    );
}

/// What `quote` writes, `split_fields` reads back exactly; text that
/// no field list ends is all message.
#[test]
fn fields_round_trip_through_quote() {
    use super::{quote, record::split_fields};
    for v in [
        "plain",
        "",
        "two words",
        "a\"b\\c",
        "tab\tnl\ncr\r",
        "\x1b[2J \x7f",
        "c1 \u{85} \u{9f}",
        "k=v",
        "\u{2028} µ 日本",
        "\\x41",
    ] {
        let body = format!("stderr service=s line={} cut=true", quote(v));
        let (msg, fields) = split_fields(&body);
        assert_eq!(msg, "stderr", "{body}");
        assert_eq!(
            fields,
            vec![
                ("service", "s".to_string()),
                ("line", v.to_string()),
                ("cut", "true".to_string())
            ],
            "{body}"
        );
    }
    for whole in [
        "reload failed errors=2 (the running configuration is unchanged)",
        "config error: /x.yaml:1:2: bad \"k=v\"",
        "reloading",
        "x key=\"unterminated",
        "x key=\"bad\\q\"",
        "x =v",
    ] {
        assert_eq!(split_fields(whole), (whole, Vec::new()), "{whole}");
    }
    // The first ` key=` from which the rest is fields starts them.
    assert_eq!(
        split_fields("closed at=5 addr=1.2.3.4:5"),
        (
            "closed",
            vec![("at", "5".into()), ("addr", "1.2.3.4:5".into())]
        )
    );
}

/// A remark in parentheses after the fields ends the message; the
/// fields before it stay fields.
#[test]
fn a_remark_after_the_fields_is_message() {
    use super::record::split_record;
    let (msg, fields) =
        split_record("inherited socket unused fd=3 addr=127.0.0.1:5 socket=stream (closed)");
    assert_eq!(msg, "inherited socket unused (closed)");
    assert_eq!(
        fields,
        vec![
            ("fd", "3".into()),
            ("addr", "127.0.0.1:5".into()),
            ("socket", "stream".into())
        ]
    );
    let (msg, fields) =
        split_record("reload failed errors=2 (the running configuration is unchanged)");
    assert_eq!(
        msg,
        "reload failed (the running configuration is unchanged)"
    );
    assert_eq!(fields, vec![("errors", "2".into())]);
    let (msg, fields) = split_record("exit service=s error=\"a (b)\"");
    assert_eq!(msg, "exit");
    assert_eq!(fields[1], ("error", "a (b)".into()));
    for whole in ["nothing (here)", "reloading", "x (y=z)"] {
        assert_eq!(split_record(whole), (whole.into(), Vec::new()), "{whole}");
    }
}

/// Bytes that are not UTF-8 are `\xNN` (from 80 up) in the text form,
/// apart from a backslash the child wrote; JSON shows the escape.
#[test]
fn bytes_that_are_not_utf8_are_escapes() {
    use super::{quote_bytes, record::split_fields};
    let q = quote_bytes(b"a\xffb\\x41 \xc3");
    assert_eq!(q, "\"a\\xffb\\\\x41 \\xc3\"");
    let body = format!("stderr line={q}");
    assert_eq!(
        split_fields(&body).1,
        vec![("line", "a\\xffb\\x41 \\xc3".to_string())]
    );
    assert_eq!(quote_bytes("ok µ".as_bytes()), "\"ok µ\"");
    let mut out = String::new();
    super::record::json_str(&mut out, "a\"\\\n\u{1b}\u{85}\u{2028}é");
    assert_eq!(out, "\"a\\\"\\\\\\n\\u001b\\u0085\\u2028é\"");
}

#[test]
fn quote_only_when_needed() {
    assert_eq!(quote("plain"), "plain");
    assert_eq!(quote("No such file"), "\"No such file\"");
    assert_eq!(quote("a\"b\n"), "\"a\\\"b\\n\"");
    assert_eq!(quote(""), "\"\"");
    // C1 controls as \u{…}: \xNN from 80 up is left to bytes.
    assert_eq!(quote("a\u{85}"), "\"a\\u{0085}\"");
}
