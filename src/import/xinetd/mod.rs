//! xinetd.conf(5): `defaults` and `service NAME { attr = values }` blocks,
//! `include` and `includedir`, every attribute mapped to a superd field,
//! approximated with a note, or reported dropped.

use std::path::{Path, PathBuf};

use super::{Env, Loc, ParseError, SourceFile};

/// How deep includes may nest (a loop of includes ends here).
const MAX_INCLUDE_DEPTH: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Set,
    Add,
    Remove,
}

#[derive(Clone, Debug)]
struct Attr {
    name: String,
    op: Op,
    values: Vec<String>,
    loc: Loc,
}

#[derive(Clone, Debug)]
struct Block {
    /// `None` for `defaults`.
    service: Option<String>,
    loc: Loc,
    attrs: Vec<Attr>,
}

/// Reads `path` (a file, or a directory of service files) and everything
/// it includes; returns the services of each file read, in order.
pub fn import(path: &Path, env: &Env) -> Result<Vec<SourceFile>, Vec<ParseError>> {
    let mut blocks: Vec<Block> = Vec::new();
    let mut order: Vec<PathBuf> = Vec::new();
    let mut errors = Vec::new();
    match (env.list)(path) {
        Ok(names) => read_dir(path, names, env, 0, &mut blocks, &mut order, &mut errors),
        Err(_) => read_file(path, env, 0, &mut blocks, &mut order, &mut errors),
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let defaults: Vec<&Attr> = blocks
        .iter()
        .filter(|b| b.service.is_none())
        .flat_map(|b| &b.attrs)
        .collect();
    let mut files: Vec<SourceFile> = order
        .into_iter()
        .map(|p| SourceFile {
            path: p,
            entries: Vec::new(),
        })
        .collect();
    for b in blocks.iter().filter(|b| b.service.is_some()) {
        let e = translate(b, &defaults, env);
        if let Some(f) = files.iter_mut().find(|f| f.path == b.loc.file) {
            f.entries.push(e);
        }
    }
    Ok(files)
}

/// The files of an includedir: names without a dot and not ending in `~`,
/// in byte order (xinetd.conf(5), includedir).
fn read_dir(
    dir: &Path,
    mut names: Vec<String>,
    env: &Env,
    depth: usize,
    blocks: &mut Vec<Block>,
    order: &mut Vec<PathBuf>,
    errors: &mut Vec<ParseError>,
) {
    names.retain(|n| !n.contains('.') && !n.ends_with('~'));
    names.sort();
    for n in names {
        read_file(&dir.join(n), env, depth, blocks, order, errors);
    }
}

fn read_file(
    path: &Path,
    env: &Env,
    depth: usize,
    blocks: &mut Vec<Block>,
    order: &mut Vec<PathBuf>,
    errors: &mut Vec<ParseError>,
) {
    let at = |line: usize, message: String| ParseError {
        loc: Loc {
            file: path.to_path_buf(),
            line,
        },
        message,
    };
    if depth > MAX_INCLUDE_DEPTH {
        errors.push(at(0, "includes nested too deep (a loop?)".into()));
        return;
    }
    let text = match (env.read)(path) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) => {
            errors.push(at(0, format!("cannot read: {e}")));
            return;
        }
    };
    if !order.iter().any(|p| p == path) {
        order.push(path.to_path_buf());
    }
    let mut current: Option<Block> = None;
    // A `service NAME` or `defaults` line whose `{` is still to come.
    let mut pending: Option<Block> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let loc = Loc {
            file: path.to_path_buf(),
            line: n,
        };
        if let Some(b) = current.as_mut() {
            if line == "}" {
                blocks.push(current.take().expect("in a block"));
                continue;
            }
            match attribute(line, loc) {
                Ok(a) => b.attrs.push(a),
                Err(m) => errors.push(at(n, m)),
            }
            continue;
        }
        if line == "{" {
            match pending.take() {
                Some(b) => current = Some(b),
                None => errors.push(at(
                    n,
                    "`{` without `service NAME` or `defaults` before it".into(),
                )),
            }
            continue;
        }
        if pending.is_some() {
            errors.push(at(n, "expected `{`".into()));
            pending = None;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let opens = words.last() == Some(&"{");
        let head: &[&str] = if opens {
            &words[..words.len() - 1]
        } else {
            &words
        };
        let block = match head {
            ["service", name] => Some(Block {
                service: Some((*name).to_owned()),
                loc,
                attrs: Vec::new(),
            }),
            ["defaults"] => Some(Block {
                service: None,
                loc,
                attrs: Vec::new(),
            }),
            ["include", file] if !opens => {
                read_file(Path::new(file), env, depth + 1, blocks, order, errors);
                None
            }
            ["includedir", dir] if !opens => {
                match (env.list)(Path::new(dir)) {
                    Ok(names) => {
                        read_dir(Path::new(dir), names, env, depth + 1, blocks, order, errors)
                    }
                    Err(e) => errors.push(at(n, format!("includedir {dir}: {e}"))),
                }
                None
            }
            _ => {
                errors.push(at(n, format!("expected `service NAME`, `defaults`, `include FILE` or `includedir DIR`, found {line:?}")));
                None
            }
        };
        if let Some(b) = block {
            if opens {
                current = Some(b);
            } else {
                pending = Some(b);
            }
        }
    }
    if let Some(b) = current.or(pending) {
        errors.push(ParseError {
            loc: b.loc,
            message: "block not closed with `}`".into(),
        });
    }
}

/// `name op values...`.
fn attribute(line: &str, loc: Loc) -> Result<Attr, String> {
    let (name, rest, op) = if let Some(i) = line.find("+=") {
        (&line[..i], &line[i + 2..], Op::Add)
    } else if let Some(i) = line.find("-=") {
        (&line[..i], &line[i + 2..], Op::Remove)
    } else if let Some(i) = line.find('=') {
        (&line[..i], &line[i + 1..], Op::Set)
    } else {
        return Err(format!("expected `attribute = value`, found {line:?}"));
    };
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!("expected `attribute = value`, found {line:?}"));
    }
    Ok(Attr {
        name: name.to_owned(),
        op,
        values: rest.split_whitespace().map(str::to_owned).collect(),
        loc,
    })
}

mod attrs;
mod block;
mod view;

use block::translate;

#[cfg(test)]
mod tests;
