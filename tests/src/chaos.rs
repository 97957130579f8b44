//! Chaos harness: the whole pipeline on moto (DynamoDB ledger, SQS queue with a dead-letter
//! queue) and both simulators, with faults injected at every step that can break exactly-once.
//!
//! Writers are the real [`Writer`], consuming SQS with receive and delete as Lambda's event
//! source mapping does: a batch's messages are deleted unless the writer reported them failed,
//! and SQS moves a message to the dead-letter queue after [`MAX_RECEIVES`] receives. Injected
//! faults:
//!
//! - duplicate deliveries: copies of some messages are sent again, some twice at once, so two
//!   writers work on one sheet at the same time;
//! - a writer killed between save and record: its target saves, then the batch future is
//!   dropped, so the ledger keeps an unfinished claim and SQS redelivers the whole batch;
//! - visibility timeouts that expire mid-save: the target waits longer than the visibility
//!   timeout before saving, so another writer receives the message meanwhile;
//! - Kingdee faults at seeded rates: HTTP 500 after commit, lock conflicts, call limits, and
//!   sessions ended every few seconds;
//! - JuShuiTan throttling, and fetchers started three at a time plus repeated runs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant};

use async_trait::async_trait;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};
use chrono::{Duration, NaiveDate, Utc};
use countsync::Config;
use countsync_aws::{DynamoState, SqsQueue};
use countsync_core::fetcher::{FetchReport, FetchRequest, Fetcher};
use countsync_core::mapping::lookup::MaterialCache;
use countsync_core::message;
use countsync_core::ports::{Bill, BillRef, BillSummary, BillTarget, SaveOutcome, SheetQueue, TargetError};
use countsync_core::sheet::{CONFIRMED, CountItem, CountSheet};
use countsync_core::writer::{InboundMessage, MessageOutcome, Writer};
use countsync_sim::jushuitan::{JstSim, JstSimConfig};
use countsync_sim::kingdee::{FaultPlan, KingdeeSim, KingdeeSimConfig};
use countsync_sim::moto::Moto;
use countsync_sim::seed;
use rust_decimal::Decimal;
use tokio::sync::Notify;

use crate::Peers;

/// Receives after which SQS moves a message to the dead-letter queue.
pub const MAX_RECEIVES: i32 = 5;

/// Pause of a writer after a receive that returned nothing.
const EMPTY_RECEIVE_PAUSE: StdDuration = StdDuration::from_millis(300);

/// Settings of one chaos run.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    pub sheets: usize,
    pub writers: usize,
    /// Seed of the sheet generator and of Kingdee's fault draws.
    pub seed: u64,
    /// SQS visibility timeout, seconds. Longer than `batch_budget`, as the template sets it
    /// (six times the writer timeout there), so only the slow batches outlive it.
    pub visibility_secs: i32,
    /// Time budget of one writer batch, like the Lambda timeout.
    pub batch_budget: StdDuration,
    /// The run gives up and reports what it has after this long.
    pub time_limit: StdDuration,
    /// One writer batch in this many is killed after its save.
    pub kill_every: u64,
    /// One writer batch in this many waits past the visibility timeout before saving.
    pub slow_every: u64,
    /// Days of sheets one scheduled fetch run reads (`fetch.window_hours` 24 and
    /// `fetch.max_windows_per_run`).
    pub days_per_run: usize,
    /// The next scheduled run starts when fewer messages than this wait in the queue. moto's
    /// SQS scans the whole queue on every call, so a smaller queue keeps it fast.
    pub queue_high_water: usize,
}

impl Default for ChaosOptions {
    fn default() -> Self {
        Self {
            sheets: 300,
            writers: 6,
            seed: 7,
            visibility_secs: 10,
            batch_budget: StdDuration::from_secs(8),
            time_limit: StdDuration::from_secs(600),
            kill_every: 17,
            slow_every: 23,
            days_per_run: 1,
            queue_high_water: 300,
        }
    }
}

/// Counters the harness keeps while it runs.
#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    receives: AtomicU64,
    deleted: AtomicU64,
    reported_failed: AtomicU64,
    killed_after_save: AtomicU64,
    slow_saves: AtomicU64,
    duplicates_sent: AtomicU64,
    created: AtomicU64,
    recovered: AtomicU64,
    already_done: AtomicU64,
    held: AtomicU64,
    busy: AtomicU64,
    session_expiries: AtomicU64,
    fetch_runs_failed: AtomicU64,
    /// What happened at each receive of a message, by message id, to explain dead letters.
    deliveries: std::sync::Mutex<HashMap<String, Vec<String>>>,
}

impl Counters {
    /// Records what happened at one receive of a message.
    fn note_delivery(&self, message_id: &str, event: String) {
        let mut deliveries = self.deliveries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        deliveries.entry(message_id.to_string()).or_default().push(event);
    }
}

/// What a chaos run did and found.
#[derive(Debug, Clone)]
pub struct ChaosReport {
    pub sheets: usize,
    pub confirmed: usize,
    pub bills: usize,
    pub duplicate_bill_nos: Vec<String>,
    pub extra_bill_nos: Vec<String>,
    pub missing_io_ids: Vec<i64>,
    pub dead_letters: usize,
    /// Sheets in the dead-letter queue, each with what happened at its receives.
    pub dead_letter_reasons: Vec<(Option<i64>, String)>,
    pub faults: BTreeMap<&'static str, u64>,
    pub outcomes: BTreeMap<&'static str, u64>,
    pub fetch_runs: usize,
    pub fetch_runs_skipped_by_lease: usize,
    /// Fetch runs that failed (throttling past the retries) and were repeated.
    pub fetch_runs_failed: u64,
    /// Sheets sent to the queue by all fetch runs together.
    pub fetch_sheets_enqueued: usize,
    pub kingdee_save_calls: u32,
    pub elapsed: StdDuration,
    pub timed_out: bool,
}

impl ChaosReport {
    /// Returns every broken exactly-once rule; empty when bills equal confirmed sheets exactly.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.bills != self.confirmed {
            problems.push(format!("{} bills for {} confirmed sheets", self.bills, self.confirmed));
        }
        if !self.duplicate_bill_nos.is_empty() {
            problems.push(format!("duplicated bill numbers: {:?}", self.duplicate_bill_nos));
        }
        if !self.extra_bill_nos.is_empty() {
            problems.push(format!("bills for no confirmed sheet: {:?}", self.extra_bill_nos));
        }
        if !self.missing_io_ids.is_empty() {
            problems.push(format!("confirmed sheets without a bill: {:?}", self.missing_io_ids));
        }
        if self.timed_out {
            problems.push("the run hit its time limit before the queue drained".into());
        }
        problems
    }
}

impl fmt::Display for ChaosReport {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(out, "chaos report")?;
        writeln!(out, "  sheets generated:        {}", self.sheets)?;
        writeln!(out, "  confirmed sheets:        {}", self.confirmed)?;
        writeln!(out, "  bills in Kingdee:        {}", self.bills)?;
        writeln!(out, "  duplicated bill numbers: {}", self.duplicate_bill_nos.len())?;
        writeln!(out, "  bills without a sheet:   {}", self.extra_bill_nos.len())?;
        writeln!(out, "  sheets without a bill:   {}", self.missing_io_ids.len())?;
        writeln!(out, "  dead letters:            {}", self.dead_letters)?;
        for (io_id, reason) in &self.dead_letter_reasons {
            writeln!(out, "    io_id {}: {reason}", io_id.map_or("?".to_string(), |id| id.to_string()))?;
        }
        writeln!(out, "  kingdee save calls:      {}", self.kingdee_save_calls)?;
        writeln!(
            out,
            "  fetch runs:              {} ({} exited on the run lease, {} failed and repeated; {} sheets enqueued)",
            self.fetch_runs, self.fetch_runs_skipped_by_lease, self.fetch_runs_failed, self.fetch_sheets_enqueued
        )?;
        writeln!(out, "  faults injected:")?;
        for (kind, count) in &self.faults {
            writeln!(out, "    {kind:<32} {count}")?;
        }
        writeln!(out, "  writer outcomes:")?;
        for (kind, count) in &self.outcomes {
            writeln!(out, "    {kind:<32} {count}")?;
        }
        writeln!(out, "  elapsed:                 {:.1} s", self.elapsed.as_secs_f64())?;
        let problems = self.problems();
        if problems.is_empty() {
            write!(out, "  result: bills == confirmed sheets, each exactly once")
        } else {
            write!(out, "  result: FAILED: {}", problems.join("; "))
        }
    }
}

/// Builds `count` small sheets deterministically: about one in ten is not confirmed, the rest are
/// spread over five days of modification times.
pub fn generate_sheets(count: usize, seed_value: u64) -> Vec<CountSheet> {
    let materials = seed::demo_materials();
    let warehouses = seed::demo_warehouses();
    let first_day = NaiveDate::from_ymd_opt(2026, 10, 2).expect("valid date");
    (0..count)
        .map(|index| {
            let mix = (index as u64).wrapping_mul(6_364_136_223_846_793_005).wrapping_add(seed_value);
            let warehouse = &warehouses[(mix % warehouses.len() as u64) as usize];
            let modified = first_day.and_hms_opt(0, 0, 0).expect("valid time")
                + Duration::seconds((index as i64 * 431_999) / count.max(1) as i64);
            let lines = 1 + (mix >> 8) as usize % 3;
            let items = (0..lines)
                .map(|line| CountItem {
                    ioi_id: Some(index as i64 * 10 + line as i64),
                    sku_id: materials[((mix >> 16) as usize + line * 7) % materials.len()].clone(),
                    i_id: None,
                    name: None,
                    properties_value: None,
                    r_qty: Some(Decimal::from((mix >> 24) % 100 + line as u64)),
                    qty: Some(Decimal::from(line as i64 - 1)),
                    batch_id: None,
                    product_date: None,
                    supplier_id: None,
                    expiration_date: None,
                })
                .collect();
            CountSheet {
                io_id: 900_001 + index as i64,
                io_date: Some(modified),
                status: if index % 10 == 9 { "WaitConfirm".into() } else { CONFIRMED.into() },
                warehouse: None,
                wh_id: Some(warehouse.wh_id),
                wms_co_id: Some(warehouse.wms_co_id),
                kind: None,
                creator_name: None,
                remark: None,
                modified: Some(modified),
                f_status: None,
                lock_wh_id: None,
                lock_wh_name: None,
                labels: vec![],
                items,
                batchs: vec![],
                sns: vec![],
            }
        })
        .collect()
}

/// The fault a [`ChaosTarget`] applies to one writer batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchFault {
    None,
    /// Save, then signal the worker to drop the batch before anything is recorded.
    KillAfterSave,
    /// Wait longer than the visibility timeout, then save.
    SlowSave(StdDuration),
}

/// Wraps the real Kingdee client with one batch's fault.
struct ChaosTarget {
    inner: Arc<dyn BillTarget>,
    fault: BatchFault,
    killed: Arc<Notify>,
}

#[async_trait]
impl BillTarget for ChaosTarget {
    async fn save_bills(&self, bills: &[Bill]) -> Result<Vec<SaveOutcome>, TargetError> {
        if let BatchFault::SlowSave(delay) = self.fault {
            tokio::time::sleep(delay).await;
        }
        let result = self.inner.save_bills(bills).await;
        if self.fault == BatchFault::KillAfterSave {
            self.killed.notify_one();
            std::future::pending::<()>().await;
        }
        result
    }

    async fn find_bill(&self, form_id: &str, bill_no: &str) -> Result<Option<BillRef>, TargetError> {
        self.inner.find_bill(form_id, bill_no).await
    }

    async fn fetch_bill_summary(&self, form_id: &str, bill_no: &str) -> Result<Option<BillSummary>, TargetError> {
        self.inner.fetch_bill_summary(form_id, bill_no).await
    }
}

/// Everything the workers share.
struct Pipeline {
    config: Config,
    options: ChaosOptions,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    state: Arc<DynamoState>,
    target: Arc<dyn BillTarget>,
    counters: Counters,
    stop: AtomicBool,
}

/// Runs the whole pipeline under faults and returns the report. Starts moto for DynamoDB (or
/// reuses `COUNTSYNC_MOTO_ENDPOINT`), a second moto for SQS and both simulators on 127.0.0.1,
/// and stops them at the end.
pub async fn run(options: ChaosOptions) -> anyhow::Result<ChaosReport> {
    // The SDK must never ask the EC2 metadata service for credentials.
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let started = Instant::now();
    let sheets = generate_sheets(options.sheets, options.seed);
    let confirmed: HashSet<i64> = sheets.iter().filter(|sheet| sheet.is_confirmed()).map(|sheet| sheet.io_id).collect();

    // DynamoDB and SQS on separate moto servers, so that the two share the machine's cores.
    let moto = Moto::start().await?;
    let sdk = moto.sdk_config().await;
    let queue_moto = Moto::spawn().await?;
    let queue_sdk = queue_moto.sdk_config().await;
    let peers = Arc::new(start_peers(sheets.clone(), options.seed).await?);
    // The first saves fail after commit whatever the seeded draws give, so that a short run
    // exercises the lookup after an HTTP 500 too.
    peers.kingdee.fail_next_saves_with_500_after_commit(2);
    let config = chaos_config(&peers, options.days_per_run)?;

    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let state = Arc::new(DynamoState::from_conf(&sdk, format!("chaos-{suffix}")));
    state.create_table().await?;
    let sqs = aws_sdk_sqs::Client::new(&queue_sdk);
    let (queue_url, dlq_url) = create_queues(&sqs, &suffix, options.visibility_secs).await?;
    let target = countsync::runtime::open_target(&config)?;
    let source = countsync::runtime::open_source(&config).await?;

    let pipeline = Arc::new(Pipeline {
        config,
        options: options.clone(),
        sqs: sqs.clone(),
        queue_url: queue_url.clone(),
        state: state.clone(),
        target,
        counters: Counters::default(),
        stop: AtomicBool::new(false),
    });

    let workers: Vec<_> = (0..options.writers).map(|_| tokio::spawn(worker(pipeline.clone()))).collect();
    let sessions = tokio::spawn(expire_sessions(pipeline.clone(), peers.clone()));

    // Scheduled runs catch up one day per run, the next firing when the writers have worked
    // the queue down, as a schedule after an outage does.
    peers.jst.throttle_next(3);
    let mut fetch_reports = run_fetchers(&pipeline, source.as_ref()).await?;
    let sqs_queue = SqsQueue::new(sqs.clone(), queue_url.clone());
    send_duplicates(&pipeline, &sheets, &sqs_queue).await?;
    while fetch_reports.iter().rev().take(3).any(|report| report.more_pending) {
        if !wait_for_queue_below(&pipeline, options.queue_high_water, started).await? {
            break;
        }
        fetch_reports.extend(run_fetchers(&pipeline, source.as_ref()).await?);
    }
    peers.jst.throttle_next(2);
    let late = run_fetchers(&pipeline, source.as_ref()).await?;

    let timed_out = !wait_until_drained(&pipeline, &peers, confirmed.len(), started).await?;
    pipeline.stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await??;
    }
    sessions.abort();

    let dead_letters = dead_letter_reasons(&pipeline, &dlq_url).await?;
    let report = build_report(&pipeline, &peers, &sheets, &confirmed, [fetch_reports, late].concat(), dead_letters, started, timed_out);
    drop(pipeline);
    let _ = sessions.await;
    if let Ok(peers) = Arc::try_unwrap(peers) {
        peers.kingdee.stop().await;
        peers.jst.stop().await;
    }
    moto.stop().await?;
    queue_moto.stop().await?;
    Ok(report)
}

async fn start_peers(sheets: Vec<CountSheet>, seed_value: u64) -> anyhow::Result<Peers> {
    let jst_config = JstSimConfig { calls_per_second: 200, calls_per_minute: 20_000, ..JstSimConfig::default() };
    let jst = JstSim::start(jst_config.clone(), sheets).await?;
    let kingdee_config = KingdeeSimConfig {
        materials: seed::demo_materials().into_iter().collect(),
        stocks: seed::demo_stocks().into_iter().collect(),
        orgs: [seed::DEMO_STOCK_ORG.to_string()].into_iter().collect(),
        faults: FaultPlan { seed: seed_value, lock_rate: 0.03, http_500_rate: 0.05, call_limit_rate: 0.02, ..FaultPlan::default() },
        ..KingdeeSimConfig::default()
    };
    let kingdee = KingdeeSim::start(kingdee_config.clone()).await?;
    Ok(Peers { jst, jst_config, kingdee, kingdee_config })
}

fn chaos_config(peers: &Peers, days_per_run: usize) -> anyhow::Result<Config> {
    let folder = std::env::temp_dir();
    let mut config = peers.local_config(&folder.join("countsync-chaos-unused.sqlite"))?;
    config.jushuitan.calls_per_second = 100;
    config.jushuitan.calls_per_minute = 20_000;
    config.fetch.window_hours = 24;
    config.fetch.max_windows_per_run = days_per_run.max(1);
    config.writer.batch_size = 10;
    config.writer.reserve_secs = 1;
    // A session login, so that the sessions the harness ends are lost mid-run and renewed.
    config.kingdee.auth = countsync_kingdee::AuthMode::AppSecret;
    Ok(config)
}

async fn create_queues(sqs: &aws_sdk_sqs::Client, suffix: &str, visibility_secs: i32) -> anyhow::Result<(String, String)> {
    let dlq_url = sqs.create_queue().queue_name(format!("chaos-dlq-{suffix}")).send().await?.queue_url.unwrap_or_default();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| anyhow::anyhow!("moto returned no QueueArn for {dlq_url}"))?;
    let redrive = serde_json::json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES.to_string() }).to_string();
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("chaos-{suffix}"))
        .attributes(QueueAttributeName::VisibilityTimeout, visibility_secs.to_string())
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await?
        .queue_url
        .unwrap_or_default();
    Ok((queue_url, dlq_url))
}

/// Starts three scheduled fetch runs at once, then one more after them, as a schedule that fires
/// twice and a slow run do. A run that failed (for example on throttling) is repeated.
async fn run_fetchers(pipeline: &Pipeline, source: &dyn countsync_core::ports::SheetSource) -> anyhow::Result<Vec<FetchReport>> {
    let queue = SqsQueue::new(pipeline.sqs.clone(), pipeline.queue_url.clone());
    let settings = pipeline.config.fetch_settings(Utc::now());
    let fetcher = Fetcher { source, queue: &queue, watermarks: pipeline.state.as_ref(), settings: &settings };
    let request = FetchRequest::default();
    let mut reports = Vec::new();
    for attempt in 0..10 {
        let now = Utc::now();
        let (first, second, third) = tokio::join!(fetcher.run(&request, now), fetcher.run(&request, now), fetcher.run(&request, now));
        let mut fetched = false;
        for result in [first, second, third] {
            match result {
                Ok(report) => {
                    fetched |= report.skipped_lease_held_until.is_none();
                    reports.push(report);
                }
                Err(error) => {
                    pipeline.counters.fetch_runs_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(attempt, error = %error, "chaos fetch run failed; repeating");
                }
            }
        }
        if fetched {
            return Ok(reports);
        }
        tokio::time::sleep(StdDuration::from_millis(500)).await;
    }
    anyhow::bail!("no fetch run succeeded in 10 attempts")
}

/// Sends copies of about one sheet in eight again, and of one in forty twice at once.
async fn send_duplicates(pipeline: &Pipeline, sheets: &[CountSheet], queue: &SqsQueue) -> anyhow::Result<()> {
    let mut copies = Vec::new();
    for sheet in sheets.iter().filter(|sheet| sheet.is_confirmed()) {
        if sheet.io_id % 8 == 0 {
            copies.push(message::encode(sheet)?);
        }
        if sheet.io_id % 40 == 0 {
            copies.push(message::encode(sheet)?);
        }
    }
    queue.send(&copies).await?;
    pipeline.counters.duplicates_sent.fetch_add(copies.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// Ends every Kingdee session every two seconds until stopped.
async fn expire_sessions(pipeline: Arc<Pipeline>, peers: Arc<Peers>) {
    while !pipeline.stop.load(Ordering::SeqCst) {
        tokio::time::sleep(StdDuration::from_secs(2)).await;
        peers.kingdee.expire_sessions();
        pipeline.counters.session_expiries.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs one writer: receive up to ten messages, process them, delete the ones not reported failed.
async fn worker(pipeline: Arc<Pipeline>) -> anyhow::Result<()> {
    let settings = pipeline.config.writer_settings();
    while !pipeline.stop.load(Ordering::SeqCst) {
        // Short polls with a pause between empty ones: moto serves a long poll by scanning the
        // whole queue in a loop until it ends, which keeps its one core busy.
        let received = pipeline.sqs.receive_message().queue_url(&pipeline.queue_url).max_number_of_messages(10).wait_time_seconds(0).send().await;
        let received = match received {
            Ok(received) => received,
            Err(error) => {
                // moto returns an HTML error page for some requests under load, and Lambda's poller
                // retries such receives too.
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "sqs receive failed; retrying");
                tokio::time::sleep(StdDuration::from_secs(1)).await;
                continue;
            }
        };
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            tokio::time::sleep(EMPTY_RECEIVE_PAUSE).await;
            continue;
        }
        let counters = &pipeline.counters;
        counters.receives.fetch_add(messages.len() as u64, Ordering::Relaxed);
        let batch_number = counters.batches.fetch_add(1, Ordering::Relaxed) + 1;
        let fault = choose_fault(&pipeline.options, batch_number);

        let receipts: HashMap<String, String> = messages
            .iter()
            .filter_map(|message| Some((message.message_id.clone()?, message.receipt_handle.clone()?)))
            .collect();
        let inbound: Vec<InboundMessage> = messages
            .iter()
            .filter_map(|message| Some(InboundMessage { message_id: message.message_id.clone()?, body: message.body.clone()? }))
            .collect();

        let killed = Arc::new(Notify::new());
        let target = ChaosTarget { inner: pipeline.target.clone(), fault, killed: killed.clone() };
        let writer = Writer { ledger: pipeline.state.as_ref(), target: &target, mapping: &pipeline.config.mapping, settings: &settings, materials: &MaterialCache::default() };
        // A slow batch gets its delay on top of the budget, so that its save still runs after
        // the message became visible again, as in a function whose timeout exceeds it.
        let budget = match fault {
            BatchFault::SlowSave(delay) => pipeline.options.batch_budget + delay,
            _ => pipeline.options.batch_budget,
        };
        let deadline = Utc::now() + Duration::from_std(budget)?;
        let report = tokio::select! {
            report = writer.process(&inbound, deadline) => report,
            () = killed.notified() => {
                // The batch future is dropped here, after the save and before any ledger write,
                // as a Lambda that times out or crashes; SQS redelivers every message.
                counters.killed_after_save.fetch_add(1, Ordering::Relaxed);
                for message in &inbound {
                    counters.note_delivery(&message.message_id, "killed after save".into());
                }
                continue;
            }
        };
        if let BatchFault::SlowSave(_) = fault {
            counters.slow_saves.fetch_add(1, Ordering::Relaxed);
        }

        let failed: HashSet<String> = report.failed_message_ids().into_iter().collect();
        counters.reported_failed.fetch_add(failed.len() as u64, Ordering::Relaxed);
        for message in &report.messages {
            count_outcome(counters, &message.outcome);
            let event = match &message.outcome {
                MessageOutcome::Failed { reason, .. } => format!("failed: {}", reason.code),
                MessageOutcome::Held { .. } => "held".into(),
                MessageOutcome::AlreadyDone { .. } => "already done".into(),
                MessageOutcome::Created { .. } => "created".into(),
                MessageOutcome::Recovered { .. } => "recovered".into(),
            };
            counters.note_delivery(&message.message_id, event);
        }
        // Lambda's event source deletes the messages not reported failed in one batch call.
        let entries: Vec<DeleteMessageBatchRequestEntry> = receipts
            .iter()
            .filter(|(message_id, _)| !failed.contains(*message_id))
            .enumerate()
            .filter_map(|(index, (_, receipt))| DeleteMessageBatchRequestEntry::builder().id(index.to_string()).receipt_handle(receipt).build().ok())
            .collect();
        if entries.is_empty() {
            continue;
        }
        let deleted = pipeline.sqs.delete_message_batch().queue_url(&pipeline.queue_url).set_entries(Some(entries)).send().await;
        match deleted {
            Ok(output) => {
                counters.deleted.fetch_add(output.successful.len() as u64, Ordering::Relaxed);
                if !output.failed.is_empty() {
                    tracing::warn!(failed = output.failed.len(), "some deletes failed; those messages come again");
                    for message in &inbound {
                        counters.note_delivery(&message.message_id, "a delete of its batch failed".into());
                    }
                }
            }
            Err(error) => {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "delete failed; the messages come again");
                for message in &inbound {
                    counters.note_delivery(&message.message_id, "delete failed".into());
                }
            }
        }
    }
    Ok(())
}

fn choose_fault(options: &ChaosOptions, batch_number: u64) -> BatchFault {
    if options.kill_every > 0 && batch_number.is_multiple_of(options.kill_every) {
        return BatchFault::KillAfterSave;
    }
    if options.slow_every > 0 && batch_number.is_multiple_of(options.slow_every) {
        let past_visibility = StdDuration::from_secs(options.visibility_secs.max(0) as u64) + StdDuration::from_millis(1_500);
        return BatchFault::SlowSave(past_visibility);
    }
    BatchFault::None
}

fn count_outcome(counters: &Counters, outcome: &MessageOutcome) {
    let counter = match outcome {
        MessageOutcome::Created { .. } => &counters.created,
        MessageOutcome::Recovered { .. } => &counters.recovered,
        MessageOutcome::AlreadyDone { .. } => &counters.already_done,
        MessageOutcome::Held { .. } => &counters.held,
        MessageOutcome::Failed { reason, .. } if reason.code == "claimed_elsewhere" => &counters.busy,
        MessageOutcome::Failed { .. } => return,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Waits until fewer than `high_water` messages are in the queue. Returns false when the time
/// limit came first.
async fn wait_for_queue_below(pipeline: &Pipeline, high_water: usize, started: Instant) -> anyhow::Result<bool> {
    loop {
        if queue_depth(&pipeline.sqs, &pipeline.queue_url).await? < high_water {
            return Ok(true);
        }
        if started.elapsed() > pipeline.options.time_limit {
            return Ok(false);
        }
        tokio::time::sleep(StdDuration::from_millis(500)).await;
    }
}

/// Waits until Kingdee has a bill per confirmed sheet and the queue is empty. Returns false
/// when the time limit came first.
async fn wait_until_drained(pipeline: &Pipeline, peers: &Peers, confirmed: usize, started: Instant) -> anyhow::Result<bool> {
    loop {
        let in_queue = queue_depth(&pipeline.sqs, &pipeline.queue_url).await?;
        if in_queue == 0 && peers.kingdee.bill_count() >= confirmed {
            return Ok(true);
        }
        if started.elapsed() > pipeline.options.time_limit {
            return Ok(false);
        }
        tokio::time::sleep(StdDuration::from_millis(500)).await;
    }
}

/// Reads every dead letter once and pairs its sheet with what happened at its receives.
async fn dead_letter_reasons(pipeline: &Pipeline, dlq_url: &str) -> anyhow::Result<Vec<(Option<i64>, String)>> {
    let mut letters = Vec::new();
    loop {
        let received = pipeline.sqs.receive_message().queue_url(dlq_url).max_number_of_messages(10).visibility_timeout(600).send().await?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        let deliveries = pipeline.counters.deliveries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for message in &messages {
            let io_id = message.body.as_deref().and_then(message::peek_io_id);
            let history = message.message_id.as_ref().and_then(|id| deliveries.get(id)).map(|events| events.join(", "));
            letters.push((io_id, history.unwrap_or_else(|| "no receive recorded".into())));
        }
    }
    Ok(letters)
}

/// Returns visible plus in-flight messages of a queue.
async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> anyhow::Result<usize> {
    let output = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await?;
    let attributes = output.attributes.unwrap_or_default();
    let count = |name: &QueueAttributeName| attributes.get(name).and_then(|value| value.parse::<usize>().ok()).unwrap_or(0);
    Ok(count(&QueueAttributeName::ApproximateNumberOfMessages) + count(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    pipeline: &Pipeline,
    peers: &Peers,
    sheets: &[CountSheet],
    confirmed: &HashSet<i64>,
    fetch_reports: Vec<FetchReport>,
    dead_letters: Vec<(Option<i64>, String)>,
    started: Instant,
    timed_out: bool,
) -> ChaosReport {
    let bills = peers.kingdee.bills();
    let mut seen = HashSet::new();
    let mut duplicate_bill_nos = Vec::new();
    for bill in &bills {
        if !seen.insert(bill.bill_no.clone()) {
            duplicate_bill_nos.push(bill.bill_no.clone());
        }
    }
    let expected: HashMap<String, i64> = confirmed.iter().map(|io_id| (pipeline.config.mapping.bill_no(*io_id), *io_id)).collect();
    let extra_bill_nos = seen.iter().filter(|bill_no| !expected.contains_key(*bill_no)).cloned().collect();
    let mut missing_io_ids: Vec<i64> = expected.iter().filter(|(bill_no, _)| !seen.contains(*bill_no)).map(|(_, io_id)| *io_id).collect();
    missing_io_ids.sort_unstable();

    let kingdee = peers.kingdee.stats();
    let jst = peers.jst.stats();
    let counters = &pipeline.counters;
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let faults = BTreeMap::from([
        ("duplicate deliveries sent", load(&counters.duplicates_sent)),
        ("writers killed after save", load(&counters.killed_after_save)),
        ("saves past visibility timeout", load(&counters.slow_saves)),
        ("kingdee http 500 after commit", u64::from(kingdee.http_500_injected)),
        ("kingdee lock conflicts", u64::from(kingdee.locks_injected)),
        ("kingdee call limits", u64::from(kingdee.call_limits_injected)),
        ("kingdee session expiries", load(&counters.session_expiries)),
        ("kingdee session-lost replies", u64::from(kingdee.session_lost_responses)),
        ("jushuitan throttled calls", jst.throttled as u64),
    ]);
    let outcomes = BTreeMap::from([
        ("messages received", load(&counters.receives)),
        ("messages deleted", load(&counters.deleted)),
        ("reported failed (retried)", load(&counters.reported_failed)),
        ("created", load(&counters.created)),
        ("recovered (found by number)", load(&counters.recovered)),
        ("already done", load(&counters.already_done)),
        ("busy (claimed elsewhere)", load(&counters.busy)),
        ("held for an operator", load(&counters.held)),
    ]);
    ChaosReport {
        sheets: sheets.len(),
        confirmed: confirmed.len(),
        bills: bills.len(),
        duplicate_bill_nos,
        extra_bill_nos,
        missing_io_ids,
        dead_letters: dead_letters.len(),
        dead_letter_reasons: dead_letters,
        faults,
        outcomes,
        fetch_runs: fetch_reports.len(),
        fetch_runs_skipped_by_lease: fetch_reports.iter().filter(|report| report.skipped_lease_held_until.is_some()).count(),
        fetch_runs_failed: load(&counters.fetch_runs_failed),
        fetch_sheets_enqueued: fetch_reports.iter().map(|report| report.sheets_enqueued).sum(),
        kingdee_save_calls: kingdee.save_calls,
        elapsed: started.elapsed(),
        timed_out,
    }
}
