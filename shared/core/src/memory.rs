//! In-memory adapters of the ports, for the local run's queue and for unit tests.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Retry;
use crate::ports::{
    BillRef, Claim, FailureReason, IdempotencyLedger, LedgerRecord, LedgerState, OutgoingMessage, QueueError,
    SheetQueue, StoreError, WatermarkStore, decide_claim,
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

    /// Puts messages back at the front, for a retry after a failed attempt.
    pub fn requeue(&self, returned: Vec<OutgoingMessage>) {
        let mut messages = self.messages.lock().expect("queue mutex poisoned");
        for message in returned.into_iter().rev() {
            messages.push_front(message);
        }
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

    async fn get(&self, io_id: i64) -> Result<Option<LedgerRecord>, StoreError> {
        Ok(self.records.lock().expect("ledger mutex poisoned").get(&io_id).cloned())
    }
}
