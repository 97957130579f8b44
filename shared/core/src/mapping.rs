//! Mapping from a JuShuiTan count sheet to a Kingdee `STK_StockCountInput` (物料盘点作业) bill.
//!
//! The field list follows the integration platform's scheme for this flow: one header per sheet
//! and one `FBillEntry` row per item, or per lot where the sheet carries batches. The bill number
//! derives from `io_id`, so a sheet always maps to the same number and Kingdee's bill-number
//! uniqueness is the last guard against a duplicate.

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::ports::{Bill, FailureReason};
use crate::sheet::{CountItem, CountSheet, SheetBatch};

/// Form id of 物料盘点作业.
pub const STOCK_COUNT_INPUT: &str = "STK_StockCountInput";

/// Meaning of the sign of JuShuiTan's `qty` (盈亏数量).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum QtySign {
    /// Positive is a gain (盘盈), negative a loss (盘亏): book quantity = `r_qty - qty`.
    #[default]
    GainPositive,
    /// Positive is a loss: book quantity = `r_qty + qty`.
    LossPositive,
}

/// One row of the warehouse table: a JuShuiTan warehouse and the Kingdee stock it counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarehouseMapping {
    /// JuShuiTan branch warehouse id; 0 also matches sheets that carry none.
    pub wms_co_id: i64,
    /// JuShuiTan warehouse kind (1 主仓, 2 销退仓, …).
    pub wh_id: i64,
    /// Kingdee stock number (`FStockId`).
    pub stock: String,
}

/// Settings of the sheet-to-bill mapping, read from the `[mapping]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MappingConfig {
    /// Kingdee form the bills are saved to.
    pub form_id: String,
    /// Text put before `io_id` to form `FBillNo`.
    pub bill_no_prefix: String,
    /// Stock organization number (`FStockOrgId`); required.
    pub stock_org: String,
    /// Bill type number (`FBillTypeID`).
    pub bill_type: String,
    /// `FNoteHead` template; `{io_id}`, `{warehouse}`, `{remark}` and `{creator_name}` are replaced.
    pub note_template: String,
    /// `FOwnerTypeId` of every row.
    pub owner_type: String,
    /// `FOwnerId` number; the stock organization when empty.
    pub owner: String,
    /// `FKeeperTypeId` of every row.
    pub keeper_type: String,
    /// `FKeeperId` number; the stock organization when empty.
    pub keeper: String,
    /// `FStockStatusId` number of every row.
    pub stock_status: String,
    pub qty_sign: QtySign,
    /// Further header fields sent as given, keyed by Kingdee field key.
    pub header_fields: BTreeMap<String, Value>,
    /// Warehouse table, keyed by `wms_co_id` + `wh_id`.
    pub warehouses: Vec<WarehouseMapping>,
}

impl Default for MappingConfig {
    fn default() -> Self {
        Self {
            form_id: STOCK_COUNT_INPUT.to_string(),
            bill_no_prefix: "JST-".to_string(),
            stock_org: String::new(),
            bill_type: "WLPDZY01_SYS".to_string(),
            note_template: "聚水潭盘点单 {io_id} {warehouse}".to_string(),
            owner_type: "BD_OwnerOrg".to_string(),
            owner: String::new(),
            keeper_type: "BD_KeeperOrg".to_string(),
            keeper: String::new(),
            stock_status: "KCZT01_SYS".to_string(),
            qty_sign: QtySign::GainPositive,
            header_fields: BTreeMap::new(),
            warehouses: Vec::new(),
        }
    }
}

/// A configuration value the mapping cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid mapping setting `{key}`: {message}")]
pub struct MappingConfigError {
    /// Configuration key, e.g. `mapping.stock_org`.
    pub key: String,
    pub message: String,
}

impl MappingConfig {
    /// Checks the settings; the error names the key and the fix.
    pub fn validate(&self) -> Result<(), MappingConfigError> {
        let invalid = |key: &str, message: String| Err(MappingConfigError { key: format!("mapping.{key}"), message });

        if self.form_id.trim().is_empty() {
            return invalid("form_id", "must not be empty; use STK_StockCountInput".into());
        }
        if self.stock_org.trim().is_empty() {
            return invalid("stock_org", "missing; set the Kingdee stock organization number, e.g. \"100\"".into());
        }
        if self.bill_type.trim().is_empty() {
            return invalid("bill_type", "must not be empty; the standard type is WLPDZY01_SYS".into());
        }
        if !self.bill_no_prefix.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)) {
            return invalid(
                "bill_no_prefix",
                format!("{:?} may contain only ASCII letters, digits, '-' and '_'", self.bill_no_prefix),
            );
        }
        if self.warehouses.is_empty() {
            return invalid("warehouses", "empty; add one [[mapping.warehouses]] entry per JuShuiTan warehouse".into());
        }

        let mut seen = HashMap::new();
        for (index, warehouse) in self.warehouses.iter().enumerate() {
            if warehouse.stock.trim().is_empty() {
                return invalid(&format!("warehouses[{index}].stock"), "must not be empty".into());
            }
            if let Some(first) = seen.insert((warehouse.wms_co_id, warehouse.wh_id), index) {
                return invalid(
                    &format!("warehouses[{index}]"),
                    format!(
                        "wms_co_id {} wh_id {} is already mapped by warehouses[{first}]",
                        warehouse.wms_co_id, warehouse.wh_id
                    ),
                );
            }
        }
        Ok(())
    }

    /// Returns the bill number of a sheet.
    pub fn bill_no(&self, io_id: i64) -> String {
        format!("{}{}", self.bill_no_prefix, io_id)
    }

    fn owner(&self) -> &str {
        if self.owner.is_empty() { &self.stock_org } else { &self.owner }
    }

    fn keeper(&self) -> &str {
        if self.keeper.is_empty() { &self.stock_org } else { &self.keeper }
    }

    fn stock_for(&self, sheet: &CountSheet) -> Option<&str> {
        let wms_co_id = sheet.wms_co_id.unwrap_or(0);
        let wh_id = sheet.wh_id?;
        self.warehouses
            .iter()
            .find(|warehouse| warehouse.wms_co_id == wms_co_id && warehouse.wh_id == wh_id)
            .map(|warehouse| warehouse.stock.as_str())
    }
}

/// One reason a sheet cannot become a bill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingProblem {
    pub code: &'static str,
    pub message_zh: String,
    pub message_en: String,
}

/// Every problem found in one sheet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sheet {io_id} cannot be mapped: {}", summary(.problems))]
pub struct MappingError {
    pub io_id: i64,
    pub problems: Vec<MappingProblem>,
}

fn summary(problems: &[MappingProblem]) -> String {
    problems.iter().map(|problem| problem.message_en.as_str()).collect::<Vec<_>>().join("; ")
}

impl MappingError {
    /// Converts the problems into the failure reason an operator reads.
    pub fn to_reason(&self) -> FailureReason {
        let code = if self.problems.len() == 1 { self.problems[0].code } else { "mapping_failed" };
        FailureReason {
            code: code.to_string(),
            message_zh: self.problems.iter().map(|problem| problem.message_zh.as_str()).collect::<Vec<_>>().join("；"),
            message_en: summary(&self.problems),
            detail: None,
        }
    }
}

/// Maps a confirmed sheet to a bill, or reports every problem that prevents it.
pub fn map_sheet(sheet: &CountSheet, config: &MappingConfig) -> Result<Bill, MappingError> {
    let mut problems = Vec::new();

    if !sheet.is_confirmed() {
        problems.push(problem(
            "not_confirmed",
            format!("盘点单状态为 {}，只有已确认（Confirmed）的盘点单会同步", sheet.status),
            format!("status is {}, only Confirmed sheets are synced", sheet.status),
        ));
    }
    let date = match sheet.io_date {
        Some(io_date) => io_date.date().format("%Y-%m-%d").to_string(),
        None => {
            problems.push(problem("missing_io_date", "盘点单缺少 io_date（盘点日期）".into(), "io_date is missing".into()));
            String::new()
        }
    };
    let stock = match config.stock_for(sheet) {
        Some(stock) => stock.to_string(),
        None => {
            let (wms_co_id, wh_id) = (sheet.wms_co_id.unwrap_or(0), sheet.wh_id.unwrap_or(0));
            problems.push(problem(
                "unknown_warehouse",
                format!(
                    "仓库 wms_co_id={wms_co_id} wh_id={wh_id}（{}）未在仓库对照表中：请在 [[mapping.warehouses]] 中添加对应的金蝶仓库编码",
                    sheet.warehouse.as_deref().unwrap_or("")
                ),
                format!(
                    "warehouse wms_co_id={wms_co_id} wh_id={wh_id} ({}) is not in the warehouse table: add it to [[mapping.warehouses]]",
                    sheet.warehouse.as_deref().unwrap_or("")
                ),
            ));
            String::new()
        }
    };
    if sheet.items.is_empty() {
        problems.push(problem("no_items", "盘点单没有明细行".into(), "the sheet has no items".into()));
    }

    let entries = build_entries(sheet, config, &stock, &mut problems);
    if !problems.is_empty() {
        return Err(MappingError { io_id: sheet.io_id, problems });
    }

    let bill_no = config.bill_no(sheet.io_id);
    let mut header = Map::new();
    for (key, value) in &config.header_fields {
        header.insert(key.clone(), value.clone());
    }
    header.insert("FBillNo".into(), json!(bill_no));
    header.insert("FDate".into(), json!(date));
    header.insert("FBillTypeID".into(), json!({ "FNUMBER": config.bill_type }));
    header.insert("FStockOrgId".into(), json!({ "FNumber": config.stock_org }));
    header.insert("FNoteHead".into(), json!(render_note(&config.note_template, sheet)));
    let entry_count = entries.len();
    header.insert("FBillEntry".into(), Value::Array(entries));

    let model = Value::Object(header);
    let content_hash = hash_model(&model);
    Ok(Bill { form_id: config.form_id.clone(), bill_no, io_id: sheet.io_id, model, entry_count, content_hash })
}

/// Returns the lowercase hex SHA-256 of a bill model's JSON.
pub fn hash_model(model: &Value) -> String {
    let bytes = serde_json::to_vec(model).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
}

fn build_entries(sheet: &CountSheet, config: &MappingConfig, stock: &str, problems: &mut Vec<MappingProblem>) -> Vec<Value> {
    let mut batches_by_sku: HashMap<&str, Vec<&SheetBatch>> = HashMap::new();
    for batch in &sheet.batchs {
        batches_by_sku.entry(batch.sku_id.as_str()).or_default().push(batch);
    }
    let mut item_count_by_sku: HashMap<&str, usize> = HashMap::new();
    for item in &sheet.items {
        *item_count_by_sku.entry(item.sku_id.as_str()).or_default() += 1;
    }
    for sku in batches_by_sku.keys() {
        if !item_count_by_sku.contains_key(sku) {
            problems.push(problem(
                "batch_without_item",
                format!("批次列表中的 SKU {sku} 没有对应的明细行"),
                format!("sku {sku} has batches but no item line"),
            ));
        }
    }

    let mut entries = Vec::new();
    for item in &sheet.items {
        let Some(counted) = item.r_qty else {
            problems.push(problem(
                "missing_quantity",
                format!("SKU {} 的明细行缺少 r_qty（盘点后数量）", item.sku_id),
                format!("item of sku {} has no r_qty", item.sku_id),
            ));
            continue;
        };
        let delta = match config.qty_sign {
            QtySign::GainPositive => item.qty.unwrap_or_default(),
            QtySign::LossPositive => -item.qty.unwrap_or_default(),
        };
        let row = Row { item, counted, delta };

        if item.batch_id.as_deref().is_some_and(|lot| !lot.is_empty()) {
            entries.push(entry(config, stock, &row, item.batch_id.as_deref(), item.product_date, item.expiration_date));
            continue;
        }
        let Some(batches) = batches_by_sku.get(item.sku_id.as_str()) else {
            entries.push(entry(config, stock, &row, None, None, None));
            continue;
        };
        if item_count_by_sku[item.sku_id.as_str()] > 1 {
            problems.push(problem(
                "ambiguous_batches",
                format!("SKU {} 有多条明细行，无法分配批次列表中的批次", item.sku_id),
                format!("sku {} has several item lines, so its sheet-level batches cannot be assigned", item.sku_id),
            ));
            continue;
        }
        entries.extend(lot_entries(config, stock, &row, batches, problems));
    }
    entries
}

struct Row<'a> {
    item: &'a CountItem,
    counted: Decimal,
    /// Gain (positive) or loss (negative), already in the gain-positive convention.
    delta: Decimal,
}

/// Splits one item over its sheet-level lots. Each lot's `qty` is read as its counted quantity;
/// the item's whole gain or loss is booked on the first lot so that per-SKU totals are preserved.
fn lot_entries(
    config: &MappingConfig,
    stock: &str,
    row: &Row<'_>,
    batches: &[&SheetBatch],
    problems: &mut Vec<MappingProblem>,
) -> Vec<Value> {
    let lot_total: Decimal = batches.iter().map(|batch| batch.qty.unwrap_or_default()).sum();
    if lot_total != row.counted {
        problems.push(problem(
            "batch_quantity_mismatch",
            format!("SKU {} 的批次数量合计 {} 与盘点后数量 r_qty {} 不一致", row.item.sku_id, lot_total.normalize(), row.counted.normalize()),
            format!(
                "batch quantities of sku {} add up to {} but r_qty is {}",
                row.item.sku_id,
                lot_total.normalize(),
                row.counted.normalize()
            ),
        ));
        return Vec::new();
    }

    batches
        .iter()
        .enumerate()
        .map(|(index, batch)| {
            let lot_row = Row {
                item: row.item,
                counted: batch.qty.unwrap_or_default(),
                delta: if index == 0 { row.delta } else { Decimal::ZERO },
            };
            entry(config, stock, &lot_row, Some(&batch.batch_no), batch.product_date, batch.expiration_date)
        })
        .collect()
}

fn entry(
    config: &MappingConfig,
    stock: &str,
    row: &Row<'_>,
    lot: Option<&str>,
    produced: Option<chrono::NaiveDate>,
    expires: Option<chrono::NaiveDate>,
) -> Value {
    let book = row.counted - row.delta;
    let (gain, loss) = if row.delta >= Decimal::ZERO { (row.delta, Decimal::ZERO) } else { (Decimal::ZERO, -row.delta) };

    let mut entry = Map::new();
    entry.insert("FMaterialId".into(), json!({ "FNumber": row.item.sku_id }));
    entry.insert("FStockId".into(), json!({ "FNumber": stock }));
    entry.insert("FStockStatusId".into(), json!({ "FNumber": config.stock_status }));
    entry.insert("FOwnerTypeId".into(), json!(config.owner_type));
    entry.insert("FOwnerId".into(), json!({ "FNumber": config.owner() }));
    entry.insert("FKeeperTypeId".into(), json!(config.keeper_type));
    entry.insert("FKeeperId".into(), json!({ "FNumber": config.keeper() }));
    entry.insert("FAcctQty".into(), json!(decimal_text(book)));
    entry.insert("FCountQty".into(), json!(decimal_text(row.counted)));
    entry.insert("FGainQty".into(), json!(decimal_text(gain)));
    entry.insert("FLossQty".into(), json!(decimal_text(loss)));
    if let Some(lot) = lot {
        entry.insert("FLot".into(), json!({ "FNumber": lot }));
    }
    if let Some(date) = produced {
        entry.insert("FProduceDate".into(), json!(date.format("%Y-%m-%d").to_string()));
    }
    if let Some(date) = expires {
        entry.insert("FExpiryDate".into(), json!(date.format("%Y-%m-%d").to_string()));
    }
    if let Some(line_id) = row.item.ioi_id {
        entry.insert("FNote".into(), json!(format!("ioi_id {line_id}")));
    }
    Value::Object(entry)
}

/// Formats a quantity exactly, without trailing zeros: Kingdee accepts numeric strings, and a
/// string never passes through a binary float.
pub fn decimal_text(value: Decimal) -> String {
    value.normalize().to_string()
}

fn render_note(template: &str, sheet: &CountSheet) -> String {
    template
        .replace("{io_id}", &sheet.io_id.to_string())
        .replace("{warehouse}", sheet.warehouse.as_deref().unwrap_or(""))
        .replace("{remark}", sheet.remark.as_deref().unwrap_or(""))
        .replace("{creator_name}", sheet.creator_name.as_deref().unwrap_or(""))
        .trim()
        .to_string()
}

fn problem(code: &'static str, message_zh: String, message_en: String) -> MappingProblem {
    MappingProblem { code, message_zh, message_en }
}

#[cfg(test)]
mod tests;
