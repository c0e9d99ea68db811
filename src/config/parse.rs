//! One file's text to its raw form: the structural walk (`tree`), then
//! serde (`raw`) read again past each error, so that every error of the
//! file is reported with its line and column, not only the first.

use std::path::Path;

use super::message::clean_message;
use super::{ConfigError, raw, replay, tree, validate};

pub(super) fn yaml_error(file: &Path, e: &serde_yaml::Error) -> ConfigError {
    let loc = e.location();
    ConfigError {
        file: file.to_path_buf(),
        line: loc.as_ref().map(|l| l.line()),
        column: loc.as_ref().map(|l| l.column()),
        message: clean_message(e),
    }
}

pub(super) fn at(file: &Path, pos: Option<tree::Pos>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        line: pos.map(|p| p.line),
        column: pos.map(|p| p.column),
        message: message.into(),
    }
}

/// Errors after which the rest of a file goes unchecked (each costs
/// another reading of the file).
const MAX_ERRORS_PER_FILE: usize = 20;

/// Walks and deserializes one file. `None` when nothing more can be said
/// about it (its errors are in `errors`).
pub(super) fn parse(
    path: &Path,
    text: &str,
    errors: &mut Vec<ConfigError>,
    defaults_broken: &mut bool,
) -> Option<validate::Parsed> {
    if let Some(pos) = tree::flow_too_deep(text) {
        errors.push(at(
            path,
            Some(pos),
            format!(
                "brackets ([ and {{) nested deeper than {} levels",
                tree::MAX_FLOW_BRACKETS
            ),
        ));
        return None;
    }
    let mut docs = serde_yaml::Deserializer::from_str(text);
    let Some(first) = docs.next() else {
        // Empty, or only comments: no services.
        return Some(validate::Parsed {
            path: path.to_path_buf(),
            raw: raw::RawFile::default(),
            index: tree::Index::default(),
        });
    };
    let walked = match tree::walk(first, text, false) {
        Ok(w) => w,
        Err(e) => {
            errors.push(yaml_error(path, &e));
            return None;
        }
    };
    if let Some(second) = docs.next() {
        errors.push(at(
            path,
            tree::first_node(second),
            "a second YAML document: a file holds one mapping (no --- separators)",
        ));
        return None;
    }
    // Most files have no error: deserialize them from the nodes the walk
    // recorded, without a second reading by libyaml. Where the recording
    // cannot answer as serde_yaml would, or on any error, the file is read
    // again below, and every error named as serde_yaml names it.
    if walked.bare_octals.is_empty() && !walked.root_is_null && !replay::may_have_tags(text) {
        let replayed = replay::Replay::new(&walked.events)
            .run(|r| raw::RawFile::deserialize_skipping(r, &raw::Skip::default()));
        if let Ok(raw) = replayed {
            #[cfg(debug_assertions)]
            same_as_serde_yaml(text, &raw);
            return Some(validate::Parsed {
                path: path.to_path_buf(),
                raw,
                index: walked.index,
            });
        }
    }
    // A bare octal is an error of its field: that field is skipped below,
    // and the rest of the file is read.
    let mut skip = raw::Skip::default();
    for (p, field) in &walked.bare_octals {
        let name = field.last().map_or("", String::as_str);
        errors.push(at(
            path,
            Some(*p),
            format!("{name}: {}", raw::bare_octal_message()),
        ));
        skip.insert(field.clone());
    }
    if walked.root_is_null {
        return Some(validate::Parsed {
            path: path.to_path_buf(),
            raw: raw::RawFile::default(),
            index: walked.index,
        });
    }
    // serde stops at the first error: note it, skip the field (or the
    // service, or defaults) it is in, and read the file again, so that
    // every error of the file is reported, not only the first.
    let raw = loop {
        let doc = serde_yaml::Deserializer::from_str(text).next()?;
        match raw::RawFile::deserialize_skipping(doc, &skip) {
            Ok(raw) => break raw,
            Err(e) => {
                errors.push(yaml_error(path, &e));
                // Past an error outside any service (a top-level key) the
                // rest is unknown.
                let within = skip.current();
                if within.is_empty() || !skip.insert(within) {
                    return None;
                }
                if skip.paths().count() >= MAX_ERRORS_PER_FILE {
                    errors.push(at(
                        path,
                        None,
                        format!(
                            "{MAX_ERRORS_PER_FILE} errors: the rest of the file was not checked"
                        ),
                    ));
                    return None;
                }
            }
        }
    };
    if skip.paths().any(|p| p[0] == "defaults") {
        *defaults_broken = true;
        return None;
    }
    // A service with a broken field is left out of the checks that follow:
    // they would report what the broken field means (a misspelt listen is
    // not a missing one).
    let mut raw = raw;
    if let Some(services) = &mut raw.services {
        services
            .0
            .retain(|(name, _)| !skip.paths().any(|p| p.get(1) == Some(name)));
    }
    Some(validate::Parsed {
        path: path.to_path_buf(),
        raw,
        index: walked.index,
    })
}

/// Debug builds (the tests, the fuzzer) hold every replayed file against
/// serde_yaml's own reading of it: they must agree (`replay.rs`).
#[cfg(debug_assertions)]
fn same_as_serde_yaml(text: &str, replayed: &raw::RawFile) {
    let direct = serde_yaml::Deserializer::from_str(text)
        .next()
        .map(|doc| raw::RawFile::deserialize_skipping(doc, &raw::Skip::default()));
    match direct {
        Some(Ok(direct)) => assert_eq!(
            format!("{replayed:?}"),
            format!("{direct:?}"),
            "the replay differs from serde_yaml's reading of:\n{text}"
        ),
        other => panic!("the replay read what serde_yaml refuses ({other:?}):\n{text}"),
    }
}
