//! SqsQueue against moto: batching by count and size, every message received exactly once.

mod common;

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;
use countsync_aws::SqsQueue;
use countsync_core::Retry;
use countsync_core::ports::{OutgoingMessage, SheetQueue};

async fn create_queue(client: &Client) -> String {
    client
        .create_queue()
        .queue_name(common::unique_name("countsync-sheets"))
        .attributes(QueueAttributeName::VisibilityTimeout, "300")
        .attributes(QueueAttributeName::MaximumMessageSize, "1048576")
        .send()
        .await
        .unwrap()
        .queue_url
        .expect("queue url")
}

/// Receives and deletes messages until `expected` arrived, then checks that no more come.
async fn receive_all(client: &Client, queue_url: &str, expected: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while bodies.len() < expected && tokio::time::Instant::now() < deadline {
        let output = client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for message in output.messages() {
            bodies.push(message.body().expect("message body").to_string());
            client
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().expect("receipt handle"))
                .send()
                .await
                .unwrap();
        }
    }

    let extra = client.receive_message().queue_url(queue_url).max_number_of_messages(10).wait_time_seconds(1).send().await.unwrap();
    assert!(extra.messages().is_empty(), "queue delivered {} messages more than sent", extra.messages().len());
    bodies
}

/// Builds 25 messages: small ones around three large ones, so that batches split by bytes as well
/// as by count. One body alone is about 900 KB.
fn messages() -> Vec<OutgoingMessage> {
    (0..25)
        .map(|index| {
            let padding = match index {
                4 | 6 => 150_000,
                5 => 900_000,
                _ => 200,
            };
            OutgoingMessage {
                id: format!("{index}:2026-03-01T08:00:00Z"),
                body: format!("{{\"io_id\":{index},\"pad\":\"{}\"}}", "x".repeat(padding)),
            }
        })
        .collect()
}

#[tokio::test]
async fn sqs_batch_received_exactly_once() {
    let moto = common::moto().await;
    let config = moto.sdk_config().await;
    let client = Client::new(&config);
    let queue_url = create_queue(&client).await;
    let queue = SqsQueue::new(client.clone(), queue_url.clone());
    let sent = messages();
    assert!(sent[5].body.len() > 900_000);

    queue.send(&sent).await.expect("all messages must be accepted");

    let mut received = receive_all(&client, &queue_url, sent.len()).await;
    let mut expected: Vec<String> = sent.into_iter().map(|message| message.body).collect();
    assert_eq!(received.len(), expected.len(), "received count differs from sent count");
    received.sort();
    expected.sort();
    assert!(received == expected, "received bodies differ from sent bodies");
}

#[tokio::test]
async fn sqs_empty_send_is_noop() {
    let moto = common::moto().await;
    let client = Client::new(&moto.sdk_config().await);
    let queue_url = create_queue(&client).await;

    SqsQueue::new(client.clone(), queue_url.clone()).send(&[]).await.unwrap();
    assert!(receive_all(&client, &queue_url, 0).await.is_empty());
}

#[tokio::test]
async fn sqs_missing_queue_never_retried() {
    let moto = common::moto().await;
    let client = Client::new(&moto.sdk_config().await);
    let queue_url = format!("{}/123456789012/{}", moto.endpoint(), common::unique_name("countsync-missing"));
    let queue = SqsQueue::new(client, queue_url.clone());

    let message = OutgoingMessage { id: "1:2026-03-01T08:00:00Z".into(), body: "{}".into() };
    let error = queue.send(&[message]).await.unwrap_err();
    assert_eq!(error.retry, Retry::Never, "{}", error.message);
    assert!(error.message.contains(&queue_url), "error must name the queue: {}", error.message);
    assert!(error.message.contains("1:2026-03-01T08:00:00Z"), "error must name the message: {}", error.message);
}

#[tokio::test]
async fn sqs_oversized_message_rejected_before_sending() {
    let moto = common::moto().await;
    let client = Client::new(&moto.sdk_config().await);
    let queue_url = create_queue(&client).await;
    let queue = SqsQueue::new(client.clone(), queue_url.clone());

    let small = OutgoingMessage { id: "small".into(), body: "{}".into() };
    let large = OutgoingMessage { id: "large".into(), body: "x".repeat(countsync_aws::MAX_BATCH_BYTES + 1) };
    let error = queue.send(&[small, large]).await.unwrap_err();
    assert_eq!(error.retry, Retry::Never);
    assert!(error.message.contains("large"), "{}", error.message);
    assert!(receive_all(&client, &queue_url, 0).await.is_empty(), "nothing may be sent when one message is too large");
}
