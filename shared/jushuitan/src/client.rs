//! The `inventory.count.query` client: signing, rate limits, retries and paging.

use async_trait::async_trait;
use backon::Retryable;
use chrono::Utc;
use countsync_core::ports::{SheetPage, SheetQuery, SheetSource, SourceError};
use countsync_core::sheet::CountSheet;
use countsync_core::time::format_shanghai;
use reqwest::header::CONTENT_TYPE;
use secrecy::ExposeSecret;
use serde::Serialize;
use tracing::{debug, warn};

use crate::config::{JushuitanConfig, MAX_PAGE_SIZE};
use crate::error::JstError;
use crate::limits::{RateLimits, RetryBudget, backoff};
use crate::sign::sign;
use crate::wire::{decode_envelope, decode_page};

/// Largest number of ids one `io_ids` query accepts.
pub const MAX_IO_IDS: usize = 50;

/// API version of the current open platform's envelope.
const API_VERSION: &str = "2";
const CHARSET: &str = "utf-8";
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
/// Maximum number of characters of an unexpected response body kept in an error message.
const BODY_EXCERPT_CHARS: usize = 200;

/// Business parameters (`biz`) of `inventory.count.query`, in the documented field order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountQueryBiz {
    pub page_index: u32,
    pub page_size: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified_begin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified_end: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Comma-separated sheet ids.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_ids: Option<String>,
}

impl CountQueryBiz {
    /// Builds the parameters of one page of a window query; times are sent in Asia/Shanghai.
    pub fn for_window(query: &SheetQuery) -> Self {
        Self {
            page_index: query.page_index,
            page_size: query.page_size,
            modified_begin: Some(format_shanghai(query.window.begin)),
            modified_end: Some(format_shanghai(query.window.end)),
            status: Some(query.status.clone()).filter(|status| !status.is_empty()),
            io_ids: None,
        }
    }

    /// Builds the parameters of one page of an id query.
    pub fn for_ids(io_ids: &[i64], page_index: u32) -> Self {
        let ids = io_ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        Self {
            page_index,
            page_size: MAX_PAGE_SIZE,
            modified_begin: None,
            modified_end: None,
            status: None,
            io_ids: Some(ids),
        }
    }
}

/// Reads count sheets from the current open platform.
pub struct JushuitanClient {
    http: reqwest::Client,
    config: JushuitanConfig,
    url: String,
    limits: RateLimits,
}

impl JushuitanClient {
    /// Validates the configuration and builds the client. TLS certificates are always verified.
    pub fn new(config: JushuitanConfig) -> Result<Self, JstError> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout())
            .build()
            .map_err(JstError::Transport)?;
        let url = config.count_query_url();
        let limits = RateLimits::new(&config);
        Ok(Self { http, config, url, limits })
    }

    pub fn config(&self) -> &JushuitanConfig {
        &self.config
    }

    /// Sends one `inventory.count.query` call, retrying throttling, a rejected timestamp and
    /// transport failures as configured.
    pub async fn query(&self, biz: &CountQueryBiz) -> Result<SheetPage, JstError> {
        if biz.page_size == 0 || biz.page_size > MAX_PAGE_SIZE {
            return Err(JstError::InvalidRequest(format!(
                "page_size {} is out of range; use 1 to {MAX_PAGE_SIZE}",
                biz.page_size
            )));
        }
        // Serialized once: the signature covers exactly the text that is sent.
        let biz_text = serde_json::to_string(biz).map_err(|error| JstError::InvalidRequest(error.to_string()))?;
        let budget = RetryBudget::new(&self.config);

        let result = (|| self.send_once(&biz_text, biz.page_size))
            .retry(backoff(&self.config, budget.max_total()))
            .when(|error| budget.allow(error))
            .notify(|error, delay| log_retry(biz.page_index, error, delay))
            .await;

        result.map_err(|error| match error {
            JstError::Throttled { code, msg, .. } => JstError::Throttled { code, msg, attempts: budget.throttled_attempts() },
            other => other,
        })
    }

    async fn send_once(&self, biz_text: &str, page_size: u32) -> Result<SheetPage, JstError> {
        self.limits.until_ready().await;
        let form = self.signed_form(biz_text);

        let response = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, FORM_CONTENT_TYPE)
            .form(&form)
            .send()
            .await
            .map_err(JstError::Transport)?;
        let status = response.status();
        let body = response.text().await.map_err(JstError::Transport)?;
        if status != reqwest::StatusCode::OK {
            return Err(JstError::HttpStatus { status: status.as_u16(), excerpt: excerpt(&body) });
        }

        let envelope = decode_envelope(&body)?;
        if envelope.code != 0 {
            return Err(JstError::from_code(envelope.code, envelope.msg));
        }
        Ok(decode_page(envelope.data, page_size)?)
    }

    /// Builds the form fields with a fresh timestamp and their signature.
    fn signed_form<'a>(&'a self, biz_text: &'a str) -> Vec<(&'static str, String)> {
        let timestamp = Utc::now().timestamp().to_string();
        let mut form: Vec<(&'static str, String)> = vec![
            ("app_key", self.config.app_key.clone()),
            ("access_token", self.config.access_token.expose_secret().to_string()),
            ("timestamp", timestamp),
            ("version", API_VERSION.to_string()),
            ("charset", CHARSET.to_string()),
            ("biz", biz_text.to_string()),
        ];
        let fields: Vec<(&str, &str)> = form.iter().map(|(key, value)| (*key, value.as_str())).collect();
        let signature = sign(self.config.app_secret.expose_secret(), &fields);
        form.push(("sign", signature));
        form
    }
}

fn log_retry(page_index: u32, error: &JstError, delay: std::time::Duration) {
    let delay_ms = delay.as_millis() as u64;
    match error {
        JstError::Timestamp { .. } => {
            warn!(page_index, delay_ms, error = %error, "jushuitan rejected the timestamp; re-stamping once")
        }
        _ => debug!(page_index, code = ?error.code(), delay_ms, error = %error, "retrying jushuitan call"),
    }
}

fn excerpt(body: &str) -> String {
    body.chars().take(BODY_EXCERPT_CHARS).collect()
}

#[async_trait]
impl SheetSource for JushuitanClient {
    async fn query_page(&self, query: &SheetQuery) -> Result<SheetPage, SourceError> {
        let page = self.query(&CountQueryBiz::for_window(query)).await;
        page.map_err(|error| {
            warn!(page_index = query.page_index, code = ?error.code(), error = %error, "jushuitan page query failed");
            SourceError::from(error)
        })
    }

    async fn fetch_by_ids(&self, io_ids: &[i64]) -> Result<Vec<CountSheet>, SourceError> {
        if io_ids.len() > MAX_IO_IDS {
            let error = JstError::InvalidRequest(format!(
                "{} io_ids requested; inventory.count.query accepts at most {MAX_IO_IDS} per call, so split the list",
                io_ids.len()
            ));
            return Err(error.into());
        }
        if io_ids.is_empty() {
            return Ok(Vec::new());
        }

        let mut sheets = Vec::new();
        // At most 50 ids fit on one page of 50, so further pages are read only when `has_next` is set.
        for page_index in 1..=MAX_IO_IDS as u32 {
            let page = self.query(&CountQueryBiz::for_ids(io_ids, page_index)).await.map_err(SourceError::from)?;
            sheets.extend(page.sheets);
            if !page.has_next {
                break;
            }
        }
        Ok(sheets)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use countsync_core::window::Window;

    use super::*;

    #[test]
    fn window_biz_matches_reference_text() {
        let begin = Utc.with_ymd_and_hms(2024, 2, 29, 16, 0, 0).unwrap();
        let end = Utc.with_ymd_and_hms(2024, 3, 7, 16, 0, 0).unwrap();
        let query = SheetQuery { window: Window { begin, end }, page_index: 1, page_size: 50, status: "Confirmed".into() };
        let text = serde_json::to_string(&CountQueryBiz::for_window(&query)).unwrap();
        assert_eq!(
            text,
            r#"{"page_index":1,"page_size":50,"modified_begin":"2024-03-01 00:00:00","modified_end":"2024-03-08 00:00:00","status":"Confirmed"}"#
        );
    }

    #[test]
    fn ids_biz_joins_with_commas() {
        let text = serde_json::to_string(&CountQueryBiz::for_ids(&[3, 1, 2], 1)).unwrap();
        assert_eq!(text, r#"{"page_index":1,"page_size":50,"io_ids":"3,1,2"}"#);
    }

    #[test]
    fn new_rejects_invalid_config() {
        let error = JushuitanClient::new(JushuitanConfig::default()).err().unwrap();
        assert!(error.to_string().contains("jushuitan.app_key"), "{error}");
        assert_eq!(error.retry(), countsync_core::Retry::Never);
    }
}
