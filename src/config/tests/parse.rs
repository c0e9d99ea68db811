//! Reading a file: every error with its line and column, merge keys and anchors, the structural bounds (aliases, nesting, brackets, size in time), bare octals, bytes that are no YAML.

use super::*;

/// serde stops at a file's first error; the loader goes on past it, so a
/// file's errors are all reported at once, in the order of the file, and
/// a service with a broken field adds no errors that only follow from it
/// (a misspelt listen is not also a missing listen).
#[test]
fn every_error_of_a_file_is_reported() {
    let (p, e) = errs(
        "services:\n  a:\n    lisen: 1\n    bultin: echo\n  b:\n    listen: 2\n    builtin: nope\n  c:\n    listen: 3\n    builtin: echo\n    max_connections: -1\n    umask: \"999\"\n  \"bad name\":\n    listen: 4\n  d:\n    listen: 5\n    builtin: echo\n    wait: true\n  e:\n    listen: 6\n    builtin: echo\n    env: {A: [1]}\n",
    );
    let at: Vec<(Option<usize>, Option<usize>)> = e.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(
        at,
        [
            (Some(3), Some(5)),
            (Some(4), Some(5)),
            (Some(7), Some(14)),
            (Some(11), Some(22)),
            (Some(12), Some(12)),
            (Some(13), Some(3)),
            (Some(18), Some(5)),
            (Some(22), Some(14)),
        ],
        "{e:#?}"
    );
    assert!(e.iter().all(|e| e.file == p));
    let text: Vec<String> = e.iter().map(|e| e.message.clone()).collect();
    assert!(text[0].starts_with("unknown field \"lisen\""), "{text:?}");
    assert!(text[1].starts_with("unknown field \"bultin\""), "{text:?}");
    assert!(text[2].contains("unknown builtin \"nope\""), "{text:?}");
    assert!(
        text[5].starts_with("bad service name \"bad name\""),
        "{text:?}"
    );
    assert!(text[6].contains("wait: true makes no sense"), "{text:?}");
}

/// A broken `defaults` stops the checks of the services (each might
/// inherit what is broken), not the report of its own errors.
#[test]
fn every_error_of_defaults_is_reported() {
    let (_, e) = errs("defaults:\n  usr: x\n  nice: 99\nservices:\n  a:\n    listen: 1\n");
    let at: Vec<_> = e.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(at, [(Some(2), Some(3)), (Some(3), Some(9))], "{e:#?}");
}

/// The YAML merge key: a service takes every field of the merged
/// mapping(s) it does not set itself; the first of a list wins.
#[test]
fn merge_keys() {
    let c = ok(
        "services:\n  a: &common\n    listen: 127.0.0.1:7100\n    builtin: echo\n    max_connections: 5\n    idle_timeout: 9s\n  b:\n    <<: *common\n    listen: 127.0.0.1:7101\n  c: &other\n    listen: 127.0.0.1:7102\n    builtin: daytime\n    max_connections: 7\n  d:\n    listen: 127.0.0.1:7103\n    <<: [*other, *common]\n",
    );
    let by = |n: &str| c.services.iter().find(|s| s.name == n).unwrap();
    let b = by("b");
    assert_eq!(b.builtin(), Some(Builtin::Echo));
    assert_eq!(b.max_connections, 5);
    assert_eq!(b.idle_timeout, Duration::from_secs(9));
    assert_eq!(b.listen[0].to_string(), "127.0.0.1:7101");
    let d = by("d");
    assert_eq!(d.builtin(), Some(Builtin::Daytime));
    assert_eq!(d.max_connections, 7);
    assert_eq!(d.idle_timeout, Duration::from_secs(9));
    assert_eq!(d.listen[0].to_string(), "127.0.0.1:7103");
    one(
        "services:\n  a:\n    listen: 1\n    builtin: echo\n    <<: 5\n",
        5,
        9,
        "a mapping of service fields to merge",
    );
}

/// superd.yaml(5) lists `null` among the stderr modes; YAML reads a bare `null` (and
/// `~`) as no value, which must still mean the null mode, not the default.
#[test]
fn stderr_null_unquoted_is_the_null_mode() {
    for v in ["null", "~", "\"null\"", "Null"] {
        let c = ok(&format!("{ECHO}    stderr: {v}\n"));
        assert_eq!(c.services[0].stderr, StderrMode::Null, "stderr: {v}");
    }
    let c = ok(&format!("defaults:\n  stderr: null\n{ECHO}"));
    assert_eq!(c.services[0].stderr, StderrMode::Null);
}

/// A bare octal is an error of its field, not of the file: the other
/// errors of the file are reported with it.
#[test]
fn a_bare_octal_hides_no_other_error() {
    let (_, e) = errs(
        "services:\n  a:\n    listen: 1\n    builtin: echo\n    umask: 022\n  b:\n    listen: 2\n    builtin: echo\n    exec: /bin/cat\n    user: nobody\n",
    );
    let text: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert_eq!(e.len(), 2, "{text:#?}");
    assert!(
        text[0].contains(":5:12: umask: must be a quoted octal"),
        "{text:#?}"
    );
    assert!(
        text[1].contains("exec and builtin are exclusive"),
        "{text:#?}"
    );
}

/// An error in a value replayed from an anchor is reported where the
/// anchor is, and the reading goes on past it (the service being read is
/// skipped, not the anchor's position); a merged field's error names the
/// merging service's `<<`.
#[test]
fn errors_through_anchors_and_merges() {
    let (_, e) = errs(
        "services:\n  base: &base\n    listen: 127.0.0.1:7601\n    builtin: echo\n    bogus: 1\n  m1:\n    <<: *base\n    listen: 127.0.0.1:7602\n  m2:\n    listen: 127.0.0.1:7603\n    builtin: nope\n  m3:\n    listen: 127.0.0.1:7604\n    builtin: echo\n    max_connections: -1\n",
    );
    let text: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert!(
        text.iter().any(|t| t.contains("unknown field \"bogus\"")),
        "{text:#?}"
    );
    assert!(
        text.iter().any(|t| t.contains("unknown builtin \"nope\"")),
        "{text:#?}"
    );
    assert!(
        text.iter().any(|t| t.contains("max_connections")),
        "{text:#?}"
    );
    let (p, e) = errs(
        "services:\n  base: &base\n    listen: 127.0.0.1:7601\n    builtin: echo\n    timeout: 0s\n  m1:\n    <<: *base\n    listen: 127.0.0.1:7602\n",
    );
    let m1: Vec<&ConfigError> = e.iter().filter(|e| e.line == Some(7)).collect();
    assert_eq!(m1.len(), 1, "{e:#?}");
    assert_eq!(m1[0].file, p);
    assert_eq!(m1[0].column, Some(5));
    assert!(
        m1[0].message.contains("timeout must be longer than 0"),
        "{e:#?}"
    );
}

/// A broken `defaults` stops the checks of every service, in every file:
/// they would report what follows from it.
#[test]
fn a_broken_defaults_adds_no_errors_elsewhere() {
    let d = tmpdir();
    write(
        &d,
        "00-defaults.yaml",
        "defaults:\n  user: nobody\n  max_conections: 3\n",
    );
    write(
        &d,
        "10-a.yaml",
        "services:\n  a:\n    listen: 127.0.0.1:7621\n    exec: /bin/cat\n",
    );
    let e = load_as(&[d.to_path_buf()], &root_ctx()).expect_err("broken defaults");
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].message.contains("unknown field \"max_conections\""),
        "{e:#?}"
    );
}

#[test]
fn unknown_key_at_the_key() {
    one(
        "services:\n  echo:\n    lisen: 7007\n    builtin: echo\n",
        3,
        5,
        "unknown field \"lisen\", expected one of listen, socket, wait, exec",
    );
}

#[test]
fn unknown_top_level_key() {
    one(
        "servces: {}\n",
        1,
        1,
        "unknown field \"servces\", expected one of defaults, services",
    );
}

#[test]
fn wrong_type() {
    one(
        "services:\n  echo:\n    listen: 7007\n    builtin: echo\n    max_connections: many\n",
        5,
        22,
        "expected an integer >= 1",
    );
    one(
        "services:\n  echo:\n    listen: 7007\n    builtin: echo\n    wait: [1]\n",
        5,
        11,
        "invalid type: sequence, expected a boolean",
    );
}

#[test]
fn bad_address() {
    one(
        "services:\n  echo:\n    listen: [7007, \"localhost:7\"]\n    builtin: echo\n",
        3,
        20,
        "bad address \"localhost:7\": expected PORT, :PORT",
    );
    one(
        "services:\n  e:\n    listen: 70000\n    builtin: echo\n",
        3,
        13,
        "bad port",
    );
}

#[test]
fn duplicate_key_anywhere() {
    one(
        "services:\n  echo:\n    listen: 7007\n    builtin: echo\n    listen: 7008\n",
        5,
        5,
        "duplicate key \"listen\" (first at line 3)",
    );
    one(
        "services:\n  a:\n    listen: 1\n    builtin: echo\n    env: {A: x, A: y}\n",
        5,
        17,
        "duplicate key \"A\"",
    );
}

/// A mapping's keys are listed while few and hashed beyond (`tree.rs`,
/// `Seen`): a duplicate is found, with its first line, either way.
#[test]
fn duplicate_key_in_a_large_mapping() {
    for n in [15, 16, 17, 40] {
        let vars: String = (0..n).map(|i| format!("      V{i}: x\n")).collect();
        let text = format!(
            "services:\n  a:\n    listen: 1\n    builtin: echo\n    env:\n{vars}      V0: y\n"
        );
        one(&text, 6 + n, 7, "duplicate key \"V0\" (first at line 6)");
    }
}

#[test]
fn bare_octal_umask() {
    let base = "services:\n  a:\n    listen: 1\n    builtin: echo\n";
    one(
        &format!("{base}    umask: 022\n"),
        5,
        12,
        "must be a quoted octal string",
    );
    one(
        &format!("{base}    umask: 22\n"),
        5,
        12,
        "must be a quoted octal string",
    );
    one(
        &format!("{base}    socket_mode: 0o660\n"),
        5,
        18,
        "must be a quoted octal string",
    );
    one(
        &format!("{base}    umask: \"0999\"\n"),
        5,
        12,
        "bad mode \"0999\"",
    );
    let c = ok(&format!(
        "{base}    umask: \"0027\"\n    socket_mode: '660'\n"
    ));
    assert_eq!(c.services[0].umask, 0o027);
    assert_eq!(c.services[0].socket_mode, 0o660);
}

#[test]
fn alias_bomb() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    text.push_str("services: *a8\n");
    let (_, e) = errs(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].message.contains("expands to more than"), "{}", e[0]);
    // The node being counted when the bound is hit: inside the anchored list.
    assert_eq!((e[0].line, e[0].column), (Some(1), Some(31)), "{}", e[0]);
}

#[test]
fn nesting_bound() {
    let deep = format!("{}1{}", "[".repeat(20), "]".repeat(20));
    one(
        &format!("services: {deep}\n"),
        1,
        26,
        "nested deeper than 16 levels",
    );
}

/// Every struct refuses unknown fields (`deny_unknown_fields` and the
/// hand-written maps alike).
#[test]
fn unknown_fields_everywhere() {
    one("bogus: 1\n", 1, 1, "unknown field \"bogus\"");
    one("defaults:\n  bogus: 1\n", 2, 3, "unknown field \"bogus\"");
    one(
        "services:\n  a:\n    bogus: 1\n",
        3,
        5,
        "unknown field \"bogus\"",
    );
    one(
        "services:\n  a:\n    rlimits:\n      bogus: 1\n",
        4,
        7,
        "unknown rlimit \"bogus\"",
    );
}

#[test]
fn empty_and_null_files() {
    for text in ["", "---\n", "~\n", "services:\n", "services: {}\n"] {
        assert!(ok(text).services.is_empty(), "{text:?}");
    }
    assert!(load_as(&[], &root_ctx()).unwrap().services.is_empty());
}

#[test]
fn thousand_services_fast() {
    let mut text = String::from("defaults:\n  user: nobody\nservices:\n");
    for i in 0..1000 {
        text.push_str(&format!(
            "  s{i}:\n    listen: \"127.0.0.1:{}\"\n    exec: [/bin/cat, -u]\n    umask: \"027\"\n    max_connections: 4\n",
            10000 + i
        ));
    }
    let d = tmpdir();
    let p = write(&d, "big.yaml", &text);
    let t = std::time::Instant::now();
    let c = load_as(&[p], &root_ctx()).unwrap();
    let el = t.elapsed();
    assert_eq!(c.services.len(), 1000);
    eprintln!("1000 services loaded in {el:?}");
}

#[test]
fn deep_flow_brackets_are_refused_before_libyaml_sees_them() {
    // 1 MiB of `[` took libyaml minutes; refused at the 65th bracket.
    let text = format!("services: {}", "[".repeat(200));
    one(
        &text,
        1,
        11 + tree::MAX_FLOW_BRACKETS,
        "nested deeper than 64",
    );
    let text = format!("services:\n  x: {}", "{a: ".repeat(100));
    one(&text, 2, 6 + 4 * tree::MAX_FLOW_BRACKETS, "brackets");
    // Closers inside quoted scalars and comments do not count down.
    let text = format!("services: {}", "{a: \"}\", b: ".repeat(80));
    one(&text, 1, 11 + 12 * tree::MAX_FLOW_BRACKETS, "brackets");
    // Brackets in a quoted argument are fine.
    ok("services:\n  x:\n    listen: 127.0.0.1:0\n    exec: [/bin/echo, '[{']\n    user: root\n");
}

#[test]
fn a_long_line_costs_linear_time() {
    // Columns were counted from the line start for every scalar:
    // quadratic in the line length.
    let mut text = String::from("services: {");
    for i in 0..20_000 {
        text.push_str(&format!("s{i}: {{listen: [x]}}, "));
    }
    text.push('}');
    let start = std::time::Instant::now();
    let (_, e) = errs(&text);
    assert!(!e.is_empty());
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
}

/// Quoted IPv6 addresses and commented-out flow lists hold brackets that
/// are text, not nesting: a file with many of them is valid.
#[test]
fn brackets_in_quotes_and_comments_do_not_add_up() {
    let mut text = String::from("services:\n");
    for i in 0..120 {
        text.push_str(&format!(
            "  # old: listen: [\"[::1]:{p}\", \"[::2]:{p}\"]\n  s{i}:\n    listen: [\"127.0.0.1:{p}\", \"[::1]:{p}\"]\n    builtin: echo\n",
            p = 20000 + i
        ));
    }
    let c = ok(&text);
    assert_eq!(c.services.len(), 120);
}

/// A duration large enough to overflow the clock is refused at load, not
/// left to panic the daemon later.
#[test]
fn durations_are_bounded() {
    for field in ["timeout", "kill_grace", "idle_timeout"] {
        for v in ["9223372036854775807", "\"9000000000000000000s\"", "1e300"] {
            let (_, e) = errs(&format!(
                "services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    {field}: {v}\n"
            ));
            assert!(
                e.iter()
                    .any(|e| e.line == Some(5) && e.message.contains("at most")),
                "{field}: {v}: {e:?}"
            );
        }
    }
    ok("services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    idle_timeout: 86400\n");
}

/// The bare-octal rule is about the service fields, not any key spelled
/// `umask` (an `env` variable may be called that).
#[test]
fn bare_octal_rule_only_for_service_fields() {
    ok("services:\n  e:\n    listen: 127.0.0.1:0\n    builtin: echo\n    env:\n      umask: 022\n");
}

/// Bytes that are no YAML at all are reported where they are: the first
/// byte that is not UTF-8, or a control character YAML does not allow.
#[test]
fn bytes_that_are_no_yaml_have_a_line_and_column() {
    use crate::config::files::decode;
    assert_eq!(
        decode(b"services:\n  a\0b:\n".to_vec()).unwrap_err(),
        (
            2,
            4,
            "control character U+0000 is not allowed in YAML".into()
        )
    );
    assert_eq!(
        decode(b"services:\n  \xc3\xa9\xff: 1\n".to_vec()).unwrap_err(),
        (2, 4, "not valid UTF-8 (byte 0xff)".into())
    );
    let e = decode("a: \u{1b}[2J\n".as_bytes().to_vec()).unwrap_err();
    assert_eq!((e.0, e.1), (1, 4));
    // Tabs, CR, NEL and byte order marks are what the YAML reader takes.
    for ok in [
        "\u{feff}a: 1\n",
        "a: \"x\ty\"\r\n",
        "a: \"\u{85}\"\n",
        "a: \"x\u{feff}y\"\n",
    ] {
        assert!(decode(ok.as_bytes().to_vec()).is_ok(), "{ok:?}");
    }
    // Lone CRs and CRLFs end lines too.
    let e = decode(b"a: 1\rb: 2\r\nc: \x01\n".to_vec()).unwrap_err();
    assert_eq!((e.0, e.1), (3, 4));
    // Through the loader, with the file named.
    let (p, e) = errs("services:\n  a\0b:\n    listen: 1\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        e[0].to_string(),
        format!(
            "{}:2:4: control character U+0000 is not allowed in YAML",
            p.display()
        )
    );
}

/// A duration past the 10-year bound is refused naming the value written,
/// whatever its unit.
#[test]
fn a_too_long_duration_names_its_value() {
    let b = "services:\n  a:\n    listen: 1\n    builtin: echo\n    idle_timeout: ";
    for (v, secs) in [
        ("87601h", "315363600"),
        ("5256001m", "315360060"),
        ("315360001", "315360001"),
    ] {
        one(
            &format!("{b}{v}\n"),
            5,
            19,
            &format!("duration of {secs} s is too long: at most 10 years (315360000 s)"),
        );
    }
}

/// A note (here xinetd's trailing-zero shorthand) names its line and
/// column even when the load has no error to place.
#[test]
fn notes_have_a_line_and_column_without_any_error() {
    let c = ok(
        "services:\n  echo:\n    listen: 127.0.0.1:7007\n    builtin: echo\n    only_from: [10.0.0.0]\n",
    );
    let n = &c.services[0].notes;
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(n[0].contains("t.yaml:5:17: warning: only_from"), "{n:?}");
}
