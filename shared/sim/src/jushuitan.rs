//! JuShuiTan open platform simulator for `inventory.count.query`, listening on 127.0.0.1.
//!
//! It checks what the real service checks (signature, app key, access token, timestamp
//! tolerance, page size, window span, `io_ids` count, status values, calls per second and per
//! minute) and rejects with the same codes, all with HTTP 200. Sheets go out in JuShuiTan's loose
//! wire format: some `io_id`s and quantities as strings, some times with milliseconds, some
//! `labels` as comma-separated text, so clients meet the shapes the real API sends.
//!
//! It also serves the token endpoints (`getInitToken`, `refreshToken`, each refresh issuing a new
//! refresh token and invalidating the old one) and the legacy gateway (`/api/open/query.aspx`,
//! flat responses, its own signature).
//!
//! Fault knobs act on shared state while the server runs: throttling and forced codes
//! ([`JstSim::throttle_next`], [`JstSim::fail_next`]), token expiry
//! ([`JstSim::expire_access_token`], [`JstSim::expire_token_after_pages`]), page drift
//! ([`JstSim::drift_after_pages`]), late-visible sheets ([`JstSim::add_hidden`]), a sheet repeated
//! across pages ([`JstSim::repeat_across_pages`]) and data changes ([`JstSim::set_sheets`],
//! [`JstSim::upsert_sheet`]).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Form, Query as UrlQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use chrono::{NaiveDateTime, Utc};
use countsync_core::sheet::CountSheet;
use countsync_core::time::WALL_CLOCK_FORMAT;
use countsync_jushuitan::sign::{sign, sign_legacy, signature_matches};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant};


/// Path of `inventory.count.query` on the current open platform.
pub const COUNT_QUERY_PATH: &str = "/open/inventory/count/query";
/// Path of the legacy gateway.
pub const LEGACY_PATH: &str = "/api/open/query.aspx";
/// Path of the merchant application's initial token request.
pub const INIT_TOKEN_PATH: &str = "/openWeb/auth/getInitToken";
/// Path of the token refresh.
pub const REFRESH_TOKEN_PATH: &str = "/openWeb/auth/refreshToken";
/// Statuses `inventory.count.query` filters by.
pub const STATUSES: [&str; 5] = ["WaitConfirm", "Confirmed", "Archive", "Cancelled", "Delete"];
/// `page_size` when the request names none, as documented.
const DEFAULT_PAGE_SIZE: u32 = 30;
/// Largest number of ids in one `io_ids` filter.
const MAX_IO_IDS: usize = 50;

/// Settings of the simulated tenant and its limits.
#[derive(Debug, Clone)]
pub struct JstSimConfig {
    pub app_key: String,
    pub app_secret: String,
    /// The access token valid at start; `getInitToken` and `refreshToken` replace it.
    pub access_token: String,
    /// The refresh token valid at start.
    pub refresh_token: String,
    /// `expires_in` of issued tokens, in seconds.
    pub token_expires_in_secs: i64,
    /// Replies to `refreshToken` with code 150, as the service does for third-party applications.
    pub refresh_forbidden: bool,
    pub calls_per_second: u32,
    pub calls_per_minute: u32,
    /// Largest accepted difference between a request's timestamp and the server clock, in seconds.
    pub timestamp_tolerance_secs: i64,
    pub max_page_size: u32,
    /// Longest accepted `modified_begin`..`modified_end` span.
    pub max_span: chrono::Duration,
}

impl Default for JstSimConfig {
    fn default() -> Self {
        Self {
            app_key: "sim-app-key".into(),
            app_secret: "sim-app-secret".into(),
            access_token: "sim-access-token".into(),
            refresh_token: "sim-refresh-token".into(),
            token_expires_in_secs: 30 * 86_400,
            refresh_forbidden: false,
            calls_per_second: 5,
            calls_per_minute: 100,
            timestamp_tolerance_secs: 600,
            max_page_size: 50,
            max_span: chrono::Duration::days(7),
        }
    }
}

/// Request counters since the simulator started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JstStats {
    /// Every request received, served or rejected.
    pub calls: usize,
    /// Requests rejected with code 199 or 200.
    pub throttled: usize,
    /// Rejected requests by code, throttling included.
    pub rejected: BTreeMap<i64, usize>,
    /// Requests served with code 0.
    pub pages_served: usize,
    /// Sheets sent in successful responses.
    pub sheets_served: usize,
    /// Successful `getInitToken` calls.
    pub token_inits: usize,
    /// Successful `refreshToken` calls.
    pub token_refreshes: usize,
    /// Rejected token requests by code.
    pub token_rejected: BTreeMap<i64, usize>,
    /// Sheets whose `modified` the drift knob moved.
    pub drifted: usize,
}

/// Mutable state shared by the server and the test.
struct Shared {
    config: JstSimConfig,
    sheets: Mutex<Vec<CountSheet>>,
    inner: Mutex<Inner>,
}

/// When a hidden sheet becomes visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// At this wall-clock instant.
    At(std::time::SystemTime),
    /// When the test calls [`JstSim::reveal_hidden`].
    OnReveal,
}

/// A page-drift plan: after `after_pages` more window pages are served, the first `count`
/// sheets of the page just served get `modified` moved later by `shift`.
#[derive(Debug, Clone, Copy)]
struct Drift {
    after_pages: usize,
    count: usize,
    shift: chrono::Duration,
}

#[derive(Default)]
struct Inner {
    stats: JstStats,
    /// Arrival times of the requests of the last minute, for the rate limits.
    arrivals: VecDeque<Instant>,
    /// Codes forced on the next requests, in order.
    forced: VecDeque<i64>,
    /// `biz` of every accepted request, parsed.
    accepted_biz: Vec<Value>,
    access_token: String,
    refresh_token: String,
    issued: u64,
    /// Pages still to serve before the access token expires.
    expire_after_pages: Option<usize>,
    drifts: Vec<Drift>,
    hidden: Vec<(CountSheet, Visibility)>,
    repeat_across_pages: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock leaves valid data behind.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running simulator; the server stops when the value is dropped or [`JstSim::stop`]ped.
pub struct JstSim {
    shared: Arc<Shared>,
    address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl JstSim {
    /// Starts the simulator on a free port of 127.0.0.1.
    pub async fn start(config: JstSimConfig, sheets: Vec<CountSheet>) -> anyhow::Result<JstSim> {
        let inner = Inner { access_token: config.access_token.clone(), refresh_token: config.refresh_token.clone(), ..Default::default() };
        let shared = Arc::new(Shared { config, sheets: Mutex::new(sheets), inner: Mutex::new(inner) });
        let app = Router::new()
            .route(COUNT_QUERY_PATH, post(count_query))
            .route(LEGACY_PATH, post(legacy_query))
            .route(INIT_TOKEN_PATH, post(init_token))
            .route(REFRESH_TOKEN_PATH, post(refresh_token))
            .with_state(shared.clone());

        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = signal.await;
            });
            if let Err(error) = server.await {
                tracing::warn!(error = %error, "jushuitan simulator stopped with an error");
            }
        });
        Ok(JstSim { shared, address, shutdown: Some(shutdown), task: Some(task) })
    }

    /// Returns the base URL to configure as `jushuitan.base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn config(&self) -> &JstSimConfig {
        &self.shared.config
    }

    pub fn stats(&self) -> JstStats {
        lock(&self.shared.inner).stats.clone()
    }

    /// Returns the `biz` of every accepted request, in arrival order.
    pub fn accepted_biz(&self) -> Vec<Value> {
        lock(&self.shared.inner).accepted_biz.clone()
    }

    /// Rejects the next `n` requests with code 199, whatever they contain.
    pub fn throttle_next(&self, n: usize) {
        self.fail_next(199, n);
    }

    /// Rejects the next `n` requests with `code`, whatever they contain.
    pub fn fail_next(&self, code: i64, n: usize) {
        lock(&self.shared.inner).forced.extend(std::iter::repeat_n(code, n));
    }

    /// Returns the access token the server accepts now.
    pub fn current_access_token(&self) -> String {
        lock(&self.shared.inner).access_token.clone()
    }

    /// Returns the refresh token the server accepts now.
    pub fn current_refresh_token(&self) -> String {
        lock(&self.shared.inner).refresh_token.clone()
    }

    /// Expires the current access token: queries with it get code 100. The refresh token stays
    /// valid.
    pub fn expire_access_token(&self) {
        expire(&mut lock(&self.shared.inner));
    }

    /// Expires the access token after `pages` more pages are served, in the middle of a run.
    pub fn expire_token_after_pages(&self, pages: usize) {
        lock(&self.shared.inner).expire_after_pages = Some(pages);
    }

    /// After `after_pages` more window pages are served, moves the `modified` of the first
    /// `count` sheets of the page just served later by `shift`, as an edit during paging does.
    /// The sheets after them move forward, so the next page starts past sheets never served.
    pub fn drift_after_pages(&self, after_pages: usize, count: usize, shift: chrono::Duration) {
        lock(&self.shared.inner).drifts.push(Drift { after_pages, count, shift });
    }

    /// Adds sheets that queries do not return until `visibility` says so, although their
    /// `modified` may lie in a range already read: the sheets of a replica that lags.
    pub fn add_hidden(&self, sheets: Vec<CountSheet>, visibility: Visibility) {
        lock(&self.shared.inner).hidden.extend(sheets.into_iter().map(|sheet| (sheet, visibility)));
    }

    /// Makes every sheet added with [`Visibility::OnReveal`] visible.
    pub fn reveal_hidden(&self) {
        let mut inner = lock(&self.shared.inner);
        let (revealed, kept): (Vec<_>, Vec<_>) = inner.hidden.drain(..).partition(|(_, visibility)| *visibility == Visibility::OnReveal);
        inner.hidden = kept;
        drop(inner);
        lock(&self.shared.sheets).extend(revealed.into_iter().map(|(sheet, _)| sheet));
    }

    /// Returns the number of sheets still hidden.
    pub fn hidden_count(&self) -> usize {
        lock(&self.shared.inner).hidden.len()
    }

    /// When on, every page after the first also repeats the last sheet of the page before.
    pub fn repeat_across_pages(&self, on: bool) {
        lock(&self.shared.inner).repeat_across_pages = on;
    }

    /// Returns a copy of the sheets the server contains now, visible ones only.
    pub fn sheets(&self) -> Vec<CountSheet> {
        lock(&self.shared.sheets).clone()
    }

    pub fn set_sheets(&self, sheets: Vec<CountSheet>) {
        *lock(&self.shared.sheets) = sheets;
    }

    /// Replaces the sheet with the same `io_id`, or adds it.
    pub fn upsert_sheet(&self, sheet: CountSheet) {
        let mut sheets = lock(&self.shared.sheets);
        match sheets.iter_mut().find(|existing| existing.io_id == sheet.io_id) {
            Some(existing) => *existing = sheet,
            None => sheets.push(sheet),
        }
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for JstSim {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A request the simulator rejects, with JuShuiTan's code and message.
struct Rejection {
    code: i64,
    msg: String,
}

fn reject(code: i64, msg: impl Into<String>) -> Rejection {
    Rejection { code, msg: msg.into() }
}

async fn count_query(State(shared): State<Arc<Shared>>, Form(form): Form<HashMap<String, String>>) -> impl IntoResponse {
    let body = match handle(&shared, &form) {
        Ok(body) => body,
        Err(rejection) => {
            count_rejection(&shared, &rejection);
            json!({ "code": rejection.code, "msg": rejection.msg, "data": null }).to_string()
        }
    };
    ([(CONTENT_TYPE, "application/json; charset=utf-8")], body)
}

fn count_rejection(shared: &Shared, rejection: &Rejection) {
    let mut inner = lock(&shared.inner);
    *inner.stats.rejected.entry(rejection.code).or_default() += 1;
    if rejection.code == 199 || rejection.code == 200 {
        inner.stats.throttled += 1;
    }
}

fn handle(shared: &Shared, form: &HashMap<String, String>) -> Result<String, Rejection> {
    admit(shared)?;
    authenticate(shared, form)?;
    let biz_text = form.get("biz").map(String::as_str).unwrap_or("{}");
    serve_biz(shared, biz_text, Envelope::Wrapped)
}

/// Parses and serves the business parameters of an authenticated request.
fn serve_biz(shared: &Shared, biz_text: &str, envelope: Envelope) -> Result<String, Rejection> {
    let biz: Value = serde_json::from_str(biz_text).map_err(|error| reject(140, format!("biz is not JSON: {error}")))?;
    let query = Query::parse(&shared.config, &biz)?;
    let body = serve_page(shared, &query, envelope);
    lock(&shared.inner).accepted_biz.push(biz);
    Ok(body)
}

/// The legacy gateway: credentials in the query string, the business JSON as the body, flat
/// responses with `issuccess`.
async fn legacy_query(
    State(shared): State<Arc<Shared>>,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
    body: String,
) -> impl IntoResponse {
    let result = admit(&shared).and_then(|()| authenticate_legacy(&shared, &params)).and_then(|()| {
        let biz_text = if body.trim().is_empty() { "{}" } else { body.as_str() };
        serve_biz(&shared, biz_text, Envelope::Flat)
    });
    let body = match result {
        Ok(body) => body,
        Err(rejection) => {
            count_rejection(&shared, &rejection);
            json!({ "code": rejection.code, "issuccess": false, "msg": rejection.msg }).to_string()
        }
    };
    ([(CONTENT_TYPE, "application/json; charset=utf-8")], body)
}

fn authenticate_legacy(shared: &Shared, params: &HashMap<String, String>) -> Result<(), Rejection> {
    // Current-platform fields on the legacy path are rejected, as the service does.
    if params.contains_key("app_key") || params.contains_key("access_token") {
        return Err(reject(140, "参数错误：旧版网关不接受 app_key/access_token"));
    }
    for field in ["method", "partnerid", "token", "ts", "sign"] {
        if params.get(field).is_none_or(|value| value.is_empty()) {
            return Err(reject(140, format!("缺少参数 {field}")));
        }
    }
    if params["method"] != "inventory.count.query" {
        return Err(reject(140, format!("method {} 不存在", params["method"])));
    }
    let config = &shared.config;
    let expected = sign_legacy(&params["method"], &params["partnerid"], &params["token"], &params["ts"], &config.app_secret);
    if params["partnerid"] != config.app_key || !signature_matches(&expected, &params["sign"]) {
        return Err(reject(120, "签名错误"));
    }
    check_timestamp(config, &params["ts"])?;
    if params["token"] != lock(&shared.inner).access_token {
        return Err(reject(100, "token 无效或已过期"));
    }
    Ok(())
}

fn check_timestamp(config: &JstSimConfig, text: &str) -> Result<(), Rejection> {
    let timestamp: i64 = text.parse().map_err(|_| reject(180, format!("时间戳 {text} 无效")))?;
    if (Utc::now().timestamp() - timestamp).abs() > config.timestamp_tolerance_secs {
        return Err(reject(180, format!("时间戳 {timestamp} 与服务器时间相差超过 {} 秒", config.timestamp_tolerance_secs)));
    }
    Ok(())
}

/// `getInitToken`: a merchant's own application obtains a token pair with any six-character code.
async fn init_token(State(shared): State<Arc<Shared>>, Form(form): Form<HashMap<String, String>>) -> impl IntoResponse {
    let result = check_token_request(&shared.config, &form, &["grant_type", "code"]).and_then(|()| {
        if form["grant_type"] != "authorization_code" {
            return Err(reject(140, format!("grant_type {} 无效，应为 authorization_code", form["grant_type"])));
        }
        if form["code"].chars().count() != 6 {
            return Err(reject(140, "code 必须为 6 位"));
        }
        let mut inner = lock(&shared.inner);
        inner.stats.token_inits += 1;
        Ok(issue_pair(&shared.config, &mut inner))
    });
    token_response(&shared, result)
}

/// `refreshToken`: issues a new pair and invalidates the old refresh token.
async fn refresh_token(State(shared): State<Arc<Shared>>, Form(form): Form<HashMap<String, String>>) -> impl IntoResponse {
    let result = check_token_request(&shared.config, &form, &["grant_type", "refresh_token", "scope"]).and_then(|()| {
        if form["grant_type"] != "refresh_token" {
            return Err(reject(140, format!("grant_type {} 无效，应为 refresh_token", form["grant_type"])));
        }
        if shared.config.refresh_forbidden {
            return Err(reject(150, "第三方应用不支持刷新令牌，请重新授权"));
        }
        let mut inner = lock(&shared.inner);
        if form["refresh_token"] != inner.refresh_token {
            return Err(reject(100, "refresh_token 无效或已使用"));
        }
        inner.stats.token_refreshes += 1;
        Ok(issue_pair(&shared.config, &mut inner))
    });
    token_response(&shared, result)
}

fn check_token_request(config: &JstSimConfig, form: &HashMap<String, String>, own: &[&str]) -> Result<(), Rejection> {
    for field in ["app_key", "timestamp", "charset", "sign"].iter().chain(own) {
        if form.get(*field).is_none_or(|value| value.is_empty()) {
            return Err(reject(140, format!("缺少参数 {field}")));
        }
    }
    let fields: Vec<(&str, &str)> = form.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
    if form["app_key"] != config.app_key || !signature_matches(&sign(&config.app_secret, &fields), &form["sign"]) {
        return Err(reject(10, "签名错误"));
    }
    check_timestamp(config, &form["timestamp"])
}

fn issue_pair(config: &JstSimConfig, inner: &mut Inner) -> Value {
    inner.issued += 1;
    inner.access_token = format!("sim-access-token-{}", inner.issued);
    inner.refresh_token = format!("sim-refresh-token-{}", inner.issued);
    json!({
        "access_token": inner.access_token,
        "expires_in": config.token_expires_in_secs,
        "refresh_token": inner.refresh_token,
        "scope": "all",
    })
}

fn token_response(shared: &Shared, result: Result<Value, Rejection>) -> impl IntoResponse + use<> {
    let body = match result {
        Ok(data) => json!({ "code": 0, "msg": "执行成功", "data": data }),
        Err(rejection) => {
            *lock(&shared.inner).stats.token_rejected.entry(rejection.code).or_default() += 1;
            json!({ "code": rejection.code, "msg": rejection.msg, "data": null })
        }
    };
    ([(CONTENT_TYPE, "application/json; charset=utf-8")], body.to_string())
}

/// Replaces the access token by an unknown one, so the client's token is rejected. The refresh token stays valid.
fn expire(inner: &mut Inner) {
    inner.issued += 1;
    inner.access_token = format!("sim-expired-{}", inner.issued);
}

/// Counts the call and applies forced codes and the rate limits.
fn admit(shared: &Shared) -> Result<(), Rejection> {
    let now = Instant::now();
    let mut inner = lock(&shared.inner);
    inner.stats.calls += 1;
    while inner.arrivals.front().is_some_and(|arrival| now.duration_since(*arrival) >= Duration::from_secs(60)) {
        inner.arrivals.pop_front();
    }
    // Every request counts against the limits, rejected ones too, as a gateway counts them.
    inner.arrivals.push_back(now);

    if let Some(code) = inner.forced.pop_front() {
        return Err(reject(code, forced_message(code)));
    }
    let last_second = inner.arrivals.iter().filter(|arrival| now.duration_since(**arrival) < Duration::from_secs(1)).count();
    if last_second > shared.config.calls_per_second as usize {
        return Err(reject(199, format!("调用频率过高：每秒最多 {} 次", shared.config.calls_per_second)));
    }
    if inner.arrivals.len() > shared.config.calls_per_minute as usize {
        return Err(reject(200, format!("调用频率过高：每分钟最多 {} 次", shared.config.calls_per_minute)));
    }
    Ok(())
}

fn forced_message(code: i64) -> &'static str {
    match code {
        10 => "签名错误",
        100 => "access_token 无效或已过期",
        150 => "系统内部错误",
        180 => "时间戳错误",
        199 | 200 => "调用频率过高",
        _ => "模拟错误",
    }
}

fn authenticate(shared: &Shared, form: &HashMap<String, String>) -> Result<(), Rejection> {
    let config = &shared.config;
    for field in ["app_key", "access_token", "timestamp", "sign"] {
        if form.get(field).is_none_or(|value| value.is_empty()) {
            return Err(reject(140, format!("缺少参数 {field}")));
        }
    }
    if form["app_key"] != config.app_key {
        return Err(reject(100, "app_key 无效"));
    }

    let fields: Vec<(&str, &str)> = form.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
    if !signature_matches(&sign(&config.app_secret, &fields), &form["sign"]) {
        return Err(reject(10, "签名错误"));
    }

    check_timestamp(config, &form["timestamp"])?;
    if form["access_token"] != lock(&shared.inner).access_token {
        return Err(reject(100, "access_token 无效或已过期"));
    }
    if form.get("version").is_some_and(|version| version != "2") {
        return Err(reject(140, "version 必须为 2"));
    }
    Ok(())
}

/// The validated business parameters.
struct Query {
    page_index: u32,
    page_size: u32,
    range: Option<(NaiveDateTime, NaiveDateTime)>,
    io_ids: Option<HashSet<i64>>,
    status: Option<String>,
}

impl Query {
    fn parse(config: &JstSimConfig, biz: &Value) -> Result<Query, Rejection> {
        let page_index = positive(biz, "page_index")?.unwrap_or(1);
        let page_size = positive(biz, "page_size")?.unwrap_or(DEFAULT_PAGE_SIZE);
        if page_size > config.max_page_size {
            return Err(reject(140, format!("page_size {page_size} 超过上限 {}", config.max_page_size)));
        }
        let range = parse_range(config, biz)?;
        let io_ids = parse_io_ids(biz)?;
        if range.is_none() && io_ids.is_none() {
            return Err(reject(140, "modified_begin/modified_end 与 io_ids 至少需要一个"));
        }
        let status = match biz.get("status") {
            None | Some(Value::Null) => None,
            Some(Value::String(status)) if STATUSES.contains(&status.as_str()) => Some(status.clone()),
            Some(other) => return Err(reject(140, format!("status {other} 无效"))),
        };
        Ok(Query { page_index, page_size, range, io_ids, status })
    }

    fn matches(&self, sheet: &CountSheet) -> bool {
        let in_range = match (self.range, sheet.modified) {
            (None, _) => true,
            (Some((begin, end)), Some(modified)) => begin <= modified && modified <= end,
            (Some(_), None) => false,
        };
        let in_ids = self.io_ids.as_ref().is_none_or(|ids| ids.contains(&sheet.io_id));
        let has_status = self.status.as_ref().is_none_or(|status| *status == sheet.status);
        in_range && in_ids && has_status
    }
}

fn positive(biz: &Value, key: &str) -> Result<Option<u32>, Rejection> {
    let number = match biz.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(number)) => number.as_u64(),
        Some(Value::String(text)) => text.trim().parse::<u64>().ok(),
        Some(_) => None,
    };
    match number.and_then(|value| u32::try_from(value).ok()).filter(|value| *value > 0) {
        Some(value) => Ok(Some(value)),
        None => Err(reject(140, format!("{key} {} 无效", biz[key]))),
    }
}

fn parse_range(config: &JstSimConfig, biz: &Value) -> Result<Option<(NaiveDateTime, NaiveDateTime)>, Rejection> {
    let read = |key: &str| -> Result<Option<NaiveDateTime>, Rejection> {
        match biz.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => NaiveDateTime::parse_from_str(text, WALL_CLOCK_FORMAT)
                .map(Some)
                .map_err(|_| reject(140, format!("{key} {text} 格式错误，应为 yyyy-MM-dd HH:mm:ss"))),
            Some(other) => Err(reject(140, format!("{key} {other} 格式错误"))),
        }
    };
    match (read("modified_begin")?, read("modified_end")?) {
        (None, None) => Ok(None),
        (Some(begin), Some(end)) if end < begin => Err(reject(140, "modified_end 早于 modified_begin")),
        (Some(begin), Some(end)) if end - begin > config.max_span => {
            Err(reject(140, format!("modified_begin 与 modified_end 相差不能超过 {} 天", config.max_span.num_days())))
        }
        (Some(begin), Some(end)) => Ok(Some((begin, end))),
        _ => Err(reject(140, "modified_begin 与 modified_end 必须同时提供")),
    }
}

fn parse_io_ids(biz: &Value) -> Result<Option<HashSet<i64>>, Rejection> {
    let text = match biz.get("io_ids") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) => text.clone(),
        Some(other) => return Err(reject(140, format!("io_ids {other} 应为逗号分隔的字符串"))),
    };
    let mut ids = HashSet::new();
    for part in text.split(',').map(str::trim).filter(|part| !part.is_empty()) {
        let id = part.parse::<i64>().map_err(|_| reject(140, format!("io_ids 中的 {part} 不是数字")))?;
        ids.insert(id);
    }
    if ids.len() > MAX_IO_IDS {
        return Err(reject(140, format!("io_ids 最多 {MAX_IO_IDS} 个，收到 {} 个", ids.len())));
    }
    Ok(Some(ids))
}

/// Shape of a success body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Envelope {
    /// `{code, msg, data: {…}}` of the current platform.
    Wrapped,
    /// The legacy gateway's flat body with `issuccess`.
    Flat,
}

/// Filters, orders and pages the sheets, renders the success body, then applies the knobs that
/// act after a page: token expiry and page drift.
fn serve_page(shared: &Shared, query: &Query, envelope: Envelope) -> String {
    release_due_hidden(shared);
    let mut sheets = lock(&shared.sheets);
    let mut selected: Vec<&CountSheet> = sheets.iter().filter(|sheet| query.matches(sheet)).collect();
    selected.sort_by_key(|sheet| (sheet.modified, sheet.io_id));

    let total = selected.len();
    let start = (query.page_index as usize - 1).saturating_mul(query.page_size as usize).min(total);
    let end = (start + query.page_size as usize).min(total);
    let repeat = lock(&shared.inner).repeat_across_pages && start > 0;
    let first = if repeat { start - 1 } else { start };
    let page = &selected[first..end];
    let body = wire::page_body(query.page_index, query.page_size, end < total, total, page, envelope == Envelope::Flat);
    let served_ids: Vec<i64> = selected[start..end].iter().map(|sheet| sheet.io_id).collect();

    let mut inner = lock(&shared.inner);
    inner.stats.pages_served += 1;
    inner.stats.sheets_served += page.len();
    if let Some(left) = inner.expire_after_pages.as_mut() {
        *left = left.saturating_sub(1);
        if *left == 0 {
            inner.expire_after_pages = None;
            expire(&mut inner);
        }
    }
    if query.range.is_some() {
        let shifted = apply_drift(&mut inner, &served_ids, &mut sheets);
        inner.stats.drifted += shifted;
    }
    body
}

/// Counts a window page against every drift plan and applies the plans that are due. Returns
/// the number of sheets moved.
fn apply_drift(inner: &mut Inner, served_ids: &[i64], sheets: &mut [CountSheet]) -> usize {
    let mut moved = 0;
    let mut due = Vec::new();
    inner.drifts.retain_mut(|drift| {
        drift.after_pages = drift.after_pages.saturating_sub(1);
        if drift.after_pages == 0 {
            due.push(*drift);
            return false;
        }
        true
    });
    for drift in due {
        for io_id in served_ids.iter().take(drift.count) {
            if let Some(sheet) = sheets.iter_mut().find(|sheet| sheet.io_id == *io_id) {
                sheet.modified = sheet.modified.map(|modified| modified + drift.shift);
                moved += 1;
            }
        }
    }
    moved
}

/// Moves hidden sheets whose visibility instant has passed into the served data.
fn release_due_hidden(shared: &Shared) {
    let now = std::time::SystemTime::now();
    let mut inner = lock(&shared.inner);
    if inner.hidden.is_empty() {
        return;
    }
    let (due, kept): (Vec<_>, Vec<_>) =
        inner.hidden.drain(..).partition(|(_, visibility)| matches!(visibility, Visibility::At(at) if *at <= now));
    inner.hidden = kept;
    drop(inner);
    lock(&shared.sheets).extend(due.into_iter().map(|(sheet, _)| sheet));
}

/// JuShuiTan's wire format, with the shape variations the real API shows.
///
/// Numbers are written from their decimal text through `RawValue`, so quantities reach the
/// client exactly. `RawValue` needs serde_json's `raw_value` feature, which the
/// `countsync-jushuitan` dependency enables.
mod wire {
    use chrono::{NaiveDate, NaiveDateTime};
    use countsync_core::sheet::{CountItem, CountSheet, SerialNumber, SheetBatch};
    use rust_decimal::Decimal;
    use serde::Serialize;
    use serde_json::value::RawValue;

    /// A number as JSON number or as numeric string.
    #[derive(Serialize)]
    #[serde(untagged)]
    enum Num {
        Number(Box<RawValue>),
        Text(String),
    }

    fn num(text: String, as_text: bool) -> Num {
        if as_text {
            return Num::Text(text);
        }
        match RawValue::from_string(text.clone()) {
            Ok(raw) => Num::Number(raw),
            Err(_) => Num::Text(text),
        }
    }

    fn int(value: Option<i64>, as_text: bool) -> Option<Num> {
        value.map(|value| num(value.to_string(), as_text))
    }

    fn decimal(value: Option<Decimal>, as_text: bool) -> Option<Num> {
        value.map(|value| num(value.to_string(), as_text))
    }

    #[derive(Serialize)]
    #[serde(untagged)]
    enum Labels {
        Text(String),
        List(Vec<String>),
    }

    #[derive(Serialize)]
    struct Sheet {
        io_id: Num,
        io_date: Option<String>,
        status: String,
        warehouse: Option<String>,
        wh_id: Option<Num>,
        wms_co_id: Option<Num>,
        #[serde(rename = "type")]
        kind: Option<String>,
        creator_name: Option<String>,
        remark: Option<String>,
        modified: Option<String>,
        f_status: Option<String>,
        lock_wh_id: Option<Num>,
        lock_wh_name: Option<String>,
        labels: Labels,
        items: Vec<Item>,
        #[serde(skip_serializing_if = "Option::is_none")]
        batchs: Option<Vec<Batch>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sns: Option<Vec<SerialNumber>>,
    }

    #[derive(Serialize)]
    struct Item {
        io_id: Num,
        ioi_id: Option<Num>,
        sku_id: String,
        i_id: Option<String>,
        name: Option<String>,
        properties_value: Option<String>,
        r_qty: Option<Num>,
        qty: Option<Num>,
        #[serde(skip_serializing_if = "Option::is_none")]
        batch_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        product_date: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        supplier_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        expiration_date: Option<String>,
    }

    #[derive(Serialize)]
    struct Batch {
        sku_id: String,
        batch_no: String,
        qty: Option<Num>,
        product_date: Option<String>,
        supplier_id: Option<String>,
        supplier_name: Option<String>,
        expiration_date: Option<String>,
    }

    /// Spelling of one sheet, chosen from `io_id` so every run sends the same text.
    struct Shape {
        io_id_text: bool,
        quantities_text: bool,
        warehouse_ids_text: bool,
        milliseconds: bool,
        labels_text: bool,
        omit_empty_lists: bool,
    }

    impl Shape {
        fn of(io_id: i64) -> Self {
            Shape {
                io_id_text: io_id.rem_euclid(3) == 0,
                quantities_text: io_id.rem_euclid(2) == 0,
                warehouse_ids_text: io_id.rem_euclid(5) == 0,
                milliseconds: io_id.rem_euclid(4) == 1,
                labels_text: io_id.rem_euclid(2) == 1,
                omit_empty_lists: io_id.rem_euclid(7) == 0,
            }
        }
    }

    fn time(value: Option<NaiveDateTime>, milliseconds: bool) -> Option<String> {
        let value = value?;
        let format = if milliseconds || value.and_utc().timestamp_subsec_nanos() != 0 {
            "%Y-%m-%d %H:%M:%S%.3f"
        } else {
            "%Y-%m-%d %H:%M:%S"
        };
        Some(value.format(format).to_string())
    }

    fn date(value: Option<NaiveDate>, with_time: bool) -> Option<String> {
        let format = if with_time { "%Y-%m-%d 00:00:00" } else { "%Y-%m-%d" };
        value.map(|value| value.format(format).to_string())
    }

    fn item(sheet: &CountSheet, index: usize, item: &CountItem, shape: &Shape) -> Item {
        Item {
            io_id: num(sheet.io_id.to_string(), shape.io_id_text),
            ioi_id: int(item.ioi_id, index % 2 == 1),
            sku_id: item.sku_id.clone(),
            i_id: item.i_id.clone(),
            name: item.name.clone(),
            properties_value: item.properties_value.clone(),
            r_qty: decimal(item.r_qty, shape.quantities_text),
            qty: decimal(item.qty, shape.quantities_text),
            batch_id: item.batch_id.clone(),
            product_date: date(item.product_date, index.is_multiple_of(2)),
            supplier_id: item.supplier_id.clone(),
            expiration_date: date(item.expiration_date, false),
        }
    }

    fn batch(batch: &SheetBatch, shape: &Shape) -> Batch {
        Batch {
            sku_id: batch.sku_id.clone(),
            batch_no: batch.batch_no.clone(),
            qty: decimal(batch.qty, !shape.quantities_text),
            product_date: date(batch.product_date, shape.milliseconds),
            supplier_id: batch.supplier_id.clone(),
            supplier_name: batch.supplier_name.clone(),
            expiration_date: date(batch.expiration_date, false),
        }
    }

    fn list<T>(values: Vec<T>, omit_empty: bool) -> Option<Vec<T>> {
        if values.is_empty() && omit_empty { None } else { Some(values) }
    }

    fn sheet(sheet: &CountSheet) -> Sheet {
        let shape = Shape::of(sheet.io_id);
        let labels = if shape.labels_text { Labels::Text(sheet.labels.join(",")) } else { Labels::List(sheet.labels.clone()) };
        Sheet {
            io_id: num(sheet.io_id.to_string(), shape.io_id_text),
            io_date: time(sheet.io_date, false),
            status: sheet.status.clone(),
            warehouse: sheet.warehouse.clone(),
            wh_id: int(sheet.wh_id, shape.warehouse_ids_text),
            wms_co_id: int(sheet.wms_co_id, shape.warehouse_ids_text),
            kind: sheet.kind.clone(),
            creator_name: sheet.creator_name.clone(),
            remark: sheet.remark.clone(),
            modified: time(sheet.modified, shape.milliseconds),
            f_status: sheet.f_status.clone(),
            lock_wh_id: int(sheet.lock_wh_id, false),
            lock_wh_name: sheet.lock_wh_name.clone(),
            labels,
            items: sheet.items.iter().enumerate().map(|(index, line)| item(sheet, index, line, &shape)).collect(),
            batchs: list(sheet.batchs.iter().map(|line| batch(line, &shape)).collect(), shape.omit_empty_lists),
            sns: list(sheet.sns.clone(), shape.omit_empty_lists),
        }
    }

    #[derive(Serialize)]
    struct Data {
        page_index: u32,
        page_size: u32,
        has_next: bool,
        /// Sent on odd pages only: the real API often leaves the counts out.
        #[serde(skip_serializing_if = "Option::is_none")]
        data_count: Option<usize>,
        #[serde(skip_serializing_if = "Option::is_none")]
        page_count: Option<usize>,
        datas: Vec<Sheet>,
    }

    #[derive(Serialize)]
    struct Body {
        code: i64,
        msg: &'static str,
        data: Data,
    }

    /// The legacy gateway's flat body.
    #[derive(Serialize)]
    struct FlatBody {
        code: i64,
        issuccess: bool,
        msg: Option<&'static str>,
        #[serde(flatten)]
        data: Data,
    }

    /// Renders a successful response, flat for the legacy gateway.
    pub(super) fn page_body(page_index: u32, page_size: u32, has_next: bool, total: usize, sheets: &[&CountSheet], flat: bool) -> String {
        let with_counts = page_index % 2 == 1;
        let data = Data {
            page_index,
            page_size,
            has_next,
            data_count: with_counts.then_some(total),
            page_count: with_counts.then_some(total.div_ceil(page_size as usize)),
            datas: sheets.iter().map(|one| sheet(one)).collect(),
        };
        let text = if flat {
            serde_json::to_string(&FlatBody { code: 0, issuccess: true, msg: None, data })
        } else {
            serde_json::to_string(&Body { code: 0, msg: "执行成功", data })
        };
        text.unwrap_or_else(|error| {
            serde_json::json!({ "code": 150, "msg": format!("模拟器序列化失败: {error}"), "data": null }).to_string()
        })
    }
}
