//! DynamoDB item layout: key builders, attribute names and the conversion of a ledger item to a
//! [`LedgerRecord`].

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};
use countsync_core::Retry;
use countsync_core::ports::{BillRef, LedgerRecord, LedgerState, StoreError};

pub type Item = HashMap<String, AttributeValue>;

pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const WATERMARK_SK: &str = "WATERMARK";
pub const LEDGER_SK: &str = "LEDGER";

/// Time-to-live attribute, epoch seconds. DynamoDB deletes an expired item some time after this
/// instant, not at once.
pub const EXPIRES_AT: &str = "expires_at";

pub fn watermark_key(stream: &str) -> Item {
    key(format!("WATERMARK#{stream}"), WATERMARK_SK)
}

/// Sort key of a stream's run lease, next to its watermark item.
pub const RUN_LEASE_SK: &str = "RUN_LEASE";

pub fn run_lease_key(stream: &str) -> Item {
    key(format!("WATERMARK#{stream}"), RUN_LEASE_SK)
}

pub fn ledger_key(io_id: i64) -> Item {
    key(format!("SHEET#{io_id}"), LEDGER_SK)
}

fn key(pk: String, sk: &str) -> Item {
    HashMap::from([(PK.to_string(), AttributeValue::S(pk)), (SK.to_string(), AttributeValue::S(sk.to_string()))])
}

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// RFC 3339 in UTC with as many fractional digits as the instant has.
pub fn format_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// RFC 3339 in UTC with exactly three fractional digits, for millisecond values.
pub fn format_millis(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Epoch milliseconds rounded down, so a stored `now` or watermark is never later than the real one.
pub fn millis_floor(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// Epoch milliseconds rounded up, so a stored lease never ends earlier than the requested one.
pub fn millis_ceil(at: DateTime<Utc>) -> i64 {
    let floor = at.timestamp_millis();
    if at.timestamp_subsec_nanos().is_multiple_of(1_000_000) { floor } else { floor + 1 }
}

/// Reads attributes of one item, naming the item in every error.
pub struct ItemReader<'a> {
    pub item: &'a Item,
    pub table: &'a str,
    pub what: String,
}

impl ItemReader<'_> {
    fn invalid(&self, attribute: &str, problem: &str) -> StoreError {
        StoreError::new(
            format!("{} in dynamodb table {} is invalid: attribute {attribute} {problem}", self.what, self.table),
            Retry::Never,
        )
    }

    pub fn optional_s(&self, attribute: &str) -> Result<Option<&str>, StoreError> {
        match self.item.get(attribute) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(text)) => Ok(Some(text)),
            Some(_) => Err(self.invalid(attribute, "is not a string")),
        }
    }

    pub fn required_s(&self, attribute: &str) -> Result<&str, StoreError> {
        self.optional_s(attribute)?.ok_or_else(|| self.invalid(attribute, "is missing"))
    }

    pub fn optional_i64(&self, attribute: &str) -> Result<Option<i64>, StoreError> {
        match self.item.get(attribute) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(number)) => {
                number.parse().map(Some).map_err(|_| self.invalid(attribute, "is not an integer"))
            }
            Some(_) => Err(self.invalid(attribute, "is not a number")),
        }
    }

    pub fn required_i64(&self, attribute: &str) -> Result<i64, StoreError> {
        self.optional_i64(attribute)?.ok_or_else(|| self.invalid(attribute, "is missing"))
    }

    pub fn time(&self, attribute: &str) -> Result<DateTime<Utc>, StoreError> {
        let text = self.required_s(attribute)?;
        DateTime::parse_from_rfc3339(text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(|_| self.invalid(attribute, "is not an RFC 3339 time"))
    }

    pub fn millis(&self, attribute: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.optional_i64(attribute)?
            .map(|millis| DateTime::from_timestamp_millis(millis).ok_or_else(|| self.invalid(attribute, "is out of range")))
            .transpose()
    }
}

/// Converts a ledger item to a record.
pub fn ledger_record(item: &Item, table: &str, io_id: i64) -> Result<LedgerRecord, StoreError> {
    let reader = ItemReader { item, table, what: format!("ledger item of sheet {io_id}") };
    let state_text = reader.required_s("state")?;
    let state = LedgerState::parse(state_text).ok_or_else(|| reader.invalid("state", "has an unknown value"))?;
    let bill = match (reader.optional_s("bill_id")?, reader.optional_s("bill_no")?) {
        (Some(id), Some(number)) => Some(BillRef { id: id.to_string(), number: number.to_string() }),
        _ => None,
    };
    let reason = reader
        .optional_s("reason")?
        .map(|json| serde_json::from_str(json).map_err(|_| reader.invalid("reason", "is not a failure reason in JSON")))
        .transpose()?;
    let attempts = reader.required_i64("attempts")?;
    Ok(LedgerRecord {
        io_id,
        state,
        content_hash: reader.required_s("content_hash")?.to_string(),
        claim_token: reader.optional_s("claim_token")?.map(str::to_string),
        lease_until: reader.millis("lease_until_ms")?,
        bill,
        reason,
        attempts: u32::try_from(attempts).map_err(|_| reader.invalid("attempts", "is out of range"))?,
        updated_at: reader.time("updated_at")?,
        changed_hash: reader.optional_s("changed_hash")?.map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    #[test]
    fn millis_rounding() {
        let whole = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap() + Duration::milliseconds(7);
        let between = whole + Duration::microseconds(400);

        assert_eq!(millis_floor(whole), millis_ceil(whole));
        assert_eq!(millis_floor(between), millis_floor(whole));
        assert_eq!(millis_ceil(between), millis_floor(whole) + 1);
    }

    #[test]
    fn format_millis_has_three_digits() {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap();
        assert_eq!(format_millis(at), "2026-03-01T08:00:00.000Z");
    }

    #[test]
    fn ledger_item_with_unknown_state_rejected() {
        let mut item = ledger_key(5);
        item.insert("state".into(), s("paused"));
        let error = ledger_record(&item, "countsync-state", 5).unwrap_err();
        assert_eq!(error.retry, Retry::Never);
        assert!(error.message.contains("countsync-state"), "{}", error.message);
        assert!(error.message.contains("state"), "{}", error.message);
    }
}
