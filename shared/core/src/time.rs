//! Time zone handling: JuShuiTan and Kingdee speak Asia/Shanghai wall-clock time, the sync
//! stores instants in UTC and converts only at the edges.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Asia::Shanghai;

/// Format of JuShuiTan times, `yyyy-MM-dd HH:mm:ss`.
pub const WALL_CLOCK_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Converts an instant to Asia/Shanghai wall-clock time.
pub fn to_shanghai(instant: DateTime<Utc>) -> NaiveDateTime {
    instant.with_timezone(&Shanghai).naive_local()
}

/// Converts Asia/Shanghai wall-clock time to an instant.
///
/// China has had no daylight saving time since 1991, so every wall-clock time maps to exactly
/// one instant; the earliest mapping is taken for the historical ambiguous hours.
pub fn from_shanghai(wall_clock: NaiveDateTime) -> DateTime<Utc> {
    match Shanghai.from_local_datetime(&wall_clock).earliest() {
        Some(local) => local.with_timezone(&Utc),
        // Unreachable for dates after 1991: the offset has been a fixed +08:00 since then.
        None => Utc.from_utc_datetime(&(wall_clock - chrono::Duration::hours(8))),
    }
}

/// Formats an instant as a JuShuiTan `yyyy-MM-dd HH:mm:ss` string in Asia/Shanghai time.
pub fn format_shanghai(instant: DateTime<Utc>) -> String {
    to_shanghai(instant).format(WALL_CLOCK_FORMAT).to_string()
}

/// Parses a wall-clock string as JuShuiTan sends it: `yyyy-MM-dd HH:mm:ss`, optionally with
/// fractional seconds, `T` as the separator, or a date alone (read as midnight).
pub fn parse_wall_clock(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    const FORMATS: [&str; 4] = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y/%m/%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ];
    for format in FORMATS {
        if let Ok(parsed) = NaiveDateTime::parse_from_str(text, format) {
            return Some(parsed);
        }
    }
    parse_date(text).and_then(|date| date.and_hms_opt(0, 0, 0))
}

/// Parses a date as `yyyy-MM-dd` (or `yyyy/MM/dd`), ignoring a trailing time of day.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    let date_part = text.trim().split([' ', 'T']).next()?;
    NaiveDate::parse_from_str(date_part, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(date_part, "%Y/%m/%d"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shanghai_round_trip() {
        let instant = Utc.with_ymd_and_hms(2024, 2, 29, 16, 30, 0).unwrap();
        let wall = to_shanghai(instant);
        assert_eq!(wall.to_string(), "2024-03-01 00:30:00");
        assert_eq!(from_shanghai(wall), instant);
    }

    #[test]
    fn wall_clock_formats() {
        let expected = NaiveDate::from_ymd_opt(2023, 1, 3).unwrap().and_hms_milli_opt(9, 43, 26, 487).unwrap();
        assert_eq!(parse_wall_clock("2023-01-03 09:43:26.487"), Some(expected));
        assert_eq!(parse_wall_clock("2023-01-03T09:43:26.487"), Some(expected));
        assert_eq!(
            parse_wall_clock("2023-01-03"),
            NaiveDate::from_ymd_opt(2023, 1, 3).unwrap().and_hms_opt(0, 0, 0)
        );
        assert_eq!(parse_wall_clock("not a time"), None);
        assert_eq!(parse_wall_clock(""), None);
    }
}
