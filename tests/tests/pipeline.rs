//! The local pipeline over the whole demo data set: fetcher and writer in one process, SQLite
//! state, both simulators.

use std::collections::HashMap;

use chrono::Utc;
use countsync::runtime;
use countsync_core::fetcher::FetchRequest;
use countsync_core::mapping::decimal_text;
use countsync_core::sheet::CountSheet;
use countsync_sim::seed;
use countsync_tests::Peers;
use rust_decimal::Decimal;

fn counted_total(sheet: &CountSheet) -> Decimal {
    sheet.items.iter().map(|item| item.r_qty.unwrap_or_default()).sum()
}

fn bill_counted_total(model: &serde_json::Value) -> Decimal {
    model["FBillEntry"]
        .as_array()
        .expect("bill has entries")
        .iter()
        .map(|entry| entry["FCountQty"].as_str().expect("quantity as text").parse::<Decimal>().expect("decimal quantity"))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_data_synced_exactly_once() {
    let sheets = seed::demo_sheets();
    let confirmed: Vec<&CountSheet> = sheets.iter().filter(|sheet| sheet.is_confirmed()).collect();
    let peers = Peers::start(sheets.clone(), &[]).await.unwrap();
    let folder = tempfile::tempdir().unwrap();
    let config = peers.local_config(&folder.path().join("state.sqlite")).unwrap();

    let state = runtime::open_state(&config, None).await.unwrap();
    let source = runtime::open_source(&config).await.unwrap();
    let target = runtime::open_target(&config).unwrap();

    let first = countsync::local::run(&config, source.as_ref(), target.as_ref(), &state, &FetchRequest::default(), Utc::now())
        .await
        .unwrap();
    assert!(first.failed.is_empty(), "failures: {:?}", first.failed);
    assert_eq!(first.fetch.sheets_enqueued, confirmed.len());
    assert_eq!(first.created, confirmed.len());
    assert_eq!(peers.kingdee.bill_count(), confirmed.len());

    // Every confirmed sheet is one bill with its counted quantities; no other sheet was sent.
    let bills: HashMap<String, serde_json::Value> =
        peers.kingdee.bills().into_iter().map(|bill| (bill.bill_no.clone(), bill.model.clone())).collect();
    for sheet in &confirmed {
        let model = bills.get(&format!("JST-{}", sheet.io_id)).unwrap_or_else(|| panic!("no bill for sheet {}", sheet.io_id));
        assert_eq!(decimal_text(bill_counted_total(model)), decimal_text(counted_total(sheet)), "sheet {}", sheet.io_id);
    }
    for sheet in sheets.iter().filter(|sheet| !sheet.is_confirmed()) {
        assert!(!bills.contains_key(&format!("JST-{}", sheet.io_id)), "unconfirmed sheet {} was sent", sheet.io_id);
    }

    // A second run from the start finds every sheet already done and creates nothing.
    let saves_before = peers.kingdee.stats().save_calls;
    let rerun = FetchRequest {
        begin: Some("2026-09-30T16:00:00Z".parse().unwrap()),
        end: Some(Utc::now()),
    };
    let second = countsync::local::run(&config, source.as_ref(), target.as_ref(), &state, &rerun, Utc::now()).await.unwrap();
    assert_eq!(second.created, 0);
    assert_eq!(second.already_done, confirmed.len());
    assert_eq!(peers.kingdee.bill_count(), confirmed.len());
    assert_eq!(peers.kingdee.stats().save_calls, saves_before);
}
