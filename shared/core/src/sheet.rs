//! The count sheet (库存盘点单) as the sync carries it from JuShuiTan to the writer.
//!
//! Field names stay as JuShuiTan spells them. Times are Asia/Shanghai wall-clock values exactly
//! as the source states them; quantities are exact decimals. The JuShuiTan client decodes the
//! API's loose JSON into these types, and queue messages carry them in this strict form.

use chrono::{NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The only status whose sheets change stock and are synced.
pub const CONFIRMED: &str = "Confirmed";

/// One inventory count sheet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountSheet {
    /// Sheet id, the identity of the sync (bill number and idempotency key derive from it).
    pub io_id: i64,
    /// Business date of the count, Asia/Shanghai wall clock.
    pub io_date: Option<NaiveDateTime>,
    /// `WaitConfirm`, `Confirmed`, `Archive`, `Cancelled` or `Delete`.
    pub status: String,
    /// Warehouse name.
    pub warehouse: Option<String>,
    /// Warehouse kind: 1 主仓, 2 销退仓, 3 进货仓, 4 次品仓, 6–8 自定义1–3仓.
    pub wh_id: Option<i64>,
    /// Branch warehouse or partner id.
    pub wms_co_id: Option<i64>,
    /// Sheet type, values undocumented by JuShuiTan.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub creator_name: Option<String>,
    pub remark: Option<String>,
    /// Last modification, Asia/Shanghai wall clock.
    pub modified: Option<NaiveDateTime>,
    /// Finance audit status.
    pub f_status: Option<String>,
    pub lock_wh_id: Option<i64>,
    pub lock_wh_name: Option<String>,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub items: Vec<CountItem>,
    /// Batches at sheet level, beside `items`.
    #[serde(default)]
    pub batchs: Vec<SheetBatch>,
    #[serde(default)]
    pub sns: Vec<SerialNumber>,
}

/// One counted line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountItem {
    /// Line id.
    pub ioi_id: Option<i64>,
    pub sku_id: String,
    /// Style code.
    pub i_id: Option<String>,
    pub name: Option<String>,
    pub properties_value: Option<String>,
    /// Quantity after the count (盘点后数量).
    pub r_qty: Option<Decimal>,
    /// Gain or loss delta (盈亏数量); its sign convention is a mapping option.
    pub qty: Option<Decimal>,
    /// Batch number, present only when the tenant manages batches on items.
    pub batch_id: Option<String>,
    pub product_date: Option<NaiveDate>,
    pub supplier_id: Option<String>,
    pub expiration_date: Option<NaiveDate>,
}

/// One batch from the sheet-level `batchs` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SheetBatch {
    pub sku_id: String,
    pub batch_no: String,
    pub qty: Option<Decimal>,
    pub product_date: Option<NaiveDate>,
    pub supplier_id: Option<String>,
    pub supplier_name: Option<String>,
    pub expiration_date: Option<NaiveDate>,
}

/// One serial number of a counted SKU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SerialNumber {
    pub sku_id: String,
    pub sn: String,
}

impl CountSheet {
    /// Returns whether the sheet is confirmed, the only status that is synced.
    pub fn is_confirmed(&self) -> bool {
        self.status == CONFIRMED
    }

    /// Number of lines the sheet contributes to a bill before batch expansion.
    pub fn line_count(&self) -> usize {
        self.items.len().max(self.batchs.len())
    }
}
