//! The man pages stay true to the code. Every list checked here is taken
//! from the code itself (the binary's own error messages, its `--help`, the
//! parser and the log calls in `src/`), so a field, option or log message
//! added without documentation fails a test.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::harness::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn page(name: &str) -> String {
    let p = root().join("man").join(name);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Runs superd with `args`, stdin closed, and returns its output.
fn run(args: &[&str]) -> Output {
    Command::new(superd_bin())
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run superd")
}

/// `superd --check` on a file holding `yaml`: its stderr.
fn check_errors(yaml: &str) -> String {
    let dir = TempDir::new("docs");
    dir.write("x.yaml", yaml);
    let out = run(&["--check", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{yaml} should be refused");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The list after `expected` in superd's message for an unknown name:
/// `expected one of a, b, c`, `expected a or b`, `expected a`.
fn expected_list(stderr: &str, what: &str) -> Vec<String> {
    let line = stderr
        .lines()
        .find(|l| l.contains(what) && l.contains("expected"))
        .unwrap_or_else(|| panic!("no {what:?} error with a list in:\n{stderr}"));
    let list = &line[line.rfind("expected").unwrap() + "expected".len()..];
    let list = list.trim().trim_start_matches("one of").trim();
    let names: Vec<String> = list
        .split(", ")
        .flat_map(|s| s.split(" or "))
        .map(|s| s.trim().trim_matches('`').to_string())
        .filter(|s| !s.is_empty())
        .collect();
    assert!(!names.is_empty(), "empty list in {line:?}");
    names
}

/// Every service field the configuration accepts, from the code: the list
/// serde's derive gives when it meets an unknown field.
fn service_fields() -> Vec<String> {
    let err = check_errors("services:\n  x:\n    zz_no_such_field: 1\n");
    let fields = expected_list(&err, "unknown field \"zz_no_such_field\"");
    // A sanity floor, so that a change of the message cannot make the
    // drift test vacuous.
    for f in ["listen", "exec", "builtin", "user", "rlimits", "enabled"] {
        assert!(fields.iter().any(|x| x == f), "{f} not in {fields:?}");
    }
    fields
}

fn top_level_keys() -> Vec<String> {
    let err = check_errors("zz_no_such_key: 1\n");
    expected_list(&err, "unknown field \"zz_no_such_key\"")
}

/// The mdoc source with `\-` turned into `-`, split into lines of words.
fn words(src: &str) -> Vec<Vec<String>> {
    src.replace("\\-", "-")
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// Whether some line has `macro_` immediately followed by `word`.
fn has_macro_word(lines: &[Vec<String>], macro_: &str, word: &str) -> bool {
    lines
        .iter()
        .any(|l| l.windows(2).any(|w| w[0] == macro_ && w[1] == word))
}

#[test]
fn every_service_field_has_an_entry_in_superd_yaml_5() {
    let lines = words(&page("superd.yaml.5"));
    let entries: BTreeSet<&str> = lines
        .iter()
        .filter(|l| {
            l.first().map(String::as_str) == Some(".It")
                && l.get(1).map(String::as_str) == Some("Ic")
        })
        .filter_map(|l| l.get(2).map(String::as_str))
        .collect();
    let missing: Vec<String> = service_fields()
        .into_iter()
        .filter(|f| !entries.contains(f.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "fields accepted by the code without an `.It Ic FIELD` entry in man/superd.yaml.5: {missing:?}"
    );
}

#[test]
fn every_top_level_key_has_an_entry_in_superd_yaml_5() {
    let lines = words(&page("superd.yaml.5"));
    let keys = top_level_keys();
    assert!(keys.iter().any(|k| k == "services"), "{keys:?}");
    for k in keys {
        assert!(
            lines
                .iter()
                .any(|l| l.len() >= 3 && l[0] == ".It" && l[1] == "Ic" && l[2] == k),
            "top-level key {k} has no `.It Ic {k}` entry in man/superd.yaml.5"
        );
    }
}

#[test]
fn every_enumerated_value_appears_in_superd_yaml_5() {
    let src = page("superd.yaml.5");
    let cases = [
        (
            "builtin",
            "services:\n  x:\n    listen: 1\n    builtin: zz\n",
        ),
        (
            "socket type",
            "services:\n  x:\n    listen: 1\n    socket: zz\n",
        ),
        (
            "stderr mode",
            "services:\n  x:\n    listen: 1\n    stderr: zz\n",
        ),
        (
            "rlimit",
            "services:\n  x:\n    listen: 1\n    rlimits: {zz: 1}\n",
        ),
    ];
    for (what, yaml) in cases {
        let err = check_errors(yaml);
        for v in expected_list(&err, &format!("unknown {what} \"zz\"")) {
            assert!(
                src.contains(&v),
                "{what} {v:?} (from the code) is not in man/superd.yaml.5"
            );
        }
    }
}

/// Options from `superd --help`, and from the parser's own source (so an
/// option parsed but missing from the help fails too).
fn options() -> BTreeSet<String> {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut opts = BTreeSet::new();
    let section = help
        .split_once("Options:")
        .map(|(_, s)| s)
        .expect("an Options: section in --help");
    for line in section.lines() {
        let line = line.trim_start();
        if !line.starts_with('-') {
            continue;
        }
        // "  -v, -q               more / less ..." : the option column.
        let column = line.split("  ").next().unwrap_or("");
        for tok in column.split([',', ' ']) {
            if tok.starts_with('-') && tok.len() > 1 {
                opts.insert(tok.to_string());
            }
        }
    }
    assert!(opts.contains("--check") && opts.contains("-h"), "{opts:?}");

    let cli = fs::read_to_string(root().join("src/cli.rs")).expect("src/cli.rs");
    let code = cli.split("#[cfg(test)]").next().unwrap();
    let parse = &code[code.find("pub fn parse").expect("fn parse")..];
    let mut parsed = BTreeSet::new();
    for piece in parse.split('"').skip(1).step_by(2) {
        if piece.starts_with("--")
            && piece.len() > 2
            && piece.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        {
            parsed.insert(piece.to_string());
        }
    }
    // Short flags: `'v' => ...` in the bundled-flags match.
    for (i, _) in parse.match_indices("' =>") {
        let b = parse.as_bytes();
        if i >= 2 && b[i - 2] == b'\'' && b[i - 1].is_ascii_alphabetic() {
            parsed.insert(format!("-{}", b[i - 1] as char));
        }
    }
    let undocumented: Vec<&String> = parsed.difference(&opts).collect();
    assert!(
        undocumented.is_empty(),
        "options parsed by src/cli.rs but missing from USAGE: {undocumented:?}"
    );
    opts
}

#[test]
fn every_command_line_option_is_in_superd_8() {
    let lines = words(&page("superd.8"));
    let mut missing = Vec::new();
    for opt in options() {
        // mdoc writes `--check` as `Fl -check` and `-v` as `Fl v`.
        if !has_macro_word(&lines, "Fl", &opt[1..]) {
            missing.push(opt);
        }
    }
    assert!(
        missing.is_empty(),
        "options missing from man/superd.8: {missing:?}"
    );
    assert!(
        has_macro_word(&lines, "Ev", "RUST_LOG"),
        "RUST_LOG missing from superd.8"
    );
}

/// Messages of the `log` calls in `src/`: the words before the first
/// `key=`, `{` or `:`.
fn log_messages() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut files = Vec::new();
    collect_rs(&root().join("src"), &mut files);
    for f in files {
        let text = fs::read_to_string(&f).unwrap();
        for mac in ["info!(", "warn!(", "error!(", "debug!(", "trace!("] {
            for (i, _) in text.match_indices(mac) {
                let rest = text[i + mac.len()..].trim_start();
                let Some(lit) = rest.strip_prefix('"') else {
                    continue;
                };
                let lit = &lit[..lit.find('"').unwrap_or(0)];
                let mut msg = Vec::new();
                for w in lit.split(' ') {
                    if w.contains('=') || w.contains('{') {
                        break;
                    }
                    if let Some(w) = w.strip_suffix(':') {
                        msg.push(w);
                        break;
                    }
                    msg.push(w);
                }
                let msg = msg.join(" ");
                if !msg.is_empty() {
                    out.insert(msg);
                }
            }
        }
    }
    // The logger's own line, written without a `log` call.
    out.insert("log lines dropped".into());
    assert!(
        out.contains("listening") && out.contains("exec failed"),
        "{out:?}"
    );
    out
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_rs(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_log_message_is_in_superd_8() {
    let src = page("superd.8").replace("\\-", "-");
    let logs = &src[src.find(".Sh LOGS").expect("a LOGS section")..];
    let logs = &logs[..logs[1..].find(".Sh ").map_or(logs.len(), |i| i + 1)];
    // `.It Sy WARN Cm out of resources Cm ...`: the words after `Cm`.
    let flat: String = logs
        .lines()
        .map(|l| l.replace(" Cm ", " ").replace(" : ", ": "))
        .collect::<Vec<_>>()
        .join("\n");
    let missing: Vec<String> = log_messages()
        .into_iter()
        .filter(|m| !flat.contains(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "log messages written by src/ but missing from the LOGS section of man/superd.8: {missing:?}"
    );
}

/// `mandoc -Tlint` on a page: its complaints, without the two that depend on
/// the machine rather than the page (manuals not installed here, and the
/// state of the local mandoc.db).
fn lint(name: &str) -> Option<Vec<String>> {
    let path = root().join("man").join(name);
    let out = match Command::new("mandoc").arg("-Tlint").arg(&path).output() {
        Ok(o) => o,
        Err(e) => {
            skip(&format!(
                "mandoc -Tlint {name}: mandoc not runnable ({e}); apt-get install mandoc"
            ));
            return None;
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        text.lines()
            .filter(|l| !l.contains("referenced manual not found"))
            .filter(|l| !l.contains("outdated mandoc.db"))
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

#[test]
fn man_pages_are_mandoc_lint_clean() {
    for name in ["superd.8", "superd.yaml.5"] {
        if let Some(complaints) = lint(name) {
            assert!(
                complaints.is_empty(),
                "mandoc -Tlint {name}:\n{}",
                complaints.join("\n")
            );
        }
    }
}

#[test]
fn the_annotated_example_of_superd_yaml_5_passes_check() {
    let src = page("superd.yaml.5");
    let ex = &src[src.find(".Sh EXAMPLES").expect("EXAMPLES")..];
    let start = ex.find(".Bd -literal").expect("a literal block");
    let body = &ex[start..];
    let body = &body[body.find('\n').unwrap() + 1..body.find("\n.Ed").unwrap()];
    let yaml = body.replace("\\e", "\\").replace("\\-", "-");
    let dir = TempDir::new("docs-ex");
    dir.write("tools.yaml", &yaml);
    // The programs it names relative to the file.
    for prog in ["hello.sh", "udp-upper.py"] {
        let p = dir.write(prog, "#!/bin/sh\n");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = run(&["--check", dir.path().to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the example in superd.yaml(5) fails --check:\n{}\n{yaml}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("configuration OK: 6 services"), "{stdout}");
}
