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
#[path = "x509_tests.rs"]
mod tests;
