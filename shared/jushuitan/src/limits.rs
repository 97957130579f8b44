//! Client-side rate limits and the retry budget of one request.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::ExponentialBuilder;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::JushuitanConfig;
use crate::error::JstError;

/// The per-second and per-minute quotas, shared by every request of one client.
///
/// NOTE: the limits hold per client instance. Several processes sharing one app key (for
/// example concurrent Lambda invocations) can together exceed JuShuiTan's limits, and then the
/// throttling retries take over.
pub(crate) struct RateLimits {
    per_second: DefaultDirectRateLimiter,
    per_minute: DefaultDirectRateLimiter,
}

impl RateLimits {
    pub(crate) fn new(config: &JushuitanConfig) -> Self {
        Self {
            per_second: RateLimiter::direct(sliding_window_quota(config.calls_per_second, Duration::from_secs(1))),
            per_minute: RateLimiter::direct(sliding_window_quota(config.calls_per_minute, Duration::from_secs(60))),
        }
    }

    /// Waits until both quotas allow one more call.
    pub(crate) async fn until_ready(&self) {
        self.per_minute.until_ready().await;
        self.per_second.until_ready().await;
    }
}

/// Builds a quota that never lets more than `limit` calls into any window of `window`.
///
/// A cell-rate quota with burst `b` and one cell per period `p` admits up to `b + window / p`
/// calls within one window, so a plain `limit`-per-window quota would allow nearly twice the
/// limit. Half of the limit goes to the burst and the other half refills over the window, which
/// admits at most `limit - 1` calls per window and leaves one call of margin for network jitter.
fn sliding_window_quota(limit: u32, window: Duration) -> Quota {
    let limit = limit.max(1);
    let burst = (limit / 2).max(1);
    let refill = (limit - burst).max(1);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    match Quota::with_period(window / refill) {
        Some(quota) => quota.allow_burst(burst),
        // The period rounds to zero only for limits above a billion calls per window.
        None => Quota::per_second(NonZeroU32::MAX),
    }
}

/// How many retries of each kind one request may still make.
pub(crate) struct RetryBudget {
    throttled: AtomicU32,
    timestamp: AtomicU32,
    transport: AtomicU32,
    max_throttled: u32,
    max_transport: u32,
}

/// A rejected timestamp is re-stamped once; a second rejection means the host clock is off.
const MAX_TIMESTAMP_RETRIES: u32 = 1;

impl RetryBudget {
    pub(crate) fn new(config: &JushuitanConfig) -> Self {
        Self {
            throttled: AtomicU32::new(0),
            timestamp: AtomicU32::new(0),
            transport: AtomicU32::new(0),
            max_throttled: config.max_retries,
            max_transport: config.max_transport_retries,
        }
    }

    /// Returns whether the request may be sent again after `error`, and counts the retry.
    pub(crate) fn allow(&self, error: &JstError) -> bool {
        let (used, max) = if error.is_throttled() {
            (&self.throttled, self.max_throttled)
        } else if matches!(error, JstError::Timestamp { .. }) {
            (&self.timestamp, MAX_TIMESTAMP_RETRIES)
        } else if error.is_transient_transport() {
            (&self.transport, self.max_transport)
        } else {
            return false;
        };
        used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |count| (count < max).then_some(count + 1)).is_ok()
    }

    /// Returns the number of throttled attempts so far.
    pub(crate) fn throttled_attempts(&self) -> u32 {
        self.throttled.load(Ordering::SeqCst) + 1
    }

    /// Returns the largest number of retries all kinds together may make.
    pub(crate) fn max_total(&self) -> usize {
        (self.max_throttled + MAX_TIMESTAMP_RETRIES + self.max_transport) as usize
    }
}

/// Exponential backoff with jitter between the configured delays.
pub(crate) fn backoff(config: &JushuitanConfig, max_times: usize) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(config.retry_min_delay_ms))
        .with_max_delay(Duration::from_millis(config.retry_max_delay_ms))
        .with_max_times(max_times)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted_in_window(quota: Quota, window: Duration) -> u32 {
        let clock = governor::clock::FakeRelativeClock::default();
        let limiter = RateLimiter::direct_with_clock(quota, clock.clone());
        let step = window / 1000;
        let mut admitted = 0;
        let mut elapsed = Duration::ZERO;
        while elapsed < window {
            if limiter.check().is_ok() {
                admitted += 1;
            }
            clock.advance(step);
            elapsed += step;
        }
        admitted
    }

    #[test]
    fn quota_stays_under_limit() {
        for limit in [1, 2, 5, 10, 100] {
            let admitted = admitted_in_window(sliding_window_quota(limit, Duration::from_secs(1)), Duration::from_secs(1));
            assert!(admitted <= limit, "limit {limit} admitted {admitted}");
            assert!(admitted >= limit.div_ceil(2), "limit {limit} admitted only {admitted}");
        }
    }

    #[test]
    fn budget_counts_each_kind() {
        let config = JushuitanConfig { max_retries: 2, max_transport_retries: 1, ..Default::default() };
        let budget = RetryBudget::new(&config);
        let throttled = JstError::from_code(199, "busy".into());
        let stamp = JstError::from_code(180, "clock".into());
        let signature = JstError::from_code(10, "sign".into());

        assert!(budget.allow(&throttled));
        assert!(budget.allow(&throttled));
        assert!(!budget.allow(&throttled));
        assert_eq!(budget.throttled_attempts(), 3);
        assert!(budget.allow(&stamp));
        assert!(!budget.allow(&stamp));
        assert!(!budget.allow(&signature));
        assert_eq!(budget.max_total(), 4);
    }
}
