use super::*;
use crate::mapping::WarehouseMapping;
use crate::memory::{MemoryBillTarget, MemoryLedger};
use crate::ports::{IdempotencyLedger, LedgerState};
use crate::sheet::{CountItem, CountSheet};
use chrono::NaiveDate;

fn mapping() -> MappingConfig {
    MappingConfig {
        stock_org: "100".into(),
        warehouses: vec![WarehouseMapping { wms_co_id: 0, wh_id: 1, stock: "CK001".into() }],
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
}

impl Harness {
    fn new() -> Self {
        Self { ledger: MemoryLedger::new(), target: MemoryBillTarget::new(), mapping: mapping(), settings: WriterSettings::default() }
    }

    async fn process(&self, messages: &[InboundMessage]) -> WriteReport {
        let writer = Writer { ledger: &self.ledger, target: &self.target, mapping: &self.mapping, settings: &self.settings };
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
