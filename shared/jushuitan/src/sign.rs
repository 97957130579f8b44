//! Request signatures of the JuShuiTan open API.
//!
//! Current open platform: every form field except `sign`, sorted by key in byte order, each key
//! followed by its value with no separator, the app secret in front, MD5 of the UTF-8 bytes in
//! lowercase hex. Legacy gateway (`/api/open/query.aspx`): MD5 of method, partner id, `token` +
//! token, `ts` + timestamp and the partner key, concatenated in that order.

use md5::{Digest, Md5};

/// Name of the form field that carries the signature; it is never part of the signed text.
pub const SIGN_FIELD: &str = "sign";

/// Signs the form fields of a current-platform request. A field named `sign` is skipped.
pub fn sign(app_secret: &str, fields: &[(&str, &str)]) -> String {
    let mut sorted: Vec<&(&str, &str)> = fields.iter().filter(|(key, _)| *key != SIGN_FIELD).collect();
    sorted.sort_by(|left, right| left.0.as_bytes().cmp(right.0.as_bytes()));

    let mut hasher = Md5::new();
    hasher.update(app_secret.as_bytes());
    for (key, value) in sorted {
        hasher.update(key.as_bytes());
        hasher.update(value.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Signs a legacy-gateway request (`method`, `partnerid`, `token` and `ts` in the query string).
pub fn sign_legacy(method: &str, partner_id: &str, token: &str, ts: &str, partner_key: &str) -> String {
    let text = format!("{method}{partner_id}token{token}ts{ts}{partner_key}");
    hex::encode(Md5::digest(text.as_bytes()))
}

/// Compares a received signature with the expected one, ignoring ASCII case.
pub fn signature_matches(expected: &str, received: &str) -> bool {
    expected.eq_ignore_ascii_case(received)
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP_KEY: &str = "test-app-key-0001";
    const APP_SECRET: &str = "test-app-secret-0001";
    const ACCESS_TOKEN: &str = "test-access-token-0001";
    const TIMESTAMP: &str = "1700000000";

    #[test]
    fn token_request_vector() {
        let fields = [
            ("app_key", APP_KEY),
            ("timestamp", TIMESTAMP),
            ("grant_type", "authorization_code"),
            ("charset", "utf-8"),
            ("code", "abc123"),
        ];
        assert_eq!(sign(APP_SECRET, &fields), "20f42bd35f89621c6d0f32ed2829046e");
    }

    #[test]
    fn business_request_vector() {
        let biz = r#"{"page_index":1,"page_size":50,"modified_begin":"2024-03-01 00:00:00","modified_end":"2024-03-08 00:00:00","status":"Confirmed"}"#;
        let fields = [
            ("version", "2"),
            ("biz", biz),
            ("access_token", ACCESS_TOKEN),
            ("app_key", APP_KEY),
            ("charset", "utf-8"),
            ("timestamp", TIMESTAMP),
        ];
        assert_eq!(sign(APP_SECRET, &fields), "b6ecd6c25904cdc49cd40816ab1dfdee");
    }

    #[test]
    fn sign_field_is_not_signed() {
        let without = [("app_key", APP_KEY), ("timestamp", TIMESTAMP)];
        let with = [("app_key", APP_KEY), ("sign", "anything"), ("timestamp", TIMESTAMP)];
        assert_eq!(sign(APP_SECRET, &without), sign(APP_SECRET, &with));
    }

    #[test]
    fn secret_changes_signature() {
        let fields = [("app_key", APP_KEY)];
        assert_ne!(sign(APP_SECRET, &fields), sign("another-secret", &fields));
    }

    #[test]
    fn legacy_gateway_vector() {
        let signature = sign_legacy("inventory.count.query", "test-partner-0001", "test-token-0001", TIMESTAMP, "test-partner-key-0001");
        assert_eq!(signature, "348dfa52131bb0427728d50a7b053bee");
    }

    #[test]
    fn signature_compare_ignores_case() {
        assert!(signature_matches("b6ecd6c25904cdc49cd40816ab1dfdee", "B6ECD6C25904CDC49CD40816AB1DFDEE"));
        assert!(!signature_matches("b6ecd6c25904cdc49cd40816ab1dfdee", "b6ecd6c25904cdc49cd40816ab1dfdef"));
    }
}
