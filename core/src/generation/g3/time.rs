//! `capture.created_at`: RFC 3339 as chrono's `parse_from_rfc3339` reads it, normalised to UTC
//! with nine fractional digits and `Z` (chrono's `to_rfc3339_opts(Nanos, true)`).
//!
//! Accepted: `YYYY-MM-DD`, `T`/`t`/space, `HH:MM:SS`, an optional `.` and one or more digits (the
//! first nine count), then `Z`/`z` or `±HH:MM` (hours ≤ 23; `−` U+2212 also accepted as minus).
//! Narrower than chrono on purpose: leap seconds (`:60`) and times whose UTC year leaves
//! 0000–9999 are refused rather than written in chrono's extended forms.

use alloc::format;
use alloc::string::String;

fn digits(s: &[u8], at: usize, n: usize) -> Option<u32> {
    let mut v = 0u32;
    for i in at..at.checked_add(n)? {
        let d = *s.get(i)?;
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(d - b'0');
    }
    Some(v)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The normalised form of an RFC 3339 time, or `None` when it is not one.
pub(crate) fn normalize_rfc3339(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let year = i64::from(digits(b, 0, 4)?);
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let (hour, min, sec) = (digits(b, 11, 2)?, digits(b, 14, 2)?, digits(b, 17, 2)?);
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    let mut rest = b.get(19..)?;
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let mut scale = 100_000_000u32;
        for &c in frac.iter().take(n.min(9)) {
            nanos += u32::from(c - b'0') * scale;
            scale /= 10;
        }
        rest = frac.get(n..)?;
    }
    let offset_secs: i64 = match rest {
        b"Z" | b"z" => 0,
        _ => {
            let (sign, hm) = if let Some(r) = rest.strip_prefix(b"+") {
                (1, r)
            } else if let Some(r) = rest.strip_prefix(b"-") {
                (-1, r)
            } else if let Some(r) = rest.strip_prefix("\u{2212}".as_bytes()) {
                (-1, r)
            } else {
                return None;
            };
            if hm.len() != 5 || hm.get(2) != Some(&b':') {
                return None;
            }
            let (oh, om) = (digits(hm, 0, 2)?, digits(hm, 3, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (i64::from(oh) * 3600 + i64::from(om) * 60)
        }
    };
    let local = days_from_civil(year, month, day) * 86400
        + i64::from(hour) * 3600
        + i64::from(min) * 60
        + i64::from(sec);
    let utc = local - offset_secs;
    let (days, secs) = (utc.div_euclid(86400), utc.rem_euclid(86400));
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    ))
}

#[cfg(test)]
mod tests {
    use super::normalize_rfc3339 as n;

    #[test]
    fn normalises_to_utc_nanoseconds() {
        assert_eq!(n("2026-05-01T12:00:00Z").as_deref(), Some("2026-05-01T12:00:00.000000000Z"));
        assert_eq!(n("2026-05-01t12:00:00.5z").as_deref(), Some("2026-05-01T12:00:00.500000000Z"));
        assert_eq!(
            n("2026-05-01 01:30:00.1234567891+02:00").as_deref(),
            Some("2026-04-30T23:30:00.123456789Z")
        );
        assert_eq!(n("2024-02-29T23:59:59-00:01").as_deref(), Some("2024-03-01T00:00:59.000000000Z"));
        assert_eq!(n("1970-01-01T00:00:00\u{2212}01:00").as_deref(), Some("1970-01-01T01:00:00.000000000Z"));
    }

    #[test]
    fn refuses_what_is_not_rfc_3339() {
        for bad in [
            "2026-05-01T12:00:00",
            "2026-05-01T12:00:00.Z",
            "2026-02-30T12:00:00Z",
            "2023-02-29T12:00:00Z",
            "2026-05-01T24:00:00Z",
            "2026-05-01T12:00:60Z",
            "2026-05-01T12:00:00+24:00",
            "2026-05-01T12:00:00+0200",
            "2026-05-01T12:00:00Z ",
            "0000-01-01T00:00:00+00:01",
            "9999-12-31T23:59:59-00:01",
            "26-05-01T12:00:00Z",
        ] {
            assert_eq!(n(bad), None, "{bad}");
        }
    }
}
