//! Reads a certificate's expiry (`notAfter`) from its DER, for the
//! `outpost_tls_cert_not_after_seconds` gauge and the reload log line.
//!
//! A minimal, bounds-checked walk of the X.509 structure (RFC 5280 §4.1):
//! `Certificate → tbsCertificate → [version], serialNumber, signature, issuer,
//! validity → notAfter`. It reads only what it needs and returns `None` for
//! anything it does not understand; rustls/webpki remain the ones that validate
//! certificates. Times are `UTCTime` (`YYMMDDHHMMSSZ`, years 1950..=2049) or
//! `GeneralizedTime` (`YYYYMMDDHHMMSSZ`), the two forms RFC 5280 allows.

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xA0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The certificate's `notAfter` as unix seconds, or `None` if the DER is not a
/// certificate this parser understands.
pub fn not_after_unix(cert_der: &[u8]) -> Option<i64> {
    let (cert, _) = expect(cert_der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&VERSION) {
        rest = tlv(rest)?.2;
    }
    let (_, rest) = expect(rest, INTEGER)?; // serialNumber
    let (_, rest) = expect(rest, SEQUENCE)?; // signature algorithm
    let (_, rest) = expect(rest, SEQUENCE)?; // issuer
    let (validity, _) = expect(rest, SEQUENCE)?;
    let (_, _, after) = tlv(validity)?; // notBefore
    let (tag, time, _) = tlv(after)?;
    match tag {
        UTC_TIME => parse_time(time, false),
        GENERALIZED_TIME => parse_time(time, true),
        _ => None,
    }
}

/// One DER element: `(tag, content, rest)`. Single-byte tags and definite
/// lengths only (DER forbids the others in certificates).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 || input.len() < n {
            return None;
        }
        let (bytes, tail) = input.split_at(n);
        input = tail;
        bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if input.len() < len {
        return None;
    }
    let (content, rest) = input.split_at(len);
    Some((tag, content, rest))
}

fn expect(input: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    let (tag, content, rest) = tlv(input)?;
    (tag == want).then_some((content, rest))
}

fn parse_time(text: &[u8], four_digit_year: bool) -> Option<i64> {
    let digits = text.strip_suffix(b"Z")?;
    if digits.len() != if four_digit_year { 14 } else { 12 } || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let num = |range: std::ops::Range<usize>| {
        digits[range]
            .iter()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'))
    };
    let (year, at) = if four_digit_year {
        (num(0..4), 4)
    } else {
        let yy = num(0..2);
        (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
    };
    let (month, day) = (num(at..at + 2), num(at + 2..at + 4));
    let (hour, min, sec) = (num(at + 4..at + 6), num(at + 6..at + 8), num(at + 8..at + 10));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{date_time_ymd, CertificateParams, KeyPair};

    fn cert_expiring(year: i32, month: u8, day: u8) -> Vec<u8> {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_after = date_time_ymd(year, month, day);
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_utc_and_generalized_times() {
        // UTCTime (before 2050) and GeneralizedTime (from 2050 on).
        assert_eq!(not_after_unix(&cert_expiring(2031, 3, 4)), Some(1_930_348_800));
        assert_eq!(not_after_unix(&cert_expiring(2060, 1, 1)), Some(2_840_140_800));
        assert_eq!(parse_time(b"991231235959Z", false), Some(946_684_799));
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }

    #[test]
    fn garbage_and_truncation_give_none() {
        let der = cert_expiring(2031, 3, 4);
        assert_eq!(not_after_unix(b""), None);
        assert_eq!(not_after_unix(b"not a certificate at all"), None);
        for cut in [1, 2, 10, 40, der.len() / 2, der.len() - 1] {
            // A truncated outer element is refused by the length check.
            assert_eq!(not_after_unix(&der[..cut]), None, "cut at {cut}");
        }
        assert_eq!(parse_time(b"991331235959Z", false), None, "month 13");
        assert_eq!(parse_time(b"99123123595Z", false), None, "short");
        assert_eq!(parse_time(b"9912312359590", false), None, "no Z");
    }
}
