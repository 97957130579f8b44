use super::*;
use crate::sheet::{CountItem, CountSheet, SheetBatch};
use chrono::NaiveDate;
use rust_decimal_macros_free::dec;

mod rust_decimal_macros_free {
    /// Parses a decimal literal written as a string, for readable tests.
    macro_rules! dec {
        ($text:literal) => {
            $text.parse::<rust_decimal::Decimal>().unwrap()
        };
    }
    pub(crate) use dec;
}

fn config() -> MappingConfig {
    MappingConfig {
        stock_org: "100".into(),
        warehouses: vec![
            WarehouseMapping { wms_co_id: 0, wh_id: 1, stock: "CK001".into() },
            WarehouseMapping { wms_co_id: 10001, wh_id: 1, stock: "CK101".into() },
        ],
        ..MappingConfig::default()
    }
}

fn item(sku: &str, r_qty: &str, qty: &str) -> CountItem {
    CountItem {
        ioi_id: Some(7),
        sku_id: sku.into(),
        i_id: None,
        name: None,
        properties_value: None,
        r_qty: Some(r_qty.parse().unwrap()),
        qty: Some(qty.parse().unwrap()),
        batch_id: None,
        product_date: None,
        supplier_id: None,
        expiration_date: None,
    }
}

fn sheet(items: Vec<CountItem>) -> CountSheet {
    CountSheet {
        io_id: 123,
        io_date: NaiveDate::from_ymd_opt(2024, 3, 1).unwrap().and_hms_opt(0, 30, 0),
        status: "Confirmed".into(),
        warehouse: Some("主仓".into()),
        wh_id: Some(1),
        wms_co_id: Some(10001),
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

fn batch(sku: &str, lot: &str, qty: &str) -> SheetBatch {
    SheetBatch {
        sku_id: sku.into(),
        batch_no: lot.into(),
        qty: Some(qty.parse().unwrap()),
        product_date: NaiveDate::from_ymd_opt(2024, 1, 2),
        supplier_id: None,
        supplier_name: None,
        expiration_date: NaiveDate::from_ymd_opt(2025, 1, 2),
    }
}

#[test]
fn header_fields() {
    let bill = map_sheet(&sheet(vec![item("SKU-1", "10", "2")]), &config()).unwrap();
    let model = &bill.model;
    assert_eq!(bill.bill_no, "JST-123");
    assert_eq!(model["FBillNo"], "JST-123");
    assert_eq!(model["FDate"], "2024-03-01");
    assert_eq!(model["FBillTypeID"]["FNUMBER"], "WLPDZY01_SYS");
    assert_eq!(model["FStockOrgId"]["FNumber"], "100");
    assert_eq!(model["FNoteHead"], "聚水潭盘点单 123 主仓");
    assert_eq!(bill.entry_count, 1);
}

#[test]
fn gain_quantities() {
    let bill = map_sheet(&sheet(vec![item("SKU-1", "10.50", "2.25")]), &config()).unwrap();
    let entry = &bill.model["FBillEntry"][0];
    assert_eq!(entry["FMaterialId"]["FNumber"], "SKU-1");
    assert_eq!(entry["FStockId"]["FNumber"], "CK101");
    assert_eq!(entry["FCountQty"], "10.5");
    assert_eq!(entry["FAcctQty"], "8.25");
    assert_eq!(entry["FGainQty"], "2.25");
    assert_eq!(entry["FLossQty"], "0");
    assert_eq!(entry["FOwnerId"]["FNumber"], "100");
    assert_eq!(entry["FStockStatusId"]["FNumber"], "KCZT01_SYS");
}

#[test]
fn loss_and_zero_count_kept() {
    let bill = map_sheet(&sheet(vec![item("SKU-1", "0", "-3")]), &config()).unwrap();
    let entry = &bill.model["FBillEntry"][0];
    assert_eq!(entry["FCountQty"], "0");
    assert_eq!(entry["FAcctQty"], "3");
    assert_eq!(entry["FGainQty"], "0");
    assert_eq!(entry["FLossQty"], "3");
}

#[test]
fn loss_positive_convention() {
    let mapping = MappingConfig { qty_sign: QtySign::LossPositive, ..config() };
    let bill = map_sheet(&sheet(vec![item("SKU-1", "5", "3")]), &mapping).unwrap();
    let entry = &bill.model["FBillEntry"][0];
    assert_eq!(entry["FAcctQty"], "8");
    assert_eq!(entry["FLossQty"], "3");
}

#[test]
fn sheet_level_batches_expand() {
    let mut input = sheet(vec![item("SKU-1", "10", "-2"), item("SKU-2", "4", "0")]);
    input.batchs = vec![batch("SKU-1", "L1", "6"), batch("SKU-1", "L2", "4")];
    let bill = map_sheet(&input, &config()).unwrap();
    let entries = bill.model["FBillEntry"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["FLot"]["FNumber"], "L1");
    assert_eq!(entries[0]["FCountQty"], "6");
    assert_eq!(entries[0]["FAcctQty"], "8");
    assert_eq!(entries[0]["FLossQty"], "2");
    assert_eq!(entries[0]["FProduceDate"], "2024-01-02");
    assert_eq!(entries[0]["FExpiryDate"], "2025-01-02");
    assert_eq!(entries[1]["FLot"]["FNumber"], "L2");
    assert_eq!(entries[1]["FCountQty"], "4");
    assert_eq!(entries[1]["FAcctQty"], "4");
    assert!(entries[2].get("FLot").is_none());
}

#[test]
fn item_level_batch_used() {
    let mut line = item("SKU-1", "3", "1");
    line.batch_id = Some("B-9".into());
    line.expiration_date = NaiveDate::from_ymd_opt(2026, 5, 1);
    let bill = map_sheet(&sheet(vec![line]), &config()).unwrap();
    let entry = &bill.model["FBillEntry"][0];
    assert_eq!(entry["FLot"]["FNumber"], "B-9");
    assert_eq!(entry["FExpiryDate"], "2026-05-01");
}

#[test]
fn batch_total_mismatch_rejected() {
    let mut input = sheet(vec![item("SKU-1", "10", "0")]);
    input.batchs = vec![batch("SKU-1", "L1", "6")];
    let error = map_sheet(&input, &config()).unwrap_err();
    assert_eq!(error.problems.len(), 1);
    assert_eq!(error.problems[0].code, "batch_quantity_mismatch");
}

#[test]
fn unknown_warehouse_named() {
    let mut input = sheet(vec![item("SKU-1", "1", "0")]);
    input.wh_id = Some(4);
    let error = map_sheet(&input, &config()).unwrap_err();
    assert_eq!(error.problems[0].code, "unknown_warehouse");
    assert!(error.problems[0].message_en.contains("wh_id=4"));
    assert!(error.problems[0].message_zh.contains("仓库对照表"));
}

#[test]
fn every_problem_reported() {
    let mut input = sheet(vec![]);
    input.status = "WaitConfirm".into();
    input.io_date = None;
    input.wh_id = Some(9);
    let error = map_sheet(&input, &config()).unwrap_err();
    let codes: Vec<_> = error.problems.iter().map(|problem| problem.code).collect();
    assert_eq!(codes, ["not_confirmed", "missing_io_date", "unknown_warehouse", "no_items"]);
}

#[test]
fn hash_is_stable() {
    let input = sheet(vec![item("SKU-1", "10", "2")]);
    let first = map_sheet(&input, &config()).unwrap();
    let second = map_sheet(&input, &config()).unwrap();
    assert_eq!(first.content_hash, second.content_hash);
    let changed = map_sheet(&sheet(vec![item("SKU-1", "11", "2")]), &config()).unwrap();
    assert_ne!(first.content_hash, changed.content_hash);
}

#[test]
fn config_validation_names_key() {
    let missing_org = MappingConfig { stock_org: String::new(), ..config() };
    assert_eq!(missing_org.validate().unwrap_err().key, "mapping.stock_org");

    let no_warehouses = MappingConfig { warehouses: vec![], ..config() };
    assert_eq!(no_warehouses.validate().unwrap_err().key, "mapping.warehouses");

    let mut duplicated = config();
    duplicated.warehouses.push(WarehouseMapping { wms_co_id: 0, wh_id: 1, stock: "X".into() });
    assert_eq!(duplicated.validate().unwrap_err().key, "mapping.warehouses[2]");

    let bad_prefix = MappingConfig { bill_no_prefix: "JST 盘".into(), ..config() };
    assert_eq!(bad_prefix.validate().unwrap_err().key, "mapping.bill_no_prefix");

    assert!(config().validate().is_ok());
}

#[test]
fn decimal_exact() {
    assert_eq!(decimal_text(dec!("0.1") + dec!("0.2")), "0.3");
    assert_eq!(decimal_text(dec!("100.000")), "100");
}
