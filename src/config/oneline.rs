//! The one-line mode (`superd --listen ADDR [--set FIELD=VALUE] -- PROG`,
//! superd.8): the command line made a one-service configuration, loaded as
//! a file is, its errors labelled by the option they came from.

use std::path::PathBuf;

use super::message::clean_message;
use super::{Config, ConfigError, Context, files, finish, raw};

/// The file name one-line mode reports errors under.
pub const COMMAND_LINE: &str = "<command line>";

/// Builds the one service of the one-line mode: named after the program,
/// listening on `listen`, running `program`, with each `--set FIELD=VALUE`
/// read as YAML exactly as `FIELD: VALUE` in a file.
pub fn load_oneline(
    listen: &[String],
    sets: &[(String, String)],
    program: &[String],
) -> Result<Config, Vec<ConfigError>> {
    oneline_with(listen, sets, program, &Context::current())
}

/// `load_oneline` for a given view of the running superd.
pub fn oneline_with(
    listen: &[String],
    sets: &[(String, String)],
    program: &[String],
    ctx: &Context,
) -> Result<Config, Vec<ConfigError>> {
    use serde_yaml::{Mapping, Value};
    let file = PathBuf::from(COMMAND_LINE);
    let whole = |m: String| ConfigError {
        file: file.clone(),
        line: None,
        column: None,
        message: m,
    };
    let mut errors = Vec::new();
    let Some(prog) = program.first() else {
        return Err(vec![whole("no program given after --".into())]);
    };
    let name = service_name(prog);

    // Each field becomes its own block of lines, so an error's line says
    // which argument it came from. Values are parsed alone and serialized
    // back: no VALUE can add a key or close the mapping.
    let strings = |v: &[String]| Value::Sequence(v.iter().cloned().map(Value::String).collect());
    let mut fields: Vec<(String, Value)> = vec![
        ("--listen".into(), strings(listen)),
        ("program".into(), strings(program)),
    ];
    let mut keys = vec!["listen".to_owned(), "exec".to_owned()];
    for (field, value) in sets {
        let label = format!("--set {field}={value}");
        if !field.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') || field.is_empty() {
            errors.push(whole(format!("{label}: bad field name {field:?}")));
            continue;
        }
        match field.as_str() {
            "listen" => errors.push(whole(format!("{label}: use --listen"))),
            "exec" | "builtin" => {
                errors.push(whole(format!("{label}: the program is given after --")))
            }
            _ if keys.contains(field) => {
                errors.push(whole(format!("{label}: {field} is set twice")))
            }
            _ => {}
        }
        if (field == "umask" || field == "socket_mode")
            && value.trim_start().starts_with(|c: char| c.is_ascii_digit())
        {
            errors.push(whole(format!("{label}: {}", raw::bare_octal_message())));
            continue;
        }
        match serde_yaml::from_str::<Value>(value) {
            Ok(v) => {
                keys.push(field.clone());
                fields.push((label, v));
            }
            Err(e) => errors.push(whole(format!("{label}: {}", clean_message(&e)))),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    // As root, a quick tool runs as nobody unless told otherwise: the
    // command line is a configuration whose `defaults` name that user
    // (defaults can never make a service root), so `superd --listen ADDR
    // -- PROG` works for root too, and nothing runs as root by accident.
    let as_nobody = ctx.euid == 0
        && !fields
            .iter()
            .zip(&keys)
            .any(|((_, v), k)| k == "user" && !v.is_null());
    let mut text = String::from("services:\n");
    let name_yaml = serde_yaml::to_string(&Value::String(name)).unwrap_or_default();
    text.push_str(&format!("  {}:\n", name_yaml.trim_end()));
    let mut lines = 2;
    let mut ranges: Vec<(usize, usize, String)> = Vec::new();
    for ((label, value), key) in fields.into_iter().zip(keys) {
        let mut m = Mapping::new();
        m.insert(Value::String(key), value);
        let block = serde_yaml::to_string(&m).unwrap_or_default();
        let first = lines + 1;
        for line in block.lines() {
            text.push_str("    ");
            text.push_str(line);
            text.push('\n');
            lines += 1;
        }
        ranges.push((first, lines, label));
    }

    if as_nobody {
        text.push_str("defaults:\n  user: nobody\n");
    }
    let sources = [files::Source {
        path: file.clone(),
        text,
    }];
    finish(&sources, ctx, Vec::new()).map_err(|errs| {
        errs.into_iter()
            .map(|e| {
                let label = e
                    .line
                    .and_then(|l| ranges.iter().find(|(a, b, _)| (*a..=*b).contains(&l)))
                    .map(|(_, _, label)| label.as_str());
                // The label names the field already.
                let field = label
                    .and_then(|l| l.strip_prefix("--set "))
                    .and_then(|l| l.split_once('='))
                    .map(|(f, _)| format!("{f}: "));
                let msg = field
                    .and_then(|f| e.message.strip_prefix(f.as_str()))
                    .unwrap_or(&e.message);
                // No file to edit in this mode: say which option to add.
                let mut msg =
                    msg.replace("(set user: here or in defaults)", "(add --set user=NAME)");
                // The implied user (no --set user= as root) is not there.
                if as_nobody && label.is_none() && msg.contains("\"nobody\"") {
                    msg.push_str(
                        " (as root the one-line mode runs as nobody: add --set user=NAME)",
                    );
                }
                match label {
                    Some(label) => whole(format!("{label}: {msg}")),
                    // An error of the service as a whole.
                    None => whole(msg),
                }
            })
            .collect()
    })
}

/// The program's file name, made a valid service name.
fn service_name(prog: &str) -> String {
    crate::service::name_from(prog.rsplit('/').next().unwrap_or(prog))
}
