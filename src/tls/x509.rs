//! ferry's own minimal X.509 reader (DER, RFC 5280 §4.1): where it sits on the request path.
//! Nowhere on it: the certificate store ([`super::store`]) calls it when it loads, re-reads or
//! receives a certificate, to learn the names it answers SNI with and the dates that `/status`,
//! the expiry metric and the upload check use. rustls and webpki check everything else (the
//! signature side and that the key matches); this reader takes only what they do not hand out.
//!
//! It walks the fixed shape of a certificate in place over the DER bytes, one TLV at a time,
//! with every length checked against what is left: no recursion, no copy, and any byte that does
//! not fit the shape is an error, never a panic. Only DER is accepted (definite, minimal
//! lengths; single-byte tags), which is all a certificate may be.

use std::fmt;

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// `[0] EXPLICIT Version` of the TBSCertificate.
const VERSION: u8 = 0xa0;
/// `[3] EXPLICIT Extensions` of the TBSCertificate.
const EXTENSIONS: u8 = 0xa3;
/// `dNSName [2] IA5String` of a GeneralName (implicit, primitive).
const DNS_NAME: u8 = 0x82;
/// id-ce-subjectAltName, 2.5.29.17, as its OID content bytes.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
/// id-at-commonName, 2.5.4.3.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// Why a certificate could not be read: a fixed reason, for the store's error lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed certificate: {}", self.0)
    }
}

/// What the store needs from a certificate, borrowed from its DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts<'a> {
    /// notBefore, in unix seconds.
    pub not_before: i64,
    /// notAfter, in unix seconds.
    pub not_after: i64,
    /// The subjectAltName dNSName entries in certificate order; the subject's first CN only
    /// when the certificate has no subjectAltName extension (RFC 6125 §6.4.4).
    pub names: Vec<&'a str>,
}

/// Reads the validity and DNS names of one DER certificate.
pub fn parse(der: &[u8]) -> Result<CertFacts<'_>, Malformed> {
    let mut outer = Der(der);
    let cert = outer.expect(SEQUENCE, "not a SEQUENCE")?;
    outer.end("bytes after the certificate")?;
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }: only
    // the first is read; webpki checks the signature side when the store matches the key.
    let mut tbs = Der(Der(cert).expect(SEQUENCE, "no tbsCertificate")?);
    if tbs.peek() == Some(VERSION) {
        tbs.next()?;
    }
    tbs.expect(INTEGER, "no serialNumber")?;
    tbs.expect(SEQUENCE, "no signature algorithm")?;
    tbs.expect(SEQUENCE, "no issuer")?;
    let mut validity = Der(tbs.expect(SEQUENCE, "no validity")?);
    let not_before = time(&mut validity)?;
    let not_after = time(&mut validity)?;
    validity.end("bytes after notAfter")?;
    let subject = tbs.expect(SEQUENCE, "no subject")?;
    tbs.expect(SEQUENCE, "no subjectPublicKeyInfo")?;
    // Then issuerUniqueID [1] and subjectUniqueID [2] (either form), extensions [3], in order.
    let mut extensions = None;
    let mut last = 0;
    while !tbs.is_empty() {
        let (tag, value) = tbs.next()?;
        let rank = match tag {
            0x81 | 0xa1 => 1,
            0x82 | 0xa2 => 2,
            EXTENSIONS => 3,
            _ => return Err(Malformed("unexpected field in tbsCertificate")),
        };
        if rank <= last {
            return Err(Malformed("tbsCertificate fields out of order"));
        }
        last = rank;
        if tag == EXTENSIONS {
            extensions = Some(value);
        }
    }
    let names = match extensions.map(alt_names).transpose()?.flatten() {
        Some(names) => names,
        None => common_name(subject)?.into_iter().collect(),
    };
    Ok(CertFacts {
        not_before,
        not_after,
        names,
    })
}

/// The dNSNames of the subjectAltName extension, or None when there is none.
fn alt_names(extensions: &[u8]) -> Result<Option<Vec<&str>>, Malformed> {
    let mut explicit = Der(extensions);
    let mut list = Der(explicit.expect(SEQUENCE, "extensions not a SEQUENCE")?);
    explicit.end("bytes after the extensions")?;
    let mut found = None;
    while !list.is_empty() {
        // Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue }
        let mut ext = Der(list.expect(SEQUENCE, "extension not a SEQUENCE")?);
        let id = ext.expect(OID, "extension without an OID")?;
        if ext.peek() == Some(BOOLEAN) {
            ext.next()?;
        }
        let value = ext.expect(OCTET_STRING, "extension without a value")?;
        ext.end("bytes after an extension's value")?;
        if id != SUBJECT_ALT_NAME {
            continue;
        }
        if found.is_some() {
            // RFC 5280 §4.2: "MUST NOT include more than one instance of a particular extension".
            return Err(Malformed("two subjectAltName extensions"));
        }
        let mut wrapper = Der(value);
        let mut general_names = Der(wrapper.expect(SEQUENCE, "subjectAltName not a SEQUENCE")?);
        wrapper.end("bytes after the subjectAltName")?;
        let mut names = Vec::new();
        while !general_names.is_empty() {
            let (tag, name) = general_names.next()?;
            // IP addresses, URIs, e-mail and the rest are not what SNI names.
            if tag == DNS_NAME {
                names.push(ia5(name)?);
            }
        }
        found = Some(names);
    }
    Ok(found)
}

/// The subject's first commonName, for certificates without a subjectAltName.
fn common_name(subject: &[u8]) -> Result<Option<&str>, Malformed> {
    // Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value ANY }: two fixed levels.
    let mut rdns = Der(subject);
    while !rdns.is_empty() {
        let mut set = Der(rdns.expect(SET, "subject RDN not a SET")?);
        while !set.is_empty() {
            let mut atv = Der(set.expect(SEQUENCE, "subject attribute not a SEQUENCE")?);
            let id = atv.expect(OID, "subject attribute without an OID")?;
            let (tag, value) = atv.next()?;
            atv.end("bytes after a subject attribute")?;
            if id != COMMON_NAME {
                continue;
            }
            return match tag {
                // UTF8String, PrintableString, IA5String; a BMPString or TeletexString CN
                // could never equal an SNI name anyway.
                0x0c | 0x13 | 0x16 => std::str::from_utf8(value)
                    .map(Some)
                    .map_err(|_| Malformed("commonName not UTF-8")),
                _ => Ok(None),
            };
        }
    }
    Ok(None)
}

/// An IA5String's text (ASCII only).
fn ia5(value: &[u8]) -> Result<&str, Malformed> {
    if value.is_empty() || !value.is_ascii() {
        return Err(Malformed("dNSName empty or not ASCII"));
    }
    // ASCII is UTF-8.
    std::str::from_utf8(value).map_err(|_| Malformed("dNSName not ASCII"))
}

/// One Time (RFC 5280 §4.1.2.5): UTCTime `YYMMDDHHMMSSZ` or GeneralizedTime `YYYYMMDDHHMMSSZ`,
/// as unix seconds.
fn time(d: &mut Der<'_>) -> Result<i64, Malformed> {
    let (tag, v) = d.next()?;
    let (year, rest) = match (tag, v.len()) {
        (UTC_TIME, 13) => {
            // §4.1.2.5.1: YY >= 50 is 19YY, YY < 50 is 20YY.
            let yy = digits(&v[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &v[2..])
        }
        (GENERALIZED_TIME, 15) => (digits(&v[..4])?, &v[4..]),
        (UTC_TIME | GENERALIZED_TIME, _) => {
            return Err(Malformed("time not in the DER form (seconds, Z)"))
        }
        _ => {
            return Err(Malformed(
                "validity time is neither UTCTime nor GeneralizedTime",
            ))
        }
    };
    if rest[10] != b'Z' {
        return Err(Malformed("time not in UTC"));
    }
    let month = digits(&rest[0..2])?;
    let day = digits(&rest[2..4])?;
    let hour = digits(&rest[4..6])?;
    let minute = digits(&rest[6..8])?;
    let second = digits(&rest[8..10])?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(Malformed("time out of range"));
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// ASCII decimal digits as a number (at most 4 of them here, so no overflow).
fn digits(s: &[u8]) -> Result<i64, Malformed> {
    s.iter().try_fold(0i64, |n, &c| match c {
        b'0'..=b'9' => Ok(n * 10 + i64::from(c - b'0')),
        _ => Err(Malformed("time has a non-digit")),
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`, for log lines (H. Hinnant's `civil_from_days`).
pub fn utc_text(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The unread rest of one DER value's contents.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    fn end(&self, why: &'static str) -> Result<(), Malformed> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Malformed(why))
        }
    }

    /// The next TLV of the given tag, its contents.
    fn expect(&mut self, tag: u8, why: &'static str) -> Result<&'a [u8], Malformed> {
        if self.peek() != Some(tag) {
            return Err(Malformed(why));
        }
        Ok(self.next()?.1)
    }

    /// The next TLV: (tag, contents).
    fn next(&mut self) -> Result<(u8, &'a [u8]), Malformed> {
        let [tag, first, rest @ ..] = self.0 else {
            return Err(Malformed("truncated"));
        };
        if tag & 0x1f == 0x1f {
            return Err(Malformed("multi-byte tag"));
        }
        let (len, rest) = match *first {
            short @ 0..=0x7f => (usize::from(short), rest),
            0x80 => return Err(Malformed("indefinite length")),
            // Up to 4 length bytes: more than 4 GiB is no certificate, and 4 fit a 32-bit
            // usize (the MIPS routers).
            long @ 0x81..=0x84 => {
                let n = usize::from(long & 0x7f);
                if rest.len() < n {
                    return Err(Malformed("truncated length"));
                }
                let (bytes, rest) = rest.split_at(n);
                let len = bytes.iter().fold(0usize, |l, &b| (l << 8) | usize::from(b));
                // DER (X.690 §10.1): the fewest length bytes, so no leading zero and never
                // the long form for what the short one can say.
                if bytes[0] == 0 || len < 0x80 {
                    return Err(Malformed("length not in its shortest form"));
                }
                (len, rest)
            }
            _ => return Err(Malformed("length too large")),
        };
        if len > rest.len() {
            return Err(Malformed("length beyond the input"));
        }
        let (value, rest) = rest.split_at(len);
        self.0 = rest;
        Ok((*tag, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    fn cert(params: CertificateParams) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn dated(names: &[&str], from: (i32, u8, u8), to: (i32, u8, u8)) -> Vec<u8> {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
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
}
