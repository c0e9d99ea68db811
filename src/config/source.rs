//! Where the configuration comes from (files and directories, or the
//! one-line mode's command line), kept by the loop and read again on every
//! reload (superd.8, SIGNALS).

use std::path::PathBuf;

use super::{Config, ConfigError};
use crate::cli::Options;

/// Where the configuration comes from, read again on every reload.
#[derive(Clone, Debug)]
pub enum Source {
    Paths(Vec<PathBuf>),
    OneLine {
        listen: Vec<String>,
        sets: Vec<(String, String)>,
        program: Vec<String>,
    },
}

impl Source {
    /// The source the command line names.
    pub fn of(opts: &Options) -> Source {
        if opts.is_oneline() {
            Source::OneLine {
                listen: opts.listen.clone(),
                sets: opts.sets.clone(),
                program: opts.program.clone(),
            }
        } else {
            Source::Paths(opts.paths.clone())
        }
    }

    /// Every service, or every error with its file, line and column.
    pub fn load(&self) -> Result<Config, Vec<ConfigError>> {
        match self {
            Source::Paths(p) => super::load(p),
            Source::OneLine {
                listen,
                sets,
                program,
            } => super::load_oneline(listen, sets, program),
        }
    }
}
