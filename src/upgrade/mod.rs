//! Upgrade in place (superd.8, UPGRADING): the state one image hands to
//! the next across `execve`.

pub mod state;
