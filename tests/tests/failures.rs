//! Failed and held sheets end to end: the failures list, a replay after the operator fixed the
//! cause, a replay of a sheet that is already done, and a sheet that changed after sync.

use chrono::Utc;
use countsync::runtime;
use countsync_core::fetcher::FetchRequest;
use countsync_core::ports::LedgerState;
use countsync_core::writer::MessageOutcome;
use countsync_tests::{Peers, small_confirmed_sheets};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_listed_replayed_and_held() {
    let sheets = small_confirmed_sheets(30);
    let peers = Peers::start(sheets.clone(), &[]).await.unwrap();
    let folder = tempfile::tempdir().unwrap();
    let mut config = peers.local_config(&folder.path().join("state.sqlite")).unwrap();
    let fixed = config.clone();
    // The operator forgot one warehouse in the table.
    let forgotten = config.mapping.warehouses.remove(0);
    let unmapped: Vec<i64> = sheets
        .iter()
        .filter(|sheet| sheet.wh_id == Some(forgotten.wh_id) && sheet.wms_co_id.unwrap_or(0) == forgotten.wms_co_id)
        .map(|sheet| sheet.io_id)
        .collect();
    assert!(!unmapped.is_empty(), "the data set must use the removed warehouse");

    let state = runtime::open_state(&config, None).await.unwrap();
    let source = runtime::open_source(&config).await.unwrap();
    let target = runtime::open_target(&config).unwrap();
    let first = countsync::local::run(&config, source.as_ref(), target.as_ref(), &state, &FetchRequest::default(), Utc::now()).await.unwrap();
    assert_eq!(first.failed.len(), unmapped.len());
    assert_eq!(peers.kingdee.bill_count(), sheets.len() - unmapped.len());

    // The failures list names exactly the unmapped sheets, with a reason in both languages.
    let held = state.ledger.list_held(100).await.unwrap();
    let held_ids: Vec<i64> = held.iter().map(|record| record.io_id).collect();
    let mut expected = unmapped.clone();
    expected.sort_unstable();
    assert_eq!(held_ids, expected);
    for record in &held {
        assert_eq!(record.state, LedgerState::Failed);
        let reason = record.reason.as_ref().unwrap();
        assert_eq!(reason.code, "unknown_warehouse");
        assert!(reason.message_zh.contains("仓库"), "{}", reason.message_zh);
        assert!(reason.message_en.contains("warehouse"), "{}", reason.message_en);
    }

    // After the fix, the replay saves exactly the failed sheets, once each.
    let saves_before = peers.kingdee.stats().save_calls;
    let replay = countsync::local::replay_local(&fixed, source.as_ref(), target.as_ref(), &state, &unmapped).await.unwrap();
    assert_eq!(replay.reset.len(), unmapped.len());
    assert!(replay.missing.is_empty());
    assert!(replay.outcomes.iter().all(|report| matches!(report.outcome, MessageOutcome::Created { .. })), "{:?}", replay.outcomes);
    assert_eq!(peers.kingdee.bill_count(), sheets.len());
    assert!(peers.kingdee.stats().save_calls > saves_before);
    assert!(state.ledger.list_held(100).await.unwrap().is_empty());

    // Replaying sheets that succeeded meanwhile calls no save.
    let saves_before = peers.kingdee.stats().save_calls;
    let again = countsync::local::replay_local(&fixed, source.as_ref(), target.as_ref(), &state, &unmapped).await.unwrap();
    assert!(again.reset.is_empty(), "a done sheet must not be reset");
    assert!(again.outcomes.iter().all(|report| matches!(report.outcome, MessageOutcome::AlreadyDone { .. })));
    assert_eq!(peers.kingdee.stats().save_calls, saves_before, "replaying a done sheet must not save");
    assert_eq!(peers.kingdee.bill_count(), sheets.len());

    // A sheet edited in JuShuiTan after its bill was saved is held, never saved twice.
    let mut edited = sheets[0].clone();
    edited.items[0].r_qty = Some(edited.items[0].r_qty.unwrap_or_default() + rust_decimal::Decimal::ONE);
    let edited_id = edited.io_id;
    peers.jst.upsert_sheet(edited);
    let saves_before = peers.kingdee.stats().save_calls;
    let changed = countsync::local::replay_local(&fixed, source.as_ref(), target.as_ref(), &state, &[edited_id]).await.unwrap();
    assert!(matches!(&changed.outcomes[0].outcome, MessageOutcome::Held { reason, .. } if reason.code == "changed_after_sync"), "{:?}", changed.outcomes);
    assert_eq!(peers.kingdee.stats().save_calls, saves_before);
    assert_eq!(peers.kingdee.bill_count(), sheets.len());
    let held = state.ledger.list_held(100).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].io_id, edited_id);
    assert_eq!(held[0].state, LedgerState::Changed);
    assert!(held[0].changed_hash.is_some());
    assert_ne!(held[0].changed_hash.as_deref(), Some(held[0].content_hash.as_str()));
}
