//! The superd binary: the whole program is [`superd::main`] (the crate
//! map is in src/lib.rs).

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(superd::main() as u8)
}
