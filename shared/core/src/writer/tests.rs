use super::*;
use crate::mapping::{MappingContext, MaterialSource, Target, WarehouseMapping};
use crate::memory::{MemoryBillTarget, MemoryLedger};
use crate::ports::{IdempotencyLedger, LedgerState};
use crate::sheet::{CountItem, CountSheet};
use chrono::NaiveDate;

fn mapping() -> MappingConfig {
    MappingConfig {
        stock_org: "100".into(),
        warehouses: vec![WarehouseMapping { wms_co_id: 0, wh_id: 1, stock: "CK001".into(), stock_location: None }],
        ..MappingConfig::default()
    }
}

fn sheet(io_id: i64, sku: &str) -> CountSheet {
    CountSheet {
        io_id,
        io_date: NaiveDate::from_ymd_opt(2026, 10, 8).unwrap().and_hms_opt(9, 0, 0),
        status: "Confirmed".into(),
        warehouse: Some("主仓".into()),
        wh_id: Some(1),
        wms_co_id: None,
        kind: None,
        creator_name: None,
        remark: None,
        modified: NaiveDate::from_ymd_opt(2026, 10, 8).unwrap().and_hms_opt(9, 5, 0),
        f_status: None,
        lock_wh_id: None,
        lock_wh_name: None,
        labels: vec![],
        items: vec![CountItem {
            ioi_id: Some(1),
            sku_id: sku.into(),
            i_id: None,
            name: None,
            properties_value: None,
            r_qty: Some(5.into()),
            qty: Some(1.into()),
            batch_id: None,
            product_date: None,
            supplier_id: None,
            expiration_date: None,
        }],
        batchs: vec![],
        sns: vec![],
    }
}

fn inbound(sheets: &[CountSheet]) -> Vec<InboundMessage> {
    sheets
        .iter()
        .map(|sheet| InboundMessage { message_id: format!("m-{}", sheet.io_id), body: message::encode(sheet).unwrap().body })
        .collect()
}

struct Harness {
    ledger: MemoryLedger,
    target: MemoryBillTarget,
    mapping: MappingConfig,
    settings: WriterSettings,
    /// Kept across batches, as a warm Lambda keeps it.
    materials: MaterialCache,
}

impl Harness {
    fn new() -> Self {
        Self {
            ledger: MemoryLedger::new(),
            target: MemoryBillTarget::new(),
            mapping: mapping(),
            settings: WriterSettings::default(),
            materials: MaterialCache::default(),
        }
    }

    async fn process(&self, messages: &[InboundMessage]) -> WriteReport {
        let writer = Writer { ledger: &self.ledger, target: &self.target, mapping: &self.mapping, settings: &self.settings, materials: &self.materials };
        writer.process(messages, Utc::now() + Duration::minutes(5)).await
    }
}

#[tokio::test]
async fn batch_creates_bills() {
    let harness = Harness::new();
    let messages = inbound(&[sheet(1, "SKU-1"), sheet(2, "SKU-2"), sheet(3, "SKU-3")]);
    let report = harness.process(&messages).await;

    assert!(report.failed_message_ids().is_empty());
    assert_eq!(harness.target.bill_count(), 3);
    assert_eq!(harness.target.save_calls(), 1);
    let record = harness.ledger.get(2).await.unwrap().unwrap();
    assert_eq!(record.state, LedgerState::Done);
    assert_eq!(record.bill.unwrap().number, "JST-2");
}

#[tokio::test]
async fn redelivery_skips_kingdee() {
    let harness = Harness::new();
    let messages = inbound(&[sheet(1, "SKU-1"), sheet(2, "SKU-2")]);
    harness.process(&messages).await;
    let calls_before = harness.target.save_calls();

    let report = harness.process(&messages).await;
    assert_eq!(harness.target.save_calls(), calls_before);
    assert_eq!(harness.target.lookups(), 0);
    assert_eq!(harness.target.bill_count(), 2);
    assert!(report.messages.iter().all(|message| matches!(message.outcome, MessageOutcome::AlreadyDone { .. })));
}

#[tokio::test]
async fn rejected_bill_reported_alone() {
    let harness = Harness::new();
    harness.target.reject_material("SKU-BAD");
    let messages = inbound(&[sheet(1, "SKU-1"), sheet(2, "SKU-BAD"), sheet(3, "SKU-3")]);
    let report = harness.process(&messages).await;

    assert_eq!(report.failed_message_ids(), vec!["m-2".to_string()]);
    assert_eq!(harness.target.bill_count(), 2);
    let record = harness.ledger.get(2).await.unwrap().unwrap();
    assert_eq!(record.state, LedgerState::Failed);
    let reason = record.reason.unwrap();
    assert_eq!(reason.code, "kingdee_rejected");
    assert!(reason.detail.unwrap().contains("SKU-BAD"));
}

#[tokio::test]
async fn unknown_outcome_found_by_lookup() {
    let harness = Harness::new();
    harness.target.fail_after_commit(1);
    let messages = inbound(&[sheet(1, "SKU-1"), sheet(2, "SKU-2")]);
    let report = harness.process(&messages).await;

    assert!(report.failed_message_ids().is_empty());
    assert!(report.messages.iter().all(|message| matches!(message.outcome, MessageOutcome::Recovered { .. })));
    assert_eq!(harness.target.bill_count(), 2);
    assert_eq!(harness.target.save_calls(), 1);
    assert_eq!(harness.target.lookups(), 2);
}

#[tokio::test]
async fn duplicate_number_recorded_as_done() {
    let harness = Harness::new();
    let messages = inbound(&[sheet(7, "SKU-1")]);
    harness.process(&messages).await;

    // The ledger loses its record (a crash between save and record, then a manual cleanup):
    // the save meets the bill-number uniqueness error and must not create a second bill.
    let fresh = Harness { target: harness.target, ..Harness::new() };
    let report = fresh.process(&messages).await;
    assert!(report.failed_message_ids().is_empty());
    assert!(matches!(report.messages[0].outcome, MessageOutcome::Recovered { .. }));
    assert_eq!(fresh.target.bill_count(), 1);
}

#[tokio::test]
async fn invalid_body_fails_only_itself() {
    let harness = Harness::new();
    let mut messages = inbound(&[sheet(1, "SKU-1")]);
    messages.push(InboundMessage { message_id: "garbage".into(), body: "{not json".into() });
    let report = harness.process(&messages).await;

    assert_eq!(report.failed_message_ids(), vec!["garbage".to_string()]);
    assert_eq!(harness.target.bill_count(), 1);
}

#[tokio::test]
async fn unmapped_sheet_records_reason() {
    let harness = Harness::new();
    let mut unmapped = sheet(4, "SKU-1");
    unmapped.wh_id = Some(9);
    let report = harness.process(&inbound(&[unmapped, sheet(5, "SKU-5")])).await;

    assert_eq!(report.failed_message_ids(), vec!["m-4".to_string()]);
    let record = harness.ledger.get(4).await.unwrap().unwrap();
    assert_eq!(record.state, LedgerState::Failed);
    assert_eq!(record.reason.unwrap().code, "unknown_warehouse");
    assert_eq!(harness.target.bill_count(), 1);
}

#[tokio::test]
async fn live_claim_blocks_second_writer() {
    let harness = Harness::new();
    let claim = harness.ledger.claim(1, "hash", Utc::now() + Duration::minutes(5), Utc::now()).await.unwrap();
    assert!(matches!(claim, Claim::Acquired { .. }));

    let report = harness.process(&inbound(&[sheet(1, "SKU-1")])).await;
    assert_eq!(report.failed_message_ids(), vec!["m-1".to_string()]);
    assert_eq!(harness.target.save_calls(), 0);
}

#[tokio::test]
async fn expired_claim_checks_first() {
    let harness = Harness::new();
    harness.ledger.claim(1, "hash", Utc::now() - Duration::seconds(1), Utc::now() - Duration::minutes(1)).await.unwrap();

    let report = harness.process(&inbound(&[sheet(1, "SKU-1")])).await;
    assert!(report.failed_message_ids().is_empty());
    assert_eq!(harness.target.lookups(), 1);
    assert_eq!(harness.target.bill_count(), 1);
}

#[tokio::test]
async fn large_bills_sent_alone() {
    let mut harness = Harness::new();
    harness.settings.batch_size = 2;
    harness.settings.large_bill_entries = 3;
    let mut large = sheet(10, "SKU-L");
    large.items = (0..4).map(|line| CountItem { sku_id: format!("SKU-L{line}"), ..large.items[0].clone() }).collect();
    let sheets = [sheet(1, "SKU-1"), large, sheet(2, "SKU-2"), sheet(3, "SKU-3")];
    harness.process(&inbound(&sheets)).await;

    // One call for the large bill, then [1, 2] and [3].
    assert_eq!(harness.target.save_calls(), 3);
    assert_eq!(harness.target.bill_count(), 4);
}

#[tokio::test]
async fn changed_after_sync_held_not_saved() {
    let harness = Harness::new();
    harness.process(&inbound(&[sheet(1, "SKU-1")])).await;
    let synced = harness.ledger.get(1).await.unwrap().unwrap();

    let mut edited = sheet(1, "SKU-1");
    edited.items[0].r_qty = Some(9.into());
    let report = harness.process(&inbound(&[edited])).await;

    assert!(report.failed_message_ids().is_empty(), "a held sheet is acknowledged, not redelivered");
    let MessageOutcome::Held { bill, reason } = &report.messages[0].outcome else {
        panic!("expected Held, got {:?}", report.messages[0].outcome);
    };
    assert_eq!(bill.as_ref().map(|bill| bill.number.as_str()), Some("JST-1"));
    assert_eq!(reason.code, "changed_after_sync");
    assert!(reason.message_zh.contains("JST-1"));
    assert!(reason.message_en.contains("JST-1"));
    assert_eq!(harness.target.save_calls(), 1, "a changed sheet must not reach Kingdee");
    assert_eq!(harness.target.bill_count(), 1);

    let held = harness.ledger.get(1).await.unwrap().unwrap();
    assert_eq!(held.state, LedgerState::Changed);
    assert_eq!(held.content_hash, synced.content_hash, "the synced hash stays");
    assert_ne!(held.changed_hash, None);
    assert_ne!(held.changed_hash.as_deref(), Some(synced.content_hash.as_str()));
    assert_eq!(harness.ledger.list_held(10).await.unwrap(), vec![held]);

    // The same version again: still held, still no save.
    let again = harness.process(&inbound(&[sheet(1, "SKU-1")])).await;
    assert!(matches!(again.messages[0].outcome, MessageOutcome::Held { .. }));
    assert_eq!(harness.target.save_calls(), 1);
}

#[tokio::test]
async fn unchanged_redelivery_stays_done() {
    let harness = Harness::new();
    harness.process(&inbound(&[sheet(1, "SKU-1")])).await;
    let report = harness.process(&inbound(&[sheet(1, "SKU-1")])).await;

    assert!(matches!(report.messages[0].outcome, MessageOutcome::AlreadyDone { .. }));
    assert_eq!(harness.ledger.get(1).await.unwrap().unwrap().state, LedgerState::Done);
    assert!(harness.ledger.list_held(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn takeover_equal_bill_recorded() {
    let harness = Harness::new();
    harness.process(&inbound(&[sheet(1, "SKU-1")])).await;
    // The ledger lost the record after the save, and an expired claim is left behind.
    let fresh = Harness { target: harness.target, ..Harness::new() };
    fresh.ledger.claim(1, "old", Utc::now() - Duration::seconds(1), Utc::now() - Duration::minutes(1)).await.unwrap();

    let report = fresh.process(&inbound(&[sheet(1, "SKU-1")])).await;

    assert!(matches!(report.messages[0].outcome, MessageOutcome::Recovered { .. }), "{:?}", report.messages[0].outcome);
    assert_eq!(fresh.target.save_calls(), 1);
    assert_eq!(fresh.ledger.get(1).await.unwrap().unwrap().state, LedgerState::Done);
}

#[tokio::test]
async fn takeover_different_bill_held() {
    let harness = Harness::new();
    harness.process(&inbound(&[sheet(1, "SKU-1")])).await;
    let mut model = harness.target.bill("JST-1").unwrap();
    model["FBillEntry"][0]["FCountQty"] = serde_json::json!("77");
    harness.target.replace_bill_model("JST-1", model);
    let fresh = Harness { target: harness.target, ..Harness::new() };
    fresh.ledger.claim(1, "old", Utc::now() - Duration::seconds(1), Utc::now() - Duration::minutes(1)).await.unwrap();

    let report = fresh.process(&inbound(&[sheet(1, "SKU-1")])).await;

    let MessageOutcome::Held { reason, .. } = &report.messages[0].outcome else {
        panic!("expected Held, got {:?}", report.messages[0].outcome);
    };
    assert_eq!(reason.code, "bill_differs");
    let detail = reason.detail.as_deref().unwrap();
    assert!(detail.contains("SKU-1 @ CK001 = 5"), "{detail}");
    assert!(detail.contains("SKU-1 @ CK001 = 77"), "{detail}");
    assert!(report.failed_message_ids().is_empty());
    assert_eq!(fresh.target.save_calls(), 1, "a differing bill must not be saved again");
    let record = fresh.ledger.get(1).await.unwrap().unwrap();
    assert_eq!(record.state, LedgerState::Changed);
    assert_eq!(record.bill.map(|bill| bill.number), Some("JST-1".to_string()));
}

#[tokio::test]
async fn duplicate_number_different_bill_held() {
    let harness = Harness::new();
    let mut other = sheet(1, "SKU-1");
    other.items[0].r_qty = Some(3.into());
    harness.process(&inbound(&[other])).await;
    let fresh = Harness { target: harness.target, ..Harness::new() };

    let report = fresh.process(&inbound(&[sheet(1, "SKU-1")])).await;

    assert!(matches!(&report.messages[0].outcome, MessageOutcome::Held { reason, .. } if reason.code == "bill_differs"));
    assert_eq!(fresh.target.bill_count(), 1);
}

/// Wraps the in-memory target and panics on saves that contain a chosen sheet, or waits before
/// each save.
struct FaultyTarget {
    inner: MemoryBillTarget,
    panic_on: Option<i64>,
    save_delay: std::time::Duration,
}

#[async_trait::async_trait]
impl BillTarget for FaultyTarget {
    async fn save_bills(&self, bills: &[Bill]) -> Result<Vec<SaveOutcome>, TargetError> {
        tokio::time::sleep(self.save_delay).await;
        if bills.iter().any(|bill| Some(bill.io_id) == self.panic_on) {
            panic!("injected panic while saving sheet {:?}", self.panic_on);
        }
        self.inner.save_bills(bills).await
    }

    async fn find_bill(&self, form_id: &str, bill_no: &str) -> Result<Option<BillRef>, TargetError> {
        self.inner.find_bill(form_id, bill_no).await
    }
}

#[tokio::test]
async fn panic_isolated_to_its_group() {
    let ledger = MemoryLedger::new();
    let target = FaultyTarget { inner: MemoryBillTarget::new(), panic_on: Some(2), save_delay: std::time::Duration::ZERO };
    let (mapping, settings) = (mapping(), WriterSettings { batch_size: 1, ..WriterSettings::default() });
    let writer = Writer { ledger: &ledger, target: &target, mapping: &mapping, settings: &settings, materials: &MaterialCache::default() };
    let messages = inbound(&[sheet(1, "SKU-1"), sheet(2, "SKU-2"), sheet(3, "SKU-3")]);

    let report = writer.process(&messages, Utc::now() + Duration::minutes(5)).await;

    assert_eq!(report.failed_message_ids(), vec!["m-2".to_string()]);
    let MessageOutcome::Failed { retry, reason } = &report.messages[1].outcome else { unreachable!() };
    assert_eq!(*retry, Retry::Later);
    assert_eq!(reason.code, "internal_panic");
    assert_eq!(target.inner.bill_count(), 2);
    assert_eq!(ledger.get(2).await.unwrap().unwrap().state, LedgerState::Retry, "a panicked save is released for a checked retry");
    assert_eq!(ledger.get(3).await.unwrap().unwrap().state, LedgerState::Done);
}

#[tokio::test]
async fn deadline_runs_out_mid_batch() {
    let ledger = MemoryLedger::new();
    let target = FaultyTarget { inner: MemoryBillTarget::new(), panic_on: None, save_delay: std::time::Duration::from_millis(400) };
    let mapping = mapping();
    let settings = WriterSettings { batch_size: 1, reserve: Duration::milliseconds(300), ..WriterSettings::default() };
    let writer = Writer { ledger: &ledger, target: &target, mapping: &mapping, settings: &settings, materials: &MaterialCache::default() };
    let messages = inbound(&[sheet(1, "SKU-1"), sheet(2, "SKU-2"), sheet(3, "SKU-3"), sheet(4, "SKU-4")]);
    let started = Utc::now();
    let deadline = started + Duration::milliseconds(1_000);

    let report = writer.process(&messages, deadline).await;

    assert!(Utc::now() < deadline, "the writer ran past its deadline");
    let created = report.messages.iter().filter(|message| matches!(message.outcome, MessageOutcome::Created { .. })).count();
    assert!((1..4).contains(&created), "expected some but not all bills saved, got {created}");
    assert_eq!(target.inner.bill_count(), created);
    for message in report.messages.iter().skip(created) {
        let MessageOutcome::Failed { retry, reason } = &message.outcome else {
            panic!("{} should have been deferred, got {:?}", message.message_id, message.outcome);
        };
        assert_eq!(*retry, Retry::Later);
        assert_eq!(reason.code, "deadline");
        let record = ledger.get(message.io_id.unwrap()).await.unwrap().unwrap();
        assert_eq!(record.state, LedgerState::Retry, "a deferred sheet must be released");
    }
}

#[tokio::test]
async fn slow_save_cut_off_before_deadline() {
    let ledger = MemoryLedger::new();
    let target = FaultyTarget { inner: MemoryBillTarget::new(), panic_on: None, save_delay: std::time::Duration::from_secs(30) };
    let mapping = mapping();
    let settings = WriterSettings { reserve: Duration::milliseconds(400), ..WriterSettings::default() };
    let writer = Writer { ledger: &ledger, target: &target, mapping: &mapping, settings: &settings, materials: &MaterialCache::default() };
    let deadline = Utc::now() + Duration::milliseconds(1_000);

    let report = writer.process(&inbound(&[sheet(1, "SKU-1")]), deadline).await;

    assert!(Utc::now() < deadline, "a hung save must be cut off before the deadline");
    let MessageOutcome::Failed { retry, .. } = &report.messages[0].outcome else { panic!("{:?}", report.messages[0].outcome) };
    assert_eq!(*retry, Retry::Later);
    assert_eq!(ledger.get(1).await.unwrap().unwrap().state, LedgerState::Retry);
}

/// Builds a sheet with one item per `(sku, counted, difference)`, the difference positive for a
/// gain.
fn sheet_with_items(io_id: i64, items: &[(&str, i64, i64)]) -> CountSheet {
    let template = sheet(io_id, "unused").items.remove(0);
    CountSheet {
        items: items
            .iter()
            .enumerate()
            .map(|(position, (sku, counted, difference))| CountItem {
                ioi_id: Some(position as i64 + 1),
                sku_id: (*sku).into(),
                r_qty: Some((*counted).into()),
                qty: Some((*difference).into()),
                ..template.clone()
            })
            .collect(),
        ..sheet(io_id, "unused")
    }
}

fn gain_loss_harness() -> Harness {
    let mut harness = Harness::new();
    harness.mapping.target = Target::GainLoss;
    harness
}

#[tokio::test]
async fn closed_period_reason_names_dates() {
    let harness = Harness::new();
    harness.target.close_period_through("2026-10-31");
    let report = harness.process(&inbound(&[sheet(1, "SKU-1")])).await;

    assert_eq!(report.failed_message_ids(), vec!["m-1".to_string()]);
    let MessageOutcome::Failed { retry, reason } = &report.messages[0].outcome else { panic!("{:?}", report.messages[0].outcome) };
    assert_eq!(*retry, Retry::Never);
    assert_eq!(reason.code, "period_closed");
    assert!(reason.message_zh.contains("2026-10-08"), "{}", reason.message_zh);
    assert!(reason.message_zh.contains("2026-10-31"), "{}", reason.message_zh);
    assert!(reason.message_en.contains("2026-10-08"), "{}", reason.message_en);
    assert!(reason.message_en.contains("2026-10-31"), "{}", reason.message_en);
    let record = harness.ledger.get(1).await.unwrap().unwrap();
    assert_eq!(record.state, LedgerState::Failed);
    assert_eq!(record.reason.unwrap().code, "period_closed");
    assert_eq!(harness.target.bill_count(), 0);
}

#[tokio::test]
async fn open_period_saves_bill() {
    let harness = Harness::new();
    harness.target.close_period_through("2026-09-30");
    let report = harness.process(&inbound(&[sheet(1, "SKU-1")])).await;

    assert!(report.failed_message_ids().is_empty());
    assert_eq!(harness.target.bill_count(), 1);
}

#[tokio::test]
async fn gain_loss_sheet_two_bills_once() {
    let harness = gain_loss_harness();
    let messages = inbound(&[sheet_with_items(7, &[("SKU-1", 10, 2), ("SKU-2", 0, -3), ("SKU-3", 5, 0)])]);

    let report = harness.process(&messages).await;

    assert!(report.failed_message_ids().is_empty(), "{:?}", report.messages);
    let MessageOutcome::Created { bill } = &report.messages[0].outcome else { panic!("{:?}", report.messages[0].outcome) };
    assert_eq!(bill.number, "JST-7-PY");
    assert_eq!(harness.target.bill_count(), 2);
    assert_eq!(harness.target.save_calls(), 2, "gain and loss bills are different forms, so one BatchSave each");
    assert_eq!(harness.target.bill("JST-7-PY").unwrap()["FBillEntry"][0]["FGainQty"], "2");
    assert_eq!(harness.target.bill("JST-7-PK").unwrap()["FBillEntry"][0]["FLossQty"], "3");
    let record = harness.ledger.get(7).await.unwrap().unwrap();
    assert_eq!(record.state, LedgerState::Done);
    assert_eq!(record.bill.unwrap().number, "JST-7-PY");
    assert_eq!(record.attempts, 1);

    let again = harness.process(&messages).await;

    assert!(matches!(again.messages[0].outcome, MessageOutcome::AlreadyDone { .. }), "{:?}", again.messages[0].outcome);
    assert_eq!(harness.target.bill_count(), 2);
    assert_eq!(harness.target.save_calls(), 2);
    assert_eq!(harness.target.lookups(), 0);
}

#[tokio::test]
async fn gain_loss_batch_groups_by_form() {
    let harness = gain_loss_harness();
    let messages = inbound(&[sheet_with_items(1, &[("SKU-1", 10, 2), ("SKU-2", 0, -3)]), sheet_with_items(2, &[("SKU-3", 4, 1), ("SKU-4", 1, -1)])]);

    let report = harness.process(&messages).await;

    assert!(report.failed_message_ids().is_empty(), "{:?}", report.messages);
    assert_eq!(harness.target.bill_count(), 4);
    assert_eq!(harness.target.save_calls(), 2, "one BatchSave per form for the whole batch");
}

#[tokio::test]
async fn gain_loss_only_gains_one_bill() {
    let harness = gain_loss_harness();
    let report = harness.process(&inbound(&[sheet_with_items(8, &[("SKU-1", 10, 2), ("SKU-2", 4, 0)])])).await;

    assert!(report.failed_message_ids().is_empty(), "{:?}", report.messages);
    assert_eq!(harness.target.bill_count(), 1);
    assert!(harness.target.bill("JST-8-PY").is_some());
    assert!(harness.target.bill("JST-8-PK").is_none());
    let record = harness.ledger.get(8).await.unwrap().unwrap();
    assert_eq!(record.state, LedgerState::Done);
    assert_eq!(record.bill.unwrap().number, "JST-8-PY");
}

#[tokio::test]
async fn gain_loss_no_difference_done_without_bill() {
    let harness = gain_loss_harness();
    let messages = inbound(&[sheet_with_items(9, &[("SKU-1", 10, 0)])]);

    let report = harness.process(&messages).await;

    let MessageOutcome::Created { bill } = &report.messages[0].outcome else { panic!("{:?}", report.messages[0].outcome) };
    assert_eq!(bill.number, "");
    assert_eq!(bill.id, "");
    assert_eq!(harness.target.bill_count(), 0);
    assert_eq!(harness.target.save_calls(), 0);
    let record = harness.ledger.get(9).await.unwrap().unwrap();
    assert_eq!(record.state, LedgerState::Done);
    assert!(!record.content_hash.is_empty(), "an empty hash would hide a later change");

    let again = harness.process(&messages).await;
    assert!(matches!(again.messages[0].outcome, MessageOutcome::AlreadyDone { .. }), "{:?}", again.messages[0].outcome);
}

#[tokio::test]
async fn gain_loss_takeover_saves_missing_bill() {
    let harness = gain_loss_harness();
    let sheet = sheet_with_items(10, &[("SKU-1", 10, 2), ("SKU-2", 0, -3)]);
    let messages = inbound(std::slice::from_ref(&sheet));
    let mapped = map_sheet_with(&sheet, &harness.mapping, &MappingContext::default()).unwrap();
    harness.target.save_bills(&mapped.bills[..1]).await.unwrap();
    let past = Utc::now() - Duration::minutes(1);
    let claim = harness.ledger.claim(10, &sheet_content_hash(&mapped), past, past - Duration::minutes(1)).await.unwrap();
    assert!(matches!(claim, Claim::Acquired { .. }));

    let report = harness.process(&messages).await;

    assert!(matches!(report.messages[0].outcome, MessageOutcome::Created { .. }), "{:?}", report.messages[0].outcome);
    assert_eq!(harness.target.bill_count(), 2);
    assert_eq!(harness.target.lookups(), 2);
    assert_eq!(harness.ledger.get(10).await.unwrap().unwrap().state, LedgerState::Done);
}

#[tokio::test]
async fn gain_loss_one_rejected_fails_sheet() {
    let harness = gain_loss_harness();
    harness.target.reject_material("SKU-BAD");
    let report = harness.process(&inbound(&[sheet_with_items(11, &[("SKU-1", 10, 2), ("SKU-BAD", 0, -3)])])).await;

    assert_eq!(report.failed_message_ids(), vec!["m-11".to_string()]);
    assert_eq!(harness.target.bill_count(), 1, "BatchSave is not atomic, so the gain bill stays");
    let record = harness.ledger.get(11).await.unwrap().unwrap();
    assert_eq!(record.state, LedgerState::Failed);
    assert_eq!(record.reason.unwrap().code, "kingdee_rejected");
}

#[tokio::test]
async fn after_save_runs_per_form() {
    let mut harness = gain_loss_harness();
    harness.mapping.after_save = AfterSave::Audit;
    let messages = inbound(&[sheet_with_items(12, &[("SKU-1", 10, 2), ("SKU-2", 0, -3)])]);

    harness.process(&messages).await;
    harness.process(&messages).await;

    let calls = harness.target.after_save_calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0], ("STK_StockCountGain".to_string(), vec!["JST-12-PY".to_string()], AfterSave::Audit));
    assert_eq!(calls[1], ("STK_StockCountLoss".to_string(), vec!["JST-12-PK".to_string()], AfterSave::Audit));
}

#[tokio::test]
async fn after_save_none_not_called() {
    let harness = Harness::new();
    harness.process(&inbound(&[sheet(1, "SKU-1")])).await;

    assert_eq!(harness.target.bill_count(), 1);
    assert!(harness.target.after_save_calls().is_empty());
}

/// A target whose after-save operation always fails.
struct FailingAfterSave {
    inner: MemoryBillTarget,
}

#[async_trait::async_trait]
impl BillTarget for FailingAfterSave {
    async fn save_bills(&self, bills: &[Bill]) -> Result<Vec<SaveOutcome>, TargetError> {
        self.inner.save_bills(bills).await
    }

    async fn find_bill(&self, form_id: &str, bill_no: &str) -> Result<Option<BillRef>, TargetError> {
        self.inner.find_bill(form_id, bill_no).await
    }

    async fn after_save(&self, _form_id: &str, _numbers: &[String], _action: AfterSave) -> Result<(), TargetError> {
        Err(TargetError { message: "audit rejected".into(), retry: Retry::Never, outcome_unknown: false })
    }
}

#[tokio::test]
async fn after_save_failure_keeps_done() {
    let ledger = MemoryLedger::new();
    let target = FailingAfterSave { inner: MemoryBillTarget::new() };
    let mapping = MappingConfig { after_save: AfterSave::Submit, ..mapping() };
    let settings = WriterSettings::default();
    let writer = Writer { ledger: &ledger, target: &target, mapping: &mapping, settings: &settings, materials: &MaterialCache::default() };

    let report = writer.process(&inbound(&[sheet(1, "SKU-1")]), Utc::now() + Duration::minutes(5)).await;

    assert!(matches!(report.messages[0].outcome, MessageOutcome::Created { .. }), "{:?}", report.messages[0].outcome);
    assert_eq!(ledger.get(1).await.unwrap().unwrap().state, LedgerState::Done);
    assert_eq!(target.inner.bill_count(), 1);
}

#[tokio::test]
async fn kingdee_lookup_maps_materials() {
    let mut harness = Harness::new();
    harness.mapping.materials.source = MaterialSource::KingdeeLookup;
    harness.target.add_material("SKU-1", "M-001");
    harness.target.add_material("SKU-2", "M-002");
    let messages = inbound(&[sheet(1, "SKU-1"), sheet(2, "SKU-2"), sheet(3, "SKU-1")]);

    let report = harness.process(&messages).await;

    assert!(report.failed_message_ids().is_empty(), "{:?}", report.messages);
    assert_eq!(harness.target.bill("JST-1").unwrap()["FBillEntry"][0]["FMaterialId"]["FNumber"], "M-001");
    assert_eq!(harness.target.bill("JST-2").unwrap()["FBillEntry"][0]["FMaterialId"]["FNumber"], "M-002");
    assert_eq!(harness.target.bill("JST-3").unwrap()["FBillEntry"][0]["FMaterialId"]["FNumber"], "M-001");
    let lookups = harness.target.material_lookups();
    assert_eq!(lookups, vec![vec!["SKU-1".to_string()], vec!["SKU-2".to_string()]], "a cached SKU is not asked for again");
}

#[tokio::test]
async fn material_cache_outlives_batch() {
    let mut harness = Harness::new();
    harness.mapping.materials.source = MaterialSource::KingdeeLookup;
    harness.target.add_material("SKU-1", "M-001");

    harness.process(&inbound(&[sheet(1, "SKU-1")])).await;
    let report = harness.process(&inbound(&[sheet(2, "SKU-1")])).await;

    assert!(report.failed_message_ids().is_empty(), "{:?}", report.messages);
    assert_eq!(harness.target.bill("JST-2").unwrap()["FBillEntry"][0]["FMaterialId"]["FNumber"], "M-001");
    assert_eq!(harness.target.material_lookups().len(), 1, "the second batch finds SKU-1 in the process cache");
    assert_eq!(harness.materials.len(), 1);
}

#[tokio::test]
async fn kingdee_lookup_unknown_sku_fails() {
    let mut harness = Harness::new();
    harness.mapping.materials.source = MaterialSource::KingdeeLookup;
    let report = harness.process(&inbound(&[sheet(1, "SKU-NEW")])).await;

    assert_eq!(report.failed_message_ids(), vec!["m-1".to_string()]);
    let record = harness.ledger.get(1).await.unwrap().unwrap();
    assert_eq!(record.state, LedgerState::Failed);
    assert_eq!(record.reason.unwrap().code, "unknown_material");
    assert_eq!(harness.target.bill_count(), 0);
    assert_eq!(harness.target.save_calls(), 0);
}

#[tokio::test]
async fn target_without_lookup_reports_missing() {
    let ledger = MemoryLedger::new();
    let target = FailingAfterSave { inner: MemoryBillTarget::new() };
    let mut mapping = mapping();
    mapping.materials.source = MaterialSource::KingdeeLookup;
    let settings = WriterSettings::default();
    let writer = Writer { ledger: &ledger, target: &target, mapping: &mapping, settings: &settings, materials: &MaterialCache::default() };

    writer.process(&inbound(&[sheet(1, "SKU-1")]), Utc::now() + Duration::minutes(5)).await;

    let record = ledger.get(1).await.unwrap().unwrap();
    assert_eq!(record.state, LedgerState::Failed);
    let reason = record.reason.unwrap();
    assert_eq!(reason.code, "mapping_failed", "the missing lookup also leaves the material unknown");
    assert!(reason.message_en.contains("needs the materials looked up in Kingdee first"), "{}", reason.message_en);
    assert_eq!(target.inner.bill_count(), 0);
}
