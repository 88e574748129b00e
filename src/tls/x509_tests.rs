//! Unit tests of `tls::x509`, apart from the code they test.

use super::*;
use rcgen::{CertificateParams, DnType, KeyPair, SanType};

fn cert(params: CertificateParams) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

fn dated(names: &[&str], from: (i32, u8, u8), to: (i32, u8, u8)) -> Vec<u8> {
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    p.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
    cert(p)
}

#[test]
fn reads_names_and_dates_of_a_generated_certificate() {
    // 2049 is written as UTCTime, 2050 and later as GeneralizedTime (RFC 5280 §4.1.2.5).
    let der = dated(
        &[
            "example.com",
            "*.example.com",
            "127.0.0.1",
            "www.example.com",
        ],
        (2024, 2, 29),
        (2049, 12, 31),
    );
    let facts = parse(&der).unwrap();
    assert_eq!(
        facts.names,
        ["example.com", "*.example.com", "www.example.com"],
        "DNS names in order, the IP address left out"
    );
    assert_eq!(facts.not_before, 1_709_164_800); // date -u -d 2024-02-29 +%s
    assert_eq!(facts.not_after, 2_524_521_600); // 2049-12-31
    let der = dated(&["a.test"], (1975, 1, 1), (2050, 1, 1));
    let facts = parse(&der).unwrap();
    assert_eq!(facts.not_before, 157_766_400); // 1975-01-01, UTCTime "75"
    assert_eq!(facts.not_after, 2_524_608_000); // 2050-01-01, GeneralizedTime
    let der = dated(&["a.test"], (1969, 12, 31), (9999, 12, 31));
    let facts = parse(&der).unwrap();
    assert_eq!(facts.not_before, -86_400);
    assert_eq!(facts.not_after, 253_402_214_400);
}

#[test]
fn reads_certificates_made_by_openssl() {
    // The fuzz seeds: `openssl req -x509` with an EC, an Ed25519 and an RSA key (the last
    // without a SAN extension, valid 20,000 days: notAfter in 2081, a GeneralizedTime).
    let seeds: [(&[u8], &[&str], i64); 3] = [
        (
            include_bytes!("../../fuzz/corpus/x509/ec-san.der"),
            &["example.com", "*.example.com"],
            30,
        ),
        (
            include_bytes!("../../fuzz/corpus/x509/ed25519-san.der"),
            &["a.test"],
            1,
        ),
        (
            include_bytes!("../../fuzz/corpus/x509/rsa-cn-only-generalizedtime.der"),
            &["legacy.example"],
            20_000,
        ),
    ];
    for (der, names, days) in seeds {
        let facts = parse(der).unwrap();
        assert_eq!(facts.names, names);
        assert_eq!(facts.not_after - facts.not_before, days * 86_400);
        assert_eq!(facts.not_before, 1_796_059_758 + i64::from(days != 30));
    }
}

#[test]
fn falls_back_to_the_common_name_only_without_a_san_extension() {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::OrganizationName, "ferry");
    p.distinguished_name
        .push(DnType::CommonName, "legacy.example");
    assert_eq!(parse(&cert(p)).unwrap().names, ["legacy.example"]);
    // A SAN extension with only an IP address: no DNS names, and the CN is not used.
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, "ignored.example");
    p.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
    assert!(parse(&cert(p)).unwrap().names.is_empty());
}

#[test]
fn every_truncation_and_trailing_byte_is_an_error() {
    let der = dated(&["example.com"], (2024, 1, 1), (2030, 1, 1));
    for n in 0..der.len() {
        assert!(parse(&der[..n]).is_err(), "truncated at {n}");
    }
    let mut longer = der.clone();
    longer.push(0);
    assert_eq!(
        parse(&longer),
        Err(Malformed("bytes after the certificate"))
    );
    // Flipping any single byte never panics (it may still parse: e.g. a signature byte).
    for i in 0..der.len() {
        let mut d = der.clone();
        d[i] ^= 0xff;
        let _ = parse(&d);
    }
}

#[test]
fn malformed_lengths_are_refused() {
    let cases: &[(&[u8], &str)] = &[
        (&[], "not a SEQUENCE"),
        (&[0x30], "truncated"),
        (&[0x30, 0x80, 0x00, 0x00], "indefinite length"),
        (&[0x30, 0x05, 0x02, 0x01], "length beyond the input"),
        (&[0x30, 0x82, 0x01], "truncated length"),
        (
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x00],
            "length beyond the input",
        ),
        (
            &[0x30, 0x81, 0x05, 0, 0, 0, 0, 0],
            "length not in its shortest form",
        ),
        (&[0x30, 0x82, 0x00, 0x80], "length not in its shortest form"),
        (&[0x30, 0x85, 1, 0, 0, 0, 0], "length too large"),
        (&[0x30, 0xff], "length too large"),
        (&[0x31, 0x00], "not a SEQUENCE"),
        (&[0x30, 0x00], "no tbsCertificate"),
    ];
    for (der, why) in cases {
        assert_eq!(parse(der), Err(Malformed(why)), "{der:02x?}");
    }
}

/// A certificate whose tbsCertificate is built by hand around `validity` and `extensions`.
fn handmade(validity: &[u8], extensions: &[u8]) -> Vec<u8> {
    fn tlv(tag: u8, v: &[u8]) -> Vec<u8> {
        let mut o = vec![tag];
        if v.len() < 0x80 {
            o.push(v.len() as u8);
        } else {
            o.extend([0x82, (v.len() >> 8) as u8, v.len() as u8]);
        }
        o.extend_from_slice(v);
        o
    }
    let mut tbs = tlv(INTEGER, &[1]);
    tbs.extend(tlv(SEQUENCE, &[]));
    tbs.extend(tlv(SEQUENCE, &[]));
    tbs.extend(tlv(SEQUENCE, validity));
    tbs.extend(tlv(SEQUENCE, &[]));
    tbs.extend(tlv(SEQUENCE, &[]));
    tbs.extend_from_slice(extensions);
    let mut c = tlv(SEQUENCE, &tbs);
    c.extend(tlv(SEQUENCE, &[]));
    tlv(SEQUENCE, &c)
}

fn validity(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut v = vec![UTC_TIME, a.len() as u8];
    v.extend_from_slice(a);
    v.extend([GENERALIZED_TIME, b.len() as u8]);
    v.extend_from_slice(b);
    v
}

#[test]
fn times_are_checked_field_by_field() {
    let ok = |a: &[u8], b: &[u8]| {
        let der = handmade(&validity(a, b), &[]);
        let f = parse(&der).unwrap();
        (f.not_before, f.not_after)
    };
    assert_eq!(ok(b"700101000000Z", b"19700101000001Z"), (0, 1));
    assert_eq!(
        ok(b"491231235959Z", b"20000229120000Z"),
        (2_524_607_999, 951_825_600)
    );
    assert_eq!(ok(b"500101000000Z", b"19500101000000Z").0, -631_152_000);
    for t in [
        0,
        -1,
        951_825_600,
        2_524_607_999,
        -631_152_000,
        253_402_300_799,
    ] {
        let text = utc_text(t);
        let g = text.replace(['-', 'T', ':'], "");
        assert_eq!(ok(b"700101000000Z", g.as_bytes()).1, t, "{text}");
    }
    assert_eq!(utc_text(951_825_600), "2000-02-29T12:00:00Z");
    for (a, b, why) in [
        (
            &b"700101000000"[..],
            &b"19700101000000Z"[..],
            "time not in the DER form (seconds, Z)",
        ),
        (
            b"7001010000Z",
            b"19700101000000Z",
            "time not in the DER form (seconds, Z)",
        ),
        (b"700101000000+", b"19700101000000Z", "time not in UTC"),
        (b"7001010000x0Z", b"19700101000000Z", "time has a non-digit"),
        (b"700230000000Z", b"19700101000000Z", "time out of range"),
        (b"700101240000Z", b"19700101000000Z", "time out of range"),
        (b"700001000000Z", b"19700101000000Z", "time out of range"),
        (b"700101000000Z", b"21000229000000Z", "time out of range"),
        (b"700101000060Z", b"19700101000000Z", "time out of range"),
    ] {
        assert_eq!(parse(&handmade(&validity(a, b), &[])), Err(Malformed(why)));
    }
    // Neither time type.
    let mut v = validity(b"700101000000Z", b"19700101000000Z");
    v[0] = OCTET_STRING;
    assert_eq!(
        parse(&handmade(&v, &[])),
        Err(Malformed(
            "validity time is neither UTCTime nor GeneralizedTime"
        ))
    );
}

#[test]
fn extension_shapes_are_checked() {
    let v = validity(b"700101000000Z", b"20300101000000Z");
    let san = |names: &[u8]| {
        let mut gn = vec![SEQUENCE, names.len() as u8];
        gn.extend_from_slice(names);
        let mut ext = vec![OID, 3, 0x55, 0x1d, 0x11, OCTET_STRING, gn.len() as u8];
        ext.extend(gn);
        let mut e = vec![SEQUENCE, ext.len() as u8];
        e.extend(ext);
        e
    };
    let wrap = |exts: &[u8]| {
        let mut list = vec![SEQUENCE, exts.len() as u8];
        list.extend_from_slice(exts);
        let mut o = vec![EXTENSIONS, list.len() as u8];
        o.extend(list);
        o
    };
    let one = san(&[DNS_NAME, 3, b'a', b'.', b'b', 0x87, 4, 127, 0, 0, 1]);
    assert_eq!(parse(&handmade(&v, &wrap(&one))).unwrap().names, ["a.b"]);
    let two = [one.clone(), one.clone()].concat();
    assert_eq!(
        parse(&handmade(&v, &wrap(&two))),
        Err(Malformed("two subjectAltName extensions"))
    );
    let bad = san(&[DNS_NAME, 2, b'a', 0xc3]);
    assert_eq!(
        parse(&handmade(&v, &wrap(&bad))),
        Err(Malformed("dNSName empty or not ASCII"))
    );
    // issuerUniqueID after the extensions is out of order.
    let late = [wrap(&one), vec![0x81, 1, 0]].concat();
    assert_eq!(
        parse(&handmade(&v, &late)),
        Err(Malformed("tbsCertificate fields out of order"))
    );
    assert_eq!(
        parse(&handmade(&v, &[0x3f, 1, 0])),
        Err(Malformed("multi-byte tag"))
    );
    assert_eq!(
        parse(&handmade(&v, &[0xa4, 0])),
        Err(Malformed("unexpected field in tbsCertificate"))
    );
}
