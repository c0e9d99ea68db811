//! serde_yaml's error messages in superd's wording: no position suffix
//! (the error carries it), the field named, and a hint for what an inetd
//! or xinetd admin probably meant.

use super::raw;

/// serde_yaml's message without its ` at line N column M` suffix and its
/// `services.echo.listen: ` prefix (the position says both), and serde's
/// backticks in the style of our messages: `unknown field "lisen",
/// expected one of listen, socket, ...`.
pub(super) fn clean_message(e: &serde_yaml::Error) -> String {
    let mut s = e.to_string();
    if let Some(loc) = e.location() {
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(i) = s.find(&suffix) {
            s.replace_range(i..i + suffix.len(), "");
        }
    }
    // serde_yaml's path (`services.web.max_connections`) before the
    // message: keep its field, the last segment, so the message says what
    // it is about (`max_connections: expected an integer >= 1, ...`).
    let field = s
        .split_once(": ")
        .map(|(p, _)| p)
        .filter(|p| !p.contains(' '))
        .and_then(|p| {
            let segs: Vec<&str> = p.split('.').collect();
            let deep = match segs.first() {
                Some(&"services") => segs.len() >= 3,
                Some(&"defaults") => segs.len() >= 2,
                _ => false,
            };
            deep.then(|| segs[segs.len() - 1].to_owned())
        });
    if let Some(i) = s.find(raw::MSG) {
        let msg = &s[i + raw::MSG.len_utf8()..];
        return match field {
            Some(f) => format!("{f}: {msg}"),
            None => msg.to_owned(),
        };
    }
    const SERDE: [&str; 7] = [
        "unknown field",
        "unknown variant",
        "invalid type",
        "invalid value",
        "invalid length",
        "missing field",
        "duplicate field",
    ];
    let start = SERDE
        .iter()
        .filter_map(|p| {
            s.match_indices(p)
                .map(|(i, _)| i)
                .find(|&i| i == 0 || s[..i].ends_with(": "))
        })
        .min();
    if let Some(i) = start {
        s.drain(..i);
        // The first `name` is what was found: quote it; the rest is the
        // list of what was expected: bare words.
        if let Some(a) = s.find('`')
            && let Some(b) = s[a + 1..].find('`')
        {
            s.replace_range(a + 1 + b..a + 2 + b, "\"");
            s.replace_range(a..a + 1, "\"");
        }
        s = s.replace('`', "");
        // serde says "expected a or b" for two choices, "expected one of
        // a, b, c" for more: one wording for every list.
        if let Some(at) = s.find(", expected ") {
            let list = &s[at + ", expected ".len()..];
            if let Some((a, b)) = list.split_once(" or ")
                && !a.contains(' ')
                && !b.contains(' ')
            {
                s = format!("{}, expected one of {a}, {b}", &s[..at]);
            }
        }
    }
    hint(s)
}

/// Adds what an inetd or xinetd admin probably meant: YAML 1.1's
/// `yes`/`no` (strings in the YAML superd reads), and a field name close
/// to a known one.
fn hint(mut s: String) -> String {
    if let Some(rest) = s.strip_prefix("invalid type: string \"")
        && let Some((word, _)) = rest.split_once('"')
        && s.ends_with("expected a boolean")
        && matches!(
            word.to_ascii_lowercase().as_str(),
            "yes" | "no" | "on" | "off" | "y" | "n"
        )
    {
        s.push_str(&format!(
            " ({word:?} is a string here, not YAML 1.1's boolean: use true or false)"
        ));
        return s;
    }
    if let Some(rest) = s.strip_prefix("unknown field \"")
        && let Some((word, tail)) = rest.split_once('"')
        && let Some(list) = tail.strip_prefix(", expected one of ")
        && let Some(near) = closest(word, list.split(", "))
    {
        return format!(
            "unknown field \"{word}\", expected one of {list}; did you mean \"{near}\"?"
        );
    }
    s
}

/// The candidate within two edits of `word` (the nearest, the first of
/// equals), if any.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let w: Vec<char> = word.to_ascii_lowercase().chars().collect();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let k: Vec<char> = c.chars().collect();
        // Levenshtein distance, one row at a time.
        let mut row: Vec<usize> = (0..=k.len()).collect();
        for (i, a) in w.iter().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, b) in k.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(a != b)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        let d = row[k.len()];
        let limit = if w.len() <= 3 { 1 } else { 2 };
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_for_inetd_habits() {
        assert_eq!(
            closest("lisen", crate::config::raw::FIELDS.iter().copied()),
            Some("listen")
        );
        assert_eq!(
            closest("usr", crate::config::raw::FIELDS.iter().copied()),
            Some("user")
        );
        assert_eq!(
            closest(
                "zz_no_such_field",
                crate::config::raw::FIELDS.iter().copied()
            ),
            None
        );
        assert_eq!(
            closest("passenv", crate::config::raw::FIELDS.iter().copied()),
            Some("pass_env")
        );
        let h = hint("invalid type: string \"no\", expected a boolean".into());
        assert!(h.ends_with("use true or false)"), "{h}");
        let h = hint("invalid type: string \"maybe\", expected a boolean".into());
        assert!(!h.contains("YAML 1.1"), "{h}");
    }
}
