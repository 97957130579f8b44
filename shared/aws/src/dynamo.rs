//! [`DynamoState`]: watermarks and the idempotency ledger in one DynamoDB table, every change a
//! single conditional write. The key design and each condition are described in `docs/state.md`.

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ReturnValue, ScalarAttributeType,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use chrono::{DateTime, Duration, Utc};
use countsync_core::Retry;
use countsync_core::ports::{
    BillRef, Claim, FailureReason, IdempotencyLedger, LedgerRecord, LedgerState, RunLease, StoreError, WatermarkStore,
    decide_claim,
};
use tracing::{debug, info, warn};

use crate::error::classify;
use crate::item::{
    EXPIRES_AT, Item, ItemReader, LEDGER_SK, PK, SK, format_millis, format_time, ledger_key, ledger_record,
    millis_ceil, millis_floor, n, run_lease_key, s, watermark_key,
};

/// How often `claim` retries when the item changes between its conditional write and its read.
const CLAIM_ATTEMPTS: usize = 3;

/// How long `create_table` waits for a new table to become active.
const TABLE_ACTIVE_TIMEOUT: StdDuration = StdDuration::from_secs(120);

const ADVANCE_UPDATE: &str = "SET #at = :at, #at_ms = :to";
/// Moves only forward: equal or later stored values fail the condition.
const ADVANCE_CONDITION: &str = "attribute_not_exists(#pk) OR #at_ms < :to";

const CLAIM_UPDATE: &str = "SET #state = :claimed, #content_hash = :hash, #claim_token = :token, \
     #lease_until_ms = :lease, #updated_at = :now, #io_id = :io_id, \
     #attempts = if_not_exists(#attempts, :zero) + :one \
     REMOVE #bill_id, #bill_no, #expires_at";
/// The rule of `decide_claim`: a new sheet, a sheet left in `retry` or `failed`, or a claim whose
/// lease has ended (`lease_until <= now`, or no lease stored).
const CLAIM_CONDITION: &str = "attribute_not_exists(#pk) OR #state IN (:retry, :failed) \
     OR (#state = :claimed AND (attribute_not_exists(#lease_until_ms) OR #lease_until_ms <= :now_ms))";

/// Only the holder of the current claim may move the sheet out of `claimed`.
const HOLDER_CONDITION: &str = "#state = :claimed AND #claim_token = :token";
const DONE_UPDATE: &str = "SET #state = :done, #bill_id = :bill_id, #bill_no = :bill_no, #updated_at = :now \
     REMOVE #claim_token, #lease_until_ms, #reason, #expires_at";
const FAILED_UPDATE: &str = "SET #state = :failed, #reason = :reason, #updated_at = :now \
     REMOVE #claim_token, #lease_until_ms";
const FAILED_EXPIRING_UPDATE: &str = "SET #state = :failed, #reason = :reason, #updated_at = :now, \
     #expires_at = :expires REMOVE #claim_token, #lease_until_ms";
const RELEASE_UPDATE: &str = "SET #state = :retry, #updated_at = :now REMOVE #claim_token, #lease_until_ms";
/// Holds a claimed sheet whose Kingdee bill differs; `changed_hash` is the hash of this claim.
const HELD_UPDATE: &str = "SET #state = :changed, #bill_id = :bill_id, #bill_no = :bill_no, #reason = :reason, \
     #updated_at = :now, #changed_hash = #content_hash REMOVE #claim_token, #lease_until_ms";
/// Holds a done sheet when a version with another hash arrives, only over the done record read.
const HOLD_CHANGED_UPDATE: &str = "SET #state = :changed, #changed_hash = :new_hash, #reason = :reason, #updated_at = :now";
const HOLD_CHANGED_CONDITION: &str = "#state = :done AND #content_hash = :sent_hash";
const RESET_UPDATE: &str = "SET #state = :retry, #updated_at = :now REMOVE #changed_hash, #expires_at";
const RESET_CONDITION: &str = "#state IN (:failed, :changed)";
const LEASE_UPDATE: &str = "SET #holder = :holder, #until_ms = :until";
/// A run lease is taken over only when none exists or the stored one has ended.
const LEASE_CONDITION: &str = "attribute_not_exists(#pk) OR #until_ms <= :now_ms";
const HELD_FILTER: &str = "#sk = :ledger AND #state IN (:failed, :changed)";

/// Watermarks and the idempotency ledger in one DynamoDB table with key `pk` (S) + `sk` (S).
///
/// Watermarks are stored with millisecond precision, rounded down, and leases rounded up to the
/// next millisecond, so a rounding error can only re-read a moment or delay a takeover, never skip
/// data or end a live claim early.
#[derive(Debug, Clone)]
pub struct DynamoState {
    client: Client,
    table: String,
    /// When set, `failed` records get `expires_at` = failure time + this, and TTL deletes them.
    failed_retention: Option<Duration>,
}

impl DynamoState {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), failed_retention: None }
    }

    pub fn from_conf(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(config), table)
    }

    /// Lets DynamoDB's TTL delete `failed` records `retention` after the failure. Without this
    /// no ledger record expires. A deleted record's sheet, if it comes again, is claimed as new
    /// (without `check_first`), so Kingdee's duplicate bill-number check is then the only guard
    /// against a second bill from an earlier attempt whose result was unknown.
    pub fn with_failed_retention(mut self, retention: Duration) -> Self {
        self.failed_retention = Some(retention);
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates the table (on-demand billing) if it does not exist, waits until it is active and
    /// enables TTL on `expires_at`. Safe to call on an existing table.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(string_attribute(PK))
            .attribute_definitions(string_attribute(SK))
            .key_schema(key_element(PK, KeyType::Hash))
            .key_schema(key_element(SK, KeyType::Range))
            .send()
            .await;
        match created {
            Ok(_) => info!(table = %self.table, "dynamodb table created"),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => {
                debug!(table = %self.table, "dynamodb table already exists");
            }
            Err(error) => return Err(self.sdk_error("CreateTable", &error)),
        }

        self.client
            .wait_until_table_exists()
            .table_name(&self.table)
            .wait(TABLE_ACTIVE_TIMEOUT)
            .await
            .map_err(|error| {
                StoreError::new(
                    format!("dynamodb table {} did not become active: {}", self.table, DisplayErrorContext(&error)),
                    Retry::Later,
                )
            })?;
        self.enable_ttl().await
    }

    async fn enable_ttl(&self) -> Result<(), StoreError> {
        let described = self
            .client
            .describe_time_to_live()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|error| self.sdk_error("DescribeTimeToLive", &error))?;
        let status = described.time_to_live_description().and_then(|description| description.time_to_live_status());
        if matches!(status, Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)) {
            return Ok(());
        }
        let specification = TimeToLiveSpecification::builder()
            .attribute_name(EXPIRES_AT)
            .enabled(true)
            .build()
            .expect("TTL specification has its required fields");
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(specification)
            .send()
            .await
            .map_err(|error| self.sdk_error("UpdateTimeToLive", &error))?;
        info!(table = %self.table, attribute = EXPIRES_AT, "dynamodb ttl enabled");
        Ok(())
    }

    fn sdk_error<E>(&self, operation: &str, error: &SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let retry = classify(error);
        let hint = if retry == Retry::Never {
            " (check the table name, the region and the role's permissions)"
        } else {
            ""
        };
        StoreError::new(
            format!("dynamodb {operation} on table {} failed: {}{hint}", self.table, DisplayErrorContext(error)),
            retry,
        )
    }

    /// Runs one conditional UpdateItem. Returns `Ok(None)` when the condition failed, otherwise
    /// the item as it was before the update (empty when the update created it).
    async fn conditional_update(
        &self,
        operation: &str,
        key: Item,
        update: &str,
        condition: &str,
        values: Item,
    ) -> Result<Option<Item>, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(attribute_names(&[update, condition])))
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => Ok(Some(output.attributes.unwrap_or_default())),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(None),
            Err(error) => Err(self.sdk_error(operation, &error)),
        }
    }

    async fn read_item(&self, operation: &str, key: Item) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| self.sdk_error(operation, &error))?;
        Ok(output.item)
    }

    /// Tries the claim write once. Returns `Some(check_first)` when it succeeded.
    async fn try_claim(
        &self,
        io_id: i64,
        content_hash: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
        token: &str,
    ) -> Result<Option<bool>, StoreError> {
        let values = HashMap::from([
            (":claimed".to_string(), s("claimed")),
            (":retry".to_string(), s("retry")),
            (":failed".to_string(), s("failed")),
            (":hash".to_string(), s(content_hash)),
            (":token".to_string(), s(token)),
            (":lease".to_string(), n(millis_ceil(lease_until))),
            (":now".to_string(), s(format_time(now))),
            (":now_ms".to_string(), n(millis_floor(now))),
            (":io_id".to_string(), n(io_id)),
            (":zero".to_string(), n(0)),
            (":one".to_string(), n(1)),
        ]);
        let old = self.conditional_update("UpdateItem (claim)", ledger_key(io_id), CLAIM_UPDATE, CLAIM_CONDITION, values).await?;
        // An existing item was replaced: it was in retry, failed or an expired claim, and any of
        // those may follow an attempt that saved the bill.
        Ok(old.map(|old| !old.is_empty()))
    }

    /// Applies one transition out of `claimed` for the holder of `token`. `applied` checks whether a
    /// record already shows this exact write, which happens when the SDK retried a request whose
    /// response was lost.
    async fn transition(
        &self,
        operation: &str,
        io_id: i64,
        token: &str,
        update: &str,
        mut values: Item,
        applied: impl Fn(&LedgerRecord) -> bool + Send,
    ) -> Result<(), StoreError> {
        values.insert(":claimed".to_string(), s("claimed"));
        values.insert(":token".to_string(), s(token));
        let written = self.conditional_update(operation, ledger_key(io_id), update, HOLDER_CONDITION, values).await?;
        if written.is_none() {
            if self.get(io_id).await?.is_some_and(|record| applied(&record)) {
                debug!(io_id, operation, "ledger transition applied by a retried request");
                return Ok(());
            }
            warn!(io_id, operation, table = %self.table, "ledger transition rejected: claim lost");
            return Err(StoreError::new(
                format!("claim on sheet {io_id} was lost to another writer ({operation} rejected by table {})", self.table),
                Retry::Never,
            ));
        }
        Ok(())
    }
}

impl DynamoState {
    /// Moves a done record to `changed`, only if it is still the done record that was read.
    /// Returns false when the condition failed.
    async fn hold_changed(&self, done: &LedgerRecord, held: &LedgerRecord) -> Result<bool, StoreError> {
        let reason = held.reason.as_ref().map(|reason| serde_json::to_string(reason).expect("FailureReason serializes to JSON"));
        let values = HashMap::from([
            (":changed".to_string(), s("changed")),
            (":done".to_string(), s("done")),
            (":sent_hash".to_string(), s(&done.content_hash)),
            (":new_hash".to_string(), s(held.changed_hash.clone().unwrap_or_default())),
            (":reason".to_string(), s(reason.unwrap_or_default())),
            (":now".to_string(), s(format_time(held.updated_at))),
        ]);
        let written = self
            .conditional_update("UpdateItem (hold changed)", ledger_key(done.io_id), HOLD_CHANGED_UPDATE, HOLD_CHANGED_CONDITION, values)
            .await?;
        Ok(written.is_some())
    }
}

#[async_trait]
impl WatermarkStore for DynamoState {
    async fn load(&self, stream: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let Some(item) = self.read_item("GetItem (watermark)", watermark_key(stream)).await? else {
            return Ok(None);
        };
        let reader = ItemReader { item: &item, table: &self.table, what: format!("watermark of stream {stream}") };
        reader.millis("at_ms")
    }

    async fn advance(&self, stream: &str, to: DateTime<Utc>) -> Result<bool, StoreError> {
        let to_ms = millis_floor(to);
        let stored = DateTime::from_timestamp_millis(to_ms).expect("milliseconds of a valid instant are valid");
        let values = HashMap::from([(":at".to_string(), s(format_millis(stored))), (":to".to_string(), n(to_ms))]);
        let moved = self
            .conditional_update("UpdateItem (watermark)", watermark_key(stream), ADVANCE_UPDATE, ADVANCE_CONDITION, values)
            .await?
            .is_some();
        debug!(stream, to = %stored, moved, "watermark advance");
        Ok(moved)
    }

    async fn acquire_run_lease(&self, stream: &str, holder: &str, until: DateTime<Utc>, now: DateTime<Utc>) -> Result<RunLease, StoreError> {
        let values = HashMap::from([
            (":holder".to_string(), s(holder)),
            (":until".to_string(), n(millis_ceil(until))),
            (":now_ms".to_string(), n(millis_floor(now))),
        ]);
        let written = self
            .conditional_update("UpdateItem (run lease)", run_lease_key(stream), LEASE_UPDATE, LEASE_CONDITION, values)
            .await?;
        if written.is_some() {
            return Ok(RunLease::Acquired);
        }
        let Some(item) = self.read_item("GetItem (run lease)", run_lease_key(stream)).await? else {
            // Released between the write and the read: the next run takes it.
            return Ok(RunLease::Held { holder: String::new(), until: now });
        };
        let reader = ItemReader { item: &item, table: &self.table, what: format!("run lease of stream {stream}") };
        let until = reader.millis("until_ms")?.unwrap_or(now);
        Ok(RunLease::Held { holder: reader.required_s("holder")?.to_string(), until })
    }

    async fn release_run_lease(&self, stream: &str, holder: &str) -> Result<bool, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(run_lease_key(stream)))
            .condition_expression("#holder = :holder")
            .expression_attribute_names("#holder", "holder")
            .expression_attribute_values(":holder", s(holder))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(error) => Err(self.sdk_error("DeleteItem (run lease)", &error)),
        }
    }
}

#[async_trait]
impl IdempotencyLedger for DynamoState {
    async fn claim(
        &self,
        io_id: i64,
        content_hash: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        // The condition compares whole milliseconds, so the read-back decision does too.
        let now_ms = DateTime::from_timestamp_millis(millis_floor(now)).expect("milliseconds of a valid instant are valid");
        for attempt in 1..=CLAIM_ATTEMPTS {
            let token = uuid::Uuid::new_v4().to_string();
            if let Some(check_first) = self.try_claim(io_id, content_hash, lease_until, now, &token).await? {
                debug!(io_id, check_first, "ledger claim acquired");
                return Ok(Claim::Acquired { token, check_first });
            }

            // The condition failed: read why. If the item became claimable in between (a release,
            // or TTL deleted it), try the write again.
            let Some(record) = self.get(io_id).await? else {
                debug!(io_id, attempt, "ledger item vanished after a failed claim; retrying");
                continue;
            };
            // The SDK retries a request whose response was lost, and the retry then fails on the
            // item its first attempt wrote. The token is new, so a match means this call won.
            if record.state == LedgerState::Claimed && record.claim_token.as_deref() == Some(token.as_str()) {
                debug!(io_id, "ledger claim acquired by a retried request");
                return Ok(Claim::Acquired { token, check_first: record.attempts > 1 });
            }
            match decide_claim(Some(&record), io_id, content_hash, lease_until, now_ms, String::new()) {
                (Claim::Acquired { .. }, _) => debug!(io_id, attempt, "ledger item became claimable; retrying"),
                (Claim::Busy { lease_until }, _) => return Ok(Claim::Busy { lease_until }),
                (Claim::Done(record), _) => return Ok(Claim::Done(record)),
                (Claim::Held(held), None) => return Ok(Claim::Held(held)),
                (Claim::Held(_), Some(held)) => {
                    if self.hold_changed(&record, &held).await? {
                        return Ok(Claim::Held(held));
                    }
                    debug!(io_id, attempt, "done record changed before the hold; retrying");
                }
            }
        }
        Err(StoreError::new(
            format!("claim on sheet {io_id} in table {} kept changing during {CLAIM_ATTEMPTS} attempts", self.table),
            Retry::Now,
        ))
    }

    async fn mark_done(&self, io_id: i64, token: &str, bill: &BillRef, now: DateTime<Utc>) -> Result<(), StoreError> {
        let values = HashMap::from([
            (":done".to_string(), s("done")),
            (":bill_id".to_string(), s(&bill.id)),
            (":bill_no".to_string(), s(&bill.number)),
            (":now".to_string(), s(format_time(now))),
        ]);
        let applied = |record: &LedgerRecord| {
            record.state == LedgerState::Done && record.bill.as_ref() == Some(bill) && record.updated_at == now
        };
        self.transition("UpdateItem (mark done)", io_id, token, DONE_UPDATE, values, applied).await
    }

    async fn mark_failed(&self, io_id: i64, token: &str, reason: &FailureReason, now: DateTime<Utc>) -> Result<(), StoreError> {
        let json = serde_json::to_string(reason).expect("FailureReason serializes to JSON");
        let mut values = HashMap::from([
            (":failed".to_string(), s("failed")),
            (":reason".to_string(), s(json)),
            (":now".to_string(), s(format_time(now))),
        ]);
        let update = match self.failed_retention {
            Some(retention) => {
                values.insert(":expires".to_string(), n((now + retention).timestamp()));
                FAILED_EXPIRING_UPDATE
            }
            None => FAILED_UPDATE,
        };
        let applied = |record: &LedgerRecord| {
            record.state == LedgerState::Failed && record.reason.as_ref() == Some(reason) && record.updated_at == now
        };
        self.transition("UpdateItem (mark failed)", io_id, token, update, values, applied).await
    }

    async fn release(&self, io_id: i64, token: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let values = HashMap::from([(":retry".to_string(), s("retry")), (":now".to_string(), s(format_time(now)))]);
        let applied = |record: &LedgerRecord| record.state == LedgerState::Retry && record.updated_at == now;
        self.transition("UpdateItem (release)", io_id, token, RELEASE_UPDATE, values, applied).await
    }

    async fn mark_held(&self, io_id: i64, token: &str, bill: &BillRef, reason: &FailureReason, now: DateTime<Utc>) -> Result<(), StoreError> {
        let json = serde_json::to_string(reason).expect("FailureReason serializes to JSON");
        let values = HashMap::from([
            (":changed".to_string(), s("changed")),
            (":bill_id".to_string(), s(&bill.id)),
            (":bill_no".to_string(), s(&bill.number)),
            (":reason".to_string(), s(json)),
            (":now".to_string(), s(format_time(now))),
        ]);
        let applied = |record: &LedgerRecord| {
            record.state == LedgerState::Changed && record.reason.as_ref() == Some(reason) && record.updated_at == now
        };
        self.transition("UpdateItem (mark held)", io_id, token, HELD_UPDATE, values, applied).await
    }

    async fn reset(&self, io_id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let values = HashMap::from([
            (":retry".to_string(), s("retry")),
            (":failed".to_string(), s("failed")),
            (":changed".to_string(), s("changed")),
            (":now".to_string(), s(format_time(now))),
        ]);
        let written = self.conditional_update("UpdateItem (reset)", ledger_key(io_id), RESET_UPDATE, RESET_CONDITION, values).await?;
        Ok(written.is_some())
    }

    /// Scans the whole table with a filter: DynamoDB bills the scan by the size of every item it
    /// reads, not by the held items it returns, so one call costs about (table size / 4 KiB)
    /// read units. Sorted by `io_id` after the scan.
    async fn list_held(&self, limit: usize) -> Result<Vec<LedgerRecord>, StoreError> {
        let values = HashMap::from([
            (":ledger".to_string(), s(LEDGER_SK)),
            (":failed".to_string(), s("failed")),
            (":changed".to_string(), s("changed")),
        ]);
        let mut held = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let output = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression(HELD_FILTER)
                .set_expression_attribute_names(Some(attribute_names(&[HELD_FILTER])))
                .set_expression_attribute_values(Some(values.clone()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|error| self.sdk_error("Scan (held records)", &error))?;
            for item in output.items() {
                let reader = ItemReader { item, table: &self.table, what: "ledger item".into() };
                let io_id = reader.required_i64("io_id")?;
                held.push(ledger_record(item, &self.table, io_id)?);
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        held.sort_by_key(|record| record.io_id);
        held.truncate(limit);
        Ok(held)
    }

    async fn get(&self, io_id: i64) -> Result<Option<LedgerRecord>, StoreError> {
        let item = self.read_item("GetItem (ledger)", ledger_key(io_id)).await?;
        item.map(|item| ledger_record(&item, &self.table, io_id)).transpose()
    }
}

fn string_attribute(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .expect("attribute definition has its required fields")
}

fn key_element(name: &str, key_type: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .expect("key schema element has its required fields")
}

/// Collects the `#name` placeholders of the expressions, each standing for the attribute of the
/// same name. DynamoDB rejects unused placeholders, so the map contains exactly the used ones.
fn attribute_names(expressions: &[&str]) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for expression in expressions {
        let mut rest = *expression;
        while let Some(start) = rest.find('#') {
            let after = &rest[start + 1..];
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            names.insert(format!("#{}", &after[..end]), after[..end].to_string());
            rest = &after[end..];
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_names_from_expressions() {
        let names = attribute_names(&[ADVANCE_UPDATE, ADVANCE_CONDITION]);
        let expected = HashMap::from([
            ("#at".to_string(), "at".to_string()),
            ("#at_ms".to_string(), "at_ms".to_string()),
            ("#pk".to_string(), "pk".to_string()),
        ]);
        assert_eq!(names, expected);
    }

    #[test]
    fn claim_names_cover_every_attribute() {
        let names = attribute_names(&[CLAIM_UPDATE, CLAIM_CONDITION]);
        for attribute in ["pk", "state", "lease_until_ms", "attempts", "expires_at", "bill_id", "io_id"] {
            assert_eq!(names.get(&format!("#{attribute}")).map(String::as_str), Some(attribute));
        }
        assert_eq!(names.len(), 11);
    }
}
