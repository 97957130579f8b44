//! Retry classification shared by every error type of the sync.

use serde::{Deserialize, Serialize};

/// How the caller should treat a failed operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retry {
    /// A short backoff inside the same invocation may succeed (a dropped connection, throttling).
    Now,
    /// Try again in a later invocation (SQS redelivery or the next scheduled run).
    Later,
    /// Will fail the same way until an operator changes data or configuration.
    Never,
}

impl Retry {
    /// Returns whether a later attempt can succeed without an operator.
    pub fn is_retryable(self) -> bool {
        !matches!(self, Retry::Never)
    }
}
