//! Golden mapping cases: each sheet under `tests/golden/cases/` is mapped in every target mode
//! and compared exactly with `tests/golden/expected/`. Run with `UPDATE_GOLDEN=1` to rewrite the
//! expected files, then review the diff before committing it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use countsync_core::mapping::{ExistingCountBill, ExistingRow, MappingConfig, MappingContext, map_sheet_with};
use countsync_core::sheet::CountSheet;
use serde_json::{Value, json};

const TARGETS: [&str; 3] = ["count_input", "gain_loss", "scheme_writeback"];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Settings every case starts from; a case's `mapping` object is merged over them.
fn base_mapping() -> Value {
    json!({
        "stock_org": "100",
        "scheme": { "number": "PDFA0001" },
        "warehouses": [
            { "wms_co_id": 0, "wh_id": 1, "stock": "CK001" },
            { "wms_co_id": 0, "wh_id": 2, "stock": "CK002" },
            { "wms_co_id": 10001, "wh_id": 1, "stock": "CK101", "stock_location": { "key": "FSTOCKLOCID__FF100001", "value": "A-01" } },
        ],
    })
}

/// Builds the 物料盘点作业 that the write-back target finds for scheme PDFA0001.
fn scheme_bill(status: &str) -> ExistingCountBill {
    let row = |entry_id: i64, material: &str, lot: &str| ExistingRow {
        entry_id,
        material: material.into(),
        stock: "CK001".into(),
        lot: lot.into(),
        owner: "100".into(),
        is_system: true,
        count_qty: None,
    };
    ExistingCountBill {
        fid: 9001,
        bill_no: "WLPDZY00009001".into(),
        scheme_no: "PDFA0001".into(),
        document_status: status.into(),
        rows: vec![row(1, "SKU-1", ""), row(2, "SKU-2", "L1"), row(3, "MAT-001", "")],
    }
}

fn merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                merge(base.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}

fn mapping_for(case: &Value, target: &str) -> MappingConfig {
    let mut settings = base_mapping();
    merge(&mut settings, &case["mapping"]);
    settings["target"] = json!(target);
    if let Some(file) = settings.pointer("/materials/file").and_then(Value::as_str) {
        settings["materials"]["file"] = json!(golden_dir().join(file));
    }
    let mapping: MappingConfig = serde_json::from_value(settings).expect("case mapping is valid");
    mapping.validate().expect("case mapping passes validation");
    mapping
}

fn context_for(case: &Value, target: &str) -> MappingContext {
    let materials = case.get("resolved_materials").map(|map| serde_json::from_value::<HashMap<String, String>>(map.clone()).unwrap());
    let existing = (target == "scheme_writeback").then(|| scheme_bill(case.get("existing_status").and_then(Value::as_str).unwrap_or("A")));
    MappingContext { materials, scheme_no: None, existing }
}

fn run_case(case: &Value) -> Value {
    let sheet: CountSheet = serde_json::from_value(case["sheet"].clone()).expect("case sheet is a CountSheet");
    let mut results = serde_json::Map::new();
    for target in TARGETS {
        let mapping = mapping_for(case, target);
        let result = match map_sheet_with(&sheet, &mapping, &context_for(case, target)) {
            Ok(mapped) => json!({
                "bills": mapped.bills.iter().map(|bill| json!({
                    "form_id": bill.form_id,
                    "bill_no": bill.bill_no,
                    "entry_count": bill.entry_count,
                    "model": bill.model,
                })).collect::<Vec<_>>(),
                "report": mapped.report,
            }),
            Err(error) => json!({
                "problems": error.problems.iter().map(|problem| json!({
                    "code": problem.code,
                    "message_zh": problem.message_zh,
                    "message_en": problem.message_en,
                })).collect::<Vec<_>>(),
            }),
        };
        results.insert(target.to_string(), result);
    }
    Value::Object(results)
}

#[test]
fn golden_mapping_cases() {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|value| value == "1");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_dir().join("cases")).unwrap().map(|entry| entry.unwrap().path()).collect();
    cases.sort();
    assert!(cases.len() >= 30, "the golden set has {} cases, fewer than 30", cases.len());

    let mut mismatches = Vec::new();
    for path in &cases {
        let case: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let actual = run_case(&case);
        let expected_path = golden_dir().join("expected").join(path.file_name().unwrap());
        let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
        if update {
            std::fs::write(&expected_path, &text).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != text {
            mismatches.push(path.file_name().unwrap().to_string_lossy().to_string());
        }
    }
    assert!(mismatches.is_empty(), "golden cases differ (rerun with UPDATE_GOLDEN=1 and review the diff): {mismatches:?}");
}
