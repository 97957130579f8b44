//! Errors of the JuShuiTan client and their retry classification.

use countsync_core::Retry;
use countsync_core::ports::SourceError;

use crate::config::ConfigError;
use crate::wire::DecodeError;

/// Invalid signature on the current platform.
pub const CODE_BAD_SIGNATURE: i64 = 10;
/// Access token invalid or expired.
pub const CODE_TOKEN_INVALID: i64 = 100;
/// Caller IP address not on the application's whitelist.
pub const CODE_IP_NOT_ALLOWED: i64 = 110;
/// Invalid signature on the legacy gateway.
pub const CODE_BAD_SIGNATURE_LEGACY: i64 = 120;
/// Empty data, as the documentation describes it.
pub const CODE_EMPTY_DATA: i64 = 130;
/// Invalid parameters.
pub const CODE_BAD_PARAMETERS: i64 = 140;
/// Internal error of JuShuiTan.
pub const CODE_INTERNAL: i64 = 150;
/// Timestamp outside the server's tolerance.
pub const CODE_BAD_TIMESTAMP: i64 = 180;
/// No permission for the interface.
pub const CODE_NO_PERMISSION: i64 = 190;
/// More calls per second than the package allows.
pub const CODE_THROTTLED_SECOND: i64 = 199;
/// More calls per minute than the package allows.
pub const CODE_THROTTLED_MINUTE: i64 = 200;

/// A failed JuShuiTan call, after the client's own retries.
#[derive(Debug, thiserror::Error)]
pub enum JstError {
    /// The request is rejected until an operator fixes the configuration (codes 10, 110, 120,
    /// 140, 190).
    #[error("jushuitan rejected the request with code {code} ({msg}): {hint_en} / {hint_zh}")]
    Configuration { code: i64, msg: String, hint_en: &'static str, hint_zh: &'static str },

    /// Code 100 in `static` token mode, or again right after a refresh.
    #[error(
        "jushuitan access token is invalid or expired (code {code}, {msg}): replace jushuitan.access_token / \
         聚水潭 access_token 无效或已过期，请更新 jushuitan.access_token"
    )]
    TokenInvalid { code: i64, msg: String },

    /// The token endpoint refused to refresh a third-party application's token (code 150 since
    /// 2023-08-15): only a new authorization by the tenant helps.
    #[error(
        "jushuitan rejected the access token refresh (code {code}, {msg}): the tenant must authorize the \
         application again and the new token pair must be stored / 聚水潭拒绝刷新 access_token，请商家重新授权应用并保存新的令牌"
    )]
    ReauthorizationRequired { code: i64, msg: String },

    /// No token pair is stored and none can be obtained without an operator.
    #[error("jushuitan token unavailable: {message_en} / {message_zh}")]
    TokenUnavailable { message_en: String, message_zh: String },

    /// A token endpoint returned a non-zero code.
    #[error("jushuitan token endpoint {endpoint} returned code {code}: {msg}")]
    TokenEndpoint { endpoint: &'static str, code: i64, msg: String },

    #[error("jushuitan token store failed: {0}")]
    TokenStore(#[source] countsync_core::ports::StoreError),

    #[error(
        "jushuitan call budget of {max} calls for this run is used up; the next run continues from the \
         watermark / 本次运行的聚水潭调用次数（{max}）已用完，下次运行将从水位继续"
    )]
    CallBudgetExhausted { max: u32 },

    #[error(
        "sheets of window {begin}..{end} kept moving during {passes} re-checks; the next run reads the window again / \
         盘点单在分页读取期间持续变动，下次运行将重新读取该时间窗口"
    )]
    WindowUnsettled { begin: chrono::DateTime<chrono::Utc>, end: chrono::DateTime<chrono::Utc>, passes: u32 },

    #[error("jushuitan throttled the request with code {code} ({msg}) after {attempts} attempts / 聚水潭接口限流，稍后重试")]
    Throttled { code: i64, msg: String, attempts: u32 },

    #[error("jushuitan rejected the timestamp (code {code}, {msg}) twice: check the host clock / 聚水潭拒绝时间戳，请检查服务器时钟")]
    Timestamp { code: i64, msg: String },

    /// Any other non-zero code, among them 150 (internal error) and 130 (empty data).
    #[error("jushuitan returned code {code}: {msg}")]
    Api { code: i64, msg: String },

    #[error("jushuitan returned HTTP status {status}: {excerpt}")]
    HttpStatus { status: u16, excerpt: String },

    #[error("jushuitan request failed: {0}")]
    Transport(#[source] reqwest::Error),

    #[error("jushuitan response cannot be decoded: {0}")]
    Decode(#[from] DecodeError),

    #[error("invalid jushuitan request: {0}")]
    InvalidRequest(String),

    #[error("{0}")]
    Config(#[from] ConfigError),
}

impl JstError {
    /// Classifies a non-zero response code.
    pub fn from_code(code: i64, msg: String) -> Self {
        let configuration = |hint_en, hint_zh| JstError::Configuration { code, msg: msg.clone(), hint_en, hint_zh };
        match code {
            CODE_BAD_SIGNATURE | CODE_BAD_SIGNATURE_LEGACY => configuration(
                "check jushuitan.app_key and jushuitan.app_secret",
                "请检查 jushuitan.app_key 与 jushuitan.app_secret",
            ),
            CODE_IP_NOT_ALLOWED => configuration(
                "add the caller's public IP address to the application's whitelist",
                "请将调用方公网 IP 加入应用白名单",
            ),
            CODE_NO_PERMISSION => configuration(
                "grant the application access to inventory.count.query",
                "请为应用开通库存盘点查询（inventory.count.query）接口权限",
            ),
            CODE_BAD_PARAMETERS => configuration(
                "check jushuitan.page_size (at most 50), the window span (at most 7 days) and jushuitan.base_url",
                "请检查 jushuitan.page_size（最大 50）、查询时间跨度（最多 7 天）与 jushuitan.base_url",
            ),
            CODE_TOKEN_INVALID => JstError::TokenInvalid { code, msg },
            CODE_THROTTLED_SECOND | CODE_THROTTLED_MINUTE => JstError::Throttled { code, msg, attempts: 1 },
            CODE_BAD_TIMESTAMP => JstError::Timestamp { code, msg },
            _ => JstError::Api { code, msg },
        }
    }

    /// Returns JuShuiTan's `code`, or `None` when the response carried none.
    pub fn code(&self) -> Option<i64> {
        match self {
            JstError::Configuration { code, .. }
            | JstError::TokenInvalid { code, .. }
            | JstError::Throttled { code, .. }
            | JstError::Timestamp { code, .. }
            | JstError::Api { code, .. }
            | JstError::ReauthorizationRequired { code, .. }
            | JstError::TokenEndpoint { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub fn retry(&self) -> Retry {
        match self {
            JstError::Configuration { .. }
            | JstError::InvalidRequest(_)
            | JstError::Config(_)
            | JstError::ReauthorizationRequired { .. }
            | JstError::TokenUnavailable { .. } => Retry::Never,
            JstError::TokenStore(error) => error.retry,
            // A sheet that cannot be decoded fails the same way until its data changes.
            JstError::Decode(DecodeError::Sheet { .. }) => Retry::Never,
            JstError::HttpStatus { status, .. } if !is_transient_status(*status) => Retry::Never,
            _ => Retry::Later,
        }
    }

    pub(crate) fn is_throttled(&self) -> bool {
        matches!(self, JstError::Throttled { .. })
    }

    pub(crate) fn is_transient_transport(&self) -> bool {
        match self {
            JstError::Transport(_) => true,
            JstError::HttpStatus { status, .. } => is_transient_status(*status),
            _ => false,
        }
    }
}

/// HTTP statuses worth a retry: timeouts, throttling and server errors.
fn is_transient_status(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

impl From<JstError> for SourceError {
    fn from(error: JstError) -> Self {
        SourceError { code: error.code(), retry: error.retry(), message: error.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_codes_never_retry() {
        for code in [10, 110, 120, 140, 190] {
            let error = JstError::from_code(code, "rejected".into());
            assert_eq!(error.retry(), Retry::Never, "code {code}");
            assert_eq!(error.code(), Some(code));
        }
    }

    #[test]
    fn transient_codes_retry_later() {
        for code in [100, 130, 150, 180, 199, 200, 999] {
            assert_eq!(JstError::from_code(code, "x".into()).retry(), Retry::Later, "code {code}");
        }
    }

    #[test]
    fn signature_message_is_bilingual() {
        let message = JstError::from_code(10, "签名错误".into()).to_string();
        assert!(message.contains("jushuitan.app_secret"), "{message}");
        assert!(message.contains("请检查"), "{message}");
        assert!(message.contains("签名错误"), "{message}");
    }

    #[test]
    fn source_error_keeps_code_and_class() {
        let source: SourceError = JstError::from_code(100, "token expired".into()).into();
        assert_eq!(source.code, Some(100));
        assert_eq!(source.retry, Retry::Later);
        assert!(source.message.contains("access_token"));
    }

    #[test]
    fn token_and_budget_classes() {
        let refused = JstError::ReauthorizationRequired { code: 150, msg: "not allowed".into() };
        assert_eq!(refused.retry(), Retry::Never);
        assert!(refused.to_string().contains("authorize"), "{refused}");
        assert!(refused.to_string().contains("重新授权"), "{refused}");
        let budget = JstError::CallBudgetExhausted { max: 30 };
        assert_eq!(budget.retry(), Retry::Later);
        assert!(budget.to_string().contains("30"), "{budget}");
    }

    #[test]
    fn http_status_classes() {
        let status = |status| JstError::HttpStatus { status, excerpt: String::new() };
        assert_eq!(status(503).retry(), Retry::Later);
        assert_eq!(status(429).retry(), Retry::Later);
        assert_eq!(status(404).retry(), Retry::Never);
        assert!(status(502).is_transient_transport());
        assert!(!status(404).is_transient_transport());
    }
}
