//! The one-line mode: the command line made one service, its errors labelled by option.

use super::*;

#[test]
fn oneline() {
    let ctx = root_ctx();
    let c = oneline_with(
        &["127.0.0.1:7000".into()],
        &[
            ("user".into(), "nobody".into()),
            ("max_connections".into(), "8".into()),
            ("umask".into(), "'027'".into()),
            ("env".into(), "{A: b}".into()),
        ],
        &["/bin/cat".into(), "-u".into()],
        &ctx,
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let s = &c.services[0];
    assert_eq!(s.name, "cat");
    assert_eq!(s.max_connections, 8);
    assert_eq!(s.umask, 0o027);
    assert_eq!(s.env, [("A".to_owned(), "b".to_owned())]);
    assert_eq!(s.file, PathBuf::from(COMMAND_LINE));

    // The errors of `superd --listen 7000 --set F=V... -- /bin/cat`.
    let rejected = |sets: &[(&str, &str)]| {
        let sets: Vec<(String, String)> = sets
            .iter()
            .map(|(f, v)| (f.to_string(), v.to_string()))
            .collect();
        oneline_with(&["7000".into()], &sets, &["/bin/cat".into()], &ctx).unwrap_err()
    };
    // A bare octal is refused before the values are validated together.
    let e = rejected(&[
        ("user", "nobody"),
        ("max_connections", "0"),
        ("umask", "022"),
    ]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        e[0].to_string(),
        format!(
            "{COMMAND_LINE}: --set umask=022: must be a quoted octal string like \"022\" (a bare number is not read as octal)"
        )
    );
    let e = rejected(&[("user", "nobody"), ("max_connections", "0")]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        e[0].to_string(),
        format!("{COMMAND_LINE}: --set max_connections=0: expected an integer >= 1, found 0")
    );
    // A value cannot inject structure; an unknown field is named.
    let e = rejected(&[("user", "nobody\nexec: /bin/sh")]);
    assert!(
        e[0].message
            .starts_with("--set user=nobody\nexec: /bin/sh: mapping values are not allowed"),
        "{e:?}"
    );
    let e = rejected(&[("user", "nobody"), ("lisen", "1")]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].message
            .starts_with("--set lisen=1: unknown field \"lisen\", expected one of listen"),
        "{e:?}"
    );
    // As root, without --set user=, the service runs as nobody, never as
    // root; --set user=root is the way to say root.
    let as_root = |sets: &[(String, String)]| {
        oneline_with(&["7000".into()], sets, &["/bin/cat".into()], &ctx)
            .unwrap_or_else(|e| panic!("{e:?}"))
    };
    for sets in [vec![], vec![("user".to_string(), "null".to_string())]] {
        let c = as_root(&sets);
        let cred = c.services[0].credentials.as_ref().expect("a user");
        assert_eq!(
            (cred.user.as_str(), cred.uid),
            ("nobody", 65534),
            "{sets:?}"
        );
    }
    let c = as_root(&[("user".into(), "root".into())]);
    assert_eq!(c.services[0].credentials.as_ref().map(|c| c.uid), Some(0));
}
