//! Simulator behaviour beyond creating bills: saving into an existing bill (`FID` set), the
//! document status flow of Submit and Audit, the closed period, and material lookups by a
//! second field.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::{AUDIT, BillError, SUBMIT, SavedEntity, SimState, bill_error, check_base_data, data_object, truthy};

/// Entry fields that place a row in stock; a system row (`FIsSystem`) refuses changes to them.
const STOCK_DIMENSIONS: [&str; 10] = [
    "FMaterialId", "FStockId", "FStockLocId", "FLot", "FAuxPropId", "FStockStatusId", "FOwnerTypeId", "FOwnerId", "FKeeperTypeId", "FKeeperId",
];
/// Statuses in which a bill may be saved: Z 暂存, A 创建, D 重新审核.
const EDITABLE: [&str; 3] = ["Z", "A", "D"];

/// BatchSave options that matter when a model names an existing bill.
pub(super) struct SaveOptions {
    /// `NeedUpDateFields`; empty means every field sent is written.
    need_update_fields: HashSet<String>,
    /// `IsDeleteEntry`, true by default: rows missing from the model are deleted.
    is_delete_entry: bool,
}

impl SaveOptions {
    pub(super) fn from_data(data: &Map<String, Value>) -> Self {
        let need_update_fields = match data.get("NeedUpDateFields") {
            Some(Value::Array(fields)) => fields.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            _ => HashSet::new(),
        };
        let is_delete_entry = data.get("IsDeleteEntry").is_none_or(|value| truthy(Some(value)));
        Self { need_update_fields, is_delete_entry }
    }

    fn writes(&self, key: &str) -> bool {
        self.need_update_fields.is_empty() || self.need_update_fields.contains(key)
    }
}

/// Returns the model's `FID`, 0 when absent (a new bill).
pub(super) fn fid_of(model: &Value) -> i64 {
    match model.get("FID") {
        Some(Value::Number(number)) => number.as_i64().unwrap_or(0),
        Some(Value::String(text)) => text.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

fn number_of(value: Option<&Value>) -> Option<&str> {
    value.and_then(|value| value.get("FNumber").or_else(|| value.get("FNUMBER"))).and_then(Value::as_str)
}

impl SimState {
    pub(super) fn next_entry_id(&mut self) -> i64 {
        let id = self.next_entry_id;
        self.next_entry_id += 1;
        id
    }

    /// Rejects a bill dated on or before `closed_through` with the closed-period message.
    // NOTE: the wording follows Kingdee's stock-closing check as community posts quote it; a
    // real tenant's text may differ, which is why the client detects 关账 / 结账 only.
    pub(super) fn check_period(&self, problems: &mut Vec<BillError>, header: &Map<String, Value>) {
        let Some(closed) = self.config.closed_through else { return };
        let Some(date_text) = header.get("FDate").and_then(Value::as_str) else { return };
        let Some(date) = countsync_core::time::parse_date(date_text) else { return };
        if date <= closed {
            let org = number_of(header.get("FStockOrgId")).unwrap_or_default();
            problems.push(bill_error(
                11,
                Some("FDate"),
                format!("单据日期 {} 早于或等于库存组织 {org} 的关账日期 {}，该期间已关账，不允许保存。", date.format("%Y-%m-%d"), closed.format("%Y-%m-%d")),
            ));
        }
    }

    /// Saves a model into the existing bill it names by `FID`. Rows with an `FEntryID` are
    /// updated (only `NeedUpDateFields`), rows with `FEntryID` 0 are added, and with
    /// `IsDeleteEntry` false the rows not sent stay.
    pub(super) fn update_bill(&mut self, form_id: &str, model: &Value, options: &SaveOptions) -> Result<SavedEntity, Vec<BillError>> {
        let fid = fid_of(model);
        let Some(position) = self.bills.iter().position(|bill| bill.form_id == form_id && bill.fid == fid) else {
            return Err(vec![bill_error(10, Some("FID"), format!("单据 FID={fid} 不存在，或已被删除"))]);
        };
        let status = self.bills[position].document_status.clone();
        if !EDITABLE.contains(&status.as_str()) {
            let number = self.bills[position].bill_no.clone();
            return Err(vec![bill_error(12, None, format!("单据 {number} 的状态为 {status}（已提交或已审核），不允许修改"))]);
        }
        let rows: Vec<Value> = model.get("FBillEntry").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut problems = Vec::new();
        for (index, row) in rows.iter().enumerate() {
            self.check_update_row(&mut problems, &self.bills[position], row, index + 1);
        }
        if !problems.is_empty() {
            return Err(problems);
        }

        let mut kept = Vec::new();
        for row in &rows {
            let entry_id = row.get("FEntryID").and_then(Value::as_i64).unwrap_or(0);
            if entry_id == 0 {
                let new_id = self.next_entry_id();
                let bill = &mut self.bills[position];
                push_entry(&mut bill.model, row);
                bill.entry_ids.push(new_id);
                kept.push(new_id);
                continue;
            }
            let bill = &mut self.bills[position];
            let slot = bill.entry_ids.iter().position(|id| *id == entry_id).unwrap_or_default();
            if let Some(stored) = bill.model.get_mut("FBillEntry").and_then(|entries| entries.get_mut(slot)).and_then(Value::as_object_mut) {
                for (key, value) in row.as_object().into_iter().flatten() {
                    if key != "FEntryID" && options.writes(key) {
                        stored.insert(key.clone(), value.clone());
                    }
                }
            }
            kept.push(entry_id);
        }
        if options.is_delete_entry {
            self.delete_rows_not_in(position, &kept);
        }
        self.stats.bills_saved += 1;
        let bill = &self.bills[position];
        Ok(SavedEntity { dindex: 0, fid: bill.fid, bill_no: bill.bill_no.clone() })
    }

    fn check_update_row(&self, problems: &mut Vec<BillError>, bill: &super::StoredBill, row: &Value, line: usize) {
        let Some(fields) = row.as_object() else {
            problems.push(bill_error(8, Some("FBillEntry"), format!("第{line}行分录不是 JSON 对象")));
            return;
        };
        let entry_id = fields.get("FEntryID").and_then(Value::as_i64).unwrap_or(0);
        if entry_id == 0 {
            let config = &self.config;
            check_base_data(problems, fields, "FMaterialId", "物料编码", &config.materials, Some(line));
            check_base_data(problems, fields, "FStockId", "仓库", &config.stocks, Some(line));
            return;
        }
        let Some(slot) = bill.entry_ids.iter().position(|id| *id == entry_id) else {
            problems.push(bill_error(10, Some("FEntryID"), format!("第{line}行分录 FEntryID={entry_id} 在单据 {} 中不存在", bill.bill_no)));
            return;
        };
        let stored = bill.model.get("FBillEntry").and_then(|entries| entries.get(slot)).cloned().unwrap_or(Value::Null);
        if !stored.get("FIsSystem").is_some_and(|flag| truthy(Some(flag))) {
            return;
        }
        for key in STOCK_DIMENSIONS {
            if let Some(value) = fields.get(key) {
                if stored.get(key) != Some(value) {
                    problems.push(bill_error(12, None, format!("第{line}行分录由盘点方案生成（系统行），不允许修改库存维度字段 {key}")));
                }
            }
        }
    }

    fn delete_rows_not_in(&mut self, position: usize, kept: &[i64]) {
        let bill = &mut self.bills[position];
        let ids = std::mem::take(&mut bill.entry_ids);
        let entries = bill.model.get("FBillEntry").and_then(Value::as_array).cloned().unwrap_or_default();
        let (mut new_ids, mut new_entries) = (Vec::new(), Vec::new());
        for (id, entry) in ids.into_iter().zip(entries) {
            if kept.contains(&id) {
                new_ids.push(id);
                new_entries.push(entry);
            }
        }
        bill.entry_ids = new_ids;
        bill.model["FBillEntry"] = Value::Array(new_entries);
    }

    /// Submit (A, D or Z → B) and Audit (B → C), per bill number. A repeat is an error, as in
    /// Kingdee, naming the current status.
    pub(super) fn advance_status(&mut self, service: &str, request: &Value) -> Value {
        let form_id = request.get("formid").and_then(Value::as_str).unwrap_or_default().to_string();
        let numbers: Vec<String> = data_object(request)
            .and_then(|data| data.get("Numbers").and_then(Value::as_array).cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|number| number.as_str().map(str::to_string))
            .collect();
        if form_id.is_empty() || numbers.is_empty() {
            return super::status_body(8, "缺少参数 formid 或 Numbers", None, None);
        }
        let (mut entities, mut errors) = (Vec::new(), Vec::new());
        for (index, number) in numbers.iter().enumerate() {
            let Some(bill) = self.bills.iter_mut().find(|bill| bill.form_id == form_id && &bill.bill_no == number) else {
                errors.push(json!({"FieldName": null, "Message": format!("单据 {number} 不存在"), "DIndex": index}));
                continue;
            };
            let next = match (service, bill.document_status.as_str()) {
                (SUBMIT, "A" | "D" | "Z") => Ok("B"),
                (SUBMIT, "B") => Err(format!("单据编号为“{number}”的单据已经提交，不能重复提交")),
                (AUDIT, "B") => Ok("C"),
                (AUDIT, "A" | "D" | "Z") => Err(format!("单据编号为“{number}”的单据未提交，不能审核")),
                (_, "C") => Err(format!("单据编号为“{number}”的单据已审核，不能重复操作")),
                (_, other) => Err(format!("单据编号为“{number}”的单据状态 {other} 不允许此操作")),
            };
            match next {
                Ok(status) => {
                    bill.document_status = status.into();
                    entities.push(json!({"Id": bill.fid, "Number": number, "DIndex": index}));
                }
                Err(message) => errors.push(json!({"FieldName": null, "Message": message, "DIndex": index})),
            }
        }
        self.persist();
        json!({"Result": {"ResponseStatus": {
            "ErrorCode": if errors.is_empty() { 0 } else { 500 },
            "IsSuccess": errors.is_empty(),
            "Errors": errors,
            "SuccessEntitys": entities,
            "SuccessMessages": [],
            "MsgCode": if errors.is_empty() { 0 } else { 11 },
        }}})
    }

    /// Rows of `BD_MATERIAL` read through the alias field: each row has the material number
    /// under `FNumber` and the alias under the alias field.
    pub(super) fn material_alias_rows(&self, keys: &[String], filter_on: &str, values: Option<&HashSet<String>>) -> Vec<Vec<Value>> {
        let alias_field = &self.config.material_alias_field;
        let mut pairs: Vec<(&String, &String)> = self.config.material_aliases.iter().collect();
        pairs.sort();
        pairs
            .into_iter()
            .filter(|(alias, number)| {
                let compared = if filter_on == alias_field.as_str() { *alias } else { *number };
                values.is_none_or(|values| values.contains(compared))
            })
            .map(|(alias, number)| keys.iter().map(|key| if key == alias_field { json!(alias) } else { json!(number) }).collect())
            .collect()
    }
}

fn push_entry(model: &mut Value, row: &Value) {
    let mut row = row.clone();
    if let Some(fields) = row.as_object_mut() {
        fields.remove("FEntryID");
    }
    match model.get_mut("FBillEntry").and_then(Value::as_array_mut) {
        Some(entries) => entries.push(row),
        None => model["FBillEntry"] = json!([row]),
    }
}
