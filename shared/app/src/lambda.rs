//! Lambda adapters: event in, fetcher or writer call, response out. The function binaries only
//! build these at cold start and hand them to `lambda_runtime`.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Duration, TimeZone, Utc};
use countsync_core::fetcher::{FetchReport, FetchRequest, Fetcher};
use countsync_core::mapping::lookup::MaterialCache;
use countsync_core::ports::{BillTarget, IdempotencyLedger, SheetQueue, WatermarkStore};
use countsync_core::writer::{InboundMessage, MessageOutcome, WriteReport, Writer};
use countsync_jushuitan::JushuitanClient;
use countsync_kingdee::KingdeeClient;
use lambda_runtime::{Context, LambdaEvent};
use serde::Deserialize;
use serde_json::Value;
use tracing::{debug, error, info};

use crate::config::Config;
use crate::runtime;

/// Deadline assumed when the context carries none (unit tests build `Context::default()`).
const DEFAULT_TIME_BUDGET: Duration = Duration::minutes(5);

/// Input of the fetcher. EventBridge Scheduler delivers only the schedule's `Input`, such as
/// `{"scheduled_time": "…"}`. An empty object also runs from the watermark. `begin` with `end`
/// (RFC 3339) back-fills that range without touching the watermark.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FetcherEvent {
    pub scheduled_time: Option<String>,
    pub begin: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

/// Cold-start state of the fetcher function.
pub struct FetcherApp {
    pub config: Config,
    /// Shared by the invocations of a warm function; each run takes its own call budget.
    pub jushuitan: JushuitanClient,
    pub queue: Arc<dyn SheetQueue>,
    pub watermarks: Arc<dyn WatermarkStore>,
}

impl FetcherApp {
    /// Reads the configuration from AWS and opens JuShuiTan, SQS and DynamoDB.
    pub async fn from_aws() -> anyhow::Result<Self> {
        let sdk = runtime::aws_sdk_config().await;
        let config = Config::load_from_aws(&sdk).await?;
        let state = runtime::open_state(&config, Some(&sdk)).await?;
        Ok(Self {
            jushuitan: runtime::open_jushuitan(&config).await?,
            queue: runtime::open_sqs_queue(&config, &sdk)?,
            watermarks: state.watermarks,
            config,
        })
    }

    /// Runs one fetch. A failure fails the invocation, which the fetcher-errors alarm watches;
    /// the watermark stays where the last complete window left it.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<FetchReport, lambda_runtime::Error> {
        let input: FetcherEvent = serde_json::from_value(event.payload).map_err(|error| {
            error!(error = %error, "invalid fetcher event");
            format!("invalid fetcher event: {error}; send {{}} or {{\"begin\": RFC 3339, \"end\": RFC 3339}}")
        })?;
        let now = Utc::now();
        let request = FetchRequest { begin: input.begin, end: input.end };
        let settings = self.config.fetch_settings(now);
        let source = self.jushuitan.for_run();
        let fetcher = Fetcher {
            source: &source,
            queue: self.queue.as_ref(),
            watermarks: self.watermarks.as_ref(),
            settings: &settings,
        };

        match fetcher.run(&request, now).await {
            Ok(report) => {
                if let Some(watermark) = report.watermark {
                    emit_sync_lag(now - watermark);
                }
                Ok(report)
            }
            Err(fetch_error) => {
                error!(error = %fetch_error, retry = ?fetch_error.retry(), scheduled_time = ?input.scheduled_time, "fetch failed");
                Err(fetch_error.into())
            }
        }
    }
}

/// Cold-start state of the writer function.
pub struct WriterApp {
    pub config: Config,
    pub target: Arc<dyn BillTarget>,
    pub ledger: Arc<dyn IdempotencyLedger>,
    /// The Kingdee client behind `target`. It receives each invocation's deadline so that no
    /// save outlives the function. `None` when `target` is another implementation.
    pub kingdee: Option<Arc<KingdeeClient>>,
    /// Material codes looked up in Kingdee, kept while the Lambda stays warm.
    pub materials: MaterialCache,
}

impl WriterApp {
    /// Reads the configuration from AWS and opens Kingdee and DynamoDB.
    pub async fn from_aws() -> anyhow::Result<Self> {
        let sdk = runtime::aws_sdk_config().await;
        let config = Config::load_from_aws(&sdk).await?;
        let state = runtime::open_state(&config, Some(&sdk)).await?;
        let kingdee = Arc::new(KingdeeClient::new(config.kingdee.clone())?);
        Ok(Self { target: kingdee.clone(), kingdee: Some(kingdee), ledger: state.ledger, config, materials: MaterialCache::default() })
    }

    /// Saves the batch and names exactly the failed messages, so SQS redelivers only those.
    pub async fn handle(&self, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let deadline = deadline_of(&event.context);
        info!(records = event.payload.records.len(), %deadline, request_id = %event.context.request_id, "writer invoked");
        let messages: Vec<InboundMessage> = event
            .payload
            .records
            .into_iter()
            .filter_map(|record| match record.message_id {
                Some(message_id) => Some(InboundMessage { message_id, body: record.body.unwrap_or_default() }),
                None => {
                    error!("sqs record without a message id; it cannot be reported and is skipped");
                    None
                }
            })
            .collect();

        let report = self.write(&messages, deadline).await;
        Ok(batch_response(&report))
    }

    pub async fn write(&self, messages: &[InboundMessage], deadline: DateTime<Utc>) -> WriteReport {
        if let Some(kingdee) = &self.kingdee {
            kingdee.set_save_deadline(Some(deadline));
        }
        let settings = self.config.writer_settings();
        let writer = Writer {
            ledger: self.ledger.as_ref(),
            target: self.target.as_ref(),
            mapping: &self.config.mapping,
            settings: &settings,
            materials: &self.materials,
        };
        let report = writer.process(messages, deadline).await;
        log_report(&report);
        report
    }
}

/// Builds the partial batch response: one `itemIdentifier` per failed message.
pub fn batch_response(report: &WriteReport) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for message_id in report.failed_message_ids() {
        response.add_failure(message_id);
    }
    response
}

fn log_report(report: &WriteReport) {
    for message in &report.messages {
        if let MessageOutcome::Held { reason, .. } = &message.outcome {
            // Acknowledged, so no dead letter: this line is what the held-sheet alarm counts.
            error!(message_id = %message.message_id, io_id = ?message.io_id, reason = %reason.code, message_zh = %reason.message_zh, detail = ?reason.detail, "sheet held for an operator");
        }
        if let MessageOutcome::Failed { retry, reason } = &message.outcome {
            info!(
                message_id = %message.message_id,
                io_id = ?message.io_id,
                retry = ?retry,
                reason = %reason.code,
                message_zh = %reason.message_zh,
                detail = ?reason.detail,
                "message failed"
            );
        }
    }
}

/// Returns the invocation deadline, or a default budget when the context has none.
///
/// Lambda sends the deadline as epoch milliseconds. A value more than a day in the past is not
/// such an instant (unit tests send 0, and under `cargo lambda watch` 1.9.2 it arrived as
/// 600000), so the default budget applies.
pub fn deadline_of(context: &Context) -> DateTime<Utc> {
    let now = Utc::now();
    let sent = i64::try_from(context.deadline).ok().and_then(|millis| Utc.timestamp_millis_opt(millis).single());
    match sent {
        Some(deadline) if deadline > now - Duration::days(1) => deadline,
        _ => {
            debug!(deadline_ms = context.deadline, "context deadline is not an instant; using the default budget");
            now + DEFAULT_TIME_BUDGET
        }
    }
}

/// Publishes how far the watermark trails now as a CloudWatch embedded-metric log line, which
/// the sync-lag alarm watches.
fn emit_sync_lag(lag: Duration) {
    let line = serde_json::json!({
        "_aws": {
            "Timestamp": Utc::now().timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": "countsync",
                "Dimensions": [[]],
                "Metrics": [{ "Name": "SyncLagSeconds", "Unit": "Seconds" }]
            }]
        },
        "SyncLagSeconds": lag.num_seconds()
    });
    println!("{line}");
}
