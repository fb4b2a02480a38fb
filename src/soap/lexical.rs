//! Lexical forms of the XML Schema simple types on the wire (`xsd:int`, `xsd:dateTime`, base64, ...).
//!
//! Parsers are lenient where deployed clients differ (surrounding whitespace, fractional seconds,
//! time-zone offsets, base64 line breaks); formatters produce the one canonical form.

use std::fmt::Write as _;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// XML whitespace (the four characters of the `S` production).
pub(crate) fn is_xml_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Strips XML whitespace from both ends, the `collapse` facet of numeric and date types.
pub(crate) fn trim_xml(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii() && is_xml_space(c as u8))
}

pub(crate) fn parse_i32(s: &str) -> Option<i32> {
    trim_xml(s).parse().ok()
}

pub(crate) fn parse_i64(s: &str) -> Option<i64> {
    trim_xml(s).parse().ok()
}

pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    trim_xml(s).parse().ok()
}

pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match trim_xml(s) {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// `INF`, `-INF` and `NaN` are the schema spellings; Rust's own (`inf`, `nan`) are accepted too.
pub(crate) fn parse_f64(s: &str) -> Option<f64> {
    match trim_xml(s) {
        "INF" | "+INF" => Some(f64::INFINITY),
        "-INF" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        t => t.parse().ok(),
    }
}

pub(crate) fn parse_f32(s: &str) -> Option<f32> {
    match trim_xml(s) {
        "INF" | "+INF" => Some(f32::INFINITY),
        "-INF" => Some(f32::NEG_INFINITY),
        "NaN" => Some(f32::NAN),
        t => t.parse().ok(),
    }
}

/// Shortest form that reads back to the same value; exponent notation only for very large or
/// very small magnitudes so that common settings stay readable.
pub(crate) fn format_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "INF" } else { "-INF" });
    } else if v == 0.0 || (1e-5..1e16).contains(&v.abs()) {
        let _ = write!(out, "{v}");
    } else {
        let _ = write!(out, "{v:e}");
    }
}

pub(crate) fn format_f32(out: &mut String, v: f32) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "INF" } else { "-INF" });
    } else if v == 0.0 || (1e-5..1e16).contains(&v.abs()) {
        let _ = write!(out, "{v}");
    } else {
        let _ = write!(out, "{v:e}");
    }
}

/// A small cursor over ASCII digits and separators, for the date and time forms.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, n: usize) -> Option<u32> {
        let end = self.i.checked_add(n)?;
        let part = self.b.get(self.i..end)?;
        let mut v = 0u32;
        for &d in part {
            if !d.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(d - b'0');
        }
        self.i = end;
        Some(v)
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn done(&self) -> bool {
        self.i == self.b.len()
    }

    /// `[-]YYYY-MM-DD`
    fn date(&mut self) -> Option<Date> {
        let negative = self.eat(b'-');
        let year = i32::try_from(self.digits(4)?).ok()?;
        let year = if negative { -year } else { year };
        if !self.eat(b'-') {
            return None;
        }
        let month = Month::try_from(u8::try_from(self.digits(2)?).ok()?).ok()?;
        if !self.eat(b'-') {
            return None;
        }
        let day = u8::try_from(self.digits(2)?).ok()?;
        Date::from_calendar_date(year, month, day).ok()
    }

    /// `Z`, `+HH:MM`, `-HH:MM` or nothing (UTC).
    fn zone(&mut self) -> Option<UtcOffset> {
        match self.peek() {
            None => Some(UtcOffset::UTC),
            Some(b'Z') => {
                self.i += 1;
                Some(UtcOffset::UTC)
            }
            Some(sign @ (b'+' | b'-')) => {
                self.i += 1;
                let h = i8::try_from(self.digits(2)?).ok()?;
                if !self.eat(b':') {
                    return None;
                }
                let m = i8::try_from(self.digits(2)?).ok()?;
                if h > 14 || m > 59 {
                    return None;
                }
                let (h, m) = if sign == b'-' { (-h, -m) } else { (h, m) };
                UtcOffset::from_hms(h, m, 0).ok()
            }
            Some(_) => None,
        }
    }
}

/// `xsd:dateTime`: fractional seconds are kept (to the nanosecond), an offset is applied and the
/// result is in UTC; a missing zone means UTC.
pub(crate) fn parse_datetime(s: &str) -> Option<OffsetDateTime> {
    let mut c = Cursor {
        b: trim_xml(s).as_bytes(),
        i: 0,
    };
    let date = c.date()?;
    if !c.eat(b'T') {
        return None;
    }
    let hour = u8::try_from(c.digits(2)?).ok()?;
    if !c.eat(b':') {
        return None;
    }
    let minute = u8::try_from(c.digits(2)?).ok()?;
    if !c.eat(b':') {
        return None;
    }
    let second = u8::try_from(c.digits(2)?).ok()?;
    let mut nanos = 0u32;
    if c.eat(b'.') {
        let mut scale = 100_000_000u32;
        let mut any = false;
        while let Some(d) = c.peek().filter(u8::is_ascii_digit) {
            c.i += 1;
            any = true;
            nanos += u32::from(d - b'0') * scale;
            scale /= 10;
        }
        if !any {
            return None;
        }
    }
    let offset = c.zone()?;
    if !c.done() {
        return None;
    }
    let time = Time::from_hms_nano(hour, minute, second, nanos).ok()?;
    PrimitiveDateTime::new(date, time)
        .assume_offset(offset)
        .checked_to_offset(UtcOffset::UTC)
}

/// `xsd:date`: `YYYY-MM-DD`, a trailing zone is accepted and ignored.
pub(crate) fn parse_date(s: &str) -> Option<Date> {
    let mut c = Cursor {
        b: trim_xml(s).as_bytes(),
        i: 0,
    };
    let date = c.date()?;
    c.zone()?;
    c.done().then_some(date)
}

fn push_year(out: &mut String, year: i32) {
    if year < 0 {
        out.push('-');
    }
    let _ = write!(out, "{:04}", year.unsigned_abs());
}

pub(crate) fn format_date(out: &mut String, d: Date) {
    push_year(out, d.year());
    let _ = write!(out, "-{:02}-{:02}", u8::from(d.month()), d.day());
}

/// `YYYY-MM-DDTHH:MM:SSZ`, whole seconds, as every client parses it. A value too close to the
/// end of the supported range to be shifted to UTC keeps its own offset.
pub(crate) fn format_datetime(out: &mut String, dt: OffsetDateTime) {
    let dt = dt.checked_to_offset(UtcOffset::UTC).unwrap_or(dt);
    format_date(out, dt.date());
    let _ = write!(
        out,
        "T{:02}:{:02}:{:02}",
        dt.hour(),
        dt.minute(),
        dt.second()
    );
    let off = dt.offset();
    if off.is_utc() {
        out.push('Z');
    } else {
        let sign = if off.is_negative() { '-' } else { '+' };
        let _ = write!(
            out,
            "{sign}{:02}:{:02}",
            off.whole_hours().unsigned_abs(),
            off.minutes_past_hour().unsigned_abs()
        );
    }
}

const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Base64 with any XML whitespace (line breaks from some encoders) ignored and padding optional.
pub(crate) fn parse_base64(s: &str) -> Option<Vec<u8>> {
    if s.bytes().any(is_xml_space) {
        let compact: Vec<u8> = s.bytes().filter(|b| !is_xml_space(*b)).collect();
        LENIENT_B64.decode(compact).ok()
    } else {
        LENIENT_B64.decode(s).ok()
    }
}

pub(crate) fn format_base64(out: &mut String, data: &[u8]) {
    STANDARD.encode_string(data, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn dt(s: &str) -> String {
        let mut out = String::new();
        format_datetime(&mut out, parse_datetime(s).expect(s));
        out
    }

    #[test]
    fn datetime_forms() {
        assert_eq!(dt("2007-03-07T14:39:10Z"), "2007-03-07T14:39:10Z");
        assert_eq!(dt(" 2007-03-07T14:39:10 "), "2007-03-07T14:39:10Z");
        assert_eq!(dt("2007-03-07T14:39:10.250Z"), "2007-03-07T14:39:10Z");
        assert_eq!(dt("2007-03-07T17:39:10+03:00"), "2007-03-07T14:39:10Z");
    }

    #[test]
    fn datetime_details() {
        assert_eq!(
            parse_datetime("2007-03-07T14:39:10.123456789123Z"),
            Some(datetime!(2007-03-07 14:39:10.123456789 UTC))
        );
        assert_eq!(
            parse_datetime("2007-03-07T00:30:00+01:00"),
            Some(datetime!(2007-03-06 23:30:00 UTC))
        );
        for bad in [
            "",
            "2007-03-07",
            "2007-3-07T14:39:10Z",
            "2007-03-07T14:39:10.Z",
            "2007-03-07T14:39:10Zjunk",
            "2007-02-30T14:39:10Z",
            "2007-03-07T25:39:10Z",
            "2007-03-07T14:39:10+3:00",
            "2007-03-06T23:39:10-15:00",
            "9999-12-31T23:59:59-05:00",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad:?}");
        }
        let mut out = String::new();
        format_datetime(&mut out, datetime!(-0044-03-15 12:00:00 UTC));
        assert_eq!(out, "-0044-03-15T12:00:00Z");
        assert_eq!(
            parse_datetime(&out),
            Some(datetime!(-0044-03-15 12:00:00 UTC))
        );
    }

    #[test]
    fn numbers_and_booleans() {
        assert_eq!(parse_i32(" -1 "), Some(-1));
        assert_eq!(parse_i32("2147483648"), None);
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64("-1"), None);
        assert_eq!(parse_bool("1"), Some(true));
        assert_eq!(parse_bool("TRUE"), None);
        assert_eq!(parse_f64("-INF"), Some(f64::NEG_INFINITY));
        assert!(parse_f32("NaN").is_some_and(f32::is_nan));
        let mut s = String::new();
        format_f64(&mut s, 1e300);
        s.push(' ');
        format_f64(&mut s, 0.1);
        s.push(' ');
        format_f32(&mut s, 3.25e-7);
        s.push(' ');
        format_f32(&mut s, f32::NEG_INFINITY);
        assert_eq!(s, "1e300 0.1 3.25e-7 -INF");
    }

    #[test]
    fn base64_is_lenient_on_input() {
        assert_eq!(parse_base64("AAEC\r\nAw=="), Some(vec![0, 1, 2, 3]));
        assert_eq!(parse_base64("AAECAw"), Some(vec![0, 1, 2, 3]));
        assert_eq!(parse_base64("AA*C"), None);
        let mut s = String::new();
        format_base64(&mut s, &[0, 1, 2, 3]);
        assert_eq!(s, "AAECAw==");
    }

    #[test]
    fn dates() {
        assert_eq!(
            parse_date("2007-03-07Z"),
            Date::from_calendar_date(2007, Month::March, 7).ok()
        );
        assert_eq!(parse_date("2007-03-07T00:00:00Z"), None);
        let mut s = String::new();
        format_date(
            &mut s,
            Date::from_calendar_date(7, Month::January, 2).unwrap(),
        );
        assert_eq!(s, "0007-01-02");
    }
}
