//! Fuzzes config parsing and validation of one file's bytes: whatever the
//! bytes, `check_text` must return a configuration or errors, never panic,
//! hang, or blow the stack.

use superd::config::{Context, check_text};

fn main() {
    let ctx = Context::current();
    afl::fuzz!(|data: &[u8]| {
        let _ = check_text("fuzz.yaml", data, &ctx);
    });
}
