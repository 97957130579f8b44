//! The real JuShuiTan client and the real fetcher against the simulator with faults: throttling
//! bursts, a token expiry, page drift and late-visible sheets across three scheduled runs.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use countsync_core::fetcher::{FetchReport, FetchRequest, FetchSettings, Fetcher};
use countsync_core::memory::{MemoryQueue, MemoryTokenStore, MemoryWatermarks};
use countsync_core::message;
use countsync_core::ports::{SheetSource, WatermarkStore};
use countsync_core::sheet::CountSheet;
use countsync_core::time::{from_shanghai, to_shanghai};
use countsync_core::window::tile;
use countsync_jushuitan::{ClientOptions, JushuitanClient, JushuitanConfig, TokenMode};
use countsync_sim::jushuitan::{JstSim, JstSimConfig, Visibility};
use countsync_sim::seed::{bulk_sheets, sheet_with_lines};
use secrecy::SecretString;

const STREAM: &str = "jushuitan";
const CONFIRMED_SHEETS: usize = 1_995;
const LATE_SHEETS: usize = 5;
const OTHER_SHEETS: usize = 200;

fn data_start() -> DateTime<Utc> {
    from_shanghai(NaiveDate::from_ymd_opt(2026, 10, 1).unwrap().and_hms_opt(0, 0, 0).unwrap())
}

/// Lag 2 minutes, overlap 10 minutes: a sheet that becomes visible at most 12 minutes after
/// its `modified` is read by the next run.
fn settings() -> FetchSettings {
    FetchSettings {
        stream: STREAM.into(),
        initial_start: data_start() - Duration::days(1),
        lag: Duration::minutes(2),
        overlap: Duration::minutes(10),
        ..Default::default()
    }
}

async fn start_sim() -> JstSim {
    let sheets = bulk_sheets(1, CONFIRMED_SHEETS, OTHER_SHEETS, to_shanghai(data_start()), Duration::days(30));
    let config = JstSimConfig { calls_per_second: 50, calls_per_minute: 3_000, ..Default::default() };
    JstSim::start(config, sheets).await.unwrap()
}

fn client(sim: &JstSim) -> JushuitanClient {
    let config = JushuitanConfig {
        base_url: sim.base_url(),
        app_key: sim.config().app_key.clone(),
        app_secret: SecretString::from(sim.config().app_secret.clone()),
        token_mode: TokenMode::Merchant,
        calls_per_second: 50,
        calls_per_minute: 3_000,
        retry_min_delay_ms: 5,
        retry_max_delay_ms: 100,
        request_timeout_secs: 10,
        ..Default::default()
    };
    let options = ClientOptions { token_store: Some(Arc::new(MemoryTokenStore::new())), clock: None };
    JushuitanClient::with_options(config, options).unwrap()
}

async fn run(source: &dyn SheetSource, queue: &MemoryQueue, watermarks: &MemoryWatermarks, now: DateTime<Utc>) -> FetchReport {
    let settings = settings();
    let fetcher = Fetcher { source, queue, watermarks, settings: &settings };
    fetcher.run(&FetchRequest::default(), now).await.expect("fetch run succeeds")
}

fn enqueued_ids(queue: &MemoryQueue) -> Vec<i64> {
    queue.take(usize::MAX).iter().map(|outgoing| message::decode(&outgoing.body).expect("message decodes").io_id).collect()
}

fn confirmed_ids(sheets: &[CountSheet]) -> BTreeSet<i64> {
    sheets.iter().filter(|sheet| sheet.is_confirmed()).map(|sheet| sheet.io_id).collect()
}

/// Returns the fewest calls that can read the range: ⌈confirmed sheets / 50⌉ per window, at
/// least one per window.
fn minimum_calls(sheets: &[CountSheet], begin: DateTime<Utc>, end: DateTime<Utc>) -> usize {
    tile(begin, end, settings().max_window)
        .iter()
        .map(|window| {
            let inside = sheets
                .iter()
                .filter(|sheet| sheet.is_confirmed())
                .filter(|sheet| (window.begin..=window.end).contains(&from_shanghai(sheet.modified.unwrap())))
                .count();
            inside.div_ceil(50).max(1)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_run_reads_all() {
    let sim = start_sim().await;
    let client = client(&sim);
    let queue = MemoryQueue::new();
    let watermarks = MemoryWatermarks::new();
    let now = data_start() + Duration::days(30) + Duration::hours(1);

    let report = run(&client.for_run(), &queue, &watermarks, now).await;

    let ids = enqueued_ids(&queue);
    let expected = confirmed_ids(&sim.sheets());
    assert_eq!(ids.len(), expected.len(), "one message per sheet");
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), expected);
    assert_eq!(report.watermark, Some(now - settings().lag));
    let stats = sim.stats();
    let minimum = minimum_calls(&sim.sheets(), settings().initial_start, now - settings().lag);
    println!(
        "steady state: {} query calls, minimum {minimum}, {} token calls, {} windows",
        stats.calls,
        stats.token_inits + stats.token_refreshes,
        report.windows
    );
    assert!(stats.calls <= 2 * minimum, "the re-check reads each paged window at most once more");
    assert_eq!(stats.throttled, 0);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_runs_miss_no_sheet() {
    let sim = start_sim().await;
    let client = client(&sim);
    let queue = MemoryQueue::new();
    let watermarks = MemoryWatermarks::new();
    let lag = settings().lag;
    let now1 = data_start() + Duration::days(30) + Duration::hours(1);

    // Late-visible: modified 5 minutes before run 1's end, visible only after run 1.
    let late_modified = to_shanghai(now1 - lag - Duration::minutes(5));
    let late: Vec<CountSheet> = (0..LATE_SHEETS).map(|index| sheet_with_lines(900_000 + index as i64, 2, late_modified)).collect();
    sim.add_hidden(late.clone(), Visibility::OnReveal);
    sim.throttle_next(3);
    sim.expire_token_after_pages(12);
    sim.drift_after_pages(5, 3, Duration::days(2));
    sim.drift_after_pages(20, 4, Duration::hours(30));
    sim.repeat_across_pages(true);

    let mut marks = Vec::new();
    let run1 = client.for_run();
    let first = run(&run1, &queue, &watermarks, now1).await;
    marks.push(watermarks.load(STREAM).await.unwrap());
    let mut ids = enqueued_ids(&queue);
    assert!(late.iter().all(|sheet| !ids.contains(&sheet.io_id)), "late sheets are invisible to run 1");

    sim.reveal_hidden();
    sim.repeat_across_pages(false);
    // Runs 2 and 3 overlap: run 3 was scheduled earlier but starts at the same time as run 2.
    let now2 = now1 + Duration::minutes(10);
    let now3 = now1 + Duration::minutes(5);
    let (run2, run3) = (client.for_run(), client.for_run());
    let (second, third) = tokio::join!(run(&run2, &queue, &watermarks, now2), run(&run3, &queue, &watermarks, now3));
    marks.push(watermarks.load(STREAM).await.unwrap());
    ids.extend(enqueued_ids(&queue));

    let expected = confirmed_ids(&sim.sheets());
    assert_eq!(expected.len(), CONFIRMED_SHEETS + LATE_SHEETS);
    let received: BTreeSet<i64> = ids.iter().copied().collect();
    let missing: Vec<_> = expected.difference(&received).collect();
    assert!(missing.is_empty(), "sheets never enqueued: {missing:?}");
    assert_eq!(received, expected);
    for sheet in &late {
        assert!(received.contains(&sheet.io_id), "late sheet {} was not caught by the overlap", sheet.io_id);
    }

    assert_eq!(marks[0], Some(now1 - lag));
    assert!(marks[1] >= marks[0], "watermark moved backwards: {marks:?}");
    assert!(marks[1] == Some(now2 - lag) || marks[1] == Some(now3 - lag), "{marks:?}");
    let skipped = [&second, &third].iter().filter(|report| report.skipped_lease_held_until.is_some()).count();
    assert!(skipped <= 1, "at most one of two overlapping runs stands aside");

    let stats = sim.stats();
    assert_eq!(stats.drifted, 7);
    assert!(stats.throttled >= 3, "{stats:?}");
    assert_eq!(stats.rejected.get(&100), Some(&1), "one expired-token rejection");
    assert_eq!(stats.token_refreshes, 1);
    let minimum = minimum_calls(&sim.sheets(), settings().initial_start, now1 - lag);
    println!(
        "fault run 1: {} query calls against a minimum of {minimum} (throttled {}, token rejections 1); \
         runs 2 and 3: {} and {} calls, {} messages; duplicates skipped {}",
        run1.calls_this_run(),
        stats.throttled,
        run2.calls_this_run(),
        run3.calls_this_run(),
        second.sheets_enqueued + third.sheets_enqueued,
        first.duplicates_skipped + second.duplicates_skipped + third.duplicates_skipped
    );
    println!("simulator total: {} query calls, {} pages served", stats.calls, stats.pages_served);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_sheet_survives_queue() {
    let modified = to_shanghai(data_start() + Duration::hours(3));
    let large = sheet_with_lines(42, 20_000, modified);
    let config = JstSimConfig { calls_per_second: 50, calls_per_minute: 3_000, ..Default::default() };
    let sim = JstSim::start(config, vec![large.clone()]).await.unwrap();
    let client = client(&sim);

    let fetched = client.fetch_by_ids(&[42]).await.unwrap();
    assert_eq!(fetched.len(), 1);
    let outgoing = message::encode(&fetched[0]).unwrap();
    let decoded = message::decode(&outgoing.body).unwrap();

    assert_eq!(decoded.items.len(), 20_000);
    assert_eq!(decoded, large, "the sheet arrives complete and unchanged");
    assert!(outgoing.body.len() < 1024 * 1024, "encoded body is {} bytes", outgoing.body.len());
    assert!(outgoing.body.contains("sheet_gzip"), "a sheet above 64 KiB travels compressed");
    println!("20,000-line sheet: encoded message {} bytes", outgoing.body.len());
    sim.stop().await;
}
