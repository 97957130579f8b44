//! Mapping from a JuShuiTan count sheet to Kingdee bills.
//!
//! The mapping is data: the `[mapping]` settings ([`MappingConfig`]) choose the target mode
//! (a new 物料盘点作业, 盘盈单 and 盘亏单, or a write-back into the 物料盘点作业 of a 盘点方案),
//! codes, units, lots and rounding. The field list follows the integration platform's scheme
//! for this flow. Bill numbers derive from `io_id`, so a sheet always maps to the same numbers
//! and Kingdee's bill-number uniqueness is the last guard against a duplicate.
//!
//! - [`config`]: the settings and their validation,
//! - `lines`: sheet items → target-neutral lines (material codes, lots, units, precision),
//! - `targets`: lines → bills per target mode,
//! - [`lookup`]: what must be read from Kingdee first (materials, the scheme's bill),
//! - [`report`]: placed, dropped and rounded lines,
//! - [`period`]: Kingdee's closed-period rejection as an operator reason.

pub mod config;
mod lines;
pub mod lookup;
pub mod period;
pub mod report;
mod targets;

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use config::{
    AfterSave, DateSource, GainLossConfig, LotAllocation, LotSource, LotsConfig, MappingConfig, MappingConfigError, MaterialSource,
    MaterialsConfig, QtySign, Rounding, SchemeConfig, SchemeSource, StockLocation, Target, UnitsConfig, UnknownCodes, WarehouseMapping,
    DEFAULT_PROFILE, DEFAULT_PROFILE_TOML, STOCK_COUNT_GAIN, STOCK_COUNT_INPUT, STOCK_COUNT_LOSS,
};
pub use lookup::{ExistingCountBill, ExistingRow};
pub use report::{DroppedLine, MappingReport, PlacedLine, RoundedLine};

use crate::ports::{Bill, FailureReason};
use crate::sheet::CountSheet;

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

/// Data a mapping run needs from Kingdee beyond the settings; see [`lookup::prepare_context`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingContext {
    /// SKU → material code, for `materials.source = "kingdee_lookup"`.
    pub materials: Option<HashMap<String, String>>,
    /// 盘点方案 number of the sheet, for `target = "scheme_writeback"`.
    pub scheme_no: Option<String>,
    /// The scheme's 物料盘点作业, for `target = "scheme_writeback"`; `None` when not found.
    pub existing: Option<ExistingCountBill>,
}

/// The bills of one sheet and what the mapping left out or rounded.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedSheet {
    /// Zero, one or two bills: `gain_loss` writes a gain and a loss bill only when the sheet
    /// has gains and losses, and nothing for a sheet without any difference.
    pub bills: Vec<Bill>,
    pub report: MappingReport,
}

/// Header values shared by every bill of one sheet.
pub(crate) struct SheetHeader<'a> {
    pub sheet: &'a CountSheet,
    pub config: &'a MappingConfig,
    pub warehouse: &'a WarehouseMapping,
    /// `FDate`, `yyyy-MM-dd`.
    pub date: String,
    pub note: String,
}

/// Maps a confirmed sheet to one `STK_StockCountInput` bill, or reports every problem that
/// prevents it. Only `target = "count_input"` yields exactly one bill; the other targets fail
/// with `target_needs_map_sheet_bills`, so use [`map_sheet_bills`] or [`map_sheet_with`].
pub fn map_sheet(sheet: &CountSheet, config: &MappingConfig) -> Result<Bill, MappingError> {
    if config.target != Target::CountInput {
        return Err(MappingError {
            io_id: sheet.io_id,
            problems: vec![problem(
                "target_needs_map_sheet_bills",
                format!("target = {:?} 每张盘点单可能生成零张、一张或两张单据，写入端需要调用 map_sheet_bills", config.target),
                format!("target = {:?} may turn a sheet into zero, one or two bills, so the writer must call map_sheet_bills", config.target),
            )],
        });
    }
    let mut mapped = map_sheet_with(sheet, config, &MappingContext::default())?;
    Ok(mapped.bills.remove(0))
}

/// Maps a sheet to its bills without Kingdee lookups; see [`map_sheet_with`].
pub fn map_sheet_bills(sheet: &CountSheet, config: &MappingConfig) -> Result<Vec<Bill>, MappingError> {
    Ok(map_sheet_with(sheet, config, &MappingContext::default())?.bills)
}

/// Maps a sheet to its bills with the lookups in `context`, or reports every problem that
/// prevents it. A sheet is never partly mapped: any problem fails the whole sheet, and the
/// lines left out by `unknown_codes = "drop_line"` are listed in the report.
pub fn map_sheet_with(sheet: &CountSheet, config: &MappingConfig, context: &MappingContext) -> Result<MappedSheet, MappingError> {
    let mut problems = Vec::new();
    let mut report = MappingReport::default();

    if !sheet.is_confirmed() {
        problems.push(problem(
            "not_confirmed",
            format!("盘点单状态为 {}，只有已确认（Confirmed）的盘点单会同步", sheet.status),
            format!("status is {}, only Confirmed sheets are synced", sheet.status),
        ));
    }
    let date = business_date(sheet, config, &mut problems);
    let found = sheet.wh_id.and_then(|wh_id| config.warehouse_for(sheet.wms_co_id.unwrap_or(0), wh_id));
    if found.is_none() && config.unknown_codes == UnknownCodes::Reject {
        problems.push(unknown_warehouse(sheet));
    }
    if sheet.items.is_empty() {
        problems.push(problem("no_items", "盘点单没有明细行".into(), "the sheet has no items".into()));
    }
    let lines = lines::build_lines(sheet, config, context, &mut problems, &mut report);
    let Some(warehouse) = found else {
        if config.unknown_codes == UnknownCodes::DropLine {
            drop_all_lines(sheet, &lines, &mut problems, &mut report);
        }
        return Err(MappingError { io_id: sheet.io_id, problems });
    };
    if lines.is_empty() && !sheet.items.is_empty() && problems.is_empty() {
        problems.push(problem(
            "no_lines_left",
            format!("盘点单的 {} 条明细行都被略去，没有可写入的行", sheet.items.len()),
            format!("all {} item lines of the sheet were left out, so nothing is left to write", sheet.items.len()),
        ));
    }
    if !problems.is_empty() {
        return Err(MappingError { io_id: sheet.io_id, problems });
    }

    let header = SheetHeader { sheet, config, warehouse, date, note: render_note(&config.note_template, sheet) };
    let bills = match config.target {
        Target::CountInput => targets::count_input(&header, &lines, &mut report),
        Target::GainLoss => targets::gain_loss(&header, &lines, &mut report),
        Target::SchemeWriteback => match &context.existing {
            Some(existing) => targets::scheme_writeback(&header, &lines, existing, &mut problems, &mut report),
            None => {
                let scheme = context.scheme_no.clone().or_else(|| lookup::scheme_no(sheet, config)).unwrap_or_default();
                problems.push(problem(
                    "scheme_bill_not_found",
                    format!("在金蝶中没有找到盘点方案 {scheme} 的物料盘点作业：请先在金蝶中按盘点方案生成物料盘点作业"),
                    format!("no 物料盘点作业 of 盘点方案 {scheme} was found in Kingdee: generate it from the scheme in Kingdee first"),
                ));
                Vec::new()
            }
        },
    };
    if !problems.is_empty() {
        return Err(MappingError { io_id: sheet.io_id, problems });
    }
    Ok(MappedSheet { bills, report })
}

/// Returns `FDate`: the date part of `io_date` or `modified`, which JuShuiTan states as
/// Asia/Shanghai wall-clock time, so the date is the Shanghai business date without conversion.
fn business_date(sheet: &CountSheet, config: &MappingConfig, problems: &mut Vec<MappingProblem>) -> String {
    let (time, key) = match config.date_source {
        DateSource::IoDate => (sheet.io_date, "io_date"),
        DateSource::Modified => (sheet.modified, "modified"),
    };
    match time {
        Some(time) => time.date().format("%Y-%m-%d").to_string(),
        None => {
            problems.push(problem(
                if key == "io_date" { "missing_io_date" } else { "missing_modified" },
                format!("盘点单缺少 {key}（date_source 选定的日期）"),
                format!("{key} is missing, and date_source selects it"),
            ));
            String::new()
        }
    }
}

fn unknown_warehouse(sheet: &CountSheet) -> MappingProblem {
    let (wms_co_id, wh_id) = (sheet.wms_co_id.unwrap_or(0), sheet.wh_id.unwrap_or(0));
    let name = sheet.warehouse.as_deref().unwrap_or("");
    problem(
        "unknown_warehouse",
        format!("仓库 wms_co_id={wms_co_id} wh_id={wh_id}（{name}）未在仓库对照表中：请在 [[mapping.warehouses]] 中添加对应的金蝶仓库编码"),
        format!("warehouse wms_co_id={wms_co_id} wh_id={wh_id} ({name}) is not in the warehouse table: add it to [[mapping.warehouses]]"),
    )
}

/// Drops every line of a sheet whose warehouse is unknown (`unknown_codes = "drop_line"`),
/// lists each in the report, and reports that nothing is left to write.
fn drop_all_lines(sheet: &CountSheet, lines: &[lines::Line<'_>], problems: &mut Vec<MappingProblem>, report: &mut MappingReport) {
    for line in lines {
        report.dropped.push(DroppedLine::of_item(line.item_index, line.item, line.lot.clone(), line.counted, report::DROPPED_UNKNOWN_WAREHOUSE));
    }
    let (wms_co_id, wh_id) = (sheet.wms_co_id.unwrap_or(0), sheet.wh_id.unwrap_or(0));
    let name = sheet.warehouse.as_deref().unwrap_or("");
    let (zh, en): (Vec<String>, Vec<String>) = report.dropped.iter().map(DroppedLine::describe).unzip();
    problems.push(problem(
        "no_lines_left",
        format!("仓库 wms_co_id={wms_co_id} wh_id={wh_id}（{name}）不在仓库对照表中，全部 {} 行已略去，没有可写入的行：{}", zh.len(), zh.join("；")),
        format!("warehouse wms_co_id={wms_co_id} wh_id={wh_id} ({name}) is not in the warehouse table, so all {} lines were left out: {}", en.len(), en.join("; ")),
    ));
}

/// Returns the lowercase hex SHA-256 of a bill model's JSON.
pub fn hash_model(model: &Value) -> String {
    let bytes = serde_json::to_vec(model).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
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

pub(crate) fn problem(code: &'static str, message_zh: String, message_en: String) -> MappingProblem {
    MappingProblem { code, message_zh, message_en }
}

#[cfg(test)]
mod tests;
