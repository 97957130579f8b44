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

#[tokio::test]
async fn held_lease_skips_run() {
    let source = MemorySheetSource::new(vec![sheet(1, 3, "Confirmed")]);
    let (queue, watermarks, settings) = (MemoryQueue::new(), MemoryWatermarks::new(), settings());
    let other_until = now() + Duration::minutes(5);
    assert_eq!(watermarks.acquire_run_lease("jushuitan", "other-run", other_until, now()).await.unwrap(), RunLease::Acquired);
    let fetcher = Fetcher { source: &source, queue: &queue, watermarks: &watermarks, settings: &settings };

    let report = fetcher.run(&FetchRequest::default(), now()).await.unwrap();

    assert_eq!(report.skipped_lease_held_until, Some(other_until));
    assert_eq!(report.pages, 0);
    assert_eq!(source.calls(), 0, "a skipped run must not query the source");
    assert!(queue.is_empty());
    assert_eq!(watermarks.load("jushuitan").await.unwrap(), None);
}

#[tokio::test]
async fn expired_lease_taken_over() {
    let source = MemorySheetSource::new(vec![sheet(1, 3, "Confirmed")]);
    let (queue, watermarks, settings) = (MemoryQueue::new(), MemoryWatermarks::new(), settings());
    watermarks.acquire_run_lease("jushuitan", "crashed-run", now(), now() - Duration::minutes(20)).await.unwrap();
    let fetcher = Fetcher { source: &source, queue: &queue, watermarks: &watermarks, settings: &settings };

    let report = fetcher.run(&FetchRequest::default(), now()).await.unwrap();

    assert_eq!(report.skipped_lease_held_until, None);
    assert_eq!(report.sheets_enqueued, 1);
}

#[tokio::test]
async fn lease_released_after_run_and_error() {
    let source = MemorySheetSource::new(vec![sheet(1, 3, "Confirmed")]);
    let (queue, watermarks, settings) = (MemoryQueue::new(), MemoryWatermarks::new(), settings());
    let fetcher = Fetcher { source: &source, queue: &queue, watermarks: &watermarks, settings: &settings };

    fetcher.run(&FetchRequest::default(), now()).await.unwrap();
    let free = watermarks.acquire_run_lease("jushuitan", "probe", now() + Duration::minutes(1), now()).await.unwrap();
    assert_eq!(free, RunLease::Acquired, "a finished run must release its lease");
    assert!(watermarks.release_run_lease("jushuitan", "probe").await.unwrap());

    source.fail_on_call(source.calls() + 1, SourceError { code: Some(199), message: "throttled".into(), retry: Retry::Now });
    assert!(fetcher.run(&FetchRequest::default(), now() + Duration::hours(1)).await.is_err());
    let free = watermarks.acquire_run_lease("jushuitan", "probe", now() + Duration::hours(2), now() + Duration::hours(1)).await.unwrap();
    assert_eq!(free, RunLease::Acquired, "a failed run must release its lease");
}

/// A source that yields between pages, so that two runs overlap.
struct SlowSource(MemorySheetSource);

#[async_trait::async_trait]
impl SheetSource for SlowSource {
    async fn query_page(&self, query: &SheetQuery) -> Result<crate::ports::SheetPage, SourceError> {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        self.0.query_page(query).await
    }

    async fn fetch_by_ids(&self, io_ids: &[i64]) -> Result<Vec<CountSheet>, SourceError> {
        self.0.fetch_by_ids(io_ids).await
    }
}

#[tokio::test]
async fn overlapping_runs_fetch_once() {
    let sheets: Vec<_> = (1..=10).map(|day| sheet(day as i64, day, "Confirmed")).collect();
    let source = SlowSource(MemorySheetSource::new(sheets));
    let (queue, watermarks, settings) = (MemoryQueue::new(), MemoryWatermarks::new(), settings());
    let fetcher = Fetcher { source: &source, queue: &queue, watermarks: &watermarks, settings: &settings };

    let request = FetchRequest::default();
    let (first, second) = tokio::join!(fetcher.run(&request, now()), fetcher.run(&request, now()));
    let reports = [first.unwrap(), second.unwrap()];

    let skipped = reports.iter().filter(|report| report.skipped_lease_held_until.is_some()).count();
    assert_eq!(skipped, 1, "exactly one overlapping run must exit early");
    assert_eq!(queue.len(), 10, "each sheet must be enqueued once");
}
