//! CRC32C (Castagnoli), the checksum of a v2 header's `PP2_TYPE_CRC32C`
//! TLV: the reflected polynomial 0x82F63B78, initial value and final XOR
//! all ones (RFC 3720 §12.1, RFC 4960 appendix B). Table-driven, one byte
//! at a time: headers are at most 4 KiB and checked once per connection.

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

/// The remainder of every byte value, built at compile time.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// A running CRC32C: feed pieces with [`Crc32c::update`], read the value
/// with [`Crc32c::finish`]. Pieces let a caller checksum a header with its
/// checksum field replaced by zeros without copying it.
#[derive(Clone, Copy, Debug)]
pub struct Crc32c(u32);

impl Crc32c {
    pub fn new() -> Crc32c {
        Crc32c(!0)
    }

    pub fn update(mut self, bytes: &[u8]) -> Crc32c {
        for &b in bytes {
            self.0 = TABLE[((self.0 ^ u32::from(b)) & 0xff) as usize] ^ (self.0 >> 8);
        }
        self
    }

    pub fn finish(self) -> u32 {
        !self.0
    }
}

impl Default for Crc32c {
    fn default() -> Crc32c {
        Crc32c::new()
    }
}

/// The CRC32C of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    Crc32c::new().update(bytes).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3720 appendix B.4. The RFC lists each CRC as the bytes sent on
    /// the wire, least significant first: `aa 36 91 8a` is 0x8A9136AA.
    #[test]
    fn rfc3720_test_vectors() {
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
        let up: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c(&up), 0x46DD_794E);
        let down: Vec<u8> = (0u8..32).rev().collect();
        assert_eq!(crc32c(&down), 0x113F_DB5C);
        let read_pdu: [u8; 48] = [
            0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14,
            0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(crc32c(&read_pdu), 0xD996_3A56);
    }

    /// The common check value of CRC catalogues, and the empty input.
    #[test]
    fn check_value_and_empty() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn pieces_equal_the_whole() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for cut in [0, 1, 3, 500, 999, 1000] {
            let (a, b) = data.split_at(cut);
            assert_eq!(
                Crc32c::new().update(a).update(b).finish(),
                crc32c(&data),
                "cut at {cut}"
            );
        }
    }
}
