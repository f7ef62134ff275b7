//! A minimal, allocation-free DER reader for the few structures walked by hand (CRL entry
//! lists, certificate fields), and X.509 time decoding (calendar arithmetic by `time`).
//!
//! Kept by hand where it is measured to matter: loading a CRL walks every revoked entry
//! into the compact sorted serial set (`serials`) without building a parsed structure per
//! entry (`cargo bench -p gateway-benches --bench revocation`, group `crl_load`, and
//! BENCHMARKS.md). Everything else (OCSP, certificate extensions) goes through `der`,
//! `x509-cert`, `x509-ocsp` and `x509-parser`.

/// A DER decoding problem, naming what was being read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed DER: {0}")]
pub struct DerError(pub &'static str);

/// Tag numbers used here.
pub(crate) mod tag {
    pub(crate) const INTEGER: u8 = 0x02;
    pub(crate) const BIT_STRING: u8 = 0x03;
    pub(crate) const BOOLEAN: u8 = 0x01;
    pub(crate) const OID: u8 = 0x06;
    pub(crate) const UTC_TIME: u8 = 0x17;
    pub(crate) const GENERALIZED_TIME: u8 = 0x18;
    pub(crate) const SEQUENCE: u8 = 0x30;
    pub(crate) const CTX0: u8 = 0xa0;
}

/// One tag-length-value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    /// The tag byte.
    pub tag: u8,
    /// The whole encoding (tag, length and value).
    pub raw: &'a [u8],
    /// The value.
    pub value: &'a [u8],
}

/// A cursor over consecutive TLVs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Reader { rest: input }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Reads the next TLV, whatever its tag.
    pub(crate) fn any(&mut self) -> Result<Tlv<'a>, DerError> {
        let input = self.rest;
        let (&tag, after) = input
            .split_first()
            .ok_or(DerError("unexpected end of data"))?;
        if tag & 0x1f == 0x1f {
            return Err(DerError("high tag numbers are not supported"));
        }
        let (&l0, mut after) = after.split_first().ok_or(DerError("missing length"))?;
        let len = if l0 < 0x80 {
            l0 as usize
        } else {
            let n = (l0 & 0x7f) as usize;
            if n == 0 || n > 4 {
                return Err(DerError("indefinite or oversized length"));
            }
            if after.len() < n {
                return Err(DerError("truncated length"));
            }
            let mut len = 0usize;
            for &b in &after[..n] {
                len = (len << 8) | b as usize;
            }
            if len < 0x80 || after[0] == 0 {
                return Err(DerError("non-minimal length encoding"));
            }
            after = &after[n..];
            len
        };
        if after.len() < len {
            return Err(DerError("value longer than the data"));
        }
        let header = input.len() - after.len();
        let raw = &input[..header + len];
        self.rest = &after[len..];
        Ok(Tlv {
            tag,
            raw,
            value: &after[..len],
        })
    }

    /// Reads the next TLV and requires `tag`.
    pub(crate) fn expect(&mut self, tag: u8, what: &'static str) -> Result<Tlv<'a>, DerError> {
        let t = self.any().map_err(|_| DerError(what))?;
        if t.tag != tag {
            return Err(DerError(what));
        }
        Ok(t)
    }

    /// Reads the next TLV if it has `tag`.
    pub(crate) fn optional(&mut self, tag: u8) -> Result<Option<Tlv<'a>>, DerError> {
        if self.rest.first() == Some(&tag) {
            self.any().map(Some)
        } else {
            Ok(None)
        }
    }

    /// The tag of the next TLV, if any.
    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }
}

/// The contents of a BIT STRING with no unused bits.
pub(crate) fn bit_string_bytes<'a>(t: &Tlv<'a>) -> Result<&'a [u8], DerError> {
    match t.value.split_first() {
        Some((0, rest)) => Ok(rest),
        _ => Err(DerError("BIT STRING with unused bits")),
    }
}

/// An INTEGER's value bytes with redundant leading zero bytes removed (serial numbers are
/// compared in this form).
pub fn normalize_serial(mut s: &[u8]) -> &[u8] {
    while s.len() > 1 && s[0] == 0 {
        s = &s[1..];
    }
    s
}

/// Decodes a UTCTime or GeneralizedTime TLV to Unix seconds.
pub(crate) fn time(t: &Tlv<'_>) -> Result<i64, DerError> {
    let v = t.value;
    let (year, rest) = match t.tag {
        tag::UTC_TIME => {
            let yy = digits(v, 0, 2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &v[2..])
        }
        tag::GENERALIZED_TIME => (digits(v, 0, 4)?, v.get(4..).unwrap_or_default()),
        _ => return Err(DerError("expected a UTCTime or GeneralizedTime")),
    };
    // MMDDHHMMSS then optional fraction (GeneralizedTime) then Z.
    if rest.len() < 11 || rest.last() != Some(&b'Z') {
        return Err(DerError("time is not in the form ...HHMMSSZ"));
    }
    let month = digits(rest, 0, 2)?;
    let day = digits(rest, 2, 2)?;
    let hour = digits(rest, 4, 2)?;
    let min = digits(rest, 6, 2)?;
    let sec = digits(rest, 8, 2)?;
    let tail = &rest[10..rest.len() - 1];
    if !tail.is_empty() && (t.tag == tag::UTC_TIME || tail[0] != b'.') {
        return Err(DerError("unexpected characters in time"));
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return Err(DerError("time field out of range"));
    }
    let days = days_from_civil(year, month, day).ok_or(DerError("time field out of range"))?;
    Ok(days * 86_400 + hour * 3600 + min * 60 + sec)
}

fn digits(v: &[u8], at: usize, n: usize) -> Result<i64, DerError> {
    let s = v.get(at..at + n).ok_or(DerError("time too short"))?;
    let mut out = 0i64;
    for &c in s {
        if !c.is_ascii_digit() {
            return Err(DerError("non-digit in time"));
        }
        out = out * 10 + (c - b'0') as i64;
    }
    Ok(out)
}

/// Days since 1970-01-01 of a Gregorian date; `None` for a date that does not exist.
fn days_from_civil(y: i64, m: i64, d: i64) -> Option<i64> {
    /// The Julian day number of 1970-01-01.
    const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;
    let month = ::time::Month::try_from(u8::try_from(m).ok()?).ok()?;
    let date =
        ::time::Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(d).ok()?)
            .ok()?;
    Some(i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY)
}

/// Parses an RFC 3339 timestamp (`2026-11-29T04:30:00Z`, `...+01:00`, fractional seconds
/// ignored) to Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let n = |at: usize, len: usize| digits(b, at, len).ok();
    let (y, mo, d, h, mi, se) = (
        n(0, 4)?,
        n(5, 2)?,
        n(8, 2)?,
        n(11, 2)?,
        n(14, 2)?,
        n(17, 2)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        let end = rest[1..].iter().position(|c| !c.is_ascii_digit())? + 1;
        rest = &rest[end..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let oh = digits(rest, 1, 2).ok()?;
            let om = digits(rest, 4, 2).ok()?;
            let o = oh * 3600 + om * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo, d)? * 86_400 + h * 3600 + mi * 60 + se - offset)
}

/// Formats Unix seconds as RFC 3339 (UTC) for messages.
pub fn fmt_time(secs: i64) -> String {
    crate::status::fmt_unix(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let t = Tlv {
            tag: tag::UTC_TIME,
            raw: b"",
            value: b"700101000000Z",
        };
        assert_eq!(time(&t).unwrap(), 0);
        let t = Tlv {
            tag: tag::GENERALIZED_TIME,
            raw: b"",
            value: b"20261129043000Z",
        };
        assert_eq!(fmt_time(time(&t).unwrap()), "2026-11-29T04:30:00Z");
        let t = Tlv {
            tag: tag::GENERALIZED_TIME,
            raw: b"",
            value: b"2026112904300",
        };
        assert!(time(&t).is_err());
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-11-29T04:30:00.123Z")
                .map(fmt_time)
                .as_deref(),
            Some("2026-11-29T04:30:00Z")
        );
        assert_eq!(parse_rfc3339("2026-11-29"), None);
        assert_eq!(parse_rfc3339("2026-13-29T04:30:00Z"), None);
    }

    #[test]
    fn truncated_input_is_an_error() {
        assert!(Reader::new(&[0x30, 0x05, 0x01]).any().is_err());
        assert!(Reader::new(&[0x30, 0x80]).any().is_err());
        assert!(Reader::new(&[]).any().is_err());
    }
}
