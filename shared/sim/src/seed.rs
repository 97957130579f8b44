//! The seeded demo data set: count sheets, materials, stocks and the warehouse table.
//!
//! Generation is deterministic: a fixed-seed [`StdRng`] and no clock, so every call returns the
//! same sheets. NOTE: `StdRng`'s algorithm may change in a new major version of `rand`, which
//! would change the data set but not its counts or properties.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};
use countsync_core::mapping::{MappingConfig, WarehouseMapping};
use countsync_core::sheet::{CONFIRMED, CountItem, CountSheet, SerialNumber, SheetBatch};
use countsync_core::time::from_shanghai;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;

/// Kingdee stock organization of the demo tenant.
pub const DEMO_STOCK_ORG: &str = "100";
/// Number of sheets in the data set.
pub const DEMO_SHEET_COUNT: usize = 400;
/// Number of materials in the catalogue.
pub const DEMO_MATERIAL_COUNT: usize = 300;
/// Item lines of the one large confirmed sheet.
pub const LARGE_SHEET_LINES: usize = 5_000;
/// `io_id` of the first sheet; the others follow without gaps.
pub const FIRST_IO_ID: i64 = 700_001;

const SEED: u64 = 0x4A53_5432_4B44_0001;
/// Position of the large sheet in the data set.
const LARGE_SHEET_INDEX: usize = 200;
const MAX_ITEMS_PER_SHEET: usize = 30;

/// A JuShuiTan warehouse of the demo tenant.
struct DemoWarehouse {
    wms_co_id: i64,
    wh_id: i64,
    name: &'static str,
    stock: &'static str,
}

const WAREHOUSES: [DemoWarehouse; 4] = [
    DemoWarehouse { wms_co_id: 0, wh_id: 1, name: "主仓", stock: "CK001" },
    DemoWarehouse { wms_co_id: 0, wh_id: 2, name: "销退仓", stock: "CK002" },
    DemoWarehouse { wms_co_id: 0, wh_id: 4, name: "次品仓", stock: "CK003" },
    DemoWarehouse { wms_co_id: 10001, wh_id: 1, name: "分仓主仓", stock: "CK004" },
];

/// Returns the `io_id` of the confirmed sheet with [`LARGE_SHEET_LINES`] items.
pub fn demo_large_sheet_io_id() -> i64 {
    FIRST_IO_ID + LARGE_SHEET_INDEX as i64
}

/// Returns the first and last modification time of the data set, Asia/Shanghai wall clock.
pub fn demo_modified_bounds() -> (NaiveDateTime, NaiveDateTime) {
    let first = NaiveDate::from_ymd_opt(2026, 10, 1).and_then(|date| date.and_hms_opt(0, 0, 0));
    let last = NaiveDate::from_ymd_opt(2026, 11, 30).and_then(|date| date.and_hms_opt(23, 59, 0));
    (first.unwrap_or_default(), last.unwrap_or_default())
}

/// Returns a back-fill range `[begin, end)` as instants that covers every demo sheet.
pub fn demo_modified_range() -> (DateTime<Utc>, DateTime<Utc>) {
    let (first, last) = demo_modified_bounds();
    (from_shanghai(first), from_shanghai(last) + Duration::minutes(1))
}

/// Returns the Kingdee stock numbers the demo warehouses map to.
pub fn demo_stocks() -> Vec<String> {
    WAREHOUSES.iter().map(|warehouse| warehouse.stock.to_string()).collect()
}

/// Returns the warehouse table of the demo tenant.
pub fn demo_warehouses() -> Vec<WarehouseMapping> {
    WAREHOUSES
        .iter()
        .map(|warehouse| WarehouseMapping { wms_co_id: warehouse.wms_co_id, wh_id: warehouse.wh_id, stock: warehouse.stock.to_string(), stock_location: None })
        .collect()
}

/// Returns the mapping settings under which every confirmed demo sheet maps.
pub fn demo_mapping() -> MappingConfig {
    MappingConfig { stock_org: DEMO_STOCK_ORG.to_string(), warehouses: demo_warehouses(), ..Default::default() }
}

/// Returns the material number of catalogue entry `index` (from 1), e.g. `SKU-000123`.
pub fn demo_sku(index: usize) -> String {
    format!("SKU-{index:06}")
}

/// Returns every SKU the demo sheets use, sorted.
pub fn demo_materials() -> Vec<String> {
    let used: BTreeSet<String> = demo_sheets()
        .iter()
        .flat_map(|sheet| sheet.items.iter().map(|item| item.sku_id.clone()))
        .collect();
    used.into_iter().collect()
}

/// Returns the demo sheets, ordered by `io_id`.
pub fn demo_sheets() -> Vec<CountSheet> {
    let mut rng = StdRng::seed_from_u64(SEED);
    (0..DEMO_SHEET_COUNT).map(|index| generate_sheet(&mut rng, index)).collect()
}

/// Placement of a sheet's batches.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BatchStyle {
    None,
    OnItems,
    SheetLevel,
}

fn generate_sheet(rng: &mut StdRng, index: usize) -> CountSheet {
    let io_id = FIRST_IO_ID + index as i64;
    let large = index == LARGE_SHEET_INDEX;
    let warehouse = &WAREHOUSES[rng.random_range(0..WAREHOUSES.len())];
    let modified = random_modified(rng);
    let io_date = (modified - Duration::days(rng.random_range(0..=2))).date().and_hms_opt(0, 0, 0);
    let status = if large { CONFIRMED.to_string() } else { random_status(rng) };
    let style = if large {
        BatchStyle::None
    } else {
        [BatchStyle::None, BatchStyle::OnItems, BatchStyle::SheetLevel][rng.random_range(0..3)]
    };

    let skus = if large { large_sheet_skus() } else { random_skus(rng) };
    let mut items = Vec::with_capacity(skus.len());
    let mut batchs = Vec::new();
    for (line, sku) in skus.into_iter().enumerate() {
        let ioi_id = io_id * 10_000 + line as i64 + 1;
        let item = generate_item(rng, ioi_id, sku, style == BatchStyle::OnItems, modified.date());
        if style == BatchStyle::SheetLevel {
            batchs.extend(split_into_batches(rng, &item, modified.date()));
        }
        items.push(item);
    }

    CountSheet {
        io_id,
        io_date,
        status,
        warehouse: Some(warehouse.name.to_string()),
        wh_id: Some(warehouse.wh_id),
        wms_co_id: Some(warehouse.wms_co_id),
        kind: Some("盘点".to_string()),
        creator_name: Some(["张伟", "王芳", "李娜", "刘洋"][rng.random_range(0..4)].to_string()),
        remark: rng.random_bool(0.5).then(|| format!("{} 月度盘点", modified.format("%Y-%m"))),
        modified: Some(modified),
        f_status: Some(if rng.random_bool(0.5) { "WaitConfirm" } else { "Confirmed" }.to_string()),
        lock_wh_id: None,
        lock_wh_name: None,
        labels: random_labels(rng),
        sns: serial_numbers(io_id, &items),
        items,
        batchs,
    }
}

fn random_modified(rng: &mut StdRng) -> NaiveDateTime {
    let (first, last) = demo_modified_bounds();
    let seconds = rng.random_range(0..=(last - first).num_seconds());
    first + Duration::seconds(seconds)
}

/// Draws a status: about 70% `Confirmed`, the rest spread over the other statuses.
fn random_status(rng: &mut StdRng) -> String {
    let status = match rng.random_range(0..100) {
        0..70 => CONFIRMED,
        70..78 => "WaitConfirm",
        78..86 => "Cancelled",
        86..94 => "Archive",
        _ => "Delete",
    };
    status.to_string()
}

/// Draws distinct SKUs, so sheet-level batches can be assigned to exactly one item line.
fn random_skus(rng: &mut StdRng) -> Vec<String> {
    let count = rng.random_range(1..=MAX_ITEMS_PER_SHEET);
    rand::seq::index::sample(rng, DEMO_MATERIAL_COUNT, count).into_iter().map(|index| demo_sku(index + 1)).collect()
}

/// Returns SKUs cycling through the whole catalogue, so the large sheet uses every material.
fn large_sheet_skus() -> Vec<String> {
    (0..LARGE_SHEET_LINES).map(|line| demo_sku(line % DEMO_MATERIAL_COUNT + 1)).collect()
}

/// Converts hundredths to a quantity with two decimals.
fn hundredths(value: i64) -> Decimal {
    Decimal::new(value, 2)
}

fn generate_item(rng: &mut StdRng, ioi_id: i64, sku: String, with_batch: bool, counted_on: NaiveDate) -> CountItem {
    // One line in ten is counted as zero.
    let counted = if rng.random_bool(0.1) { 0 } else { rng.random_range(1..=50_000) };
    // Gains never exceed the counted quantity, so the book quantity stays non-negative.
    let delta = match rng.random_range(0..3) {
        0 => 0,
        1 => rng.random_range(0..=counted),
        _ => -rng.random_range(1..=10_000),
    };
    let produced = counted_on - Duration::days(rng.random_range(10..400));
    let index: usize = sku.trim_start_matches("SKU-").parse().unwrap_or(0);
    CountItem {
        ioi_id: Some(ioi_id),
        i_id: Some(format!("STYLE-{:04}", index.div_ceil(3))),
        name: Some(format!("演示商品 {index}")),
        properties_value: Some(["红色;M", "蓝色;L", "黑色;XL"][index % 3].to_string()),
        r_qty: Some(hundredths(counted)),
        qty: Some(hundredths(delta)),
        batch_id: with_batch.then(|| format!("LOT-{}-{}", produced.format("%y%m%d"), ioi_id % 1000)),
        product_date: with_batch.then_some(produced),
        supplier_id: with_batch.then(|| "SUP-01".to_string()),
        expiration_date: with_batch.then(|| produced + Duration::days(730)),
        sku_id: sku,
    }
}

/// Splits an item's counted quantity over one to three lots whose quantities add up exactly.
fn split_into_batches(rng: &mut StdRng, item: &CountItem, counted_on: NaiveDate) -> Vec<SheetBatch> {
    let total = item.r_qty.unwrap_or_default();
    let total_hundredths = (total * Decimal::ONE_HUNDRED).trunc().try_into().unwrap_or(0i64);
    let lots = rng.random_range(1..=3).min(total_hundredths.max(1));
    let mut remaining = total_hundredths;
    let mut batches = Vec::new();
    for lot in 0..lots {
        let quantity = if lot + 1 == lots { remaining } else { rng.random_range(0..=remaining) };
        remaining -= quantity;
        let produced = counted_on - Duration::days(30 * (lot + 1));
        batches.push(SheetBatch {
            sku_id: item.sku_id.clone(),
            batch_no: format!("B{}-{}-{}", produced.format("%y%m"), item.ioi_id.unwrap_or(0) % 10_000, lot + 1),
            qty: Some(hundredths(quantity)),
            product_date: Some(produced),
            supplier_id: Some("SUP-02".to_string()),
            supplier_name: Some("演示供应商".to_string()),
            expiration_date: Some(produced + Duration::days(365)),
        });
    }
    batches
}

fn random_labels(rng: &mut StdRng) -> Vec<String> {
    match rng.random_range(0..4) {
        0 => vec!["月度盘点".to_string()],
        1 => vec!["抽盘".to_string(), "复盘".to_string()],
        _ => Vec::new(),
    }
}

/// Returns three serial numbers for the first item of every tenth sheet.
fn serial_numbers(io_id: i64, items: &[CountItem]) -> Vec<SerialNumber> {
    if io_id % 10 != 0 {
        return Vec::new();
    }
    let Some(first) = items.first() else { return Vec::new() };
    (1..=3).map(|n| SerialNumber { sku_id: first.sku_id.clone(), sn: format!("SN{io_id}{n:02}") }).collect()
}

/// Returns `confirmed` small confirmed sheets and `other` sheets of other statuses, with ids
/// from `first_io_id` and `modified` spread evenly over `[start, start + span)` (Asia/Shanghai
/// wall clock). Every sheet has one item line; the data needs no random generator.
pub fn bulk_sheets(first_io_id: i64, confirmed: usize, other: usize, start: NaiveDateTime, span: Duration) -> Vec<CountSheet> {
    let total = confirmed + other;
    let step = span.num_seconds() / total.max(1) as i64;
    const OTHER_STATUSES: [&str; 4] = ["WaitConfirm", "Cancelled", "Archive", "Delete"];
    (0..total)
        .map(|index| {
            // Other statuses are interleaved so every window mixes both kinds.
            let status = if index % (total / other.max(1)).max(1) == 0 && index / (total / other.max(1)).max(1) < other {
                OTHER_STATUSES[index % OTHER_STATUSES.len()]
            } else {
                CONFIRMED
            };
            let mut sheet = sheet_with_lines(first_io_id + index as i64, 1, start + Duration::seconds(step * index as i64));
            sheet.status = status.to_string();
            sheet
        })
        .collect()
}

/// Returns a confirmed sheet in the main warehouse with `lines` item lines, cycling through the
/// catalogue.
pub fn sheet_with_lines(io_id: i64, lines: usize, modified: NaiveDateTime) -> CountSheet {
    let items = (0..lines)
        .map(|line| CountItem {
            ioi_id: Some(io_id * 100_000 + line as i64 + 1),
            sku_id: demo_sku(line % DEMO_MATERIAL_COUNT + 1),
            i_id: Some(format!("STYLE-{:04}", line % 100)),
            name: Some(format!("演示商品 {}", line % DEMO_MATERIAL_COUNT + 1)),
            properties_value: Some("红色;M".to_string()),
            r_qty: Some(hundredths(1_000 + line as i64)),
            qty: Some(hundredths(line as i64 % 7 - 3)),
            batch_id: None,
            product_date: None,
            supplier_id: None,
            expiration_date: None,
        })
        .collect();
    CountSheet {
        io_id,
        io_date: modified.date().and_hms_opt(0, 0, 0),
        status: CONFIRMED.to_string(),
        warehouse: Some(WAREHOUSES[0].name.to_string()),
        wh_id: Some(WAREHOUSES[0].wh_id),
        wms_co_id: Some(WAREHOUSES[0].wms_co_id),
        kind: Some("盘点".to_string()),
        creator_name: Some("张伟".to_string()),
        remark: None,
        modified: Some(modified),
        f_status: Some("Confirmed".to_string()),
        lock_wh_id: None,
        lock_wh_name: None,
        labels: Vec::new(),
        items,
        batchs: Vec::new(),
        sns: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use countsync_core::mapping::map_sheet;

    use super::*;

    #[test]
    fn demo_counts() {
        let sheets = demo_sheets();
        assert_eq!(sheets.len(), DEMO_SHEET_COUNT);
        let confirmed = sheets.iter().filter(|sheet| sheet.is_confirmed()).count();
        // 288 of 400 is 72%, the about 70% the generator aims for.
        assert_eq!(confirmed, 288, "confirmed sheets");
        let large: Vec<_> = sheets.iter().filter(|sheet| sheet.items.len() == LARGE_SHEET_LINES).collect();
        assert_eq!(large.len(), 1);
        assert_eq!(large[0].io_id, demo_large_sheet_io_id());
        assert!(large[0].is_confirmed());
        assert!(sheets.iter().filter(|sheet| sheet.io_id != demo_large_sheet_io_id()).all(|sheet| (1..=30).contains(&sheet.items.len())));
    }

    #[test]
    fn demo_is_deterministic() {
        assert_eq!(demo_sheets(), demo_sheets());
    }

    #[test]
    fn demo_ids_are_unique() {
        let sheets = demo_sheets();
        let ids: BTreeSet<i64> = sheets.iter().map(|sheet| sheet.io_id).collect();
        assert_eq!(ids.len(), sheets.len());
    }

    #[test]
    fn every_status_appears() {
        let mut by_status: HashMap<String, usize> = HashMap::new();
        for sheet in demo_sheets() {
            *by_status.entry(sheet.status).or_default() += 1;
        }
        for status in ["Confirmed", "WaitConfirm", "Cancelled", "Archive", "Delete"] {
            assert!(by_status.get(status).copied().unwrap_or(0) > 0, "no sheet with status {status}");
        }
    }

    #[test]
    fn modified_within_bounds() {
        let (first, last) = demo_modified_bounds();
        for sheet in demo_sheets() {
            let modified = sheet.modified.unwrap();
            assert!(first <= modified, "sheet {} modified {modified}", sheet.io_id);
            assert!(modified <= last, "sheet {} modified {modified}", sheet.io_id);
        }
    }

    #[test]
    fn every_warehouse_used() {
        let used: BTreeSet<(i64, i64)> = demo_sheets().iter().map(|sheet| (sheet.wms_co_id.unwrap(), sheet.wh_id.unwrap())).collect();
        assert_eq!(used.len(), WAREHOUSES.len());
    }

    #[test]
    fn quantities_cover_cases() {
        let sheets = demo_sheets();
        let items: Vec<&CountItem> = sheets.iter().flat_map(|sheet| &sheet.items).collect();
        assert!(items.iter().any(|item| item.r_qty == Some(Decimal::ZERO)), "no counted zero");
        assert!(items.iter().any(|item| item.qty.unwrap() > Decimal::ZERO), "no gain");
        assert!(items.iter().any(|item| item.qty.unwrap() < Decimal::ZERO), "no loss");
        assert!(items.iter().any(|item| item.qty == Some(Decimal::ZERO)), "no unchanged line");
        assert!(items.iter().any(|item| item.r_qty.unwrap().fract() != Decimal::ZERO), "no fractional quantity");
        assert!(items.iter().all(|item| item.r_qty.unwrap().scale() <= 2));
    }

    #[test]
    fn batch_styles_present() {
        let sheets = demo_sheets();
        assert!(sheets.iter().any(|sheet| sheet.items.iter().any(|item| item.batch_id.is_some())));
        assert!(sheets.iter().any(|sheet| !sheet.batchs.is_empty()));
        assert!(sheets.iter().any(|sheet| sheet.batchs.is_empty() && sheet.items.iter().all(|item| item.batch_id.is_none())));
        assert!(sheets.iter().any(|sheet| !sheet.sns.is_empty()));
    }

    #[test]
    fn sheet_batches_add_up() {
        for sheet in demo_sheets().iter().filter(|sheet| !sheet.batchs.is_empty()) {
            for item in &sheet.items {
                let total: Decimal = sheet.batchs.iter().filter(|batch| batch.sku_id == item.sku_id).map(|batch| batch.qty.unwrap()).sum();
                assert_eq!(total, item.r_qty.unwrap(), "sheet {} sku {}", sheet.io_id, item.sku_id);
                assert_eq!(sheet.items.iter().filter(|other| other.sku_id == item.sku_id).count(), 1);
            }
        }
    }

    #[test]
    fn confirmed_sheets_map() {
        let config = demo_mapping();
        config.validate().unwrap();
        let mut mapped = 0;
        for sheet in demo_sheets().iter().filter(|sheet| sheet.is_confirmed()) {
            let bill = map_sheet(sheet, &config).unwrap_or_else(|error| panic!("sheet {} does not map: {error}", sheet.io_id));
            assert!(bill.entry_count >= sheet.items.len());
            if sheet.io_id == demo_large_sheet_io_id() {
                assert_eq!(bill.entry_count, LARGE_SHEET_LINES);
            }
            mapped += 1;
        }
        assert!(mapped > 0);
    }

    #[test]
    fn materials_cover_catalogue() {
        let materials = demo_materials();
        assert_eq!(materials.len(), DEMO_MATERIAL_COUNT);
        assert_eq!(materials[0], "SKU-000001");
        assert_eq!(materials[DEMO_MATERIAL_COUNT - 1], "SKU-000300");
    }

    #[test]
    fn stocks_match_warehouse_table() {
        let stocks = demo_stocks();
        assert_eq!(stocks, vec!["CK001", "CK002", "CK003", "CK004"]);
        let mapped: Vec<String> = demo_warehouses().into_iter().map(|warehouse| warehouse.stock).collect();
        assert_eq!(mapped, stocks);
    }

    #[test]
    fn bulk_counts_and_spread() {
        let (start, _) = demo_modified_bounds();
        let sheets = bulk_sheets(1, 2_000, 200, start, Duration::days(30));
        assert_eq!(sheets.len(), 2_200);
        assert_eq!(sheets.iter().filter(|sheet| sheet.is_confirmed()).count(), 2_000);
        let last = sheets.iter().filter_map(|sheet| sheet.modified).max().unwrap();
        assert!(last < start + Duration::days(30) && last > start + Duration::days(29), "last modified {last}");
        let ids: BTreeSet<i64> = sheets.iter().map(|sheet| sheet.io_id).collect();
        assert_eq!(ids.len(), 2_200);
    }

    #[test]
    fn range_covers_bounds() {
        let (begin, end) = demo_modified_range();
        assert_eq!(begin.to_rfc3339(), "2026-09-30T16:00:00+00:00");
        assert_eq!(end.to_rfc3339(), "2026-11-30T16:00:00+00:00");
    }
}
