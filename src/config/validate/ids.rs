//! Who the child runs as: `user`, `group` and `groups` resolved, the root
//! rule (superd.yaml.5, THE ROOT RULE), and the ids `defaults` names
//! checked even when no service inherits them.

use super::*;

/// Resolves the users and groups `defaults` names even when no service
/// inherits them: an unknown one is a load error all the same (superd.yaml(5)). A
/// service that inherits one reports the same error, which `finish` merges.
pub(super) fn resolve_default_ids(
    d: &RawService,
    o: Origin,
    cache: &mut Cache,
    errors: &mut Vec<ConfigError>,
) {
    let ids = [
        ("user", &d.user, true),
        ("group", &d.group, false),
        ("socket_user", &d.socket_user, true),
        ("socket_group", &d.socket_group, false),
    ];
    for (field, r, is_user) in ids {
        let Some(r) = r else { continue };
        let found = if is_user {
            cache.user(r).map(drop)
        } else {
            cache.group(r).map(drop)
        };
        if let Err(m) = found {
            errors.push(o.at_value(field, m));
        }
    }
    for (i, r) in d.groups.iter().flat_map(|g| g.0.iter()).enumerate() {
        if let Err(m) = cache.group(r) {
            errors.push(o.at_element("groups", i, m));
        }
    }
}

/// Resolves user, group and groups, and applies the root rule (superd.yaml(5), THE ROOT RULE):
/// as root, an exec service needs a user and runs as uid 0 only when its
/// own `user:` says so; not as root, nobody can be switched to.
pub(super) fn credentials(
    l: Layers,
    is_builtin: bool,
    ctx: &Context,
    cache: &mut Cache,
    errors: &mut Vec<ConfigError>,
) -> Option<Credentials> {
    let Layers { raw, own, .. } = l;
    let user = pick!(l, user);
    let group = pick!(l, group);
    let groups = pick!(l, groups);
    let name = own.service.unwrap_or("defaults");

    let info = user.and_then(|(r, o)| {
        cache
            .user(r)
            .map_err(|m| errors.push(o.at_value("user", m)))
            .ok()
    });
    let gid = group.and_then(|(r, o)| {
        cache
            .group(r)
            .map_err(|m| errors.push(o.at_value("group", m)))
            .ok()
    });
    let mut list = Vec::new();
    if let Some((OneOrMany(rs), o)) = groups {
        for (i, r) in rs.iter().enumerate() {
            match cache.group(r) {
                Ok(g) => list.push(g),
                Err(m) => errors.push(o.at_element("groups", i, m)),
            }
        }
    }

    if is_builtin {
        // Builtins run inside superd: there is no child to give an identity.
        return None;
    }
    if ctx.root() {
        let Some((_, uo)) = user else {
            errors.push(own.at_key(
                "",
                format!("service {name:?} needs a user: superd runs as root (set user: here or in defaults)"),
            ));
            return None;
        };
        let info = info?;
        if info.uid == 0 && uo.service.is_some() && raw.user_merged {
            errors.push(own.at_key(
                "",
                format!(
                    "service {name:?} would run as root through a merge key (<<): only a service's own user: may say root"
                ),
            ));
            return None;
        }
        if info.uid == 0 && uo.service.is_none() {
            errors.push(own.at_key(
                "",
                format!(
                    "service {name:?} would run as root through defaults ({}): only a service's own user: may say root",
                    uo.at()
                ),
            ));
            return None;
        }
        // The same rule for the group: gid 0 reads root's files as surely
        // as uid 0 (superd.yaml(5), THE ROOT RULE).
        if let (Some(0), Some((_, go))) = (gid, group) {
            if go.service.is_none() {
                errors.push(own.at_key(
                    "",
                    format!(
                        "service {name:?} would run with group root through defaults ({}): only a service's own group: may say root",
                        go.at_field("group")
                    ),
                ));
                return None;
            }
            if raw.group_merged {
                errors.push(own.at_key(
                    "",
                    format!(
                        "service {name:?} would run with group root through a merge key (<<): only a service's own group: may say root"
                    ),
                ));
                return None;
            }
        }
        let gid = match (gid, info.gid) {
            (Some(g), _) | (None, Some(g)) => g,
            (None, None) => {
                if group.is_none() {
                    errors.push(user.map_or(own, |(_, o)| o).at_value(
                        "user",
                        format!(
                            "uid {} has no passwd entry: set group: explicitly",
                            info.uid
                        ),
                    ));
                }
                return None;
            }
        };
        let groups = match groups {
            Some(_) => list,
            None if info.gid.is_none() => Vec::new(),
            None => cache
                .grouplist(&info.name, gid)
                .map_err(|m| errors.push(user.map_or(own, |(_, o)| o).at_value("user", m)))
                .ok()?,
        };
        return Some(Credentials {
            user: info.name,
            uid: info.uid,
            gid,
            groups,
            home: info.home,
            shell: info.shell,
        });
    }

    // Not root: superd cannot change identity, so the child runs as
    // superd's own user, as xinetd does. user/group/groups were resolved
    // above, so a typo is still an error; they take effect under root.
    None
}
