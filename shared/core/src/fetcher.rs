//! Fetcher logic: watermark → windows → pages → one queue message per confirmed sheet →
//! watermark moved forward.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::error::Retry;
use crate::message;
use crate::ports::{OutgoingMessage, RunLease, SheetQuery, SheetQueue, SheetSource, WatermarkStore};
use crate::sheet::CONFIRMED;
use crate::window::{MAX_WINDOW, Window, tile};

/// Largest page `inventory.count.query` serves.
pub const MAX_PAGE_SIZE: u32 = 50;

/// Fetcher settings, validated by the configuration loader.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    /// Watermark key; one per JuShuiTan tenant.
    pub stream: String,
    /// Start of the first run when no watermark is stored.
    pub initial_start: DateTime<Utc>,
    /// How far behind "now" a run stops, so sheets that become visible late are still read.
    pub lag: Duration,
    /// How far before the watermark a run starts again, so sheets that share a timestamp with
    /// the watermark are read.
    pub overlap: Duration,
    /// Maximum window, at most 7 days.
    pub max_window: Duration,
    pub page_size: u32,
    /// Largest number of windows one run reads; the rest waits for the next run.
    pub max_windows_per_run: usize,
    /// Largest number of pages one window may have, a guard against a source that never returns
    /// `has_next: false`.
    pub max_pages_per_window: u32,
    /// Maximum run lease. A run that stops without releasing its lease (a timeout, a crash)
    /// blocks the next runs until then, so it should be about the function timeout.
    pub run_lease: Duration,
}

impl Default for FetchSettings {
    fn default() -> Self {
        Self {
            stream: "jushuitan".into(),
            initial_start: DateTime::<Utc>::UNIX_EPOCH,
            lag: Duration::minutes(2),
            overlap: Duration::minutes(10),
            max_window: MAX_WINDOW,
            page_size: MAX_PAGE_SIZE,
            max_windows_per_run: 60,
            max_pages_per_window: 2_000,
            run_lease: Duration::minutes(15),
        }
    }
}

/// Fetch range: the scheduled run (from the watermark) or an explicit back-fill range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRequest {
    /// Back-fill start; when set, `end` must be too and the watermark is left alone.
    pub begin: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

/// Result of one fetcher run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchReport {
    pub windows: usize,
    pub pages: usize,
    /// Distinct confirmed sheets sent to the queue.
    pub sheets_enqueued: usize,
    /// Sheets seen twice within the run (page drift, window seams) and sent once.
    pub duplicates_skipped: usize,
    /// Sheets returned with another status despite the filter, not sent.
    pub not_confirmed_skipped: usize,
    pub watermark: Option<DateTime<Utc>>,
    /// True when the run stopped at `max_windows_per_run` before reaching the end of the range.
    pub more_pending: bool,
    /// Set when the run fetched nothing because another run held the stream's run lease: the
    /// end of that lease.
    #[serde(default)]
    pub skipped_lease_held_until: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("jushuitan query failed in window {begin}..{end} page {page}: {source}")]
    Source {
        begin: DateTime<Utc>,
        end: DateTime<Utc>,
        page: u32,
        #[source]
        source: crate::ports::SourceError,
    },
    #[error("queue send failed: {0}")]
    Queue(#[from] crate::ports::QueueError),
    #[error("watermark store failed: {0}")]
    Store(#[from] crate::ports::StoreError),
    #[error("sheet cannot be enqueued: {0}")]
    Message(#[from] message::MessageError),
    #[error("invalid fetch request: {0}")]
    InvalidRequest(String),
    #[error("window {begin}..{end} has more than {max} pages; the source keeps answering has_next")]
    TooManyPages { begin: DateTime<Utc>, end: DateTime<Utc>, max: u32 },
}

impl FetchError {
    pub fn retry(&self) -> Retry {
        match self {
            FetchError::Source { source, .. } => source.retry,
            FetchError::Queue(error) => error.retry,
            FetchError::Store(error) => error.retry,
            FetchError::Message(_) | FetchError::InvalidRequest(_) | FetchError::TooManyPages { .. } => Retry::Never,
        }
    }
}

/// Reads confirmed sheets and enqueues them.
pub struct Fetcher<'a> {
    pub source: &'a dyn SheetSource,
    pub queue: &'a dyn SheetQueue,
    pub watermarks: &'a dyn WatermarkStore,
    pub settings: &'a FetchSettings,
}

/// SendMessageBatch takes at most 10 entries.
const SEND_CHUNK: usize = 10;

impl Fetcher<'_> {
    /// Runs one fetch. The watermark moves to a window's end only after every page of that
    /// window was read and every one of its sheets was accepted by the queue.
    ///
    /// A scheduled run first takes the stream's run lease. When another run has it, this run
    /// returns at once with `skipped_lease_held_until` set. The lease is released at the end,
    /// also after an error. A back-fill takes no lease.
    pub async fn run(&self, request: &FetchRequest, now: DateTime<Utc>) -> Result<FetchReport, FetchError> {
        if request.begin.is_some() || request.end.is_some() {
            return self.run_unleased(request, now).await;
        }
        let stream = &self.settings.stream;
        let holder = uuid::Uuid::new_v4().to_string();
        let until = now + self.settings.run_lease;
        if let RunLease::Held { holder: other, until } = self.watermarks.acquire_run_lease(stream, &holder, until, now).await? {
            info!(stream, other_run = %other, %until, "run lease taken by another fetch run; exiting");
            let watermark = self.watermarks.load(stream).await?;
            return Ok(FetchReport { watermark, skipped_lease_held_until: Some(until), ..Default::default() });
        }

        let result = self.run_unleased(request, now).await;
        match self.watermarks.release_run_lease(stream, &holder).await {
            Ok(true) => {}
            Ok(false) => warn!(stream, "run lease ended before the run finished; another run may have overlapped"),
            Err(error) => warn!(stream, error = %error, "run lease not released; it ends at its expiry"),
        }
        result
    }

    async fn run_unleased(&self, request: &FetchRequest, now: DateTime<Utc>) -> Result<FetchReport, FetchError> {
        let (begin, end, backfill) = self.range(request, now).await?;
        let windows = tile(begin, end, self.settings.max_window);
        let mut report = FetchReport { watermark: self.watermarks.load(&self.settings.stream).await?, ..Default::default() };
        let mut seen = HashSet::new();

        info!(%begin, %end, windows = windows.len(), backfill, "fetch started");
        for (index, window) in windows.iter().enumerate() {
            if index == self.settings.max_windows_per_run {
                report.more_pending = true;
                break;
            }
            self.fetch_window(window, &mut seen, &mut report).await?;
            report.windows += 1;

            if !backfill && self.watermarks.advance(&self.settings.stream, window.end).await? {
                report.watermark = Some(window.end);
            }
        }
        info!(
            windows = report.windows,
            pages = report.pages,
            sheets = report.sheets_enqueued,
            duplicates = report.duplicates_skipped,
            watermark = ?report.watermark,
            more_pending = report.more_pending,
            "fetch finished"
        );
        Ok(report)
    }

    async fn range(&self, request: &FetchRequest, now: DateTime<Utc>) -> Result<(DateTime<Utc>, DateTime<Utc>, bool), FetchError> {
        match (request.begin, request.end) {
            (Some(begin), Some(end)) if begin < end => Ok((begin, end, true)),
            (Some(begin), Some(end)) => Err(FetchError::InvalidRequest(format!("begin {begin} is not before end {end}"))),
            (None, None) => {
                let start = match self.watermarks.load(&self.settings.stream).await? {
                    Some(mark) => mark - self.settings.overlap,
                    None => self.settings.initial_start,
                };
                Ok((start, now - self.settings.lag, false))
            }
            _ => Err(FetchError::InvalidRequest("a back-fill needs both begin and end".into())),
        }
    }

    async fn fetch_window(&self, window: &Window, seen: &mut HashSet<i64>, report: &mut FetchReport) -> Result<(), FetchError> {
        let mut page_index = 1;
        loop {
            if page_index > self.settings.max_pages_per_window {
                return Err(FetchError::TooManyPages { begin: window.begin, end: window.end, max: self.settings.max_pages_per_window });
            }
            let query = SheetQuery {
                window: *window,
                page_index,
                page_size: self.settings.page_size,
                status: CONFIRMED.to_string(),
            };
            let page = self.source.query_page(&query).await.map_err(|source| FetchError::Source {
                begin: window.begin,
                end: window.end,
                page: page_index,
                source,
            })?;
            report.pages += 1;

            let mut outgoing: Vec<OutgoingMessage> = Vec::new();
            for sheet in &page.sheets {
                if !sheet.is_confirmed() {
                    warn!(io_id = sheet.io_id, status = %sheet.status, "source returned a sheet that is not confirmed; skipped");
                    report.not_confirmed_skipped += 1;
                    continue;
                }
                if !seen.insert(sheet.io_id) {
                    report.duplicates_skipped += 1;
                    continue;
                }
                outgoing.push(message::encode(sheet)?);
            }
            for chunk in outgoing.chunks(SEND_CHUNK) {
                self.queue.send(chunk).await?;
            }
            report.sheets_enqueued += outgoing.len();

            if !page.has_next {
                return Ok(());
            }
            page_index += 1;
        }
    }
}

#[cfg(test)]
mod tests;
