//! The `inventory.count.query` client: signing, rate limits, retries and paging.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use backon::Retryable;
use chrono::Utc;
use countsync_core::ports::{SheetPage, SheetQuery, SheetSource, SourceError, TokenStore};
use countsync_core::sheet::CountSheet;
use countsync_core::time::format_shanghai;
use reqwest::header::CONTENT_TYPE;
use secrecy::ExposeSecret;
use serde::Serialize;
use tracing::{debug, warn};

use crate::config::{JushuitanConfig, MAX_PAGE_SIZE, Protocol, TokenMode};
use crate::error::JstError;
use crate::limits::{RateLimits, RetryBudget, backoff};
use crate::paging::RunState;
use crate::sign::{sign, sign_legacy};
use crate::token::{AccessToken, Clock, TokenProvider};
use crate::wire::{decode_envelope, decode_legacy, decode_page};

/// Largest number of ids one `io_ids` query accepts.
pub const MAX_IO_IDS: usize = 50;

/// API version of the current open platform's envelope.
const API_VERSION: &str = "2";
const CHARSET: &str = "utf-8";
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
/// NOTE: the legacy gateway's expected content type is not documented; SDKs send JSON text.
const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";
/// Method name of count sheets on the legacy gateway.
pub const LEGACY_METHOD: &str = "inventory.count.query";
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

/// Optional parts of a client: the token store of the refreshing token modes, and the clock
/// that decides when a token is due for refresh.
#[derive(Default, Clone)]
pub struct ClientOptions {
    pub token_store: Option<Arc<dyn TokenStore>>,
    pub clock: Option<Clock>,
}

/// Parts shared by a client and every run handle made from it.
struct Shared {
    http: reqwest::Client,
    config: JushuitanConfig,
    url: String,
    limits: Arc<RateLimits>,
    tokens: TokenProvider,
}

/// Reads count sheets from JuShuiTan, through the current open platform or the legacy gateway.
///
/// Clones share the HTTP client, the rate limits and the token; [`JushuitanClient::for_run`]
/// also gives a clone its own call budget and paging state, for one fetch run.
#[derive(Clone)]
pub struct JushuitanClient {
    shared: Arc<Shared>,
    run: Arc<RunState>,
}

impl JushuitanClient {
    /// Validates the configuration and builds a client for `token_mode = "static"`. The
    /// refreshing modes need a token store: use [`JushuitanClient::with_options`].
    pub fn new(config: JushuitanConfig) -> Result<Self, JstError> {
        Self::with_options(config, ClientOptions::default())
    }

    /// Builds a client whose token pair is kept in `store`.
    pub fn with_token_store(config: JushuitanConfig, store: Arc<dyn TokenStore>) -> Result<Self, JstError> {
        Self::with_options(config, ClientOptions { token_store: Some(store), clock: None })
    }

    /// Validates the configuration and builds the client. TLS certificates are always verified.
    pub fn with_options(config: JushuitanConfig, options: ClientOptions) -> Result<Self, JstError> {
        config.validate()?;
        if config.token_mode != TokenMode::Static && options.token_store.is_none() {
            return Err(JstError::Config(crate::config::ConfigError {
                key: "jushuitan.token_mode".into(),
                message: format!(
                    "{:?} keeps the token pair in the state backend, which this deployment does not pass to the client; \
                     use \"static\" or a build that wires the token store",
                    config.token_mode
                ),
            }));
        }
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout())
            .build()
            .map_err(JstError::Transport)?;
        let url = match config.protocol {
            Protocol::Open => config.count_query_url(),
            Protocol::Legacy => config.legacy_url(),
        };
        let limits = Arc::new(RateLimits::new(&config));
        let clock = options.clock.unwrap_or_else(|| Arc::new(Utc::now));
        let tokens = TokenProvider::new(&config, options.token_store, http.clone(), limits.clone(), clock);
        let shared = Arc::new(Shared { http, config, url, limits, tokens });
        Ok(Self { shared, run: Arc::new(RunState::default()) })
    }

    /// Returns a handle for one fetch run: same connection pool, rate limits and token, with a
    /// fresh call budget of `max_calls_per_run`.
    pub fn for_run(&self) -> Self {
        Self { shared: self.shared.clone(), run: Arc::new(RunState::default()) }
    }

    pub fn config(&self) -> &JushuitanConfig {
        &self.shared.config
    }

    pub(crate) fn run_state(&self) -> &RunState {
        &self.run
    }

    /// Returns the number of `inventory.count.query` requests this run has sent, retries included.
    pub fn calls_this_run(&self) -> u32 {
        self.run.calls.load(Ordering::SeqCst)
    }

    /// Sends one `inventory.count.query` call, retrying throttling, a rejected timestamp and
    /// transport failures as configured. A token rejected with code 100 is refreshed once and
    /// the same page sent once more.
    pub async fn query(&self, biz: &CountQueryBiz) -> Result<SheetPage, JstError> {
        if biz.page_size == 0 || biz.page_size > MAX_PAGE_SIZE {
            return Err(JstError::InvalidRequest(format!(
                "page_size {} is out of range; use 1 to {MAX_PAGE_SIZE}",
                biz.page_size
            )));
        }
        // Serialized once: the signature covers exactly the text that is sent.
        let biz_text = serde_json::to_string(biz).map_err(|error| JstError::InvalidRequest(error.to_string()))?;
        let tokens = &self.shared.tokens;
        let token = tokens.access_token().await?;
        match self.query_with_retries(&biz_text, biz, &token).await {
            Err(JstError::TokenInvalid { code, .. }) if tokens.refreshes() => {
                warn!(page_index = biz.page_index, code, "jushuitan rejected the access token; refreshing it once");
                let fresh = tokens.refresh_after_rejection(&token).await?;
                self.query_with_retries(&biz_text, biz, &fresh).await
            }
            other => other,
        }
    }

    async fn query_with_retries(&self, biz_text: &str, biz: &CountQueryBiz, token: &AccessToken) -> Result<SheetPage, JstError> {
        let budget = RetryBudget::new(&self.shared.config);
        let result = (|| self.send_once(biz_text, biz.page_size, token))
            .retry(backoff(&self.shared.config, budget.max_total()))
            .when(|error| budget.allow(error))
            .notify(|error, delay| log_retry(biz.page_index, error, delay))
            .await;

        result.map_err(|error| match error {
            JstError::Throttled { code, msg, .. } => JstError::Throttled { code, msg, attempts: budget.throttled_attempts() },
            other => other,
        })
    }

    async fn send_once(&self, biz_text: &str, page_size: u32, token: &AccessToken) -> Result<SheetPage, JstError> {
        self.take_call()?;
        self.shared.limits.until_ready().await;
        let request = match self.shared.config.protocol {
            Protocol::Open => self.open_request(biz_text, token),
            Protocol::Legacy => self.legacy_request(biz_text, token),
        };
        let response = request.send().await.map_err(JstError::Transport)?;
        let status = response.status();
        let body = response.text().await.map_err(JstError::Transport)?;
        if status != reqwest::StatusCode::OK {
            return Err(JstError::HttpStatus { status: status.as_u16(), excerpt: excerpt(&body) });
        }
        match self.shared.config.protocol {
            Protocol::Open => decode_open(&body, page_size),
            Protocol::Legacy => decode_legacy_body(&body, page_size),
        }
    }

    /// Counts one request against the run's budget.
    fn take_call(&self) -> Result<(), JstError> {
        let max = self.shared.config.max_calls_per_run;
        let taken = self.run.calls.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| (used < max).then_some(used + 1));
        taken.map(|_| ()).map_err(|_| JstError::CallBudgetExhausted { max })
    }

    /// Builds a current-platform request: form fields with a fresh timestamp and their signature.
    fn open_request(&self, biz_text: &str, token: &AccessToken) -> reqwest::RequestBuilder {
        let config = &self.shared.config;
        let timestamp = Utc::now().timestamp().to_string();
        let mut form: Vec<(&'static str, String)> = vec![
            ("app_key", config.app_key.clone()),
            ("access_token", token.secret.expose_secret().to_string()),
            ("timestamp", timestamp),
            ("version", API_VERSION.to_string()),
            ("charset", CHARSET.to_string()),
            ("biz", biz_text.to_string()),
        ];
        let fields: Vec<(&str, &str)> = form.iter().map(|(key, value)| (*key, value.as_str())).collect();
        let signature = sign(config.app_secret.expose_secret(), &fields);
        form.push(("sign", signature));
        self.shared.http.post(&self.shared.url).header(CONTENT_TYPE, FORM_CONTENT_TYPE).form(&form)
    }

    /// Builds a legacy-gateway request: method, partner id, token, timestamp and signature in
    /// the query string, the business JSON as the body.
    fn legacy_request(&self, biz_text: &str, token: &AccessToken) -> reqwest::RequestBuilder {
        let config = &self.shared.config;
        let ts = Utc::now().timestamp().to_string();
        let token = token.secret.expose_secret();
        let signature = sign_legacy(LEGACY_METHOD, &config.app_key, token, &ts, config.app_secret.expose_secret());
        let query = [
            ("method", LEGACY_METHOD),
            ("partnerid", config.app_key.as_str()),
            ("token", token),
            ("ts", ts.as_str()),
            ("sign", signature.as_str()),
        ];
        let mut url = match reqwest::Url::parse(&self.shared.url) {
            Ok(url) => url,
            // Unreachable: the configuration check parsed the base URL.
            Err(_) => return self.shared.http.post(&self.shared.url),
        };
        url.query_pairs_mut().extend_pairs(query);
        self.shared
            .http
            .post(url)
            .header(CONTENT_TYPE, JSON_CONTENT_TYPE)
            .body(biz_text.to_string())
    }
}

fn decode_open(body: &str, page_size: u32) -> Result<SheetPage, JstError> {
    let envelope = decode_envelope(body)?;
    if envelope.code != 0 {
        return Err(JstError::from_code(envelope.code, envelope.msg));
    }
    Ok(decode_page(envelope.data, page_size)?)
}

fn decode_legacy_body(body: &str, page_size: u32) -> Result<SheetPage, JstError> {
    let response = decode_legacy(body, page_size)?;
    match response.page {
        Some(page) => Ok(page),
        None => Err(JstError::from_code(response.code, response.msg)),
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
        let page = self.query_window_page(query).await;
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
