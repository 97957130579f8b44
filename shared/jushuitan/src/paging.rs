//! Per-run state of the client and the re-check that catches sheets skipped by page drift.
//!
//! `inventory.count.query` pages by offset and has no cursor. When a sheet on a page already
//! read is modified, it moves out of its position (its `modified` becomes later), every sheet
//! after it moves one position forward, and the first sheet of the next page lands on the page
//! already read: plain paging never returns it. So after the last page of a window that took more
//! than one page, the client reads the window again and returns the sheets it had not served
//! yet, until a pass finds none.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::AtomicU32;

use chrono::{DateTime, Utc};
use countsync_core::ports::{SheetPage, SheetQuery};
use countsync_core::sheet::CountSheet;
use tracing::warn;

use crate::client::{CountQueryBiz, JushuitanClient};
use crate::error::JstError;

/// Re-check passes of one window; when the last one still finds skipped sheets, the window is
/// reported as unsettled and the run stops before moving the watermark past it.
pub(crate) const MAX_RECHECK_PASSES: u32 = 3;
/// Largest number of pages one re-check pass reads, a guard against a server that never ends.
const MAX_RECHECK_PAGES: u32 = 2_000;

/// State of one fetch run: its call count and the sheets served per window in progress.
#[derive(Default)]
pub(crate) struct RunState {
    pub(crate) calls: AtomicU32,
    served: Mutex<HashMap<WindowKey, HashSet<i64>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct WindowKey {
    begin: DateTime<Utc>,
    end: DateTime<Utc>,
    status: String,
    page_size: u32,
}

impl WindowKey {
    fn of(query: &SheetQuery) -> Self {
        Self { begin: query.window.begin, end: query.window.end, status: query.status.clone(), page_size: query.page_size }
    }
}

impl RunState {
    /// Records the sheets of a page; page 1 starts the window afresh. On the last page of a
    /// window whose page 1 this run read, returns the ids served in it and forgets the window.
    fn record(&self, query: &SheetQuery, page: &SheetPage) -> Option<HashSet<i64>> {
        let mut served = self.served.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = WindowKey::of(query);
        if query.page_index == 1 {
            served.insert(key.clone(), HashSet::new());
        }
        let ids = served.get_mut(&key)?;
        ids.extend(page.sheets.iter().map(|sheet| sheet.io_id));
        if page.has_next { None } else { served.remove(&key) }
    }
}

impl JushuitanClient {
    /// Reads one page of a window query, and after the last page of a window with several
    /// pages appends the sheets that a re-check finds skipped.
    pub(crate) async fn query_window_page(&self, query: &SheetQuery) -> Result<SheetPage, JstError> {
        let mut page = self.query(&CountQueryBiz::for_window(query)).await?;
        let served = self.run_state().record(query, &page);
        let Some(served) = served.filter(|_| query.page_index > 1 && self.config().recheck_paged_windows) else {
            return Ok(page);
        };
        let skipped = self.recheck_window(query, served).await?;
        page.sheets.extend(skipped);
        Ok(page)
    }

    async fn recheck_window(&self, query: &SheetQuery, mut served: HashSet<i64>) -> Result<Vec<CountSheet>, JstError> {
        let mut skipped = Vec::new();
        for pass in 1..=MAX_RECHECK_PASSES {
            let found = self.read_unserved(query, &mut served).await?;
            if found.is_empty() {
                return Ok(skipped);
            }
            let io_ids: Vec<i64> = found.iter().map(|sheet| sheet.io_id).collect();
            warn!(pass, begin = %query.window.begin, end = %query.window.end, ?io_ids, "re-check found sheets that paging skipped (page drift)");
            skipped.extend(found);
        }
        Err(JstError::WindowUnsettled { begin: query.window.begin, end: query.window.end, passes: MAX_RECHECK_PASSES })
    }

    /// Reads every page of the window and returns the sheets not in `served`, adding them.
    async fn read_unserved(&self, query: &SheetQuery, served: &mut HashSet<i64>) -> Result<Vec<CountSheet>, JstError> {
        let mut found = Vec::new();
        for page_index in 1..=MAX_RECHECK_PAGES {
            let page_query = SheetQuery { page_index, ..query.clone() };
            let page = self.query(&CountQueryBiz::for_window(&page_query)).await?;
            found.extend(page.sheets.into_iter().filter(|sheet| served.insert(sheet.io_id)));
            if !page.has_next {
                return Ok(found);
            }
        }
        Err(JstError::InvalidRequest(format!(
            "window {}..{} has more than {MAX_RECHECK_PAGES} pages during the re-check; use a shorter fetch.window_hours",
            query.window.begin, query.window.end
        )))
    }
}
