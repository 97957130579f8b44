//! Sheet items → bill lines: material codes, lots, units and decimal precision. The lines are
//! target-neutral; [`super::targets`] turns them into bills.

use std::collections::{BTreeSet, HashMap};

use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};

use super::config::{LotAllocation, LotSource, MappingConfig, MaterialSource, Rounding, UnknownCodes};
use super::report::{DroppedLine, MappingReport, RoundedLine};
use super::{MappingContext, MappingProblem, decimal_text, problem};
use crate::sheet::{CountItem, CountSheet, SheetBatch};

/// One row to be written: an item, or one lot of an item.
#[derive(Debug, Clone)]
pub(crate) struct Line<'a> {
    /// Position of the item in the sheet's `items`.
    pub item_index: usize,
    pub item: &'a CountItem,
    pub material: String,
    pub unit: Option<String>,
    pub lot: Option<String>,
    pub produced: Option<NaiveDate>,
    pub expires: Option<NaiveDate>,
    pub counted: Decimal,
    /// Gain (positive) or loss (negative), already in the gain-positive convention.
    pub delta: Decimal,
}

impl Line<'_> {
    pub fn book(&self) -> Decimal {
        self.counted - self.delta
    }
}

/// Source of material codes for one mapping run.
enum Materials<'c> {
    Identity,
    Table(std::sync::Arc<HashMap<String, String>>),
    Resolved(&'c HashMap<String, String>),
    /// `kingdee_lookup` without a resolved set: every SKU is reported.
    Unresolved,
}

impl Materials<'_> {
    fn code(&self, sku: &str) -> Option<String> {
        match self {
            Materials::Identity => Some(sku.to_string()),
            Materials::Table(table) => table.get(sku).cloned(),
            Materials::Resolved(resolved) => resolved.get(sku).cloned(),
            Materials::Unresolved => None,
        }
    }
}

/// Builds the lines of a sheet. Lines of unknown materials are dropped (and reported) or
/// reported as problems, by `unknown_codes`.
pub(crate) fn build_lines<'a>(
    sheet: &'a CountSheet,
    config: &MappingConfig,
    context: &MappingContext,
    problems: &mut Vec<MappingProblem>,
    report: &mut MappingReport,
) -> Vec<Line<'a>> {
    let materials = match (config.materials.source, &context.materials) {
        (MaterialSource::Identity, _) => Materials::Identity,
        (MaterialSource::Table, _) => match config.materials.table() {
            Ok(table) => Materials::Table(table),
            Err(error) => {
                problems.push(problem("material_table_unreadable", format!("物料对照表无法读取：{error}"), error.to_string()));
                return Vec::new();
            }
        },
        (MaterialSource::KingdeeLookup, Some(resolved)) => Materials::Resolved(resolved),
        (MaterialSource::KingdeeLookup, None) => {
            problems.push(problem(
                "material_lookup_missing",
                "materials.source = \"kingdee_lookup\" 需要先在金蝶中查询物料，本次调用没有提供查询结果".into(),
                "materials.source = \"kingdee_lookup\" needs the materials looked up in Kingdee first, and this call provided none".into(),
            ));
            Materials::Unresolved
        }
    };

    let use_sheet_lots = config.lots.source != LotSource::Item;
    let mut batches_by_sku: HashMap<&str, Vec<&SheetBatch>> = HashMap::new();
    if use_sheet_lots {
        for batch in &sheet.batchs {
            batches_by_sku.entry(batch.sku_id.as_str()).or_default().push(batch);
        }
    }
    let mut item_count_by_sku: HashMap<&str, usize> = HashMap::new();
    for item in &sheet.items {
        *item_count_by_sku.entry(item.sku_id.as_str()).or_default() += 1;
    }
    let mut orphan_skus: Vec<&&str> = batches_by_sku.keys().filter(|sku| !item_count_by_sku.contains_key(**sku)).collect();
    orphan_skus.sort();
    for sku in orphan_skus {
        problems.push(problem(
            "batch_without_item",
            format!("批次列表中的 SKU {sku} 没有对应的明细行"),
            format!("sku {sku} has batches but no item line"),
        ));
    }

    let mut unknown_materials = BTreeSet::new();
    let mut ambiguous_skus = std::collections::HashSet::new();
    let mut lines = Vec::new();
    for (item_index, item) in sheet.items.iter().enumerate() {
        let Some(counted) = item.r_qty else {
            problems.push(problem(
                "missing_quantity",
                format!("SKU {} 的明细行缺少 r_qty（盘点后数量）", item.sku_id),
                format!("item of sku {} has no r_qty", item.sku_id),
            ));
            continue;
        };
        let delta = match config.qty_sign {
            super::QtySign::GainPositive => item.qty.unwrap_or_default(),
            super::QtySign::LossPositive => -item.qty.unwrap_or_default(),
        };
        let Some(material) = materials.code(&item.sku_id) else {
            match config.unknown_codes {
                UnknownCodes::Reject => {
                    unknown_materials.insert(item.sku_id.clone());
                }
                UnknownCodes::DropLine => report.dropped.push(DroppedLine::unknown_material(item_index, item, counted)),
            }
            continue;
        };
        let base = Line {
            item_index,
            item,
            unit: config.unit_for(&material).map(str::to_string),
            material,
            lot: None,
            produced: None,
            expires: None,
            counted,
            delta,
        };

        let item_lot = item.batch_id.as_deref().filter(|lot| !lot.is_empty());
        if config.lots.source != LotSource::Sheet {
            if let Some(lot) = item_lot {
                lines.push(Line { lot: Some(lot.to_string()), produced: item.product_date, expires: item.expiration_date, ..base });
                continue;
            }
        }
        let Some(batches) = batches_by_sku.get(item.sku_id.as_str()) else {
            lines.push(base);
            continue;
        };
        if item_count_by_sku[item.sku_id.as_str()] > 1 {
            if !ambiguous_skus.insert(item.sku_id.as_str()) {
                continue;
            }
            problems.push(problem(
                "ambiguous_batches",
                format!("SKU {} 有多条明细行，无法分配批次列表中的批次", item.sku_id),
                format!("sku {} has several item lines, so its sheet-level batches cannot be assigned", item.sku_id),
            ));
            continue;
        }
        lines.extend(lot_lines(config.lots.allocation, &base, batches, problems));
    }

    for sku in unknown_materials {
        let (zh, en) = match config.materials.source {
            MaterialSource::Table => ("请在物料对照表中添加该 SKU", "add it to the material table file"),
            _ => ("请在金蝶物料中维护该 SKU", "maintain it in Kingdee's materials"),
        };
        problems.push(problem(
            "unknown_material",
            format!("SKU {sku} 没有对应的金蝶物料编码：{zh}，或设置 unknown_codes = \"drop_line\""),
            format!("sku {sku} has no Kingdee material code: {en}, or set unknown_codes = \"drop_line\""),
        ));
    }
    for line in &mut lines {
        apply_precision(line, config, problems, report);
    }
    lines
}

/// Splits one item over its sheet-level lots. Each lot's `qty` is read as its counted quantity,
/// and the lots must add up to the item's `r_qty`. The gain or loss is spread by `allocation`,
/// so per-SKU totals are preserved.
fn lot_lines<'a>(allocation: LotAllocation, base: &Line<'a>, batches: &[&SheetBatch], problems: &mut Vec<MappingProblem>) -> Vec<Line<'a>> {
    let lot_total: Decimal = batches.iter().map(|batch| batch.qty.unwrap_or_default()).sum();
    if lot_total != base.counted {
        let sku = &base.item.sku_id;
        let (total, counted) = (decimal_text(lot_total), decimal_text(base.counted));
        problems.push(problem(
            "batch_quantity_mismatch",
            format!("SKU {sku} 的批次数量合计 {total} 与盘点后数量 r_qty {counted} 不一致"),
            format!("batch quantities of sku {sku} add up to {total} but r_qty is {counted}"),
        ));
        return Vec::new();
    }

    let counts: Vec<Decimal> = batches.iter().map(|batch| batch.qty.unwrap_or_default()).collect();
    let deltas = allocate_delta(allocation, base.delta, &counts);
    batches
        .iter()
        .zip(counts.iter().zip(deltas))
        .map(|(batch, (counted, delta))| Line {
            lot: Some(batch.batch_no.clone()),
            produced: batch.product_date,
            expires: batch.expiration_date,
            counted: *counted,
            delta,
            ..base.clone()
        })
        .collect()
}

/// Spreads a delta over lots with the given counted quantities; the parts add up to `delta`.
pub(crate) fn allocate_delta(allocation: LotAllocation, delta: Decimal, counts: &[Decimal]) -> Vec<Decimal> {
    let mut parts = vec![Decimal::ZERO; counts.len()];
    if parts.is_empty() {
        return parts;
    }
    if allocation == LotAllocation::FirstLot || delta <= Decimal::ZERO {
        parts[0] = delta;
        return parts;
    }
    let mut left = delta;
    for (part, counted) in parts.iter_mut().zip(counts) {
        let take = left.min((*counted).max(Decimal::ZERO));
        *part = take;
        left -= take;
    }
    // A gain larger than everything counted cannot keep all book quantities at zero or more;
    // the rest goes on the first lot.
    parts[0] += left;
    parts
}

/// Checks the decimal places of a line's quantities against its unit's precision.
fn apply_precision(line: &mut Line<'_>, config: &MappingConfig, problems: &mut Vec<MappingProblem>, report: &mut MappingReport) {
    let Some(unit) = line.unit.clone() else { return };
    let Some(&places) = config.units.precision.get(&unit) else { return };
    let too_precise = |value: Decimal| value.normalize().scale() > places;
    if !too_precise(line.counted) && !too_precise(line.delta) {
        return;
    }
    let sku = &line.item.sku_id;
    let lot = line.lot.as_deref().map(|lot| format!(" lot {lot}")).unwrap_or_default();
    match config.units.rounding {
        Rounding::Reject => problems.push(problem(
            "precision_exceeded",
            format!(
                "SKU {sku}{lot} 的数量 r_qty {} / qty {} 超过单位 {unit} 允许的 {places} 位小数：请修正盘点单，或设置 units.rounding = \"round_half_even\"",
                decimal_text(line.counted),
                decimal_text(line.delta)
            ),
            format!(
                "sku {sku}{lot}: quantities r_qty {} / qty {} have more than the {places} decimal places unit {unit} allows: fix the sheet or set units.rounding = \"round_half_even\"",
                decimal_text(line.counted),
                decimal_text(line.delta)
            ),
        )),
        Rounding::RoundHalfEven => {
            // The counted and the book quantity are rounded, and the delta is their difference,
            // so FAcctQty stays the rounded book quantity Kingdee holds.
            let round = |value: Decimal| value.round_dp_with_strategy(places, RoundingStrategy::MidpointNearestEven);
            let counted = round(line.counted);
            let delta = counted - round(line.book());
            report.rounded.push(RoundedLine {
                item_index: line.item_index,
                ioi_id: line.item.ioi_id,
                sku_id: sku.clone(),
                lot: line.lot.clone(),
                unit,
                places,
                count_qty_from: decimal_text(line.counted),
                count_qty_to: decimal_text(counted),
                delta_from: decimal_text(line.delta),
                delta_to: decimal_text(delta),
            });
            line.counted = counted;
            line.delta = delta;
        }
    }
}
