//! Fetch windows: a time range cut into consecutive windows no longer than JuShuiTan allows.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Longest `modified_begin`..`modified_end` span that `inventory.count.query` accepts.
pub const MAX_WINDOW: Duration = Duration::days(7);

/// A half-open range of modification instants, `[begin, end)` for tiling purposes.
///
/// JuShuiTan's `modified_end` may be inclusive (not documented), so a sheet modified exactly on a
/// seam can come back in two windows; the fetcher de-duplicates by `io_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub begin: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    pub fn span(&self) -> Duration {
        self.end - self.begin
    }
}

/// Cuts `[begin, end)` into consecutive windows of at most `max_span` each.
///
/// The windows tile the range exactly: the first starts at `begin`, each starts where the previous
/// one ended, and the last ends at `end`. Returns no window when `end <= begin`. A `max_span` that
/// is not positive is treated as [`MAX_WINDOW`].
pub fn tile(begin: DateTime<Utc>, end: DateTime<Utc>, max_span: Duration) -> Vec<Window> {
    let max_span = if max_span <= Duration::zero() { MAX_WINDOW } else { max_span };
    let mut windows = Vec::new();
    let mut cursor = begin;
    while cursor < end {
        let next = if end - cursor > max_span { cursor + max_span } else { end };
        windows.push(Window { begin: cursor, end: next });
        cursor = next;
    }
    windows
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn instant(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(seconds, 0).unwrap()
    }

    #[test]
    fn tile_empty_range() {
        assert!(tile(instant(100), instant(100), MAX_WINDOW).is_empty());
        assert!(tile(instant(200), instant(100), MAX_WINDOW).is_empty());
    }

    #[test]
    fn tile_exact_multiple() {
        let begin = instant(1_700_000_000);
        let windows = tile(begin, begin + Duration::days(14), MAX_WINDOW);
        assert_eq!(windows.len(), 2);
        assert_eq!(windows[0].end, windows[1].begin);
        assert_eq!(windows[1].end, begin + Duration::days(14));
    }

    proptest! {
        #[test]
        fn tile_covers_range_exactly(
            start in 1_500_000_000i64..1_900_000_000,
            length in 0i64..(400 * 86_400),
            span_seconds in 1i64..(8 * 86_400),
        ) {
            let begin = instant(start);
            let end = instant(start + length);
            let windows = tile(begin, end, Duration::seconds(span_seconds));

            if length == 0 {
                prop_assert!(windows.is_empty());
            } else {
                prop_assert_eq!(windows.first().unwrap().begin, begin);
                prop_assert_eq!(windows.last().unwrap().end, end);
            }
            for pair in windows.windows(2) {
                prop_assert_eq!(pair[0].end, pair[1].begin);
            }
            for window in &windows {
                prop_assert!(window.begin < window.end);
                prop_assert!(window.span() <= Duration::seconds(span_seconds));
            }
        }
    }
}
