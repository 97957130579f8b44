//! Token modes, the legacy gateway, the call budget and the page-drift re-check, against the
//! simulator on 127.0.0.1.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use countsync_core::Retry;
use countsync_core::memory::MemoryTokenStore;
use countsync_core::ports::{SheetQuery, SheetSource, StoredToken, TokenStore};
use countsync_core::sheet::CountSheet;
use countsync_core::time::from_shanghai;
use countsync_core::window::Window;
use countsync_jushuitan::token::Clock;
use countsync_jushuitan::{ClientOptions, JushuitanClient, JushuitanConfig, Protocol, TokenMode};
use countsync_sim::jushuitan::{JstSim, JstSimConfig};
use countsync_sim::seed::{demo_modified_bounds, demo_sheets};
use secrecy::SecretString;

fn client_config(sim: &JstSim) -> JushuitanConfig {
    let sim_config = sim.config();
    JushuitanConfig {
        base_url: sim.base_url(),
        app_key: sim_config.app_key.clone(),
        app_secret: SecretString::from(sim_config.app_secret.clone()),
        access_token: SecretString::from(sim_config.access_token.clone()),
        retry_min_delay_ms: 5,
        retry_max_delay_ms: 50,
        request_timeout_secs: 10,
        calls_per_second: 50,
        calls_per_minute: 3_000,
        ..Default::default()
    }
}

fn fast_sim_config() -> JstSimConfig {
    JstSimConfig { calls_per_second: 50, calls_per_minute: 3_000, ..Default::default() }
}

fn first_week() -> Window {
    let (first, _) = demo_modified_bounds();
    let begin = from_shanghai(first);
    Window { begin, end: begin + Duration::days(7) }
}

fn query(window: Window, page_index: u32, page_size: u32) -> SheetQuery {
    SheetQuery { window, page_index, page_size, status: "Confirmed".into() }
}

fn confirmed_ids_in(sheets: &[CountSheet], window: Window) -> BTreeSet<i64> {
    sheets
        .iter()
        .filter(|sheet| sheet.is_confirmed())
        .filter(|sheet| (window.begin..=window.end).contains(&from_shanghai(sheet.modified.unwrap())))
        .map(|sheet| sheet.io_id)
        .collect()
}

/// Reads every page of a window as the fetcher does; returns the distinct ids and the pages.
async fn read_window(source: &dyn SheetSource, window: Window, page_size: u32) -> (BTreeSet<i64>, u32) {
    let mut ids = BTreeSet::new();
    let mut page_index = 1;
    loop {
        let page = source.query_page(&query(window, page_index, page_size)).await.unwrap();
        ids.extend(page.sheets.iter().map(|sheet| sheet.io_id));
        if !page.has_next {
            return (ids, page_index);
        }
        page_index += 1;
    }
}

fn fixed_clock(instant: DateTime<Utc>) -> (Clock, Arc<Mutex<DateTime<Utc>>>) {
    let cell = Arc::new(Mutex::new(instant));
    let reader = cell.clone();
    (Arc::new(move || *reader.lock().unwrap()), cell)
}

fn merchant_client(sim: &JstSim, store: Arc<MemoryTokenStore>, clock: Option<Clock>) -> JushuitanClient {
    let config = JushuitanConfig { token_mode: TokenMode::Merchant, access_token: SecretString::from(""), ..client_config(sim) };
    JushuitanClient::with_options(config, ClientOptions { token_store: Some(store), clock }).unwrap()
}

#[tokio::test]
async fn merchant_gets_initial_token() {
    let sim = JstSim::start(fast_sim_config(), demo_sheets()).await.unwrap();
    let store = Arc::new(MemoryTokenStore::new());
    let client = merchant_client(&sim, store.clone(), None);

    let page = client.query_page(&query(first_week(), 1, 50)).await.unwrap();

    assert!(!page.sheets.is_empty());
    let stored = store.load_token(&sim.config().app_key).await.unwrap().expect("token stored");
    assert_eq!(stored.version, 1);
    assert_eq!(stored.access_token, sim.current_access_token());
    assert_eq!(stored.refresh_token, sim.current_refresh_token());
    let stats = sim.stats();
    assert_eq!(stats.token_inits, 1);
    assert_eq!(stats.token_refreshes, 0);
    assert_eq!(stats.calls, 1);
    sim.stop().await;
}

#[tokio::test]
async fn expired_token_refreshed_once() {
    let sim = JstSim::start(fast_sim_config(), demo_sheets()).await.unwrap();
    let store = Arc::new(MemoryTokenStore::new());
    let client = merchant_client(&sim, store.clone(), None);
    client.query_page(&query(first_week(), 1, 5)).await.unwrap();

    sim.expire_access_token();
    let page = client.query_page(&query(first_week(), 2, 5)).await.unwrap();

    assert_eq!(page.sheets.len(), 5);
    let stats = sim.stats();
    assert_eq!(stats.rejected.get(&100), Some(&1), "one rejected call before the refresh");
    assert_eq!(stats.token_refreshes, 1);
    assert_eq!(stats.pages_served, 2);
    let stored = store.load_token(&sim.config().app_key).await.unwrap().unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(stored.refresh_token, sim.current_refresh_token());
    sim.stop().await;
}

#[tokio::test]
async fn second_rejection_is_error() {
    let sim = JstSim::start(fast_sim_config(), demo_sheets()).await.unwrap();
    let client = merchant_client(&sim, Arc::new(MemoryTokenStore::new()), None);
    client.query_page(&query(first_week(), 1, 5)).await.unwrap();

    sim.fail_next(100, 2);
    let error = client.query_page(&query(first_week(), 1, 5)).await.unwrap_err();

    assert_eq!(error.code, Some(100));
    assert_eq!(error.retry, Retry::Later);
    assert_eq!(sim.stats().token_refreshes, 1, "exactly one refresh per query");
    sim.stop().await;
}

#[tokio::test]
async fn concurrent_rejections_refresh_once() {
    let sim = JstSim::start(fast_sim_config(), demo_sheets()).await.unwrap();
    let client = merchant_client(&sim, Arc::new(MemoryTokenStore::new()), None);
    client.query_page(&query(first_week(), 1, 5)).await.unwrap();

    sim.expire_access_token();
    let pages = futures_join(&client).await;

    assert!(pages.iter().all(|result| result.is_ok()), "{pages:?}");
    assert_eq!(sim.stats().token_refreshes, 1, "single flight: one refresh for four tasks");
    sim.stop().await;
}

async fn futures_join(client: &JushuitanClient) -> Vec<Result<usize, String>> {
    let run = |page_index| {
        let client = client.clone();
        tokio::spawn(async move {
            client.query_page(&query(first_week(), page_index, 5)).await.map(|page| page.sheets.len()).map_err(|error| error.message)
        })
    };
    let handles = [run(1), run(2), run(3), run(4)];
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.unwrap());
    }
    results
}

#[tokio::test]
async fn refresh_race_loser_uses_winner() {
    let sim = JstSim::start(fast_sim_config(), demo_sheets()).await.unwrap();
    let store = Arc::new(MemoryTokenStore::new());
    // Two processes: separate clients, one shared store.
    let first = merchant_client(&sim, store.clone(), None);
    let second = merchant_client(&sim, store.clone(), None);
    first.query_page(&query(first_week(), 1, 5)).await.unwrap();
    second.query_page(&query(first_week(), 1, 5)).await.unwrap();
    assert_eq!(sim.stats().token_inits, 1, "the second process reads the stored token");

    sim.expire_access_token();
    first.query_page(&query(first_week(), 2, 5)).await.unwrap();
    // The second process still has the old pair; its refresh token is no longer valid.
    second.query_page(&query(first_week(), 2, 5)).await.unwrap();

    let stats = sim.stats();
    assert_eq!(stats.token_refreshes, 1, "the loser must not refresh again");
    assert_eq!(stats.token_inits, 1);
    assert_eq!(store.load_token(&sim.config().app_key).await.unwrap().unwrap().version, 2);
    sim.stop().await;
}

#[tokio::test]
async fn stale_refresh_token_rejected() {
    let sim = JstSim::start(fast_sim_config(), demo_sheets()).await.unwrap();
    let store = Arc::new(MemoryTokenStore::new());
    let client = merchant_client(&sim, store.clone(), None);
    client.query_page(&query(first_week(), 1, 5)).await.unwrap();
    let old = store.load_token(&sim.config().app_key).await.unwrap().unwrap();
    sim.expire_access_token();
    client.query_page(&query(first_week(), 1, 5)).await.unwrap();

    // A store that lost the new pair: the refresh with the old refresh token fails, and a
    // merchant application falls back to a new initial token.
    let lost = Arc::new(MemoryTokenStore::new());
    lost.replace_token(&sim.config().app_key, None, &old).await.unwrap();
    sim.expire_access_token();
    let other = merchant_client(&sim, lost.clone(), None);
    other.query_page(&query(first_week(), 1, 5)).await.unwrap();

    let stats = sim.stats();
    assert_eq!(stats.token_rejected.get(&100), Some(&1), "the old refresh token is rejected");
    assert_eq!(stats.token_inits, 2);
    assert_eq!(lost.load_token(&sim.config().app_key).await.unwrap().unwrap().version, old.version + 1);
    sim.stop().await;
}

#[tokio::test]
async fn token_refreshed_before_expiry() {
    let sim = JstSim::start(JstSimConfig { token_expires_in_secs: 3 * 86_400, ..fast_sim_config() }, demo_sheets()).await.unwrap();
    let store = Arc::new(MemoryTokenStore::new());
    let start = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
    let (clock, now) = fixed_clock(start);
    let client = merchant_client(&sim, store.clone(), Some(clock));
    client.query_page(&query(first_week(), 1, 5)).await.unwrap();

    *now.lock().unwrap() = start + Duration::hours(47);
    client.query_page(&query(first_week(), 1, 5)).await.unwrap();
    assert_eq!(sim.stats().token_refreshes, 0, "more than the one-day margin is left");

    *now.lock().unwrap() = start + Duration::hours(49);
    client.query_page(&query(first_week(), 1, 5)).await.unwrap();
    let stats = sim.stats();
    assert_eq!(stats.token_refreshes, 1, "refreshed inside the one-day margin");
    assert_eq!(stats.rejected.get(&100), None, "no call was sent with an expired token");
    let stored = store.load_token(&sim.config().app_key).await.unwrap().unwrap();
    assert_eq!(stored.expires_at, start + Duration::hours(49) + Duration::days(3));
    sim.stop().await;
}

#[tokio::test]
async fn isv_refusal_needs_reauthorization() {
    let sim = JstSim::start(JstSimConfig { refresh_forbidden: true, ..fast_sim_config() }, demo_sheets()).await.unwrap();
    let config = JushuitanConfig {
        token_mode: TokenMode::Isv,
        refresh_token: SecretString::from(sim.config().refresh_token.clone()),
        ..client_config(&sim)
    };
    let store = Arc::new(MemoryTokenStore::new());
    let client = JushuitanClient::with_token_store(config, store.clone()).unwrap();
    client.query_page(&query(first_week(), 1, 5)).await.unwrap();
    assert_eq!(store.load_token(&sim.config().app_key).await.unwrap().unwrap().version, 1, "seeded from the configuration");

    sim.expire_access_token();
    let error = client.query_page(&query(first_week(), 1, 5)).await.unwrap_err();

    assert_eq!(error.code, Some(150));
    assert_eq!(error.retry, Retry::Never);
    assert!(error.message.contains("authorize the application again"), "{}", error.message);
    assert!(error.message.contains("重新授权"), "{}", error.message);
    assert_eq!(sim.stats().token_rejected.get(&150), Some(&1));
    sim.stop().await;
}

#[tokio::test]
async fn isv_uses_stored_pair() {
    let sim = JstSim::start(fast_sim_config(), demo_sheets()).await.unwrap();
    let store = Arc::new(MemoryTokenStore::new());
    let pair = StoredToken {
        access_token: sim.config().access_token.clone(),
        refresh_token: sim.config().refresh_token.clone(),
        expires_at: Utc::now() + Duration::days(20),
        version: 1,
    };
    store.replace_token(&sim.config().app_key, None, &pair).await.unwrap();
    let config = JushuitanConfig { token_mode: TokenMode::Isv, access_token: SecretString::from(""), ..client_config(&sim) };
    let client = JushuitanClient::with_token_store(config, store.clone()).unwrap();

    client.query_page(&query(first_week(), 1, 5)).await.unwrap();
    sim.expire_access_token();
    client.query_page(&query(first_week(), 1, 5)).await.unwrap();

    assert_eq!(sim.stats().token_refreshes, 1);
    assert_eq!(store.load_token(&sim.config().app_key).await.unwrap().unwrap().version, 2);
    sim.stop().await;
}

#[tokio::test]
async fn refreshing_mode_needs_store() {
    let config = JushuitanConfig {
        base_url: "http://127.0.0.1:9".into(),
        app_key: "k".into(),
        app_secret: SecretString::from("s"),
        token_mode: TokenMode::Merchant,
        ..Default::default()
    };
    let error = JushuitanClient::new(config).err().expect("a merchant client without a store is rejected");
    assert!(error.to_string().contains("jushuitan.token_mode"), "{error}");
    assert_eq!(error.retry(), Retry::Never);
}

#[tokio::test]
async fn legacy_gateway_reads_pages() {
    let sim = JstSim::start(fast_sim_config(), demo_sheets()).await.unwrap();
    let client = JushuitanClient::new(JushuitanConfig { protocol: Protocol::Legacy, ..client_config(&sim) }).unwrap();
    let window = first_week();

    let (ids, pages) = read_window(&client, window, 7).await;

    assert_eq!(ids, confirmed_ids_in(&demo_sheets(), window));
    let stats = sim.stats();
    assert!(pages > 1);
    assert_eq!(stats.rejected.len(), 0, "{stats:?}");
    assert_eq!(sim.accepted_biz()[0]["modified_begin"], "2026-10-01 00:00:00");
    sim.stop().await;
}

#[tokio::test]
async fn legacy_signature_error_never_retried() {
    let sim = JstSim::start(fast_sim_config(), demo_sheets()).await.unwrap();
    let config = JushuitanConfig { protocol: Protocol::Legacy, app_secret: SecretString::from("wrong"), ..client_config(&sim) };
    let client = JushuitanClient::new(config).unwrap();

    let error = client.query_page(&query(first_week(), 1, 50)).await.unwrap_err();

    assert_eq!(error.code, Some(120));
    assert_eq!(error.retry, Retry::Never);
    assert_eq!(sim.stats().calls, 1);
    sim.stop().await;
}

#[tokio::test]
async fn legacy_throttling_retried() {
    let sim = JstSim::start(fast_sim_config(), demo_sheets()).await.unwrap();
    let client = JushuitanClient::new(JushuitanConfig { protocol: Protocol::Legacy, ..client_config(&sim) }).unwrap();
    sim.throttle_next(2);

    let page = client.query_page(&query(first_week(), 1, 50)).await.unwrap();

    assert!(!page.sheets.is_empty());
    assert_eq!(sim.stats().calls, 3);
    assert_eq!(sim.stats().throttled, 2);
    sim.stop().await;
}

#[tokio::test]
async fn call_budget_stops_run() {
    let sim = JstSim::start(fast_sim_config(), demo_sheets()).await.unwrap();
    let client = JushuitanClient::new(JushuitanConfig { max_calls_per_run: 3, ..client_config(&sim) }).unwrap();
    let run = client.for_run();
    sim.throttle_next(1);

    run.query_page(&query(first_week(), 1, 5)).await.unwrap();
    run.query_page(&query(first_week(), 2, 5)).await.unwrap();
    let error = run.query_page(&query(first_week(), 3, 5)).await.unwrap_err();

    assert_eq!(error.retry, Retry::Later);
    assert!(error.message.contains("call budget of 3"), "{}", error.message);
    assert_eq!(run.calls_this_run(), 3);
    assert_eq!(sim.stats().calls, 3, "the throttled retry counts against the budget");
    let next_run = client.for_run();
    next_run.query_page(&query(first_week(), 1, 5)).await.unwrap();
    assert_eq!(next_run.calls_this_run(), 1);
    sim.stop().await;
}

#[tokio::test]
async fn drift_recheck_finds_skipped() {
    let sim = JstSim::start(fast_sim_config(), demo_sheets()).await.unwrap();
    let client = JushuitanClient::new(client_config(&sim)).unwrap();
    let window = first_week();
    let expected = confirmed_ids_in(&demo_sheets(), window);
    // After page 1, two of its sheets move out of the window, so two unread sheets shift onto page 1.
    sim.drift_after_pages(1, 2, Duration::days(30));

    let (ids, pages) = read_window(&client, window, 5).await;

    let moved: BTreeSet<i64> = expected.difference(&confirmed_ids_in(&sim.sheets(), window)).copied().collect();
    assert_eq!(moved.len(), 2);
    assert_eq!(sim.stats().drifted, 2);
    assert_eq!(ids, expected, "every sheet, the moved ones from page 1 and the shifted ones from the re-check");
    let pass_pages = (expected.len() - 2).div_ceil(5) as u32;
    assert_eq!(sim.stats().calls as u32, pages + 2 * pass_pages, "a pass that found sheets and a pass that found none");
    sim.stop().await;
}

#[tokio::test]
async fn drift_without_recheck_skips() {
    let sim = JstSim::start(fast_sim_config(), demo_sheets()).await.unwrap();
    let client = JushuitanClient::new(JushuitanConfig { recheck_paged_windows: false, ..client_config(&sim) }).unwrap();
    let window = first_week();
    let expected = confirmed_ids_in(&demo_sheets(), window);
    sim.drift_after_pages(1, 2, Duration::days(30));

    let (ids, _) = read_window(&client, window, 5).await;

    assert_eq!(expected.difference(&ids).count(), 2, "plain offset paging skips the two shifted sheets");
    sim.stop().await;
}

#[tokio::test]
async fn repeated_sheet_across_pages() {
    let sim = JstSim::start(fast_sim_config(), demo_sheets()).await.unwrap();
    let client = JushuitanClient::new(client_config(&sim)).unwrap();
    sim.repeat_across_pages(true);

    let first = client.query_page(&query(first_week(), 1, 5)).await.unwrap();
    let second = client.query_page(&query(first_week(), 2, 5)).await.unwrap();

    assert_eq!(second.sheets.len(), 6);
    assert_eq!(second.sheets[0].io_id, first.sheets[4].io_id);
    sim.stop().await;
}

#[tokio::test]
async fn hidden_sheet_appears_on_reveal() {
    let sim = JstSim::start(fast_sim_config(), Vec::new()).await.unwrap();
    let client = JushuitanClient::new(client_config(&sim)).unwrap();
    let mut late = demo_sheets().into_iter().find(|sheet| sheet.is_confirmed()).unwrap();
    late.modified = Some(countsync_core::time::to_shanghai(first_week().begin + Duration::hours(1)));
    sim.add_hidden(vec![late.clone()], countsync_sim::jushuitan::Visibility::OnReveal);

    assert!(client.query_page(&query(first_week(), 1, 50)).await.unwrap().sheets.is_empty());
    sim.reveal_hidden();
    let page = client.query_page(&query(first_week(), 1, 50)).await.unwrap();

    assert_eq!(page.sheets.iter().map(|sheet| sheet.io_id).collect::<Vec<_>>(), vec![late.io_id]);
    assert_eq!(sim.hidden_count(), 0);
    sim.stop().await;
}

#[tokio::test]
async fn hidden_sheet_appears_at_instant() {
    let sim = JstSim::start(fast_sim_config(), Vec::new()).await.unwrap();
    let client = JushuitanClient::new(client_config(&sim)).unwrap();
    let mut late = demo_sheets().into_iter().find(|sheet| sheet.is_confirmed()).unwrap();
    late.modified = Some(countsync_core::time::to_shanghai(first_week().begin + Duration::hours(1)));
    let at = std::time::SystemTime::now() + std::time::Duration::from_millis(300);
    sim.add_hidden(vec![late.clone()], countsync_sim::jushuitan::Visibility::At(at));

    assert!(client.query_page(&query(first_week(), 1, 50)).await.unwrap().sheets.is_empty());
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let page = client.query_page(&query(first_week(), 1, 50)).await.unwrap();

    assert_eq!(page.sheets.len(), 1);
    assert_eq!(page.sheets[0].io_id, late.io_id);
    sim.stop().await;
}

#[tokio::test]
async fn token_expiry_after_pages() {
    let sim = JstSim::start(fast_sim_config(), demo_sheets()).await.unwrap();
    let store = Arc::new(MemoryTokenStore::new());
    let client = merchant_client(&sim, store, None);
    sim.expire_token_after_pages(2);

    let (ids, _) = read_window(&client, first_week(), 5).await;

    assert_eq!(ids, confirmed_ids_in(&demo_sheets(), first_week()));
    let stats = sim.stats();
    assert_eq!(stats.rejected.get(&100), Some(&1));
    assert_eq!(stats.token_refreshes, 1);
    sim.stop().await;
}

/// Decodes a page and builds a window query; run by `results_independent_of_zone` in child
/// processes with `TZ` set.
#[test]
fn zone_sensitive_steps() {
    let body = include_str!("../fixtures/count_query_page.json");
    let envelope = countsync_jushuitan::wire::decode_envelope(body).unwrap();
    let page = countsync_jushuitan::wire::decode_page(envelope.data, 50).unwrap();
    let modified = page.sheets[0].modified.unwrap();
    assert_eq!(modified.to_string(), "2023-01-03 09:43:26.487");
    assert_eq!(from_shanghai(modified).to_rfc3339(), "2023-01-03T01:43:26.487+00:00");

    let begin = Utc.with_ymd_and_hms(2024, 2, 29, 16, 0, 0).unwrap();
    let windows = countsync_core::window::tile(begin, begin + Duration::days(10), Duration::days(7));
    assert_eq!(windows.len(), 2);
    let biz = countsync_jushuitan::CountQueryBiz::for_window(&query(windows[1], 1, 50));
    assert_eq!(biz.modified_begin.as_deref(), Some("2024-03-08 00:00:00"));
    assert_eq!(biz.modified_end.as_deref(), Some("2024-03-11 00:00:00"));
}

#[test]
fn results_independent_of_zone() {
    if std::env::var_os("COUNTSYNC_ZONE_CHILD").is_some() {
        return;
    }
    let program = std::env::current_exe().unwrap();
    for zone in ["UTC", "America/Los_Angeles", "Asia/Shanghai"] {
        let output = std::process::Command::new(&program)
            .args(["--exact", "zone_sensitive_steps", "--test-threads", "1"])
            .env("TZ", zone)
            .env("COUNTSYNC_ZONE_CHILD", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "TZ={zone}: {stdout}{}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains("1 passed"), "TZ={zone} ran no test: {stdout}");
    }
}

#[test]
fn crates_never_read_local_zone() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for folder in ["jushuitan/src", "core/src", "sim/src"] {
        for path in source_files(&root.join(folder)) {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains("Local::") && !text.contains("chrono::Local"), "{} reads the host's local zone", path.display());
        }
    }
}

fn source_files(folder: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(source_files(&path));
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
    files
}
