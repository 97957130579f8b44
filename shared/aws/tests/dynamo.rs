//! DynamoState against moto: the shared conformance cases, the stored item layout, TTL and
//! error classification.

mod common;

use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveStatus};
use chrono::Duration;
use countsync_aws::DynamoState;
use countsync_core::Retry;
use countsync_core::ports::{BillRef, Claim, FailureReason, IdempotencyLedger, LedgerState, WatermarkStore};
use countsync_embedded::conformance::{self, at};

async fn new_state(moto: &countsync_sim::moto::Moto) -> DynamoState {
    let state = DynamoState::from_conf(&moto.sdk_config().await, common::unique_name("countsync-state"));
    state.create_table().await.expect("table must be created");
    state
}

async fn raw_item(state: &DynamoState, pk: &str, sk: &str) -> std::collections::HashMap<String, AttributeValue> {
    state
        .client()
        .get_item()
        .table_name(state.table())
        .key("pk", AttributeValue::S(pk.into()))
        .key("sk", AttributeValue::S(sk.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("item exists")
}

fn text(item: &std::collections::HashMap<String, AttributeValue>, name: &str) -> String {
    match item.get(name) {
        Some(AttributeValue::S(value)) => value.clone(),
        Some(AttributeValue::N(value)) => value.clone(),
        other => panic!("attribute {name}: expected S or N, got {other:?}"),
    }
}

fn reason() -> FailureReason {
    FailureReason {
        code: "kingdee_rejected".into(),
        message_zh: "金蝶拒绝了单据".into(),
        message_en: "Kingdee rejected the bill".into(),
        detail: None,
    }
}

#[tokio::test]
async fn dynamo_conformance() {
    let moto = common::moto().await;
    let state = new_state(&moto).await;

    conformance::watermark_sequential_suite(&state).await;
    conformance::ledger_sequential_suite(&state).await;
}

/// NOTE: moto 5.2 applies UpdateItem without a lock (it inserts a key-only item, then sets the
/// attributes one by one), so concurrent conditional writes can both pass there. DynamoDB applies
/// each write atomically. Run this against DynamoDB by pointing `COUNTSYNC_MOTO_ENDPOINT` at it.
#[tokio::test]
#[ignore = "moto does not apply concurrent conditional writes atomically"]
async fn dynamo_concurrent_conformance() {
    let moto = common::moto().await;
    let state = new_state(&moto).await;

    conformance::watermark_concurrent_advances_keep_max(&state).await;
    conformance::ledger_concurrent_claims_one_winner(&state).await;
}

#[tokio::test]
async fn dynamo_layout_ttl_and_errors() {
    let moto = common::moto().await;
    let state = new_state(&moto).await;

    create_table_is_idempotent(&state).await;
    watermark_item_layout(&state).await;
    ledger_item_layout(&state).await;
    failed_retention_sets_expiry(&moto).await;
    lease_rounds_up(&state).await;
    invalid_item_rejected(&state).await;
    missing_table_never_retried(&moto).await;
}

async fn create_table_is_idempotent(state: &DynamoState) {
    state.create_table().await.expect("second create_table must succeed");

    let ttl = state.client().describe_time_to_live().table_name(state.table()).send().await.unwrap();
    let description = ttl.time_to_live_description().expect("ttl description");
    assert_eq!(description.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
    assert_eq!(description.attribute_name(), Some("expires_at"));
}

async fn watermark_item_layout(state: &DynamoState) {
    let precise = at(1_000) + Duration::microseconds(999);
    assert!(state.advance("layout", precise).await.unwrap());

    let item = raw_item(state, "WATERMARK#layout", "WATERMARK").await;
    assert_eq!(text(&item, "at"), "2026-03-01T08:00:01.000Z");
    assert_eq!(text(&item, "at_ms"), at(1_000).timestamp_millis().to_string());

    // Stored rounded down, so the same sub-millisecond instant does not move it again.
    assert_eq!(state.load("layout").await.unwrap(), Some(at(1_000)));
    assert!(!state.advance("layout", precise).await.unwrap());
}

async fn ledger_item_layout(state: &DynamoState) {
    let Claim::Acquired { token, .. } = state.claim(7001, "hash-7001", at(60_000), at(0)).await.unwrap() else {
        panic!("claim must be acquired");
    };
    let claimed = raw_item(state, "SHEET#7001", "LEDGER").await;
    assert_eq!(text(&claimed, "state"), "claimed");
    assert_eq!(text(&claimed, "claim_token"), token);
    assert_eq!(text(&claimed, "lease_until_ms"), at(60_000).timestamp_millis().to_string());
    assert_eq!(text(&claimed, "attempts"), "1");
    assert_eq!(text(&claimed, "io_id"), "7001");
    assert_eq!(text(&claimed, "updated_at"), "2026-03-01T08:00:00Z");

    let bill = BillRef { id: "100300".into(), number: "PD-7001".into() };
    state.mark_done(7001, &token, &bill, at(1_000)).await.unwrap();
    let done = raw_item(state, "SHEET#7001", "LEDGER").await;
    assert_eq!(text(&done, "state"), "done");
    assert_eq!(text(&done, "bill_id"), "100300");
    assert_eq!(text(&done, "bill_no"), "PD-7001");
    for removed in ["claim_token", "lease_until_ms", "expires_at", "reason"] {
        assert!(!done.contains_key(removed), "done item must not keep {removed}");
    }
}

async fn failed_retention_sets_expiry(moto: &countsync_sim::moto::Moto) {
    let state = new_state(moto).await.with_failed_retention(Duration::days(30));

    let Claim::Acquired { token, .. } = state.claim(7002, "hash", at(60_000), at(0)).await.unwrap() else {
        panic!("claim must be acquired");
    };
    state.mark_failed(7002, &token, &reason(), at(2_000)).await.unwrap();
    let failed = raw_item(&state, "SHEET#7002", "LEDGER").await;
    assert_eq!(text(&failed, "state"), "failed");
    assert_eq!(text(&failed, "expires_at"), (at(2_000) + Duration::days(30)).timestamp().to_string());
    let stored: FailureReason = serde_json::from_str(&text(&failed, "reason")).unwrap();
    assert_eq!(stored, reason());

    let Claim::Acquired { check_first, .. } = state.claim(7002, "hash", at(90_000), at(3_000)).await.unwrap() else {
        panic!("failed sheet must be claimable");
    };
    assert!(check_first);
    let reclaimed = raw_item(&state, "SHEET#7002", "LEDGER").await;
    assert!(!reclaimed.contains_key("expires_at"), "a claim must stop the expiry");
    assert_eq!(text(&reclaimed, "attempts"), "2");
}

/// Checks that a lease with a fraction of a millisecond is stored rounded up, so it never ends early.
async fn lease_rounds_up(state: &DynamoState) {
    let lease = at(5_000) + Duration::microseconds(300);
    let Claim::Acquired { .. } = state.claim(7003, "hash", lease, at(0)).await.unwrap() else {
        panic!("claim must be acquired");
    };
    let record = state.get(7003).await.unwrap().unwrap();
    assert_eq!(record.lease_until, Some(at(5_001)));

    let busy = state.claim(7003, "hash", at(9_000), at(5_000) + Duration::microseconds(900)).await.unwrap();
    assert_eq!(busy, Claim::Busy { lease_until: at(5_001) });
    let Claim::Acquired { check_first: true, .. } = state.claim(7003, "hash", at(9_000), at(5_001)).await.unwrap() else {
        panic!("claim must be acquired once the rounded lease ended");
    };
}

async fn invalid_item_rejected(state: &DynamoState) {
    state
        .client()
        .put_item()
        .table_name(state.table())
        .item("pk", AttributeValue::S("SHEET#7004".into()))
        .item("sk", AttributeValue::S("LEDGER".into()))
        .item("state", AttributeValue::S("paused".into()))
        .send()
        .await
        .unwrap();

    let error = state.get(7004).await.unwrap_err();
    assert_eq!(error.retry, Retry::Never);
    assert!(error.message.contains(state.table()), "{}", error.message);

    let error = state.claim(7004, "hash", at(60_000), at(0)).await.unwrap_err();
    assert_eq!(error.retry, Retry::Never, "an unreadable item must not be claimed over: {error}");
    let item = raw_item(state, "SHEET#7004", "LEDGER").await;
    assert_eq!(text(&item, "state"), "paused", "a failed claim must not change the item");
}

async fn missing_table_never_retried(moto: &countsync_sim::moto::Moto) {
    let table = common::unique_name("countsync-missing");
    let state = DynamoState::from_conf(&moto.sdk_config().await, table.clone());

    let error = state.load("stream").await.unwrap_err();
    assert_eq!(error.retry, Retry::Never, "{error}");
    assert!(error.message.contains(&table), "error must name the table: {error}");

    let error = state.claim(1, "hash", at(60_000), at(0)).await.unwrap_err();
    assert_eq!(error.retry, Retry::Never, "{error}");
}

#[tokio::test]
async fn dynamo_done_record_kept_for_reclaim() {
    let moto = common::moto().await;
    let state = new_state(&moto).await;

    let Claim::Acquired { token, check_first } = state.claim(8001, "hash", at(60_000), at(0)).await.unwrap() else {
        panic!("claim must be acquired");
    };
    assert!(!check_first);
    state.release(8001, &token, at(1_000)).await.unwrap();
    let Claim::Acquired { token, check_first } = state.claim(8001, "hash", at(61_000), at(1_000)).await.unwrap() else {
        panic!("released sheet must be claimable");
    };
    assert!(check_first, "replacing an existing item must set check_first");
    let bill = BillRef { id: "1".into(), number: "PD-8001".into() };
    state.mark_done(8001, &token, &bill, at(2_000)).await.unwrap();

    let Claim::Done(record) = state.claim(8001, "hash", at(90_000), at(80_000)).await.unwrap() else {
        panic!("claim of a done sheet must return Done");
    };
    assert_eq!(record.state, LedgerState::Done);
    assert_eq!(record.bill, Some(bill));
    assert_eq!(record.attempts, 2);
}
