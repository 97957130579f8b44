//! Errors of the Kingdee client and their retry classification.

use countsync_core::Retry;
use countsync_core::ports::{MSG_CODE_CALL_LIMIT, MSG_CODE_LOCKED, TargetError};

use crate::config::ConfigError;

/// A failed Kingdee call.
#[derive(Debug, thiserror::Error)]
pub enum KingdeeError {
    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error("building the HTTP client failed: {0}")]
    Build(#[source] reqwest::Error),

    /// The connection failed before the request was sent, so nothing reached Kingdee.
    #[error("connecting to Kingdee for {service} failed before the request was sent: {source}")]
    Connect {
        service: String,
        #[source]
        source: reqwest::Error,
    },

    /// The request was sent but no complete response came back (timeout, reset, unreadable body).
    #[error("Kingdee call {service} failed after the request was sent, so its outcome is unknown: {source}")]
    Transport {
        service: String,
        #[source]
        source: reqwest::Error,
    },

    #[error("Kingdee call {service} returned HTTP {status}: {excerpt}")]
    Http { service: String, status: u16, excerpt: String },

    /// A login call returned a `LoginResultType` other than 1.
    #[error("Kingdee login failed (金蝶登录失败): LoginResultType {result_type:?}, {message}; check {keys}")]
    Login {
        result_type: Option<i64>,
        message: String,
        /// Configuration keys the login used, for the operator to check.
        keys: &'static str,
    },

    /// Too little time is left before the caller's deadline to send a save and still look the
    /// bills up afterwards.
    #[error("too little time left for Kingdee call {service}: {remaining_ms} ms before the deadline, after keeping the lookup timeout free (剩余时间不足，未发送)")]
    OutOfTime { service: String, remaining_ms: i64 },

    /// MsgCode 1 although the client had just authenticated: the settings are wrong.
    #[error(
        "Kingdee rejected the credentials of {service} right after authenticating (MsgCode 1, 会话信息已丢失). \
         金蝶在重新认证后仍返回会话丢失，请检查：数据中心ID（kingdee.acct_id）、第三方系统登录授权（应用ID与应用密钥是否匹配、是否启用、是否过期）、\
         集成用户（kingdee.username）是否存在并已授权、调用方 IP 是否在白名单中. \
         Check the data-centre id (kingdee.acct_id), the app authorization (app id and secret match, enabled, not expired), \
         the integration user (kingdee.username) and the IP allow-list"
    )]
    Misconfigured { service: String },

    /// MsgCode 1 during a save: the session has been reset, but the save is not re-sent.
    #[error(
        "the Kingdee session was lost during {service}; the save was not re-sent and must be checked by bill number first \
         (金蝶会话已丢失，保存未重发，请先按单据编号查询)"
    )]
    SessionLostDuringSave { service: String },

    /// Kingdee returned a failed `ResponseStatus` that applies to the whole call.
    #[error("Kingdee call {service} failed: MsgCode {msg_code:?}, ErrorCode {error_code:?}: {message}")]
    Rejected { service: String, msg_code: Option<i64>, error_code: Option<i64>, message: String },

    /// The body does not have a shape this client recognizes, or states no outcome.
    #[error("Kingdee call {service} returned a response without a usable result: {excerpt}")]
    Unreadable { service: String, excerpt: String },

    /// Plain text starting with `response_error:`: an exception on the server.
    #[error("Kingdee call {service} failed with a server exception: {message}")]
    Server { service: String, message: String },

    /// The caller passed something Kingdee cannot be asked.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl KingdeeError {
    /// Returns how the caller should retry.
    pub fn retry(&self) -> Retry {
        match self {
            KingdeeError::Config(_) | KingdeeError::Build(_) | KingdeeError::Login { .. } => Retry::Never,
            KingdeeError::Misconfigured { .. } | KingdeeError::InvalidRequest(_) => Retry::Never,
            KingdeeError::Connect { .. } | KingdeeError::Transport { .. } | KingdeeError::OutOfTime { .. } => Retry::Later,
            KingdeeError::SessionLostDuringSave { .. } | KingdeeError::Unreadable { .. } | KingdeeError::Server { .. } => Retry::Later,
            KingdeeError::Http { status, .. } => match status {
                408 | 429 | 500..=599 => Retry::Later,
                _ => Retry::Never,
            },
            KingdeeError::Rejected { msg_code, .. } => match msg_code {
                Some(MSG_CODE_LOCKED | MSG_CODE_CALL_LIMIT) => Retry::Later,
                _ => Retry::Never,
            },
        }
    }

    /// Returns whether Kingdee refused the whole call for a lock conflict (MsgCode 13) or the call
    /// limit (MsgCode 14), so that nothing ran and the same request may be sent again.
    pub fn is_busy(&self) -> bool {
        matches!(self, KingdeeError::Rejected { msg_code: Some(MSG_CODE_LOCKED | MSG_CODE_CALL_LIMIT), .. })
    }

    /// Returns whether a write that failed this way may have been committed.
    pub fn may_have_committed(&self) -> bool {
        match self {
            KingdeeError::Transport { .. }
            | KingdeeError::SessionLostDuringSave { .. }
            | KingdeeError::Unreadable { .. }
            | KingdeeError::Server { .. } => true,
            KingdeeError::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// Converts the error for the port; `write` is true when the failed call was a save.
    pub fn into_target_error(self, write: bool) -> TargetError {
        TargetError { message: self.to_string(), retry: self.retry(), outcome_unknown: write && self.may_have_committed() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        let service = || "BatchSave".to_string();
        let cases = [
            (KingdeeError::Http { service: service(), status: 500, excerpt: String::new() }, Retry::Later, true),
            (KingdeeError::Http { service: service(), status: 404, excerpt: String::new() }, Retry::Never, false),
            (KingdeeError::Http { service: service(), status: 429, excerpt: String::new() }, Retry::Later, false),
            (KingdeeError::Misconfigured { service: service() }, Retry::Never, false),
            (KingdeeError::SessionLostDuringSave { service: service() }, Retry::Later, true),
            (KingdeeError::Rejected { service: service(), msg_code: Some(13), error_code: Some(500), message: String::new() }, Retry::Later, false),
            (KingdeeError::Rejected { service: service(), msg_code: Some(14), error_code: Some(500), message: String::new() }, Retry::Later, false),
            (KingdeeError::Rejected { service: service(), msg_code: Some(8), error_code: Some(500), message: String::new() }, Retry::Never, false),
            (KingdeeError::Unreadable { service: service(), excerpt: String::new() }, Retry::Later, true),
            (KingdeeError::Server { service: service(), message: String::new() }, Retry::Later, true),
            (KingdeeError::Rejected { service: service(), msg_code: Some(9), error_code: Some(500), message: String::new() }, Retry::Never, false),
            (KingdeeError::Rejected { service: service(), msg_code: Some(10), error_code: Some(500), message: String::new() }, Retry::Never, false),
            (KingdeeError::OutOfTime { service: service(), remaining_ms: 10 }, Retry::Later, false),
            (KingdeeError::Login { result_type: Some(-1), message: String::new(), keys: "kingdee.password" }, Retry::Never, false),
        ];
        for (error, retry, unknown) in cases {
            let text = error.to_string();
            let target = error.into_target_error(true);
            assert_eq!(target.retry, retry, "{text}");
            assert_eq!(target.outcome_unknown, unknown, "{text}");
        }
    }

    #[test]
    fn busy_only_for_lock_and_call_limit() {
        let rejected = |code| KingdeeError::Rejected { service: "BatchSave".into(), msg_code: Some(code), error_code: Some(500), message: String::new() };
        assert!(rejected(13).is_busy());
        assert!(rejected(14).is_busy());
        for code in [1, 8, 9, 10, 11, 12] {
            assert!(!rejected(code).is_busy(), "MsgCode {code}");
        }
    }

    #[test]
    fn lookup_errors_never_claim_a_commit() {
        let target = KingdeeError::Http { service: "ExecuteBillQuery".into(), status: 503, excerpt: String::new() }.into_target_error(false);
        assert!(!target.outcome_unknown);
        assert_eq!(target.retry, Retry::Later);
    }

    #[test]
    fn misconfigured_names_the_causes() {
        let text = KingdeeError::Misconfigured { service: "BatchSave".into() }.to_string();
        for needle in ["kingdee.acct_id", "app authorization", "kingdee.username", "IP allow-list", "白名单"] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }
}
