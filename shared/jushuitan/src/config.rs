//! Settings of the JuShuiTan client, read from the `[jushuitan]` section of the configuration.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Production base URL of the current open platform.
pub const DEFAULT_BASE_URL: &str = "https://openapi.jushuitan.com";
/// Largest `page_size` that `inventory.count.query` serves.
pub const MAX_PAGE_SIZE: u32 = 50;

/// Default `max_calls_per_run`: 20 minutes of the default 100 calls per minute.
pub const DEFAULT_MAX_CALLS_PER_RUN: u32 = 2_000;
/// Default `token_refresh_margin_secs`: refresh one day before the access token expires.
pub const DEFAULT_TOKEN_REFRESH_MARGIN_SECS: u64 = 86_400;

/// Which JuShuiTan API the client calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// The current open platform: `POST {base}/open/inventory/count/query` with form fields.
    #[default]
    Open,
    /// The legacy gateway: `POST {base}/api/open/query.aspx?method=inventory.count.query&…` with
    /// the business JSON as the body. `app_key` is the partner id, `app_secret` the partner key
    /// and `access_token` the token.
    Legacy,
}

/// Where the access token comes from and who renews it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenMode {
    /// The configured `access_token`, never refreshed; another system renews it.
    #[default]
    Static,
    /// A merchant's own application: the client obtains a token with `getInitToken` when none is
    /// stored and refreshes it before it expires.
    Merchant,
    /// A third-party (ISV) application: the token pair comes from the token store, seeded from
    /// `access_token` and `refresh_token` when the store is empty. Refresh is attempted, and a
    /// refusal means the tenant must authorize the application again.
    Isv,
}

/// JuShuiTan client settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JushuitanConfig {
    /// Base URL without a trailing path, e.g. `https://openapi.jushuitan.com`, or
    /// `https://open.erp321.com` for the legacy gateway.
    pub base_url: String,
    pub protocol: Protocol,
    pub app_key: String,
    pub app_secret: SecretString,
    /// The access token of `token_mode = "static"`, and the seed of the store in `isv` mode.
    pub access_token: SecretString,
    /// The refresh token that seeds the store in `isv` mode; unused otherwise.
    pub refresh_token: SecretString,
    pub token_mode: TokenMode,
    /// How long before `expires_in` ends the client refreshes the token, in seconds.
    pub token_refresh_margin_secs: u64,
    /// Largest number of HTTP requests one fetch run may send, retries included. When it is
    /// used up, the run stops with a retry-later error and the watermark stays at the last
    /// complete window.
    pub max_calls_per_run: u32,
    /// Whether a window that took more than one page is read again after its last page, to
    /// catch sheets that page drift moved onto a page already read. Costs one more read of each
    /// such window.
    pub recheck_paged_windows: bool,
    /// Sheets per page, 1 to 50.
    pub page_size: u32,
    /// Client-side limit of calls per second; JuShuiTan returns code 199 above its own limit.
    pub calls_per_second: u32,
    /// Client-side limit of calls per minute; JuShuiTan returns code 200 above its own limit.
    pub calls_per_minute: u32,
    /// Timeout of one HTTP request, in seconds.
    pub request_timeout_secs: u64,
    /// Retries of one page after throttling (codes 199 and 200).
    pub max_retries: u32,
    /// Retries of one page after a transport failure, a timeout or an HTTP 5xx status.
    pub max_transport_retries: u32,
    /// First backoff delay before a retry, in milliseconds; later delays double, with jitter.
    pub retry_min_delay_ms: u64,
    /// Maximum backoff delay before a retry, in milliseconds.
    pub retry_max_delay_ms: u64,
}

impl Default for JushuitanConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_string(),
            app_key: String::new(),
            app_secret: SecretString::from(String::new()),
            access_token: SecretString::from(String::new()),
            refresh_token: SecretString::from(String::new()),
            protocol: Protocol::Open,
            token_mode: TokenMode::Static,
            token_refresh_margin_secs: DEFAULT_TOKEN_REFRESH_MARGIN_SECS,
            max_calls_per_run: DEFAULT_MAX_CALLS_PER_RUN,
            recheck_paged_windows: true,
            page_size: MAX_PAGE_SIZE,
            calls_per_second: 5,
            calls_per_minute: 100,
            request_timeout_secs: 30,
            max_retries: 5,
            max_transport_retries: 3,
            retry_min_delay_ms: 500,
            retry_max_delay_ms: 30_000,
        }
    }
}

/// A setting the client cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `{key}`: {message}")]
pub struct ConfigError {
    /// Configuration key, e.g. `jushuitan.app_key`.
    pub key: String,
    pub message: String,
}

fn invalid(key: &str, message: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError { key: format!("jushuitan.{key}"), message: message.into() })
}

impl JushuitanConfig {
    /// Checks every setting; the error names the key and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_base_url()?;
        if self.app_key.trim().is_empty() {
            return invalid("app_key", "missing; set the app key of the JuShuiTan open platform application");
        }
        if self.app_secret.expose_secret().trim().is_empty() {
            return invalid("app_secret", "missing; set the app secret of the JuShuiTan open platform application");
        }
        self.validate_token_mode()?;
        if !(1..=MAX_PAGE_SIZE).contains(&self.page_size) {
            return invalid("page_size", format!("{} is out of range; use 1 to {MAX_PAGE_SIZE}", self.page_size));
        }
        if self.calls_per_second == 0 {
            return invalid("calls_per_second", "must be at least 1; the default package allows 5");
        }
        if self.calls_per_minute == 0 {
            return invalid("calls_per_minute", "must be at least 1; the default package allows 100");
        }
        if self.request_timeout_secs == 0 {
            return invalid("request_timeout_secs", "must be at least 1 second");
        }
        if self.max_calls_per_run == 0 {
            return invalid("max_calls_per_run", format!("must be at least 1; the default is {DEFAULT_MAX_CALLS_PER_RUN}"));
        }
        if self.retry_min_delay_ms > self.retry_max_delay_ms {
            return invalid(
                "retry_min_delay_ms",
                format!("{} is larger than retry_max_delay_ms {}", self.retry_min_delay_ms, self.retry_max_delay_ms),
            );
        }
        Ok(())
    }

    fn validate_token_mode(&self) -> Result<(), ConfigError> {
        let has_token = !self.access_token.expose_secret().trim().is_empty();
        match (self.token_mode, self.protocol) {
            (TokenMode::Static, _) if !has_token => {
                invalid("access_token", "missing; set the access token issued for the JuShuiTan tenant, or choose token_mode \"merchant\"")
            }
            (TokenMode::Merchant | TokenMode::Isv, Protocol::Legacy) => invalid(
                "token_mode",
                "the legacy gateway has no token refresh; use token_mode = \"static\" with protocol = \"legacy\"",
            ),
            _ => Ok(()),
        }
    }

    fn validate_base_url(&self) -> Result<(), ConfigError> {
        let url = self.base_url.trim();
        match reqwest::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Ok(()),
            Ok(parsed) => invalid("base_url", format!("{url:?} has scheme {:?}; use https", parsed.scheme())),
            Err(error) => invalid("base_url", format!("{url:?} is not a URL ({error}); e.g. {DEFAULT_BASE_URL}")),
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    pub fn token_refresh_margin(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.token_refresh_margin_secs).unwrap_or(i64::MAX / 1_000))
    }

    fn base(&self) -> &str {
        self.base_url.trim().trim_end_matches('/')
    }

    /// Returns the URL of `inventory.count.query` on the current open platform.
    pub fn count_query_url(&self) -> String {
        format!("{}/open/inventory/count/query", self.base())
    }

    /// Returns the URL of the legacy gateway, without its query string.
    pub fn legacy_url(&self) -> String {
        format!("{}/api/open/query.aspx", self.base())
    }

    /// Returns the URL of a token endpoint, e.g. `getInitToken` or `refreshToken`.
    pub fn auth_url(&self, endpoint: &str) -> String {
        format!("{}/openWeb/auth/{endpoint}", self.base())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> JushuitanConfig {
        JushuitanConfig {
            app_key: "key".into(),
            app_secret: SecretString::from("secret"),
            access_token: SecretString::from("token"),
            ..Default::default()
        }
    }

    fn key_of(config: &JushuitanConfig) -> String {
        config.validate().unwrap_err().key
    }

    #[test]
    fn defaults_are_documented_limits() {
        let config = JushuitanConfig::default();
        assert_eq!(config.base_url, "https://openapi.jushuitan.com");
        assert_eq!(config.page_size, 50);
        assert_eq!(config.calls_per_second, 5);
        assert_eq!(config.calls_per_minute, 100);
        assert_eq!(config.request_timeout_secs, 30);
        assert_eq!(config.max_retries, 5);
        assert_eq!(config.max_calls_per_run, 2_000);
        assert_eq!(config.token_refresh_margin_secs, 86_400);
        assert_eq!(config.token_mode, TokenMode::Static);
        assert_eq!(config.protocol, Protocol::Open);
    }

    #[test]
    fn validate_accepts_complete_config() {
        assert_eq!(valid().validate(), Ok(()));
    }

    #[test]
    fn validate_names_missing_keys() {
        assert_eq!(key_of(&JushuitanConfig { app_key: " ".into(), ..valid() }), "jushuitan.app_key");
        assert_eq!(key_of(&JushuitanConfig { app_secret: SecretString::from(""), ..valid() }), "jushuitan.app_secret");
        assert_eq!(key_of(&JushuitanConfig { access_token: SecretString::from(""), ..valid() }), "jushuitan.access_token");
    }

    #[test]
    fn validate_rejects_bad_values() {
        assert_eq!(key_of(&JushuitanConfig { page_size: 51, ..valid() }), "jushuitan.page_size");
        assert_eq!(key_of(&JushuitanConfig { page_size: 0, ..valid() }), "jushuitan.page_size");
        assert_eq!(key_of(&JushuitanConfig { calls_per_second: 0, ..valid() }), "jushuitan.calls_per_second");
        assert_eq!(key_of(&JushuitanConfig { calls_per_minute: 0, ..valid() }), "jushuitan.calls_per_minute");
        assert_eq!(key_of(&JushuitanConfig { base_url: "openapi.jushuitan.com".into(), ..valid() }), "jushuitan.base_url");
        assert_eq!(key_of(&JushuitanConfig { base_url: "ftp://example.invalid".into(), ..valid() }), "jushuitan.base_url");
    }

    #[test]
    fn page_size_message_names_value_and_range() {
        let error = JushuitanConfig { page_size: 80, ..valid() }.validate().unwrap_err();
        assert!(error.message.contains("80"), "{}", error.message);
        assert!(error.message.contains("1 to 50"), "{}", error.message);
    }

    #[test]
    fn merchant_mode_needs_no_token() {
        let config = JushuitanConfig { token_mode: TokenMode::Merchant, access_token: SecretString::from(""), ..valid() };
        assert_eq!(config.validate(), Ok(()));
        let isv = JushuitanConfig { token_mode: TokenMode::Isv, access_token: SecretString::from(""), ..valid() };
        assert_eq!(isv.validate(), Ok(()));
    }

    #[test]
    fn legacy_rejects_refreshing_modes() {
        let config = JushuitanConfig { protocol: Protocol::Legacy, token_mode: TokenMode::Merchant, ..valid() };
        let error = config.validate().unwrap_err();
        assert_eq!(error.key, "jushuitan.token_mode");
        assert!(error.message.contains("static"), "{}", error.message);
        assert_eq!(JushuitanConfig { protocol: Protocol::Legacy, ..valid() }.validate(), Ok(()));
    }

    #[test]
    fn zero_call_budget_rejected() {
        assert_eq!(key_of(&JushuitanConfig { max_calls_per_run: 0, ..valid() }), "jushuitan.max_calls_per_run");
    }

    #[test]
    fn deserialize_reads_modes() {
        let parsed: JushuitanConfig = serde_json::from_str(
            r#"{"app_key":"k","app_secret":"s","protocol":"legacy","token_mode":"static","access_token":"t","max_calls_per_run":30}"#,
        )
        .unwrap();
        assert_eq!(parsed.protocol, Protocol::Legacy);
        assert_eq!(parsed.token_mode, TokenMode::Static);
        assert_eq!(parsed.max_calls_per_run, 30);
        let bad: Result<JushuitanConfig, _> = serde_json::from_str(r#"{"token_mode":"oauth"}"#);
        assert!(bad.unwrap_err().to_string().contains("oauth"));
    }

    #[test]
    fn deserialize_rejects_unknown_keys() {
        let parsed: Result<JushuitanConfig, _> = serde_json::from_str(r#"{"app_key":"k","pagesize":10}"#);
        assert!(parsed.is_err());
    }

    #[test]
    fn deserialize_fills_defaults() {
        let parsed: JushuitanConfig = serde_json::from_str(r#"{"app_key":"k","app_secret":"s","access_token":"t"}"#).unwrap();
        assert_eq!(parsed.app_key, "k");
        assert_eq!(parsed.page_size, 50);
        assert_eq!(parsed.validate(), Ok(()));
    }

    #[test]
    fn debug_hides_secrets() {
        let text = format!("{:?}", JushuitanConfig { app_secret: SecretString::from("very-secret-value"), ..valid() });
        assert!(!text.contains("very-secret-value"));
    }

    #[test]
    fn count_query_url_joins_path() {
        let config = JushuitanConfig { base_url: "http://127.0.0.1:9/".into(), ..valid() };
        assert_eq!(config.count_query_url(), "http://127.0.0.1:9/open/inventory/count/query");
        assert_eq!(config.legacy_url(), "http://127.0.0.1:9/api/open/query.aspx");
        assert_eq!(config.auth_url("refreshToken"), "http://127.0.0.1:9/openWeb/auth/refreshToken");
    }
}
