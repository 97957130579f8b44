//! [`SqsQueue`]: sends sheet messages with SendMessageBatch.

use std::collections::HashSet;
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use countsync_core::Retry;
use countsync_core::ports::{OutgoingMessage, QueueError, SheetQueue};
use tracing::{debug, warn};

use crate::error::classify;

/// Most entries SendMessageBatch accepts in one call.
pub const MAX_BATCH_ENTRIES: usize = 10;

/// Most bytes of message bodies SendMessageBatch accepts in one call (1 MiB), which is also the
/// largest single message SQS accepts since 2025.
pub const MAX_BATCH_BYTES: usize = 1_048_576;

/// Retries of the entries SQS failed for its own reasons, after the first attempt.
const ENTRY_RETRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Sends sheet messages to one SQS queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

/// Entries of one batch that SQS did not accept.
#[derive(Debug, Default)]
struct BatchFailures {
    /// Message ids, each with SQS's error code.
    messages: Vec<String>,
    /// Set when SQS blamed the request (sender fault), which a retry does not fix.
    permanent: bool,
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self { client, queue_url: queue_url.into() }
    }

    pub fn from_conf(config: &aws_config::SdkConfig, queue_url: impl Into<String>) -> Self {
        Self::new(Client::new(config), queue_url)
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Sends one batch, then resends the entries that failed on the SQS side, with exponential
    /// backoff, up to [`ENTRY_RETRIES`] times.
    async fn send_batch(&self, messages: &[OutgoingMessage], batch: Range<usize>) -> Result<BatchFailures, QueueError> {
        let mut failures = BatchFailures::default();
        let mut pending: Vec<usize> = batch.collect();
        let mut last_codes: Vec<(usize, String)> = Vec::new();

        for attempt in 0..=ENTRY_RETRIES {
            if attempt > 0 {
                let delay = FIRST_BACKOFF * 2_u32.pow(attempt - 1);
                warn!(queue_url = %self.queue_url, attempt, entries = pending.len(), delay_ms = delay.as_millis() as u64, "resending failed sqs batch entries");
                tokio::time::sleep(delay).await;
            }

            let entries = pending.iter().map(|&index| entry(index, &messages[index])).collect();
            let output = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|error| self.call_error(&error, messages, &pending))?;

            // Entry ids are indexes into `messages`. Any entry missing from `successful` is
            // retried unless SQS blamed the sender, even one listed in neither result list.
            let accepted: HashSet<&str> = output.successful().iter().map(|entry| entry.id()).collect();
            let mut rejected = HashSet::new();
            last_codes.clear();
            for failed in output.failed() {
                let Some(index) = failed.id().parse::<usize>().ok().filter(|index| pending.contains(index)) else {
                    continue;
                };
                if failed.sender_fault() {
                    failures.permanent = true;
                    failures.messages.push(format!("{} ({})", messages[index].id, failed.code()));
                    rejected.insert(index);
                } else {
                    last_codes.push((index, failed.code().to_string()));
                }
            }
            pending.retain(|index| !accepted.contains(index.to_string().as_str()) && !rejected.contains(index));
            if pending.is_empty() {
                break;
            }
        }

        for index in pending {
            let code = last_codes.iter().find(|(failed, _)| *failed == index).map_or("no result", |(_, code)| code.as_str());
            failures.messages.push(format!("{} ({code})", messages[index].id));
        }
        Ok(failures)
    }

    fn call_error(&self, error: &aws_sdk_sqs::error::SdkError<SendMessageBatchError>, messages: &[OutgoingMessage], pending: &[usize]) -> QueueError {
        let ids: Vec<&str> = pending.iter().map(|&index| messages[index].id.as_str()).collect();
        QueueError {
            message: format!(
                "sqs SendMessageBatch to {} failed for messages [{}]: {}",
                self.queue_url,
                ids.join(", "),
                DisplayErrorContext(error)
            ),
            retry: classify(error),
        }
    }
}

#[async_trait]
impl SheetQueue for SqsQueue {
    async fn send(&self, messages: &[OutgoingMessage]) -> Result<(), QueueError> {
        let batches = plan_batches(messages)?;
        let mut failed = BatchFailures::default();
        for batch in batches {
            let failures = self.send_batch(messages, batch).await?;
            failed.permanent |= failures.permanent;
            failed.messages.extend(failures.messages);
        }

        if failed.messages.is_empty() {
            debug!(queue_url = %self.queue_url, messages = messages.len(), "sqs messages sent");
            return Ok(());
        }
        let retry = if failed.permanent { Retry::Never } else { Retry::Later };
        Err(QueueError {
            message: format!(
                "sqs did not accept {} of {} messages for {}: {}",
                failed.messages.len(),
                messages.len(),
                self.queue_url,
                failed.messages.join(", ")
            ),
            retry,
        })
    }
}

fn entry(index: usize, message: &OutgoingMessage) -> SendMessageBatchRequestEntry {
    SendMessageBatchRequestEntry::builder()
        .id(index.to_string())
        .message_body(&message.body)
        .build()
        .expect("batch entry has its required fields")
}

/// Splits messages, in order, into index ranges of at most [`MAX_BATCH_ENTRIES`] messages and
/// [`MAX_BATCH_BYTES`] bytes of bodies. Fails for a message that alone exceeds the byte limit.
fn plan_batches(messages: &[OutgoingMessage]) -> Result<Vec<Range<usize>>, QueueError> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (index, message) in messages.iter().enumerate() {
        let size = message.body.len();
        if size > MAX_BATCH_BYTES {
            return Err(QueueError {
                message: format!(
                    "message {} is {size} bytes, over the sqs limit of {MAX_BATCH_BYTES} bytes: send such sheets by reference",
                    message.id
                ),
                retry: Retry::Never,
            });
        }
        if index > start && (index - start == MAX_BATCH_ENTRIES || bytes + size > MAX_BATCH_BYTES) {
            batches.push(start..index);
            start = index;
            bytes = 0;
        }
        bytes += size;
    }
    if start < messages.len() {
        batches.push(start..messages.len());
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(index: usize, size: usize) -> OutgoingMessage {
        OutgoingMessage { id: format!("m{index}"), body: "x".repeat(size) }
    }

    #[test]
    fn batches_split_at_ten_entries() {
        let messages: Vec<_> = (0..25).map(|index| message(index, 10)).collect();
        assert_eq!(plan_batches(&messages).unwrap(), vec![0..10, 10..20, 20..25]);
    }

    #[test]
    fn batches_split_at_byte_limit() {
        let messages = vec![message(0, 600_000), message(1, 448_576), message(2, 1), message(3, 1_048_576)];
        assert_eq!(plan_batches(&messages).unwrap(), vec![0..2, 2..3, 3..4]);
    }

    #[test]
    fn empty_input_has_no_batches() {
        assert!(plan_batches(&[]).unwrap().is_empty());
    }

    #[test]
    fn oversized_message_rejected() {
        let error = plan_batches(&[message(0, 1), message(1, MAX_BATCH_BYTES + 1)]).unwrap_err();
        assert_eq!(error.retry, Retry::Never);
        assert!(error.message.contains("m1"), "{}", error.message);
    }
}
