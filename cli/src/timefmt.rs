//! Seconds since the epoch, for people: RFC 3339 in UTC, and the clock.

use ekey_verifier::MAX_NUMERIC_DATE;

/// Now, in seconds since the epoch (0 if the clock is before 1970).
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `2023-11-14T22:13:20Z`, for dates between year 0 and year 5138
/// ([`MAX_NUMERIC_DATE`]); `None` outside.
pub fn rfc3339(secs: i64) -> Option<String> {
    const YEAR_ZERO: i64 = -62_167_219_200;
    if !(YEAR_ZERO..=MAX_NUMERIC_DATE).contains(&secs) {
        return None;
    }
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    Some(format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60))
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (y, m, d) in
/// the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000).unwrap(), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400).unwrap(), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_107_542_399).unwrap(), "2100-02-28T23:59:59Z");
        assert_eq!(rfc3339(-1).unwrap(), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(-62_167_219_200).unwrap(), "0000-01-01T00:00:00Z");
        assert_eq!(rfc3339(MAX_NUMERIC_DATE).unwrap(), "5138-11-16T09:46:40Z");
    }

    #[test]
    fn out_of_range_is_none_not_a_panic() {
        for s in [i64::MAX, i64::MIN, MAX_NUMERIC_DATE + 1, -62_167_219_201] {
            assert_eq!(rfc3339(s), None);
        }
    }

    #[test]
    fn clock_is_after_2023() {
        assert!(now() > 1_700_000_000);
    }
}
