//! Read-only checks of a Kingdee tenant against the configuration. They cover the login, the
//! field keys the mapping writes and the base data it names (stock organization, bill type,
//! warehouses, a sample of materials). Optionally they check that the integration user can see
//! a known bill.

use std::collections::{BTreeSet, HashSet};

use countsync_core::mapping::MappingConfig;
use serde::Serialize;
use serde_json::Value;

use crate::client::{KingdeeClient, quote_literal};
use crate::error::KingdeeError;

/// Header field keys the mapping writes on every bill, besides `mapping.header_fields`.
pub const MAPPED_HEADER_FIELDS: [&str; 5] = ["FBillNo", "FDate", "FBillTypeID", "FStockOrgId", "FNoteHead"];
/// `FBillEntry` field keys the mapping writes; the last four only for some rows.
pub const MAPPED_ENTRY_FIELDS: [&str; 15] = [
    "FMaterialId", "FStockId", "FStockStatusId", "FOwnerTypeId", "FOwnerId", "FKeeperTypeId", "FKeeperId", "FAcctQty",
    "FCountQty", "FGainQty", "FLossQty", "FLot", "FProduceDate", "FExpiryDate", "FNote",
];
const ENTRY_ENTITY: &str = "FBillEntry";
/// Codes per `FNumber in (…)` query, to keep the filter text short.
const CODES_PER_QUERY: usize = 200;

/// Kind of object a probe check looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    Login,
    Metadata,
    FieldKey,
    StockOrg,
    BillType,
    Warehouse,
    Material,
    BillVisible,
}

/// One check and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub kind: CheckKind,
    /// The value checked: a field key, a stock number, a material code, a bill number.
    pub subject: String,
    pub passed: bool,
    /// Kingdee's error text when the check could not run.
    pub detail: Option<String>,
}

/// All checks of one probe, in the order they ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProbeReport {
    pub checks: Vec<Check>,
}

impl ProbeReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.passed)
    }

    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|check| !check.passed)
    }

    fn push(&mut self, kind: CheckKind, subject: impl Into<String>, passed: bool, detail: Option<String>) {
        self.checks.push(Check { kind, subject: subject.into(), passed, detail });
    }
}

/// Inputs of a probe besides the mapping's own settings.
#[derive(Debug, Clone, Default)]
pub struct ProbeRequest {
    /// Material codes to look up, e.g. SKUs of recent JuShuiTan sheets.
    pub materials: Vec<String>,
    /// A bill the integration user should be able to see.
    pub bill_no: Option<String>,
}

/// Runs every check with read-only calls. A failed call becomes a failed check, so the report
/// is complete even when Kingdee is unreachable.
pub async fn run(client: &KingdeeClient, mapping: &MappingConfig, request: &ProbeRequest) -> ProbeReport {
    let mut report = ProbeReport::default();
    let metadata = client.query_business_info(&mapping.form_id).await;
    // QueryBusinessInfo is the first call, so it also proves the login.
    match &metadata {
        Err(error) if is_auth_error(error) => {
            report.push(CheckKind::Login, client.config().username.clone(), false, Some(error.to_string()));
            return report;
        }
        _ => report.push(CheckKind::Login, client.config().username.clone(), true, None),
    }
    check_fields(&mut report, mapping, metadata);

    check_codes(client, &mut report, CheckKind::StockOrg, "ORG_Organizations", std::slice::from_ref(&mapping.stock_org)).await;
    check_codes(client, &mut report, CheckKind::BillType, "BOS_BillType", std::slice::from_ref(&mapping.bill_type)).await;
    let stocks: Vec<String> = mapping.warehouses.iter().map(|warehouse| warehouse.stock.clone()).collect();
    check_codes(client, &mut report, CheckKind::Warehouse, "BD_STOCK", &stocks).await;
    check_codes(client, &mut report, CheckKind::Material, "BD_MATERIAL", &request.materials).await;

    if let Some(bill_no) = &request.bill_no {
        match client.find_by_number(&mapping.form_id, bill_no).await {
            Ok(found) => report.push(CheckKind::BillVisible, bill_no.clone(), found.is_some(), None),
            Err(error) => report.push(CheckKind::BillVisible, bill_no.clone(), false, Some(error.to_string())),
        }
    }
    report
}

/// Returns whether an error shows that no authenticated call succeeded. Only a response from
/// Kingdee about the call itself proves the login.
fn is_auth_error(error: &KingdeeError) -> bool {
    !matches!(error, KingdeeError::Rejected { .. } | KingdeeError::Unreadable { .. } | KingdeeError::Server { .. })
}

/// Checks that every field key the mapping writes appears in the form's metadata.
fn check_fields(report: &mut ProbeReport, mapping: &MappingConfig, metadata: Result<Value, KingdeeError>) {
    let metadata = match metadata {
        Ok(metadata) => metadata,
        Err(error) => {
            report.push(CheckKind::Metadata, mapping.form_id.clone(), false, Some(error.to_string()));
            return;
        }
    };
    let (header, entry) = metadata_fields(&metadata);
    report.push(CheckKind::Metadata, mapping.form_id.clone(), !header.is_empty() && !entry.is_empty(), None);

    let header_keys = MAPPED_HEADER_FIELDS.iter().map(|key| key.to_string()).chain(mapping.header_fields.keys().cloned());
    for key in header_keys {
        let passed = header.contains(&key);
        report.push(CheckKind::FieldKey, key, passed, None);
    }
    for key in MAPPED_ENTRY_FIELDS {
        report.push(CheckKind::FieldKey, format!("{ENTRY_ENTITY}.{key}"), entry.contains(key), None);
    }
}

/// Collects the field keys of the form header and of `FBillEntry` from QueryBusinessInfo's
/// `Entrys`. Every entity other than `FBillEntry` counts as header, which is lenient about
/// sub-headers that some tenants add.
// NOTE: the shape (`Entrys[].Key`, `Entrys[].Fields[].Key`) is what the simulator returns; no
// published response of a real tenant was available to confirm it.
pub fn metadata_fields(metadata: &Value) -> (HashSet<String>, HashSet<String>) {
    let mut header = HashSet::new();
    let mut entry = HashSet::new();
    let entities = metadata.get("Entrys").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for entity in entities {
        let name = entity.get("Key").and_then(Value::as_str).unwrap_or_default();
        let target = if name.eq_ignore_ascii_case(ENTRY_ENTITY) { &mut entry } else { &mut header };
        let fields = entity.get("Fields").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        target.extend(fields.iter().filter_map(|field| field.get("Key").and_then(Value::as_str)).map(str::to_string));
    }
    (header, entry)
}

/// Looks the codes up by `FNumber` in a base-data form and adds one check per code.
async fn check_codes(client: &KingdeeClient, report: &mut ProbeReport, kind: CheckKind, form_id: &str, codes: &[String]) {
    let unique: BTreeSet<&String> = codes.iter().filter(|code| !code.trim().is_empty()).collect();
    let unique: Vec<&String> = unique.into_iter().collect();
    for chunk in unique.chunks(CODES_PER_QUERY) {
        let literals: Vec<String> = chunk.iter().map(|code| quote_literal(code)).collect();
        let filter = format!("FNumber in ({})", literals.join(","));
        match client.query_all(form_id, "FNumber", &filter, "FNumber ASC").await {
            Ok(rows) => {
                let found: HashSet<&str> = rows.iter().filter_map(|row| row.first().and_then(Value::as_str)).collect();
                for code in chunk {
                    report.push(kind, code.as_str(), found.contains(code.as_str()), None);
                }
            }
            Err(error) => {
                for code in chunk {
                    report.push(kind, code.as_str(), false, Some(error.to_string()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn metadata_fields_by_entity() {
        let metadata = json!({"Entrys": [
            {"Key": "FBillHead", "Fields": [{"Key": "FBillNo"}, {"Key": "FDate"}]},
            {"Key": "FBillEntry", "Fields": [{"Key": "FMaterialId"}, {"Name": "no key"}]},
        ]});
        let (header, entry) = metadata_fields(&metadata);
        assert_eq!(header, HashSet::from(["FBillNo".to_string(), "FDate".to_string()]));
        assert_eq!(entry, HashSet::from(["FMaterialId".to_string()]));
    }

    #[test]
    fn metadata_odd_shapes_empty() {
        for metadata in [json!(null), json!([]), json!({"Entrys": 5}), json!({"Entrys": [{"Fields": "x"}]})] {
            let (header, entry) = metadata_fields(&metadata);
            assert!(header.is_empty(), "{metadata}");
            assert!(entry.is_empty(), "{metadata}");
        }
    }
}
