//! The `Date` header value (RFC 3261 §20.17: `rfc1123-date`, always GMT),
//! computed from an injected [`Timestamp`] so responses are testable.

use regmesh_location::Timestamp;
use std::fmt::Write as _;

/// `Sat, 13 Nov 2010 23:29:00 GMT` for `t` (sub-second part dropped).
///
/// Every 200 OK carries one, and a node answers thousands per second, so
/// each thread keeps the text of the last second it formatted.
pub fn rfc1123(t: Timestamp) -> String {
    thread_local! {
        static LAST: std::cell::RefCell<(u64, String)> = const {
            std::cell::RefCell::new((u64::MAX, String::new()))
        };
    }
    let secs = t.as_millis() / 1000;
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs {
            *last = (secs, format_rfc1123(t));
        }
        last.1.clone()
    })
}

fn format_rfc1123(t: Timestamp) -> String {
    let u = t.utc();
    let mut out = String::with_capacity(29);
    let _ = write!(
        out,
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        u.weekday_name(),
        u.day,
        u.month_name(),
        u.year,
        u.hour,
        u.minute,
        u.second
    );
    out
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
