//! The fuzz corpora replayed on every `cargo test`: the seeds
//! (`fuzz/seeds/`, `fuzz/proxy-seeds/`), every input the fuzzers ever found
//! misbehaving (`fuzz/regressions/`, `fuzz/proxy-regressions/`), and a
//! cheap deterministic smoke run of mutations of the seeds. A config input
//! must end in a configuration or in errors with a position or a file
//! name; a PROXY header input in an answer that keeps the parser's
//! promises (see `proxy_promises`); none may panic.

use std::fs;
use std::path::{Path, PathBuf};

use superd::config::{Context, check_text};
use superd::proxy::{self, Accept, Parse};

fn inputs(dir: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut out: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| (e.path(), fs::read(e.path()).unwrap()))
        .collect();
    out.sort();
    out
}

fn contexts() -> [Context; 2] {
    let mut root = Context::current();
    root.euid = 0;
    root.egid = 0;
    let mut user = Context::current();
    user.euid = 65534;
    user.egid = 65534;
    user.groups.clear();
    [root, user]
}

fn check(input: &[u8], what: &str) {
    for ctx in &contexts() {
        let r = std::panic::catch_unwind(|| check_text("fuzz.yaml", input, ctx));
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(errors)) => {
                assert!(!errors.is_empty(), "{what}: Err with no errors");
                for e in &errors {
                    assert_eq!(e.file, Path::new("fuzz.yaml"), "{what}: {e}");
                    assert!(!e.message.is_empty(), "{what}: empty message");
                }
            }
            Err(_) => panic!(
                "{what}: the loader panicked on {:?}",
                String::from_utf8_lossy(input)
            ),
        }
    }
}

#[test]
fn every_fuzz_regression_loads_without_panic() {
    let found = inputs("fuzz/regressions");
    for (path, bytes) in &found {
        check(bytes, &path.display().to_string());
    }
}

#[test]
fn every_seed_loads_without_panic() {
    let seeds = inputs("fuzz/seeds");
    assert!(seeds.len() >= 10, "the seed corpus is missing");
    for (path, bytes) in &seeds {
        check(bytes, &path.display().to_string());
    }
}

/// A few seconds of dumb fuzzing in the normal suite: every seed cut short,
/// with a byte flipped, and with lines doubled, from a fixed xorshift seed.
#[test]
fn smoke_mutations_of_the_seeds_load_without_panic() {
    let seeds = inputs("fuzz/seeds");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    const SPECIAL: &[u8] = b":-[]{}&*!|>'\"#%@`,?\n\t 0~";
    for (path, bytes) in &seeds {
        let name = path.display().to_string();
        if bytes.is_empty() {
            continue;
        }
        for _ in 0..8 {
            let cut = (next() as usize) % bytes.len();
            check(&bytes[..cut], &format!("{name} cut at {cut}"));
            let mut m = bytes.clone();
            let i = (next() as usize) % m.len();
            m[i] = if next() % 2 == 0 {
                SPECIAL[(next() as usize) % SPECIAL.len()]
            } else {
                next() as u8
            };
            check(&m, &format!("{name} byte {i} changed"));
        }
        let doubled: Vec<u8> = String::from_utf8_lossy(bytes)
            .lines()
            .flat_map(|l| [l, "\n", l, "\n"])
            .collect::<String>()
            .into_bytes();
        check(&doubled, &format!("{name} lines doubled"));
    }
}

/// Hostile shapes written by hand: deep nesting, alias bombs, huge and
/// odd scalars, a file just over the size limit.
#[test]
fn hand_written_hostile_inputs_load_without_panic() {
    let deep_seq = "[".repeat(100_000);
    let deep_map = "{a: ".repeat(50_000);
    let mut nested_block = String::from("services:\n");
    for i in 0..1_000 {
        nested_block.push_str(&" ".repeat(i + 2));
        nested_block.push_str("a:\n");
    }
    let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = (b'a' + i - 1) as char;
        let cur = (b'a' + i) as char;
        laughs.push_str(&format!(
            "{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
    }
    laughs.push_str("services: *l\n");
    let big = format!(
        "services:\n  x:\n    listen: 127.0.0.1:0\n    builtin: echo\n#{}\n",
        "x".repeat(1 << 20)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("deep flow sequence", deep_seq.into_bytes()),
        ("deep flow mapping", deep_map.into_bytes()),
        ("deep block mapping", nested_block.into_bytes()),
        ("billion laughs", laughs.into_bytes()),
        ("over 1 MiB", big.into_bytes()),
        ("invalid UTF-8", b"services:\n  \xff\xfe: {}\n".to_vec()),
        ("NUL bytes", b"services:\0\n  a\0: 1\n".to_vec()),
        ("BOM", "\u{feff}services: {}\n".as_bytes().to_vec()),
        ("tabs", b"services:\n\tx: 1\n".to_vec()),
        (
            "huge numbers",
            b"services:\n  x:\n    listen: 99999999999999999999999\n    builtin: echo\n    max_connections: 184467440737095516150\n    nice: -99999999999\n    timeout: 1e308\n    kill_grace: -1\n    rate: \"18446744073709551615/s\"\n    rlimits: {nofile: \"99999999999999999999:1\", as: 99999999999G}\n".to_vec(),
        ),
        (
            "odd durations",
            b"services:\n  x:\n    listen: 127.0.0.1:0\n    builtin: echo\n    timeout: .inf\n    idle_timeout: nan\n    kill_grace: 1e400s\n".to_vec(),
        ),
        ("tagged values", b"services: !!binary aGVsbG8=\n".to_vec()),
        (
            "merge keys",
            b"defaults: &d {user: root}\nservices:\n  x:\n    <<: *d\n    listen: 127.0.0.1:0\n    builtin: echo\n".to_vec(),
        ),
        (
            "many documents",
            b"services: {}\n---\nservices: {}\n...\n---\n".to_vec(),
        ),
    ];
    for (what, bytes) in &cases {
        check(bytes, what);
    }
}

/// What the event loop relies on, for one input and every `Accept`: an
/// `Incomplete` asks for more than it got; a `Complete` lies within the
/// input, is the same answer for the input cut at `header_len` (nothing
/// past it was read), is not `Complete` one byte shorter, and gives the
/// child no control character.
fn proxy_promises(input: &[u8], what: &str) -> bool {
    let mut complete = false;
    for accept in Accept::ALL {
        let r = std::panic::catch_unwind(|| proxy::parse(input, accept))
            .unwrap_or_else(|_| panic!("{what}: the PROXY parser panicked on {input:?}"));
        match &r {
            Parse::Incomplete { need_at_least } => {
                assert!(*need_at_least > input.len(), "{what} {accept}: {r:?}")
            }
            Parse::Complete { header_len, header } => {
                complete = true;
                assert!(*header_len <= input.len(), "{what} {accept}: {r:?}");
                assert_eq!(
                    proxy::parse(&input[..*header_len], accept),
                    r,
                    "{what} {accept}"
                );
                assert!(
                    !matches!(
                        proxy::parse(&input[..header_len - 1], accept),
                        Parse::Complete { .. }
                    ),
                    "{what} {accept}: Complete one byte short"
                );
                let peer = "192.0.2.1:1".parse().unwrap();
                let local = "192.0.2.2:2".parse().unwrap();
                for (k, v) in proxy::child_vars(header, peer, local) {
                    assert!(
                        !v.chars().any(char::is_control),
                        "{what} {accept}: {k}={v:?}"
                    );
                }
            }
            Parse::Invalid(_) => {}
        }
    }
    complete
}

#[test]
fn every_proxy_fuzz_regression_keeps_the_parsers_promises() {
    for (path, bytes) in &inputs("fuzz/proxy-regressions") {
        proxy_promises(bytes, &path.display().to_string());
    }
}

#[test]
fn every_proxy_seed_keeps_the_parsers_promises() {
    let seeds = inputs("fuzz/proxy-seeds");
    assert!(seeds.len() >= 20, "the PROXY seed corpus is missing");
    let mut complete = 0;
    for (path, bytes) in &seeds {
        let name = path.display().to_string();
        let ok = proxy_promises(bytes, &name);
        // The seeds say what they are: `v1-tcp4` parses, `v2-crc-bad` not.
        let valid = ![
            "too-long",
            "leading-zero",
            "port-over",
            "lone-cr",
            "mismatch",
            "-bad",
            "past-end",
            "truncated",
            "129",
            "short",
            "http",
        ]
        .iter()
        .any(|m| name.contains(m));
        assert_eq!(ok, valid, "{name}");
        complete += usize::from(ok);
    }
    assert!(complete >= 10, "{complete} valid PROXY seeds");
}

/// Every PROXY seed cut at every length, and with bytes changed, from a
/// fixed xorshift seed.
#[test]
fn smoke_mutations_of_the_proxy_seeds_keep_the_parsers_promises() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for (path, bytes) in &inputs("fuzz/proxy-seeds") {
        let name = path.display().to_string();
        for cut in 0..bytes.len() {
            proxy_promises(&bytes[..cut], &format!("{name} cut at {cut}"));
        }
        for _ in 0..500 {
            let mut m = bytes.clone();
            for _ in 0..=(next() % 3) {
                let i = (next() as usize) % m.len();
                m[i] = next() as u8;
            }
            proxy_promises(&m, &format!("{name} changed"));
        }
    }
}
