//! Decoding of `inventory.count.query` responses into [`CountSheet`]s.
//!
//! JuShuiTan's JSON is loose. `io_id`, quantities and ids may be numbers or numeric strings, and
//! times may carry milliseconds. `labels` is a comma-separated text or an array, and `datas` may
//! be `[]`, `null` or missing. The decoder accepts all of these and
//! rejects what it cannot read with an error naming the field, e.g. `datas[3].items[0].r_qty`.

mod fields;

use countsync_core::ports::SheetPage;
use countsync_core::sheet::{CountItem, CountSheet, SerialNumber, SheetBatch};
use serde_json::value::RawValue;

use fields::Object;

/// A response that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is not the documented envelope.
    #[error("{0}")]
    Body(String),
    /// A field contains a value the decoder cannot read.
    #[error("field `{field}` {reason}")]
    Sheet { field: String, reason: String },
}

impl DecodeError {
    pub(crate) fn field(field: &str, reason: String) -> Self {
        DecodeError::Sheet { field: field.to_string(), reason }
    }
}

/// The outer envelope `{code, msg, data}`.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    pub code: i64,
    pub msg: String,
    /// The `data` object, `None` when missing or null.
    pub data: Option<&'a RawValue>,
}

/// Decodes the envelope of a response body.
pub fn decode_envelope(body: &str) -> Result<Envelope<'_>, DecodeError> {
    let raw: &RawValue = serde_json::from_str(body).map_err(|error| DecodeError::Body(format!("body is not JSON: {error}")))?;
    let object = Object::parse(raw, "response".into()).map_err(|_| DecodeError::Body("body is not a JSON object".into()))?;
    let code = object.int("code")?.ok_or_else(|| DecodeError::field("response.code", "is missing".into()))?;
    let msg = object.text("msg")?.unwrap_or_default();
    let data = object.raw("data").filter(|raw| raw.get().trim() != "null");
    Ok(Envelope { code, msg, data })
}

/// A legacy-gateway response: flat, with the page fields beside `code` and `issuccess`.
#[derive(Debug, Clone)]
pub struct LegacyResponse {
    pub code: i64,
    pub msg: String,
    /// The page of a successful response, `None` for an error.
    pub page: Option<SheetPage>,
}

/// Decodes a legacy-gateway response. `code` 0 with `issuccess` false counts as an error, and
/// a missing `code` with `issuccess` true as success.
pub fn decode_legacy(body: &str, requested_page_size: u32) -> Result<LegacyResponse, DecodeError> {
    let raw: &RawValue = serde_json::from_str(body).map_err(|error| DecodeError::Body(format!("body is not JSON: {error}")))?;
    let object = Object::parse(raw, "response".into()).map_err(|_| DecodeError::Body("body is not a JSON object".into()))?;
    let success = object.boolean("issuccess")?;
    let msg = object.text("msg")?.unwrap_or_default();
    let code = match (object.int("code")?, success) {
        (Some(code), _) => code,
        (None, Some(true)) => 0,
        (None, _) => return Err(DecodeError::field("response.code", "is missing and issuccess is not true".into())),
    };
    if code != 0 || success == Some(false) {
        return Ok(LegacyResponse { code: if code == 0 { -1 } else { code }, msg, page: None });
    }
    let page = decode_page(Some(raw), requested_page_size)?;
    Ok(LegacyResponse { code, msg, page: Some(page) })
}

/// Decodes the `data` object of a successful response into a page.
///
/// `has_next` is read when present. Otherwise the page counts as the last one unless
/// `page_count` or `data_count` show that more follow, or the page is full (`requested_page_size`
/// sheets), so a missing flag can cost one extra call but never a page.
pub fn decode_page(data: Option<&RawValue>, requested_page_size: u32) -> Result<SheetPage, DecodeError> {
    let Some(data) = data else { return Ok(SheetPage::default()) };
    let object = Object::parse(data, "data".into())?;

    let mut sheets = Vec::new();
    for (index, raw) in object.list("datas")?.into_iter().enumerate() {
        sheets.push(decode_sheet(raw, format!("datas[{index}]"))?);
    }
    let has_next = match object.boolean("has_next")? {
        Some(flag) => flag,
        None => infer_has_next(&object, sheets.len(), requested_page_size)?,
    };
    Ok(SheetPage { sheets, has_next })
}

fn infer_has_next(object: &Object<'_>, received: usize, requested_page_size: u32) -> Result<bool, DecodeError> {
    let page_index = object.int("page_index")?;
    if let (Some(index), Some(count)) = (page_index, object.int("page_count")?) {
        return Ok(index < count);
    }
    let page_size = object.int("page_size")?.unwrap_or(i64::from(requested_page_size));
    if let (Some(index), Some(total)) = (page_index, object.int("data_count")?) {
        return Ok(index.saturating_mul(page_size) < total);
    }
    Ok(received > 0 && received >= requested_page_size as usize)
}

/// Decodes one sheet; `path` names it in errors.
pub fn decode_sheet(raw: &RawValue, path: String) -> Result<CountSheet, DecodeError> {
    let mut object = Object::parse(raw, path)?;
    let io_id = object.required_int("io_id")?;
    object.set_path(format!("{} (io_id {io_id})", object.path()));

    Ok(CountSheet {
        io_id,
        io_date: object.time("io_date")?,
        status: object.required_text("status")?,
        warehouse: object.text("warehouse")?,
        wh_id: object.int("wh_id")?,
        wms_co_id: object.int("wms_co_id")?,
        kind: object.text("type")?,
        creator_name: object.text("creator_name")?,
        remark: object.text("remark")?,
        modified: object.time("modified")?,
        f_status: object.text("f_status")?,
        lock_wh_id: object.int("lock_wh_id")?,
        lock_wh_name: object.text("lock_wh_name")?,
        labels: object.labels("labels")?,
        items: decode_list(&object, "items", decode_item)?,
        batchs: decode_list(&object, "batchs", decode_batch)?,
        sns: decode_list(&object, "sns", decode_serial_number)?,
    })
}

fn decode_list<T>(
    sheet: &Object<'_>,
    key: &str,
    decode: fn(&Object<'_>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let mut decoded = Vec::new();
    for (index, raw) in sheet.list(key)?.into_iter().enumerate() {
        let object = Object::parse(raw, format!("{}.{key}[{index}]", sheet.path()))?;
        decoded.push(decode(&object)?);
    }
    Ok(decoded)
}

fn decode_item(object: &Object<'_>) -> Result<CountItem, DecodeError> {
    Ok(CountItem {
        ioi_id: object.int("ioi_id")?,
        sku_id: object.required_text("sku_id")?,
        i_id: object.text("i_id")?,
        name: object.text("name")?,
        properties_value: object.text("properties_value")?,
        r_qty: object.decimal("r_qty")?,
        qty: object.decimal("qty")?,
        batch_id: object.text("batch_id")?,
        product_date: object.date("product_date")?,
        supplier_id: object.text("supplier_id")?,
        expiration_date: object.date("expiration_date")?,
    })
}

fn decode_batch(object: &Object<'_>) -> Result<SheetBatch, DecodeError> {
    Ok(SheetBatch {
        sku_id: object.required_text("sku_id")?,
        batch_no: object.required_text("batch_no")?,
        qty: object.decimal("qty")?,
        product_date: object.date("product_date")?,
        supplier_id: object.text("supplier_id")?,
        supplier_name: object.text("supplier_name")?,
        expiration_date: object.date("expiration_date")?,
    })
}

fn decode_serial_number(object: &Object<'_>) -> Result<SerialNumber, DecodeError> {
    Ok(SerialNumber { sku_id: object.required_text("sku_id")?, sn: object.required_text("sn")? })
}

#[cfg(test)]
mod tests;
