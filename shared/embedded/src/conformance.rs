//! Behaviour every [`WatermarkStore`] and [`IdempotencyLedger`] adapter must share, written once
//! and run against the in-memory, SQLite and DynamoDB adapters by their tests.
//!
//! Each case panics with a message naming the broken rule. Cases pick fresh sheet ids and stream
//! names, so they may run one after another, or at once, on one store. All instants are whole
//! milliseconds because DynamoDB stores millisecond precision.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, TimeZone, Utc};
use countsync_core::Retry;
use countsync_core::ports::{
    BillRef, Claim, FailureReason, IdempotencyLedger, LedgerState, RunLease, StoreError, WatermarkStore,
};
use futures::future::join_all;

/// Runs every watermark case.
pub async fn watermark_suite(store: &dyn WatermarkStore) {
    watermark_sequential_suite(store).await;
    watermark_concurrent_advances_keep_max(store).await;
}

/// Runs every ledger case.
pub async fn ledger_suite(ledger: &dyn IdempotencyLedger) {
    ledger_sequential_suite(ledger).await;
    ledger_concurrent_claims_one_winner(ledger).await;
}

/// Runs the watermark cases that send one request at a time.
pub async fn watermark_sequential_suite(store: &dyn WatermarkStore) {
    watermark_missing_is_none(store).await;
    watermark_moves_only_forward(store).await;
    watermark_streams_are_independent(store).await;
    run_lease_excludes_second_run(store).await;
}

/// Runs the ledger cases that send one request at a time.
pub async fn ledger_sequential_suite(ledger: &dyn IdempotencyLedger) {
    ledger_get_missing_is_none(ledger).await;
    ledger_claim_busy_done(ledger).await;
    ledger_expired_claim_takeover(ledger).await;
    ledger_lease_ending_now_is_expired(ledger).await;
    ledger_release_then_reclaim(ledger).await;
    ledger_failed_then_reclaim(ledger).await;
    ledger_wrong_token_rejected(ledger).await;
    ledger_transition_without_record_rejected(ledger).await;
    ledger_changed_version_held(ledger).await;
    ledger_mark_held_then_reset(ledger).await;
    ledger_reset_only_held(ledger).await;
    ledger_list_held_failed_and_changed(ledger).await;
}

/// Returns a fixed instant with whole milliseconds, plus `millis`.
pub fn at(millis: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap() + Duration::milliseconds(millis)
}

/// Returns a sheet id no other case of this process uses, spread so that processes sharing one
/// store rarely collide.
pub fn fresh_io_id() -> i64 {
    static NEXT: AtomicI64 = AtomicI64::new(0);
    let base = NEXT.load(Ordering::Relaxed);
    if base == 0 {
        let seed = i64::from(std::process::id()) * 1_000_000 + i64::from(Utc::now().timestamp_subsec_micros());
        let _ = NEXT.compare_exchange(0, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn fresh_stream(case: &str) -> String {
    format!("{case}-{}", fresh_io_id())
}

fn reason() -> FailureReason {
    FailureReason {
        code: "unknown_warehouse".into(),
        message_zh: "仓库编码 WH9 在金蝶中不存在".into(),
        message_en: "warehouse code WH9 does not exist in Kingdee".into(),
        detail: Some("FStockId WH9".into()),
    }
}

fn bill() -> BillRef {
    BillRef { id: "100234".into(), number: "PD-2026-0001".into() }
}

async fn acquire(ledger: &dyn IdempotencyLedger, io_id: i64, lease_until: DateTime<Utc>, now: DateTime<Utc>) -> (String, bool) {
    match ledger.claim(io_id, "hash-a", lease_until, now).await {
        Ok(Claim::Acquired { token, check_first }) => (token, check_first),
        other => panic!("claim of sheet {io_id} at {now}: expected Acquired, got {other:?}"),
    }
}

fn assert_claim_lost(result: Result<(), StoreError>, what: &str) {
    match result {
        Err(error) => assert_eq!(error.retry, Retry::Never, "{what}: a lost claim must not be retried ({error})"),
        Ok(()) => panic!("{what}: expected a lost-claim error, got Ok"),
    }
}

pub async fn watermark_missing_is_none(store: &dyn WatermarkStore) {
    let stream = fresh_stream("missing");
    assert_eq!(store.load(&stream).await.unwrap(), None, "a stream never advanced has no watermark");
}

pub async fn watermark_moves_only_forward(store: &dyn WatermarkStore) {
    let stream = fresh_stream("forward");

    assert!(store.advance(&stream, at(1_000)).await.unwrap(), "first advance must move");
    assert_eq!(store.load(&stream).await.unwrap(), Some(at(1_000)));

    assert!(store.advance(&stream, at(5_000)).await.unwrap(), "a later instant must move");
    assert_eq!(store.load(&stream).await.unwrap(), Some(at(5_000)));

    assert!(!store.advance(&stream, at(5_000)).await.unwrap(), "the same instant must not move");
    assert!(!store.advance(&stream, at(2_000)).await.unwrap(), "an earlier instant must not move");
    assert_eq!(store.load(&stream).await.unwrap(), Some(at(5_000)), "watermark moved backwards");

    assert!(store.advance(&stream, at(5_001)).await.unwrap(), "one millisecond later must move");
    assert_eq!(store.load(&stream).await.unwrap(), Some(at(5_001)));
}

pub async fn watermark_streams_are_independent(store: &dyn WatermarkStore) {
    let first = fresh_stream("first");
    let second = fresh_stream("second");

    assert!(store.advance(&first, at(9_000)).await.unwrap());
    assert!(store.advance(&second, at(3_000)).await.unwrap(), "another stream's watermark blocked this one");

    assert_eq!(store.load(&first).await.unwrap(), Some(at(9_000)));
    assert_eq!(store.load(&second).await.unwrap(), Some(at(3_000)));
}

/// Ten advances race on one stream; the stored value must end as the maximum.
pub async fn watermark_concurrent_advances_keep_max(store: &dyn WatermarkStore) {
    let stream = fresh_stream("concurrent");
    // Shuffled order so that the largest value is not the last one sent.
    let offsets = [3, 9, 1, 7, 10, 2, 8, 4, 6, 5];

    let results = join_all(offsets.iter().map(|offset| store.advance(&stream, at(offset * 1_000)))).await;

    let moved = results.into_iter().map(|result| result.unwrap()).filter(|moved| *moved).count();
    assert!(moved >= 1, "at least one concurrent advance must move the watermark");
    assert_eq!(store.load(&stream).await.unwrap(), Some(at(10_000)), "concurrent advances lost the max");
    assert!(!store.advance(&stream, at(10_000)).await.unwrap(), "max advanced again must not move");
}

pub async fn ledger_get_missing_is_none(ledger: &dyn IdempotencyLedger) {
    let io_id = fresh_io_id();
    assert_eq!(ledger.get(io_id).await.unwrap(), None, "an unclaimed sheet has no record");
}

/// New claim, a second claim while the lease lives, done, then a claim after done.
pub async fn ledger_claim_busy_done(ledger: &dyn IdempotencyLedger) {
    let io_id = fresh_io_id();
    let (token, check_first) = acquire(ledger, io_id, at(60_000), at(0)).await;
    assert!(!check_first, "a first claim needs no lookup");

    let record = ledger.get(io_id).await.unwrap().expect("claimed record exists");
    assert_eq!(record.io_id, io_id);
    assert_eq!(record.state, LedgerState::Claimed);
    assert_eq!(record.content_hash, "hash-a");
    assert_eq!(record.claim_token.as_deref(), Some(token.as_str()));
    assert_eq!(record.lease_until, Some(at(60_000)));
    assert_eq!(record.attempts, 1);
    assert_eq!(record.bill, None);
    assert_eq!(record.updated_at, at(0));

    let busy = ledger.claim(io_id, "hash-a", at(90_000), at(30_000)).await.unwrap();
    assert_eq!(busy, Claim::Busy { lease_until: at(60_000) }, "a live claim must make others busy");

    ledger.mark_done(io_id, &token, &bill(), at(40_000)).await.unwrap();
    let done = ledger.get(io_id).await.unwrap().expect("done record exists");
    assert_eq!(done.state, LedgerState::Done);
    assert_eq!(done.bill, Some(bill()));
    assert_eq!(done.claim_token, None);
    assert_eq!(done.lease_until, None);
    assert_eq!(done.reason, None);
    assert_eq!(done.attempts, 1);
    assert_eq!(done.updated_at, at(40_000));

    let again = ledger.claim(io_id, "hash-a", at(200_000), at(100_000)).await.unwrap();
    assert_eq!(again, Claim::Done(done.clone()), "a done sheet must never be claimed again");
    assert_eq!(ledger.get(io_id).await.unwrap(), Some(done), "a claim of a done sheet changed it");

    assert_claim_lost(ledger.mark_done(io_id, &token, &bill(), at(50_000)).await, "mark_done twice");
}

/// Checks that a claim whose lease ended is taken over with `check_first` and that its old holder
/// is locked out.
pub async fn ledger_expired_claim_takeover(ledger: &dyn IdempotencyLedger) {
    let io_id = fresh_io_id();
    let (old_token, _) = acquire(ledger, io_id, at(1_000), at(0)).await;

    let (new_token, check_first) = acquire(ledger, io_id, at(70_000), at(10_000)).await;
    assert!(check_first, "an expired holder may have saved the bill, so the new holder must look first");
    assert_ne!(old_token, new_token, "a takeover must issue a new token");

    let record = ledger.get(io_id).await.unwrap().unwrap();
    assert_eq!(record.state, LedgerState::Claimed);
    assert_eq!(record.claim_token.as_deref(), Some(new_token.as_str()));
    assert_eq!(record.lease_until, Some(at(70_000)));
    assert_eq!(record.attempts, 2);

    assert_claim_lost(ledger.mark_done(io_id, &old_token, &bill(), at(11_000)).await, "mark_done by expired holder");
    assert_claim_lost(ledger.release(io_id, &old_token, at(11_000)).await, "release by expired holder");
    assert_eq!(ledger.get(io_id).await.unwrap().unwrap().state, LedgerState::Claimed);

    ledger.mark_done(io_id, &new_token, &bill(), at(12_000)).await.unwrap();
    assert_eq!(ledger.get(io_id).await.unwrap().unwrap().state, LedgerState::Done);
}

/// Checks that a lease ending exactly now has expired, because only `lease_until > now` is busy.
pub async fn ledger_lease_ending_now_is_expired(ledger: &dyn IdempotencyLedger) {
    let io_id = fresh_io_id();
    acquire(ledger, io_id, at(5_000), at(0)).await;

    let busy = ledger.claim(io_id, "hash-a", at(9_000), at(4_999)).await.unwrap();
    assert_eq!(busy, Claim::Busy { lease_until: at(5_000) }, "one millisecond before the end is busy");

    let (_, check_first) = acquire(ledger, io_id, at(9_000), at(5_000)).await;
    assert!(check_first);
}

pub async fn ledger_release_then_reclaim(ledger: &dyn IdempotencyLedger) {
    let io_id = fresh_io_id();
    let (token, _) = acquire(ledger, io_id, at(60_000), at(0)).await;

    ledger.release(io_id, &token, at(1_000)).await.unwrap();
    let released = ledger.get(io_id).await.unwrap().unwrap();
    assert_eq!(released.state, LedgerState::Retry);
    assert_eq!(released.claim_token, None);
    assert_eq!(released.lease_until, None);
    assert_eq!(released.updated_at, at(1_000));
    assert_claim_lost(ledger.release(io_id, &token, at(1_500)).await, "release twice");

    // A released sheet is claimable at once, even before the old lease would have ended.
    let (new_token, check_first) = acquire(ledger, io_id, at(62_000), at(2_000)).await;
    assert!(check_first, "after an unknown result the bill must be looked up");
    assert_ne!(token, new_token);

    let record = ledger.get(io_id).await.unwrap().unwrap();
    assert_eq!(record.state, LedgerState::Claimed);
    assert_eq!(record.attempts, 2);
}

pub async fn ledger_failed_then_reclaim(ledger: &dyn IdempotencyLedger) {
    let io_id = fresh_io_id();
    let (token, _) = acquire(ledger, io_id, at(60_000), at(0)).await;

    ledger.mark_failed(io_id, &token, &reason(), at(3_000)).await.unwrap();
    let failed = ledger.get(io_id).await.unwrap().unwrap();
    assert_eq!(failed.state, LedgerState::Failed);
    assert_eq!(failed.reason, Some(reason()));
    assert_eq!(failed.claim_token, None);
    assert_eq!(failed.lease_until, None);
    assert_eq!(failed.updated_at, at(3_000));

    let (new_token, check_first) = acquire(ledger, io_id, at(64_000), at(4_000)).await;
    assert!(check_first, "a failed sheet may follow an attempt with unknown result");

    let record = ledger.get(io_id).await.unwrap().unwrap();
    assert_eq!(record.state, LedgerState::Claimed);
    assert_eq!(record.attempts, 2);
    assert_eq!(record.reason, Some(reason()), "the claim keeps the last failure reason for operators");

    ledger.mark_done(io_id, &new_token, &bill(), at(5_000)).await.unwrap();
    let done = ledger.get(io_id).await.unwrap().unwrap();
    assert_eq!(done.state, LedgerState::Done);
    assert_eq!(done.reason, None, "done clears the failure reason");
}

pub async fn ledger_wrong_token_rejected(ledger: &dyn IdempotencyLedger) {
    let io_id = fresh_io_id();
    let (token, _) = acquire(ledger, io_id, at(60_000), at(0)).await;

    assert_claim_lost(ledger.mark_done(io_id, "not-the-token", &bill(), at(1_000)).await, "mark_done with wrong token");
    assert_claim_lost(ledger.mark_failed(io_id, "not-the-token", &reason(), at(1_000)).await, "mark_failed with wrong token");
    assert_claim_lost(ledger.release(io_id, "not-the-token", at(1_000)).await, "release with wrong token");

    let record = ledger.get(io_id).await.unwrap().unwrap();
    assert_eq!(record.state, LedgerState::Claimed, "a rejected transition changed the state");
    assert_eq!(record.claim_token.as_deref(), Some(token.as_str()));
    assert_eq!(record.updated_at, at(0));
}

pub async fn ledger_transition_without_record_rejected(ledger: &dyn IdempotencyLedger) {
    let io_id = fresh_io_id();
    assert_claim_lost(ledger.mark_done(io_id, "token", &bill(), at(0)).await, "mark_done without a claim");
    assert_claim_lost(ledger.mark_failed(io_id, "token", &reason(), at(0)).await, "mark_failed without a claim");
    assert_claim_lost(ledger.release(io_id, "token", at(0)).await, "release without a claim");
    assert_eq!(ledger.get(io_id).await.unwrap(), None, "a rejected transition created a record");
}

/// Ten claims of one new sheet race; exactly one wins and the rest see its lease.
pub async fn ledger_concurrent_claims_one_winner(ledger: &dyn IdempotencyLedger) {
    let io_id = fresh_io_id();
    let claims = join_all((0..10).map(|_| ledger.claim(io_id, "hash-a", at(60_000), at(0)))).await;

    let mut winners = Vec::new();
    let mut busy = 0;
    for claim in claims {
        match claim.unwrap() {
            Claim::Acquired { token, check_first } => {
                assert!(!check_first, "the winner of a new sheet needs no lookup");
                winners.push(token);
            }
            Claim::Busy { lease_until } => {
                assert_eq!(lease_until, at(60_000));
                busy += 1;
            }
            Claim::Done(record) | Claim::Held(record) => panic!("no claim of a new sheet may see done or held: {record:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one concurrent claim must win ({busy} were busy)");
    assert_eq!(busy, 9, "every losing claim must be busy");

    let record = ledger.get(io_id).await.unwrap().unwrap();
    assert_eq!(record.claim_token.as_deref(), Some(winners[0].as_str()), "stored token is not the winner's");
    assert_eq!(record.attempts, 1);
}

/// Checks that a run lease excludes a second holder until it ends or is released, and only its holder
/// releases it.
pub async fn run_lease_excludes_second_run(store: &dyn WatermarkStore) {
    let stream = fresh_stream("lease");

    let first = store.acquire_run_lease(&stream, "run-a", at(60_000), at(0)).await.unwrap();
    assert_eq!(first, RunLease::Acquired, "a free stream's lease must be acquired");

    let second = store.acquire_run_lease(&stream, "run-b", at(90_000), at(30_000)).await.unwrap();
    assert_eq!(second, RunLease::Held { holder: "run-a".into(), until: at(60_000) }, "a live lease must exclude others");

    assert!(!store.release_run_lease(&stream, "run-b").await.unwrap(), "only the holder may release");
    let expired = store.acquire_run_lease(&stream, "run-b", at(120_000), at(60_000)).await.unwrap();
    assert_eq!(expired, RunLease::Acquired, "a lease ending now has expired");

    assert!(!store.release_run_lease(&stream, "run-a").await.unwrap(), "the expired holder must not release the new lease");
    assert!(store.release_run_lease(&stream, "run-b").await.unwrap());
    let free = store.acquire_run_lease(&stream, "run-c", at(200_000), at(61_000)).await.unwrap();
    assert_eq!(free, RunLease::Acquired, "a released lease must be free");
}

async fn done_sheet(ledger: &dyn IdempotencyLedger, io_id: i64) {
    let (token, _) = acquire(ledger, io_id, at(60_000), at(0)).await;
    ledger.mark_done(io_id, &token, &bill(), at(1_000)).await.unwrap();
}

/// Checks that a done sheet claimed with another content hash moves to `changed` with both hashes, and stays
/// there for every later claim.
pub async fn ledger_changed_version_held(ledger: &dyn IdempotencyLedger) {
    let io_id = fresh_io_id();
    done_sheet(ledger, io_id).await;

    let Claim::Held(held) = ledger.claim(io_id, "hash-b", at(90_000), at(2_000)).await.unwrap() else {
        panic!("a differing version of a done sheet must be held");
    };
    assert_eq!(held.state, LedgerState::Changed);
    assert_eq!(held.content_hash, "hash-a", "the synced hash must stay");
    assert_eq!(held.changed_hash.as_deref(), Some("hash-b"));
    assert_eq!(held.bill, Some(bill()), "the hold keeps the bill");
    assert_eq!(held.reason.as_ref().map(|reason| reason.code.as_str()), Some("changed_after_sync"));
    assert_eq!(held.updated_at, at(2_000));
    assert_eq!(ledger.get(io_id).await.unwrap(), Some(held.clone()), "the hold must be stored");

    let again = ledger.claim(io_id, "hash-a", at(90_000), at(3_000)).await.unwrap();
    assert_eq!(again, Claim::Held(held.clone()), "a held sheet must stay held for any version");
    assert_eq!(ledger.get(io_id).await.unwrap(), Some(held), "a claim of a held sheet changed it");

    let same = fresh_io_id();
    done_sheet(ledger, same).await;
    assert!(matches!(ledger.claim(same, "hash-a", at(90_000), at(2_000)).await.unwrap(), Claim::Done(_)), "the same version stays done");
}

/// Checks that `mark_held` moves the holder's claim to `changed` and that `reset` makes it
/// claimable with a lookup.
pub async fn ledger_mark_held_then_reset(ledger: &dyn IdempotencyLedger) {
    let io_id = fresh_io_id();
    let (token, _) = acquire(ledger, io_id, at(60_000), at(0)).await;
    assert_claim_lost(ledger.mark_held(io_id, "not-the-token", &bill(), &reason(), at(500)).await, "mark_held with wrong token");

    ledger.mark_held(io_id, &token, &bill(), &reason(), at(1_000)).await.unwrap();
    let held = ledger.get(io_id).await.unwrap().unwrap();
    assert_eq!(held.state, LedgerState::Changed);
    assert_eq!(held.bill, Some(bill()));
    assert_eq!(held.reason, Some(reason()));
    assert_eq!(held.changed_hash.as_deref(), Some("hash-a"));
    assert_eq!(held.claim_token, None);
    assert_eq!(held.lease_until, None);
    assert_claim_lost(ledger.mark_done(io_id, &token, &bill(), at(1_500)).await, "mark_done after the hold");

    assert!(matches!(ledger.claim(io_id, "hash-a", at(90_000), at(2_000)).await.unwrap(), Claim::Held(_)));
    assert!(ledger.reset(io_id, at(3_000)).await.unwrap(), "a held sheet must reset");
    let reset = ledger.get(io_id).await.unwrap().unwrap();
    assert_eq!(reset.state, LedgerState::Retry);
    assert_eq!(reset.changed_hash, None);
    assert_eq!(reset.updated_at, at(3_000));
    assert!(!ledger.reset(io_id, at(3_500)).await.unwrap(), "a reset sheet must not reset twice");

    let (_, check_first) = acquire(ledger, io_id, at(90_000), at(4_000)).await;
    assert!(check_first, "a replay must look the bill up first");
}

/// Checks that `reset` moves only `failed` and `changed` records and writes nothing otherwise.
pub async fn ledger_reset_only_held(ledger: &dyn IdempotencyLedger) {
    let missing = fresh_io_id();
    assert!(!ledger.reset(missing, at(0)).await.unwrap(), "no record: nothing to reset");
    assert_eq!(ledger.get(missing).await.unwrap(), None, "a reset created a record");

    let done = fresh_io_id();
    done_sheet(ledger, done).await;
    let before = ledger.get(done).await.unwrap();
    assert!(!ledger.reset(done, at(5_000)).await.unwrap(), "a done sheet must not reset");
    assert_eq!(ledger.get(done).await.unwrap(), before, "a rejected reset changed a done record");

    let claimed = fresh_io_id();
    acquire(ledger, claimed, at(60_000), at(0)).await;
    assert!(!ledger.reset(claimed, at(5_000)).await.unwrap(), "a live claim must not reset");
    assert_eq!(ledger.get(claimed).await.unwrap().unwrap().state, LedgerState::Claimed);

    let failed = fresh_io_id();
    let (token, _) = acquire(ledger, failed, at(60_000), at(0)).await;
    ledger.mark_failed(failed, &token, &reason(), at(1_000)).await.unwrap();
    assert!(ledger.reset(failed, at(5_000)).await.unwrap(), "a failed sheet must reset");
    let record = ledger.get(failed).await.unwrap().unwrap();
    assert_eq!(record.state, LedgerState::Retry);
    assert_eq!(record.reason, Some(reason()), "reset keeps the last reason until the sheet is done");
}

/// Checks that `list_held` returns failed and changed records, by `io_id`, and nothing else.
pub async fn ledger_list_held_failed_and_changed(ledger: &dyn IdempotencyLedger) {
    let failed = fresh_io_id();
    let (token, _) = acquire(ledger, failed, at(60_000), at(0)).await;
    ledger.mark_failed(failed, &token, &reason(), at(1_000)).await.unwrap();
    let changed = fresh_io_id();
    done_sheet(ledger, changed).await;
    ledger.claim(changed, "hash-b", at(90_000), at(2_000)).await.unwrap();
    let done = fresh_io_id();
    done_sheet(ledger, done).await;

    let held = ledger.list_held(10_000).await.unwrap();
    let ids: Vec<i64> = held.iter().map(|record| record.io_id).collect();
    assert!(ids.contains(&failed), "a failed sheet must be listed");
    assert!(ids.contains(&changed), "a changed sheet must be listed");
    assert!(!ids.contains(&done), "a done sheet must not be listed");
    assert!(held.iter().all(|record| matches!(record.state, LedgerState::Failed | LedgerState::Changed)));
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "records must be ordered by io_id");
    assert!(ledger.list_held(1).await.unwrap().len() <= 1, "the limit must be kept");
}

fn token(access: &str, version: u64) -> countsync_core::ports::StoredToken {
    countsync_core::ports::StoredToken {
        access_token: access.into(),
        refresh_token: format!("refresh-{access}"),
        expires_at: Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap() + Duration::milliseconds(250),
        version,
    }
}

/// The token pair is replaced only over the version the refresher read, one pair per app key.
pub async fn token_replaced_only_over_read_version(store: &dyn countsync_core::ports::TokenStore) {
    let app_key = format!("app-{}", fresh_io_id());
    let other_key = format!("app-{}", fresh_io_id());
    assert_eq!(store.load_token(&app_key).await.unwrap(), None);

    assert!(store.replace_token(&app_key, None, &token("first", 1)).await.unwrap());
    // A second first write loses: a pair is already stored.
    assert!(!store.replace_token(&app_key, None, &token("other", 1)).await.unwrap());
    assert_eq!(store.load_token(&app_key).await.unwrap(), Some(token("first", 1)));

    // Two refreshers read version 1; the second write over version 1 loses.
    assert!(store.replace_token(&app_key, Some(1), &token("second", 2)).await.unwrap());
    assert!(!store.replace_token(&app_key, Some(1), &token("stale", 2)).await.unwrap());
    assert_eq!(store.load_token(&app_key).await.unwrap(), Some(token("second", 2)));

    assert_eq!(store.load_token(&other_key).await.unwrap(), None);
}
