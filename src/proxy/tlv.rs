//! The TLVs after a v2 address block: type, 16-bit length, value; the SSL
//! TLV holds sub-TLVs of the same shape. The CRC32C TLV is verified over
//! the whole header with its value taken as zeros.

use super::crc32c::Crc32c;
use super::{Invalid, Ssl, Tlvs};

const ALPN: u8 = 0x01;
const AUTHORITY: u8 = 0x02;
const CRC32C: u8 = 0x03;
const NOOP: u8 = 0x04;
const UNIQUE_ID: u8 = 0x05;
const SSL: u8 = 0x20;
const SSL_VERSION: u8 = 0x21;
const SSL_CN: u8 = 0x22;
const SSL_CIPHER: u8 = 0x23;
const SSL_SIG_ALG: u8 = 0x24;
const SSL_KEY_ALG: u8 = 0x25;
const NETNS: u8 = 0x30;

/// The longest UNIQUE_ID the text allows.
const UNIQUE_ID_MAX: usize = 128;

/// Splits `bytes` into (type, value start, value) triples; every TLV must
/// end within `bytes`.
fn each(
    bytes: &[u8],
    mut f: impl FnMut(u8, usize, &[u8]) -> Result<(), Invalid>,
) -> Result<(), Invalid> {
    let mut i = 0;
    while i < bytes.len() {
        let head = bytes.get(i..i + 3).ok_or(Invalid::TlvTruncated)?;
        let len = usize::from(u16::from_be_bytes([head[1], head[2]]));
        let value = bytes.get(i + 3..i + 3 + len).ok_or(Invalid::TlvTruncated)?;
        f(head[0], i + 3, value)?;
        i += 3 + len;
    }
    Ok(())
}

fn once(slot: &mut Option<Vec<u8>>, t: u8, v: &[u8]) -> Result<(), Invalid> {
    if slot.is_some() {
        return Err(Invalid::TlvDuplicate(t));
    }
    *slot = Some(v.to_vec());
    Ok(())
}

/// The TLVs of `header` (a whole v2 header) from byte `start` to its end.
pub(super) fn parse(header: &[u8], start: usize) -> Result<Tlvs, Invalid> {
    let mut tlvs = Tlvs::default();
    let mut crc_at = None;
    each(&header[start..], |t, at, v| match t {
        ALPN => once(&mut tlvs.alpn, t, v),
        AUTHORITY => once(&mut tlvs.authority, t, v),
        CRC32C => {
            if crc_at.is_some() {
                return Err(Invalid::TlvDuplicate(t));
            }
            let v: [u8; 4] = v.try_into().map_err(|_| Invalid::Crc32cLength)?;
            tlvs.crc32c = Some(u32::from_be_bytes(v));
            crc_at = Some(start + at);
            Ok(())
        }
        UNIQUE_ID if v.len() > UNIQUE_ID_MAX => Err(Invalid::UniqueIdTooLong),
        UNIQUE_ID => once(&mut tlvs.unique_id, t, v),
        SSL => {
            if tlvs.ssl.is_some() {
                return Err(Invalid::TlvDuplicate(t));
            }
            tlvs.ssl = Some(ssl(v)?);
            Ok(())
        }
        NETNS => once(&mut tlvs.netns, t, v),
        NOOP => Ok(()),
        // The custom (0xE0-0xEF), experimental and future ranges, and
        // types not assigned yet: skipped.
        _ => Ok(()),
    })?;
    if let (Some(at), Some(sent)) = (crc_at, tlvs.crc32c) {
        let sum = Crc32c::new()
            .update(&header[..at])
            .update(&[0; 4])
            .update(&header[at + 4..])
            .finish();
        if sum != sent {
            return Err(Invalid::Crc32cMismatch);
        }
    }
    Ok(tlvs)
}

/// `PP2_TYPE_SSL`: client flags, verify result, then sub-TLVs.
fn ssl(v: &[u8]) -> Result<Ssl, Invalid> {
    if v.len() < 5 {
        return Err(Invalid::SslTruncated);
    }
    let mut ssl = Ssl {
        client: v[0],
        verify: u32::from_be_bytes([v[1], v[2], v[3], v[4]]),
        ..Ssl::default()
    };
    each(&v[5..], |t, _, sv| match t {
        SSL_VERSION => once(&mut ssl.version, t, sv),
        SSL_CN => once(&mut ssl.cn, t, sv),
        SSL_CIPHER => once(&mut ssl.cipher, t, sv),
        SSL_SIG_ALG => once(&mut ssl.sig_alg, t, sv),
        SSL_KEY_ALG => once(&mut ssl.key_alg, t, sv),
        _ => Ok(()),
    })?;
    Ok(ssl)
}
