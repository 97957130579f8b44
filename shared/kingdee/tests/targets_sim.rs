//! The three target modes, Submit/Audit and the closed period, saved through the real client
//! into the simulator.

mod common;

use common::{MATERIAL, ORG, STOCK, bill, client, sim_config};
use chrono::{Duration, NaiveDate, Utc};
use countsync_core::mapping::lookup::{CachedMaterialLookup, CountBillLookup, MaterialCache, prepare_context};
use countsync_core::mapping::{
    AfterSave, MappingConfig, MappingContext, MaterialSource, SchemeConfig, Target, WarehouseMapping, map_sheet_bills, map_sheet_with, period,
};
use countsync_core::memory::MemoryLedger;
use countsync_core::message;
use countsync_core::ports::{IdempotencyLedger, LedgerState, SaveOutcome};
use countsync_core::sheet::{CountItem, CountSheet};
use countsync_core::writer::{InboundMessage, MessageOutcome, Writer, WriterSettings};
use countsync_kingdee::AuthMode;
use countsync_kingdee::client::batch_save_body;
use countsync_sim::kingdee::KingdeeSim;
use serde_json::json;

fn mapping(target: Target) -> MappingConfig {
    MappingConfig {
        target,
        stock_org: ORG.into(),
        warehouses: vec![WarehouseMapping { wms_co_id: 0, wh_id: 1, stock: STOCK.into(), stock_location: None }],
        scheme: SchemeConfig { number: "PDFA0001".into(), ..SchemeConfig::default() },
        ..MappingConfig::default()
    }
}

fn item(ioi_id: i64, sku: &str, counted: &str, delta: &str) -> CountItem {
    CountItem {
        ioi_id: Some(ioi_id),
        sku_id: sku.into(),
        i_id: None,
        name: None,
        properties_value: None,
        r_qty: Some(counted.parse().unwrap()),
        qty: Some(delta.parse().unwrap()),
        batch_id: None,
        product_date: None,
        supplier_id: None,
        expiration_date: None,
    }
}

fn sheet(io_id: i64, items: Vec<CountItem>) -> CountSheet {
    CountSheet {
        io_id,
        io_date: NaiveDate::from_ymd_opt(2024, 5, 1).unwrap().and_hms_opt(10, 0, 0),
        status: "Confirmed".into(),
        warehouse: Some("主仓".into()),
        wh_id: Some(1),
        wms_co_id: None,
        kind: None,
        creator_name: None,
        remark: None,
        modified: None,
        f_status: None,
        lock_wh_id: None,
        lock_wh_name: None,
        labels: vec![],
        items,
        batchs: vec![],
        sns: vec![],
    }
}

fn saved_number(outcome: &SaveOutcome) -> String {
    match outcome {
        SaveOutcome::Saved(bill) => bill.number.clone(),
        other => panic!("expected a saved bill, got {other:?}"),
    }
}

#[tokio::test]
async fn gain_loss_bills_saved() {
    let sim = KingdeeSim::start(sim_config()).await.unwrap();
    let kingdee = client(&sim, AuthMode::SignedHeaders);
    let input = sheet(501, vec![item(1, MATERIAL, "12", "2"), item(2, "SKU-002", "3", "-1")]);
    let bills = map_sheet_bills(&input, &mapping(Target::GainLoss)).unwrap();
    assert_eq!(bills.len(), 2);

    for one in &bills {
        let outcomes = kingdee.batch_save(std::slice::from_ref(one)).await.unwrap();
        assert_eq!(saved_number(&outcomes[0]), one.bill_no);
    }
    let stored = sim.bills();
    assert_eq!(stored.len(), 2);
    assert_eq!((stored[0].form_id.as_str(), stored[0].bill_no.as_str()), ("STK_StockCountGain", "JST-501-PY"));
    assert_eq!((stored[1].form_id.as_str(), stored[1].bill_no.as_str()), ("STK_StockCountLoss", "JST-501-PK"));
    assert_eq!(stored[1].model["FBillEntry"][0]["FLossQty"], "1");
    let found = kingdee.find_by_number("STK_StockCountLoss", "JST-501-PK").await.unwrap();
    assert!(found.is_some());
    sim.stop().await;
}

#[tokio::test]
async fn mixed_forms_refused_in_one_call() {
    let sim = KingdeeSim::start(sim_config()).await.unwrap();
    let kingdee = client(&sim, AuthMode::SignedHeaders);
    let bills = map_sheet_bills(&sheet(502, vec![item(1, MATERIAL, "12", "2"), item(2, "SKU-002", "3", "-1")]), &mapping(Target::GainLoss)).unwrap();
    let error = kingdee.batch_save(&bills).await.unwrap_err();
    assert!(error.to_string().contains("share a form id"), "{error}");
    assert_eq!(sim.bill_count(), 0);
    sim.stop().await;
}

fn scheme_bill() -> serde_json::Value {
    let row = |material: &str, qty: &str| {
        json!({
            "FMaterialId": {"FNumber": material}, "FStockId": {"FNumber": STOCK}, "FOwnerTypeId": "BD_OwnerOrg",
            "FOwnerId": {"FNumber": ORG}, "FAcctQty": qty, "FCountQty": "0", "FIsSystem": true,
        })
    };
    json!({
        "FBillNo": "WLPDZY00000077", "FDate": "2024-05-01", "FBillTypeID": {"FNUMBER": "WLPDZY01_SYS"},
        "FStockOrgId": {"FNumber": ORG}, "FSource": "1", "FSchemeNo": "PDFA0001", "FBackUpDate": "2024-04-30",
        "FBillEntry": [row(MATERIAL, "10"), row("SKU-002", "4")],
    })
}

#[tokio::test]
async fn scheme_writeback_updates_counts() {
    let sim = KingdeeSim::start(sim_config()).await.unwrap();
    let fid = sim.insert_bill("STK_StockCountInput", "WLPDZY00000077", scheme_bill(), "A");
    let kingdee = client(&sim, AuthMode::SignedHeaders);
    let config = mapping(Target::SchemeWriteback);
    let input = sheet(503, vec![item(1, MATERIAL, "12", "2")]);

    let lookup: &dyn CountBillLookup = &kingdee;
    let context = prepare_context(&input, &config, None::<&CachedMaterialLookup<countsync_kingdee::KingdeeClient>>, Some(lookup)).await.unwrap();
    let existing = context.existing.clone().expect("scheme bill found");
    assert_eq!(existing.fid, fid);
    assert_eq!(existing.rows.len(), 2);
    assert!(existing.rows.iter().all(|row| row.is_system));

    let mapped = map_sheet_with(&input, &config, &context).unwrap();
    let body = batch_save_body(&mapped.bills);
    assert_eq!(body["data"]["IsDeleteEntry"], false);
    assert_eq!(body["data"]["NeedUpDateFields"], json!(["FBillEntry", "FCountQty"]));
    let outcomes = kingdee.batch_save(&mapped.bills).await.unwrap();
    assert_eq!(saved_number(&outcomes[0]), "WLPDZY00000077");

    let stored = &sim.bills()[0];
    assert_eq!(sim.bill_count(), 1);
    let entries = stored.model["FBillEntry"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "the row not sent is kept");
    assert_eq!(entries[0]["FCountQty"], "12");
    assert_eq!(entries[0]["FStockId"]["FNumber"], STOCK);
    assert_eq!(entries[1]["FCountQty"], "0");
    sim.stop().await;
}

#[tokio::test]
async fn scheme_writeback_adds_new_row() {
    let sim = KingdeeSim::start(sim_config()).await.unwrap();
    let mut model = scheme_bill();
    model["FBillEntry"] = json!([model["FBillEntry"][0].clone()]);
    sim.insert_bill("STK_StockCountInput", "WLPDZY00000078", model, "A");
    let kingdee = client(&sim, AuthMode::SignedHeaders);
    let config = mapping(Target::SchemeWriteback);
    let input = sheet(504, vec![item(1, MATERIAL, "9", "-1"), item(2, "SKU-002", "0", "-5")]);
    let existing = kingdee.find_scheme_bill("STK_StockCountInput", "PDFA0001").await.unwrap();
    let mapped = map_sheet_with(&input, &config, &MappingContext { existing, ..MappingContext::default() }).unwrap();
    assert_eq!(mapped.bills[0].model["FBillEntry"][1]["FEntryID"], 0);
    kingdee.batch_save(&mapped.bills).await.unwrap();

    let entries = sim.bills()[0].model["FBillEntry"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["FMaterialId"]["FNumber"], "SKU-002");
    assert_eq!(entries[1]["FCountQty"], "0");
    sim.stop().await;
}

#[tokio::test]
async fn system_row_dimensions_refused() {
    let sim = KingdeeSim::start(sim_config()).await.unwrap();
    let fid = sim.insert_bill("STK_StockCountInput", "WLPDZY00000079", scheme_bill(), "A");
    let kingdee = client(&sim, AuthMode::SignedHeaders);
    let existing = kingdee.find_scheme_bill("STK_StockCountInput", "PDFA0001").await.unwrap().unwrap();
    let mut changed = bill(505, MATERIAL);
    changed.bill_no = "WLPDZY00000079".into();
    changed.model = json!({"FID": fid, "FBillEntry": [{"FEntryID": existing.rows[0].entry_id, "FStockId": {"FNumber": "CK999"}, "FCountQty": "1"}]});
    let outcomes = kingdee.batch_save(&[changed]).await.unwrap();
    let SaveOutcome::Rejected(rejection) = &outcomes[0] else { panic!("expected a rejection, got {outcomes:?}") };
    assert!(rejection.message.contains("FStockId"), "{}", rejection.message);
    assert_eq!(sim.bills()[0].model["FBillEntry"][0]["FStockId"]["FNumber"], STOCK);
    sim.stop().await;
}

#[tokio::test]
async fn submit_and_audit_repeatable() {
    let sim = KingdeeSim::start(sim_config()).await.unwrap();
    let kingdee = client(&sim, AuthMode::SignedHeaders);
    let one = bill(506, MATERIAL);
    kingdee.batch_save(std::slice::from_ref(&one)).await.unwrap();
    let numbers = vec![one.bill_no.clone()];
    assert_eq!(sim.bills()[0].document_status, "A");

    let error = kingdee.audit(&one.form_id, &numbers).await.unwrap_err();
    assert!(error.to_string().contains("未提交"), "{error}");
    kingdee.after_save(&one.form_id, &numbers, AfterSave::Submit).await.unwrap();
    assert_eq!(sim.bills()[0].document_status, "B");
    kingdee.after_save(&one.form_id, &numbers, AfterSave::Audit).await.unwrap();
    assert_eq!(sim.bills()[0].document_status, "C");
    kingdee.after_save(&one.form_id, &numbers, AfterSave::Audit).await.unwrap();
    kingdee.after_save(&one.form_id, &numbers, AfterSave::Submit).await.unwrap();
    assert_eq!(sim.bills()[0].document_status, "C");
    let statuses = kingdee.document_statuses(&one.form_id, &numbers).await.unwrap();
    assert_eq!(statuses.get(&one.bill_no).map(String::as_str), Some("C"));
    sim.stop().await;
}

#[tokio::test]
async fn closed_period_reported() {
    let sim = KingdeeSim::start(sim_config()).await.unwrap();
    sim.close_period_through(NaiveDate::from_ymd_opt(2024, 5, 31));
    let kingdee = client(&sim, AuthMode::SignedHeaders);
    let one = bill(507, MATERIAL);
    let outcomes = kingdee.batch_save(std::slice::from_ref(&one)).await.unwrap();
    let SaveOutcome::Rejected(rejection) = &outcomes[0] else { panic!("expected a rejection, got {outcomes:?}") };
    let reason = period::period_closed_reason(&one, &rejection.message).expect("closed-period message recognized");
    assert_eq!(reason.code, "period_closed");
    assert!(reason.message_en.contains("2024-05-01"), "{}", reason.message_en);
    assert!(reason.message_en.contains("2024-05-31"), "{}", reason.message_en);
    assert!(reason.message_zh.contains("已关账"));

    sim.close_period_through(None);
    let outcomes = kingdee.batch_save(std::slice::from_ref(&one)).await.unwrap();
    assert_eq!(saved_number(&outcomes[0]), one.bill_no);
    sim.stop().await;
}

#[tokio::test]
async fn material_lookup_by_field_cached() {
    let mut config = sim_config();
    config.material_aliases = [("JST-A".to_string(), MATERIAL.to_string())].into();
    let sim = KingdeeSim::start(config).await.unwrap();
    let cached = CachedMaterialLookup::new(client(&sim, AuthMode::SignedHeaders));
    let mut mapping = mapping(Target::CountInput);
    mapping.materials.source = MaterialSource::KingdeeLookup;
    mapping.materials.lookup_field = "FOldNumber".into();
    mapping.validate().unwrap();
    let input = sheet(508, vec![item(1, "JST-A", "5", "0")]);

    let context = prepare_context(&input, &mapping, Some(&cached), None).await.unwrap();
    let bills = map_sheet_with(&input, &mapping, &context).unwrap().bills;
    assert_eq!(bills[0].model["FBillEntry"][0]["FMaterialId"]["FNumber"], MATERIAL);
    let queries = sim.stats().queries;
    prepare_context(&input, &mapping, Some(&cached), None).await.unwrap();
    assert_eq!(sim.stats().queries, queries, "the second lookup is served from the cache");

    let unknown = sheet(509, vec![item(1, "JST-Z", "5", "0")]);
    let context = prepare_context(&unknown, &mapping, Some(&cached), None).await.unwrap();
    let error = map_sheet_with(&unknown, &mapping, &context).unwrap_err();
    assert_eq!(error.problems[0].code, "unknown_material");
    sim.stop().await;
}

/// Runs the writer with the real client and an in-memory ledger, as the Lambda does.
struct WriteBack {
    kingdee: countsync_kingdee::KingdeeClient,
    ledger: MemoryLedger,
    mapping: MappingConfig,
    settings: WriterSettings,
    materials: MaterialCache,
}

impl WriteBack {
    fn new(sim: &KingdeeSim) -> Self {
        Self {
            kingdee: client(sim, AuthMode::SignedHeaders),
            ledger: MemoryLedger::new(),
            mapping: mapping(Target::SchemeWriteback),
            settings: WriterSettings::default(),
            materials: MaterialCache::default(),
        }
    }

    async fn write(&self, sheets: &[CountSheet]) -> Vec<MessageOutcome> {
        let messages: Vec<InboundMessage> = sheets
            .iter()
            .map(|sheet| InboundMessage { message_id: format!("m-{}", sheet.io_id), body: message::encode(sheet).unwrap().body })
            .collect();
        let writer = Writer { ledger: &self.ledger, target: &self.kingdee, mapping: &self.mapping, settings: &self.settings, materials: &self.materials };
        let report = writer.process(&messages, Utc::now() + Duration::minutes(5)).await;
        report.messages.into_iter().map(|message| message.outcome).collect()
    }
}

fn writeback_sim_config() -> countsync_sim::kingdee::KingdeeSimConfig {
    let mut config = sim_config();
    config.materials.insert("SKU-003".into());
    config
}

/// Counts of the scheme bill's rows by material.
fn counts(sim: &KingdeeSim) -> Vec<(String, String)> {
    let bills = sim.bills();
    assert_eq!(bills.len(), 1, "the write-back never creates a bill");
    bills[0].model["FBillEntry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (row["FMaterialId"]["FNumber"].as_str().unwrap().to_string(), row["FCountQty"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn writer_writes_back_once() {
    let sim = KingdeeSim::start(writeback_sim_config()).await.unwrap();
    let mut model = scheme_bill();
    model["FBillEntry"] = json!([model["FBillEntry"][0].clone()]);
    let fid = sim.insert_bill("STK_StockCountInput", "WLPDZY00000080", model, "A");
    let first = WriteBack::new(&sim);
    let input = sheet(510, vec![item(1, MATERIAL, "12", "2"), item(2, "SKU-002", "3", "3")]);

    let outcomes = first.write(std::slice::from_ref(&input)).await;
    let MessageOutcome::Created { bill } = &outcomes[0] else { panic!("expected a write-back, got {outcomes:?}") };
    assert_eq!((bill.id.as_str(), bill.number.as_str()), (fid.to_string().as_str(), "WLPDZY00000080"));
    assert_eq!(counts(&sim), vec![(MATERIAL.into(), "12".into()), ("SKU-002".into(), "3".into())]);
    assert_eq!(first.ledger.get(510).await.unwrap().unwrap().state, LedgerState::Done);

    // A redelivery finds the ledger record and leaves Kingdee alone.
    let saves = sim.stats().save_calls;
    let outcomes = first.write(std::slice::from_ref(&input)).await;
    assert!(matches!(outcomes[0], MessageOutcome::AlreadyDone { .. }), "{outcomes:?}");
    assert_eq!(sim.stats().save_calls, saves);

    // A writer without the record (a claim taken over after the first writer stopped) reads
    // the bill again, finds every count written and records the sheet without saving.
    let second = WriteBack::new(&sim);
    let outcomes = second.write(std::slice::from_ref(&input)).await;
    assert!(matches!(outcomes[0], MessageOutcome::Recovered { .. }), "{outcomes:?}");
    assert_eq!(sim.stats().save_calls, saves);
    assert_eq!(counts(&sim).len(), 2, "the new row is not added twice");
    sim.stop().await;
}

#[tokio::test]
async fn writer_writes_back_after_unknown_outcome() {
    let sim = KingdeeSim::start(writeback_sim_config()).await.unwrap();
    sim.insert_bill("STK_StockCountInput", "WLPDZY00000081", scheme_bill(), "A");
    let writer = WriteBack::new(&sim);
    let input = sheet(511, vec![item(1, MATERIAL, "12", "2"), item(2, "SKU-003", "5", "5")]);

    sim.fail_next_saves_with_500_after_commit(1);
    let outcomes = writer.write(std::slice::from_ref(&input)).await;
    let MessageOutcome::Failed { reason, .. } = &outcomes[0] else { panic!("expected a retry, got {outcomes:?}") };
    assert_eq!(reason.code, "kingdee_outcome_unknown");
    assert_eq!(sim.stats().http_500_injected, 1);
    assert_eq!(counts(&sim).len(), 3, "the write-back was committed before the 500");

    let outcomes = writer.write(std::slice::from_ref(&input)).await;
    assert!(matches!(outcomes[0], MessageOutcome::Recovered { .. }), "{outcomes:?}");
    assert_eq!(counts(&sim), vec![(MATERIAL.into(), "12".into()), ("SKU-002".into(), "0".into()), ("SKU-003".into(), "5".into())]);
    sim.stop().await;
}

#[tokio::test]
async fn writer_serializes_sheets_of_one_scheme() {
    let sim = KingdeeSim::start(writeback_sim_config()).await.unwrap();
    let mut model = scheme_bill();
    model["FBillEntry"] = json!([]);
    sim.insert_bill("STK_StockCountInput", "WLPDZY00000082", model, "A");
    let writer = WriteBack::new(&sim);
    // Both sheets count SKU-003, which the scheme bill has no row for yet.
    let first = sheet(512, vec![item(1, "SKU-003", "5", "5")]);
    let second = sheet(513, vec![item(1, "SKU-003", "5", "5")]);

    let outcomes = writer.write(&[first.clone(), second.clone()]).await;
    assert!(matches!(outcomes[0], MessageOutcome::Created { .. }), "{outcomes:?}");
    let MessageOutcome::Failed { reason, .. } = &outcomes[1] else { panic!("expected a retry, got {outcomes:?}") };
    assert_eq!(reason.code, "scheme_bill_shared");
    assert_eq!(counts(&sim).len(), 1);

    // The redelivery reads the row the first sheet added and writes into it.
    let outcomes = writer.write(std::slice::from_ref(&second)).await;
    assert!(matches!(outcomes[0], MessageOutcome::Recovered { .. }), "{outcomes:?}");
    assert_eq!(counts(&sim), vec![("SKU-003".into(), "5".into())]);
    sim.stop().await;
}

/// Leaves an expired claim of the sheet in the ledger, as a writer that stopped after its save
/// does, so that the next writer looks the bill up before saving.
async fn expired_claim(ledger: &MemoryLedger, io_id: i64, content_hash: &str) {
    let now = Utc::now();
    ledger.claim(io_id, content_hash, now - Duration::seconds(1), now - Duration::seconds(10)).await.unwrap();
}

#[tokio::test]
async fn writer_holds_edited_bill() {
    let sim = KingdeeSim::start(sim_config()).await.unwrap();
    let mut writer = WriteBack::new(&sim);
    writer.mapping = mapping(Target::CountInput);
    let input = sheet(520, vec![item(1, MATERIAL, "12", "2")]);
    let expected = map_sheet_bills(&input, &writer.mapping).unwrap().remove(0);
    let mut edited = expected.model.clone();
    edited["FBillEntry"][0]["FCountQty"] = json!("11");
    sim.insert_bill("STK_StockCountInput", &expected.bill_no, edited, "A");
    expired_claim(&writer.ledger, 520, &expected.content_hash).await;

    let outcomes = writer.write(std::slice::from_ref(&input)).await;

    let MessageOutcome::Held { reason, .. } = &outcomes[0] else { panic!("expected a hold, got {outcomes:?}") };
    assert_eq!(reason.code, "bill_differs");
    assert_eq!(sim.bill_count(), 1, "no second bill");
    assert_eq!(sim.stats().save_calls, 0);
    assert_eq!(writer.ledger.get(520).await.unwrap().unwrap().state, LedgerState::Changed);
    sim.stop().await;
}

#[tokio::test]
async fn writer_records_equal_bill() {
    let sim = KingdeeSim::start(sim_config()).await.unwrap();
    let mut writer = WriteBack::new(&sim);
    writer.mapping = mapping(Target::CountInput);
    let input = sheet(521, vec![item(1, MATERIAL, "12", "2")]);
    let expected = map_sheet_bills(&input, &writer.mapping).unwrap().remove(0);
    sim.insert_bill("STK_StockCountInput", &expected.bill_no, expected.model.clone(), "A");
    expired_claim(&writer.ledger, 521, &expected.content_hash).await;

    let outcomes = writer.write(std::slice::from_ref(&input)).await;

    assert!(matches!(outcomes[0], MessageOutcome::Recovered { .. }), "{outcomes:?}");
    assert_eq!(sim.stats().save_calls, 0);
    assert_eq!(writer.ledger.get(521).await.unwrap().unwrap().state, LedgerState::Done);
    sim.stop().await;
}
