//! The Kingdee WebAPI client: authentication, BatchSave and ExecuteBillQuery.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use backon::{ExponentialBuilder, Retryable};
use countsync_core::mapping::AfterSave;
use countsync_core::mapping::lookup::{CountBillLookup, MaterialLookup};
use countsync_core::ports::{Bill, BillRef, BillSummary, BillTarget, SaveOutcome, TargetError};
use reqwest::header::HeaderValue;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use crate::config::{AuthMode, KingdeeConfig};
use crate::error::KingdeeError;
use crate::outcome::map_save_status;
use crate::sign::{self, SESSION_ID, SignInput};
use crate::wire::{self, Response};

pub const VALIDATE_USER: &str = "Kingdee.BOS.WebApi.ServicesStub.AuthService.ValidateUser";
pub const LOGIN_BY_APP_SECRET: &str = "Kingdee.BOS.WebApi.ServicesStub.AuthService.LoginByAppSecret";
pub const LOGIN_BY_SIGN: &str = "Kingdee.BOS.WebApi.ServicesStub.AuthService.LoginBySign";
pub const QUERY_BUSINESS_INFO: &str = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.QueryBusinessInfo";
pub const BATCH_SAVE: &str = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.BatchSave";
pub const SAVE: &str = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.Save";
pub const EXECUTE_BILL_QUERY: &str = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.ExecuteBillQuery";

/// MsgCode of a lost or missing session, also returned for wrong authorization settings.
pub const MSG_CODE_SESSION_LOST: i64 = 1;

/// Maximum connect time of any call.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Extra attempts of a lookup whose request failed in transit (lookups are read-only).
const LOOKUP_RETRIES: usize = 2;
/// Shortest save timeout worth sending a request with.
const MIN_SAVE_TIMEOUT: Duration = Duration::from_secs(1);
/// Rows requested per ExecuteBillQuery page; the server may return fewer without saying so.
pub const QUERY_PAGE_LIMIT: usize = 10_000;
/// Pages [`KingdeeClient::query_all`] reads at most, a guard against a server that ignores
/// `StartRow`.
const MAX_QUERY_PAGES: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    Login,
    Write,
    Lookup,
}

/// Session state: the session id of the last login and a counter that changes on every reset,
/// so that concurrent calls that meet the same lost session log in only once.
#[derive(Debug, Default)]
struct Session {
    id: Option<String>,
    generation: u64,
}

/// Cookies the server set, replayed on every request and cleared when the session is lost.
#[derive(Debug, Default)]
struct SessionCookies {
    cookies: Mutex<BTreeMap<String, String>>,
}

impl SessionCookies {
    fn get(&self, name: &str) -> Option<String> {
        self.lock().get(name).cloned()
    }

    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        // A poisoned map holds only complete inserts, so it is still usable.
        self.cookies.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl reqwest::cookie::CookieStore for SessionCookies {
    fn set_cookies(&self, cookie_headers: &mut dyn Iterator<Item = &HeaderValue>, _url: &reqwest::Url) {
        let mut cookies = self.lock();
        for header in cookie_headers {
            let Ok(text) = header.to_str() else { continue };
            let pair = text.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else { continue };
            let (name, value) = (name.trim(), value.trim());
            if name.is_empty() {
                continue;
            }
            if value.is_empty() {
                cookies.remove(name);
            } else {
                cookies.insert(name.to_string(), value.to_string());
            }
        }
    }

    fn cookies(&self, _url: &reqwest::Url) -> Option<HeaderValue> {
        let cookies = self.lock();
        if cookies.is_empty() {
            return None;
        }
        let text = cookies.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("; ");
        HeaderValue::from_str(&text).ok()
    }
}

/// A response body as received and as classified.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) response: Response,
    pub(crate) body: String,
}

/// Kingdee WebAPI client; one instance serves a whole (warm) Lambda and reuses its session.
pub struct KingdeeClient {
    config: KingdeeConfig,
    http: reqwest::Client,
    cookies: Arc<SessionCookies>,
    session: tokio::sync::Mutex<Session>,
    /// Deadline that caps the timeout of saves made through [`BillTarget::save_bills`].
    save_deadline: Mutex<Option<DateTime<Utc>>>,
}

impl std::fmt::Debug for KingdeeClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("KingdeeClient").field("server_url", &self.config.server_url).field("auth", &self.config.auth).finish()
    }
}

impl KingdeeClient {
    /// Validates the settings and builds the HTTP client (rustls, certificate checks on).
    pub fn new(config: KingdeeConfig) -> Result<Self, KingdeeError> {
        config.validate()?;
        let cookies = Arc::new(SessionCookies::default());
        let http = reqwest::Client::builder()
            .cookie_provider(Arc::clone(&cookies))
            .connect_timeout(CONNECT_TIMEOUT.min(Duration::from_secs(config.lookup_timeout_secs)))
            .user_agent(concat!("countsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(KingdeeError::Build)?;
        Ok(Self { config, http, cookies, session: tokio::sync::Mutex::new(Session::default()), save_deadline: Mutex::new(None) })
    }

    /// Sets the deadline that caps saves made through [`BillTarget::save_bills`], e.g. the end of
    /// the current Lambda invocation; `None` leaves `request_timeout_secs` alone. A Lambda
    /// handles one invocation at a time, so one stored deadline serves all saves of it.
    pub fn set_save_deadline(&self, deadline: Option<DateTime<Utc>>) {
        *self.save_deadline.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = deadline;
    }

    fn stored_save_deadline(&self) -> Option<DateTime<Utc>> {
        *self.save_deadline.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn config(&self) -> &KingdeeConfig {
        &self.config
    }

    /// Saves bills with one BatchSave call and returns one outcome per bill in request order.
    /// The timeout is capped by the deadline set with [`KingdeeClient::set_save_deadline`].
    pub async fn batch_save(&self, bills: &[Bill]) -> Result<Vec<SaveOutcome>, KingdeeError> {
        self.save_with_deadline(bills, self.stored_save_deadline()).await
    }

    /// Saves bills like [`KingdeeClient::batch_save`], with a request timeout that ends
    /// `lookup_timeout_secs` before `deadline`, so that the caller still has time to look the
    /// bills up when the save times out. Fails with [`KingdeeError::OutOfTime`], without
    /// sending, when less than one second would be left.
    pub async fn save_bills_until(&self, bills: &[Bill], deadline: DateTime<Utc>) -> Result<Vec<SaveOutcome>, KingdeeError> {
        self.save_with_deadline(bills, Some(deadline)).await
    }

    async fn save_with_deadline(&self, bills: &[Bill], deadline: Option<DateTime<Utc>>) -> Result<Vec<SaveOutcome>, KingdeeError> {
        let Some(first) = bills.first() else { return Ok(Vec::new()) };
        if let Some(other) = bills.iter().find(|bill| bill.form_id != first.form_id) {
            return Err(KingdeeError::InvalidRequest(format!(
                "bills of one BatchSave must share a form id, but {} is {} and {} is {}",
                first.bill_no, first.form_id, other.bill_no, other.form_id
            )));
        }
        let updates = bills.iter().filter(|bill| bill.updates_existing()).count();
        if updates != 0 && updates != bills.len() {
            return Err(KingdeeError::InvalidRequest(format!(
                "a BatchSave either creates bills or writes into existing ones, but {updates} of {} bills carry an FID",
                bills.len()
            )));
        }
        let body = batch_save_body(bills);

        // A whole-call MsgCode 13 or 14 saved nothing, so the same request may be sent again.
        (|| self.batch_save_once(bills, &body, deadline))
            .retry(self.busy_backoff())
            .when(|error| error.is_busy() && self.save_timeout(deadline).is_ok())
            .notify(|error, delay| warn!(first_bill_no = %first.bill_no, error = %error, ?delay, "kingdee is busy; retrying the batch save"))
            .await
    }

    async fn batch_save_once(&self, bills: &[Bill], body: &Value, deadline: Option<DateTime<Utc>>) -> Result<Vec<SaveOutcome>, KingdeeError> {
        let timeout = self.save_timeout(deadline)?;
        let reply = self.call(BATCH_SAVE, body, CallKind::Write, timeout).await?;
        match reply.response {
            Response::Status(status) => map_save_status(BATCH_SAVE, bills, &status),
            Response::ServerError(message) => Err(KingdeeError::Server { service: BATCH_SAVE.into(), message }),
            Response::MissingStatus => Err(unreadable(BATCH_SAVE, "ResponseStatus is null")),
            Response::Rows(_) | Response::Login(_) => Err(unreadable(BATCH_SAVE, "the body is not a save result")),
            Response::Unrecognized(excerpt) => Err(unreadable(BATCH_SAVE, &excerpt)),
        }
    }

    /// Returns the save timeout: `request_timeout_secs`, cut so that `lookup_timeout_secs`
    /// remain before the deadline.
    fn save_timeout(&self, deadline: Option<DateTime<Utc>>) -> Result<Duration, KingdeeError> {
        let configured = Duration::from_secs(self.config.request_timeout_secs);
        let Some(deadline) = deadline else { return Ok(configured) };
        let reserve = chrono::Duration::seconds(self.config.lookup_timeout_secs as i64);
        let remaining = deadline - Utc::now() - reserve;
        match remaining.to_std() {
            Ok(left) if left >= MIN_SAVE_TIMEOUT => Ok(configured.min(left)),
            _ => Err(KingdeeError::OutOfTime { service: BATCH_SAVE.into(), remaining_ms: remaining.num_milliseconds() }),
        }
    }

    fn busy_backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.config.busy_backoff_ms))
            .with_max_delay(Duration::from_millis(self.config.busy_backoff_ms.saturating_mul(8)))
            .with_max_times(self.config.busy_retries)
            .with_jitter()
    }

    /// Looks a bill up by number; `Ok(None)` only when the query ran and returned no row.
    pub async fn find_by_number(&self, form_id: &str, bill_no: &str) -> Result<Option<BillRef>, KingdeeError> {
        if form_id.trim().is_empty() || bill_no.trim().is_empty() {
            return Err(KingdeeError::InvalidRequest(format!(
                "form id {form_id:?} and bill number {bill_no:?} must both be non-empty"
            )));
        }
        let rows = self.execute_bill_query(&find_bill_body(form_id, bill_no)).await?;
        bill_from_rows(bill_no, &rows)
    }

    /// Reads every row of a query, page by page. Kingdee caps a page at 2,000 or 10,000 rows
    /// (by version) without saying so, so the pager advances `StartRow` by the rows received and
    /// stops only on an empty page. `order` must give a stable order, e.g. `"FID ASC"`.
    pub async fn query_all(&self, form_id: &str, field_keys: &str, filter: &str, order: &str) -> Result<Vec<Vec<Value>>, KingdeeError> {
        if form_id.trim().is_empty() || field_keys.trim().is_empty() {
            return Err(KingdeeError::InvalidRequest(format!("form id {form_id:?} and field keys {field_keys:?} must both be non-empty")));
        }
        if order.trim().is_empty() {
            return Err(KingdeeError::InvalidRequest(format!(
                "query of {form_id} needs a stable OrderString such as \"FID ASC\", because pages are read by position"
            )));
        }
        let mut rows: Vec<Vec<Value>> = Vec::new();
        for page_number in 0..MAX_QUERY_PAGES {
            let body = query_body(form_id, field_keys, filter, order, rows.len(), QUERY_PAGE_LIMIT);
            let page = self.execute_bill_query(&body).await?;
            if page.is_empty() {
                debug!(form_id, rows = rows.len(), pages = page_number, "kingdee query read completely");
                return Ok(rows);
            }
            if page_number > 0 && rows.first() == page.first() {
                return Err(unreadable(EXECUTE_BILL_QUERY, "the server returned the first page again, so it ignores StartRow"));
            }
            rows.extend(page);
        }
        Err(unreadable(EXECUTE_BILL_QUERY, &format!("the query returned rows for more than {MAX_QUERY_PAGES} pages")))
    }

    /// Sends one ExecuteBillQuery and returns its rows. Transport failures are retried (a query
    /// is read-only), and so are MsgCode 13 and 14.
    pub async fn execute_bill_query(&self, body: &Value) -> Result<Vec<Vec<Value>>, KingdeeError> {
        let timeout = Duration::from_secs(self.config.lookup_timeout_secs);
        let once = || async {
            let reply = (|| self.call(EXECUTE_BILL_QUERY, body, CallKind::Lookup, timeout))
                .retry(ExponentialBuilder::default().with_min_delay(Duration::from_millis(200)).with_max_times(LOOKUP_RETRIES).with_jitter())
                .when(|error| matches!(error, KingdeeError::Connect { .. } | KingdeeError::Transport { .. }))
                .notify(|error, delay| debug!(error = %error, ?delay, "retrying kingdee query"))
                .await?;
            rows_from(reply.response)
        };
        once.retry(self.busy_backoff())
            .when(KingdeeError::is_busy)
            .notify(|error, delay| warn!(error = %error, ?delay, "kingdee is busy; retrying the query"))
            .await
    }

    /// Calls QueryBusinessInfo and returns the form's metadata (`Result.NeedReturnData`).
    pub async fn query_business_info(&self, form_id: &str) -> Result<Value, KingdeeError> {
        let body = json!({ "data": { "FormId": form_id } });
        let timeout = Duration::from_secs(self.config.lookup_timeout_secs);
        let reply = self.call(QUERY_BUSINESS_INFO, &body, CallKind::Lookup, timeout).await?;
        match reply.response {
            Response::Status(status) if status.is_success => {}
            Response::Status(status) => return Err(rejected(QUERY_BUSINESS_INFO, &status)),
            Response::ServerError(message) => return Err(KingdeeError::Server { service: QUERY_BUSINESS_INFO.into(), message }),
            Response::Unrecognized(excerpt) => return Err(unreadable(QUERY_BUSINESS_INFO, &excerpt)),
            _ => return Err(unreadable(QUERY_BUSINESS_INFO, "the body is not a metadata result")),
        }
        let parsed: Value = serde_json::from_str(reply.body.trim_start_matches('\u{feff}'))
            .map_err(|_| unreadable(QUERY_BUSINESS_INFO, &wire::excerpt(&reply.body)))?;
        match parsed.pointer("/Result/NeedReturnData") {
            Some(data) if !data.is_null() => Ok(data.clone()),
            _ => Err(unreadable(QUERY_BUSINESS_INFO, "Result.NeedReturnData is missing")),
        }
    }

    /// Sends one call with session handling: a lazy login first, and on MsgCode 1 one reset.
    /// A lookup is re-sent after the reset; a write is not, because it may have run.
    pub(crate) async fn call(&self, service: &str, body: &Value, kind: CallKind, timeout: Duration) -> Result<Reply, KingdeeError> {
        let mut was_reset = false;
        loop {
            let (generation, fresh_login) = self.ensure_session().await?;
            let reply = self.post(service, body, kind, timeout).await?;
            if !is_session_lost(&reply.response) {
                return Ok(reply);
            }

            let signed_without_session = self.config.auth == AuthMode::SignedHeaders && self.cookies.is_empty();
            if fresh_login || was_reset || signed_without_session {
                warn!(service, "kingdee rejected fresh credentials; check the configuration");
                return Err(KingdeeError::Misconfigured { service: service.to_string() });
            }
            warn!(service, "kingdee session lost; resetting it");
            self.reset_session(generation).await;
            was_reset = true;
            if kind == CallKind::Write {
                return Err(KingdeeError::SessionLostDuringSave { service: service.to_string() });
            }
        }
    }

    /// Logs in when a login mode has no session. Returns the session generation and whether
    /// this call logged in.
    async fn ensure_session(&self) -> Result<(u64, bool), KingdeeError> {
        let mut session = self.session.lock().await;
        if !self.config.auth.uses_login() || session.id.is_some() {
            return Ok((session.generation, false));
        }
        let id = self.login().await?;
        session.id = Some(id);
        session.generation += 1;
        Ok((session.generation, true))
    }

    async fn reset_session(&self, seen_generation: u64) {
        let mut session = self.session.lock().await;
        if session.generation != seen_generation {
            // Another call has already reset or renewed the session.
            return;
        }
        session.id = None;
        session.generation += 1;
        self.cookies.clear();
    }

    /// Logs in with the configured mode and returns the session id.
    async fn login(&self) -> Result<String, KingdeeError> {
        let (service, body, keys) = self.login_request()?;
        let timeout = Duration::from_secs(self.config.lookup_timeout_secs);
        let login = match self.post(service, &body, CallKind::Login, timeout).await?.response {
            Response::Login(login) => login,
            Response::ServerError(message) => return Err(KingdeeError::Server { service: service.into(), message }),
            Response::Unrecognized(excerpt) => return Err(unreadable(service, &excerpt)),
            _ => return Err(unreadable(service, "the body is not a login result")),
        };
        if !login.is_success() {
            warn!(service, acct_id = %self.config.acct_id, username = %self.config.username, result_type = ?login.login_result_type, "kingdee login failed");
            return Err(KingdeeError::Login { result_type: login.login_result_type, message: login.message.unwrap_or_default(), keys });
        }
        let Some(id) = self.cookies.get(SESSION_ID).or(login.session_id) else {
            return Err(unreadable(service, "the login succeeded but returned no session id"));
        };
        info!(service, acct_id = %self.config.acct_id, username = %self.config.username, "logged in to kingdee");
        Ok(id)
    }

    /// Builds the login call of the configured mode: service, body and the keys it uses.
    fn login_request(&self) -> Result<(&'static str, Value, &'static str), KingdeeError> {
        let config = &self.config;
        let (acct_id, username, lcid) = (&config.acct_id, &config.username, config.lcid);
        match config.auth {
            AuthMode::Password => Ok((
                VALIDATE_USER,
                json!({ "acctID": acct_id, "username": username, "password": config.password.expose_secret(), "lcid": lcid }),
                "kingdee.acct_id, kingdee.username and kingdee.password",
            )),
            AuthMode::AppSecret => Ok((
                LOGIN_BY_APP_SECRET,
                json!({ "parameters": [acct_id, username, config.app_id, config.app_secret.expose_secret(), lcid] }),
                "kingdee.acct_id, kingdee.username, kingdee.app_id and kingdee.app_secret (第三方系统登录授权)",
            )),
            AuthMode::SignedLogin => {
                let timestamp = Utc::now().timestamp();
                let sign = sign::login_by_sign(acct_id, username, &config.app_id, config.app_secret.expose_secret(), timestamp);
                Ok((
                    LOGIN_BY_SIGN,
                    json!({ "parameters": [acct_id, username, config.app_id, timestamp, sign, lcid] }),
                    "kingdee.acct_id, kingdee.username, kingdee.app_id, kingdee.app_secret and the host clock",
                ))
            }
            AuthMode::SignedHeaders => Err(KingdeeError::InvalidRequest("signed_headers mode has no login call".into())),
        }
    }

    async fn post(&self, service: &str, body: &Value, kind: CallKind, timeout: Duration) -> Result<Reply, KingdeeError> {
        let url = self.config.service_url(service);
        let mut request = self.http.post(&url).timeout(timeout).json(body);

        if self.config.auth == AuthMode::SignedHeaders {
            for (name, value) in self.signed_headers(&url)? {
                request = request.header(name, value);
            }
        }
        if kind != CallKind::Login {
            if let Some(session_id) = self.session_id().await {
                request = request.header(SESSION_ID, session_id);
            }
        }

        let response = request.send().await.map_err(|source| transport_error(service, source))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|source| KingdeeError::Transport { service: service.to_string(), source })?;
        // The official SDK accepts 200 and 206 only.
        if status != reqwest::StatusCode::OK && status != reqwest::StatusCode::PARTIAL_CONTENT {
            return Err(KingdeeError::Http { service: service.to_string(), status: status.as_u16(), excerpt: wire::excerpt(&text) });
        }
        Ok(Reply { response: wire::parse(&text), body: text })
    }

    fn signed_headers(&self, url: &str) -> Result<Vec<(&'static str, String)>, KingdeeError> {
        let input = SignInput {
            acct_id: &self.config.acct_id,
            username: &self.config.username,
            lcid: self.config.lcid,
            org_num: self.config.org_num,
            app_id: &self.config.app_id,
            app_secret: self.config.app_secret.expose_secret(),
        };
        sign::signed_headers(&input, url, Utc::now().timestamp())
            .map_err(|error| KingdeeError::InvalidRequest(error.to_string()))
    }

    async fn session_id(&self) -> Option<String> {
        if let Some(id) = self.cookies.get(SESSION_ID) {
            return Some(id);
        }
        self.session.lock().await.id.clone()
    }
}

#[async_trait]
impl BillTarget for KingdeeClient {
    async fn save_bills(&self, bills: &[Bill]) -> Result<Vec<SaveOutcome>, TargetError> {
        self.batch_save(bills).await.map_err(|error| {
            warn!(bills = bills.len(), first_bill_no = bills.first().map(|bill| bill.bill_no.as_str()), error = %error, "kingdee batch save failed");
            error.into_target_error(true)
        })
    }

    async fn find_bill(&self, form_id: &str, bill_no: &str) -> Result<Option<BillRef>, TargetError> {
        self.find_by_number(form_id, bill_no).await.map_err(|error| {
            warn!(form_id, bill_no, error = %error, "kingdee lookup failed");
            error.into_target_error(false)
        })
    }

    async fn fetch_bill_summary(&self, form_id: &str, bill_no: &str) -> Result<Option<BillSummary>, TargetError> {
        self.bill_summary(form_id, bill_no).await.map_err(|error| {
            warn!(form_id, bill_no, error = %error, "kingdee lookup of the bill's rows failed");
            error.into_target_error(false)
        })
    }

    async fn after_save(&self, form_id: &str, numbers: &[String], action: AfterSave) -> Result<(), TargetError> {
        // The inherent method of the same name sends Submit and Audit and treats a repeat as done.
        KingdeeClient::after_save(self, form_id, numbers, action).await.map_err(|error| {
            warn!(form_id, bills = numbers.len(), ?action, error = %error, "kingdee after-save operation failed");
            error.into_target_error(true)
        })
    }

    fn material_lookup(&self) -> Option<&dyn MaterialLookup> {
        Some(self)
    }

    fn count_bill_lookup(&self) -> Option<&dyn CountBillLookup> {
        Some(self)
    }
}

/// Builds the BatchSave body. `BatchCount` 1 keeps the server from saving bills in parallel,
/// so bill numbers are checked one bill at a time.
///
/// Models that carry a non-zero `FID` write into existing bills (the 盘点方案 write-back): the
/// body then sets `IsDeleteEntry: false`, so rows not sent stay, and `NeedUpDateFields` to the
/// keys the models send, so no other field is touched.
pub fn batch_save_body(bills: &[Bill]) -> Value {
    let models: Vec<Value> = bills.iter().map(|bill| bill.model.clone()).collect();
    let mut data = json!({
        "Model": models,
        "BatchCount": 1,
        "IsVerifyBaseDataField": true,
        "ValidateRepeatJson": true,
        "IsDeleteEntry": true,
        "NeedReturnFields": ["FID", "FBillNo"],
    });
    if bills.iter().any(Bill::updates_existing) {
        data["IsDeleteEntry"] = json!(false);
        data["NeedUpDateFields"] = json!(crate::operations::update_fields(bills));
    }
    json!({
        "formid": bills.first().map(|bill| bill.form_id.as_str()).unwrap_or_default(),
        "data": data,
    })
}

/// Builds one ExecuteBillQuery page.
pub fn query_body(form_id: &str, field_keys: &str, filter: &str, order: &str, start_row: usize, limit: usize) -> Value {
    json!({
        "data": {
            "FormId": form_id,
            "FieldKeys": field_keys,
            "FilterString": filter,
            "OrderString": order,
            "TopRowCount": 0,
            "StartRow": start_row,
            "Limit": limit,
        },
    })
}

/// Quotes a text as a Kingdee filter literal, doubling single quotes.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Builds the ExecuteBillQuery body that looks one bill up by number.
pub fn find_bill_body(form_id: &str, bill_no: &str) -> Value {
    json!({
        "data": {
            "FormId": form_id,
            "FieldKeys": "FID,FBillNo",
            "FilterString": format!("FBillNo={}", quote_literal(bill_no)),
            "TopRowCount": 0,
            "StartRow": 0,
            "Limit": 2,
        },
    })
}

fn rows_from(response: Response) -> Result<Vec<Vec<Value>>, KingdeeError> {
    match response {
        Response::Rows(rows) => Ok(rows),
        Response::Status(status) => Err(rejected(EXECUTE_BILL_QUERY, &status)),
        Response::ServerError(message) => Err(KingdeeError::Server { service: EXECUTE_BILL_QUERY.into(), message }),
        Response::MissingStatus => Err(unreadable(EXECUTE_BILL_QUERY, "ResponseStatus is null")),
        Response::Login(_) => Err(unreadable(EXECUTE_BILL_QUERY, "the body is a login result")),
        Response::Unrecognized(excerpt) => Err(unreadable(EXECUTE_BILL_QUERY, &excerpt)),
    }
}

pub(crate) fn rejected(service: &str, status: &crate::wire::ResponseStatus) -> KingdeeError {
    KingdeeError::Rejected {
        service: service.to_string(),
        msg_code: status.msg_code,
        error_code: status.error_code,
        message: crate::outcome::join_messages(&status.errors),
    }
}

fn bill_from_rows(bill_no: &str, rows: &[Vec<Value>]) -> Result<Option<BillRef>, KingdeeError> {
    if rows.is_empty() {
        return Ok(None);
    }
    if rows.len() > 1 {
        warn!(bill_no, rows = rows.len(), "kingdee returned several bills for one number");
    }
    for row in rows {
        let (Some(id), Some(number)) = (row.first().and_then(cell_text), row.get(1).and_then(cell_text)) else {
            return Err(unreadable(EXECUTE_BILL_QUERY, &format!("row {row:?} is not [FID, FBillNo]")));
        };
        if number == bill_no {
            return Ok(Some(BillRef { id, number }));
        }
    }
    // The rows do not match the filter, so the server did not apply it, and the response proves nothing.
    Err(unreadable(EXECUTE_BILL_QUERY, &format!("no returned row has FBillNo {bill_no}")))
}

fn cell_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn is_session_lost(response: &Response) -> bool {
    matches!(response, Response::Status(status) if !status.is_success && status.msg_code == Some(MSG_CODE_SESSION_LOST))
}

fn transport_error(service: &str, source: reqwest::Error) -> KingdeeError {
    if source.is_connect() {
        KingdeeError::Connect { service: service.to_string(), source }
    } else {
        KingdeeError::Transport { service: service.to_string(), source }
    }
}

pub(crate) fn unreadable(service: &str, excerpt: &str) -> KingdeeError {
    KingdeeError::Unreadable { service: service.to_string(), excerpt: excerpt.to_string() }
}
