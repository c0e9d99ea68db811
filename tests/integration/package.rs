//! The install: the Debian package built from `debian/` installs, works and
//! purges (root only: it is built with dpkg-buildpackage in a copy of the
//! tree outside the source directory, installed with `dpkg -i` on this
//! machine, checked, and purged), and the files it and the manual install
//! (README, superd.8) take from the repository agree with each other.

use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use crate::harness::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let p = root().join(rel);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", "command -v \"$1\" >/dev/null", "sh", tool])
        .status()
        .is_ok_and(|s| s.success())
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The last `n` lines of a long output, for a failure message.
fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// dpkg, waiting (bounded) while another dpkg or apt holds its lock.
fn dpkg(args: &[&str]) -> Output {
    let deadline = Instant::now() + 4 * DEADLINE;
    loop {
        let out = run(Command::new("dpkg").args(args));
        let locked = text(&out).contains("lock");
        if out.status.success() || !locked || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// `dpkg --purge superd` when dropped, so that a failed check leaves no
/// package behind.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let out = dpkg(&["--purge", "superd"]);
        if !out.status.success() && !std::thread::panicking() {
            panic!("dpkg --purge superd:\n{}", text(&out));
        }
    }
}

/// The lines of the manual install, as README and superd.8 give them.
fn install_commands(doc: &str) -> Vec<String> {
    doc.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("install ") || l.starts_with("cargo build"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_debian_package_version_is_the_crate_version() {
    let changelog = read("debian/changelog");
    let first = changelog.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("superd ({}) ", env!("CARGO_PKG_VERSION"))),
        "debian/changelog starts {first:?}, the crate is {}",
        env!("CARGO_PKG_VERSION")
    );
}

/// The example the install puts in /etc/superd/services.d passes
/// `--check`, and declares only disabled services.
#[test]
fn the_installed_example_is_disabled_and_passes_check() {
    let out = run(Command::new(superd_bin())
        .arg("--check")
        .arg(root().join("examples/services.d")));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    let services: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("service "))
        .collect();
    assert!(!services.is_empty(), "{report}");
    assert_eq!(
        report.matches("(disabled)").count(),
        services.len(),
        "{report}"
    );
}

/// The unit checks the configuration before it signals a reload, on the
/// paths it starts superd with, as `Type=notify` (Debian 12's systemd
/// rejects `notify-reload`), with a hardening block to enable by hand.
#[test]
fn the_systemd_unit_checks_before_it_reloads() {
    let unit = read("examples/superd.service");
    let values = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(values("Type"), ["notify"]);
    let start = values("ExecStart");
    assert_eq!(start, ["/usr/local/sbin/superd /etc/superd/services.d"]);
    let (bin, paths) = start[0].split_once(' ').unwrap();
    assert_eq!(
        values("ExecReload"),
        [
            format!("{bin} --check {paths}"),
            "/bin/kill -HUP $MAINPID".into()
        ]
    );
    assert!(unit.contains("\n# Hardening"), "{unit}");
    for commented in [
        "#ProtectSystem=",
        "#NoNewPrivileges=",
        "#CapabilityBoundingSet=",
    ] {
        assert!(unit.contains(&format!("\n{commented}")), "{commented}");
    }
}

/// The unit superd.8 shows is the example unit: each of its lines is one of
/// the example's, and no unit shown says `Type=notify-reload`.
#[test]
fn the_unit_in_superd_8_is_the_example_unit() {
    let page = read("man/superd.8");
    let unit = read("examples/superd.service");
    let from = page.find("A systemd unit").expect("superd.8 shows a unit");
    let block = &page[from..];
    let block = &block[block.find(".Bd").unwrap()..block.find(".Ed").unwrap()];
    let lines: Vec<&str> = block.lines().skip(1).collect();
    assert!(lines.len() >= 4, "{block}");
    for line in lines {
        let line = line.replace("\\e", "\\");
        assert!(
            unit.lines().any(|l| l == line),
            "superd.8's unit line {line:?} is not in examples/superd.service"
        );
    }
    for file in ["man/superd.8", "README.md", "examples/superd.service"] {
        let text = read(file);
        assert!(
            !text
                .lines()
                .any(|l| l.trim_start().starts_with("Type=notify-reload")),
            "{file} has a unit with Type=notify-reload"
        );
    }
}

/// README's Install section and superd.8 give the same manual install, and
/// every file it installs is in the repository.
#[test]
fn the_manual_install_is_the_same_in_readme_and_superd_8() {
    let readme = read("README.md");
    let section = &readme[readme.find("\n## Install").expect("README: ## Install")..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |i| i + 1)];
    let from_readme = install_commands(section);
    let from_page = install_commands(&read("man/superd.8"));
    assert!(from_readme.len() >= 5, "{section}");
    assert_eq!(from_readme, from_page);
    for cmd in &from_readme {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        if words[0] != "install" || words.contains(&"-d") {
            continue;
        }
        let source = words[words.len() - 2];
        if !source.starts_with("target/") {
            assert!(root().join(source).exists(), "{cmd}: no {source}");
        }
    }
}

#[test]
fn the_debian_package_builds_installs_and_purges() {
    if !is_root() {
        skip("needs root (dpkg -i, dpkg --purge)");
        return;
    }
    for (tool, package) in [
        ("dpkg-buildpackage", "dpkg-dev"),
        ("dh", "debhelper"),
        ("dpkg", "dpkg"),
        ("tar", "tar"),
        ("timeout", "coreutils"),
    ] {
        if !have(tool) {
            skip(&format!("no {tool} (apt-get install {package})"));
            return;
        }
    }
    // One run at a time on this machine (several checkouts may test).
    let lock = fs::File::create(std::env::temp_dir().join("superd-package-test.lock")).unwrap();
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock");
    let installed = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", "superd"]));
    if String::from_utf8_lossy(&installed.stdout).contains("installed") {
        skip("a superd package is installed on this machine: the test would replace and purge it");
        return;
    }

    // The copy's path is the same at every run of this checkout, so that
    // cargo's target directory (kept in target/) rebuilds only what changed.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    root().hash(&mut h);
    let work = std::env::temp_dir().join(format!("superd-deb-{:016x}", h.finish()));
    let _ = fs::remove_dir_all(&work);
    let work = TempDir(work);
    let src = work.path().join("superd");
    fs::create_dir_all(&src).unwrap();
    let copy = run(Command::new("sh").current_dir(root()).args([
        "-c",
        "tar --exclude=./target --exclude=./fuzz/target --exclude=./.git -cf - . | tar -C \"$1\" -xf -",
        "sh",
        src.to_str().unwrap(),
    ]));
    assert!(copy.status.success(), "copy: {}", text(&copy));

    // Bounded: a cold release build with LTO takes a minute or two here.
    let mut build = Command::new("timeout");
    build
        .args([
            "--kill-after=10s",
            "15m",
            "dpkg-buildpackage",
            "-b",
            "-us",
            "-uc",
        ])
        .current_dir(&src);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO_") && k != "CARGO_HOME" {
            build.env_remove(&*k);
        }
    }
    build.env(
        "CARGO_TARGET_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("deb-target"),
    );
    if let Some(dir) =
        std::env::var_os("CARGO").and_then(|c| PathBuf::from(c).parent().map(PathBuf::from))
    {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![dir];
        dirs.extend(std::env::split_paths(&path));
        build.env("PATH", std::env::join_paths(dirs).unwrap());
    }
    let started = Instant::now();
    let out = run(&mut build);
    assert!(
        out.status.success(),
        "dpkg-buildpackage -b -us -uc:\n{}",
        tail(&text(&out), 40)
    );
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!(
            "the_debian_package_builds_installs_and_purges: built in {:.0?}\n",
            started.elapsed()
        )
        .as_bytes(),
    );
    let deb = fs::read_dir(work.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("superd_") && n.ends_with(".deb")
        })
        .expect("superd_*.deb next to the tree");

    let out = dpkg(&["-i", deb.to_str().unwrap()]);
    let purge = Installed;
    assert!(out.status.success(), "dpkg -i:\n{}", text(&out));

    // What the package put where.
    let listed =
        String::from_utf8(run(Command::new("dpkg-query").args(["-L", "superd"])).stdout).unwrap();
    for path in [
        "/usr/sbin/superd",
        "/usr/share/man/man8/superd.8.gz",
        "/usr/share/man/man5/superd.yaml.5.gz",
        "/lib/systemd/system/superd.service",
        "/usr/share/doc/superd/examples/superd.socket",
        "/etc/superd/services.d/example.yaml",
    ] {
        assert!(
            listed.lines().any(|l| l == path),
            "{path} not in:\n{listed}"
        );
    }
    let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "superd"]));
    assert!(
        String::from_utf8_lossy(&conffiles.stdout).contains("/etc/superd/services.d/example.yaml "),
        "{}",
        text(&conffiles)
    );
    // The socket unit is an example, never enabled.
    assert!(!Path::new("/lib/systemd/system/superd.socket").exists());
    assert!(!Path::new("/etc/systemd/system/sockets.target.wants/superd.socket").exists());
    let unit = fs::read_to_string("/lib/systemd/system/superd.service").unwrap();
    assert!(
        unit.contains("\nExecStart=/usr/sbin/superd /etc/superd/services.d\n"),
        "{unit}"
    );
    assert!(
        unit.contains("\nExecReload=/usr/sbin/superd --check /etc/superd/services.d\nExecReload=/bin/kill -HUP $MAINPID\n"),
        "{unit}"
    );
    assert!(!unit.contains("/usr/local"), "{unit}");

    // The installed superd accepts its own example configuration.
    let out = run(Command::new("/usr/sbin/superd").args(["--check", "/etc/superd/services.d"]));
    assert!(
        out.status.success(),
        "superd --check /etc/superd/services.d:\n{}",
        text(&out)
    );

    if have("man") {
        for (name, file) in [
            ("superd", "/usr/share/man/man8/superd.8.gz"),
            ("superd.yaml", "/usr/share/man/man5/superd.yaml.5.gz"),
        ] {
            let out = run(Command::new("man").args(["-w", name]));
            assert!(out.status.success(), "man -w {name}: {}", text(&out));
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), file);
        }
    } else {
        skip("the man -w half: no man (apt-get install man-db)");
    }
    if have("systemd-analyze") {
        for unit in [
            "/lib/systemd/system/superd.service",
            "/usr/share/doc/superd/examples/superd.socket",
        ] {
            let mut verify = Command::new("systemd-analyze");
            verify.arg("verify");
            if !have("man") {
                verify.arg("--man=no");
            }
            let out = run(verify.arg(unit));
            assert!(
                out.status.success(),
                "systemd-analyze verify {unit}:\n{}",
                text(&out)
            );
        }
    } else {
        skip("the systemd-analyze verify half: no systemd-analyze (apt-get install systemd)");
    }

    drop(purge);
    assert!(!Path::new("/usr/sbin/superd").exists());
    assert!(
        !Path::new("/etc/superd").exists(),
        "purge leaves /etc/superd"
    );
}
