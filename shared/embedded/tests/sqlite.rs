//! SqliteState against the shared conformance cases, plus persistence and cross-connection
//! claims on a file. The in-memory adapter of countsync-core runs the same cases here, so the
//! cases themselves are checked against the reference behaviour.

use std::sync::Arc;

use countsync_core::memory::{MemoryLedger, MemoryWatermarks};
use countsync_core::ports::{BillRef, Claim, IdempotencyLedger, LedgerState, WatermarkStore};
use countsync_embedded::SqliteState;
use countsync_embedded::conformance::{self, at};

#[tokio::test]
async fn memory_watermark_conformance() {
    conformance::watermark_suite(&MemoryWatermarks::new()).await;
}

#[tokio::test]
async fn memory_ledger_conformance() {
    conformance::ledger_suite(&MemoryLedger::new()).await;
}

#[tokio::test]
async fn sqlite_watermark_conformance() {
    let state = SqliteState::in_memory().unwrap();
    conformance::watermark_suite(&state).await;
}

#[tokio::test]
async fn sqlite_ledger_conformance() {
    let state = SqliteState::in_memory().unwrap();
    conformance::ledger_suite(&state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteState::open(&dir.path().join("state.db")).unwrap();
    conformance::watermark_suite(&state).await;
    conformance::ledger_suite(&state).await;
}

#[tokio::test]
async fn sqlite_state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let bill = BillRef { id: "100900".into(), number: "PD-7".into() };

    let state = SqliteState::open(&path).unwrap();
    assert!(state.advance("count-sheets", at(7_000)).await.unwrap());
    let Claim::Acquired { token, .. } = state.claim(42, "hash-42", at(60_000), at(0)).await.unwrap() else {
        panic!("first claim must be acquired");
    };
    state.mark_done(42, &token, &bill, at(1_000)).await.unwrap();
    let Claim::Acquired { .. } = state.claim(43, "hash-43", at(60_000), at(0)).await.unwrap() else {
        panic!("first claim must be acquired");
    };
    drop(state);

    let reopened = SqliteState::open(&path).unwrap();
    assert_eq!(reopened.load("count-sheets").await.unwrap(), Some(at(7_000)));
    assert!(!reopened.advance("count-sheets", at(6_000)).await.unwrap(), "watermark moved back after reopen");

    let done = reopened.get(42).await.unwrap().expect("done record persisted");
    assert_eq!(done.state, LedgerState::Done);
    assert_eq!(done.bill, Some(bill));
    assert_eq!(done.content_hash, "hash-42");
    assert_eq!(done.updated_at, at(1_000));
    assert_eq!(reopened.claim(42, "hash-42", at(90_000), at(2_000)).await.unwrap(), Claim::Done(done));

    let claimed = reopened.get(43).await.unwrap().expect("claimed record persisted");
    assert_eq!(claimed.state, LedgerState::Claimed);
    assert_eq!(claimed.lease_until, Some(at(60_000)));
    assert_eq!(
        reopened.claim(43, "hash-43", at(90_000), at(2_000)).await.unwrap(),
        Claim::Busy { lease_until: at(60_000) },
        "a persisted live lease must still block"
    );
}

#[tokio::test]
async fn sqlite_keeps_sub_millisecond_precision() {
    let state = SqliteState::in_memory().unwrap();
    let precise = at(1_000) + chrono::Duration::nanoseconds(123_456);

    assert!(state.advance("precise", precise).await.unwrap());
    assert_eq!(state.load("precise").await.unwrap(), Some(precise));
    assert!(state.advance("precise", precise + chrono::Duration::nanoseconds(1)).await.unwrap());
}

/// Two connections to one file, each with claims from several threads: exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_connections_claim_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let first = Arc::new(SqliteState::open(&path).unwrap());
    let second = Arc::new(SqliteState::open(&path).unwrap());

    for io_id in 1..=20_i64 {
        let handles: Vec<_> = [&first, &second, &first, &second]
            .into_iter()
            .map(|state| {
                let state = Arc::clone(state);
                tokio::spawn(async move { state.claim(io_id, "hash", at(60_000), at(0)).await })
            })
            .collect();

        let mut acquired = 0;
        let mut busy = 0;
        for handle in handles {
            match handle.await.unwrap().unwrap() {
                Claim::Acquired { check_first, .. } => {
                    assert!(!check_first);
                    acquired += 1;
                }
                Claim::Busy { lease_until } => {
                    assert_eq!(lease_until, at(60_000));
                    busy += 1;
                }
                Claim::Done(record) | Claim::Held(record) => panic!("sheet {io_id} unexpectedly done or held: {record:?}"),
            }
        }
        assert_eq!(acquired, 1, "sheet {io_id}: exactly one connection must acquire");
        assert_eq!(busy, 3, "sheet {io_id}: the other claims must be busy");
        assert_eq!(first.get(io_id).await.unwrap().unwrap().attempts, 1);
    }
}

#[tokio::test]
async fn open_rejects_directory() {
    let dir = tempfile::tempdir().unwrap();
    let error = SqliteState::open(dir.path()).unwrap_err();
    assert!(error.message.contains(&dir.path().display().to_string()), "error must name the path: {error}");
}

/// Checks that a version 1 file (no `changed` state, no run lease) is upgraded in place and
/// keeps its records.
#[tokio::test]
async fn sqlite_v1_file_upgraded() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("v1.sqlite");
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute_batch(
                "CREATE TABLE watermark (stream TEXT PRIMARY KEY NOT NULL, at TEXT NOT NULL, at_ns INTEGER NOT NULL);
                 CREATE TABLE ledger (io_id INTEGER PRIMARY KEY NOT NULL,
                     state TEXT NOT NULL CHECK (state IN ('claimed', 'done', 'retry', 'failed')),
                     content_hash TEXT NOT NULL, claim_token TEXT, lease_until TEXT, bill_id TEXT, bill_no TEXT,
                     reason TEXT, attempts INTEGER NOT NULL, updated_at TEXT NOT NULL);
                 CREATE INDEX ledger_state ON ledger (state);
                 INSERT INTO ledger VALUES (5, 'done', 'hash-a', NULL, NULL, '9', 'JST-5', NULL, 1, '2026-03-01T08:00:00Z');
                 PRAGMA user_version = 1;",
            )
            .unwrap();
    }

    let state = SqliteState::open(&path).unwrap();
    let record = state.get(5).await.unwrap().expect("record kept");
    assert_eq!(record.state, LedgerState::Done);
    assert_eq!(record.changed_hash, None);
    assert!(matches!(state.claim(5, "hash-b", at(60_000), at(0)).await.unwrap(), Claim::Held(_)), "changed must be storable");
    conformance::ledger_sequential_suite(&state).await;
    conformance::watermark_sequential_suite(&state).await;
}

#[tokio::test]
async fn token_store_conformance() {
    conformance::token_replaced_only_over_read_version(&countsync_core::memory::MemoryTokenStore::new()).await;
    conformance::token_replaced_only_over_read_version(&SqliteState::in_memory().unwrap()).await;
}
