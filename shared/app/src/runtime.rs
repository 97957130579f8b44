//! Builds the adapters that the configuration names.

use std::sync::Arc;

use countsync_aws::{DynamoState, SqsQueue};
use countsync_core::memory::MemoryQueue;
use countsync_core::ports::{BillTarget, IdempotencyLedger, SheetQueue, SheetSource, WatermarkStore, TokenStore};
use countsync_embedded::SqliteState;
use countsync_jushuitan::{JushuitanClient, TokenMode};
use countsync_kingdee::KingdeeClient;

use crate::config::{Config, QueueBackend, StateBackend};

/// The watermark store and the idempotency ledger, which share one backend.
#[derive(Clone)]
pub struct State {
    pub watermarks: Arc<dyn WatermarkStore>,
    pub ledger: Arc<dyn IdempotencyLedger>,
}

/// Loads the AWS SDK configuration from the environment (region, credentials and
/// `AWS_ENDPOINT_URL*` overrides, which point the SDK at moto in tests).
pub async fn aws_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await
}

/// Opens the state backend named by `[state]`.
pub async fn open_state(config: &Config, aws: Option<&aws_config::SdkConfig>) -> anyhow::Result<State> {
    match config.state.backend {
        StateBackend::Sqlite => {
            if let Some(folder) = config.state.path.parent() {
                std::fs::create_dir_all(folder)?;
            }
            let state = Arc::new(SqliteState::open(&config.state.path)?);
            Ok(State { watermarks: state.clone(), ledger: state })
        }
        StateBackend::Dynamodb => {
            let sdk = match aws {
                Some(sdk) => sdk.clone(),
                None => aws_sdk_config().await,
            };
            let state = Arc::new(DynamoState::new(aws_sdk_dynamodb::Client::new(&sdk), config.state.table.clone()));
            Ok(State { watermarks: state.clone(), ledger: state })
        }
    }
}

/// Opens the SQS queue named by `[queue]`; the in-process queue is created by the local run.
pub fn open_sqs_queue(config: &Config, sdk: &aws_config::SdkConfig) -> anyhow::Result<Arc<dyn SheetQueue>> {
    anyhow::ensure!(config.queue.backend == QueueBackend::Sqs, "queue.backend is not \"sqs\"");
    Ok(Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(sdk), config.queue.url.clone())))
}

/// Returns an in-process queue for the local run.
pub fn memory_queue() -> Arc<MemoryQueue> {
    Arc::new(MemoryQueue::new())
}

/// Opens the JuShuiTan client. With `token_mode` `merchant` or `isv` the token pair lives in the
/// state backend, so that one refresher at a time replaces it.
pub async fn open_source(config: &Config) -> anyhow::Result<Arc<dyn SheetSource>> {
    Ok(Arc::new(open_jushuitan(config).await?))
}

/// Opens the JuShuiTan client itself, for a process that runs several fetches: each run takes
/// [`JushuitanClient::for_run`] so that the call budget applies per run.
pub async fn open_jushuitan(config: &Config) -> anyhow::Result<JushuitanClient> {
    if config.jushuitan.token_mode == TokenMode::Static {
        return Ok(JushuitanClient::new(config.jushuitan.clone())?);
    }
    let tokens = open_token_store(config).await?;
    Ok(JushuitanClient::with_token_store(config.jushuitan.clone(), tokens)?)
}

/// Opens the token store of the state backend named by `[state]`.
pub async fn open_token_store(config: &Config) -> anyhow::Result<Arc<dyn TokenStore>> {
    match config.state.backend {
        StateBackend::Sqlite => {
            if let Some(folder) = config.state.path.parent() {
                std::fs::create_dir_all(folder)?;
            }
            Ok(Arc::new(SqliteState::open(&config.state.path)?))
        }
        StateBackend::Dynamodb => {
            let sdk = aws_sdk_config().await;
            Ok(Arc::new(DynamoState::new(aws_sdk_dynamodb::Client::new(&sdk), config.state.table.clone())))
        }
    }
}

pub fn open_target(config: &Config) -> anyhow::Result<Arc<dyn BillTarget>> {
    Ok(Arc::new(KingdeeClient::new(config.kingdee.clone())?))
}
