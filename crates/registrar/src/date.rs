//! The `Date` header value (RFC 3261 §20.17: `rfc1123-date`, always GMT),
//! computed from an injected [`Timestamp`] so responses are testable.

use regmesh_location::Timestamp;
use std::fmt::Write as _;

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Sat, 13 Nov 2010 23:29:00 GMT` for `t` (sub-second part dropped).
pub fn rfc1123(t: Timestamp) -> String {
    let secs = t.as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = String::with_capacity(29);
    // 1970-01-01 was a Thursday, hence WEEKDAYS starting there.
    let _ = write!(
        out,
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    out
}

/// Proleptic Gregorian (year, month 1..=12, day 1..=31) of a day count since
/// 1970-01-01, by the well-known era arithmetic (400-year eras of 146 097
/// days, years starting in March so the leap day is last).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc1123(Timestamp::ZERO), "Thu, 01 Jan 1970 00:00:00 GMT");
        // RFC 3261 §20.17's example date.
        assert_eq!(
            rfc1123(Timestamp::from_secs(1_289_690_940)),
            "Sat, 13 Nov 2010 23:29:00 GMT"
        );
        // A leap day, and sub-seconds dropped.
        assert_eq!(
            rfc1123(Timestamp::from_millis(1_709_208_000_999)),
            "Thu, 29 Feb 2024 12:00:00 GMT"
        );
        assert_eq!(
            rfc1123(Timestamp::from_secs(951_782_400)),
            "Tue, 29 Feb 2000 00:00:00 GMT"
        );
        assert_eq!(
            rfc1123(Timestamp::from_secs(4_102_444_799)),
            "Thu, 31 Dec 2099 23:59:59 GMT"
        );
    }
}
