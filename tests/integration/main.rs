//! Integration tests: every test runs the real `superd` binary with a
//! temporary configuration on loopback port 0, reads the bound port from its
//! log, and talks to it over real sockets.

mod harness;

mod activation;
mod basics;
mod builtins;
mod child;
mod cli;
mod docs;
mod examples;
mod faults;
mod fences;
mod import;
mod limits;
mod live;
mod logs;
mod metrics;
mod oneline;
mod package;
mod proxy;
mod reap;
mod review;
mod socket_files;
mod sockets;
mod tree;
mod upgrade;
