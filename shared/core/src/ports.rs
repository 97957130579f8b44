//! Ports: the narrow interfaces the fetcher and writer call. Each has a real adapter in its own
//! crate (JuShuiTan, Kingdee, DynamoDB, SQS, SQLite) and an in-memory one in [`crate::memory`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Retry;
use crate::mapping::AfterSave;
use crate::mapping::lookup::{CountBillLookup, MaterialLookup};
use crate::sheet::CountSheet;
use crate::window::Window;

// ---------------------------------------------------------------------------------------------
// Sheet source (JuShuiTan)
// ---------------------------------------------------------------------------------------------

/// One page request of `inventory.count.query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SheetQuery {
    pub window: Window,
    /// Page number, from 1.
    pub page_index: u32,
    pub page_size: u32,
    /// JuShuiTan status filter, `Confirmed` for the sync.
    pub status: String,
}

/// One page of sheets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SheetPage {
    pub sheets: Vec<CountSheet>,
    pub has_next: bool,
}

/// A failed source call, after the adapter's own retries.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    /// JuShuiTan `code` when the API responded, `None` for transport failures.
    pub code: Option<i64>,
    pub message: String,
    pub retry: Retry,
}

/// Reads count sheets from JuShuiTan.
#[async_trait]
pub trait SheetSource: Send + Sync {
    /// Returns one page of sheets modified inside the query window.
    ///
    /// An error is never an empty page: the caller must not move the watermark past a window
    /// whose pages did not all return `Ok`.
    async fn query_page(&self, query: &SheetQuery) -> Result<SheetPage, SourceError>;

    /// Returns the current content of the given sheets (at most 50 ids per call).
    async fn fetch_by_ids(&self, io_ids: &[i64]) -> Result<Vec<CountSheet>, SourceError>;
}

// ---------------------------------------------------------------------------------------------
// Bill target (Kingdee)
// ---------------------------------------------------------------------------------------------

/// A Kingdee bill as the writer sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct Bill {
    pub form_id: String,
    pub bill_no: String,
    pub io_id: i64,
    /// One element of BatchSave's `Model` array.
    pub model: Value,
    pub entry_count: usize,
    /// Lowercase hex SHA-256 of `model`, recorded in the idempotency ledger.
    pub content_hash: String,
}

/// A saved bill's identity in Kingdee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillRef {
    /// Kingdee internal id (`FID`).
    pub id: String,
    /// Bill number (`FBillNo`).
    pub number: String,
}

/// Kingdee's reason for rejecting one bill of a BatchSave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub msg_code: i64,
    pub field_name: Option<String>,
    /// Kingdee's own message, kept verbatim (often Chinese).
    pub message: String,
}

/// MsgCode of Kingdee's validation failures, among them a duplicate bill number.
pub const MSG_CODE_VALIDATION: i64 = 11;
/// MsgCode of a network-control lock conflict.
pub const MSG_CODE_LOCKED: i64 = 13;
/// MsgCode of the call-limit rejection.
pub const MSG_CODE_CALL_LIMIT: i64 = 14;

impl Rejection {
    /// Returns whether Kingdee rejected the bill because its number is already used.
    pub fn is_duplicate_bill_no(&self) -> bool {
        self.msg_code == MSG_CODE_VALIDATION
            && self.field_name.as_deref().is_some_and(|field| field.eq_ignore_ascii_case("FBillNo"))
    }

    pub fn retry(&self) -> Retry {
        match self.msg_code {
            MSG_CODE_LOCKED | MSG_CODE_CALL_LIMIT => Retry::Later,
            _ => Retry::Never,
        }
    }
}

/// Outcome of one bill in a BatchSave, in request order.
#[derive(Debug, Clone, PartialEq)]
pub enum SaveOutcome {
    Saved(BillRef),
    Rejected(Rejection),
    /// The response named neither success nor failure for this bill: it may exist.
    Unknown,
}

/// A failed target call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TargetError {
    pub message: String,
    pub retry: Retry,
    /// True when a write may have been committed although the call failed (timeout, HTTP 5xx,
    /// unreadable response): the bill must be looked up before any retry.
    pub outcome_unknown: bool,
}

/// Writes bills to Kingdee and looks them up.
#[async_trait]
pub trait BillTarget: Send + Sync {
    /// Saves the bills in one BatchSave call.
    ///
    /// `Ok` carries one outcome per bill in request order: BatchSave is not atomic, so some bills
    /// may be saved while others are rejected. `Err` means the call as a whole failed; when
    /// `outcome_unknown` is set, any of the bills may have been committed.
    async fn save_bills(&self, bills: &[Bill]) -> Result<Vec<SaveOutcome>, TargetError>;

    /// Looks a bill up by number. `Ok(None)` means the query ran and returned no row; an error
    /// means the bill's state is unknown, never that the bill is absent.
    async fn find_bill(&self, form_id: &str, bill_no: &str) -> Result<Option<BillRef>, TargetError>;

    /// Looks a bill up by number and returns what the writer can compare with the bill it would
    /// send. The default reads only the number, so `entries` is `None` and a found bill counts
    /// as equal. An adapter that can read the entry rows back overrides this.
    async fn fetch_bill_summary(&self, form_id: &str, bill_no: &str) -> Result<Option<BillSummary>, TargetError> {
        Ok(self.find_bill(form_id, bill_no).await?.map(|bill| BillSummary { bill, entries: None }))
    }

    /// Runs the operations that `after_save` requests (Submit, or Submit then Audit) on saved
    /// bills of one form, by number. Repeating it on bills already in the target status must
    /// succeed. The default does nothing, for targets without such operations.
    async fn after_save(&self, form_id: &str, numbers: &[String], action: AfterSave) -> Result<(), TargetError> {
        let _ = (form_id, numbers, action);
        Ok(())
    }

    /// Returns the material lookup of this target, which the writer uses for
    /// `materials.source = "kingdee_lookup"`. The default has none, so such sheets fail with
    /// `material_lookup_missing`.
    fn material_lookup(&self) -> Option<&dyn MaterialLookup> {
        None
    }

    /// Returns the lookup of existing 物料盘点作业 bills, which the writer uses for
    /// `target = "scheme_writeback"`. The default has none, so such sheets fail with
    /// `scheme_bill_not_found`.
    fn count_bill_lookup(&self) -> Option<&dyn CountBillLookup> {
        None
    }
}

/// One entry row of a bill, reduced to the fields that decide whether two bills are equal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntrySummary {
    /// Material number (`FMaterialId.FNumber`).
    pub material: String,
    /// Stock number (`FStockId.FNumber`).
    pub stock: String,
    /// Counted quantity (`FCountQty`), normalized decimal text.
    pub count_qty: String,
}

/// A stored bill as far as the target can read it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillSummary {
    pub bill: BillRef,
    /// Entry rows, sorted; `None` when the target reads only the bill number.
    pub entries: Option<Vec<EntrySummary>>,
}

impl Bill {
    /// Returns the entry rows of the model, sorted, for comparison with a [`BillSummary`].
    pub fn entry_summaries(&self) -> Vec<EntrySummary> {
        entry_summaries(&self.model)
    }

    /// Returns whether the bill writes into an existing Kingdee bill (the 盘点方案 write-back)
    /// instead of creating one.
    pub fn updates_existing(&self) -> bool {
        updates_existing(&self.model)
    }
}

/// Returns whether a model writes into an existing bill: it carries a non-zero `FID`.
pub fn updates_existing(model: &Value) -> bool {
    match model.get("FID") {
        Some(Value::Number(number)) => number.as_i64() != Some(0),
        Some(Value::String(text)) => !matches!(text.trim(), "" | "0"),
        _ => false,
    }
}

/// Reads the sorted entry rows of a `STK_StockCountInput` model. Quantities are normalized, so
/// `5`, `5.0` and `5.000` compare equal.
pub fn entry_summaries(model: &Value) -> Vec<EntrySummary> {
    let mut entries: Vec<EntrySummary> = model["FBillEntry"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| EntrySummary {
                    material: row["FMaterialId"]["FNumber"].as_str().unwrap_or_default().to_string(),
                    stock: row["FStockId"]["FNumber"].as_str().unwrap_or_default().to_string(),
                    count_qty: normalize_quantity(&row["FCountQty"]),
                })
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    entries
}

/// Returns a quantity as normalized decimal text, so that `5`, `5.0` and `"5.000"` compare equal.
/// A value that is not a decimal is returned as its text.
pub fn normalize_quantity(value: &Value) -> String {
    let text = match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    match text.parse::<rust_decimal::Decimal>() {
        Ok(quantity) => quantity.normalize().to_string(),
        Err(_) => text,
    }
}

// ---------------------------------------------------------------------------------------------
// Sheet queue (SQS)
// ---------------------------------------------------------------------------------------------

/// A message body ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Stable id for logs and de-duplication: `io_id` and modification time.
    pub id: String,
    pub body: String,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct QueueError {
    pub message: String,
    pub retry: Retry,
}

/// Hands sheets from the fetcher to the writer.
#[async_trait]
pub trait SheetQueue: Send + Sync {
    /// Sends the messages. `Ok` means the queue accepted every one of them; after `Err` some may
    /// have been accepted, which is safe because the writer is idempotent.
    async fn send(&self, messages: &[OutgoingMessage]) -> Result<(), QueueError>;
}

// ---------------------------------------------------------------------------------------------
// State: watermarks and the idempotency ledger (DynamoDB, SQLite)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    pub message: String,
    pub retry: Retry,
}

impl StoreError {
    pub fn new(message: impl Into<String>, retry: Retry) -> Self {
        Self { message: message.into(), retry }
    }
}

/// Stores how far the fetcher has read, as an instant.
#[async_trait]
pub trait WatermarkStore: Send + Sync {
    async fn load(&self, stream: &str) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Moves the watermark to `to` if it is later than the stored one (or none is stored).
    /// Returns whether it moved. The comparison and the write are one conditional operation, so
    /// concurrent runs can never move it backwards.
    async fn advance(&self, stream: &str, to: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Takes the run lease of `stream` for `holder` until `until`, if no other holder has a
    /// lease that lasts past `now`. One conditional write, so of two overlapping runs only one
    /// fetches.
    async fn acquire_run_lease(&self, stream: &str, holder: &str, until: DateTime<Utc>, now: DateTime<Utc>) -> Result<RunLease, StoreError>;

    /// Ends the run lease if `holder` still has it. Returns whether it did.
    async fn release_run_lease(&self, stream: &str, holder: &str) -> Result<bool, StoreError>;
}

/// Result of [`WatermarkStore::acquire_run_lease`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunLease {
    Acquired,
    /// Another run holds the lease until `until`.
    Held { holder: String, until: DateTime<Utc> },
}

/// Decides a run-lease request against the stored lease, for adapters that read and write in
/// one transaction.
pub fn decide_run_lease(existing: Option<(&str, DateTime<Utc>)>, now: DateTime<Utc>) -> RunLease {
    match existing {
        Some((holder, until)) if until > now => RunLease::Held { holder: holder.to_string(), until },
        _ => RunLease::Acquired,
    }
}

/// State of one sheet in the idempotency ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerState {
    /// A writer owns the sheet until `lease_until`.
    Claimed,
    /// The bill exists in Kingdee; `bill` is set.
    Done,
    /// A previous attempt ended without a known result (timeout, retryable rejection): the next
    /// claimer must look the bill up before saving.
    Retry,
    /// Kingdee or the mapping rejected the sheet; `reason` gives the cause.
    Failed,
    /// Held for an operator: the sheet has a bill, but a later version with different content
    /// arrived (`changed_hash`), or Kingdee has a bill with this number that differs from the
    /// sheet. No second bill is saved, and `reason` describes the difference.
    Changed,
}

impl LedgerState {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerState::Claimed => "claimed",
            LedgerState::Done => "done",
            LedgerState::Retry => "retry",
            LedgerState::Failed => "failed",
            LedgerState::Changed => "changed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "claimed" => Some(LedgerState::Claimed),
            "done" => Some(LedgerState::Done),
            "retry" => Some(LedgerState::Retry),
            "failed" => Some(LedgerState::Failed),
            "changed" => Some(LedgerState::Changed),
            _ => None,
        }
    }
}

/// Cause of a sheet's failure, in words for an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReason {
    /// Stable machine-readable kind, e.g. `unknown_warehouse` or `kingdee_rejected`.
    pub code: String,
    pub message_zh: String,
    pub message_en: String,
    /// Kingdee's or JuShuiTan's own message, verbatim.
    pub detail: Option<String>,
}

/// One ledger record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerRecord {
    pub io_id: i64,
    pub state: LedgerState,
    pub content_hash: String,
    /// Identifies the current claim; transitions out of `claimed` must present it.
    pub claim_token: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub bill: Option<BillRef>,
    pub reason: Option<FailureReason>,
    pub attempts: u32,
    pub updated_at: DateTime<Utc>,
    /// Content hash of the later version that differs from the synced one; only when `changed`.
    #[serde(default)]
    pub changed_hash: Option<String>,
}

/// Result of [`IdempotencyLedger::claim`].
// One value per message and never stored, so the size of the `Done` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The caller owns the sheet until the lease ends. `check_first` is set when an earlier
    /// attempt may have saved the bill, so Kingdee must be asked before any save.
    Acquired { token: String, check_first: bool },
    /// The bill already exists; nothing to do.
    Done(LedgerRecord),
    /// Another writer has a live claim.
    Busy { lease_until: DateTime<Utc> },
    /// The sheet is held for an operator (`changed`): this version differs from the synced one.
    /// The claim stored the hold if the record was `done`. Nothing to save.
    Held(LedgerRecord),
}

/// Records which sheets have become bills, so that no sheet becomes two.
///
/// Every transition is one conditional write: a claim succeeds only if no live claim exists and
/// the sheet is not done, and the transitions out of `claimed` succeed only for the token holder.
#[async_trait]
pub trait IdempotencyLedger: Send + Sync {
    async fn claim(
        &self,
        io_id: i64,
        content_hash: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError>;

    /// Records the saved bill. Fails with [`Retry::Never`] if the claim was lost.
    async fn mark_done(&self, io_id: i64, token: &str, bill: &BillRef, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Records a permanent failure with its reason.
    async fn mark_failed(&self, io_id: i64, token: &str, reason: &FailureReason, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Gives the claim up after an attempt whose result is unknown or retryable.
    async fn release(&self, io_id: i64, token: &str, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Holds the sheet for an operator (`changed`) because Kingdee has a bill with its number
    /// that differs from it. Keeps `bill`. Fails with [`Retry::Never`] if the claim was lost.
    async fn mark_held(&self, io_id: i64, token: &str, bill: &BillRef, reason: &FailureReason, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Moves a `failed` or `changed` sheet to `retry`, so that its replay is claimed with
    /// `check_first`. Returns false, writing nothing, for a sheet in any other state or with no
    /// record.
    async fn reset(&self, io_id: i64, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Returns up to `limit` records that need an operator (`failed` and `changed`), by `io_id`.
    async fn list_held(&self, limit: usize) -> Result<Vec<LedgerRecord>, StoreError>;

    async fn get(&self, io_id: i64) -> Result<Option<LedgerRecord>, StoreError>;
}

/// Reason code of a sheet held because it changed after its bill was saved.
pub const CHANGED_AFTER_SYNC: &str = "changed_after_sync";
/// Reason code of a sheet held because Kingdee has a different bill with its number.
pub const BILL_DIFFERS: &str = "bill_differs";

/// Builds the reason stored when a later version of a synced sheet differs from the synced one.
pub fn changed_after_sync_reason(bill_no: &str, sent_hash: &str, new_hash: &str) -> FailureReason {
    FailureReason {
        code: CHANGED_AFTER_SYNC.into(),
        message_zh: format!("盘点单在同步后被修改，金蝶单据 {bill_no} 未更新，也未新建第二张单据：请核对两版内容后在金蝶中手工处理，再重放或忽略"),
        message_en: format!("the count sheet changed after it was synced; Kingdee bill {bill_no} was not updated and no second bill was saved: compare both versions, fix the bill in Kingdee by hand, then replay or ignore"),
        detail: Some(format!("synced content hash {sent_hash}, new content hash {new_hash}")),
    }
}

/// Decides a claim against the existing record, for adapters that read and write inside one
/// transaction (SQLite, in-memory). Returns the claim result and, when acquired, the record to
/// store. DynamoDB expresses the same rule as a condition expression.
pub fn decide_claim(
    existing: Option<&LedgerRecord>,
    io_id: i64,
    content_hash: &str,
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
    new_token: String,
) -> (Claim, Option<LedgerRecord>) {
    let check_first = match existing {
        None => false,
        Some(record) => match record.state {
            LedgerState::Done if is_changed(record, content_hash) => {
                let held = hold_changed(record, content_hash, now);
                return (Claim::Held(held.clone()), Some(held));
            }
            LedgerState::Done => return (Claim::Done(record.clone()), None),
            LedgerState::Changed => return (Claim::Held(record.clone()), None),
            LedgerState::Claimed => match record.lease_until {
                Some(until) if until > now => return (Claim::Busy { lease_until: until }, None),
                // An expired claim: its holder may have saved the bill before it stopped.
                _ => true,
            },
            LedgerState::Retry | LedgerState::Failed => true,
        },
    };
    let record = LedgerRecord {
        io_id,
        state: LedgerState::Claimed,
        content_hash: content_hash.to_string(),
        claim_token: Some(new_token.clone()),
        lease_until: Some(lease_until),
        bill: None,
        reason: existing.and_then(|record| record.reason.clone()),
        attempts: existing.map_or(0, |record| record.attempts) + 1,
        updated_at: now,
        changed_hash: None,
    };
    (Claim::Acquired { token: new_token, check_first }, Some(record))
}

/// Returns whether a claim with `content_hash` brings a version of a `done` sheet that differs
/// from the synced one. An empty hash (a sheet that did not map) never counts as a change.
pub fn is_changed(record: &LedgerRecord, content_hash: &str) -> bool {
    !content_hash.is_empty() && !record.content_hash.is_empty() && record.content_hash != content_hash
}

/// Returns the `changed` record that replaces a `done` one when a differing version arrives.
pub fn hold_changed(record: &LedgerRecord, content_hash: &str, now: DateTime<Utc>) -> LedgerRecord {
    let bill_no = record.bill.as_ref().map_or("?", |bill| bill.number.as_str());
    LedgerRecord {
        state: LedgerState::Changed,
        changed_hash: Some(content_hash.to_string()),
        reason: Some(changed_after_sync_reason(bill_no, &record.content_hash, content_hash)),
        updated_at: now,
        ..record.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// JuShuiTan token pair (DynamoDB, SQLite)
// ---------------------------------------------------------------------------------------------

/// A JuShuiTan access and refresh token pair, with the version that guards its replacement.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at: DateTime<Utc>,
    /// Incremented by every replacement; a refresher writes only over the version it read.
    pub version: u64,
}

impl std::fmt::Debug for StoredToken {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("StoredToken")
            .field("expires_at", &self.expires_at)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Keeps the JuShuiTan token pair, so that one refresher at a time replaces it: a refresh returns
/// a new refresh token and invalidates the old one.
#[async_trait]
pub trait TokenStore: Send + Sync {
    async fn load_token(&self, app_key: &str) -> Result<Option<StoredToken>, StoreError>;

    /// Stores `token` (whose `version` must be `expected_version + 1`, or 1 when none is
    /// expected) if the stored version is still `expected_version`. Returns false when another
    /// refresher replaced it first; the caller then re-reads.
    async fn replace_token(&self, app_key: &str, expected_version: Option<u64>, token: &StoredToken) -> Result<bool, StoreError>;
}
