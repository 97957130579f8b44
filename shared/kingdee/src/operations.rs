//! Operations after a save (Submit, Audit), and the lookups the mapping needs before one:
//! material codes from `BD_MATERIAL` and the 物料盘点作业 of a 盘点方案.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use countsync_core::mapping::lookup::{CountBillLookup, ExistingCountBill, ExistingRow, LookupError, MaterialLookup};
use countsync_core::mapping::AfterSave;
use countsync_core::ports::{Bill, BillRef, BillSummary, EntrySummary, normalize_quantity};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::client::{CallKind, EXECUTE_BILL_QUERY, KingdeeClient, quote_literal, rejected, unreadable};
use crate::error::KingdeeError;
use crate::wire::Response;

pub const SUBMIT: &str = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.Submit";
pub const AUDIT: &str = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.Audit";

/// Values per `in (…)` filter of a material lookup, to keep the filter text short.
const LOOKUP_CHUNK: usize = 200;
/// Field keys read from a 物料盘点作业 for the write-back, in this order.
const COUNT_BILL_KEYS: &str =
    "FID,FBillNo,FDocumentStatus,FSchemeNo,FBillEntry_FEntryID,FMaterialId.FNumber,FStockId.FNumber,FLot.FNumber,FOwnerId.FNumber,FIsSystem,FCountQty";

/// Field keys read back from a saved bill to compare it with the bill the writer would send, in
/// this order: one row per entry.
const SUMMARY_KEYS: &str = "FID,FBillNo,FMaterialId.FNumber,FStockId.FNumber,FCountQty";

/// Returns `NeedUpDateFields` for models that write into existing bills: `FBillEntry` and
/// every key the models send, except the `FID` and `FEntryID` that identify them.
pub fn update_fields(bills: &[Bill]) -> Vec<String> {
    let mut fields = BTreeSet::from(["FBillEntry".to_string()]);
    for bill in bills {
        for (key, value) in bill.model.as_object().into_iter().flatten() {
            if key == "FBillEntry" {
                for row in value.as_array().into_iter().flatten() {
                    fields.extend(row.as_object().into_iter().flatten().map(|(key, _)| key.clone()).filter(|key| key != "FEntryID"));
                }
            } else if key != "FID" {
                fields.insert(key.clone());
            }
        }
    }
    fields.into_iter().collect()
}

/// Builds the body of Submit or Audit.
pub fn numbers_body(form_id: &str, numbers: &[String]) -> Value {
    json!({ "formid": form_id, "data": { "Numbers": numbers } })
}

impl KingdeeClient {
    /// Submits bills by number. A bill already submitted or audited counts as done.
    pub async fn submit(&self, form_id: &str, numbers: &[String]) -> Result<(), KingdeeError> {
        self.advance(SUBMIT, form_id, numbers, &["B", "C"]).await
    }

    /// Audits bills by number. A bill already audited counts as done.
    pub async fn audit(&self, form_id: &str, numbers: &[String]) -> Result<(), KingdeeError> {
        self.advance(AUDIT, form_id, numbers, &["C"]).await
    }

    /// Runs the configured operations after a save; safe to repeat.
    pub async fn after_save(&self, form_id: &str, numbers: &[String], after: AfterSave) -> Result<(), KingdeeError> {
        match after {
            AfterSave::None => Ok(()),
            AfterSave::Submit => self.submit(form_id, numbers).await,
            AfterSave::Audit => {
                self.submit(form_id, numbers).await?;
                self.audit(form_id, numbers).await
            }
        }
    }

    /// Sends Submit or Audit. When Kingdee rejects it, the document statuses are read back: if
    /// every bill already has one of `done_statuses`, the call is a repeat and succeeds. This
    /// reads the status instead of the message, whose text follows the configured language.
    async fn advance(&self, service: &str, form_id: &str, numbers: &[String], done_statuses: &[&str]) -> Result<(), KingdeeError> {
        if numbers.is_empty() {
            return Ok(());
        }
        let timeout = Duration::from_secs(self.config().request_timeout_secs);
        let reply = self.call(service, &numbers_body(form_id, numbers), CallKind::Write, timeout).await?;
        let status = match reply.response {
            Response::Status(status) if status.is_success => {
                info!(service, form_id, bills = numbers.len(), "kingdee operation done");
                return Ok(());
            }
            Response::Status(status) => status,
            Response::ServerError(message) => return Err(KingdeeError::Server { service: service.into(), message }),
            Response::Unrecognized(excerpt) => return Err(unreadable(service, &excerpt)),
            _ => return Err(unreadable(service, "the body is not an operation result")),
        };
        let statuses = self.document_statuses(form_id, numbers).await?;
        let all_done = numbers.iter().all(|number| statuses.get(number).is_some_and(|status| done_statuses.contains(&status.as_str())));
        if all_done {
            info!(service, form_id, bills = numbers.len(), "bills were already in the target status; treated as done");
            return Ok(());
        }
        warn!(service, form_id, ?statuses, "kingdee rejected the operation");
        Err(rejected(service, &status))
    }

    /// Reads `FDocumentStatus` of bills by number.
    pub async fn document_statuses(&self, form_id: &str, numbers: &[String]) -> Result<HashMap<String, String>, KingdeeError> {
        let list = numbers.iter().map(|number| quote_literal(number)).collect::<Vec<_>>().join(",");
        let rows = self.query_all(form_id, "FBillNo,FDocumentStatus", &format!("FBillNo in ({list})"), "FBillNo ASC").await?;
        Ok(rows.iter().filter_map(|row| Some((text(row.first()?)?, text(row.get(1)?)?))).collect())
    }

    /// Finds material numbers by a `BD_MATERIAL` field, `LOOKUP_CHUNK` values per query.
    pub async fn find_material_numbers(&self, field: &str, values: &[String]) -> Result<HashMap<String, String>, KingdeeError> {
        let mut found = HashMap::new();
        for chunk in values.chunks(LOOKUP_CHUNK) {
            let list = chunk.iter().map(|value| quote_literal(value)).collect::<Vec<_>>().join(",");
            let keys = if field == "FNumber" { "FNumber".to_string() } else { format!("FNumber,{field}") };
            let rows = self.query_all("BD_MATERIAL", &keys, &format!("{field} in ({list})"), "FNumber ASC").await?;
            for row in rows {
                let number = row.first().and_then(text);
                let value = if field == "FNumber" { number.clone() } else { row.get(1).and_then(text) };
                if let (Some(number), Some(value)) = (number, value) {
                    found.insert(value, number);
                }
            }
        }
        Ok(found)
    }

    /// Reads a bill and its entry rows by number, for comparison with the bill the writer would
    /// send. `Ok(None)` means the query returned no row.
    pub async fn bill_summary(&self, form_id: &str, bill_no: &str) -> Result<Option<BillSummary>, KingdeeError> {
        let filter = format!("FBillNo={}", quote_literal(bill_no));
        let rows = self.query_all(form_id, SUMMARY_KEYS, &filter, "FID ASC").await?;
        summary_from_rows(bill_no, &rows)
    }

    /// Reads the 物料盘点作业 whose `FSchemeNo` is `scheme_no`, one row per entry.
    pub async fn find_scheme_bill(&self, form_id: &str, scheme_no: &str) -> Result<Option<ExistingCountBill>, KingdeeError> {
        let filter = format!("FSchemeNo={}", quote_literal(scheme_no));
        let rows = self.query_all(form_id, COUNT_BILL_KEYS, &filter, "FID ASC").await?;
        existing_bill(scheme_no, &rows)
    }
}

/// Builds a bill summary from query rows in [`SUMMARY_KEYS`] order. Rows of another `FID` than
/// the first row with the number (a second bill of that number) and rows without a material (a
/// bill without entries) are not entries of the bill.
fn summary_from_rows(bill_no: &str, rows: &[Vec<Value>]) -> Result<Option<BillSummary>, KingdeeError> {
    if rows.is_empty() {
        return Ok(None);
    }
    let cell = |row: &Vec<Value>, index: usize| row.get(index).and_then(text).unwrap_or_default();
    let Some(first) = rows.iter().find(|row| cell(row, 1) == bill_no && !cell(row, 0).is_empty()) else {
        // The rows do not match the filter, so the server did not apply it and they prove nothing.
        return Err(unreadable(EXECUTE_BILL_QUERY, &format!("no returned row has FBillNo {bill_no}")));
    };
    let bill = BillRef { id: cell(first, 0), number: bill_no.to_string() };
    let mut entries: Vec<EntrySummary> = rows
        .iter()
        .filter(|row| cell(row, 0) == bill.id && !cell(row, 2).is_empty())
        .map(|row| EntrySummary {
            material: cell(row, 2),
            stock: cell(row, 3),
            count_qty: normalize_quantity(row.get(4).unwrap_or(&Value::Null)),
        })
        .collect();
    entries.sort();
    Ok(Some(BillSummary { bill, entries: Some(entries) }))
}

/// Builds the existing bill from query rows in [`COUNT_BILL_KEYS`] order.
fn existing_bill(scheme_no: &str, rows: &[Vec<Value>]) -> Result<Option<ExistingCountBill>, KingdeeError> {
    let Some(first) = rows.first() else { return Ok(None) };
    let cell = |row: &Vec<Value>, index: usize| row.get(index).and_then(text).unwrap_or_default();
    let fid: i64 = cell(first, 0).parse().map_err(|_| unreadable("ExecuteBillQuery", &format!("row {first:?} has no FID")))?;
    if let Some(other) = rows.iter().find(|row| cell(row, 0) != fid.to_string()) {
        return Err(KingdeeError::InvalidRequest(format!(
            "盘点方案 {scheme_no} has several 物料盘点作业 (FID {fid} and {}); write-back needs exactly one",
            cell(other, 0)
        )));
    }
    let bill_rows = rows
        .iter()
        .filter(|row| cell(row, 4).parse::<i64>().is_ok_and(|id| id != 0))
        .map(|row| ExistingRow {
            entry_id: cell(row, 4).parse().unwrap_or_default(),
            material: cell(row, 5),
            stock: cell(row, 6),
            lot: cell(row, 7),
            owner: cell(row, 8),
            is_system: row.get(9).is_some_and(|flag| matches!(flag, Value::Bool(true)) || text(flag).is_some_and(|text| text == "1" || text.eq_ignore_ascii_case("true"))),
            count_qty: row.get(10).and_then(text).and_then(|quantity| quantity.trim().parse().ok()),
        })
        .collect();
    Ok(Some(ExistingCountBill { fid, bill_no: cell(first, 1), document_status: cell(first, 2), scheme_no: scheme_no.to_string(), rows: bill_rows }))
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn lookup_error(error: KingdeeError) -> LookupError {
    LookupError { retry: error.retry(), message: error.to_string() }
}

#[async_trait]
impl MaterialLookup for KingdeeClient {
    async fn find_materials(&self, field: &str, values: &[String]) -> Result<HashMap<String, String>, LookupError> {
        self.find_material_numbers(field, values).await.map_err(lookup_error)
    }
}

#[async_trait]
impl CountBillLookup for KingdeeClient {
    async fn find_count_bill(&self, form_id: &str, scheme_no: &str) -> Result<Option<ExistingCountBill>, LookupError> {
        self.find_scheme_bill(form_id, scheme_no).await.map_err(lookup_error)
    }
}
