//! 1,000 sheets through the real writer and Kingdee client into the simulator while it injects
//! lock conflicts, saves that commit after the client gave up, HTTP 500 after commit and session
//! expiry, with failed messages redelivered as SQS would. Every sheet must become exactly one bill.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use countsync_core::mapping::lookup::MaterialCache;
use countsync_core::memory::MemoryLedger;
use countsync_core::message;
use countsync_core::sheet::{CONFIRMED, CountSheet};
use countsync_core::writer::{InboundMessage, WriteReport, Writer, WriterSettings};
use countsync_kingdee::{AuthMode, KingdeeClient, KingdeeConfig};
use countsync_sim::kingdee::{FaultPlan, KingdeeSim, KingdeeSimConfig};
use countsync_sim::seed;
use secrecy::SecretString;

const SHEETS: usize = 1_000;
/// Messages per writer invocation, the SQS maximum for a Lambda batch.
const SQS_BATCH: usize = 10;
/// Redelivery rounds before the test gives up.
const MAX_ROUNDS: usize = 30;
const FIRST_IO_ID: i64 = 900_001;

/// Builds `SHEETS` confirmed sheets from the small confirmed demo sheets, with new ids.
fn sheets() -> Vec<CountSheet> {
    let large = seed::demo_large_sheet_io_id();
    let templates: Vec<CountSheet> = seed::demo_sheets().into_iter().filter(|sheet| sheet.status == CONFIRMED && sheet.io_id != large).collect();
    assert!(!templates.is_empty());
    (0..SHEETS)
        .map(|index| CountSheet { io_id: FIRST_IO_ID + index as i64, ..templates[index % templates.len()].clone() })
        .collect()
}

fn sim_config() -> KingdeeSimConfig {
    KingdeeSimConfig {
        materials: seed::demo_materials().into_iter().collect(),
        stocks: seed::demo_stocks().into_iter().collect(),
        orgs: HashSet::from([seed::DEMO_STOCK_ORG.to_string()]),
        session_ttl_calls: Some(100),
        faults: FaultPlan {
            seed: 20_240_501,
            lock_rate: 0.10,
            late_commit_rate: 0.05,
            late_commit_delay: Duration::from_millis(1_300),
            http_500_rate: 0.05,
            call_limit_rate: 0.0,
        },
        ..KingdeeSimConfig::default()
    }
}

fn client_config(sim: &KingdeeSim) -> KingdeeConfig {
    let defaults = KingdeeSimConfig::default();
    KingdeeConfig {
        server_url: sim.server_url(),
        auth: AuthMode::AppSecret,
        acct_id: defaults.acct_id,
        username: defaults.username,
        app_id: defaults.app_id,
        app_secret: SecretString::from(defaults.app_secret),
        request_timeout_secs: 1,
        lookup_timeout_secs: 2,
        busy_backoff_ms: 5,
        ..KingdeeConfig::default()
    }
}

/// Returns the outcome kind and, for failures, the reason code, read from the report's JSON
/// form so that the count does not depend on the variant list.
fn classify(report: &WriteReport) -> Vec<(String, Option<String>)> {
    let json = serde_json::to_value(report).expect("report serializes");
    json["messages"]
        .as_array()
        .expect("messages array")
        .iter()
        .map(|message| {
            let outcome = &message["outcome"];
            let kind = outcome["outcome"].as_str().unwrap_or("?").to_string();
            let code = outcome["reason"]["code"].as_str().map(str::to_string);
            (kind, code)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_sheets_under_kingdee_faults() {
    let started = Instant::now();
    let sim = KingdeeSim::start(sim_config()).await.expect("simulator starts");
    let client = KingdeeClient::new(client_config(&sim)).expect("valid client configuration");
    let deadline = chrono::Utc::now() + chrono::Duration::minutes(10);
    client.set_save_deadline(Some(deadline));
    let ledger = MemoryLedger::new();
    let mapping = seed::demo_mapping();
    let settings = WriterSettings { batch_size: SQS_BATCH, ..WriterSettings::default() };
    let writer = Writer { ledger: &ledger, target: &client, mapping: &mapping, settings: &settings, materials: &MaterialCache::default() };

    let mut queue: Vec<InboundMessage> = sheets()
        .iter()
        .map(|sheet| {
            let outgoing = message::encode(sheet).expect("sheet encodes");
            InboundMessage { message_id: outgoing.id, body: outgoing.body }
        })
        .collect();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut rounds = 0;
    while !queue.is_empty() && rounds < MAX_ROUNDS {
        rounds += 1;
        let mut redeliver = Vec::new();
        for batch in queue.chunks(SQS_BATCH) {
            let report = writer.process(batch, deadline).await;
            for (kind, code) in classify(&report) {
                let key = match code {
                    Some(code) => format!("{kind}:{code}"),
                    None => kind,
                };
                *outcomes.entry(key).or_default() += 1;
            }
            let failed: HashSet<String> = report.failed_message_ids().into_iter().collect();
            redeliver.extend(batch.iter().filter(|message| failed.contains(&message.message_id)).cloned());
        }
        queue = redeliver;
    }
    // Lets any save still waiting to commit late finish before counting.
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let stats = sim.stats();
    let bills = sim.bills();
    let numbers: HashSet<&str> = bills.iter().map(|bill| bill.bill_no.as_str()).collect();
    let successes = outcomes.get("created").copied().unwrap_or(0) + outcomes.get("recovered").copied().unwrap_or(0);

    println!("kingdee fault run: {SHEETS} sheets, {rounds} delivery rounds, {:.1} s", started.elapsed().as_secs_f64());
    println!("  simulator: {stats:?}");
    for (outcome, count) in &outcomes {
        println!("  outcome {outcome:<40} {count}");
    }

    assert!(queue.is_empty(), "{} messages still failing after {rounds} rounds", queue.len());
    assert_eq!(bills.len(), SHEETS);
    assert_eq!(numbers.len(), SHEETS, "duplicate bill numbers in the simulator");
    for index in 0..SHEETS {
        let bill_no = mapping.bill_no(FIRST_IO_ID + index as i64);
        assert!(numbers.contains(bill_no.as_str()), "{bill_no} missing");
    }
    assert_eq!(successes, SHEETS, "{outcomes:?}");

    assert!(stats.locks_injected > 0, "{stats:?}");
    assert!(stats.late_commits_injected > 0, "{stats:?}");
    assert!(stats.http_500_injected > 0, "{stats:?}");
    assert!(stats.sessions_expired > 0, "{stats:?}");
    assert_eq!(stats.logins, stats.logins_by_app_secret);
    assert_eq!(stats.logins, stats.sessions_expired + 1, "one login per expired session, plus the first");
    // Every HTTP 500 came after a commit, so its bills were found by number and recovered.
    assert!(outcomes.get("recovered").copied().unwrap_or(0) >= stats.http_500_injected as usize, "{outcomes:?}");
    // Unknown outcomes of late commits and lost sessions were retried by redelivery.
    assert!(outcomes.get("failed:kingdee_outcome_unknown").copied().unwrap_or(0) > 0, "{outcomes:?}");
    assert_eq!(outcomes.keys().filter(|key| key.starts_with("failed:") && !key.ends_with("kingdee_outcome_unknown") && !key.ends_with("kingdee_call_failed")).count(), 0, "{outcomes:?}");
    assert!(started.elapsed() < Duration::from_secs(120), "took {:?}", started.elapsed());
    sim.stop().await;
}
