//! Access token lifecycle: a configured token (`static`), a merchant application's own token
//! (`getInitToken`, then `refreshToken` ahead of expiry) and a third-party application's token
//! pair kept in the token store (`isv`).
//!
//! A refresh returns a new refresh token and invalidates the old one, so the pair is replaced in
//! the [`TokenStore`] only over the version that was read: of two refreshers, one wins, and the
//! other re-reads the store and uses the winner's pair. Within one process a tokio mutex lets
//! one task at a time obtain or refresh a token.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use countsync_core::ports::{StoredToken, TokenStore};
use rand::Rng;
use rand::distr::Alphanumeric;
use reqwest::header::CONTENT_TYPE;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::config::{JushuitanConfig, TokenMode};
use crate::error::{CODE_INTERNAL, JstError};
use crate::limits::RateLimits;
use crate::sign::sign;

/// Source of the current instant; tests inject a fixed or moving clock.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Lifetime assumed for a token seeded from the configuration, whose `expires_in` is unknown.
/// NOTE: sources give 30 or 180 days; the shorter one is assumed, so the first refresh may come
/// early but never late.
const SEEDED_TOKEN_LIFETIME: Duration = Duration::days(30);

const INIT_ENDPOINT: &str = "getInitToken";
const REFRESH_ENDPOINT: &str = "refreshToken";
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// The access token of one request, with the stored version it came from (none in `static` mode).
#[derive(Clone)]
pub struct AccessToken {
    pub(crate) secret: SecretString,
    pub(crate) version: Option<u64>,
}

/// A token pair as a token endpoint returns it.
struct IssuedPair {
    access_token: String,
    refresh_token: String,
    expires_in: i64,
}

/// Obtains, caches and refreshes the access token.
pub(crate) struct TokenProvider {
    mode: TokenMode,
    app_key: String,
    app_secret: SecretString,
    configured_access: SecretString,
    configured_refresh: SecretString,
    margin: Duration,
    store: Option<Arc<dyn TokenStore>>,
    http: reqwest::Client,
    init_url: String,
    refresh_url: String,
    limits: Arc<RateLimits>,
    clock: Clock,
    /// The pair in use; the lock also serializes every obtain and refresh of this process.
    current: Mutex<Option<StoredToken>>,
}

impl TokenProvider {
    pub(crate) fn new(
        config: &JushuitanConfig,
        store: Option<Arc<dyn TokenStore>>,
        http: reqwest::Client,
        limits: Arc<RateLimits>,
        clock: Clock,
    ) -> Self {
        Self {
            mode: config.token_mode,
            app_key: config.app_key.clone(),
            app_secret: config.app_secret.clone(),
            configured_access: config.access_token.clone(),
            configured_refresh: config.refresh_token.clone(),
            margin: config.token_refresh_margin(),
            store,
            http,
            init_url: config.auth_url(INIT_ENDPOINT),
            refresh_url: config.auth_url(REFRESH_ENDPOINT),
            limits,
            clock,
            current: Mutex::new(None),
        }
    }

    /// Returns whether a rejected token (code 100) can be replaced by a refresh.
    pub(crate) fn refreshes(&self) -> bool {
        self.mode != TokenMode::Static
    }

    /// Returns the token to send, obtaining or refreshing it first when needed.
    pub(crate) async fn access_token(&self) -> Result<AccessToken, JstError> {
        if self.mode == TokenMode::Static {
            return Ok(AccessToken { secret: self.configured_access.clone(), version: None });
        }
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref().filter(|token| !self.refresh_due(token)) {
            return Ok(access_of(token));
        }

        let token = match self.load().await? {
            None => self.obtain_first().await?,
            Some(stored) if self.refresh_due(&stored) => self.refresh_ahead(stored).await?,
            Some(stored) => stored,
        };
        let access = access_of(&token);
        *current = Some(token);
        Ok(access)
    }

    /// Replaces a token the API rejected with code 100: uses a newer one when another task or
    /// process already refreshed it, and refreshes otherwise.
    pub(crate) async fn refresh_after_rejection(&self, rejected: &AccessToken) -> Result<AccessToken, JstError> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref().filter(|token| Some(token.version) != rejected.version) {
            return Ok(access_of(token));
        }
        let token = match self.load().await? {
            Some(stored) if Some(stored.version) != rejected.version => stored,
            Some(stored) => self.refresh(stored).await?,
            None => self.obtain_first().await?,
        };
        let access = access_of(&token);
        *current = Some(token);
        Ok(access)
    }

    fn refresh_due(&self, token: &StoredToken) -> bool {
        (self.clock)() >= token.expires_at - self.margin
    }

    async fn load(&self) -> Result<Option<StoredToken>, JstError> {
        let store = self.store()?;
        store.load_token(&self.app_key).await.map_err(JstError::TokenStore)
    }

    fn store(&self) -> Result<&Arc<dyn TokenStore>, JstError> {
        self.store.as_ref().ok_or_else(|| JstError::TokenUnavailable {
            message_en: "this token mode needs a token store, and the client was built without one".into(),
            message_zh: "该令牌模式需要令牌存储，但客户端未配置令牌存储".into(),
        })
    }

    /// Gets the first pair when the store is empty: `getInitToken` for a merchant application,
    /// the configured pair for a third-party one.
    async fn obtain_first(&self) -> Result<StoredToken, JstError> {
        let issued = match self.mode {
            TokenMode::Merchant => self.request_init_token().await?,
            _ => self.configured_pair()?,
        };
        self.install(None, issued).await
    }

    fn configured_pair(&self) -> Result<IssuedPair, JstError> {
        let access = self.configured_access.expose_secret().trim();
        if access.is_empty() {
            return Err(JstError::TokenUnavailable {
                message_en: "no token pair is stored for this app key; authorize the application and set \
                             jushuitan.access_token and jushuitan.refresh_token"
                    .into(),
                message_zh: "令牌存储中没有该 app_key 的令牌；请完成应用授权并设置 jushuitan.access_token 与 jushuitan.refresh_token".into(),
            });
        }
        Ok(IssuedPair {
            access_token: access.to_string(),
            refresh_token: self.configured_refresh.expose_secret().trim().to_string(),
            expires_in: SEEDED_TOKEN_LIFETIME.num_seconds(),
        })
    }

    /// Refreshes a token that is close to expiry. A third-party application whose refresh is
    /// refused keeps using its token until it actually expires, so the run goes on.
    async fn refresh_ahead(&self, stored: StoredToken) -> Result<StoredToken, JstError> {
        match self.refresh(stored.clone()).await {
            Err(error @ JstError::ReauthorizationRequired { .. }) if (self.clock)() < stored.expires_at => {
                warn!(expires_at = %stored.expires_at, error = %error, "jushuitan rejected the token refresh; using the current token until it expires");
                Ok(stored)
            }
            other => other,
        }
    }

    /// Refreshes `stale` and stores the new pair over its version. When the refresh fails
    /// because another refresher already used the refresh token, the winner's pair is used.
    async fn refresh(&self, stale: StoredToken) -> Result<StoredToken, JstError> {
        match self.request_refresh(&stale.refresh_token).await {
            Ok(issued) => self.install(Some(stale.version), issued).await,
            Err(error) => {
                if let Some(newer) = self.load().await?.filter(|stored| stored.version > stale.version) {
                    info!(version = newer.version, "jushuitan token was refreshed by another process; using its token");
                    return Ok(newer);
                }
                match (&error, self.mode) {
                    (JstError::TokenEndpoint { code, .. }, TokenMode::Merchant) => {
                        warn!(code, error = %error, "jushuitan token refresh failed; requesting a new initial token");
                        let issued = self.request_init_token().await?;
                        self.install(Some(stale.version), issued).await
                    }
                    _ => Err(error),
                }
            }
        }
    }

    /// Stores an issued pair over `expected_version`; when another refresher stored first, its
    /// pair is returned instead.
    async fn install(&self, expected_version: Option<u64>, issued: IssuedPair) -> Result<StoredToken, JstError> {
        let token = StoredToken {
            access_token: issued.access_token,
            refresh_token: issued.refresh_token,
            expires_at: (self.clock)() + Duration::seconds(issued.expires_in.max(0)),
            version: expected_version.map_or(1, |version| version + 1),
        };
        let store = self.store()?;
        if store.replace_token(&self.app_key, expected_version, &token).await.map_err(JstError::TokenStore)? {
            info!(version = token.version, expires_at = %token.expires_at, "jushuitan token stored");
            return Ok(token);
        }
        match self.load().await? {
            Some(winner) => {
                info!(version = winner.version, "another refresher stored a jushuitan token first; using it");
                Ok(winner)
            }
            None => Err(JstError::TokenUnavailable {
                message_en: "the token store rejected the new token and holds none; check the token store".into(),
                message_zh: "令牌存储拒绝保存新令牌且其中没有令牌，请检查令牌存储".into(),
            }),
        }
    }

    async fn request_init_token(&self) -> Result<IssuedPair, JstError> {
        // A merchant's own application may send any six characters as the code.
        let code: String = rand::rng().sample_iter(&Alphanumeric).take(6).map(char::from).collect();
        let fields = [("grant_type", "authorization_code".to_string()), ("code", code)];
        self.post_auth(INIT_ENDPOINT, &self.init_url, &fields).await
    }

    async fn request_refresh(&self, refresh_token: &str) -> Result<IssuedPair, JstError> {
        let fields = [
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh_token.to_string()),
            ("scope", "all".to_string()),
        ];
        self.post_auth(REFRESH_ENDPOINT, &self.refresh_url, &fields).await
    }

    /// Sends a signed token request: the common fields `app_key`, `timestamp` and `charset`
    /// plus the endpoint's own.
    async fn post_auth(&self, endpoint: &'static str, url: &str, extra: &[(&'static str, String)]) -> Result<IssuedPair, JstError> {
        self.limits.until_ready().await;
        let mut form: Vec<(&'static str, String)> = vec![
            ("app_key", self.app_key.clone()),
            ("timestamp", Utc::now().timestamp().to_string()),
            ("charset", "utf-8".to_string()),
        ];
        form.extend(extra.iter().cloned());
        let fields: Vec<(&str, &str)> = form.iter().map(|(key, value)| (*key, value.as_str())).collect();
        let signature = sign(self.app_secret.expose_secret(), &fields);
        form.push(("sign", signature));

        let response = self
            .http
            .post(url)
            .header(CONTENT_TYPE, FORM_CONTENT_TYPE)
            .form(&form)
            .send()
            .await
            .map_err(JstError::Transport)?;
        let status = response.status();
        let body = response.text().await.map_err(JstError::Transport)?;
        if status != reqwest::StatusCode::OK {
            return Err(JstError::HttpStatus { status: status.as_u16(), excerpt: body.chars().take(200).collect() });
        }
        self.decode_auth(endpoint, &body)
    }

    fn decode_auth(&self, endpoint: &'static str, body: &str) -> Result<IssuedPair, JstError> {
        let value: Value = serde_json::from_str(body)
            .map_err(|error| JstError::Decode(crate::wire::DecodeError::Body(format!("{endpoint} response is not JSON: {error}"))))?;
        let code = int_of(&value["code"]).unwrap_or(-1);
        let msg = value["msg"].as_str().unwrap_or_default().to_string();
        if code == CODE_INTERNAL && endpoint == REFRESH_ENDPOINT && self.mode == TokenMode::Isv {
            return Err(JstError::ReauthorizationRequired { code, msg });
        }
        if code != 0 {
            return Err(JstError::TokenEndpoint { endpoint, code, msg });
        }
        let data = &value["data"];
        let text = |key: &str| data[key].as_str().map(str::to_string).filter(|text| !text.is_empty());
        let missing = |key: &str| JstError::Decode(crate::wire::DecodeError::field(&format!("{endpoint}.data.{key}"), "is missing".into()));
        Ok(IssuedPair {
            access_token: text("access_token").ok_or_else(|| missing("access_token"))?,
            refresh_token: text("refresh_token").ok_or_else(|| missing("refresh_token"))?,
            expires_in: int_of(&data["expires_in"]).ok_or_else(|| missing("expires_in"))?,
        })
    }
}

fn access_of(token: &StoredToken) -> AccessToken {
    AccessToken { secret: SecretString::from(token.access_token.clone()), version: Some(token.version) }
}

/// Reads an integer sent as a JSON number or a numeric string.
fn int_of(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}
