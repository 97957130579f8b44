//! What the mapping did besides building bills: where each line went, which lines it left out
//! and which quantities it rounded. Nothing is left out or rounded without an entry here.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::decimal_text;
use crate::sheet::CountItem;

/// Reason code of a line left out because its material is unknown (`unknown_codes = "drop_line"`).
pub const DROPPED_UNKNOWN_MATERIAL: &str = "unknown_material";
/// Reason code of a line left out because the sheet's warehouse is unknown.
pub const DROPPED_UNKNOWN_WAREHOUSE: &str = "unknown_warehouse";
/// Reason code of a line with no gain or loss, which `target = "gain_loss"` does not write.
pub const DROPPED_NO_DIFFERENCE: &str = "no_difference";
/// Reason code of a line whose 盘点方案 row already has its counted quantity, which
/// `target = "scheme_writeback"` does not write again.
pub const DROPPED_ALREADY_WRITTEN: &str = "already_written";

/// A line that went into a bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedLine {
    /// Position of the item in the sheet's `items`.
    pub item_index: usize,
    pub lot: Option<String>,
    pub bill_no: String,
    /// Position of the row in the bill's `FBillEntry`.
    pub entry_index: usize,
}

/// A line that went into no bill, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedLine {
    pub item_index: usize,
    pub ioi_id: Option<i64>,
    pub sku_id: String,
    pub lot: Option<String>,
    /// Counted quantity of the line, decimal text.
    pub count_qty: String,
    /// `unknown_material`, `unknown_warehouse`, `no_difference` or `already_written`.
    pub code: String,
}

impl DroppedLine {
    pub(crate) fn unknown_material(item_index: usize, item: &CountItem, counted: Decimal) -> Self {
        Self::of_item(item_index, item, None, counted, DROPPED_UNKNOWN_MATERIAL)
    }

    pub(crate) fn of_item(item_index: usize, item: &CountItem, lot: Option<String>, counted: Decimal, code: &str) -> Self {
        Self { item_index, ioi_id: item.ioi_id, sku_id: item.sku_id.clone(), lot, count_qty: decimal_text(counted), code: code.to_string() }
    }

    /// Describes the line for an operator, in Chinese and English.
    pub fn describe(&self) -> (String, String) {
        let lot = self.lot.as_deref().map(|lot| format!(" lot {lot}")).unwrap_or_default();
        let line = format!("SKU {}{lot} (ioi_id {}, r_qty {})", self.sku_id, self.ioi_id.map_or("-".to_string(), |id| id.to_string()), self.count_qty);
        let (zh, en) = match self.code.as_str() {
            DROPPED_UNKNOWN_MATERIAL => ("没有对应的金蝶物料，已按 unknown_codes = \"drop_line\" 略去", "has no Kingdee material; left out by unknown_codes = \"drop_line\""),
            DROPPED_UNKNOWN_WAREHOUSE => ("仓库不在仓库对照表中，已按 unknown_codes = \"drop_line\" 略去", "its warehouse is not in the warehouse table; left out by unknown_codes = \"drop_line\""),
            DROPPED_NO_DIFFERENCE => ("没有盘盈或盘亏，不写入盘盈单或盘亏单", "has no gain or loss, so no gain or loss bill carries it"),
            DROPPED_ALREADY_WRITTEN => ("物料盘点作业中对应行的盘点数量已是该值，不再回写", "its 物料盘点作业 row already holds this counted quantity, so it is not written again"),
            _ => ("已略去", "left out"),
        };
        (format!("{line} {zh}"), format!("{line} {en}"))
    }
}

/// A line whose quantities were rounded to its unit's precision (`units.rounding = "round_half_even"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundedLine {
    pub item_index: usize,
    pub ioi_id: Option<i64>,
    pub sku_id: String,
    pub lot: Option<String>,
    pub unit: String,
    pub places: u32,
    pub count_qty_from: String,
    pub count_qty_to: String,
    /// Gain (positive) or loss (negative) before and after rounding.
    pub delta_from: String,
    pub delta_to: String,
}

impl RoundedLine {
    /// Describes the rounding for an operator, in Chinese and English.
    pub fn describe(&self) -> (String, String) {
        let lot = self.lot.as_deref().map(|lot| format!(" lot {lot}")).unwrap_or_default();
        (
            format!(
                "SKU {}{lot}：单位 {} 保留 {} 位小数，盘点数量 {} → {}，盈亏 {} → {}（四舍六入五成双）",
                self.sku_id, self.unit, self.places, self.count_qty_from, self.count_qty_to, self.delta_from, self.delta_to
            ),
            format!(
                "sku {}{lot}: unit {} keeps {} decimal places, counted {} → {}, gain/loss {} → {} (round half to even)",
                self.sku_id, self.unit, self.places, self.count_qty_from, self.count_qty_to, self.delta_from, self.delta_to
            ),
        )
    }
}

/// Everything the mapping of one sheet reports besides its bills.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingReport {
    pub placed: Vec<PlacedLine>,
    pub dropped: Vec<DroppedLine>,
    pub rounded: Vec<RoundedLine>,
}
