//! Retry classification of AWS SDK errors, shared by the DynamoDB and SQS adapters.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use countsync_core::Retry;

/// Error codes that mean "slow down", in DynamoDB's and SQS's spelling.
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "TransactionConflictException",
];

/// Error codes of a failure on the service side.
const SERVER_CODES: &[&str] = &["InternalServerError", "InternalFailure", "ServiceUnavailable"];

/// Classifies an SDK error after the SDK's own retries.
///
/// Throttling, timeouts and connection failures may clear within the invocation (`Now`). Other
/// server-side failures and unreadable responses wait for a later invocation (`Later`). A request
/// the caller got wrong (invalid input, a missing table or queue, access denied, a request that
/// could not be built) fails the same way until an operator acts (`Never`).
pub fn classify<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> Retry {
    match error {
        SdkError::TimeoutError(_) => Retry::Now,
        SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_timeout() => Retry::Now,
        SdkError::DispatchFailure(failure) if failure.is_user() => Retry::Never,
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => Retry::Later,
        SdkError::ConstructionFailure(_) => Retry::Never,
        SdkError::ServiceError(context) => classify_service(context.err().code(), context.raw().status().as_u16()),
        _ => Retry::Later,
    }
}

fn classify_service(code: Option<&str>, status: u16) -> Retry {
    match code {
        Some(code) if THROTTLING_CODES.contains(&code) => Retry::Now,
        Some(code) if SERVER_CODES.contains(&code) => Retry::Later,
        _ if status == 429 => Retry::Now,
        _ if status >= 500 => Retry::Later,
        _ => Retry::Never,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_codes_classified() {
        assert_eq!(classify_service(Some("ProvisionedThroughputExceededException"), 400), Retry::Now);
        assert_eq!(classify_service(Some("ThrottlingException"), 400), Retry::Now);
        assert_eq!(classify_service(Some("InternalServerError"), 500), Retry::Later);
        assert_eq!(classify_service(None, 503), Retry::Later);
        assert_eq!(classify_service(None, 429), Retry::Now);
        assert_eq!(classify_service(Some("ResourceNotFoundException"), 400), Retry::Never);
        assert_eq!(classify_service(Some("ValidationException"), 400), Retry::Never);
        assert_eq!(classify_service(Some("AccessDeniedException"), 400), Retry::Never);
    }
}
