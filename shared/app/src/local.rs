//! The single-machine run: fetcher and writer in one process, joined by an in-process queue, on
//! the state backend of the configuration (SQLite by default).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use countsync_core::fetcher::{FetchReport, FetchRequest, Fetcher};
use countsync_core::mapping::lookup::MaterialCache;
use countsync_core::memory::MemoryQueue;
use countsync_core::message;
use countsync_core::ports::{BillTarget, FailureReason, IdempotencyLedger, OutgoingMessage, SheetQueue, SheetSource};
use countsync_core::writer::{InboundMessage, MessageOutcome, MessageReport, Writer};
use serde::Serialize;
use tracing::{info, warn};

use crate::config::Config;
use crate::runtime::State;

/// Messages per writer batch, as the SQS trigger delivers by default.
const WRITER_BATCH: usize = 10;
/// Deliveries of one message before it counts as failed, as the dead-letter redrive does.
const MAX_DELIVERIES: u32 = 5;
/// Time budget of one writer batch, as a Lambda timeout would set.
const BATCH_BUDGET: Duration = Duration::minutes(5);

/// Counts and failures of one local run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LocalSummary {
    pub fetch: FetchReport,
    /// Bills created by this run.
    pub created: usize,
    /// Sheets the ledger already recorded as bills; Kingdee was not called for them.
    pub already_done: usize,
    /// Bills an earlier, interrupted attempt had saved, found and recorded by this run.
    pub recovered: usize,
    /// Redeliveries after retryable failures.
    pub redeliveries: usize,
    /// Sheets that did not become bills, with the last reason.
    pub failed: Vec<FailedSheet>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailedSheet {
    pub io_id: Option<i64>,
    pub reason: FailureReason,
}

impl LocalSummary {
    /// Failed sheets grouped by reason code, for the summary table.
    pub fn failures_by_reason(&self) -> BTreeMap<&str, Vec<&FailedSheet>> {
        let mut groups: BTreeMap<&str, Vec<&FailedSheet>> = BTreeMap::new();
        for failed in &self.failed {
            groups.entry(failed.reason.code.as_str()).or_default().push(failed);
        }
        groups
    }
}

/// Fetches and writes until the queue is empty.
pub async fn run(
    config: &Config,
    source: &dyn SheetSource,
    target: &dyn BillTarget,
    state: &State,
    request: &FetchRequest,
    now: DateTime<Utc>,
) -> anyhow::Result<LocalSummary> {
    let queue = MemoryQueue::new();
    let fetch_settings = config.fetch_settings(now);
    let fetcher = Fetcher {
        source,
        queue: &queue,
        watermarks: state.watermarks.as_ref(),
        settings: &fetch_settings,
    };
    let fetch = fetcher.run(request, now).await?;

    let writer_settings = config.writer_settings();
    let materials = MaterialCache::default();
    let writer = Writer {
        ledger: state.ledger.as_ref(),
        target,
        mapping: &config.mapping,
        settings: &writer_settings,
        materials: &materials,
    };
    let mut summary = LocalSummary { fetch, ..Default::default() };
    let mut deliveries: BTreeMap<String, u32> = BTreeMap::new();

    loop {
        let batch = queue.take(WRITER_BATCH);
        if batch.is_empty() {
            break;
        }
        let inbound: Vec<InboundMessage> = batch
            .iter()
            .map(|message| InboundMessage { message_id: message.id.clone(), body: message.body.clone() })
            .collect();
        let report = writer.process(&inbound, Utc::now() + BATCH_BUDGET).await;

        let mut redeliver = Vec::new();
        for (message, outcome) in batch.into_iter().zip(report.messages) {
            match outcome.outcome {
                MessageOutcome::Created { .. } => summary.created += 1,
                MessageOutcome::AlreadyDone { .. } => summary.already_done += 1,
                MessageOutcome::Recovered { .. } => summary.recovered += 1,
                MessageOutcome::Held { reason, .. } => {
                    // Listed with the failures because an operator must act; never redelivered.
                    warn!(io_id = ?outcome.io_id, reason = %reason.code, "sheet held for an operator");
                    summary.failed.push(FailedSheet { io_id: outcome.io_id, reason });
                }
                MessageOutcome::Failed { retry, reason } => {
                    let count = deliveries.entry(message.id.clone()).or_insert(0);
                    *count += 1;
                    if retry.is_retryable() && *count < MAX_DELIVERIES {
                        info!(io_id = ?outcome.io_id, reason = %reason.code, delivery = *count, "redelivering after a retryable failure");
                        summary.redeliveries += 1;
                        redeliver.push(message);
                    } else {
                        warn!(io_id = ?outcome.io_id, reason = %reason.code, "sheet failed");
                        summary.failed.push(FailedSheet { io_id: outcome.io_id, reason });
                    }
                }
            }
        }
        if !redeliver.is_empty() {
            // A short pause, like a visibility timeout, lets a lock or a claim clear.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            queue.send(&redeliver).await?;
        }
    }
    Ok(summary)
}

/// Outcome of a replay, per sheet.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplaySummary {
    /// Held records moved back to `retry` before the replay.
    pub reset: Vec<i64>,
    /// Sheets JuShuiTan no longer returns by id (deleted or not confirmed); not replayed.
    pub missing: Vec<i64>,
    /// Sheets whose replay message was handed to the writer or the queue.
    pub replayed: Vec<i64>,
    /// Writer outcome per sheet, for a local replay; empty when the messages went to SQS.
    pub outcomes: Vec<MessageReport>,
}

/// Largest number of ids `fetch_by_ids` takes in one call.
const FETCH_BY_IDS_CHUNK: usize = 50;

/// Re-fetches the sheets by id, moves their held records back to `retry` and builds one queue
/// message per confirmed sheet. A sheet that is `done` meanwhile keeps its record, so its replay
/// is acknowledged as already synced without calling Kingdee.
async fn prepare_replay(source: &dyn SheetSource, ledger: &dyn IdempotencyLedger, io_ids: &[i64]) -> anyhow::Result<(ReplaySummary, Vec<OutgoingMessage>)> {
    let mut summary = ReplaySummary::default();
    let mut messages = Vec::new();
    for chunk in io_ids.chunks(FETCH_BY_IDS_CHUNK) {
        let sheets = source.fetch_by_ids(chunk).await?;
        for &io_id in chunk {
            let Some(sheet) = sheets.iter().find(|sheet| sheet.io_id == io_id && sheet.is_confirmed()) else {
                warn!(io_id, "sheet not returned as confirmed by jushuitan; not replayed");
                summary.missing.push(io_id);
                continue;
            };
            if ledger.reset(io_id, Utc::now()).await? {
                info!(io_id, "held record reset for replay");
                summary.reset.push(io_id);
            }
            messages.push(message::encode(sheet)?);
            summary.replayed.push(io_id);
        }
    }
    Ok((summary, messages))
}

/// Replays sheets in this process: re-fetch, reset, then one writer pass per batch. Outcomes are
/// returned as they are; nothing is redelivered.
pub async fn replay_local(
    config: &Config,
    source: &dyn SheetSource,
    target: &dyn BillTarget,
    state: &State,
    io_ids: &[i64],
) -> anyhow::Result<ReplaySummary> {
    let (mut summary, messages) = prepare_replay(source, state.ledger.as_ref(), io_ids).await?;
    let settings = config.writer_settings();
    let materials = MaterialCache::default();
    let writer = Writer { ledger: state.ledger.as_ref(), target, mapping: &config.mapping, settings: &settings, materials: &materials };
    for batch in messages.chunks(WRITER_BATCH) {
        let inbound: Vec<InboundMessage> = batch
            .iter()
            .map(|message| InboundMessage { message_id: format!("replay-{}", message.id), body: message.body.clone() })
            .collect();
        let report = writer.process(&inbound, Utc::now() + BATCH_BUDGET).await;
        summary.outcomes.extend(report.messages);
    }
    Ok(summary)
}

/// Replays sheets through the queue (SQS in AWS): re-fetch, reset, send. The writer function
/// then processes them like any other message.
pub async fn replay_to_queue(source: &dyn SheetSource, ledger: &dyn IdempotencyLedger, queue: &dyn SheetQueue, io_ids: &[i64]) -> anyhow::Result<ReplaySummary> {
    let (summary, messages) = prepare_replay(source, ledger, io_ids).await?;
    queue.send(&messages).await?;
    Ok(summary)
}
