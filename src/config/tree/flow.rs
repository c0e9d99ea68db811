//! The flow-bracket bound, checked on the text before libyaml reads it
//! (libyaml's scanner does work in the nesting depth for every token).

use super::{Pos, count_chars};

/// Flow brackets nested deeper than this, as `flow_too_deep` counts them,
/// are refused before libyaml sees the text: libyaml's scanner does work in
/// the nesting depth for every token, so a file of 1 MiB of `[` or `{a: `
/// took minutes. Far above `MAX_DEPTH`, so no file this refuses would have
/// been accepted.
pub const MAX_FLOW_BRACKETS: usize = 64;

/// Where flow brackets first nest deeper than `MAX_FLOW_BRACKETS`; `None`
/// when they never do. Errs on the side of counting too deep: every `[` and
/// `{` counts, even inside a string or a comment; a `]` or `}` counts only
/// outside the quoted scalars and comments it can recognise (a quote that
/// starts a token, `#` after a blank).
pub fn flow_too_deep(text: &str) -> Option<Pos> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    // Whether a token may start here: the text start, after a blank or a
    // flow indicator.
    let starts_token = |i: usize| {
        i == 0
            || matches!(
                b[i - 1],
                b' ' | b'\t' | b'\n' | b'\r' | b'[' | b'{' | b',' | b':'
            )
    };
    let open = |i: usize, depth: &mut usize| {
        *depth += 1;
        (*depth > MAX_FLOW_BRACKETS).then_some(i)
    };
    while i < b.len() {
        // Pass over the bytes no arm below acts on, in a tight loop.
        match b[i..].iter().position(|&c| FLOW_BYTES[usize::from(c)]) {
            Some(n) => i += n,
            None => break,
        }
        match b[i] {
            b'[' | b'{' => {
                if let Some(at) = open(i, &mut depth) {
                    return Some(pos_at(text, at));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            q @ (b'"' | b'\'') if starts_token(i) => {
                // Skip the quoted scalar. Its brackets count as opens while
                // it lasts (should the quote be misread, real nesting is
                // still caught), but only as long as it lasts: a quoted
                // `[::1]:7008` must not add to the depth for good.
                let mut inner = depth;
                i += 1;
                while i < b.len() {
                    match b[i] {
                        b'\\' if q == b'"' => i += 1,
                        b'\'' if q == b'\'' && b.get(i + 1) == Some(&b'\'') => i += 1,
                        c if c == q => break,
                        b'[' | b'{' => {
                            if let Some(at) = open(i, &mut inner) {
                                return Some(pos_at(text, at));
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            b'#' if i == 0 || matches!(b[i - 1], b' ' | b'\t' | b'\n' | b'\r') => {
                // A comment's brackets, likewise, only within the comment.
                let mut inner = depth;
                while i < b.len() && b[i] != b'\n' {
                    if matches!(b[i], b'[' | b'{')
                        && let Some(at) = open(i, &mut inner)
                    {
                        return Some(pos_at(text, at));
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The bytes `flow_too_deep` looks at.
const FLOW_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut k = 0;
    let bytes = b"[]{}\"'#";
    while k < bytes.len() {
        t[bytes[k] as usize] = true;
        k += 1;
    }
    t
};

fn pos_at(text: &str, offset: usize) -> Pos {
    let before = &text.as_bytes()[..offset];
    let start = before
        .iter()
        .rposition(|&c| c == b'\n')
        .map_or(0, |n| n + 1);
    Pos {
        line: before.iter().filter(|&&c| c == b'\n').count() + 1,
        column: count_chars(&before[start..]) + 1,
    }
}
