//! Lambda adapters: event parsing and the partial batch response.

use countsync::lambda::{FetcherEvent, batch_response, deadline_of};
use countsync_core::Retry;
use countsync_core::ports::{BillRef, FailureReason};
use countsync_core::writer::{MessageOutcome, MessageReport, WriteReport};

#[test]
fn fetcher_event_shapes() {
    let empty: FetcherEvent = serde_json::from_str("{}").unwrap();
    assert!(empty.begin.is_none());

    let scheduled: FetcherEvent = serde_json::from_str(r#"{"scheduled_time":"2026-12-01T00:00:00Z"}"#).unwrap();
    assert_eq!(scheduled.scheduled_time.as_deref(), Some("2026-12-01T00:00:00Z"));

    let backfill: FetcherEvent =
        serde_json::from_str(r#"{"begin":"2026-10-01T00:00:00+08:00","end":"2026-11-01T00:00:00+08:00"}"#).unwrap();
    assert_eq!(backfill.begin.unwrap().to_rfc3339(), "2026-09-30T16:00:00+00:00");

    assert!(serde_json::from_str::<FetcherEvent>(r#"{"begin":"yesterday"}"#).is_err());
}

#[test]
fn batch_response_names_failures() {
    let failed = MessageOutcome::Failed {
        retry: Retry::Never,
        reason: FailureReason { code: "x".into(), message_zh: "x".into(), message_en: "x".into(), detail: None },
    };
    let created = MessageOutcome::Created { bill: BillRef { id: "1".into(), number: "JST-1".into() } };
    let report = WriteReport {
        messages: vec![
            MessageReport { message_id: "a".into(), io_id: Some(1), outcome: created },
            MessageReport { message_id: "b".into(), io_id: Some(2), outcome: failed },
        ],
    };
    let json = serde_json::to_string(&batch_response(&report)).unwrap();
    assert_eq!(json, r#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#);

    let empty = serde_json::to_string(&batch_response(&WriteReport::default())).unwrap();
    assert_eq!(empty, r#"{"batchItemFailures":[]}"#);
}

#[test]
fn deadline_defaults_without_context() {
    let context = lambda_runtime::Context::default();
    let deadline = deadline_of(&context);
    assert!(deadline > chrono::Utc::now() + chrono::Duration::minutes(4));
}
