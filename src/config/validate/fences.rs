//! The sandbox fields (superd.yaml.5, SANDBOXES): what each needs (root,
//! a capability, an exec service) and the paths it names.

use super::*;

/// The fences (superd.yaml(5), "Fences"). Namespaces, mounts and
/// capabilities need root: set when superd is not, each is a load error
/// naming the field (`no_new_privs` needs no privilege and is kept). A
/// builtin has no child to fence: its own fences are refused, those of
/// `defaults` do not concern it. It takes what the fences depend on (who
/// runs superd and the child, where the child's root is) one by one.
pub(super) fn fences(
    l: Layers,
    is_builtin: bool,
    ctx: &Context,
    credentials: Option<&Credentials>,
    chroot: Option<&Path>,
    errors: &mut Vec<ConfigError>,
) -> Fences {
    let own = l.own;
    // Whether a field that is set (to something other than its default)
    // can be used here; pushes the error when not.
    let usable = |field: &str, o: Origin, errors: &mut Vec<ConfigError>| -> bool {
        if is_builtin {
            if o.service.is_some() {
                errors.push(o.at_key(
                    field,
                    format!(
                        "{field}: a builtin is served inside superd: there is no child to fence"
                    ),
                ));
            }
            return false;
        }
        if !ctx.root() && field != "no_new_privs" {
            errors.push(o.at_key(
                field,
                format!(
                    "{field} needs superd to run as root (namespaces, mounts and capabilities are privileged)"
                ),
            ));
            return false;
        }
        true
    };
    let mut f = Fences::default();
    for (field, v, slot) in [
        ("no_new_privs", pick!(l, no_new_privs), &mut f.no_new_privs),
        (
            "private_network",
            pick!(l, private_network),
            &mut f.private_network,
        ),
        ("private_tmp", pick!(l, private_tmp), &mut f.private_tmp),
    ] {
        if let Some((true, o)) = v {
            *slot = usable(field, o, errors);
        }
    }
    if f.private_tmp {
        // Inside the chroot, where the child will look.
        for dir in ["/tmp", "/var/tmp"] {
            let host = host_path(Path::new(dir), chroot);
            if !host.is_dir() {
                let o = pick!(l, private_tmp).map_or(own, |(_, o)| o);
                errors.push(o.at_value(
                    "private_tmp",
                    format!(
                        "private_tmp: {} is not a directory to mount the private one on",
                        host.display()
                    ),
                ));
            }
        }
    }
    let paths = |field: &str,
                 v: Option<(&OneOrMany<crate::config::raw::AbsPath>, Origin)>,
                 errors: &mut Vec<ConfigError>|
     -> Vec<PathBuf> {
        let Some((OneOrMany(list), o)) = v else {
            return Vec::new();
        };
        if list.is_empty() || !usable(field, o, errors) {
            return Vec::new();
        }
        let mut out: Vec<PathBuf> = Vec::new();
        for (i, p) in list.iter().enumerate() {
            let p = &p.0;
            if p.components().any(|c| {
                matches!(
                    c,
                    std::path::Component::CurDir | std::path::Component::ParentDir
                )
            }) {
                errors.push(o.at_element(
                    field,
                    i,
                    format!(
                        "{field}: {} has . or .. in it: write the path itself",
                        p.display()
                    ),
                ));
            } else if let Err(e) = std::fs::metadata(p) {
                errors.push(o.at_element(
                    field,
                    i,
                    format!("{field}: {}: {}", p.display(), io_reason(&e)),
                ));
            } else if !out.contains(p) {
                out.push(p.clone());
            }
        }
        out
    };
    f.read_only_paths = paths("read_only_paths", pick!(l, read_only_paths), errors);
    f.writable_paths = paths("writable_paths", pick!(l, writable_paths), errors);
    f.inaccessible_paths = paths("inaccessible_paths", pick!(l, inaccessible_paths), errors);
    // A writable path outside every read-only one would change nothing:
    // refused rather than accepted and not applied.
    if let Some((OneOrMany(list), o)) = pick!(l, writable_paths) {
        for (i, p) in list.iter().enumerate() {
            if f.writable_paths.contains(&p.0)
                && !f.read_only_paths.iter().any(|r| p.0.starts_with(r))
            {
                errors.push(o.at_element(
                    "writable_paths",
                    i,
                    format!(
                        "writable_paths: {} is under no read_only_paths entry: it is writable already",
                        p.0.display()
                    ),
                ));
            }
        }
    }

    if let Some((OneOrMany(list), o)) = pick!(l, capabilities)
        && !list.is_empty()
        && usable("capabilities", o, errors)
    {
        match credentials {
            Some(c) if c.uid != 0 => {
                let held = permitted_capabilities();
                for (i, c) in list.iter().enumerate() {
                    if held & (1u64 << c.0) == 0 {
                        errors.push(o.at_element(
                            "capabilities",
                            i,
                            format!(
                                "capabilities: superd itself does not hold {}, so it cannot pass it on",
                                crate::service::capability_name(c.0)
                            ),
                        ));
                    } else if !f.capabilities.contains(&c.0) {
                        f.capabilities.push(c.0);
                    }
                }
            }
            _ => errors.push(o.at_key(
                "capabilities",
                "capabilities are kept by a non-root user: root has them all (set user: to someone else)",
            )),
        }
    }
    f
}

/// Why a path cannot be used, in a few words.
pub(super) fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        _ => e.to_string(),
    }
}

/// superd's permitted capability set (/proc/self/status, CapPrm).
pub(super) fn permitted_capabilities() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s.lines().find_map(|l| l.strip_prefix("CapPrm:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .unwrap_or(0)
}
