//! Writes imported entries as superd YAML: one `services:` mapping, each
//! service preceded by its source line and followed by its notes as
//! comments.

use std::fmt::Write as _;

use super::{Entry, Severity, Value};

/// The YAML for `entries`, imported by `what` (`inetd`, `xinetd`) from
/// `source`.
pub fn yaml(what: &str, source: &str, entries: &[&Entry]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Imported by `superd import {what}` from {}.",
        one_line(source)
    );
    let _ = writeln!(
        out,
        "# A comment marked \"approximated\" or \"dropped\" is a difference from the source."
    );
    let kept = entries.iter().any(|e| !e.dropped);
    out.push_str(if kept {
        "services:\n"
    } else {
        "services: {}\n"
    });
    for e in entries {
        out.push('\n');
        let _ = writeln!(out, "  # {}: {}", e.loc, one_line(&e.source));
        if !e.dropped {
            let _ = writeln!(out, "  {}:", scalar(&e.name));
            for (field, value) in &e.fields {
                write_field(&mut out, 4, field, value);
            }
        }
        let indent = if e.dropped { "  " } else { "    " };
        for n in &e.notes {
            let _ = writeln!(
                out,
                "{indent}# {}: {}: {}",
                n.loc,
                n.severity.as_str(),
                one_line(&n.text)
            );
        }
        if e.dropped && !e.notes.iter().any(|n| n.severity == Severity::Dropped) {
            let _ = writeln!(out, "{indent}# dropped");
        }
    }
    out
}

fn write_field(out: &mut String, indent: usize, key: &str, value: &Value) {
    let pad = " ".repeat(indent);
    match value {
        Value::Map(items) if items.is_empty() => {
            let _ = writeln!(out, "{pad}{key}: {{}}");
        }
        Value::Map(items) => {
            let _ = writeln!(out, "{pad}{key}:");
            for (k, v) in items {
                write_field(out, indent + 2, &scalar(k), v);
            }
        }
        v => {
            let _ = writeln!(out, "{pad}{key}: {}", inline(v));
        }
    }
}

fn inline(v: &Value) -> String {
    match v {
        Value::Str(s) => scalar(s),
        Value::Int(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::List(items) => {
            let parts: Vec<String> = items.iter().map(inline).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Map(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|(k, v)| format!("{}: {}", scalar(k), inline(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

/// A string as a YAML scalar: plain when nothing could read it as another
/// type or another structure, double-quoted otherwise.
fn scalar(s: &str) -> String {
    const WORDS: [&str; 12] = [
        "true", "false", "yes", "no", "on", "off", "null", "y", "n", "~", "inf", "nan",
    ];
    let plain = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-' | b'+'))
        && !WORDS.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        return s.to_owned();
    }
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\r' => q.push_str("\\r"),
            '\t' => q.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(q, "\\x{:02x}", c as u32);
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// Text for a comment: one line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_plain_only_when_unambiguous() {
        assert_eq!(scalar("/usr/sbin/in.fingerd"), "/usr/sbin/in.fingerd");
        assert_eq!(scalar("nobody"), "nobody");
        assert_eq!(scalar("yes"), "\"yes\"");
        assert_eq!(scalar("022"), "\"022\"");
        assert_eq!(scalar("127.0.0.1:7"), "\"127.0.0.1:7\"");
        assert_eq!(scalar("-s"), "\"-s\"");
        assert_eq!(scalar("421 no\r\n"), "\"421 no\\r\\n\"");
        assert_eq!(scalar("a\"b\\"), "\"a\\\"b\\\\\"");
        assert_eq!(scalar("\u{1b}"), "\"\\x1b\"");
    }
}
