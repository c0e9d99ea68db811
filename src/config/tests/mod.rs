//! Tests of the config layer, by area: one per error class, each pinning
//! the exact file:line:column, plus defaults, a full example and the
//! one-line mode. The helpers here make and remove temporary directories.

// `&[p.clone()]` reads better in tests than `slice::from_ref(&p)`.
#![allow(clippy::cloned_ref_to_slice_refs)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::service::*;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh private directory, removed with everything in it when dropped.
struct TmpDir(PathBuf);

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::ops::Deref for TmpDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TmpDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

/// A fresh private directory (0755: a config dir must not be writable by
/// others when the tests run as root).
fn tmpdir() -> TmpDir {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("superd-config-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    TmpDir(d)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn root_ctx() -> Context {
    Context {
        euid: 0,
        egid: 0,
        groups: vec![0],
        path: validate::DEFAULT_PATH.into(),
        nr_open: Some(1 << 20),
        hard_limits: vec![(RlimitResource::Core, Some(0))],
        can_raise_limits: true,
        proxy_served: true,
    }
}

fn user_ctx() -> Context {
    Context {
        euid: 65534,
        egid: 65534,
        groups: vec![],
        path: validate::DEFAULT_PATH.into(),
        nr_open: Some(1 << 20),
        hard_limits: vec![(RlimitResource::Core, Some(0))],
        can_raise_limits: false,
        proxy_served: true,
    }
}

fn is_root() -> bool {
    euid_is_root()
}

/// Says on the test output (past libtest's capture, which keeps a passing
/// test's `eprintln!` to itself) that the running test skips, and why.
fn skip(reason: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("a config test");
    let _ = writeln!(std::io::stderr(), "skipped {name}: {reason}");
}

/// `load_with` as these tests need it: validation sees `ctx`, while the
/// file layer's ownership rule (a root superd refuses a config someone else
/// can write, superd.8) follows who really runs the tests. Files root owns
/// cannot be made without root, so a normal user's run that pretends to be
/// root checks everything but that rule, which has its own root-only test
/// (`writable_config_refused_when_root`).
fn load_as(paths: &[PathBuf], ctx: &Context) -> Result<Config, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let sources = files::collect(paths, ctx.euid == 0 && is_root(), &mut errors);
    finish(&sources, ctx, errors).map_err(|mut errors| {
        in_file_order(&mut errors, paths);
        errors
    })
}

/// Loads one file's text as root would; returns the errors.
fn errs(text: &str) -> (PathBuf, Vec<ConfigError>) {
    let d = tmpdir();
    let p = write(&d, "t.yaml", text);
    let e = load_as(&[p.clone()], &root_ctx()).expect_err("expected errors");
    (p, e)
}

fn ok(text: &str) -> Config {
    let d = tmpdir();
    let p = write(&d, "t.yaml", text);
    load_as(&[p], &root_ctx()).unwrap_or_else(|e| panic!("{e:?}"))
}

/// Asserts exactly one error, at `line:col`, whose message contains `msg`.
fn one(text: &str, line: usize, col: usize, msg: &str) {
    let (p, e) = errs(text);
    assert_eq!(e.len(), 1, "{e:#?}");
    let s = e[0].to_string();
    assert_eq!(e[0].file, p);
    assert_eq!((e[0].line, e[0].column), (Some(line), Some(col)), "{s}");
    assert!(s.contains(msg), "{s:?} does not contain {msg:?}");
}

const ECHO: &str = "services:\n  echo:\n    listen: 127.0.0.1:7007\n    builtin: echo\n";

mod fences;
mod ids;
mod oneline;
mod parse;
mod paths;
mod replay;
mod service;
mod socket;
