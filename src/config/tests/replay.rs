//! The replay of the walk's recording (`replay.rs`) against serde_yaml: on
//! every text where the replay succeeds, serde_yaml's own deserializer
//! gives the same raw file; where it may not, the file is read as before,
//! with the same messages at the same lines and columns.

use super::*;
use crate::config::{raw, replay, tree};

/// The raw file of `text` read both ways: from the walk's recording
/// (`None` when the loader would not try: a bare octal, a null root, a
/// tag; `Some(Err)` when the replay refused) and by serde_yaml directly.
#[allow(clippy::type_complexity)]
fn both(text: &str) -> (Option<Result<String, ()>>, Result<String, String>) {
    let direct = serde_yaml::Deserializer::from_str(text)
        .next()
        .map(|doc| raw::RawFile::deserialize_skipping(doc, &raw::Skip::default()))
        .map_or(Err("no document".to_owned()), |r| {
            r.map(|raw| format!("{raw:?}")).map_err(|e| e.to_string())
        });
    let Some(doc) = serde_yaml::Deserializer::from_str(text).next() else {
        return (None, direct);
    };
    let Ok(walked) = tree::walk(doc, text, false) else {
        return (None, direct);
    };
    if !walked.bare_octals.is_empty() || walked.root_is_null || replay::may_have_tags(text) {
        return (None, direct);
    }
    let replayed = replay::Replay::new(&walked.events)
        .run(|r| raw::RawFile::deserialize_skipping(r, &raw::Skip::default()))
        .map(|raw| format!("{raw:?}"))
        .map_err(|_| ());
    (Some(replayed), direct)
}

/// Asserts that a replay that succeeds gives serde_yaml's result; returns
/// whether it succeeded.
fn same(name: &str, text: &str) -> bool {
    // The loader refuses these before libyaml sees them (it takes long).
    if tree::flow_too_deep(text).is_some() {
        return false;
    }
    match both(text) {
        (Some(Ok(replayed)), direct) => {
            assert_eq!(
                Ok(replayed),
                direct,
                "{name}: the replay succeeded where serde_yaml gave otherwise:\n{text}"
            );
            true
        }
        _ => false,
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

/// Every field of superd.yaml(5) once, in a service and in defaults.
const EVERY_FIELD: &str = "\
defaults:
  user: nobody
  group: nogroup
  umask: \"022\"
  nice: 5
  rlimits: {nofile: 1024, core: 0, nproc: \"64:128\", as: 256M, cpu: unlimited}
  kill_grace: 2s
services:
  all:
    listen: [127.0.0.1:7001, \"[::1]:7002\", 7003, {address: 127.0.0.1:7004, socket: stream}]
    socket: stream
    wait: false
    exec: [/bin/cat, \"-u\", 42, true]
    user: \"0\"
    group: 0
    groups: [adm, 4, users]
    cwd: /tmp
    chroot: /
    umask: '077'
    nice: -3
    env: {A: x, B: 1, C: true, D: \"quoted \\\"esc\\\"\", umask: 022}
    stderr: log
    max_connections: 10
    max_per_source: 2
    rate: 10/s
    only_from: [127.0.0.1, 10.0.0.0/8, \"::1\"]
    deny_from: 10.1.0.0/16
    timeout: 1m
    kill_grace: 500ms
    idle_timeout: 30
    rlimits:
      nofile: 4096
      fsize: 1M
    backlog: 128
    reuse_port: true
    v6only: false
    keepalive: true
    nodelay: true
    socket_mode: \"0660\"
    socket_user: root
    socket_group: 0
    enabled: true
    proxy_protocol: v1
    proxy_from: [127.0.0.1/32]
    proxy_timeout: 3s
    argv0: cat
    pass_env: [PATH, HOME]
    refuse_message: \"busy, try later\\n\"
    success_status: [0, 1, SIGTERM]
    no_new_privs: true
    private_network: false
    private_tmp: true
    read_only_paths: [/usr, /etc]
    writable_paths: /var/tmp
    inaccessible_paths: [/root]
    capabilities: [CAP_NET_BIND_SERVICE]
    pass: stdio
    fd_names: [web]
    start: on_demand
  sock:
    listen: /run/superd-test.sock
    socket: stream
    pass: listen_fds
    exec: /bin/true
    stderr: null
    start: at_start
";

/// The texts the replay must carry to the end: it is the load's fast path.
const REPLAYED: &[&str] = &[
    ECHO,
    EVERY_FIELD,
    // Quoted, plain, escaped, folded and literal strings.
    "services:\n  e:\n    listen: '127.0.0.1:7007'\n    exec: [\"/bin/e\\u00e9cho\", 'it''s', \"tab\\there\", plain words]\n    refuse_message: >\n      folded\n      text\n    argv0: |\n      literal\n",
    // Numbers and bools in string fields; numbers as service names.
    "services:\n  7:\n    listen: 7007\n    exec: [/bin/x, 0x1f, 0o17, -4, +5, false, 007, 18446744073709551615]\n    env: {N: 12, B: false}\n    argv0: 12\n",
    // ~, null, empty values: unset fields; stderr: null is the mode.
    "services:\n  e:\n    listen: 7007\n    builtin: echo\n    user: ~\n    group: null\n    cwd:\n    nice: Null\n    stderr: null\n    env: ~\n",
    "services:\n  e:\n    listen: 7007\n    builtin: echo\n    stderr: ~\n",
    "services:\n  e:\n    listen: 7007\n    builtin: echo\n    stderr:\n",
    "defaults:\nservices:\n  e:\n    listen: 7007\n    builtin: echo\n",
    "defaults: ~\nservices: {}\n",
    "services:\n",
    "services: ~\n",
    "{}\n",
    // A list or a single value.
    "services:\n  e:\n    listen: [7007]\n    exec: /bin/cat\n    only_from: 127.0.0.1\n    pass_env: PATH\n",
    "services:\n  e:\n    listen: []\n    exec: []\n",
    // Anchors, aliases, merge keys.
    "services:\n  a: &common\n    listen: 127.0.0.1:7100\n    builtin: echo\n    max_connections: 5\n  b:\n    <<: *common\n    listen: 127.0.0.1:7101\n  c: &other\n    listen: &port 127.0.0.1:7102\n    builtin: daytime\n    env: &env {A: b}\n  d:\n    listen: *port\n    env: *env\n    <<: [*other, *common]\n",
    "defaults: &d\n  user: nobody\nservices:\n  a:\n    <<: *d\n    listen: 1\n    builtin: echo\n    exec: &x [/bin/a, b]\n  b:\n    listen: 2\n    exec: *x\n",
    // Unicode.
    "services:\n  e:\n    listen: 7007\n    exec: [/bin/échø, \"ユニコード\", 😀]\n    refuse_message: \"nö\\u00e9\\U0001F600\"\n    env: {LANG: ü}\n",
    // Flow style throughout.
    "{services: {a: {listen: [1, 2], exec: [/bin/a, \"b c\"], env: {X: y}}, b: {listen: 3, builtin: echo}}}\n",
    // Nested env and rlimits maps, block style.
    "services:\n  e:\n    listen: 7007\n    exec: /bin/env\n    env:\n      A: one\n      B: \"two\"\n      C: 'three'\n      D: 4\n    rlimits:\n      nofile: 64\n      core: \"0:0\"\n",
    // Comments, document markers.
    "# comment\n---\nservices: # more\n  e: # and more\n    listen: 7007 # here\n    builtin: echo\n...\n",
    // Keys quoted.
    "\"services\":\n  'e':\n    \"listen\": 7007\n    'builtin': echo\n",
];

/// Texts the replay may refuse (the loader then reads them again): every
/// one must still give serde_yaml's result where it does succeed.
const OTHERS: &[&str] = &[
    // A service without a body: serde_yaml reads an empty mapping.
    "services:\n  e:\n",
    "services:\n  e: ~\n",
    "services:\n  e: \"\"\n",
    "services:\n  e: []\n",
    // Wrong types.
    "services:\n  e:\n    listen: 7007\n    wait: \"true\"\n",
    "services:\n  e:\n    listen: 7007\n    wait: yes\n",
    "services:\n  e:\n    listen: 7007\n    wait: [1]\n",
    "services:\n  e:\n    listen: {a: b}\n",
    "services:\n  e:\n    listen: 7007\n    env: [a]\n",
    "services:\n  e:\n    listen: 7007\n    env:\n",
    "services:\n  e:\n    listen: 7007\n    rlimits: \"\"\n",
    "services:\n  e:\n    listen: 7007\n    max_connections: many\n",
    "services:\n  e:\n    listen: {address: 1, socket: stream, address: 2}\n",
    "services:\n  e:\n    listen: {socket: stream}\n",
    "services:\n  e:\n    listen: {5: stream}\n",
    "services:\n  e:\n    <<: 5\n",
    "services:\n  e:\n    <<:\n",
    "services:\n  e:\n    <<: [{listen: 1}, 2]\n",
    "services: [a, b]\n",
    "services: 5\n",
    "services: \"\"\n",
    "defaults: []\n",
    "defaults: \"\"\n",
    "- a\n- b\n",
    "5\n",
    "hello\n",
    // Unknown and odd keys.
    "services:\n  e:\n    lisen: 7007\n",
    "servces: {}\n",
    "services:\n  e:\n    5: x\n",
    "services:\n  e:\n    true: x\n",
    "services:\n  e:\n    ~: x\n",
    "services:\n  ~: {listen: 1}\n",
    "services:\n  true: {listen: 1}\n",
    "services:\n  -5: {listen: 1}\n",
    "services:\n  1.5: {listen: 1}\n",
    "services:\n  \"bad name\": {listen: 1}\n",
    "5: x\n",
    // Bare octals (the walk's own rule), tags.
    "services:\n  e:\n    listen: 1\n    umask: 022\n",
    "services:\n  e:\n    listen: 7007\n    wait: !!bool \"true\"\n",
    "services:\n  e:\n    listen: 7007\n    user: !!null \"~\"\n",
    "services:\n  e:\n    listen: 7007\n    wait: !!str true\n",
    "services:\n  e:\n    listen: !!int \"7007\"\n",
    "services: !!map\n  e: {listen: 1}\n",
    "services:\n  e:\n    listen: !foo 1\n",
    // Floats, big numbers.
    "services:\n  e:\n    listen: 1\n    exec: [/bin/x, 1e3]\n",
    "services:\n  e:\n    listen: 1\n    exec: [/bin/x, .inf, -.nan]\n",
    "services:\n  e:\n    listen: 1\n    env: {F: 1.25}\n",
    "services:\n  e:\n    listen: 99999999999999999999999\n",
    "services:\n  e:\n    exec: [-99999999999999999999999]\n",
];

#[test]
fn the_replay_gives_what_serde_yaml_gives() {
    for (i, text) in REPLAYED.iter().enumerate() {
        assert!(
            same(&format!("REPLAYED[{i}]"), text),
            "REPLAYED[{i}] was not replayed: {:?}\n{text}",
            both(text)
        );
    }
    for (i, text) in OTHERS.iter().enumerate() {
        same(&format!("OTHERS[{i}]"), text);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["examples", "services.d", "fuzz/seeds", "fuzz/regressions"] {
        yaml_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "the corpus is missing: {files:?}");
    let mut replayed = 0;
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        replayed += usize::from(same(&f.display().to_string(), &text));
        // Each shape again, one level down: as the only service's body
        // and under defaults.
        let indented: String = text.lines().map(|l| format!("    {l}\n")).collect();
        same(
            &f.display().to_string(),
            &format!("services:\n  x:\n{indented}"),
        );
        same(&f.display().to_string(), &format!("defaults:\n{indented}"));
    }
    assert!(replayed >= 10, "only {replayed} files replayed");
}

/// Why the loader does not replay a file with a tag: these two read
/// differently through `deserialize_any` (what the walk records) and
/// through serde_yaml's `deserialize_bool` / `deserialize_option`.
#[test]
fn tags_are_not_replayed() {
    for text in [
        "services:\n  e:\n    listen: 7007\n    wait: !!bool \"true\"\n",
        "services:\n  e:\n    listen: 7007\n    exec: /bin/true\n    user: !!null \"~\"\n",
    ] {
        assert!(replay::may_have_tags(text));
        let doc = serde_yaml::Deserializer::from_str(text).next().unwrap();
        let walked = tree::walk(doc, text, false).unwrap();
        let replayed = replay::Replay::new(&walked.events)
            .run(|r| raw::RawFile::deserialize_skipping(r, &raw::Skip::default()));
        let doc = serde_yaml::Deserializer::from_str(text).next().unwrap();
        let direct = raw::RawFile::deserialize_skipping(doc, &raw::Skip::default());
        assert!(replayed.is_ok() && direct.is_err(), "{text}");
    }
    assert!(!replay::may_have_tags(ECHO));
    assert!(!replay::may_have_tags("a: \"Hello!\"\nb: x!y\n"));
    assert!(replay::may_have_tags("a: \"Hello !\"\n"));
}

/// A file the replay refuses is read again by serde_yaml, past each error:
/// every message and position is what that reading gives.
#[test]
fn a_refused_replay_reports_serde_yamls_errors() {
    let text = "services:\n  a:\n    listen: 7007\n    exec: /bin/true\n    wait: \"yes\"\n  b:\n    listen: 7008\n    exec: /bin/true\n    max_connections: many\n";
    let (replayed, direct) = both(text);
    assert_eq!(replayed, Some(Err(())));
    assert!(direct.is_err());
    let (_, e) = errs(text);
    let at: Vec<_> = e.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(at, [(Some(5), Some(11)), (Some(9), Some(22))], "{e:#?}");
    assert!(
        e[0].message
            .starts_with("invalid type: string \"yes\", expected a boolean"),
        "{e:#?}"
    );
    assert!(e[1].message.contains("expected an integer >= 1"), "{e:#?}");
}
