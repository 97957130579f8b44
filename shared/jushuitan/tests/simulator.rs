//! The client against the JuShuiTan simulator on 127.0.0.1.

use chrono::Duration;
use countsync_core::Retry;
use countsync_core::ports::{SheetPage, SheetQuery, SheetSource, SourceError};
use countsync_core::sheet::CountSheet;
use countsync_core::time::{from_shanghai, to_shanghai};
use countsync_core::window::Window;
use countsync_jushuitan::{CountQueryBiz, JushuitanClient, JushuitanConfig};
use countsync_sim::jushuitan::{JstSim, JstSimConfig};
use countsync_sim::seed::{demo_large_sheet_io_id, demo_modified_bounds, demo_sheets};
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
        ..Default::default()
    }
}

fn client(config: JushuitanConfig) -> JushuitanClient {
    JushuitanClient::new(config).expect("valid client config")
}

/// Returns the first week of the demo data, as instants.
fn first_week() -> Window {
    let (first, _) = demo_modified_bounds();
    let begin = from_shanghai(first);
    Window { begin, end: begin + Duration::days(7) }
}

fn query(window: Window, page_index: u32, page_size: u32) -> SheetQuery {
    SheetQuery { window, page_index, page_size, status: "Confirmed".into() }
}

/// Confirmed demo sheets modified inside the window, ends included, ordered as the API orders.
fn expected_in(window: Window) -> Vec<CountSheet> {
    let to_instant = |sheet: &CountSheet| from_shanghai(sheet.modified.unwrap());
    let mut sheets: Vec<CountSheet> = demo_sheets()
        .into_iter()
        .filter(|sheet| sheet.is_confirmed())
        .filter(|sheet| (window.begin..=window.end).contains(&to_instant(sheet)))
        .collect();
    sheets.sort_by_key(|sheet| (sheet.modified, sheet.io_id));
    sheets
}

async fn read_all_pages(source: &dyn SheetSource, window: Window, page_size: u32) -> Result<(Vec<CountSheet>, u32), SourceError> {
    let mut sheets = Vec::new();
    let mut page_index = 1;
    loop {
        let SheetPage { sheets: page, has_next } = source.query_page(&query(window, page_index, page_size)).await?;
        sheets.extend(page);
        if !has_next {
            return Ok((sheets, page_index));
        }
        page_index += 1;
    }
}

#[tokio::test]
async fn paging_reads_every_sheet_exactly() {
    let sim = JstSim::start(JstSimConfig::default(), demo_sheets()).await.unwrap();
    // Plain paging: the page-drift re-check would read the window a second time.
    let client = client(JushuitanConfig { page_size: 7, recheck_paged_windows: false, ..client_config(&sim) });
    let window = first_week();

    let (sheets, pages) = read_all_pages(&client, window, 7).await.unwrap();

    let expected = expected_in(window);
    assert!(expected.len() > 14, "the window should span several pages, has {}", expected.len());
    assert_eq!(sheets.len(), expected.len());
    assert_eq!(sheets, expected, "decoded sheets differ from the simulator's data");
    assert_eq!(pages as usize, expected.len().div_ceil(7));
    let stats = sim.stats();
    assert_eq!(stats.pages_served, pages as usize);
    assert_eq!(stats.calls, pages as usize);
    assert_eq!(stats.sheets_served, expected.len());
    sim.stop().await;
}

#[tokio::test]
async fn paged_window_rechecked_once() {
    let sim = JstSim::start(JstSimConfig::default(), demo_sheets()).await.unwrap();
    let client = client(JushuitanConfig { page_size: 7, ..client_config(&sim) });
    let window = first_week();

    let (sheets, pages) = read_all_pages(&client, window, 7).await.unwrap();

    assert_eq!(sheets, expected_in(window), "a re-check that finds nothing adds no sheet");
    assert_eq!(sim.stats().calls, 2 * pages as usize, "one re-check pass over the window");
    sim.stop().await;
}

#[tokio::test]
async fn biz_carries_shanghai_times() {
    let sim = JstSim::start(JstSimConfig::default(), demo_sheets()).await.unwrap();
    let client = client(client_config(&sim));
    client.query_page(&query(first_week(), 1, 50)).await.unwrap();

    let biz = sim.accepted_biz();
    assert_eq!(biz.len(), 1);
    assert_eq!(biz[0]["modified_begin"], "2026-10-01 00:00:00");
    assert_eq!(biz[0]["modified_end"], "2026-10-08 00:00:00");
    assert_eq!(biz[0]["status"], "Confirmed");
    assert_eq!(biz[0]["page_size"], 50);
    sim.stop().await;
}

#[tokio::test]
async fn throttled_page_is_retried() {
    let sim = JstSim::start(JstSimConfig::default(), demo_sheets()).await.unwrap();
    let client = client(client_config(&sim));
    sim.throttle_next(3);

    let page = client.query_page(&query(first_week(), 1, 50)).await.unwrap();

    let expected = expected_in(first_week());
    assert_eq!(page.sheets.len(), expected.len().min(50));
    assert_eq!(page.sheets[0], expected[0]);
    let stats = sim.stats();
    assert_eq!(stats.throttled, 3);
    assert_eq!(stats.rejected.get(&199), Some(&3));
    assert_eq!(stats.calls, 4);
    assert_eq!(stats.pages_served, 1);
    sim.stop().await;
}

#[tokio::test]
async fn throttling_beyond_retries_fails_later() {
    let sim = JstSim::start(JstSimConfig::default(), demo_sheets()).await.unwrap();
    let client = client(JushuitanConfig { max_retries: 2, ..client_config(&sim) });
    sim.fail_next(200, 10);

    let error = client.query_page(&query(first_week(), 1, 50)).await.unwrap_err();

    assert_eq!(error.code, Some(200));
    assert_eq!(error.retry, Retry::Later);
    assert!(error.message.contains("3 attempts"), "{}", error.message);
    assert_eq!(sim.stats().calls, 3);
    assert_eq!(sim.stats().pages_served, 0);
    sim.stop().await;
}

#[tokio::test]
async fn server_rate_limit_is_survived() {
    let sim_config = JstSimConfig { calls_per_second: 2, ..Default::default() };
    let sim = JstSim::start(sim_config, demo_sheets()).await.unwrap();
    // The client allows more calls than the server, so the server's own limit must throttle.
    let client = client(JushuitanConfig {
        calls_per_second: 50,
        page_size: 5,
        max_retries: 20,
        retry_min_delay_ms: 100,
        retry_max_delay_ms: 400,
        recheck_paged_windows: false,
        ..client_config(&sim)
    });
    let window = first_week();

    let (sheets, pages) = read_all_pages(&client, window, 5).await.unwrap();

    assert_eq!(sheets, expected_in(window));
    let stats = sim.stats();
    assert!(stats.throttled > 0, "the server never throttled: {stats:?}");
    assert_eq!(stats.pages_served, pages as usize);
    assert_eq!(stats.calls, pages as usize + stats.throttled);
    sim.stop().await;
}

#[tokio::test]
async fn client_limit_avoids_throttling() {
    let sim = JstSim::start(JstSimConfig { calls_per_second: 3, ..Default::default() }, demo_sheets()).await.unwrap();
    let client = client(JushuitanConfig { calls_per_second: 3, page_size: 5, ..client_config(&sim) });

    let (sheets, _) = read_all_pages(&client, first_week(), 5).await.unwrap();

    assert_eq!(sheets.len(), expected_in(first_week()).len());
    assert_eq!(sim.stats().throttled, 0);
    sim.stop().await;
}

#[tokio::test]
async fn signature_error_is_never_retried() {
    let sim = JstSim::start(JstSimConfig::default(), demo_sheets()).await.unwrap();
    let client = client(JushuitanConfig { app_secret: SecretString::from("wrong-secret"), ..client_config(&sim) });

    let error = client.query_page(&query(first_week(), 1, 50)).await.unwrap_err();

    assert_eq!(error.code, Some(10));
    assert_eq!(error.retry, Retry::Never);
    assert!(error.message.contains("jushuitan.app_secret"), "{}", error.message);
    assert_eq!(sim.stats().calls, 1);
    assert_eq!(sim.stats().rejected.get(&10), Some(&1));
    sim.stop().await;
}

#[tokio::test]
async fn invalid_token_fails_later() {
    let sim = JstSim::start(JstSimConfig::default(), demo_sheets()).await.unwrap();
    let client = client(JushuitanConfig { access_token: SecretString::from("expired"), ..client_config(&sim) });

    let error = client.query_page(&query(first_week(), 1, 50)).await.unwrap_err();

    assert_eq!(error.code, Some(100));
    assert_eq!(error.retry, Retry::Later);
    assert_eq!(sim.stats().calls, 1);
    sim.stop().await;
}

#[tokio::test]
async fn error_code_is_not_empty_page() {
    let sim = JstSim::start(JstSimConfig::default(), demo_sheets()).await.unwrap();
    let client = client(client_config(&sim));
    sim.fail_next(150, 1);

    let result = client.query_page(&query(first_week(), 1, 50)).await;

    let error = result.expect_err("code 150 must be an error, not an empty page");
    assert_eq!(error.code, Some(150));
    assert_eq!(error.retry, Retry::Later);
    assert_eq!(sim.stats().calls, 1);
    sim.stop().await;
}

#[tokio::test]
async fn rejected_timestamp_restamps_once() {
    let sim = JstSim::start(JstSimConfig::default(), demo_sheets()).await.unwrap();
    let client = client(client_config(&sim));

    sim.fail_next(180, 1);
    let page = client.query_page(&query(first_week(), 1, 50)).await.unwrap();
    assert!(!page.sheets.is_empty());
    assert_eq!(sim.stats().calls, 2);

    sim.fail_next(180, 2);
    let error = client.query_page(&query(first_week(), 1, 50)).await.unwrap_err();
    assert_eq!(error.code, Some(180));
    assert_eq!(sim.stats().calls, 4);
    sim.stop().await;
}

#[tokio::test]
async fn span_over_seven_days_rejected() {
    let sim = JstSim::start(JstSimConfig::default(), demo_sheets()).await.unwrap();
    let client = client(client_config(&sim));
    let window = Window { begin: first_week().begin, end: first_week().begin + Duration::days(8) };

    let error = client.query_page(&query(window, 1, 50)).await.unwrap_err();

    assert_eq!(error.code, Some(140));
    assert_eq!(error.retry, Retry::Never);
    assert_eq!(sim.stats().rejected.get(&140), Some(&1));
    sim.stop().await;
}

#[tokio::test]
async fn page_size_over_server_max_rejected() {
    let sim = JstSim::start(JstSimConfig { max_page_size: 20, ..Default::default() }, demo_sheets()).await.unwrap();
    let client = client(client_config(&sim));

    let error = client.query_page(&query(first_week(), 1, 21)).await.unwrap_err();

    assert_eq!(error.code, Some(140));
    assert!(error.message.contains("21"), "{}", error.message);
    sim.stop().await;
}

#[tokio::test]
async fn page_size_over_fifty_rejected_locally() {
    let sim = JstSim::start(JstSimConfig::default(), demo_sheets()).await.unwrap();
    let client = client(client_config(&sim));

    let error = client.query_page(&query(first_week(), 1, 51)).await.unwrap_err();

    assert_eq!(error.retry, Retry::Never);
    assert!(error.message.contains("51"), "{}", error.message);
    assert_eq!(sim.stats().calls, 0);
    sim.stop().await;
}

#[tokio::test]
async fn fetch_by_ids_returns_current_content() {
    let sheets = demo_sheets();
    let sim = JstSim::start(JstSimConfig::default(), sheets.clone()).await.unwrap();
    let client = client(client_config(&sim));
    let wanted = [sheets[3].io_id, sheets[0].io_id, sheets[17].io_id];

    let mut fetched = client.fetch_by_ids(&wanted).await.unwrap();
    fetched.sort_by_key(|sheet| sheet.io_id);

    assert_eq!(fetched, vec![sheets[0].clone(), sheets[3].clone(), sheets[17].clone()]);
    assert_eq!(sim.accepted_biz()[0]["io_ids"], format!("{},{},{}", wanted[0], wanted[1], wanted[2]));

    let mut changed = sheets[0].clone();
    changed.remark = Some("重新盘点".into());
    sim.upsert_sheet(changed.clone());
    assert_eq!(client.fetch_by_ids(&[changed.io_id]).await.unwrap(), vec![changed]);
    sim.stop().await;
}

#[tokio::test]
async fn fetch_by_ids_over_fifty_rejected() {
    let sim = JstSim::start(JstSimConfig::default(), demo_sheets()).await.unwrap();
    let client = client(client_config(&sim));
    let ids: Vec<i64> = (1..=51).collect();

    let error = client.fetch_by_ids(&ids).await.unwrap_err();

    assert_eq!(error.retry, Retry::Never);
    assert!(error.message.contains("51"), "{}", error.message);
    assert_eq!(sim.stats().calls, 0);
    assert!(client.fetch_by_ids(&[]).await.unwrap().is_empty());
    assert_eq!(sim.stats().calls, 0);
    sim.stop().await;
}

#[tokio::test]
async fn large_sheet_round_trips() {
    let sheets = demo_sheets();
    let large = sheets.iter().find(|sheet| sheet.io_id == demo_large_sheet_io_id()).unwrap().clone();
    let sim = JstSim::start(JstSimConfig::default(), sheets).await.unwrap();
    let client = client(client_config(&sim));

    let fetched = client.fetch_by_ids(&[large.io_id]).await.unwrap();

    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].items.len(), 5_000);
    assert_eq!(fetched[0], large);
    sim.stop().await;
}

#[tokio::test]
async fn sheet_changed_between_pages_moves() {
    let sim = JstSim::start(JstSimConfig::default(), demo_sheets()).await.unwrap();
    let client = client(client_config(&sim));
    let window = first_week();
    let first_page = client.query_page(&query(window, 1, 5)).await.unwrap();

    // Modifying a sheet of page 1 moves it to the end of the order, as on the real service.
    let mut moved = first_page.sheets[0].clone();
    moved.modified = Some(to_shanghai(window.end));
    sim.upsert_sheet(moved.clone());
    let (rest, _) = read_all_pages(&client, window, 5).await.unwrap();

    assert_eq!(rest.last().map(|sheet| sheet.io_id), Some(moved.io_id));
    sim.stop().await;
}

#[tokio::test]
async fn unreachable_server_fails_later() {
    let sim = JstSim::start(JstSimConfig::default(), Vec::new()).await.unwrap();
    let config = JushuitanConfig { max_transport_retries: 1, ..client_config(&sim) };
    sim.stop().await;
    let client = client(config);

    let error = client.query(&CountQueryBiz::for_ids(&[1], 1)).await.unwrap_err();

    assert_eq!(error.code(), None);
    assert_eq!(error.retry(), Retry::Later);
}

