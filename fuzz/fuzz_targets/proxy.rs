//! Fuzzes the PROXY protocol parser: whatever the bytes, `parse` must
//! answer without panicking, and its answer must keep the promises the
//! event loop relies on (the checks `tests/fuzz_regressions.rs` replays).

use superd::proxy::{Accept, Parse, child_vars, parse};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        for accept in Accept::ALL {
            match parse(data, accept) {
                Parse::Incomplete { need_at_least } => assert!(need_at_least > data.len()),
                Parse::Complete { header_len, header } => {
                    assert!(header_len <= data.len());
                    // Nothing past the header was read, and the header
                    // minus its last byte is not a header.
                    let cut = parse(&data[..header_len], accept);
                    assert!(
                        matches!(&cut, Parse::Complete { header_len: n, header: h } if *n == header_len && *h == header)
                    );
                    assert!(!matches!(
                        parse(&data[..header_len - 1], accept),
                        Parse::Complete { .. }
                    ));
                    let peer = "192.0.2.1:1".parse().unwrap();
                    let local = "192.0.2.2:2".parse().unwrap();
                    for (_, v) in child_vars(&header, peer, local) {
                        assert!(!v.chars().any(char::is_control));
                    }
                }
                Parse::Invalid(_) => {}
            }
        }
    });
}
