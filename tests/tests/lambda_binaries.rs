//! The real `fetcher` and `writer` binaries, run by `cargo lambda watch` and invoked with
//! `cargo lambda invoke`, against moto (DynamoDB, SQS, SSM, Secrets Manager) and the simulators.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use countsync_aws::DynamoState;
use countsync_sim::moto::Moto;
use countsync_tests::{Peers, small_confirmed_sheets};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// First invocation compiles the function, which takes minutes on two cores.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(900);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests crate sits in the workspace").to_path_buf()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `cargo lambda watch` process serving both functions on a loopback port.
struct LambdaEmulator {
    child: Child,
    port: u16,
}

impl LambdaEmulator {
    async fn start(environment: &[(String, String)]) -> Self {
        let port = free_port();
        // The functions' logs go to a file, for diagnosing a failed run.
        let log_path = std::env::temp_dir().join(format!("countsync-lambda-watch-{port}.log"));
        let log = std::fs::File::create(&log_path).expect("log file can be created");
        eprintln!("cargo lambda watch logs: {}", log_path.display());
        let mut command = Command::new("cargo");
        command
            .current_dir(workspace_root())
            .args(["lambda", "watch", "--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string(), "--ignore-changes"])
            // The first invocation of each function compiles it, and the invocation deadline
            // runs from the moment of the request.
            .args(["--timeout", "900"])
            .stdout(Stdio::from(log.try_clone().expect("log file handle")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        for (key, value) in environment {
            command.arg("--env-var").arg(format!("{key}={value}"));
        }
        let child = command.spawn().expect("cargo lambda is installed: pip install cargo-lambda");

        for _ in 0..300 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Self { child, port };
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("cargo lambda watch did not listen on 127.0.0.1:{port} within 60 s");
    }

    /// Invokes a function with a JSON payload and returns its JSON response.
    async fn invoke(&self, function: &str, payload: &Value) -> Value {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), payload.to_string()).unwrap();
        let output = tokio::time::timeout(
            INVOKE_TIMEOUT,
            Command::new("cargo")
                .current_dir(workspace_root())
                .args(["lambda", "invoke", function, "--invoke-address", "127.0.0.1", "--invoke-port", &self.port.to_string()])
                .arg("--data-file")
                .arg(file.path())
                .output(),
        )
        .await
        .expect("invoke finished in time")
        .expect("cargo lambda invoke ran");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "invoke {function} failed: {stdout} {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_str(stdout.trim()).unwrap_or_else(|error| panic!("invoke {function} printed no JSON ({error}): {stdout}"))
    }
}

impl Drop for LambdaEmulator {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Receives every visible message of the queue as an SQS Lambda event.
async fn receive_event(sqs: &aws_sdk_sqs::Client, queue_url: &str, queue_arn: &str) -> Vec<Value> {
    let mut records = Vec::new();
    loop {
        let output = sqs.receive_message().queue_url(queue_url).max_number_of_messages(10).visibility_timeout(600).send().await.unwrap();
        let messages = output.messages.unwrap_or_default();
        if messages.is_empty() {
            return records;
        }
        for message in messages {
            records.push(json!({
                "messageId": message.message_id.unwrap(),
                "receiptHandle": message.receipt_handle.unwrap(),
                "body": message.body.unwrap(),
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1700000000000",
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": "1700000000000"
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1"
            }));
        }
    }
}

fn failed_ids(response: &Value) -> Vec<String> {
    let mut ids: Vec<String> = response["batchItemFailures"]
        .as_array()
        .expect("response has batchItemFailures")
        .iter()
        .map(|failure| failure["itemIdentifier"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_functions_sync_through_moto() {
    let moto = Moto::start().await.unwrap();
    let sdk = moto.sdk_config().await;
    let suffix = uuid::Uuid::new_v4().simple().to_string();

    // One sheet carries a material that Kingdee does not know.
    let mut sheets = small_confirmed_sheets(24);
    let rejected = sheets[5].clone();
    let rejected_material = rejected.items[0].sku_id.clone();
    sheets.retain(|sheet| sheet.io_id == rejected.io_id || sheet.items.iter().all(|item| item.sku_id != rejected_material));
    let peers = Peers::start(sheets.clone(), &[rejected_material.as_str()]).await.unwrap();

    let table = format!("countsync-{suffix}");
    let state = DynamoState::new(aws_sdk_dynamodb::Client::new(&sdk), table.clone());
    state.create_table().await.unwrap();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue_url = sqs.create_queue().queue_name(format!("sheets-{suffix}")).send().await.unwrap().queue_url.unwrap();
    let queue_arn = format!("arn:aws:sqs:us-east-1:123456789012:sheets-{suffix}");
    let parameter = format!("/countsync/{suffix}/config");
    aws_sdk_ssm::Client::new(&sdk)
        .put_parameter()
        .name(&parameter)
        .value(peers.config_toml())
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
    let secret = aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(format!("countsync-{suffix}"))
        .secret_string(peers.secrets_json())
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();

    let environment: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", moto.endpoint().to_string()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("COUNTSYNC_CONFIG_PARAMETER", parameter),
        ("COUNTSYNC_SECRET_ID", secret),
        ("COUNTSYNC_STATE__BACKEND", "dynamodb".into()),
        ("COUNTSYNC_STATE__TABLE", table.clone()),
        ("COUNTSYNC_QUEUE__BACKEND", "sqs".into()),
        ("COUNTSYNC_QUEUE__URL", queue_url.clone()),
        ("RUST_LOG", "info".into()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect();
    let lambda = LambdaEmulator::start(&environment).await;

    // Fetcher: every sheet becomes one message and the watermark moves.
    let report = lambda.invoke("fetcher", &json!({ "scheduled_time": "2026-12-01T00:00:00Z" })).await;
    assert_eq!(report["sheets_enqueued"], sheets.len());
    let watermark = aws_sdk_dynamodb::Client::new(&sdk)
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("WATERMARK#jushuitan".into()))
        .key("sk", AttributeValue::S("WATERMARK".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("watermark stored");
    assert!(watermark.contains_key("at"));

    // Writer: all but the rejected sheet become bills; only its message is reported failed.
    let records = receive_event(&sqs, &queue_url, &queue_arn).await;
    assert_eq!(records.len(), sheets.len());
    let event = json!({ "Records": records });
    let rejected_message: Vec<String> = records
        .iter()
        .filter(|record| record["body"].as_str().unwrap().contains(&format!("\"io_id\":{}", rejected.io_id)))
        .map(|record| record["messageId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(rejected_message.len(), 1);

    let response = lambda.invoke("writer", &event).await;
    assert_eq!(failed_ids(&response), rejected_message);
    assert_eq!(peers.kingdee.bill_count(), sheets.len() - 1);

    // Redelivery of the same batch creates no second bill and calls BatchSave only for the
    // rejected sheet, which fails the same way.
    let saves_before = peers.kingdee.stats().bills_saved;
    let response = lambda.invoke("writer", &event).await;
    assert_eq!(failed_ids(&response), rejected_message);
    assert_eq!(peers.kingdee.bill_count(), sheets.len() - 1);
    assert_eq!(peers.kingdee.stats().bills_saved, saves_before);
}
