//! Kingdee K3Cloud WebAPI simulator for `STK_StockCountInput` bills, listening on 127.0.0.1.
//!
//! It authenticates the way the official Python SDK expects (per-request signed headers, checked
//! exactly as the SDK computes them, or a ValidateUser session as cookie or header), validates
//! each bill of a BatchSave on its own (per-`DIndex` partial success), enforces bill-number
//! uniqueness and `ValidateRepeatJson`, and returns ExecuteBillQuery rows, or with errors in
//! the double-wrapped shape the real server uses, all with HTTP 200.
//!
//! It also answers LoginByAppSecret and LoginBySign, QueryBusinessInfo for
//! `STK_StockCountInput`, and ExecuteBillQuery on the base-data forms `BD_MATERIAL`, `BD_STOCK`,
//! `ORG_Organizations`, `BOS_BillType` and `BD_StockStatus` from the seeded sets.
//!
//! Fault knobs ([`KingdeeSim::fail_next_saves_with_500_after_commit`],
//! [`KingdeeSim::reject_next_saves_with_lock`], [`KingdeeSim::reject_next_calls_with_call_limit`],
//! [`KingdeeSim::commit_next_saves_late`], [`KingdeeSim::hide_bills_from_queries`],
//! [`KingdeeSim::expire_sessions`]) act on shared state while the server runs;
//! [`FaultPlan`] injects faults at seeded random rates instead.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use countsync_kingdee::sign;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const VALIDATE_USER: &str = "Kingdee.BOS.WebApi.ServicesStub.AuthService.ValidateUser";
const LOGIN_BY_APP_SECRET: &str = "Kingdee.BOS.WebApi.ServicesStub.AuthService.LoginByAppSecret";
const LOGIN_BY_SIGN: &str = "Kingdee.BOS.WebApi.ServicesStub.AuthService.LoginBySign";
const QUERY_BUSINESS_INFO: &str = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.QueryBusinessInfo";
const BATCH_SAVE: &str = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.BatchSave";
const SAVE: &str = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.Save";
const EXECUTE_BILL_QUERY: &str = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.ExecuteBillQuery";
const SUBMIT: &str = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.Submit";
const AUDIT: &str = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.Audit";
const SERVICE_SUFFIX: &str = ".common.kdsvc";

/// Rows ExecuteBillQuery returns at most per call, without saying so (older Kingdee versions).
pub const QUERY_ROW_CAP: usize = 2000;
const SESSION_LOST_MESSAGE: &str = "会话信息已丢失，请重新登录";

/// Simulator settings: the credentials it accepts and the base data it stores.
#[derive(Debug, Clone)]
pub struct KingdeeSimConfig {
    pub acct_id: String,
    pub username: String,
    pub password: String,
    pub app_id: String,
    pub app_secret: String,
    pub lcid: u32,
    /// Known material numbers (`FMaterialId.FNumber`).
    pub materials: HashSet<String>,
    /// Known stock numbers (`FStockId.FNumber`).
    pub stocks: HashSet<String>,
    /// Known stock organization numbers (`FStockOrgId.FNumber`).
    pub orgs: HashSet<String>,
    pub bill_types: HashSet<String>,
    pub stock_statuses: HashSet<String>,
    /// Calls a ValidateUser session serves before it expires; `None` keeps it forever.
    pub session_ttl_calls: Option<u32>,
    /// Largest accepted difference between `x-api-timestamp` and the clock, in seconds.
    pub timestamp_tolerance_secs: u64,
    /// File the bills are loaded from at start and written to after each save.
    pub state_file: Option<PathBuf>,
    /// Rows ExecuteBillQuery returns at most per call, silently: 2,000 on older versions,
    /// 10,000 from the 2023-11 patch.
    pub query_row_cap: usize,
    /// Bill numbers a data-permission rule hides from ExecuteBillQuery; saves still see them.
    pub hidden_bill_nos: HashSet<String>,
    /// Field keys QueryBusinessInfo leaves out of the `STK_StockCountInput` metadata.
    pub omitted_metadata_fields: HashSet<String>,
    /// Faults injected at seeded random rates.
    pub faults: FaultPlan,
    /// Last day of the closed period: bills dated on or before it are rejected with the
    /// closed-period message. `None` keeps every period open.
    pub closed_through: Option<chrono::NaiveDate>,
    /// `BD_MATERIAL` field that [`KingdeeSimConfig::material_aliases`] fills, e.g. `FOldNumber`.
    pub material_alias_field: String,
    /// Value of `material_alias_field` → material number, for lookups by another field.
    pub material_aliases: HashMap<String, String>,
}

/// Faults drawn from a seeded random generator, so a run repeats exactly for the same
/// sequence of calls. Each save call draws once: a lock conflict, a late commit or an HTTP 500
/// after commit, by the given rates in that order. Each other call draws for the call limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    pub seed: u64,
    /// Share of save calls refused as a whole with MsgCode 13.
    pub lock_rate: f64,
    /// Share of save calls that wait [`FaultPlan::late_commit_delay`] before they validate and
    /// commit, so a client with a shorter timeout gives up first.
    pub late_commit_rate: f64,
    pub late_commit_delay: Duration,
    /// Share of save calls that commit and then return HTTP 500.
    pub http_500_rate: f64,
    /// Share of calls other than logins refused with MsgCode 14.
    pub call_limit_rate: f64,
}

impl Default for KingdeeSimConfig {
    fn default() -> Self {
        Self {
            acct_id: "fakeacct001".into(),
            username: "demo".into(),
            password: "demo-password".into(),
            app_id: "999999_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX".into(),
            app_secret: "0123456789abcdef0123456789abcdef".into(),
            lcid: 2052,
            materials: HashSet::new(),
            stocks: HashSet::new(),
            orgs: HashSet::new(),
            bill_types: HashSet::from(["WLPDZY01_SYS".to_string(), "PY01_SYS".to_string(), "PK01_SYS".to_string()]),
            stock_statuses: HashSet::from(["KCZT01_SYS".to_string()]),
            session_ttl_calls: None,
            timestamp_tolerance_secs: 300,
            state_file: None,
            query_row_cap: QUERY_ROW_CAP,
            hidden_bill_nos: HashSet::new(),
            omitted_metadata_fields: HashSet::new(),
            faults: FaultPlan::default(),
            closed_through: None,
            material_alias_field: "FOldNumber".into(),
            material_aliases: HashMap::new(),
        }
    }
}

/// A bill the simulator holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredBill {
    pub form_id: String,
    pub fid: i64,
    pub bill_no: String,
    /// The model as the client sent it, with later write-backs applied.
    pub model: Value,
    /// `FDocumentStatus`: Z 暂存, A 创建, B 审核中, C 已审核, D 重新审核. A save stores A.
    #[serde(default = "created_status")]
    pub document_status: String,
    /// `FEntryID` of each row of `FBillEntry`, in order.
    #[serde(default)]
    pub entry_ids: Vec<i64>,
}

fn created_status() -> String {
    "A".into()
}

/// Counters of what the simulator received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KingdeeStats {
    /// Successful logins of any kind.
    pub logins: u32,
    /// Successful LoginByAppSecret calls, also counted in `logins`.
    pub logins_by_app_secret: u32,
    /// Successful LoginBySign calls, also counted in `logins`.
    pub logins_by_sign: u32,
    /// Sessions ended because they served `session_ttl_calls` calls.
    pub sessions_expired: u32,
    /// Calls refused with MsgCode 1 because their session was unknown or expired.
    pub session_lost_responses: u32,
    /// Save calls refused with MsgCode 13.
    pub locks_injected: u32,
    /// Calls refused with MsgCode 14.
    pub call_limits_injected: u32,
    /// Save calls that waited before committing.
    pub late_commits_injected: u32,
    /// Save calls that committed and then returned HTTP 500.
    pub http_500_injected: u32,
    /// Bills left out of query results by `hidden_bill_nos`.
    pub rows_hidden: u32,
    /// QueryBusinessInfo calls that passed authentication.
    pub metadata_queries: u32,
    /// BatchSave and Save calls that passed authentication.
    pub save_calls: u32,
    pub bills_saved: u32,
    pub bills_rejected: u32,
    /// ExecuteBillQuery calls that passed authentication.
    pub queries: u32,
    /// Requests rejected for missing or wrong credentials, failed logins included.
    pub auth_failures: u32,
    /// Requests whose signed headers were valid.
    pub signed_requests: u32,
    pub requests_with_session_cookie: u32,
    pub requests_with_session_header: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PersistedState {
    next_fid: i64,
    bills: Vec<StoredBill>,
}

struct SimState {
    config: KingdeeSimConfig,
    client_sec: String,
    client_id: String,
    bills: Vec<StoredBill>,
    next_fid: i64,
    /// Session id → calls served.
    sessions: HashMap<String, u32>,
    seen_request_hashes: HashSet<u64>,
    stats: KingdeeStats,
    fail_500_after_commit: u32,
    lock_next: u32,
    call_limit_next: u32,
    late_next: u32,
    late_delay: Duration,
    rng: StdRng,
    next_entry_id: i64,
}

type Shared = Arc<Mutex<SimState>>;

/// A running simulator; it stops when dropped.
pub struct KingdeeSim {
    addr: SocketAddr,
    state: Shared,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl KingdeeSim {
    /// Starts the simulator on a free port of 127.0.0.1.
    pub async fn start(config: KingdeeSimConfig) -> anyhow::Result<KingdeeSim> {
        let parts = sign::parse_app_id(&config.app_id).context("KingdeeSimConfig.app_id")?;
        let persisted = match &config.state_file {
            Some(path) => load_state(path)?,
            None => PersistedState::default(),
        };
        let state = Arc::new(Mutex::new(SimState {
            client_sec: parts.client_sec,
            client_id: parts.client_id,
            bills: persisted.bills,
            next_fid: persisted.next_fid.max(100_001),
            sessions: HashMap::new(),
            seen_request_hashes: HashSet::new(),
            stats: KingdeeStats::default(),
            fail_500_after_commit: 0,
            lock_next: 0,
            call_limit_next: 0,
            late_next: 0,
            late_delay: Duration::ZERO,
            rng: StdRng::seed_from_u64(config.faults.seed),
            next_entry_id: 1,
            config,
        }));

        let app = Router::new().route("/k3cloud/{service}", post(handle)).with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(error) = server.await {
                tracing::warn!(error = %error, "kingdee simulator stopped with an error");
            }
        });
        Ok(KingdeeSim { addr, state, shutdown: Some(shutdown), task: Some(task) })
    }

    /// Returns the base URL, ending with `/k3cloud/`.
    pub fn server_url(&self) -> String {
        format!("http://{}/k3cloud/", self.addr)
    }

    pub fn bills(&self) -> Vec<StoredBill> {
        self.lock().bills.clone()
    }

    pub fn bill_count(&self) -> usize {
        self.lock().bills.len()
    }

    pub fn stats(&self) -> KingdeeStats {
        self.lock().stats
    }

    /// Makes the next `n` saves commit their bills and then return HTTP 500.
    pub fn fail_next_saves_with_500_after_commit(&self, n: u32) {
        self.lock().fail_500_after_commit = n;
    }

    /// Makes the next `n` saves fail as a whole with MsgCode 13 (network-control lock).
    pub fn reject_next_saves_with_lock(&self, n: u32) {
        self.lock().lock_next = n;
    }

    /// Makes the next `n` calls other than logins fail as a whole with MsgCode 14 (call limit).
    pub fn reject_next_calls_with_call_limit(&self, n: u32) {
        self.lock().call_limit_next = n;
    }

    /// Makes the next `n` saves wait `delay` before they validate and commit, as a slow server
    /// does after a client with a shorter timeout has given up.
    pub fn commit_next_saves_late(&self, n: u32, delay: Duration) {
        let mut sim = self.lock();
        sim.late_next = n;
        sim.late_delay = delay;
    }

    /// Hides these bill numbers from ExecuteBillQuery, as a data-permission rule does; saves
    /// still find the numbers taken.
    pub fn hide_bills_from_queries<I: IntoIterator<Item = String>>(&self, bill_nos: I) {
        self.lock().config.hidden_bill_nos.extend(bill_nos);
    }

    /// Stores a bill as if Kingdee had created it, e.g. a 物料盘点作业 generated by a 盘点方案
    /// (`FSchemeNo` in the header, `FIsSystem` true on its rows). Returns its `FID`.
    pub fn insert_bill(&self, form_id: &str, bill_no: &str, model: Value, document_status: &str) -> i64 {
        let mut sim = self.lock();
        let fid = sim.next_fid;
        sim.next_fid += 1;
        let rows = model.get("FBillEntry").and_then(Value::as_array).map_or(0, Vec::len);
        let entry_ids = (0..rows).map(|_| sim.next_entry_id()).collect();
        sim.bills.push(StoredBill { form_id: form_id.into(), fid, bill_no: bill_no.into(), model, document_status: document_status.into(), entry_ids });
        fid
    }

    /// Sets the closed period: bills dated on or before `date` are rejected from now on.
    pub fn close_period_through(&self, date: Option<chrono::NaiveDate>) {
        self.lock().config.closed_through = date;
    }

    /// Ends every login session, as a server restart or idle timeout does.
    pub fn expire_sessions(&self) {
        self.lock().sessions.clear();
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

    fn lock(&self) -> MutexGuard<'_, SimState> {
        lock(&self.state)
    }
}

impl Drop for KingdeeSim {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

fn lock(state: &Shared) -> MutexGuard<'_, SimState> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn handle(State(state): State<Shared>, Path(segment): Path<String>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let Some(service) = segment.strip_suffix(SERVICE_SUFFIX).map(str::to_string) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return json_response(status_body(8, "请求报文不是有效的 JSON", None, None));
    };
    match service.as_str() {
        VALIDATE_USER => return validate_user(&state, &request),
        LOGIN_BY_APP_SECRET => return login_by_app_secret(&state, &request),
        LOGIN_BY_SIGN => return login_by_sign(&state, &request),
        _ => {}
    }

    let admitted = lock(&state).admit(&service, &headers, uri.path());
    let (new_session, save_fault) = match admitted {
        Admission::Respond(response) => return response,
        Admission::Proceed { new_session, save_fault } => (new_session, save_fault),
    };
    let run = move || {
        let mut sim = lock(&state);
        let mut response = match service.as_str() {
            BATCH_SAVE | SAVE => sim.save(&service, &request, &body, save_fault),
            SUBMIT | AUDIT => json_response(sim.advance_status(&service, &request)),
            EXECUTE_BILL_QUERY => json_response(sim.query(&request)),
            QUERY_BUSINESS_INFO => json_response(sim.business_info(&request)),
            other => json_response(status_body(4, &format!("服务 {other} 不受模拟器支持 (service not supported by the simulator)"), None, None)),
        };
        if let Some(session_id) = new_session {
            set_session_cookies(&mut response, &session_id);
        }
        response
    };
    let SaveFault::LateCommit(delay) = save_fault else { return run() };
    // A detached task commits even after the client has closed the connection, which cancels
    // this handler. The lock is free while it waits, so lookups still get responses meanwhile.
    let late = tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        run()
    });
    late.await.unwrap_or_else(|_| (StatusCode::INTERNAL_SERVER_ERROR, "late commit task failed").into_response())
}

/// Result of authentication and fault injection for one call.
enum Admission {
    /// The call gets this response without running: wrong credentials or an injected rejection.
    Respond(Response),
    Proceed { new_session: Option<String>, save_fault: SaveFault },
}

/// Fault applied to one save call.
#[derive(Debug, Clone, Copy, PartialEq)]
enum SaveFault {
    None,
    Lock,
    LateCommit(Duration),
    Http500AfterCommit,
}

enum Auth {
    Denied,
    Session,
    Signed { has_session: bool },
}

impl SimState {
    /// Authenticates a call and decides the faults it meets.
    fn admit(&mut self, service: &str, headers: &HeaderMap, path: &str) -> Admission {
        let new_session = match self.authenticate(headers, path) {
            Auth::Denied => {
                self.stats.auth_failures += 1;
                return Admission::Respond(json_response(session_lost_body()));
            }
            Auth::Session => None,
            Auth::Signed { has_session } => (!has_session).then(|| self.open_session()),
        };
        if self.draw_call_limit() {
            self.stats.call_limits_injected += 1;
            let body = status_body(14, "接口调用次数超过限制，请稍后再试", None, None);
            let body = if service == EXECUTE_BILL_QUERY { json!([[body]]) } else { body };
            return Admission::Respond(json_response(body));
        }
        let save_fault = if matches!(service, BATCH_SAVE | SAVE) { self.draw_save_fault() } else { SaveFault::None };
        if let SaveFault::LateCommit(_) = save_fault {
            self.stats.late_commits_injected += 1;
        }
        Admission::Proceed { new_session, save_fault }
    }

    fn draw_call_limit(&mut self) -> bool {
        if self.call_limit_next > 0 {
            self.call_limit_next -= 1;
            return true;
        }
        let rate = self.config.faults.call_limit_rate;
        rate > 0.0 && self.rng.random::<f64>() < rate
    }

    /// Takes the fault of the next save from the knobs first, then from the fault plan.
    fn draw_save_fault(&mut self) -> SaveFault {
        if self.lock_next > 0 {
            self.lock_next -= 1;
            return SaveFault::Lock;
        }
        if self.late_next > 0 {
            self.late_next -= 1;
            return SaveFault::LateCommit(self.late_delay);
        }
        if self.fail_500_after_commit > 0 {
            self.fail_500_after_commit -= 1;
            return SaveFault::Http500AfterCommit;
        }
        let plan = &self.config.faults;
        if plan.lock_rate + plan.late_commit_rate + plan.http_500_rate <= 0.0 {
            return SaveFault::None;
        }
        let draw = self.rng.random::<f64>();
        if draw < plan.lock_rate {
            SaveFault::Lock
        } else if draw < plan.lock_rate + plan.late_commit_rate {
            SaveFault::LateCommit(plan.late_commit_delay)
        } else if draw < plan.lock_rate + plan.late_commit_rate + plan.http_500_rate {
            SaveFault::Http500AfterCommit
        } else {
            SaveFault::None
        }
    }

    fn authenticate(&mut self, headers: &HeaderMap, path: &str) -> Auth {
        let header_session = header(headers, sign::SESSION_ID);
        let cookie_session = cookie(headers, sign::SESSION_ID);
        if header_session.is_some() {
            self.stats.requests_with_session_header += 1;
        }
        if cookie_session.is_some() {
            self.stats.requests_with_session_cookie += 1;
        }
        let session_id = header_session.or(cookie_session);

        if headers.contains_key(sign::HEADER_KD_SIGNATURE) || headers.contains_key(sign::HEADER_API_SIGNATURE) {
            if !self.signature_valid(headers, path) {
                return Auth::Denied;
            }
            self.stats.signed_requests += 1;
            let has_session = session_id.is_some_and(|id| self.sessions.contains_key(&id));
            return Auth::Signed { has_session };
        }
        match session_id {
            Some(id) if self.use_session(&id) => Auth::Session,
            Some(_) => {
                self.stats.session_lost_responses += 1;
                Auth::Denied
            }
            None => Auth::Denied,
        }
    }

    /// Counts one call on a session and returns whether the session is still valid.
    fn use_session(&mut self, id: &str) -> bool {
        let ttl = self.config.session_ttl_calls;
        let Some(calls) = self.sessions.get_mut(id) else { return false };
        *calls += 1;
        if ttl.is_some_and(|ttl| *calls > ttl) {
            self.sessions.remove(id);
            self.stats.sessions_expired += 1;
            return false;
        }
        true
    }

    fn open_session(&mut self) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        self.sessions.insert(id.clone(), 0);
        id
    }

    /// Checks the signed headers exactly as the official SDK builds them.
    fn signature_valid(&self, headers: &HeaderMap, path: &str) -> bool {
        let get = |name| header(headers, name).unwrap_or_default();
        let (timestamp, nonce) = (get(sign::HEADER_TIMESTAMP), get(sign::HEADER_NONCE));
        let Ok(seconds) = timestamp.parse::<i64>() else { return false };
        if chrono::Utc::now().timestamp().abs_diff(seconds) > self.config.timestamp_tolerance_secs {
            return false;
        }
        if get(sign::HEADER_CLIENT_ID) != self.client_id || get(sign::HEADER_APP_KEY) != self.config.app_id {
            return false;
        }
        let expected_api = sign::api_signature(&self.client_sec, &sign::enc_path(path), &nonce, &timestamp);
        if get(sign::HEADER_API_SIGNATURE) != expected_api {
            return false;
        }

        let Some(raw_app_data) = STANDARD.decode(get(sign::HEADER_APP_DATA)).ok().and_then(|bytes| String::from_utf8(bytes).ok()) else {
            return false;
        };
        let fields: Vec<&str> = raw_app_data.split(',').collect();
        let [acct_id, username, lcid, org_num] = fields.as_slice() else { return false };
        if *acct_id != self.config.acct_id || *username != self.config.username || lcid.parse::<u32>().is_err() || org_num.parse::<u64>().is_err() {
            return false;
        }
        get(sign::HEADER_KD_SIGNATURE) == sign::kd_signature(&self.config.app_id, &raw_app_data, &self.config.app_secret)
    }
}

/// Returns field `key`, or element `position` of the positional `parameters` form, as text.
fn login_field(request: &Value, key: &str, position: usize) -> String {
    let value = request.get(key).or_else(|| request.get("parameters").and_then(|parameters| parameters.get(position)));
    match value {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => String::new(),
    }
}

/// Login service that opened a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoginKind {
    Password,
    AppSecret,
    Sign,
}

fn validate_user(state: &Shared, request: &Value) -> Response {
    let field = |key: &str, position: usize| login_field(request, key, position);
    let (acct_id, username, password, lcid) = (field("acctID", 0), field("username", 1), field("password", 2), field("lcid", 3));
    let mut sim = lock(state);
    let config = &sim.config;
    let accepted = acct_id == config.acct_id && username == config.username && password == config.password && lcid == config.lcid.to_string();
    sim.login(accepted, LoginKind::Password, &acct_id, &username)
}

/// LoginByAppSecret: `{"parameters": [acctId, username, appId, appSecret, lcid]}`.
fn login_by_app_secret(state: &Shared, request: &Value) -> Response {
    let field = |position: usize| login_field(request, "", position);
    let (acct_id, username, app_id, app_secret, lcid) = (field(0), field(1), field(2), field(3), field(4));
    let mut sim = lock(state);
    let config = &sim.config;
    let accepted = acct_id == config.acct_id
        && username == config.username
        && app_id == config.app_id
        && app_secret == config.app_secret
        && lcid == config.lcid.to_string();
    sim.login(accepted, LoginKind::AppSecret, &acct_id, &username)
}

/// LoginBySign: `{"parameters": [acctId, username, appId, ts, sign, lcid]}`, where `sign` is
/// the SHA-256 of the sorted `[acctId, username, appId, appSecret, ts]`.
fn login_by_sign(state: &Shared, request: &Value) -> Response {
    let field = |position: usize| login_field(request, "", position);
    let (acct_id, username, app_id, timestamp, signature, lcid) = (field(0), field(1), field(2), field(3), field(4), field(5));
    let mut sim = lock(state);
    let config = &sim.config;
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|seconds| chrono::Utc::now().timestamp().abs_diff(seconds) <= config.timestamp_tolerance_secs);
    let accepted = fresh
        && acct_id == config.acct_id
        && username == config.username
        && app_id == config.app_id
        && lcid == config.lcid.to_string()
        && timestamp.parse::<i64>().is_ok_and(|seconds| signature == sign::login_by_sign(&acct_id, &username, &app_id, &config.app_secret, seconds));
    sim.login(accepted, LoginKind::Sign, &acct_id, &username)
}

impl SimState {
    /// Builds a login response: a session with cookies when `accepted`, `LoginResultType` -1 otherwise.
    fn login(&mut self, accepted: bool, kind: LoginKind, acct_id: &str, username: &str) -> Response {
        if !accepted {
            self.stats.auth_failures += 1;
            let message = match kind {
                LoginKind::Password => "用户名或密码错误，或数据中心不存在",
                LoginKind::AppSecret | LoginKind::Sign => "第三方系统登录授权校验失败：应用ID、应用密钥、用户或数据中心不匹配",
            };
            return json_response(json!({
                "Message": message,
                "MessageCode": "CheckPasswordPolicy",
                "LoginResultType": -1,
                "Context": null,
                "KDSVCSessionId": null,
            }));
        }

        self.stats.logins += 1;
        match kind {
            LoginKind::Password => {}
            LoginKind::AppSecret => self.stats.logins_by_app_secret += 1,
            LoginKind::Sign => self.stats.logins_by_sign += 1,
        }
        let session_id = self.open_session();
        let mut response = json_response(json!({
            "Message": null,
            "MessageCode": "CheckPasswordPolicy",
            "LoginResultType": 1,
            "KDSVCSessionId": session_id,
            "Context": {"UserName": username, "DBid": acct_id, "LogLocale": "zh-CN", "UserLocale": "zh-CN", "UseLanguages": [{"LocaleId": 2052}]},
        }));
        set_session_cookies(&mut response, &session_id);
        response
    }
}

// ---------------------------------------------------------------------------------------------
// BatchSave / Save
// ---------------------------------------------------------------------------------------------

/// A bill saved by one request, at position `dindex` of `Model`.
struct SavedEntity {
    dindex: usize,
    fid: i64,
    bill_no: String,
}

/// One error of one bill.
struct BillError {
    msg_code: i64,
    field_name: Option<&'static str>,
    message: String,
}

impl SimState {
    fn save(&mut self, service: &str, request: &Value, raw_body: &[u8], fault: SaveFault) -> Response {
        let form_id = request.get("formid").and_then(Value::as_str).unwrap_or_default().to_string();
        let Some(data) = data_object(request) else {
            return json_response(status_body(8, "缺少参数 data，或 data 不是 JSON 对象", None, None));
        };
        if form_id.is_empty() {
            return json_response(status_body(8, "缺少参数 formid", None, None));
        }
        self.stats.save_calls += 1;
        if fault == SaveFault::Lock {
            self.stats.locks_injected += 1;
            return json_response(status_body(13, "网络控制冲突：单据正在被其他用户操作，请稍后再试", None, None));
        }
        // A repeat is rejected only when the earlier identical request saved something, so that
        // a request refused as a whole may be sent again unchanged.
        let request_hash = hash_bytes(raw_body);
        let validate_repeat = truthy(data.get("ValidateRepeatJson"));
        if validate_repeat && self.seen_request_hashes.contains(&request_hash) {
            return json_response(status_body(11, "ValidateRepeatJson：本次请求报文与之前已保存的请求完全相同，已拒绝重复提交", None, None));
        }

        let models: Vec<Value> = match (service, data.get("Model")) {
            (BATCH_SAVE, Some(Value::Array(models))) => models.clone(),
            (SAVE, Some(model @ Value::Object(_))) => vec![model.clone()],
            _ => return json_response(status_body(8, "参数 Model 缺失或格式不正确", None, None)),
        };

        let options = writeback::SaveOptions::from_data(&data);
        let (successes, errors) = self.save_models(&form_id, &models, &options);
        if validate_repeat && !successes.is_empty() {
            self.seen_request_hashes.insert(request_hash);
        }
        self.persist();
        if fault == SaveFault::Http500AfterCommit {
            self.stats.http_500_injected += 1;
            return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response();
        }
        json_response(save_response(service, &successes, &errors))
    }

    /// Validates and stores each model on its own. Returns the saved bills and the errors,
    /// each error with its bill's `DIndex`.
    fn save_models(&mut self, form_id: &str, models: &[Value], options: &writeback::SaveOptions) -> (Vec<SavedEntity>, Vec<(usize, BillError)>) {
        let mut successes = Vec::new();
        let mut errors = Vec::new();
        for (index, model) in models.iter().enumerate() {
            if writeback::fid_of(model) != 0 {
                match self.update_bill(form_id, model, options) {
                    Ok(saved) => successes.push(SavedEntity { dindex: index, ..saved }),
                    Err(problems) => {
                        self.stats.bills_rejected += 1;
                        errors.extend(problems.into_iter().map(|problem| (index, problem)));
                    }
                }
                continue;
            }
            let problems = self.validate_model(form_id, model);
            if !problems.is_empty() {
                self.stats.bills_rejected += 1;
                errors.extend(problems.into_iter().map(|problem| (index, problem)));
                continue;
            }
            let fid = self.next_fid;
            self.next_fid += 1;
            let bill_no = match model.get("FBillNo").and_then(Value::as_str).filter(|no| !no.is_empty()) {
                Some(number) => number.to_string(),
                None => format!("WLPDZY{fid:08}"),
            };
            let rows = model.get("FBillEntry").and_then(Value::as_array).map_or(0, Vec::len);
            let entry_ids = (0..rows).map(|_| self.next_entry_id()).collect();
            self.bills.push(StoredBill {
                form_id: form_id.to_string(),
                fid,
                bill_no: bill_no.clone(),
                model: model.clone(),
                document_status: created_status(),
                entry_ids,
            });
            self.stats.bills_saved += 1;
            successes.push(SavedEntity { dindex: index, fid, bill_no });
        }
        (successes, errors)
    }

    fn validate_model(&self, form_id: &str, model: &Value) -> Vec<BillError> {
        let Some(header) = model.as_object() else {
            return vec![bill_error(8, None, "单据数据必须是 JSON 对象".into())];
        };
        let mut problems = Vec::new();
        let config = &self.config;
        check_base_data(&mut problems, header, "FStockOrgId", "库存组织", &config.orgs, None);
        check_base_data(&mut problems, header, "FBillTypeID", "单据类型", &config.bill_types, None);
        self.check_period(&mut problems, header);

        match header.get("FBillEntry") {
            Some(Value::Array(rows)) => {
                for (row, entry) in rows.iter().enumerate() {
                    self.validate_entry(&mut problems, entry, row + 1);
                }
            }
            _ => problems.push(bill_error(8, Some("FBillEntry"), "单据体 FBillEntry 缺失或不是数组".into())),
        }

        if let Some(number) = header.get("FBillNo").and_then(Value::as_str).filter(|no| !no.is_empty()) {
            if self.bills.iter().any(|bill| bill.form_id == form_id && bill.bill_no == number) {
                problems.push(bill_error(11, Some("FBillNo"), format!("违反字段唯一性要求：编码唯一。[{number}]已经被使用。")));
            }
        }
        problems
    }

    fn validate_entry(&self, problems: &mut Vec<BillError>, entry: &Value, row: usize) {
        let Some(entry) = entry.as_object() else {
            problems.push(bill_error(8, Some("FBillEntry"), format!("第{row}行分录不是 JSON 对象")));
            return;
        };
        let config = &self.config;
        check_base_data(problems, entry, "FMaterialId", "物料编码", &config.materials, Some(row));
        check_base_data(problems, entry, "FStockId", "仓库", &config.stocks, Some(row));
        if entry.contains_key("FStockStatusId") {
            check_base_data(problems, entry, "FStockStatusId", "库存状态", &config.stock_statuses, Some(row));
        }
        for key in ["FAcctQty", "FCountQty", "FGainQty", "FLossQty"] {
            if let Some(value) = entry.get(key) {
                if !is_numeric(value) {
                    problems.push(bill_error(8, field_key(key), format!("第{row}行分录字段 {key} 的值 {value} 不是数字")));
                }
            }
        }
    }

    fn persist(&self) {
        let Some(path) = &self.config.state_file else { return };
        let state = PersistedState { next_fid: self.next_fid, bills: self.bills.clone() };
        if let Err(error) = write_state(path, &state) {
            tracing::warn!(path = %path.display(), error = %error, "kingdee simulator could not write its state file");
        }
    }
}

/// Checks a base-data reference `{"FNumber": code}` (or `FNUMBER`) against the known codes.
fn check_base_data(
    problems: &mut Vec<BillError>,
    object: &Map<String, Value>,
    key: &'static str,
    label: &str,
    known: &HashSet<String>,
    row: Option<usize>,
) {
    let place = row.map(|row| format!("第{row}行分录")).unwrap_or_default();
    let code = object.get(key).and_then(|value| value.get("FNumber").or_else(|| value.get("FNUMBER"))).and_then(Value::as_str);
    match code {
        None | Some("") => problems.push(bill_error(8, Some(key), format!("{place}字段“{label}”({key})是必填项"))),
        Some(code) if !known.contains(code) => {
            problems.push(bill_error(9, Some(key), format!("{place}字段“{label}”({key})的值“{code}”在系统中不存在或未审核")));
        }
        Some(_) => {}
    }
}

fn field_key(key: &str) -> Option<&'static str> {
    ["FAcctQty", "FCountQty", "FGainQty", "FLossQty"].into_iter().find(|known| *known == key)
}

fn bill_error(msg_code: i64, field_name: Option<&'static str>, message: String) -> BillError {
    BillError { msg_code, field_name, message }
}

fn is_numeric(value: &Value) -> bool {
    match value {
        Value::Number(_) => true,
        Value::String(text) => {
            let text = text.trim();
            Decimal::from_str(text).is_ok() || Decimal::from_scientific(text).is_ok()
        }
        _ => false,
    }
}

fn save_response(service: &str, successes: &[SavedEntity], errors: &[(usize, BillError)]) -> Value {
    let entities: Vec<Value> = successes.iter().map(|saved| json!({"Id": saved.fid, "Number": saved.bill_no, "DIndex": saved.dindex})).collect();
    let error_list: Vec<Value> = errors
        .iter()
        .map(|(index, error)| json!({"FieldName": error.field_name, "Message": error.message, "DIndex": index}))
        .collect();
    let need_return: Vec<Value> = successes.iter().map(|saved| json!({"FID": saved.fid, "FBillNo": saved.bill_no})).collect();
    let msg_code = errors.first().map_or(0, |(_, error)| error.msg_code);

    let mut result = json!({
        "ResponseStatus": {
            "ErrorCode": if errors.is_empty() { 0 } else { 500 },
            "IsSuccess": errors.is_empty(),
            "Errors": error_list,
            "SuccessEntitys": entities,
            "SuccessMessages": [],
            "MsgCode": msg_code,
        },
        "NeedReturnData": need_return,
    });
    if service == SAVE {
        if let Some(saved) = successes.first() {
            result["Id"] = json!(saved.fid);
            result["Number"] = json!(saved.bill_no);
        }
    }
    json!({ "Result": result })
}

// ---------------------------------------------------------------------------------------------
// ExecuteBillQuery
// ---------------------------------------------------------------------------------------------

const HEADER_KEYS: [&str; 5] = ["FID", "FBillNo", "FDocumentStatus", "FDate", "FSchemeNo"];
const ENTRY_KEYS: [&str; 7] =
    ["FMaterialId.FNumber", "FCountQty", "FBillEntry_FEntryID", "FStockId.FNumber", "FLot.FNumber", "FOwnerId.FNumber", "FIsSystem"];
/// Field keys of the base-data forms; the simulator's names equal their numbers.
const BASE_DATA_KEYS: [&str; 2] = ["FNumber", "FName"];

/// Base-data forms the simulator serves from its seeded sets.
const BASE_DATA_FORMS: [&str; 5] = ["BD_MATERIAL", "BD_STOCK", "ORG_Organizations", "BOS_BillType", "BD_StockStatus"];

/// Header field keys of `STK_StockCountInput` that QueryBusinessInfo lists.
pub const METADATA_HEADER_FIELDS: [&str; 10] =
    ["FBillNo", "FDate", "FBillTypeID", "FStockOrgId", "FNoteHead", "FSource", "FSchemeNo", "FBackUpDate", "FDocumentStatus", "FID"];
/// `FBillEntry` field keys of `STK_StockCountInput` that QueryBusinessInfo lists.
pub const METADATA_ENTRY_FIELDS: [&str; 21] = [
    "FMaterialId", "FUnitID", "FBaseUnitId", "FStockId", "FStockLocId", "FAuxPropId", "FLot", "FProduceDate", "FExpiryDate",
    "FMtoNo", "FProjectNo", "FStockStatusId", "FOwnerTypeId", "FOwnerId", "FKeeperTypeId", "FKeeperId", "FAcctQty",
    "FCountQty", "FGainQty", "FLossQty", "FNote",
];

/// A parsed `FilterString`: one field compared with one or more literals.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Filter {
    field: String,
    values: HashSet<String>,
}

/// A parsed `OrderString`: one key, ascending or descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Order<'a> {
    key: &'a str,
    descending: bool,
}

impl SimState {
    fn query(&mut self, request: &Value) -> Value {
        let Some(data) = data_object(request) else {
            return query_error("缺少参数 data，或 data 不是 JSON 对象");
        };
        self.stats.queries += 1;
        let form_id = data.get("FormId").and_then(Value::as_str).unwrap_or_default().to_string();
        if form_id.is_empty() {
            return query_error("缺少参数 FormId");
        }
        let keys: Vec<String> = data.get("FieldKeys").and_then(Value::as_str).unwrap_or_default().split(',').map(|key| key.trim().to_string()).collect();
        let base_data = BASE_DATA_FORMS.contains(&form_id.as_str());
        let alias_field = self.config.material_alias_field.clone();
        let allowed = |key: &str| {
            if base_data {
                BASE_DATA_KEYS.contains(&key) || (form_id == "BD_MATERIAL" && key == alias_field)
            } else {
                HEADER_KEYS.contains(&key) || ENTRY_KEYS.contains(&key)
            }
        };
        if let Some(unknown) = keys.iter().find(|key| !allowed(key)) {
            return query_error(&format!("字段 {unknown:?} 不存在或模拟器不支持"));
        }
        let filter_text = data.get("FilterString").and_then(Value::as_str).unwrap_or_default();
        let filter_fields: Vec<&str> = match (base_data, form_id.as_str()) {
            (true, "BD_MATERIAL") => vec!["FNumber", alias_field.as_str()],
            (true, _) => vec!["FNumber"],
            (false, _) => vec!["FBillNo", "FSchemeNo"],
        };
        let filter_field = filter_fields[0];
        let Some(filter) = parse_filter(filter_text) else {
            return query_error(&format!("过滤条件 {filter_text:?} 有误或模拟器不支持；支持 {filter_field}='X' 与 {filter_field} in ('A','B')"));
        };
        if filter.as_ref().is_some_and(|filter| !filter_fields.contains(&filter.field.as_str())) {
            return query_error(&format!("过滤条件 {filter_text:?} 有误或模拟器不支持；{form_id} 只支持按 {} 过滤", filter_fields.join("、")));
        }
        let filter_on = filter.as_ref().map(|filter| filter.field.clone()).unwrap_or_default();
        let order_text = data.get("OrderString").and_then(Value::as_str).unwrap_or_default();
        let order_keys: &[&str] = if base_data { &["FNumber"] } else { &["FID", "FBillNo"] };
        let Some(order) = parse_order(order_text, order_keys) else {
            return query_error(&format!("排序条件 {order_text:?} 有误或模拟器不支持；支持 {} 加 ASC 或 DESC", order_keys.join("、")));
        };
        let numbers = filter.map(|filter| filter.values);

        let rows = if form_id == "BD_MATERIAL" && (filter_on == alias_field || keys.contains(&alias_field)) {
            self.material_alias_rows(&keys, &filter_on, numbers.as_ref())
        } else if base_data {
            self.base_data_rows(&form_id, &keys, numbers.as_ref(), order)
        } else {
            self.rows(&form_id, &keys, &filter_on, numbers.as_ref(), order)
        };
        self.page(&data, rows)
    }

    /// Applies `TopRowCount`, `StartRow`, `Limit` and the silent row cap.
    fn page(&self, data: &Map<String, Value>, rows: Vec<Vec<Value>>) -> Value {
        let cap = self.config.query_row_cap.max(1);
        let start = number_field(data, "StartRow");
        let limit = match number_field(data, "Limit") {
            0 => cap,
            limit => limit.min(cap),
        };
        let top = match number_field(data, "TopRowCount") {
            0 => usize::MAX,
            top => top,
        };
        Value::Array(rows.into_iter().take(top).skip(start).take(limit).map(Value::Array).collect())
    }

    fn rows(&mut self, form_id: &str, keys: &[String], filter_on: &str, numbers: Option<&HashSet<String>>, order: Option<Order<'_>>) -> Vec<Vec<Value>> {
        let expand_entries = keys.iter().any(|key| ENTRY_KEYS.contains(&key.as_str()));
        let mut bills: Vec<&StoredBill> = Vec::new();
        let mut hidden = 0;
        for bill in self.bills.iter().filter(|bill| bill.form_id == form_id) {
            let filtered_value = if filter_on == "FSchemeNo" {
                bill.model.get("FSchemeNo").and_then(Value::as_str).unwrap_or_default().to_string()
            } else {
                bill.bill_no.clone()
            };
            if numbers.is_some_and(|numbers| !numbers.contains(&filtered_value)) {
                continue;
            }
            if self.config.hidden_bill_nos.contains(&bill.bill_no) {
                hidden += 1;
                continue;
            }
            bills.push(bill);
        }
        if let Some(order) = order {
            match order.key {
                "FBillNo" => bills.sort_by(|a, b| a.bill_no.cmp(&b.bill_no).then(a.fid.cmp(&b.fid))),
                _ => bills.sort_by_key(|bill| bill.fid),
            }
            if order.descending {
                bills.reverse();
            }
        }

        let mut rows = Vec::new();
        for bill in bills {
            let entries: Vec<Value> = match bill.model.get("FBillEntry") {
                Some(Value::Array(entries)) if expand_entries && !entries.is_empty() => entries.clone(),
                _ => vec![Value::Null],
            };
            for (position, entry) in entries.iter().enumerate() {
                let entry_id = bill.entry_ids.get(position).copied().unwrap_or(0);
                rows.push(keys.iter().map(|key| cell(bill, entry, entry_id, key)).collect());
            }
        }
        self.stats.rows_hidden += hidden;
        rows
    }

    fn base_data_rows(&self, form_id: &str, keys: &[String], numbers: Option<&HashSet<String>>, order: Option<Order<'_>>) -> Vec<Vec<Value>> {
        let config = &self.config;
        let set = match form_id {
            "BD_MATERIAL" => &config.materials,
            "BD_STOCK" => &config.stocks,
            "ORG_Organizations" => &config.orgs,
            "BOS_BillType" => &config.bill_types,
            _ => &config.stock_statuses,
        };
        let mut codes: Vec<&String> = set.iter().filter(|code| numbers.is_none_or(|numbers| numbers.contains(*code))).collect();
        codes.sort();
        if order.is_some_and(|order| order.descending) {
            codes.reverse();
        }
        codes.into_iter().map(|code| keys.iter().map(|_| json!(code)).collect()).collect()
    }

    /// QueryBusinessInfo: the metadata of `STK_StockCountInput`, entities with their field keys.
    fn business_info(&mut self, request: &Value) -> Value {
        let form_id = data_object(request).and_then(|data| data.get("FormId").and_then(Value::as_str).map(str::to_string)).unwrap_or_default();
        self.stats.metadata_queries += 1;
        if form_id != "STK_StockCountInput" {
            return status_body(4, &format!("业务对象 {form_id:?} 不存在或模拟器不支持"), None, None);
        }
        let omitted = &self.config.omitted_metadata_fields;
        let fields = |keys: &[&str]| -> Vec<Value> {
            keys.iter().filter(|key| !omitted.contains(**key)).map(|key| json!({"Key": key, "FieldName": key.to_uppercase()})).collect()
        };
        json!({"Result": {
            "ResponseStatus": {"ErrorCode": 0, "IsSuccess": true, "Errors": [], "SuccessEntitys": [], "SuccessMessages": [], "MsgCode": 0},
            "NeedReturnData": {
                "Id": "STK_StockCountInput",
                "Name": [{"Key": 2052, "Value": "物料盘点作业"}],
                "Entrys": [
                    {"Key": "FBillHead", "EntityType": 0, "Fields": fields(&METADATA_HEADER_FIELDS)},
                    {"Key": "FBillEntry", "EntityType": 1, "Fields": fields(&METADATA_ENTRY_FIELDS)},
                ],
            },
        }})
    }
}

fn cell(bill: &StoredBill, entry: &Value, entry_id: i64, key: &str) -> Value {
    let number = |field: &str| entry.get(field).and_then(|value| value.get("FNumber")).cloned().unwrap_or(Value::Null);
    match key {
        "FID" => json!(bill.fid),
        "FBillNo" => json!(bill.bill_no),
        "FDocumentStatus" => json!(bill.document_status),
        "FSchemeNo" => bill.model.get("FSchemeNo").cloned().unwrap_or(json!("")),
        "FBillEntry_FEntryID" => json!(entry_id),
        "FStockId.FNumber" => number("FStockId"),
        "FLot.FNumber" => number("FLot"),
        "FOwnerId.FNumber" => number("FOwnerId"),
        "FIsSystem" => json!(entry.get("FIsSystem").is_some_and(|flag| truthy(Some(flag)))),
        "FDate" => bill.model.get("FDate").map_or(Value::Null, |date| json!(format!("{}T00:00:00", date.as_str().unwrap_or_default()))),
        "FMaterialId.FNumber" => entry.get("FMaterialId").and_then(|material| material.get("FNumber")).cloned().unwrap_or(Value::Null),
        "FCountQty" => entry.get("FCountQty").cloned().unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// Parses an `OrderString` of one key among `keys`, with optional `ASC` or `DESC`. Returns
/// `Some(None)` for no order and `None` for anything else.
fn parse_order<'a>(text: &'a str, keys: &[&str]) -> Option<Option<Order<'a>>> {
    let mut words = text.split_whitespace();
    let Some(key) = words.next() else { return Some(None) };
    let descending = match words.next().map(str::to_ascii_uppercase).as_deref() {
        None | Some("ASC") => false,
        Some("DESC") => true,
        Some(_) => return None,
    };
    (words.next().is_none() && keys.contains(&key)).then_some(Some(Order { key, descending }))
}

/// Parses the supported filters: empty, `F='X'` and `F in ('A','B')` for a field name `F`, with
/// `''` as an escaped quote. Returns `Some(None)` for no filter and `None` for anything else.
fn parse_filter(filter: &str) -> Option<Option<Filter>> {
    let filter = filter.trim();
    if filter.is_empty() {
        return Some(None);
    }
    let name_end = filter.find(|c: char| !c.is_ascii_alphanumeric() && c != '_').unwrap_or(filter.len());
    let field = &filter[..name_end];
    if field.is_empty() || !field.starts_with('F') {
        return None;
    }
    let rest = filter[name_end..].trim_start();
    let build = |values: HashSet<String>| Some(Filter { field: field.to_string(), values });
    if let Some(value) = rest.strip_prefix('=') {
        let (number, tail) = parse_quoted(value.trim_start())?;
        return tail.trim().is_empty().then(|| build(HashSet::from([number])));
    }
    let lower = rest.get(..2)?.to_ascii_lowercase();
    if lower != "in" {
        return None;
    }
    let mut list = rest[2..].trim_start().strip_prefix('(')?.trim_start();
    let mut numbers = HashSet::new();
    loop {
        let (number, tail) = parse_quoted(list)?;
        numbers.insert(number);
        let tail = tail.trim_start();
        if let Some(after) = tail.strip_prefix(',') {
            list = after.trim_start();
            continue;
        }
        let after = tail.strip_prefix(')')?;
        return after.trim().is_empty().then(|| build(numbers));
    }
}

/// Parses one single-quoted literal; returns its value and the text after it.
fn parse_quoted(text: &str) -> Option<(String, &str)> {
    let body = text.strip_prefix('\'')?;
    let mut value = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((index, ch)) = chars.next() {
        if ch != '\'' {
            value.push(ch);
            continue;
        }
        if chars.peek().is_some_and(|(_, next)| *next == '\'') {
            chars.next();
            value.push('\'');
            continue;
        }
        return Some((value, &body[index + 1..]));
    }
    None
}

fn number_field(data: &Map<String, Value>, key: &str) -> usize {
    match data.get(key) {
        Some(Value::Number(number)) => number.as_u64().unwrap_or(0) as usize,
        Some(Value::String(text)) => text.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

mod writeback;

// ---------------------------------------------------------------------------------------------
// Response and request helpers
// ---------------------------------------------------------------------------------------------

fn status_body(msg_code: i64, message: &str, field_name: Option<&str>, dindex: Option<usize>) -> Value {
    let mut error = json!({"FieldName": field_name, "Message": message});
    if let Some(dindex) = dindex {
        error["DIndex"] = json!(dindex);
    }
    json!({"Result": {"ResponseStatus": {
        "ErrorCode": 500,
        "IsSuccess": false,
        "Errors": [error],
        "SuccessEntitys": [],
        "SuccessMessages": [],
        "MsgCode": msg_code,
    }}})
}

fn session_lost_body() -> Value {
    status_body(1, SESSION_LOST_MESSAGE, None, Some(0))
}

/// Wraps an error twice, as ExecuteBillQuery does.
fn query_error(message: &str) -> Value {
    json!([[status_body(0, message, None, Some(0))]])
}

fn json_response(body: Value) -> Response {
    let mut response = body.to_string().into_response();
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    response
}

fn set_session_cookies(response: &mut Response, session_id: &str) {
    let headers = response.headers_mut();
    for cookie in [format!("{}={session_id}; path=/", sign::SESSION_ID), format!("ASP.NET_SessionId={session_id}; path=/; HttpOnly")] {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(SET_COOKIE, value);
        }
    }
}

/// Returns `data` as an object; Kingdee also accepts it as a JSON string.
fn data_object(request: &Value) -> Option<Map<String, Value>> {
    match request.get("data")? {
        Value::Object(map) => Some(map.clone()),
        Value::String(text) => serde_json::from_str::<Value>(text).ok()?.as_object().cloned(),
        _ => None,
    }
}

fn truthy(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(flag)) => *flag,
        Some(Value::String(text)) => text.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_string)
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| text.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

fn load_state(path: &FsPath) -> anyhow::Result<PersistedState> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("reading kingdee simulator state {}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(PersistedState::default()),
        Err(error) => Err(error).with_context(|| format!("reading kingdee simulator state {}", path.display())),
    }
}

/// Writes the state to a temporary file and renames it, so a crash never leaves half a file.
fn write_state(path: &FsPath, state: &PersistedState) -> anyhow::Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, serde_json::to_vec_pretty(state)?)?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(field: &str, values: &[&str]) -> Option<Option<Filter>> {
        Some(Some(Filter { field: field.into(), values: values.iter().map(|value| value.to_string()).collect() }))
    }

    #[test]
    fn filter_forms() {
        assert_eq!(parse_filter(""), Some(None));
        assert_eq!(parse_filter("FBillNo='JST-1'"), filter("FBillNo", &["JST-1"]));
        assert_eq!(parse_filter("FBillNo = 'O''Brien'"), filter("FBillNo", &["O'Brien"]));
        assert_eq!(parse_filter("FBillNo in ('A', 'B')"), filter("FBillNo", &["A", "B"]));
        assert_eq!(parse_filter("FBillNo IN ('A')"), filter("FBillNo", &["A"]));
        assert_eq!(parse_filter("FNumber in ('CK001','CK002')"), filter("FNumber", &["CK001", "CK002"]));
        for bad in ["FBillNo like 'A%'", "FBillNo='A' or 1=1", "FID=1", "FBillNo='A", "FBillNo in ('A'", "1=1", "x='A'"] {
            assert_eq!(parse_filter(bad), None, "{bad}");
        }
    }

    #[test]
    fn order_forms() {
        let keys = ["FID", "FBillNo"];
        assert_eq!(parse_order("", &keys), Some(None));
        assert_eq!(parse_order("FID ASC", &keys), Some(Some(Order { key: "FID", descending: false })));
        assert_eq!(parse_order("FBillNo desc", &keys), Some(Some(Order { key: "FBillNo", descending: true })));
        assert_eq!(parse_order("FID", &keys), Some(Some(Order { key: "FID", descending: false })));
        for bad in ["FDate ASC", "FID UP", "FID ASC, FBillNo ASC"] {
            assert_eq!(parse_order(bad, &keys), None, "{bad}");
        }
    }

    #[test]
    fn numeric_values() {
        assert!(is_numeric(&json!(3)));
        assert!(is_numeric(&json!("0")));
        assert!(is_numeric(&json!("-1.25")));
        assert!(!is_numeric(&json!("abc")));
        assert!(!is_numeric(&json!(null)));
    }
}
