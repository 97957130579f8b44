//! Settings of the Kingdee client, read from the `[kingdee]` section of the configuration.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::sign;

/// Authentication method of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Per-request signed headers with app id and app secret, as the official SDK does.
    #[default]
    SignedHeaders,
    /// A ValidateUser session with user name and password.
    Password,
    /// A LoginByAppSecret session with app id and app secret.
    AppSecret,
    /// A LoginBySign session: app id and a SHA-256 signature over the app secret and a timestamp.
    SignedLogin,
}

impl AuthMode {
    /// Returns whether the mode logs in once and then sends the session id with every call.
    pub fn uses_login(self) -> bool {
        !matches!(self, AuthMode::SignedHeaders)
    }
}

/// Kingdee connection settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KingdeeConfig {
    /// Base URL ending with the virtual directory, e.g. `https://erp.example.com/k3cloud/`.
    pub server_url: String,
    pub auth: AuthMode,
    /// Data-centre id (账套ID).
    pub acct_id: String,
    /// Integration user name.
    pub username: String,
    /// Password of `username`; password mode only.
    pub password: SecretString,
    /// App id (应用ID) of the third-party system login authorization; all modes but password.
    pub app_id: String,
    /// App secret (应用密钥); all modes but password.
    pub app_secret: SecretString,
    /// Language id: 2052 Simplified Chinese.
    pub lcid: u32,
    /// Organization number sent in `X-Kd-Appdata`; 0 uses the user's default organization.
    pub org_num: u64,
    /// Timeout of save calls, in seconds.
    pub request_timeout_secs: u64,
    /// Timeout of logins and lookups, in seconds.
    pub lookup_timeout_secs: u64,
    /// Extra attempts of a call that Kingdee refused as a whole with MsgCode 13 (lock conflict)
    /// or 14 (call limit); 0 turns the in-client retry off.
    pub busy_retries: usize,
    /// First delay before such a retry, in milliseconds; later delays double, with jitter.
    pub busy_backoff_ms: u64,
}

impl Default for KingdeeConfig {
    fn default() -> Self {
        Self {
            server_url: String::new(),
            auth: AuthMode::SignedHeaders,
            acct_id: String::new(),
            username: String::new(),
            password: SecretString::from(""),
            app_id: String::new(),
            app_secret: SecretString::from(""),
            lcid: 2052,
            org_num: 0,
            request_timeout_secs: 60,
            lookup_timeout_secs: 15,
            busy_retries: 3,
            busy_backoff_ms: 1_000,
        }
    }
}

/// A Kingdee setting the client cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `{key}`: {message}")]
pub struct ConfigError {
    /// Configuration key, e.g. `kingdee.app_id`.
    pub key: String,
    pub message: String,
}

impl KingdeeConfig {
    /// Checks the settings; the error names the key and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_server_url()?;
        require("acct_id", &self.acct_id, "set the data-centre id (账套ID) shown on the Kingdee login page")?;
        require("username", &self.username, "set the integration user's name")?;
        if self.lcid == 0 {
            return invalid("lcid", "must not be 0; use 2052 for Simplified Chinese".into());
        }
        for (key, seconds) in [("request_timeout_secs", self.request_timeout_secs), ("lookup_timeout_secs", self.lookup_timeout_secs)] {
            if seconds == 0 || seconds > 900 {
                return invalid(key, format!("{seconds} is out of range; use 1 to 900 seconds"));
            }
        }
        if self.busy_retries > 10 {
            return invalid("busy_retries", format!("{} is out of range; use 0 to 10", self.busy_retries));
        }
        if self.busy_backoff_ms == 0 || self.busy_backoff_ms > 60_000 {
            return invalid("busy_backoff_ms", format!("{} is out of range; use 1 to 60000 milliseconds", self.busy_backoff_ms));
        }
        match self.auth {
            AuthMode::Password => {
                require("password", self.password.expose_secret(), "set the password of the integration user, or use auth = \"signed_headers\"")
            }
            AuthMode::SignedHeaders => self.validate_app_credentials(),
            AuthMode::AppSecret | AuthMode::SignedLogin => self.validate_login_credentials(),
        }
    }

    fn validate_server_url(&self) -> Result<(), ConfigError> {
        let url = &self.server_url;
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return invalid("server_url", format!("{url:?} must start with https://, e.g. \"https://erp.example.com/k3cloud/\""));
        }
        if url.starts_with("http://") && !is_loopback(url) {
            return invalid("server_url", format!("{url:?} uses plain http, which would send credentials unencrypted; use https://"));
        }
        if !url.ends_with('/') {
            return invalid("server_url", format!("{url:?} must end with '/', e.g. \"{url}/\""));
        }
        if sign::url_path(url).is_empty() || sign::url_path(url) == "/" {
            return invalid("server_url", format!("{url:?} has no virtual directory; it usually ends with /k3cloud/"));
        }
        Ok(())
    }

    fn validate_app_credentials(&self) -> Result<(), ConfigError> {
        require("app_id", &self.app_id, "set the app id (应用ID) of the third-party system login authorization")?;
        if let Err(error) = sign::parse_app_id(&self.app_id) {
            return invalid("app_id", error.to_string());
        }
        require("app_secret", self.app_secret.expose_secret(), "set the app secret (应用密钥) that belongs to kingdee.app_id")
    }

    /// Checks the app id and secret of LoginByAppSecret and LoginBySign, which take the app id
    /// as the authorization screen shows it, without the signed-headers format check.
    fn validate_login_credentials(&self) -> Result<(), ConfigError> {
        require("app_id", &self.app_id, "set the app id (应用ID) of the third-party system login authorization (第三方系统登录授权)")?;
        require("app_secret", self.app_secret.expose_secret(), "set the app secret (应用密钥) that belongs to kingdee.app_id")
    }

    /// Returns the URL of a service, e.g. `…/k3cloud/Kingdee.BOS.WebApi.ServicesStub.AuthService.ValidateUser.common.kdsvc`.
    pub fn service_url(&self, service: &str) -> String {
        format!("{}{service}.common.kdsvc", self.server_url)
    }
}

/// Returns whether a URL's host is the local machine, where plain http is allowed for simulators.
fn is_loopback(url: &str) -> bool {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = after_scheme.split('/').next().unwrap_or_default();
    let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

fn require(key: &str, value: &str, fix: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return invalid(key, format!("missing; {fix}"));
    }
    Ok(())
}

fn invalid(key: &str, message: String) -> Result<(), ConfigError> {
    Err(ConfigError { key: format!("kingdee.{key}"), message })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed() -> KingdeeConfig {
        KingdeeConfig {
            server_url: "https://erp.example.com/k3cloud/".into(),
            acct_id: "fakeacct001".into(),
            username: "demo".into(),
            app_id: "999999_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX".into(),
            app_secret: SecretString::from("0123456789abcdef0123456789abcdef"),
            ..KingdeeConfig::default()
        }
    }

    #[test]
    fn defaults_match_documentation() {
        let config = KingdeeConfig::default();
        assert_eq!(config.auth, AuthMode::SignedHeaders);
        assert_eq!(config.lcid, 2052);
        assert_eq!(config.org_num, 0);
        assert_eq!(config.request_timeout_secs, 60);
        assert_eq!(config.lookup_timeout_secs, 15);
        assert_eq!(config.busy_retries, 3);
        assert_eq!(config.busy_backoff_ms, 1_000);
    }

    #[test]
    fn login_modes_need_app_credentials() {
        for auth in [AuthMode::AppSecret, AuthMode::SignedLogin] {
            assert_eq!(KingdeeConfig { auth, app_id: "999999".into(), ..signed() }.validate(), Ok(()));
            let missing_secret = KingdeeConfig { auth, app_secret: SecretString::from(" "), ..signed() };
            assert_eq!(missing_secret.validate().unwrap_err().key, "kingdee.app_secret");
            let missing_id = KingdeeConfig { auth, app_id: String::new(), ..signed() };
            assert_eq!(missing_id.validate().unwrap_err().key, "kingdee.app_id");
        }
        let parsed: KingdeeConfig = serde_json::from_str(r#"{"auth":"signed_login"}"#).unwrap();
        assert_eq!(parsed.auth, AuthMode::SignedLogin);
        let parsed: KingdeeConfig = serde_json::from_str(r#"{"auth":"app_secret"}"#).unwrap();
        assert_eq!(parsed.auth, AuthMode::AppSecret);
    }

    #[test]
    fn valid_signed_config_passes() {
        assert_eq!(signed().validate(), Ok(()));
    }

    #[test]
    fn validate_names_the_key() {
        let cases: Vec<(KingdeeConfig, &str)> = vec![
            (KingdeeConfig { server_url: "erp.example.com/k3cloud/".into(), ..signed() }, "kingdee.server_url"),
            (KingdeeConfig { server_url: "https://erp.example.com/k3cloud".into(), ..signed() }, "kingdee.server_url"),
            (KingdeeConfig { server_url: "https://erp.example.com/".into(), ..signed() }, "kingdee.server_url"),
            (KingdeeConfig { server_url: "http://erp.example.com/k3cloud/".into(), ..signed() }, "kingdee.server_url"),
            (KingdeeConfig { acct_id: " ".into(), ..signed() }, "kingdee.acct_id"),
            (KingdeeConfig { username: String::new(), ..signed() }, "kingdee.username"),
            (KingdeeConfig { app_id: String::new(), ..signed() }, "kingdee.app_id"),
            (KingdeeConfig { app_id: "999999".into(), ..signed() }, "kingdee.app_id"),
            (KingdeeConfig { app_secret: SecretString::from(""), ..signed() }, "kingdee.app_secret"),
            (KingdeeConfig { auth: AuthMode::Password, ..signed() }, "kingdee.password"),
            (KingdeeConfig { request_timeout_secs: 0, ..signed() }, "kingdee.request_timeout_secs"),
            (KingdeeConfig { lookup_timeout_secs: 901, ..signed() }, "kingdee.lookup_timeout_secs"),
            (KingdeeConfig { busy_retries: 11, ..signed() }, "kingdee.busy_retries"),
            (KingdeeConfig { busy_backoff_ms: 0, ..signed() }, "kingdee.busy_backoff_ms"),
        ];
        for (config, key) in cases {
            assert_eq!(config.validate().unwrap_err().key, key);
        }
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let config = KingdeeConfig { server_url: "http://127.0.0.1:8080/k3cloud/".into(), ..signed() };
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn deserialize_rejects_unknown_keys() {
        let parsed: Result<KingdeeConfig, _> = serde_json::from_str(r#"{"server_url":"https://a/k3cloud/","apikey":"x"}"#);
        assert!(parsed.is_err());
        let parsed: KingdeeConfig = serde_json::from_str(r#"{"auth":"password","password":"p"}"#).unwrap();
        assert_eq!(parsed.auth, AuthMode::Password);
        assert_eq!(parsed.password.expose_secret(), "p");
    }
}
