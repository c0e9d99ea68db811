//! The parser against the shapes of HAProxy's `proxy-protocol.txt`: every
//! family, LOCAL and UNKNOWN, each TLV, every malformed shape; and the two
//! properties the event loop relies on (never past the header, never
//! `Complete` for a prefix).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::v2::SIGNATURE;
use super::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn complete(buf: &[u8], accept: Accept) -> (usize, Header) {
    match parse(buf, accept) {
        Parse::Complete { header_len, header } => (header_len, *header),
        other => panic!(
            "{:?}: expected Complete, got {other:?}",
            String::from_utf8_lossy(buf)
        ),
    }
}

fn invalid(buf: &[u8], accept: Accept) -> Invalid {
    match parse(buf, accept) {
        Parse::Invalid(e) => e,
        other => panic!(
            "{:?}: expected Invalid, got {other:?}",
            String::from_utf8_lossy(buf)
        ),
    }
}

fn proxied(h: &Header) -> (SocketAddr, SocketAddr) {
    match h.endpoints {
        Endpoints::Proxied {
            source,
            destination,
        } => (source, destination),
        e => panic!("expected Proxied, got {e:?}"),
    }
}

/// A TLV: type, big-endian length, value.
fn tlv(t: u8, v: &[u8]) -> Vec<u8> {
    let mut out = vec![t];
    out.extend_from_slice(&(v.len() as u16).to_be_bytes());
    out.extend_from_slice(v);
    out
}

/// A v2 header: signature, version 2 with `cmd`, `fam`, the length of
/// `addr` + `tlvs`, then both.
fn v2(cmd: u8, fam: u8, addr: &[u8], tlvs: &[u8]) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.push(0x20 | cmd);
    out.push(fam);
    out.extend_from_slice(&((addr.len() + tlvs.len()) as u16).to_be_bytes());
    out.extend_from_slice(addr);
    out.extend_from_slice(tlvs);
    out
}

/// The address block of TCP over IPv4.
fn addr4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut a = src.to_vec();
    a.extend_from_slice(&dst);
    a.extend_from_slice(&sport.to_be_bytes());
    a.extend_from_slice(&dport.to_be_bytes());
    a
}

fn addr6(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16) -> Vec<u8> {
    let mut a = src.octets().to_vec();
    a.extend_from_slice(&dst.octets());
    a.extend_from_slice(&sport.to_be_bytes());
    a.extend_from_slice(&dport.to_be_bytes());
    a
}

/// `header` with a CRC32C TLV appended and filled in, as a sender does.
fn with_crc(mut header: Vec<u8>) -> Vec<u8> {
    let len = u16::from_be_bytes([header[14], header[15]]) + 7;
    header[14..16].copy_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&tlv(0x03, &[0; 4]));
    let sum = crc32c(&header);
    let at = header.len() - 4;
    header[at..].copy_from_slice(&sum.to_be_bytes());
    header
}

// ---- version 1 ----

#[test]
fn v1_tcp4_the_texts_example() {
    let buf = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n";
    let (len, h) = complete(buf, Accept::V1);
    assert_eq!(len, 47);
    assert_eq!(h.version, Version::V1);
    assert_eq!(
        proxied(&h),
        (sa("192.168.0.1:56324"), sa("192.168.0.11:443"))
    );
    assert_eq!(h.tlvs, Tlvs::default());
    assert_eq!(complete(buf, Accept::Any), (len, h));
}

#[test]
fn v1_tcp6_and_the_longest_lines() {
    let (len, h) = complete(b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n", Accept::V1);
    assert_eq!(len, 36);
    assert_eq!(proxied(&h), (sa("[2001:db8::1]:65535"), sa("[::1]:0")));
    let f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let line = format!("PROXY TCP6 {f} {f} 65535 65535\r\n");
    assert_eq!(line.len(), 104);
    assert_eq!(complete(line.as_bytes(), Accept::Any).0, 104);
    let line = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
    assert_eq!(complete(line.as_bytes(), Accept::Any).0, 56);
}

#[test]
fn v1_unknown_short_and_worst_case() {
    let (len, h) = complete(b"PROXY UNKNOWN\r\nrest", Accept::V1);
    assert_eq!((len, h.endpoints), (15, Endpoints::Unknown));
    // The worst case of the text: 107 bytes, whatever follows UNKNOWN ignored.
    let f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let line = format!("PROXY UNKNOWN {f} {f} 65535 65535\r\n");
    assert_eq!(line.len(), V1_MAX);
    let (len, h) = complete(line.as_bytes(), Accept::V1);
    assert_eq!((len, h.endpoints), (107, Endpoints::Unknown));
    // Even garbage after UNKNOWN.
    let (_, h) = complete(b"PROXY UNKNOWN \xff\x00 x\r\n", Accept::V1);
    assert_eq!(h.endpoints, Endpoints::Unknown);
}

#[test]
fn v1_without_crlf_within_107_bytes_is_refused() {
    let f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let line = format!("PROXY UNKNOWN {f} {f} 65535 655355\r\n");
    assert_eq!(line.len(), 108);
    assert_eq!(invalid(line.as_bytes(), Accept::V1), Invalid::V1TooLong);
    // Refused as soon as 106 bytes hold no CR: a CRLF could no longer end
    // the line within 107.
    let long = format!("PROXY UNKNOWN {}", "x".repeat(200));
    assert_eq!(
        invalid(&long.as_bytes()[..106], Accept::V1),
        Invalid::V1TooLong
    );
    assert!(matches!(
        parse(&long.as_bytes()[..105], Accept::V1),
        Parse::Incomplete { need_at_least: 106 }
    ));
    // A CR as the 107th byte: its LF would be the 108th.
    let mut cr_late = long.as_bytes()[..106].to_vec();
    cr_late.push(b'\r');
    assert_eq!(invalid(&cr_late, Accept::V1), Invalid::V1TooLong);
}

#[test]
fn v1_lone_cr_or_lf_is_refused() {
    assert_eq!(
        invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", Accept::V1),
        Invalid::V1LineEnd
    );
    assert_eq!(
        invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", Accept::V1),
        Invalid::V1LineEnd
    );
    assert_eq!(
        invalid(b"PROXY UNKNOWN\n\r\n", Accept::V1),
        Invalid::V1LineEnd
    );
    // A CR at the end of what arrived: wait for the LF.
    assert_eq!(
        parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", Accept::V1),
        Parse::Incomplete { need_at_least: 32 }
    );
}

#[test]
fn v1_malformed_lines_are_refused() {
    let bad: &[&[u8]] = &[
        b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.08 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
        b"PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
        b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        b"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
        b"PROXY TCP4 ::1 ::1 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP6 ::1 1.2.3.4 1 2\r\n",
        b"PROXY TCP6 [::1] ::1 1 2\r\n",
        b"PROXY TCP6 fe80::1%lo ::1 1 2\r\n",
        b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY UNKNOWNX\r\n",
        b"PROXY \r\n",
        b"PROXY TCP4\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 \xff 2\r\n",
    ];
    for b in bad {
        assert!(
            matches!(invalid(b, Accept::Any), Invalid::V1Syntax(_)),
            "{:?}",
            String::from_utf8_lossy(b)
        );
    }
    // Not PROXY at all, refused at the first byte that differs.
    assert_eq!(invalid(b"PROXX", Accept::V1), Invalid::NotProxy);
    assert_eq!(invalid(b"PROXYTCP4", Accept::V1), Invalid::NotProxy);
    assert_eq!(invalid(b"proxy ", Accept::Any), Invalid::NotProxy);
    assert_eq!(invalid(b"G", Accept::Any), Invalid::NotProxy);
    assert_eq!(
        invalid(b"GET / HTTP/1.1\r\n", Accept::V1),
        Invalid::NotProxy
    );
    assert_eq!(
        invalid(b"\x16\x03\x01\x02\x00", Accept::Any),
        Invalid::NotProxy
    );
    assert_eq!(invalid(b"SSH-2.0-x\r\n", Accept::V2), Invalid::NotProxy);
}

// ---- version 2 ----

#[test]
fn v2_tcp4_as_haproxy_sends_it() {
    // send-proxy-v2, captured: 172.19.0.1:42578 -> 172.19.0.3:80, then data.
    let mut buf = SIGNATURE.to_vec();
    buf.extend_from_slice(&[
        0x21, 0x11, 0x00, 0x0c, 0xac, 0x13, 0x00, 0x01, 0xac, 0x13, 0x00, 0x03, 0xa6, 0x52, 0x00,
        0x50,
    ]);
    buf.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let (len, h) = complete(&buf, Accept::V2);
    assert_eq!(len, 28);
    assert_eq!(h.version, Version::V2);
    assert_eq!(proxied(&h), (sa("172.19.0.1:42578"), sa("172.19.0.3:80")));
    assert_eq!(complete(&buf, Accept::Any), (len, h));
}

#[test]
fn v2_tcp6() {
    let (s, d): (Ipv6Addr, Ipv6Addr) = (
        "2001:db8::7".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
    );
    let buf = v2(1, 0x21, &addr6(s, d, 50312, 443), &[]);
    let (len, h) = complete(&buf, Accept::V2);
    assert_eq!(len, 16 + 36);
    assert_eq!(
        proxied(&h),
        (sa("[2001:db8::7]:50312"), sa("[2001:db8::1]:443"))
    );
}

#[test]
fn v2_local_is_the_proxys_own_connection() {
    let buf = v2(0, 0x00, &[], &[]);
    let (len, h) = complete(&buf, Accept::V2);
    assert_eq!((len, h.endpoints), (16, Endpoints::Local));
    // LOCAL with an address block and bytes after it: discarded unread,
    // but counted.
    let junk = [0xffu8, 0xff];
    let buf = v2(0, 0x11, &addr4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2), &junk);
    let (len, h) = complete(&buf, Accept::Any);
    assert_eq!(len, 16 + 14);
    assert_eq!((h.endpoints, h.tlvs), (Endpoints::Local, Tlvs::default()));
}

#[test]
fn v2_unspec_unix_and_dgram_fall_back_to_the_real_endpoints() {
    let (_, h) = complete(&v2(1, 0x00, &[], &[]), Accept::V2);
    assert_eq!(h.endpoints, Endpoints::Unknown);
    // AF_UNSPEC has no layout: what follows is not read as TLVs.
    let (len, h) = complete(&v2(1, 0x00, &[1, 2, 3, 4, 5], &[]), Accept::V2);
    assert_eq!(
        (len, h.endpoints, h.tlvs),
        (21, Endpoints::Unknown, Tlvs::default())
    );
    let alpn = tlv(0x01, b"h2");
    for fam in [0x31, 0x32] {
        let mut paths = [0u8; 216];
        paths[..5].copy_from_slice(b"/a/b\0");
        let (len, h) = complete(&v2(1, fam, &paths, &alpn), Accept::V2);
        assert_eq!(len, 16 + 216 + 5);
        assert_eq!(h.endpoints, Endpoints::Unknown);
        assert_eq!(h.tlvs.alpn.as_deref(), Some(&b"h2"[..]));
    }
    let a4 = addr4([192, 0, 2, 1], [192, 0, 2, 2], 53, 53);
    let (_, h) = complete(&v2(1, 0x12, &a4, &alpn), Accept::V2);
    assert_eq!(h.endpoints, Endpoints::Unknown);
    assert!(h.tlvs.alpn.is_some());
    let a6 = addr6(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, 53, 53);
    let (_, h) = complete(&v2(1, 0x22, &a6, &[]), Accept::V2);
    assert_eq!(h.endpoints, Endpoints::Unknown);
}

#[test]
fn v2_bad_signature_is_refused_at_the_first_wrong_byte() {
    let good = v2(1, 0x11, &addr4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2), &[]);
    for i in 1..12 {
        let mut b = good.clone();
        b[i] ^= 0x40;
        assert_eq!(invalid(&b[..=i], Accept::V2), Invalid::NotProxy, "byte {i}");
        assert_eq!(invalid(&b, Accept::Any), Invalid::NotProxy, "byte {i}");
    }
}

#[test]
fn v2_wrong_version_command_or_family_is_refused() {
    let a = addr4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
    for ver in [0x0, 0x1, 0x3, 0xf] {
        let mut b = v2(1, 0x11, &a, &[]);
        b[12] = ver << 4 | 1;
        // Refused with 13 bytes, not waiting for the rest.
        assert_eq!(invalid(&b[..13], Accept::V2), Invalid::V2Version, "{ver}");
        assert_eq!(invalid(&b, Accept::V2), Invalid::V2Version);
    }
    for cmd in 2..16 {
        let b = v2(cmd, 0x11, &a, &[]);
        assert_eq!(invalid(&b[..13], Accept::V2), Invalid::V2Command, "{cmd}");
    }
    for fam in [0x01, 0x02, 0x10, 0x13, 0x20, 0x23, 0x30, 0x41, 0xff] {
        let b = v2(1, fam, &a, &[]);
        assert_eq!(invalid(&b[..14], Accept::V2), Invalid::V2Family, "{fam:#x}");
        assert_eq!(invalid(&b, Accept::V2), Invalid::V2Family, "{fam:#x}");
        // LOCAL does not excuse an undefined byte.
        assert_eq!(
            invalid(&v2(0, fam, &[], &[]), Accept::V2),
            Invalid::V2Family
        );
    }
}

#[test]
fn v2_truncated_address_block_is_refused() {
    let a = addr4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
    assert_eq!(
        invalid(&v2(1, 0x11, &a[..8], &[]), Accept::V2),
        Invalid::V2AddressTruncated
    );
    let a6 = addr6(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, 1, 2);
    assert_eq!(
        invalid(&v2(1, 0x21, &a6[..35], &[]), Accept::V2),
        Invalid::V2AddressTruncated
    );
    // An IPv4 block under the IPv6 family is 12 bytes where 36 are due.
    assert_eq!(
        invalid(&v2(1, 0x21, &a, &[]), Accept::V2),
        Invalid::V2AddressTruncated
    );
    assert_eq!(
        invalid(&v2(1, 0x31, &[0; 215], &[]), Accept::V2),
        Invalid::V2AddressTruncated
    );
}

#[test]
fn v2_lengths_past_the_cap_are_refused_from_the_fixed_bytes() {
    let mut b = v2(1, 0x11, &[], &[]);
    b[14..16].copy_from_slice(&(4081u16).to_be_bytes());
    assert_eq!(invalid(&b, Accept::V2), Invalid::V2TooLong);
    b[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    assert_eq!(invalid(&b, Accept::V2), Invalid::V2TooLong);
    // Exactly 4096 bytes in all: fine (NOOP padding).
    let a = addr4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
    let pad = tlv(0x04, &vec![0; V2_MAX - 16 - 12 - 3]);
    let b = v2(1, 0x11, &a, &pad);
    assert_eq!(b.len(), V2_MAX);
    assert_eq!(complete(&b, Accept::V2).0, V2_MAX);
}

#[test]
fn v2_tlvs_alpn_authority_unique_id_netns() {
    let a = addr4([198, 51, 100, 7], [203, 0, 113, 1], 40000, 443);
    let mut t = tlv(0x01, b"h2");
    t.extend(tlv(0x02, b"example.com"));
    t.extend(tlv(0x05, &[0xde, 0xad, 0xbe, 0xef]));
    t.extend(tlv(0x30, b"blue"));
    let (_, h) = complete(&v2(1, 0x11, &a, &t), Accept::V2);
    assert_eq!(h.tlvs.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(h.tlvs.authority.as_deref(), Some(&b"example.com"[..]));
    assert_eq!(
        h.tlvs.unique_id.as_deref(),
        Some(&[0xde, 0xad, 0xbe, 0xef][..])
    );
    assert_eq!(h.tlvs.netns.as_deref(), Some(&b"blue"[..]));
    assert_eq!(h.tlvs.crc32c, None);
    // Empty values are values.
    let (_, h) = complete(&v2(1, 0x11, &a, &tlv(0x01, b"")), Accept::V2);
    assert_eq!(h.tlvs.alpn.as_deref(), Some(&b""[..]));
}

#[test]
fn v2_unique_id_up_to_128_bytes() {
    let a = addr4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
    let (_, h) = complete(&v2(1, 0x11, &a, &tlv(0x05, &[7; 128])), Accept::V2);
    assert_eq!(h.tlvs.unique_id.map(|v| v.len()), Some(128));
    assert_eq!(
        invalid(&v2(1, 0x11, &a, &tlv(0x05, &[7; 129])), Accept::V2),
        Invalid::UniqueIdTooLong
    );
}

#[test]
fn v2_crc32c_is_verified() {
    let a = addr4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
    let good = with_crc(v2(1, 0x11, &a, &tlv(0x01, b"h2")));
    let (len, h) = complete(&good, Accept::V2);
    assert_eq!(len, good.len());
    let sent = u32::from_be_bytes(good[good.len() - 4..].try_into().unwrap());
    assert_eq!(h.tlvs.crc32c, Some(sent));
    // Any bit flipped in the covered bytes (addresses, other TLVs, the
    // checksum itself) is a mismatch.
    for i in [16, 20, 27, good.len() - 9, good.len() - 1] {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        assert_eq!(
            invalid(&bad, Accept::V2),
            Invalid::Crc32cMismatch,
            "byte {i}"
        );
    }
    // A checksum TLV before others covers them too.
    let mut first = v2(1, 0x11, &a, &tlv(0x03, &[0; 4]));
    let n = u16::from_be_bytes([first[14], first[15]]) + 5;
    first[14..16].copy_from_slice(&n.to_be_bytes());
    first.extend(tlv(0x01, b"h2"));
    let sum = crc32c(&first);
    first[31..35].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(complete(&first, Accept::V2).1.tlvs.crc32c, Some(sum));
    // Wrong length, and two checksums.
    assert_eq!(
        invalid(&v2(1, 0x11, &a, &tlv(0x03, &[0; 3])), Accept::V2),
        Invalid::Crc32cLength
    );
    let mut twice = tlv(0x03, &[0; 4]);
    twice.extend(tlv(0x03, &[0; 4]));
    assert_eq!(
        invalid(&v2(1, 0x11, &a, &twice), Accept::V2),
        Invalid::TlvDuplicate(0x03)
    );
}

#[test]
fn v2_ssl_with_its_sub_tlvs() {
    let a = addr4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
    let mut ssl = vec![Ssl::CLIENT_SSL | Ssl::CLIENT_CERT_CONN, 0, 0, 0, 0];
    ssl.extend(tlv(0x21, b"TLSv1.3"));
    ssl.extend(tlv(0x22, b"client.example"));
    ssl.extend(tlv(0x23, b"TLS_AES_256_GCM_SHA384"));
    ssl.extend(tlv(0x24, b"RSA-SHA256"));
    ssl.extend(tlv(0x25, b"RSA2048"));
    ssl.extend(tlv(0xe5, b"vendor"));
    let (_, h) = complete(&v2(1, 0x11, &a, &tlv(0x20, &ssl)), Accept::V2);
    let s = h.tlvs.ssl.unwrap();
    assert_eq!((s.client, s.verify), (3, 0));
    assert!(s.tls() && s.verified_cert());
    assert_eq!(s.version.as_deref(), Some(&b"TLSv1.3"[..]));
    assert_eq!(s.cn.as_deref(), Some(&b"client.example"[..]));
    assert_eq!(s.cipher.as_deref(), Some(&b"TLS_AES_256_GCM_SHA384"[..]));
    assert_eq!(s.sig_alg.as_deref(), Some(&b"RSA-SHA256"[..]));
    assert_eq!(s.key_alg.as_deref(), Some(&b"RSA2048"[..]));
    // verify is big-endian and non-zero means not verified.
    let (_, h) = complete(
        &v2(1, 0x11, &a, &tlv(0x20, &[0x07, 0, 0, 0, 1])),
        Accept::V2,
    );
    let s = h.tlvs.ssl.unwrap();
    assert_eq!(s.verify, 1);
    assert!(!s.verified_cert());
    // Shorter than its fixed part; a sub-TLV past its end; twice.
    assert_eq!(
        invalid(&v2(1, 0x11, &a, &tlv(0x20, &[1, 0, 0, 0])), Accept::V2),
        Invalid::SslTruncated
    );
    let mut past = vec![1, 0, 0, 0, 0, 0x21, 0, 9];
    past.extend_from_slice(b"TLSv1");
    assert_eq!(
        invalid(&v2(1, 0x11, &a, &tlv(0x20, &past)), Accept::V2),
        Invalid::TlvTruncated
    );
    let mut dup = vec![1, 0, 0, 0, 0];
    dup.extend(tlv(0x23, b"A"));
    dup.extend(tlv(0x23, b"B"));
    assert_eq!(
        invalid(&v2(1, 0x11, &a, &tlv(0x20, &dup)), Accept::V2),
        Invalid::TlvDuplicate(0x23)
    );
}

#[test]
fn v2_noop_custom_and_unknown_tlvs_are_skipped() {
    let a = addr4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
    let mut t = tlv(0x04, &[]);
    t.extend(tlv(0x04, &[0; 9]));
    for ty in [
        0x06, 0x1f, 0x31, 0xe0, 0xe7, 0xef, 0xf0, 0xf7, 0xf8, 0xff, 0x00,
    ] {
        t.extend(tlv(ty, &[ty; 3]));
        t.extend(tlv(ty, b"twice is fine for types superd does not read"));
    }
    t.extend(tlv(0x01, b"http/1.1"));
    let (len, h) = complete(&v2(1, 0x11, &a, &t), Accept::V2);
    assert_eq!(len, 16 + 12 + t.len());
    assert_eq!(h.tlvs.alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[test]
fn v2_tlv_shapes_that_do_not_fit_are_refused() {
    let a = addr4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
    // A length past the end of the header.
    let mut t = tlv(0x01, b"h2");
    t[2] = 3;
    assert_eq!(
        invalid(&v2(1, 0x11, &a, &t), Accept::V2),
        Invalid::TlvTruncated
    );
    // One or two bytes left over: no room for a TLV's type and length.
    for tail in [&[0x04][..], &[0x04, 0x00]] {
        assert_eq!(
            invalid(&v2(1, 0x11, &a, tail), Accept::V2),
            Invalid::TlvTruncated
        );
    }
    // A known type twice.
    for ty in [0x01, 0x02, 0x05, 0x30] {
        let mut t = tlv(ty, b"a");
        t.extend(tlv(ty, b"b"));
        assert_eq!(
            invalid(&v2(1, 0x11, &a, &t), Accept::V2),
            Invalid::TlvDuplicate(ty)
        );
    }
    let mut t = tlv(0x20, &[0; 5]);
    t.extend(tlv(0x20, &[0; 5]));
    assert_eq!(
        invalid(&v2(1, 0x11, &a, &t), Accept::V2),
        Invalid::TlvDuplicate(0x20)
    );
}

// ---- both ----

#[test]
fn a_version_not_accepted_is_refused_from_its_first_bytes() {
    let one = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
    let two = v2(0, 0, &[], &[]);
    assert_eq!(
        invalid(&one[..1], Accept::V2),
        Invalid::VersionNotAccepted(Version::V1)
    );
    assert_eq!(
        invalid(one, Accept::V2),
        Invalid::VersionNotAccepted(Version::V1)
    );
    assert_eq!(
        invalid(&two[..1], Accept::V1),
        Invalid::VersionNotAccepted(Version::V2)
    );
    assert_eq!(
        invalid(&two, Accept::V1),
        Invalid::VersionNotAccepted(Version::V2)
    );
    assert_eq!(complete(one, Accept::Any).1.version, Version::V1);
    assert_eq!(complete(&two, Accept::Any).1.version, Version::V2);
}

#[test]
fn nothing_yet_is_incomplete() {
    assert_eq!(
        parse(b"", Accept::V1),
        Parse::Incomplete { need_at_least: 15 }
    );
    assert_eq!(
        parse(b"", Accept::V2),
        Parse::Incomplete { need_at_least: 16 }
    );
    assert_eq!(
        parse(b"", Accept::Any),
        Parse::Incomplete { need_at_least: 15 }
    );
}

/// Valid headers of every shape, for the properties below and the fuzz
/// seeds.
pub(crate) fn samples() -> Vec<Vec<u8>> {
    let a4 = addr4([192, 0, 2, 7], [192, 0, 2, 1], 50312, 7000);
    let a6 = addr6(
        "2001:db8::7".parse().unwrap(),
        Ipv6Addr::LOCALHOST,
        50312,
        7000,
    );
    let mut ssl = vec![7, 0, 0, 0, 0];
    ssl.extend(tlv(0x21, b"TLSv1.2"));
    ssl.extend(tlv(0x22, b"cn"));
    ssl.extend(tlv(0x23, b"ECDHE-RSA-AES128-GCM-SHA256"));
    let mut all = tlv(0x01, b"h2");
    all.extend(tlv(0x02, b"example.com"));
    all.extend(tlv(0x04, &[0; 3]));
    all.extend(tlv(0x05, &[1; 16]));
    all.extend(tlv(0x20, &ssl));
    all.extend(tlv(0x30, b"ns"));
    all.extend(tlv(0xea, b"vendor"));
    let f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    vec![
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".to_vec(),
        b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n".to_vec(),
        b"PROXY UNKNOWN\r\n".to_vec(),
        format!("PROXY UNKNOWN {f} {f} 65535 65535\r\n").into_bytes(),
        v2(0, 0x00, &[], &[]),
        v2(1, 0x00, &[], &[]),
        v2(1, 0x11, &a4, &[]),
        v2(1, 0x21, &a6, &[]),
        v2(1, 0x12, &a4, &tlv(0x01, b"dns")),
        v2(1, 0x31, &[0; 216], &[]),
        v2(1, 0x11, &a4, &all),
        with_crc(v2(1, 0x21, &a6, &all)),
        with_crc(v2(1, 0x11, &a4, &[])),
    ]
}

/// A deterministic xorshift generator: the same cases on every run.
fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// `Complete` is never returned for a prefix of a valid header, and what
/// a prefix says it needs is more than it has and no more than the whole.
#[test]
fn a_prefix_of_a_valid_header_is_incomplete() {
    for h in samples() {
        for accept in [Accept::Any, Accept::V1, Accept::V2] {
            if let Parse::Invalid(Invalid::VersionNotAccepted(_)) = parse(&h, accept) {
                continue;
            }
            assert_eq!(complete(&h, accept).0, h.len());
            for n in 0..h.len() {
                match parse(&h[..n], accept) {
                    Parse::Incomplete { need_at_least } => assert!(
                        n < need_at_least && need_at_least <= h.len().max(15),
                        "{accept} prefix {n} of {} says {need_at_least}",
                        h.len()
                    ),
                    other => panic!("{accept} prefix {n} of {:?}: {other:?}", h),
                }
            }
        }
    }
}

/// Whatever follows a header (the client's data) changes nothing: the
/// parser never reads past `header_len`.
#[test]
fn bytes_after_a_header_change_nothing() {
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    for h in samples() {
        let alone = parse(&h, Accept::Any);
        for _ in 0..50 {
            let mut buf = h.clone();
            let extra = (next() % 64) as usize;
            buf.extend((0..extra).map(|_| next() as u8));
            assert_eq!(parse(&buf, Accept::Any), alone);
        }
    }
}

/// Random damage to valid headers: whatever the verdict, a `Complete`
/// covers no more than the bytes given, and the same bytes cut at
/// `header_len` give the same verdict (nothing past it was read).
#[test]
fn damaged_headers_never_read_past_header_len() {
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    for h in samples() {
        for _ in 0..2000 {
            let mut b = h.clone();
            for _ in 0..=(next() % 3) {
                let i = (next() as usize) % b.len();
                b[i] = next() as u8;
            }
            let extra = (next() % 8) as usize;
            b.extend((0..extra).map(|_| next() as u8));
            let r = parse(&b, Accept::Any);
            if let Parse::Complete { header_len, .. } = &r {
                assert!(*header_len <= b.len());
                assert_eq!(parse(&b[..*header_len], Accept::Any), r);
                for n in 0..*header_len {
                    assert!(
                        !matches!(parse(&b[..n], Accept::Any), Parse::Complete { .. }),
                        "Complete for a prefix of {b:?}"
                    );
                }
            }
        }
    }
}

// ---- the child's variables ----

fn vars<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn child_vars_of_a_proxied_v2_header_with_every_tlv() {
    let a = addr4([198, 51, 100, 7], [203, 0, 113, 1], 40000, 443);
    let mut ssl = vec![Ssl::CLIENT_SSL | Ssl::CLIENT_CERT_SESS, 0, 0, 0, 0];
    ssl.extend(tlv(0x21, b"TLSv1.3"));
    ssl.extend(tlv(0x22, b"alice"));
    ssl.extend(tlv(0x23, b"TLS_AES_128_GCM_SHA256"));
    let mut t = tlv(0x01, b"h2");
    t.extend(tlv(0x02, b"example.com"));
    t.extend(tlv(0x05, &[0x00, 0x1f, 0xa0, 0xff]));
    t.extend(tlv(0x20, &ssl));
    let (_, h) = complete(&with_crc(v2(1, 0x11, &a, &t)), Accept::V2);
    let env = child_vars(&h, sa("10.0.0.2:61000"), sa("10.0.0.9:7000"));
    assert_eq!(
        vars(&env),
        [
            ("PROTO", "TCP"),
            ("TCPREMOTEIP", "198.51.100.7"),
            ("TCPREMOTEPORT", "40000"),
            ("TCPLOCALIP", "203.0.113.1"),
            ("TCPLOCALPORT", "443"),
            ("REMOTE_ADDR", "198.51.100.7"),
            ("REMOTE_PORT", "40000"),
            ("PROXY_PROTOCOL", "2"),
            ("TCPPROXYIP", "10.0.0.2"),
            ("TCPPROXYPORT", "61000"),
            ("PROXY_ALPN", "h2"),
            ("PROXY_AUTHORITY", "example.com"),
            ("PROXY_UNIQUE_ID", "001fa0ff"),
            ("SSL_PROTOCOL", "TLSv1.3"),
            ("SSL_CIPHER", "TLS_AES_128_GCM_SHA256"),
            ("SSL_PEER_CERT_CN", "alice"),
        ]
    );
    // Every name is one PROXY_VARS or plan.rs writes, in their order.
    let names: Vec<&str> = env[7..].iter().map(|(k, _)| *k).collect();
    assert_eq!(names, PROXY_VARS);
}

#[test]
fn child_vars_of_v1_local_and_unknown_headers() {
    let (_, h) = complete(b"PROXY TCP6 2001:db8::7 2001:db8::1 5 6\r\n", Accept::V1);
    let env = child_vars(&h, sa("[::1]:3000"), sa("[::1]:7000"));
    assert_eq!(
        vars(&env),
        [
            ("PROTO", "TCP"),
            ("TCPREMOTEIP", "2001:db8::7"),
            ("TCPREMOTEPORT", "5"),
            ("TCPLOCALIP", "2001:db8::1"),
            ("TCPLOCALPORT", "6"),
            ("REMOTE_ADDR", "2001:db8::7"),
            ("REMOTE_PORT", "5"),
            ("PROXY_PROTOCOL", "1"),
            ("TCPPROXYIP", "::1"),
            ("TCPPROXYPORT", "3000"),
        ]
    );
    // LOCAL and UNKNOWN: the real endpoints, the proxy being the peer.
    for buf in [&b"PROXY UNKNOWN\r\n"[..], &v2(0, 0, &[], &[])] {
        let (_, h) = complete(buf, Accept::Any);
        let env = child_vars(&h, sa("127.0.0.1:3000"), sa("127.0.0.1:7000"));
        let want = if h.version == Version::V1 { "1" } else { "2" };
        assert_eq!(
            vars(&env),
            [
                ("PROTO", "TCP"),
                ("TCPREMOTEIP", "127.0.0.1"),
                ("TCPREMOTEPORT", "3000"),
                ("TCPLOCALIP", "127.0.0.1"),
                ("TCPLOCALPORT", "7000"),
                ("REMOTE_ADDR", "127.0.0.1"),
                ("REMOTE_PORT", "3000"),
                ("PROXY_PROTOCOL", want),
                ("TCPPROXYIP", "127.0.0.1"),
                ("TCPPROXYPORT", "3000"),
            ]
        );
    }
}

#[test]
fn ipv4_mapped_addresses_are_shown_as_ipv4() {
    let mapped = Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped();
    let a = addr6(mapped, Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped(), 1, 2);
    let (_, h) = complete(&v2(1, 0x21, &a, &[]), Accept::V2);
    let proxy = SocketAddr::new(IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()), 9);
    let env = child_vars(&h, proxy, sa("[::1]:7000"));
    let get = |n| env.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
    assert_eq!(get("TCPREMOTEIP"), Some("192.0.2.7"));
    assert_eq!(get("REMOTE_ADDR"), Some("192.0.2.7"));
    assert_eq!(get("TCPLOCALIP"), Some("192.0.2.1"));
    assert_eq!(get("TCPPROXYIP"), Some("10.0.0.1"));
    assert_eq!(
        h.connection(proxy, sa("[::1]:7000")),
        (sa("192.0.2.7:1"), sa("192.0.2.1:2"))
    );
}

#[test]
fn tlv_values_unfit_for_an_environment_are_left_out() {
    let a = addr4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
    for bad in [
        &b"a\0b"[..],
        b"a\nb",
        b"\x1b[2J",
        b"\x7f",
        b"\xff\xfe",
        "a\u{85}b".as_bytes(),
    ] {
        let mut ssl = vec![Ssl::CLIENT_SSL | Ssl::CLIENT_CERT_CONN, 0, 0, 0, 0];
        ssl.extend(tlv(0x21, bad));
        ssl.extend(tlv(0x22, bad));
        ssl.extend(tlv(0x23, bad));
        let mut t = tlv(0x01, bad);
        t.extend(tlv(0x02, bad));
        t.extend(tlv(0x05, bad));
        t.extend(tlv(0x20, &ssl));
        let (_, h) = complete(&v2(1, 0x11, &a, &t), Accept::V2);
        let names: Vec<&str> = h
            .proxy_vars(sa("10.0.0.1:1"))
            .iter()
            .map(|(k, _)| *k)
            .collect();
        // UNIQUE_ID is hex, whatever its bytes.
        assert_eq!(
            names,
            [
                "PROXY_PROTOCOL",
                "TCPPROXYIP",
                "TCPPROXYPORT",
                "PROXY_UNIQUE_ID"
            ],
            "{bad:?}"
        );
    }
    // UTF-8 beyond ASCII is fine.
    let (_, h) = complete(
        &v2(1, 0x11, &a, &tlv(0x02, "bücher.example".as_bytes())),
        Accept::V2,
    );
    assert!(
        h.proxy_vars(sa("10.0.0.1:1"))
            .contains(&("PROXY_AUTHORITY", "bücher.example".into()))
    );
}

#[test]
fn ssl_vars_need_tls_and_the_cn_a_verified_certificate() {
    let a = addr4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
    let names = |client: u8, verify: u32| -> Vec<&'static str> {
        let mut ssl = vec![client];
        ssl.extend_from_slice(&verify.to_be_bytes());
        ssl.extend(tlv(0x21, b"TLSv1.2"));
        ssl.extend(tlv(0x22, b"mallory"));
        ssl.extend(tlv(0x23, b"AES"));
        let (_, h) = complete(&v2(1, 0x11, &a, &tlv(0x20, &ssl)), Accept::V2);
        h.proxy_vars(sa("10.0.0.1:1"))
            .into_iter()
            .map(|(k, _)| k)
            .skip(3)
            .collect()
    };
    assert_eq!(
        names(0x07, 0),
        ["SSL_PROTOCOL", "SSL_CIPHER", "SSL_PEER_CERT_CN"]
    );
    assert_eq!(
        names(0x03, 0),
        ["SSL_PROTOCOL", "SSL_CIPHER", "SSL_PEER_CERT_CN"]
    );
    // A certificate that failed verification names nobody.
    assert_eq!(names(0x03, 20), ["SSL_PROTOCOL", "SSL_CIPHER"]);
    // No certificate at all.
    assert_eq!(names(0x01, 0), ["SSL_PROTOCOL", "SSL_CIPHER"]);
    // Not TLS: nothing.
    assert!(names(0x00, 0).is_empty());
}

/// What the proxy's connection variables share with plan.rs's: the same
/// names, order and formatting for the same two addresses.
#[test]
fn connection_vars_match_the_spawn_plan() {
    use crate::plan::{ConnInfo, SpawnPlan};
    use crate::service::{Builtin, Program, Service};
    let plan = SpawnPlan::new(&Service::new(
        "x".into(),
        "/x.yaml".into(),
        Program::Builtin(Builtin::Echo),
    ));
    let (_, h) = complete(b"PROXY TCP4 192.0.2.7 192.0.2.1 50312 7000\r\n", Accept::V1);
    let (remote, local) = h.connection(sa("10.0.0.1:1"), sa("10.0.0.2:2"));
    let from_plan: Vec<(String, String)> = plan
        .env_pairs(&ConnInfo::Tcp { remote, local })
        .into_iter()
        .filter(|(k, _)| k.starts_with("TCP") || k.starts_with("REMOTE") || k == "PROTO")
        .collect();
    let ours: Vec<(String, String)> = child_vars(&h, sa("10.0.0.1:1"), sa("10.0.0.2:2"))
        .into_iter()
        .take(7)
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(ours, from_plan);
}
