//! Queue message format: one message per sheet, JSON, gzip-compressed when large.
//!
//! A plain message is `{"v":1,"io_id":…,"modified":…,"sheet":{…}}`. A sheet whose JSON exceeds
//! [`COMPRESS_ABOVE`] travels as `{"v":1,"io_id":…,"modified":…,"sheet_gzip":"<base64>"}`, which
//! keeps a 20,000-line sheet well under the SQS limit because count-sheet JSON repeats its keys.

use std::io::{Read, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::NaiveDateTime;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};

use crate::ports::OutgoingMessage;
use crate::sheet::CountSheet;

/// Largest SQS message body: 1 MiB since 2025.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Sheets whose JSON is longer than this are compressed.
pub const COMPRESS_ABOVE: usize = 64 * 1024;

/// Largest decompressed sheet a reader accepts, a guard against a corrupt or hostile body.
const MAX_SHEET_JSON_BYTES: u64 = 256 * 1024 * 1024;

const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    v: u32,
    io_id: i64,
    modified: Option<NaiveDateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sheet: Option<CountSheet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sheet_gzip: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("sheet {io_id} is {bytes} bytes even compressed, over the {max}-byte queue message limit")]
    TooLarge { io_id: i64, bytes: usize, max: usize },
    #[error("invalid queue message: {0}")]
    Invalid(String),
}

/// Encodes a sheet as one queue message.
pub fn encode(sheet: &CountSheet) -> Result<OutgoingMessage, MessageError> {
    let id = message_id(sheet);
    let sheet_json = serde_json::to_vec(sheet).map_err(|error| MessageError::Invalid(error.to_string()))?;
    let mut envelope = Envelope { v: VERSION, io_id: sheet.io_id, modified: sheet.modified, sheet: None, sheet_gzip: None };

    if sheet_json.len() <= COMPRESS_ABOVE {
        envelope.sheet = Some(sheet.clone());
    } else {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(&sheet_json).map_err(|error| MessageError::Invalid(error.to_string()))?;
        let compressed = encoder.finish().map_err(|error| MessageError::Invalid(error.to_string()))?;
        envelope.sheet_gzip = Some(STANDARD.encode(compressed));
    }

    let body = serde_json::to_string(&envelope).map_err(|error| MessageError::Invalid(error.to_string()))?;
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(MessageError::TooLarge { io_id: sheet.io_id, bytes: body.len(), max: MAX_MESSAGE_BYTES });
    }
    Ok(OutgoingMessage { id, body })
}

/// Decodes a queue message back into the sheet it carries.
pub fn decode(body: &str) -> Result<CountSheet, MessageError> {
    let envelope: Envelope = serde_json::from_str(body).map_err(|error| MessageError::Invalid(error.to_string()))?;
    if envelope.v != VERSION {
        return Err(MessageError::Invalid(format!("unsupported message version {}", envelope.v)));
    }

    let sheet = match (envelope.sheet, envelope.sheet_gzip) {
        (Some(sheet), None) => sheet,
        (None, Some(encoded)) => {
            let compressed = STANDARD.decode(encoded).map_err(|error| MessageError::Invalid(error.to_string()))?;
            let mut json = Vec::new();
            GzDecoder::new(compressed.as_slice())
                .take(MAX_SHEET_JSON_BYTES)
                .read_to_end(&mut json)
                .map_err(|error| MessageError::Invalid(error.to_string()))?;
            serde_json::from_slice(&json).map_err(|error| MessageError::Invalid(error.to_string()))?
        }
        _ => return Err(MessageError::Invalid("message must carry exactly one of sheet and sheet_gzip".into())),
    };

    if sheet.io_id != envelope.io_id {
        return Err(MessageError::Invalid(format!(
            "envelope io_id {} does not match sheet io_id {}",
            envelope.io_id, sheet.io_id
        )));
    }
    Ok(sheet)
}

/// Returns the `io_id` an envelope names without decoding the sheet, for logs about bodies that
/// do not decode.
pub fn peek_io_id(body: &str) -> Option<i64> {
    #[derive(Deserialize)]
    struct Head {
        io_id: i64,
    }
    serde_json::from_str::<Head>(body).ok().map(|head| head.io_id)
}

fn message_id(sheet: &CountSheet) -> String {
    match sheet.modified {
        Some(modified) => format!("{}-{}", sheet.io_id, modified.and_utc().timestamp()),
        None => sheet.io_id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sheet::CountItem;
    use rust_decimal::Decimal;

    fn sheet_with_lines(lines: usize) -> CountSheet {
        let items = (0..lines)
            .map(|line| CountItem {
                ioi_id: Some(line as i64),
                sku_id: format!("SKU-{line:06}"),
                i_id: Some("STYLE-1".into()),
                name: Some("测试商品".into()),
                properties_value: Some("红色;XL".into()),
                r_qty: Some(Decimal::new(1234, 2)),
                qty: Some(Decimal::new(-5, 0)),
                batch_id: None,
                product_date: None,
                supplier_id: None,
                expiration_date: None,
            })
            .collect();
        CountSheet {
            io_id: 42,
            io_date: None,
            status: "Confirmed".into(),
            warehouse: Some("主仓".into()),
            wh_id: Some(1),
            wms_co_id: Some(10001),
            kind: None,
            creator_name: None,
            remark: None,
            modified: None,
            f_status: None,
            lock_wh_id: None,
            lock_wh_name: None,
            labels: vec![],
            items,
            batchs: vec![],
            sns: vec![],
        }
    }

    #[test]
    fn small_sheet_round_trip() {
        let sheet = sheet_with_lines(3);
        let message = encode(&sheet).unwrap();
        assert!(message.body.contains("\"sheet\":"));
        assert_eq!(decode(&message.body).unwrap(), sheet);
    }

    #[test]
    fn large_sheet_compressed_round_trip() {
        let sheet = sheet_with_lines(20_000);
        let message = encode(&sheet).unwrap();
        assert!(message.body.contains("sheet_gzip"));
        assert!(message.body.len() < MAX_MESSAGE_BYTES);
        assert_eq!(decode(&message.body).unwrap(), sheet);
    }

    #[test]
    fn decode_rejects_garbage() {
        assert!(decode("not json").is_err());
        assert!(decode(r#"{"v":1,"io_id":1}"#).is_err());
        assert!(decode(r#"{"v":2,"io_id":1,"modified":null,"sheet":null}"#).is_err());
    }
}
