use super::*;
use crate::memory::{MemoryQueue, MemorySheetSource, MemoryWatermarks};
use crate::ports::SourceError;
use crate::sheet::CountSheet;
use chrono::{NaiveDate, TimeZone};

fn sheet(io_id: i64, day: u32, status: &str) -> CountSheet {
    let modified = NaiveDate::from_ymd_opt(2026, 10, day).unwrap().and_hms_opt(10, 0, 0);
    CountSheet {
        io_id,
        io_date: modified,
        status: status.into(),
        warehouse: None,
        wh_id: Some(1),
        wms_co_id: None,
        kind: None,
        creator_name: None,
        remark: None,
        modified,
        f_status: None,
        lock_wh_id: None,
        lock_wh_name: None,
        labels: vec![],
        items: vec![],
        batchs: vec![],
        sns: vec![],
    }
}

fn settings() -> FetchSettings {
    FetchSettings {
        initial_start: Utc.with_ymd_and_hms(2026, 9, 30, 16, 0, 0).unwrap(),
        lag: Duration::zero(),
        page_size: 2,
        ..FetchSettings::default()
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 31, 0, 0, 0).unwrap()
}

#[tokio::test]
async fn enqueues_confirmed_once() {
    let sheets: Vec<_> = (1..=25).map(|day| sheet(day as i64, day, if day % 5 == 0 { "WaitConfirm" } else { "Confirmed" })).collect();
    let source = MemorySheetSource::new(sheets);
    let (queue, watermarks, settings) = (MemoryQueue::new(), MemoryWatermarks::new(), settings());
    let fetcher = Fetcher { source: &source, queue: &queue, watermarks: &watermarks, settings: &settings };

    let report = fetcher.run(&FetchRequest::default(), now()).await.unwrap();
    assert_eq!(report.sheets_enqueued, 20);
    assert_eq!(queue.len(), 20);
    assert_eq!(report.windows, 5);
    assert_eq!(watermarks.load("jushuitan").await.unwrap(), Some(now()));
}

#[tokio::test]
async fn failed_page_keeps_watermark() {
    let sheets: Vec<_> = (1..=20).map(|day| sheet(day as i64, day, "Confirmed")).collect();
    let source = MemorySheetSource::new(sheets);
    // Window 1 (Oct 1–7) takes 4 pages of 2; the next window's second page fails.
    source.fail_on_call(6, SourceError { code: Some(199), message: "throttled".into(), retry: Retry::Later });
    let (queue, watermarks, settings) = (MemoryQueue::new(), MemoryWatermarks::new(), settings());
    let fetcher = Fetcher { source: &source, queue: &queue, watermarks: &watermarks, settings: &settings };

    let error = fetcher.run(&FetchRequest::default(), now()).await.unwrap_err();
    assert_eq!(error.retry(), Retry::Later);
    let first_window_end = settings.initial_start + MAX_WINDOW;
    assert_eq!(watermarks.load("jushuitan").await.unwrap(), Some(first_window_end));

    // The next run starts from the watermark (minus the overlap) and reads everything.
    let report = fetcher.run(&FetchRequest::default(), now()).await.unwrap();
    assert_eq!(watermarks.load("jushuitan").await.unwrap(), Some(now()));
    assert_eq!(report.sheets_enqueued, 13);
}

#[tokio::test]
async fn backfill_leaves_watermark() {
    let source = MemorySheetSource::new((1..=10).map(|day| sheet(day as i64, day, "Confirmed")).collect());
    let (queue, watermarks, settings) = (MemoryQueue::new(), MemoryWatermarks::new(), settings());
    let fetcher = Fetcher { source: &source, queue: &queue, watermarks: &watermarks, settings: &settings };

    let request = FetchRequest {
        begin: Some(Utc.with_ymd_and_hms(2026, 10, 2, 0, 0, 0).unwrap()),
        end: Some(Utc.with_ymd_and_hms(2026, 10, 5, 0, 0, 0).unwrap()),
    };
    let report = fetcher.run(&request, now()).await.unwrap();
    assert_eq!(report.sheets_enqueued, 3);
    assert_eq!(watermarks.load("jushuitan").await.unwrap(), None);
}

#[tokio::test]
async fn invalid_backfill_rejected() {
    let source = MemorySheetSource::new(vec![]);
    let (queue, watermarks, settings) = (MemoryQueue::new(), MemoryWatermarks::new(), settings());
    let fetcher = Fetcher { source: &source, queue: &queue, watermarks: &watermarks, settings: &settings };

    let half = FetchRequest { begin: Some(now()), end: None };
    assert!(matches!(fetcher.run(&half, now()).await, Err(FetchError::InvalidRequest(_))));
    let reversed = FetchRequest { begin: Some(now()), end: Some(now() - Duration::days(1)) };
    assert!(matches!(fetcher.run(&reversed, now()).await, Err(FetchError::InvalidRequest(_))));
    assert_eq!(source.calls(), 0);
}

#[tokio::test]
async fn watermark_never_moves_back() {
    let source = MemorySheetSource::new(vec![]);
    let (queue, watermarks, settings) = (MemoryQueue::new(), MemoryWatermarks::new(), settings());
    let fetcher = Fetcher { source: &source, queue: &queue, watermarks: &watermarks, settings: &settings };

    fetcher.run(&FetchRequest::default(), now()).await.unwrap();
    // A slow run that started earlier finishes later: its older "now" must not win.
    fetcher.run(&FetchRequest::default(), now() - Duration::days(3)).await.unwrap();
    assert_eq!(watermarks.load("jushuitan").await.unwrap(), Some(now()));
}
