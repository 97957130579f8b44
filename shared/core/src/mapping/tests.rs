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
            WarehouseMapping { wms_co_id: 0, wh_id: 1, stock: "CK001".into(), stock_location: None },
            WarehouseMapping { wms_co_id: 10001, wh_id: 1, stock: "CK101".into(), stock_location: None },
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
    duplicated.warehouses.push(WarehouseMapping { wms_co_id: 0, wh_id: 1, stock: "X".into(), stock_location: None });
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

fn mapped(input: &CountSheet, mapping: &MappingConfig) -> MappedSheet {
    map_sheet_with(input, mapping, &MappingContext::default()).unwrap()
}

#[test]
fn bill_no_template_used() {
    let mapping = MappingConfig { bill_no_template: Some("PD_{io_id}_JST".into()), ..config() };
    let bill = map_sheet(&sheet(vec![item("SKU-1", "1", "0")]), &mapping).unwrap();
    assert_eq!(bill.bill_no, "PD_123_JST");
    assert_eq!(bill.model["FBillNo"], "PD_123_JST");
}

#[test]
fn bill_no_template_validated() {
    let without_id = MappingConfig { bill_no_template: Some("JST-".into()), ..config() };
    assert_eq!(without_id.validate().unwrap_err().key, "mapping.bill_no_template");
    let bad_text = MappingConfig { bill_no_template: Some("盘点 {io_id}".into()), ..config() };
    assert_eq!(bad_text.validate().unwrap_err().key, "mapping.bill_no_template");
}

#[test]
fn date_from_modified() {
    let mut input = sheet(vec![item("SKU-1", "1", "0")]);
    input.modified = NaiveDate::from_ymd_opt(2024, 3, 2).unwrap().and_hms_opt(23, 59, 59);
    let mapping = MappingConfig { date_source: DateSource::Modified, ..config() };
    assert_eq!(map_sheet(&input, &mapping).unwrap().model["FDate"], "2024-03-02");
    input.modified = None;
    let error = map_sheet(&input, &mapping).unwrap_err();
    assert_eq!(error.problems[0].code, "missing_modified");
}

#[test]
fn stock_location_flex_field() {
    let mut mapping = config();
    mapping.warehouses[1].stock_location = Some(StockLocation { key: "FSTOCKLOCID__FF100001".into(), value: "A-01".into() });
    let bill = map_sheet(&sheet(vec![item("SKU-1", "1", "0")]), &mapping).unwrap();
    assert_eq!(bill.model["FBillEntry"][0]["FStockLocId"], serde_json::json!({"FSTOCKLOCID__FF100001": {"FNumber": "A-01"}}));
}

#[test]
fn stock_location_key_validated() {
    let mut mapping = config();
    mapping.warehouses[1].stock_location = Some(StockLocation { key: "库位".into(), value: "A-01".into() });
    assert_eq!(mapping.validate().unwrap_err().key, "mapping.warehouses[1].stock_location.key");
}

#[test]
fn platform_fields_opt_in() {
    let plain = map_sheet(&sheet(vec![item("SKU-1", "1", "0")]), &config()).unwrap();
    for key in ["FZeroStockInCount", "FAllowAddMaterial", "FUpdateStock", "FFinDate"] {
        assert!(plain.model.get(key).is_none(), "{key} sent without being configured");
    }
    let mapping = MappingConfig { zero_stock_in_count: Some(false), allow_add_material: Some(true), update_stock: Some(true), fin_date: true, ..config() };
    let bill = map_sheet(&sheet(vec![item("SKU-1", "1", "0")]), &mapping).unwrap();
    assert_eq!(bill.model["FZeroStockInCount"], false);
    assert_eq!(bill.model["FAllowAddMaterial"], true);
    assert_eq!(bill.model["FUpdateStock"], true);
    assert_eq!(bill.model["FFinDate"], "2024-03-01");
}

fn table_config(rows: &str) -> (MappingConfig, tempfile_path::TempCsv) {
    let file = tempfile_path::TempCsv::new(rows);
    let mut mapping = config();
    mapping.materials.source = MaterialSource::Table;
    mapping.materials.file = Some(file.path.clone());
    (mapping, file)
}

mod tempfile_path {
    use std::path::PathBuf;

    /// A CSV file under the system temporary directory, removed on drop.
    pub struct TempCsv {
        pub path: PathBuf,
    }

    impl TempCsv {
        pub fn new(text: &str) -> Self {
            let path = std::env::temp_dir().join(format!("countsync-materials-{}.csv", uuid::Uuid::new_v4()));
            std::fs::write(&path, text).unwrap();
            Self { path }
        }
    }

    impl Drop for TempCsv {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[test]
fn material_table_maps_codes() {
    let (mapping, _file) = table_config("sku_id,material\nSKU-1,MAT-001\nSKU-2,MAT-002\n");
    mapping.validate().unwrap();
    let bill = map_sheet(&sheet(vec![item("SKU-2", "1", "0")]), &mapping).unwrap();
    assert_eq!(bill.model["FBillEntry"][0]["FMaterialId"]["FNumber"], "MAT-002");
}

#[test]
fn material_table_strict_names_every_code() {
    let (mapping, _file) = table_config("sku_id,material\nSKU-1,MAT-001\n");
    let error = map_sheet(&sheet(vec![item("SKU-9", "1", "0"), item("SKU-1", "1", "0"), item("SKU-8", "2", "0")]), &mapping).unwrap_err();
    let codes: Vec<_> = error.problems.iter().map(|problem| problem.code).collect();
    assert_eq!(codes, ["unknown_material", "unknown_material"]);
    assert!(error.problems[0].message_en.contains("SKU-8"));
    assert!(error.problems[1].message_en.contains("SKU-9"));
}

#[test]
fn material_table_drop_line_reports() {
    let (mut mapping, _file) = table_config("sku_id,material\nSKU-1,MAT-001\n");
    mapping.unknown_codes = UnknownCodes::DropLine;
    let result = mapped(&sheet(vec![item("SKU-9", "0", "-1"), item("SKU-1", "0", "0")]), &mapping);
    let entries = result.bills[0].model["FBillEntry"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["FCountQty"], "0");
    assert_eq!(result.report.dropped.len(), 1);
    assert_eq!(result.report.dropped[0].sku_id, "SKU-9");
    assert_eq!(result.report.dropped[0].code, "unknown_material");
}

#[test]
fn material_table_errors_name_line() {
    let (mapping, _file) = table_config("sku_id,material\nSKU-1,MAT-001\nSKU-1,MAT-002\n");
    let error = mapping.validate().unwrap_err();
    assert_eq!(error.key, "mapping.materials.file");
    assert!(error.message.contains("line 3"), "{}", error.message);

    let (mapping, _file) = table_config("sku,code\nSKU-1,MAT-001\n");
    let error = mapping.validate().unwrap_err();
    assert!(error.message.contains("line 2"), "{}", error.message);

    let mut missing = config();
    missing.materials.source = MaterialSource::Table;
    assert_eq!(missing.validate().unwrap_err().key, "mapping.materials.file");
}

#[test]
fn unknown_warehouse_drop_line_fails_listing_lines() {
    let mut input = sheet(vec![item("SKU-1", "1", "0"), item("SKU-2", "2", "0")]);
    input.wh_id = Some(4);
    let mapping = MappingConfig { unknown_codes: UnknownCodes::DropLine, ..config() };
    let error = map_sheet_with(&input, &mapping, &MappingContext::default()).unwrap_err();
    assert_eq!(error.problems.len(), 1);
    assert_eq!(error.problems[0].code, "no_lines_left");
    assert!(error.problems[0].message_en.contains("SKU-1"));
    assert!(error.problems[0].message_en.contains("SKU-2"));
}

#[test]
fn units_and_precision_reject() {
    let mut mapping = config();
    mapping.units.default = Some("Pcs".into());
    mapping.units.materials.insert("SKU-2".into(), "kg".into());
    mapping.units.precision.insert("Pcs".into(), 0);
    mapping.units.precision.insert("kg".into(), 3);
    let bill = map_sheet(&sheet(vec![item("SKU-1", "3", "1"), item("SKU-2", "1.125", "0.5")]), &mapping).unwrap();
    assert_eq!(bill.model["FBillEntry"][0]["FUnitID"]["FNumber"], "Pcs");
    assert_eq!(bill.model["FBillEntry"][0]["FBaseUnitId"]["FNumber"], "Pcs");
    assert_eq!(bill.model["FBillEntry"][1]["FUnitID"]["FNumber"], "kg");

    let error = map_sheet(&sheet(vec![item("SKU-1", "2.5", "0")]), &mapping).unwrap_err();
    assert_eq!(error.problems[0].code, "precision_exceeded");
    assert!(error.problems[0].message_en.contains("SKU-1"));
}

#[test]
fn rounding_half_even_reported() {
    let mut mapping = config();
    mapping.units.default = Some("Pcs".into());
    mapping.units.precision.insert("Pcs".into(), 0);
    mapping.units.rounding = Rounding::RoundHalfEven;
    let result = mapped(&sheet(vec![item("SKU-1", "2.5", "0.5"), item("SKU-2", "4", "1")]), &mapping);
    let entry = &result.bills[0].model["FBillEntry"][0];
    assert_eq!(entry["FCountQty"], "2");
    assert_eq!(entry["FGainQty"], "0");
    assert_eq!(result.report.rounded.len(), 1);
    assert_eq!(result.report.rounded[0].count_qty_from, "2.5");
    assert_eq!(result.report.rounded[0].count_qty_to, "2");
}

#[test]
fn lot_source_item_ignores_sheet_batches() {
    let mut input = sheet(vec![item("SKU-1", "10", "0")]);
    input.batchs = vec![batch("SKU-1", "L1", "4"), batch("SKU-1", "L2", "6")];
    let mapping = MappingConfig { lots: LotsConfig { source: LotSource::Item, ..LotsConfig::default() }, ..config() };
    let bill = map_sheet(&input, &mapping).unwrap();
    assert_eq!(bill.entry_count, 1);
    assert!(bill.model["FBillEntry"][0].get("FLot").is_none());
}

#[test]
fn lot_allocation_in_order() {
    let mut input = sheet(vec![item("SKU-1", "10", "5")]);
    input.batchs = vec![batch("SKU-1", "L1", "2"), batch("SKU-1", "L2", "8")];
    let first = map_sheet(&input, &config()).unwrap();
    assert_eq!(first.model["FBillEntry"][0]["FAcctQty"], "-3");

    let mapping = MappingConfig { lots: LotsConfig { allocation: LotAllocation::InOrder, ..LotsConfig::default() }, ..config() };
    let bill = map_sheet(&input, &mapping).unwrap();
    let entries = bill.model["FBillEntry"].as_array().unwrap();
    assert_eq!(entries[0]["FGainQty"], "2");
    assert_eq!(entries[0]["FAcctQty"], "0");
    assert_eq!(entries[1]["FGainQty"], "3");
    assert_eq!(entries[1]["FAcctQty"], "5");
}

#[test]
fn gain_loss_splits_by_sign() {
    let mapping = MappingConfig { target: Target::GainLoss, ..config() };
    let result = mapped(&sheet(vec![item("SKU-1", "10", "2"), item("SKU-2", "0", "-3"), item("SKU-3", "5", "0")]), &mapping);
    assert_eq!(result.bills.len(), 2);
    let (gain, loss) = (&result.bills[0], &result.bills[1]);
    assert_eq!(gain.form_id, "STK_StockCountGain");
    assert_eq!(gain.bill_no, "JST-123-PY");
    assert_eq!(gain.model["FBillTypeID"]["FNUMBER"], "PY01_SYS");
    assert_eq!(gain.model["FBillEntry"][0]["FGainQty"], "2");
    assert!(gain.model["FBillEntry"][0].get("FLossQty").is_none());
    assert_eq!(loss.form_id, "STK_StockCountLoss");
    assert_eq!(loss.bill_no, "JST-123-PK");
    assert_eq!(loss.model["FBillEntry"][0]["FLossQty"], "3");
    assert_eq!(result.report.dropped.len(), 1);
    assert_eq!(result.report.dropped[0].code, "no_difference");
}

#[test]
fn gain_loss_only_gains() {
    let mapping = MappingConfig { target: Target::GainLoss, ..config() };
    let bills = map_sheet_bills(&sheet(vec![item("SKU-1", "10", "2")]), &mapping).unwrap();
    assert_eq!(bills.len(), 1);
    assert_eq!(bills[0].bill_no, "JST-123-PY");
    let error = map_sheet(&sheet(vec![item("SKU-1", "10", "2")]), &mapping).unwrap_err();
    assert_eq!(error.problems[0].code, "target_needs_map_sheet_bills");
}

fn existing_bill(status: &str) -> ExistingCountBill {
    ExistingCountBill {
        fid: 5001,
        bill_no: "WLPDZY000123".into(),
        scheme_no: "PDFA0001".into(),
        document_status: status.into(),
        rows: vec![
            ExistingRow { entry_id: 11, material: "SKU-1".into(), stock: "CK101".into(), lot: String::new(), owner: "100".into(), is_system: true, count_qty: None },
            ExistingRow { entry_id: 12, material: "SKU-2".into(), stock: "CK101".into(), lot: "L1".into(), owner: "100".into(), is_system: true, count_qty: None },
        ],
    }
}

#[test]
fn writeback_matches_rows() {
    let mapping = MappingConfig { target: Target::SchemeWriteback, scheme: SchemeConfig { number: "PDFA0001".into(), ..SchemeConfig::default() }, ..config() };
    mapping.validate().unwrap();
    let mut lot_item = item("SKU-2", "7", "1");
    lot_item.batch_id = Some("L1".into());
    let input = sheet(vec![item("SKU-1", "4", "0"), lot_item, item("SKU-5", "0", "-2")]);
    let context = MappingContext { existing: Some(existing_bill("A")), ..MappingContext::default() };
    let result = map_sheet_with(&input, &mapping, &context).unwrap();
    let bill = &result.bills[0];
    assert_eq!(bill.bill_no, "WLPDZY000123");
    assert_eq!(bill.model["FID"], 5001);
    assert!(bill.model.get("FBillNo").is_none());
    let entries = bill.model["FBillEntry"].as_array().unwrap();
    assert_eq!(entries[0], serde_json::json!({"FEntryID": 11, "FCountQty": "4"}));
    assert_eq!(entries[1], serde_json::json!({"FEntryID": 12, "FCountQty": "7"}));
    assert_eq!(entries[2]["FEntryID"], 0);
    assert_eq!(entries[2]["FMaterialId"]["FNumber"], "SKU-5");
    assert_eq!(entries[2]["FCountQty"], "0");
}

#[test]
fn writeback_refuses_audited_bill() {
    let mapping = MappingConfig { target: Target::SchemeWriteback, scheme: SchemeConfig { number: "PDFA0001".into(), ..SchemeConfig::default() }, ..config() };
    let context = MappingContext { existing: Some(existing_bill("C")), ..MappingContext::default() };
    let error = map_sheet_with(&sheet(vec![item("SKU-1", "4", "0")]), &mapping, &context).unwrap_err();
    assert_eq!(error.problems[0].code, "scheme_bill_not_editable");
    let error = map_sheet_with(&sheet(vec![item("SKU-1", "4", "0")]), &mapping, &MappingContext::default()).unwrap_err();
    assert_eq!(error.problems[0].code, "scheme_bill_not_found");
}

#[test]
fn scheme_number_from_label_and_remark() {
    let mut input = sheet(vec![]);
    input.labels = vec!["急".into(), "PDFA:PD0007".into()];
    input.remark = Some("方案 PDFA:PD0009 第二次".into());
    let mut mapping = config();
    mapping.scheme.source = SchemeSource::Label;
    assert_eq!(lookup::scheme_no(&input, &mapping).as_deref(), Some("PD0007"));
    mapping.scheme.source = SchemeSource::Remark;
    assert_eq!(lookup::scheme_no(&input, &mapping).as_deref(), Some("PD0009"));
    mapping.scheme.source = SchemeSource::Fixed;
    assert_eq!(lookup::scheme_no(&input, &mapping), None);
}

#[test]
fn writeback_config_validated() {
    let mapping = MappingConfig { target: Target::SchemeWriteback, ..config() };
    assert_eq!(mapping.validate().unwrap_err().key, "mapping.scheme.number");
    let mapping = MappingConfig { profile: Some("mine".into()), ..config() };
    assert_eq!(mapping.validate().unwrap_err().key, "mapping.profile");
}

#[test]
fn default_profile_equals_defaults() {
    #[derive(serde::Deserialize)]
    struct File {
        mapping: MappingConfig,
    }
    let parsed: File = toml::from_str(DEFAULT_PROFILE_TOML).unwrap();
    let expected = MappingConfig {
        profile: Some("default".into()),
        bill_no_template: Some("JST-{io_id}".into()),
        stock_org: "100".into(),
        warehouses: vec![WarehouseMapping { wms_co_id: 0, wh_id: 1, stock: "CK001".into(), stock_location: None }],
        ..MappingConfig::default()
    };
    assert_eq!(parsed.mapping, expected);
    assert_eq!(parsed.mapping.bill_no(7), MappingConfig::default().bill_no(7));
    parsed.mapping.validate().unwrap();
}

#[test]
fn unknown_key_rejected() {
    let error = toml::from_str::<MappingConfig>("stock_org = \"100\"\nbill_no_prefx = \"X\"\n").unwrap_err();
    assert!(error.to_string().contains("bill_no_prefx"), "{error}");
}

#[test]
fn period_closed_reason_names_date() {
    let bill = map_sheet(&sheet(vec![item("SKU-1", "1", "0")]), &config()).unwrap();
    let reason = period::period_closed_reason(&bill, "单据日期 2024-03-01 早于或等于库存组织 100 的关账日期 2024-03-31，不允许保存").unwrap();
    assert_eq!(reason.code, "period_closed");
    assert!(reason.message_en.contains("2024-03-01"));
    assert!(reason.message_en.contains("2024-03-31"), "{}", reason.message_en);
    assert!(period::period_closed_reason(&bill, "物料不存在").is_none());
}

#[tokio::test]
async fn material_lookup_cached() {
    use std::collections::{BTreeSet, HashMap};
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Table(AtomicUsize);
    #[async_trait::async_trait]
    impl lookup::MaterialLookup for Table {
        async fn find_materials(&self, field: &str, values: &[String]) -> Result<HashMap<String, String>, lookup::LookupError> {
            assert_eq!(field, "FOldNumber");
            self.0.fetch_add(values.len(), Ordering::SeqCst);
            Ok(values.iter().filter(|sku| sku.as_str() != "SKU-X").map(|sku| (sku.clone(), format!("M-{sku}"))).collect())
        }
    }
    let cached = lookup::CachedMaterialLookup::new(Table(AtomicUsize::new(0)));
    let skus: BTreeSet<String> = ["SKU-1".to_string(), "SKU-X".to_string()].into();
    let first = cached.resolve("FOldNumber", &skus).await.unwrap();
    let second = cached.resolve("FOldNumber", &skus).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(first.get("SKU-1").map(String::as_str), Some("M-SKU-1"));
    assert!(!first.contains_key("SKU-X"));
    assert_eq!(cached.cached(), 2);

    let mut mapping = config();
    mapping.materials.source = MaterialSource::KingdeeLookup;
    mapping.materials.lookup_field = "FOldNumber".into();
    let input = sheet(vec![item("SKU-1", "1", "0"), item("SKU-X", "1", "0")]);
    let context = lookup::prepare_context(&input, &mapping, Some(&cached), None).await.unwrap();
    let error = map_sheet_with(&input, &mapping, &context).unwrap_err();
    assert_eq!(error.problems[0].code, "unknown_material");
    assert!(error.problems[0].message_en.contains("SKU-X"));
}

mod properties {
    use std::collections::{BTreeMap, HashSet};

    use proptest::prelude::*;

    use super::*;

    /// One generated item: SKU index, counted, delta (hundredths), optional item lot, and the
    /// sheet-level lot split of its counted quantity.
    /// SKU index, counted and delta in hundredths, item lot, sheet-level lot split.
    type RawItem = (usize, i64, i64, Option<u8>, Vec<i64>);

    fn arb_item() -> impl Strategy<Value = RawItem> {
        (0usize..6, 0i64..5000, -3000i64..3000, proptest::option::of(0u8..3), proptest::collection::vec(0i64..2000, 0..3))
    }

    fn build(raw: Vec<RawItem>) -> CountSheet {
        let mut items = Vec::new();
        let mut batchs = Vec::new();
        let mut used_skus = HashSet::new();
        for (index, (sku_index, counted, delta, item_lot, split)) in raw.into_iter().enumerate() {
            let sku = format!("SKU-{sku_index}");
            let first_of_sku = used_skus.insert(sku.clone());
            let mut line = item(&sku, "0", "0");
            line.ioi_id = Some(index as i64 + 1);
            line.qty = Some(Decimal::new(delta, 2));
            // Sheet-level lots only for the first item of a SKU without an item lot, so the sheet stays valid.
            if first_of_sku && item_lot.is_none() && !split.is_empty() {
                let total: i64 = split.iter().sum();
                line.r_qty = Some(Decimal::new(total, 2));
                for (lot, qty) in split.iter().enumerate() {
                    batchs.push(SheetBatch { qty: Some(Decimal::new(*qty, 2)), ..batch(&sku, &format!("S{lot}"), "0") });
                }
            } else {
                line.r_qty = Some(Decimal::new(counted, 2));
                line.batch_id = item_lot.map(|lot| format!("I{lot}"));
            }
            items.push(line);
        }
        // A SKU with sheet-level lots must have exactly one item line.
        let lot_skus: HashSet<String> = batchs.iter().map(|batch| batch.sku_id.clone()).collect();
        let mut seen = HashSet::new();
        items.retain(|line| !lot_skus.contains(&line.sku_id) || seen.insert(line.sku_id.clone()));
        let mut built = sheet(items);
        built.batchs = batchs;
        built
    }

    fn source_totals(input: &CountSheet) -> BTreeMap<(String, String), Decimal> {
        let mut totals = BTreeMap::new();
        for line in &input.items {
            let lots: Vec<&SheetBatch> = input.batchs.iter().filter(|batch| batch.sku_id == line.sku_id).collect();
            if line.batch_id.is_none() && !lots.is_empty() {
                for lot in lots {
                    *totals.entry((line.sku_id.clone(), lot.batch_no.clone())).or_default() += lot.qty.unwrap();
                }
            } else {
                *totals.entry((line.sku_id.clone(), line.batch_id.clone().unwrap_or_default())).or_default() += line.r_qty.unwrap();
            }
        }
        totals
    }

    fn bill_totals(bills: &[Bill]) -> BTreeMap<(String, String), Decimal> {
        let mut totals = BTreeMap::new();
        for bill in bills {
            for entry in bill.model["FBillEntry"].as_array().unwrap() {
                let sku = entry["FMaterialId"]["FNumber"].as_str().unwrap().to_string();
                let lot = entry.get("FLot").map(|lot| lot["FNumber"].as_str().unwrap().to_string()).unwrap_or_default();
                let counted: Decimal = entry["FCountQty"].as_str().unwrap().parse().unwrap();
                *totals.entry((sku, lot)).or_default() += counted;
            }
        }
        totals
    }

    proptest! {
        #[test]
        fn count_input_preserves_quantities(raw in proptest::collection::vec(arb_item(), 1..12)) {
            let input = build(raw);
            let result = mapped(&input, &config());
            prop_assert_eq!(bill_totals(&result.bills), source_totals(&input));
            let delta_in: Decimal = input.items.iter().map(|line| line.qty.unwrap()).sum();
            let delta_out: Decimal = result.bills[0].model["FBillEntry"].as_array().unwrap().iter()
                .map(|entry| entry["FGainQty"].as_str().unwrap().parse::<Decimal>().unwrap() - entry["FLossQty"].as_str().unwrap().parse::<Decimal>().unwrap())
                .sum();
            prop_assert_eq!(delta_in, delta_out);
        }

        #[test]
        fn every_line_placed_or_dropped_once(raw in proptest::collection::vec(arb_item(), 1..12), gain_loss in any::<bool>(), drop_sku in 0usize..6) {
            let input = build(raw);
            let (mut mapping, _file) = table_config(&(0..6).filter(|index| *index != drop_sku).map(|index| format!("SKU-{index},SKU-{index}\n")).fold("sku_id,material\n".to_string(), |text, row| text + &row));
            mapping.unknown_codes = UnknownCodes::DropLine;
            mapping.lots.allocation = LotAllocation::InOrder;
            if gain_loss {
                mapping.target = Target::GainLoss;
            }
            let dropped_sku = format!("SKU-{drop_sku}");
            let Ok(result) = map_sheet_with(&input, &mapping, &MappingContext::default()) else {
                // Only a sheet whose every line was dropped may fail.
                prop_assert!(input.items.iter().all(|line| line.sku_id == dropped_sku));
                return Ok(());
            };
            let placed: HashSet<(usize, Option<String>)> = result.report.placed.iter().map(|line| (line.item_index, line.lot.clone())).collect();
            prop_assert_eq!(placed.len(), result.report.placed.len(), "a line was placed twice");
            let positions: HashSet<(String, usize)> = result.report.placed.iter().map(|line| (line.bill_no.clone(), line.entry_index)).collect();
            prop_assert_eq!(positions.len(), result.report.placed.len(), "two lines share a bill row");
            for dropped in &result.report.dropped {
                prop_assert!(!placed.contains(&(dropped.item_index, dropped.lot.clone())), "line {} both placed and dropped", dropped.item_index);
            }
            for index in 0..input.items.len() {
                let in_bill = result.report.placed.iter().any(|line| line.item_index == index);
                let in_report = result.report.dropped.iter().any(|line| line.item_index == index);
                prop_assert!(in_bill || in_report, "line {} is neither in a bill nor reported", index);
            }
            let rows: usize = result.bills.iter().map(|bill| bill.entry_count).sum();
            prop_assert_eq!(rows, result.report.placed.len());
            if !gain_loss {
                let kept: BTreeMap<_, _> = source_totals(&input).into_iter().filter(|((sku, _), _)| *sku != dropped_sku).collect();
                prop_assert_eq!(bill_totals(&result.bills), kept);
            }
        }
    }
}
