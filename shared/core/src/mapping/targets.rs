//! Lines → Kingdee bills, one function per target mode.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::config::{MappingConfig, WarehouseMapping};
use super::lines::Line;
use super::lookup::ExistingCountBill;
use super::report::{DROPPED_ALREADY_WRITTEN, DROPPED_NO_DIFFERENCE, DroppedLine, MappingReport, PlacedLine};
use super::{MappingProblem, SheetHeader, decimal_text, hash_model, problem};
use crate::ports::Bill;

/// Document statuses in which a bill can still be saved: Z 暂存, A 创建, D 重新审核.
const EDITABLE_STATUSES: [&str; 3] = ["Z", "A", "D"];

/// Quantity columns of an entry row.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Columns {
    Count,
    Gain,
    Loss,
}

pub(crate) fn count_input(header: &SheetHeader<'_>, lines: &[Line<'_>], report: &mut MappingReport) -> Vec<Bill> {
    let config = header.config;
    let bill_no = config.bill_no(header.sheet.io_id);
    let entries = place(&bill_no, lines, Columns::Count, header, report);
    vec![bill(header, &config.form_id, &config.bill_type, bill_no, entries)]
}

pub(crate) fn gain_loss(header: &SheetHeader<'_>, lines: &[Line<'_>], report: &mut MappingReport) -> Vec<Bill> {
    let config = header.config;
    let stem = config.bill_no(header.sheet.io_id);
    let gains: Vec<Line<'_>> = lines.iter().filter(|line| line.delta > Decimal::ZERO).cloned().collect();
    let losses: Vec<Line<'_>> = lines.iter().filter(|line| line.delta < Decimal::ZERO).cloned().collect();
    for line in lines.iter().filter(|line| line.delta.is_zero()) {
        report.dropped.push(DroppedLine::of_item(line.item_index, line.item, line.lot.clone(), line.counted, DROPPED_NO_DIFFERENCE));
    }

    let settings = &config.gain_loss;
    let mut bills = Vec::new();
    if !gains.is_empty() {
        let bill_no = format!("{stem}{}", settings.gain_suffix);
        let entries = place(&bill_no, &gains, Columns::Gain, header, report);
        bills.push(bill(header, &settings.gain_form_id, &settings.gain_bill_type, bill_no, entries));
    }
    if !losses.is_empty() {
        let bill_no = format!("{stem}{}", settings.loss_suffix);
        let entries = place(&bill_no, &losses, Columns::Loss, header, report);
        bills.push(bill(header, &settings.loss_form_id, &settings.loss_bill_type, bill_no, entries));
    }
    bills
}

/// Writes counted quantities into the existing bill of a 盘点方案. Rows are matched by material,
/// stock, lot and owner; a matched row gets only its `FCountQty`, so the stock dimensions of a
/// system row (`FIsSystem`) are never sent. Sheet lines with no matching row become new rows
/// (`FEntryID` 0). Several lines of one key are summed into one row.
///
/// A matched row that already has the counted quantity is left out, so a sheet whose
/// write-back was saved before maps to a bill without entries: the writer records it without
/// calling Kingdee. The content hash covers the counted quantity per key and the scheme bill,
/// not the model, because the model changes once the new rows exist in Kingdee.
pub(crate) fn scheme_writeback(
    header: &SheetHeader<'_>,
    lines: &[Line<'_>],
    existing: &ExistingCountBill,
    problems: &mut Vec<MappingProblem>,
    report: &mut MappingReport,
) -> Vec<Bill> {
    let config = header.config;
    if !EDITABLE_STATUSES.contains(&existing.document_status.as_str()) {
        problems.push(problem(
            "scheme_bill_not_editable",
            format!("盘点方案 {} 的物料盘点作业 {} 状态为 {}（已提交或已审核），不能回写盘点数量：请先在金蝶中撤销或反审核", existing.scheme_no, existing.bill_no, existing.document_status),
            format!("物料盘点作业 {} of scheme {} has status {} (submitted or audited), so counted quantities cannot be written: cancel or unaudit it in Kingdee first", existing.bill_no, existing.scheme_no, existing.document_status),
        ));
        return Vec::new();
    }

    let stock = header.warehouse.stock.as_str();
    let owner = config.owner();
    // Key: material and lot; the stock and owner are the same for every line of a sheet.
    let mut groups: BTreeMap<(String, String), Vec<&Line<'_>>> = BTreeMap::new();
    for line in lines {
        groups.entry((line.material.clone(), line.lot.clone().unwrap_or_default())).or_default().push(line);
    }

    let mut entries = Vec::new();
    let mut intent = Vec::new();
    for ((material, lot), group) in groups {
        let counted: Decimal = group.iter().map(|line| line.counted).sum();
        intent.push(json!([material, stock, lot, owner, decimal_text(counted)]));
        let matches: Vec<_> = existing
            .rows
            .iter()
            .filter(|row| row.material == material && row.stock == stock && row.lot == lot && row.owner == owner)
            .collect();
        let entry = match matches.as_slice() {
            [] => {
                let mut entry = Map::new();
                entry.insert("FEntryID".into(), json!(0));
                dimension_fields(&mut entry, group[0], header);
                entry.insert("FCountQty".into(), json!(decimal_text(counted)));
                note(&mut entry, group[0], config);
                Value::Object(entry)
            }
            [row] if row.count_qty.is_some_and(|stored| stored == counted) => {
                for line in &group {
                    report.dropped.push(DroppedLine::of_item(line.item_index, line.item, line.lot.clone(), line.counted, DROPPED_ALREADY_WRITTEN));
                }
                continue;
            }
            [row] => json!({ "FEntryID": row.entry_id, "FCountQty": decimal_text(counted) }),
            rows => {
                let ids: Vec<String> = rows.iter().map(|row| row.entry_id.to_string()).collect();
                problems.push(problem(
                    "ambiguous_scheme_rows",
                    format!("物料 {material} 批号 {lot:?} 在物料盘点作业 {} 中有多行（FEntryID {}），无法确定回写哪一行", existing.bill_no, ids.join(", ")),
                    format!("material {material} lot {lot:?} matches several rows of {} (FEntryID {}), so the row to write is unknown", existing.bill_no, ids.join(", ")),
                ));
                continue;
            }
        };
        for line in &group {
            report.placed.push(PlacedLine { item_index: line.item_index, lot: line.lot.clone(), bill_no: existing.bill_no.clone(), entry_index: entries.len() });
        }
        entries.push(entry);
    }

    let entry_count = entries.len();
    let model = json!({ "FID": existing.fid, "FBillEntry": entries });
    let content_hash = hash_model(&json!({ "FID": existing.fid, "FBillNo": existing.bill_no, "counted": intent }));
    vec![Bill { form_id: config.form_id.clone(), bill_no: existing.bill_no.clone(), io_id: header.sheet.io_id, model, entry_count, content_hash }]
}

fn place(bill_no: &str, lines: &[Line<'_>], columns: Columns, header: &SheetHeader<'_>, report: &mut MappingReport) -> Vec<Value> {
    lines
        .iter()
        .enumerate()
        .map(|(entry_index, line)| {
            report.placed.push(PlacedLine { item_index: line.item_index, lot: line.lot.clone(), bill_no: bill_no.to_string(), entry_index });
            entry(line, columns, header)
        })
        .collect()
}

fn bill(header: &SheetHeader<'_>, form_id: &str, bill_type: &str, bill_no: String, entries: Vec<Value>) -> Bill {
    let config = header.config;
    let mut model = Map::new();
    for (key, value) in &config.header_fields {
        model.insert(key.clone(), value.clone());
    }
    model.insert("FBillNo".into(), json!(bill_no));
    model.insert("FDate".into(), json!(header.date));
    model.insert("FBillTypeID".into(), json!({ "FNUMBER": bill_type }));
    model.insert("FStockOrgId".into(), json!({ "FNumber": config.stock_org }));
    model.insert("FNoteHead".into(), json!(header.note));
    if let Some(flag) = config.zero_stock_in_count {
        model.insert("FZeroStockInCount".into(), json!(flag));
    }
    if let Some(flag) = config.allow_add_material {
        model.insert("FAllowAddMaterial".into(), json!(flag));
    }
    if let Some(flag) = config.update_stock {
        model.insert("FUpdateStock".into(), json!(flag));
    }
    if config.fin_date {
        model.insert("FFinDate".into(), json!(header.date));
    }
    let entry_count = entries.len();
    model.insert("FBillEntry".into(), Value::Array(entries));

    let model = Value::Object(model);
    let content_hash = hash_model(&model);
    Bill { form_id: form_id.to_string(), bill_no, io_id: header.sheet.io_id, model, entry_count, content_hash }
}

fn entry(line: &Line<'_>, columns: Columns, header: &SheetHeader<'_>) -> Value {
    let (gain, loss) = if line.delta >= Decimal::ZERO { (line.delta, Decimal::ZERO) } else { (Decimal::ZERO, -line.delta) };
    let mut entry = Map::new();
    dimension_fields(&mut entry, line, header);
    entry.insert("FAcctQty".into(), json!(decimal_text(line.book())));
    entry.insert("FCountQty".into(), json!(decimal_text(line.counted)));
    if columns != Columns::Loss {
        entry.insert("FGainQty".into(), json!(decimal_text(gain)));
    }
    if columns != Columns::Gain {
        entry.insert("FLossQty".into(), json!(decimal_text(loss)));
    }
    note(&mut entry, line, header.config);
    Value::Object(entry)
}

/// Inserts the fields that place a row in stock: material, unit, stock, location, lot, dates,
/// stock status, owner and keeper.
fn dimension_fields(entry: &mut Map<String, Value>, line: &Line<'_>, header: &SheetHeader<'_>) {
    let config = header.config;
    let warehouse: &WarehouseMapping = header.warehouse;
    entry.insert("FMaterialId".into(), json!({ "FNumber": line.material }));
    if let Some(unit) = &line.unit {
        entry.insert("FUnitID".into(), json!({ "FNumber": unit }));
        entry.insert("FBaseUnitId".into(), json!({ "FNumber": unit }));
    }
    entry.insert("FStockId".into(), json!({ "FNumber": warehouse.stock }));
    if let Some(location) = &warehouse.stock_location {
        entry.insert("FStockLocId".into(), json!({ location.key.clone(): { "FNumber": location.value } }));
    }
    entry.insert("FStockStatusId".into(), json!({ "FNumber": config.stock_status }));
    entry.insert("FOwnerTypeId".into(), json!(config.owner_type));
    entry.insert("FOwnerId".into(), json!({ "FNumber": config.owner() }));
    entry.insert("FKeeperTypeId".into(), json!(config.keeper_type));
    entry.insert("FKeeperId".into(), json!({ "FNumber": config.keeper() }));
    if let Some(lot) = &line.lot {
        entry.insert("FLot".into(), json!({ "FNumber": lot }));
    }
    if let Some(date) = line.produced {
        entry.insert("FProduceDate".into(), json!(date.format("%Y-%m-%d").to_string()));
    }
    if let Some(date) = line.expires {
        entry.insert("FExpiryDate".into(), json!(date.format("%Y-%m-%d").to_string()));
    }
}

/// Inserts `FNote` from `entry_note_template`. A note whose placeholders are all empty (e.g. a
/// line without `ioi_id` under the default template) is not sent.
fn note(entry: &mut Map<String, Value>, line: &Line<'_>, config: &MappingConfig) {
    let item = line.item;
    let values = [
        ("{ioi_id}", item.ioi_id.map(|id| id.to_string()).unwrap_or_default()),
        ("{sku_id}", item.sku_id.clone()),
        ("{i_id}", item.i_id.clone().unwrap_or_default()),
        ("{name}", item.name.clone().unwrap_or_default()),
        ("{properties_value}", item.properties_value.clone().unwrap_or_default()),
        ("{lot}", line.lot.clone().unwrap_or_default()),
    ];
    let template = &config.entry_note_template;
    let used: Vec<&(&str, String)> = values.iter().filter(|(placeholder, _)| template.contains(placeholder)).collect();
    if !used.is_empty() && used.iter().all(|(_, value)| value.is_empty()) {
        return;
    }
    let mut text = template.clone();
    for (placeholder, value) in &values {
        text = text.replace(placeholder, value);
    }
    let text = text.trim();
    if !text.is_empty() {
        entry.insert("FNote".into(), json!(text));
    }
}
