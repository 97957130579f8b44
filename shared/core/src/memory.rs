//! In-memory adapters of the ports, for the local run's queue and for unit tests.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Retry;
use crate::ports::{
    BillRef, BillSummary, Claim, FailureReason, IdempotencyLedger, LedgerRecord, LedgerState, OutgoingMessage,
    QueueError, RunLease, SheetQueue, StoreError, WatermarkStore, decide_claim, decide_run_lease, entry_summaries,
};

/// An in-process FIFO queue.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    messages: Mutex<VecDeque<OutgoingMessage>>,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes and returns up to `max` messages, oldest first.
    pub fn take(&self, max: usize) -> Vec<OutgoingMessage> {
        let mut messages = self.messages.lock().expect("queue mutex poisoned");
        let count = max.min(messages.len());
        messages.drain(..count).collect()
    }

    pub fn len(&self) -> usize {
        self.messages.lock().expect("queue mutex poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl SheetQueue for MemoryQueue {
    async fn send(&self, messages: &[OutgoingMessage]) -> Result<(), QueueError> {
        self.messages.lock().expect("queue mutex poisoned").extend(messages.iter().cloned());
        Ok(())
    }
}

/// Watermarks kept in a map.
#[derive(Debug, Default)]
pub struct MemoryWatermarks {
    marks: Mutex<HashMap<String, DateTime<Utc>>>,
    /// Run leases by stream: holder and end.
    leases: Mutex<HashMap<String, (String, DateTime<Utc>)>>,
}

impl MemoryWatermarks {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl WatermarkStore for MemoryWatermarks {
    async fn load(&self, stream: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.marks.lock().expect("watermark mutex poisoned").get(stream).copied())
    }

    async fn advance(&self, stream: &str, to: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut marks = self.marks.lock().expect("watermark mutex poisoned");
        match marks.get(stream) {
            Some(current) if *current >= to => Ok(false),
            _ => {
                marks.insert(stream.to_string(), to);
                Ok(true)
            }
        }
    }

    async fn acquire_run_lease(&self, stream: &str, holder: &str, until: DateTime<Utc>, now: DateTime<Utc>) -> Result<RunLease, StoreError> {
        let mut leases = self.leases.lock().expect("lease mutex poisoned");
        let existing = leases.get(stream).map(|(holder, until)| (holder.as_str(), *until));
        let decision = decide_run_lease(existing, now);
        if decision == RunLease::Acquired {
            leases.insert(stream.to_string(), (holder.to_string(), until));
        }
        Ok(decision)
    }

    async fn release_run_lease(&self, stream: &str, holder: &str) -> Result<bool, StoreError> {
        let mut leases = self.leases.lock().expect("lease mutex poisoned");
        if leases.get(stream).is_some_and(|(current, _)| current == holder) {
            leases.remove(stream);
            return Ok(true);
        }
        Ok(false)
    }
}

/// An idempotency ledger kept in a map.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    records: Mutex<HashMap<i64, LedgerRecord>>,
}

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    fn transition(
        &self,
        io_id: i64,
        token: &str,
        apply: impl FnOnce(&mut LedgerRecord),
    ) -> Result<(), StoreError> {
        let mut records = self.records.lock().expect("ledger mutex poisoned");
        match records.get_mut(&io_id) {
            Some(record) if record.state == LedgerState::Claimed && record.claim_token.as_deref() == Some(token) => {
                apply(record);
                Ok(())
            }
            _ => Err(StoreError::new(format!("claim on sheet {io_id} was lost to another writer"), Retry::Never)),
        }
    }
}

#[async_trait]
impl IdempotencyLedger for MemoryLedger {
    async fn claim(
        &self,
        io_id: i64,
        content_hash: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let mut records = self.records.lock().expect("ledger mutex poisoned");
        let token = uuid::Uuid::new_v4().to_string();
        let (claim, record) = decide_claim(records.get(&io_id), io_id, content_hash, lease_until, now, token);
        if let Some(record) = record {
            records.insert(io_id, record);
        }
        Ok(claim)
    }

    async fn mark_done(&self, io_id: i64, token: &str, bill: &BillRef, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.transition(io_id, token, |record| {
            record.state = LedgerState::Done;
            record.bill = Some(bill.clone());
            record.claim_token = None;
            record.lease_until = None;
            record.reason = None;
            record.updated_at = now;
        })
    }

    async fn mark_failed(&self, io_id: i64, token: &str, reason: &FailureReason, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.transition(io_id, token, |record| {
            record.state = LedgerState::Failed;
            record.reason = Some(reason.clone());
            record.claim_token = None;
            record.lease_until = None;
            record.updated_at = now;
        })
    }

    async fn release(&self, io_id: i64, token: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.transition(io_id, token, |record| {
            record.state = LedgerState::Retry;
            record.claim_token = None;
            record.lease_until = None;
            record.updated_at = now;
        })
    }

    async fn mark_held(&self, io_id: i64, token: &str, bill: &BillRef, reason: &FailureReason, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.transition(io_id, token, |record| {
            record.state = LedgerState::Changed;
            record.bill = Some(bill.clone());
            record.reason = Some(reason.clone());
            record.changed_hash = Some(record.content_hash.clone());
            record.claim_token = None;
            record.lease_until = None;
            record.updated_at = now;
        })
    }

    async fn reset(&self, io_id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut records = self.records.lock().expect("ledger mutex poisoned");
        match records.get_mut(&io_id) {
            Some(record) if matches!(record.state, LedgerState::Failed | LedgerState::Changed) => {
                record.state = LedgerState::Retry;
                record.changed_hash = None;
                record.updated_at = now;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn list_held(&self, limit: usize) -> Result<Vec<LedgerRecord>, StoreError> {
        let records = self.records.lock().expect("ledger mutex poisoned");
        let mut held: Vec<LedgerRecord> = records
            .values()
            .filter(|record| matches!(record.state, LedgerState::Failed | LedgerState::Changed))
            .cloned()
            .collect();
        held.sort_by_key(|record| record.io_id);
        held.truncate(limit);
        Ok(held)
    }

    async fn get(&self, io_id: i64) -> Result<Option<LedgerRecord>, StoreError> {
        Ok(self.records.lock().expect("ledger mutex poisoned").get(&io_id).cloned())
    }
}

/// Kingdee stand-in: keeps bills by number, enforces bill-number uniqueness, rejects bills that
/// name a material from `unknown_materials` or are dated in a closed period, rejects a BatchSave
/// that mixes forms, records after-save calls, looks materials up in a table, and can fail saves
/// after committing them.
#[derive(Debug, Default)]
pub struct MemoryBillTarget {
    inner: Mutex<MemoryBillTargetState>,
}

#[derive(Debug, Default)]
struct MemoryBillTargetState {
    bills: HashMap<String, (BillRef, serde_json::Value)>,
    next_id: u64,
    unknown_materials: std::collections::HashSet<String>,
    fail_after_commit: usize,
    save_calls: usize,
    lookups: usize,
    /// Last day of the closed period, `yyyy-MM-dd`; bills dated on or before it are rejected.
    closed_through: Option<String>,
    after_save_calls: Vec<(String, Vec<String>, crate::mapping::AfterSave)>,
    /// `BD_MATERIAL` rows for material lookups: lookup field value → material number.
    materials: HashMap<String, String>,
    /// Values asked for by each material lookup, in order.
    material_lookups: Vec<Vec<String>>,
}

impl MemoryBillTarget {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes Kingdee reject bills with this material as unknown base data (MsgCode 9).
    pub fn reject_material(&self, material: &str) {
        self.lock().unknown_materials.insert(material.to_string());
    }

    /// Makes the next `count` save calls commit their bills and then report a failure whose
    /// outcome is unknown, as an HTTP 500 after the commit does.
    pub fn fail_after_commit(&self, count: usize) {
        self.lock().fail_after_commit = count;
    }

    pub fn bill_count(&self) -> usize {
        self.lock().bills.len()
    }

    /// Replaces the stored model of a bill, as a user editing it in Kingdee does.
    pub fn replace_bill_model(&self, bill_no: &str, model: serde_json::Value) {
        if let Some((_, stored)) = self.lock().bills.get_mut(bill_no) {
            *stored = model;
        }
    }

    pub fn bill(&self, bill_no: &str) -> Option<serde_json::Value> {
        self.lock().bills.get(bill_no).map(|(_, model)| model.clone())
    }

    pub fn save_calls(&self) -> usize {
        self.lock().save_calls
    }

    pub fn lookups(&self) -> usize {
        self.lock().lookups
    }

    /// Closes the stock period through `date` (`yyyy-MM-dd`): bills dated on or before it are
    /// rejected with Kingdee's closed-period message (MsgCode 11 on `FDate`).
    pub fn close_period_through(&self, date: &str) {
        self.lock().closed_through = Some(date.to_string());
    }

    /// Adds a material whose lookup field contains `value` and whose number is `number`.
    pub fn add_material(&self, value: &str, number: &str) {
        self.lock().materials.insert(value.to_string(), number.to_string());
    }

    /// Returns the values requested by each material lookup, in call order.
    pub fn material_lookups(&self) -> Vec<Vec<String>> {
        self.lock().material_lookups.clone()
    }

    /// Returns the after-save calls received, in order: form id, bill numbers and action.
    pub fn after_save_calls(&self) -> Vec<(String, Vec<String>, crate::mapping::AfterSave)> {
        self.lock().after_save_calls.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryBillTargetState> {
        self.inner.lock().expect("bill target mutex poisoned")
    }
}

fn unknown_material(model: &serde_json::Value, unknown: &std::collections::HashSet<String>) -> Option<String> {
    model["FBillEntry"]
        .as_array()?
        .iter()
        .filter_map(|entry| entry["FMaterialId"]["FNumber"].as_str())
        .find(|material| unknown.contains(*material))
        .map(str::to_string)
}

#[async_trait]
impl crate::ports::BillTarget for MemoryBillTarget {
    async fn save_bills(&self, bills: &[crate::ports::Bill]) -> Result<Vec<crate::ports::SaveOutcome>, crate::ports::TargetError> {
        use crate::ports::{Rejection, SaveOutcome};

        let mut state = self.lock();
        state.save_calls += 1;
        // Kingdee's BatchSave saves one form per call, and the Kingdee client refuses mixed forms.
        if let Some(first) = bills.first() {
            if let Some(other) = bills.iter().find(|bill| bill.form_id != first.form_id) {
                return Err(crate::ports::TargetError {
                    message: format!("bills of one BatchSave must share a form id, but {} is {} and {} is {}", first.bill_no, first.form_id, other.bill_no, other.form_id),
                    retry: Retry::Never,
                    outcome_unknown: false,
                });
            }
        }
        let mut outcomes = Vec::with_capacity(bills.len());
        for bill in bills {
            if state.bills.contains_key(&bill.bill_no) {
                outcomes.push(SaveOutcome::Rejected(Rejection {
                    msg_code: crate::ports::MSG_CODE_VALIDATION,
                    field_name: Some("FBillNo".into()),
                    message: format!("违反字段唯一性要求：编码唯一。[{}]已经被使用。", bill.bill_no),
                }));
                continue;
            }
            if let Some(material) = unknown_material(&bill.model, &state.unknown_materials) {
                outcomes.push(SaveOutcome::Rejected(Rejection {
                    msg_code: 9,
                    field_name: Some("FMaterialId".into()),
                    message: format!("物料编码 {material} 不存在"),
                }));
                continue;
            }
            let date = bill.model["FDate"].as_str().unwrap_or_default();
            if let Some(closed) = state.closed_through.as_deref().filter(|closed| date <= *closed) {
                outcomes.push(SaveOutcome::Rejected(Rejection {
                    msg_code: crate::ports::MSG_CODE_VALIDATION,
                    field_name: Some("FDate".into()),
                    message: format!("单据日期 {date} 早于或等于库存组织的关账日期 {closed}，该期间已关账，不允许保存。"),
                }));
                continue;
            }
            state.next_id += 1;
            let reference = BillRef { id: state.next_id.to_string(), number: bill.bill_no.clone() };
            state.bills.insert(bill.bill_no.clone(), (reference.clone(), bill.model.clone()));
            outcomes.push(SaveOutcome::Saved(reference));
        }

        if state.fail_after_commit > 0 {
            state.fail_after_commit -= 1;
            return Err(crate::ports::TargetError {
                message: "HTTP 500 after commit".into(),
                retry: Retry::Later,
                outcome_unknown: true,
            });
        }
        Ok(outcomes)
    }

    async fn find_bill(&self, _form_id: &str, bill_no: &str) -> Result<Option<BillRef>, crate::ports::TargetError> {
        let mut state = self.lock();
        state.lookups += 1;
        Ok(state.bills.get(bill_no).map(|(reference, _)| reference.clone()))
    }

    async fn fetch_bill_summary(&self, _form_id: &str, bill_no: &str) -> Result<Option<BillSummary>, crate::ports::TargetError> {
        let mut state = self.lock();
        state.lookups += 1;
        Ok(state
            .bills
            .get(bill_no)
            .map(|(reference, model)| BillSummary { bill: reference.clone(), entries: Some(entry_summaries(model)) }))
    }

    async fn after_save(&self, form_id: &str, numbers: &[String], action: crate::mapping::AfterSave) -> Result<(), crate::ports::TargetError> {
        self.lock().after_save_calls.push((form_id.to_string(), numbers.to_vec(), action));
        Ok(())
    }

    fn material_lookup(&self) -> Option<&dyn crate::mapping::lookup::MaterialLookup> {
        Some(self)
    }
}

/// Looks values up in the table of [`MemoryBillTarget::add_material`], whatever the field.
#[async_trait]
impl crate::mapping::lookup::MaterialLookup for MemoryBillTarget {
    async fn find_materials(&self, _field: &str, values: &[String]) -> Result<HashMap<String, String>, crate::mapping::lookup::LookupError> {
        let mut state = self.lock();
        state.material_lookups.push(values.to_vec());
        Ok(values.iter().filter_map(|value| state.materials.get(value).map(|number| (value.clone(), number.clone()))).collect())
    }
}

/// JuShuiTan stand-in: serves sheets by modification time, page by page, and can fail a chosen
/// call with a source error.
#[derive(Debug, Default)]
pub struct MemorySheetSource {
    inner: Mutex<MemorySourceState>,
}

#[derive(Debug, Default)]
struct MemorySourceState {
    sheets: Vec<crate::sheet::CountSheet>,
    calls: usize,
    fail_on_call: Option<(usize, crate::ports::SourceError)>,
}

impl MemorySheetSource {
    pub fn new(sheets: Vec<crate::sheet::CountSheet>) -> Self {
        Self { inner: Mutex::new(MemorySourceState { sheets, ..Default::default() }) }
    }

    /// Makes call number `call` (counting from 1) fail with `error`.
    pub fn fail_on_call(&self, call: usize, error: crate::ports::SourceError) {
        self.inner.lock().expect("source mutex poisoned").fail_on_call = Some((call, error));
    }

    pub fn calls(&self) -> usize {
        self.inner.lock().expect("source mutex poisoned").calls
    }
}

#[async_trait]
impl crate::ports::SheetSource for MemorySheetSource {
    async fn query_page(&self, query: &crate::ports::SheetQuery) -> Result<crate::ports::SheetPage, crate::ports::SourceError> {
        let mut state = self.inner.lock().expect("source mutex poisoned");
        state.calls += 1;
        if let Some((call, error)) = &state.fail_on_call {
            if *call == state.calls {
                return Err(error.clone());
            }
        }

        let begin = crate::time::to_shanghai(query.window.begin);
        let end = crate::time::to_shanghai(query.window.end);
        let mut matching: Vec<_> = state
            .sheets
            .iter()
            .filter(|sheet| sheet.status == query.status)
            .filter(|sheet| sheet.modified.is_some_and(|modified| modified >= begin && modified <= end))
            .cloned()
            .collect();
        matching.sort_by_key(|sheet| (sheet.modified, sheet.io_id));

        let size = query.page_size.max(1) as usize;
        let start = (query.page_index.max(1) as usize - 1) * size;
        let sheets: Vec<_> = matching.iter().skip(start).take(size).cloned().collect();
        Ok(crate::ports::SheetPage { has_next: start + size < matching.len(), sheets })
    }

    async fn fetch_by_ids(&self, io_ids: &[i64]) -> Result<Vec<crate::sheet::CountSheet>, crate::ports::SourceError> {
        let state = self.inner.lock().expect("source mutex poisoned");
        Ok(state.sheets.iter().filter(|sheet| io_ids.contains(&sheet.io_id)).cloned().collect())
    }
}

/// Token pairs kept in a map.
#[derive(Debug, Default)]
pub struct MemoryTokenStore {
    tokens: Mutex<HashMap<String, crate::ports::StoredToken>>,
}

impl MemoryTokenStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl crate::ports::TokenStore for MemoryTokenStore {
    async fn load_token(&self, app_key: &str) -> Result<Option<crate::ports::StoredToken>, StoreError> {
        Ok(self.tokens.lock().expect("token mutex poisoned").get(app_key).cloned())
    }

    async fn replace_token(
        &self,
        app_key: &str,
        expected_version: Option<u64>,
        token: &crate::ports::StoredToken,
    ) -> Result<bool, StoreError> {
        let mut tokens = self.tokens.lock().expect("token mutex poisoned");
        let current = tokens.get(app_key).map(|stored| stored.version);
        if current != expected_version {
            return Ok(false);
        }
        tokens.insert(app_key.to_string(), token.clone());
        Ok(true)
    }
}
