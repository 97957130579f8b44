//! Request signing as the official Python SDK (`kingdee-cdp-webapi-sdk` 8.2.0) does it.
//!
//! Every request of the "third-party system login" scheme carries a set of headers signed with
//! two keys: `client_sec`, derived from the app id, signs the request path and the timestamp,
//! and the app secret signs the account data. Both signatures are B64HEX: base64 of the
//! lowercase hex text of an HMAC-SHA256, not of the raw MAC.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};

/// Key the SDK XORs with the decoded app-id secret part to obtain `client_sec`.
const CLIENT_SECRET_XOR: &[u8; 32] = b"0054f397c6234378b09ca7d3e5debce7";

/// Characters Python's `urllib.parse.quote` leaves unencoded, apart from `/` which the SDK
/// replaces by `%2F` afterwards.
const PATH_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC.remove(b'_').remove(b'.').remove(b'-').remove(b'~');

pub const HEADER_CLIENT_ID: &str = "X-Api-ClientID";
pub const HEADER_AUTH_VERSION: &str = "X-Api-Auth-Version";
pub const HEADER_TIMESTAMP: &str = "x-api-timestamp";
pub const HEADER_NONCE: &str = "x-api-nonce";
pub const HEADER_SIGN_HEADERS: &str = "x-api-signheaders";
pub const HEADER_API_SIGNATURE: &str = "X-Api-Signature";
pub const HEADER_APP_KEY: &str = "X-Kd-Appkey";
pub const HEADER_APP_DATA: &str = "X-Kd-Appdata";
pub const HEADER_KD_SIGNATURE: &str = "X-Kd-Signature";
/// Session header and cookie name.
pub const SESSION_ID: &str = "kdservice-sessionid";

/// An app id that does not have the form `<client id>_<32 base64 characters>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid app id {app_id:?}: {reason}; copy the whole app id (应用ID) from the Kingdee third-party \
     system login authorization, it looks like 123456_AbCd… with 32 characters after the underscore"
)]
pub struct AppIdError {
    pub app_id: String,
    pub reason: &'static str,
}

/// The two parts of an app id: the client id before `_` and the derived `client_sec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppIdParts {
    pub client_id: String,
    pub client_sec: String,
}

/// Splits an app id and derives `client_sec` from its secret part.
pub fn parse_app_id(app_id: &str) -> Result<AppIdParts, AppIdError> {
    let error = |reason| AppIdError { app_id: app_id.to_string(), reason };
    let mut parts = app_id.split('_');
    let (Some(client_id), Some(secret_part), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(error("it must contain exactly one '_'"));
    };
    if client_id.is_empty() {
        return Err(error("the client id before '_' is empty"));
    }
    let client_sec = client_secret(secret_part).ok_or_else(|| error("the part after '_' is not 32 base64 characters"))?;
    Ok(AppIdParts { client_id: client_id.to_string(), client_sec })
}

/// Derives `client_sec`: base64-decodes the 32 characters after `_` (24 bytes), XORs them with
/// [`CLIENT_SECRET_XOR`] and base64-encodes the result. Returns `None` when the input is not 32
/// base64 characters without padding, where the SDK would sign with an empty key.
pub fn client_secret(secret_part: &str) -> Option<String> {
    if secret_part.len() != 32 || secret_part.contains('=') {
        return None;
    }
    let decoded = STANDARD.decode(secret_part).ok()?;
    let mixed: Vec<u8> = decoded.iter().zip(CLIENT_SECRET_XOR).map(|(byte, key)| byte ^ key).collect();
    Some(STANDARD.encode(mixed))
}

/// Computes B64HEX(key, message): base64 of the lowercase hex text of HMAC-SHA256.
pub fn b64hex(key: &[u8], message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC-SHA256 accepts keys of any length");
    mac.update(message);
    STANDARD.encode(hex::encode(mac.finalize().into_bytes()))
}

/// Returns the path part of a URL (from the first `/` after the host) or the text itself when it
/// has no scheme.
pub fn url_path(url: &str) -> &str {
    let Some(scheme_end) = url.find("://") else { return url };
    let after_scheme = &url[scheme_end + 3..];
    match after_scheme.find('/') {
        Some(index) => &after_scheme[index..],
        None => "",
    }
}

/// Percent-encodes a URL's path as the SDK signs it: uppercase hex, `/` as `%2F`.
// NOTE: the SDK takes the path from the first '/' at byte 10 or later. For any URL whose host
// part reaches byte 10 that is the first '/' after the host, as here. A URL such as
// `http://h/k3cloud/` would differ, and the server would reject the signature either way.
pub fn enc_path(url: &str) -> String {
    utf8_percent_encode(url_path(url), PATH_ENCODE_SET).to_string()
}

/// Returns the `X-Api-Signature` value for an encoded path, nonce and timestamp.
pub fn api_signature(client_sec: &str, enc_path: &str, nonce: &str, timestamp: &str) -> String {
    let message = format!("POST\n{enc_path}\n\nx-api-nonce:{nonce}\nx-api-timestamp:{timestamp}\n");
    b64hex(client_sec.as_bytes(), message.as_bytes())
}

/// Returns the raw `X-Kd-Appdata` text, before base64: `acct,user,lcid,org_num`.
pub fn app_data(acct_id: &str, username: &str, lcid: u32, org_num: u64) -> String {
    format!("{acct_id},{username},{lcid},{org_num}")
}

/// Returns the `X-Kd-Signature` value: B64HEX(app secret, app id + raw app data).
pub fn kd_signature(app_id: &str, raw_app_data: &str, app_secret: &str) -> String {
    b64hex(app_secret.as_bytes(), format!("{app_id}{raw_app_data}").as_bytes())
}

/// Inputs of the signed header set.
#[derive(Debug, Clone, Copy)]
pub struct SignInput<'a> {
    pub acct_id: &'a str,
    pub username: &'a str,
    pub lcid: u32,
    pub org_num: u64,
    pub app_id: &'a str,
    pub app_secret: &'a str,
}

/// Builds the signed headers of one request to `url` at Unix time `timestamp`, in the SDK's
/// order. The nonce repeats the timestamp, as in the SDK.
pub fn signed_headers(input: &SignInput<'_>, url: &str, timestamp: i64) -> Result<Vec<(&'static str, String)>, AppIdError> {
    let parts = parse_app_id(input.app_id)?;
    let timestamp = timestamp.to_string();
    let nonce = timestamp.clone();
    let raw_app_data = app_data(input.acct_id, input.username, input.lcid, input.org_num);

    Ok(vec![
        (HEADER_CLIENT_ID, parts.client_id),
        (HEADER_AUTH_VERSION, "2.0".to_string()),
        (HEADER_TIMESTAMP, timestamp.clone()),
        (HEADER_NONCE, nonce.clone()),
        (HEADER_SIGN_HEADERS, "x-api-timestamp,x-api-nonce".to_string()),
        (HEADER_API_SIGNATURE, api_signature(&parts.client_sec, &enc_path(url), &nonce, &timestamp)),
        (HEADER_APP_KEY, input.app_id.to_string()),
        (HEADER_APP_DATA, STANDARD.encode(&raw_app_data)),
        (HEADER_KD_SIGNATURE, kd_signature(input.app_id, &raw_app_data, input.app_secret)),
    ])
}

/// Returns the LoginBySign `sign`: lowercase hex SHA-256 of the five strings sorted, then
/// concatenated.
pub fn login_by_sign(acct_id: &str, username: &str, app_id: &str, app_secret: &str, timestamp: i64) -> String {
    let timestamp = timestamp.to_string();
    let mut parts = [acct_id, username, app_id, app_secret, timestamp.as_str()];
    parts.sort_unstable();
    hex::encode(Sha256::digest(parts.concat().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP_ID: &str = "999999_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX";
    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const BATCH_SAVE_URL: &str =
        "http://erp.example.com/k3cloud/Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.BatchSave.common.kdsvc";

    fn input() -> SignInput<'static> {
        SignInput { acct_id: "fakeacct001", username: "demo", lcid: 2052, org_num: 0, app_id: APP_ID, app_secret: SECRET }
    }

    fn header(headers: &[(&'static str, String)], name: &str) -> String {
        headers.iter().find(|(key, _)| *key == name).map(|(_, value)| value.clone()).unwrap_or_default()
    }

    #[test]
    fn b64hex_known_vector() {
        assert_eq!(
            b64hex(b"key", b"abc"),
            "OWMxOTZlMzJkYzAxNzVmODZmNGIxY2I4OTI4OWQ2NjE5ZGU2YmVlNjk5ZTRjMzc4ZTY4MzA5ZWQ5N2ExYTZhYg=="
        );
    }

    #[test]
    fn client_secret_known_vector() {
        let parts = parse_app_id(APP_ID).unwrap();
        assert_eq!(parts.client_id, "999999");
        assert_eq!(parts.client_sec, "MDE3N2I2PzBrPzg4OD45N3IhK3B1InIk");
    }

    #[test]
    fn signed_headers_known_vector() {
        let headers = signed_headers(&input(), BATCH_SAVE_URL, 1_700_000_000).unwrap();
        assert_eq!(headers.len(), 9);
        assert_eq!(header(&headers, HEADER_CLIENT_ID), "999999");
        assert_eq!(header(&headers, HEADER_AUTH_VERSION), "2.0");
        assert_eq!(header(&headers, HEADER_TIMESTAMP), "1700000000");
        assert_eq!(header(&headers, HEADER_NONCE), "1700000000");
        assert_eq!(header(&headers, HEADER_SIGN_HEADERS), "x-api-timestamp,x-api-nonce");
        assert_eq!(
            header(&headers, HEADER_API_SIGNATURE),
            "YTJiNDBhZjc1MjMyYTE2ZTkwMDc3MmFiMDc4OWUxMjEyOTQ2ZDE5NWQ0NWE5MGI5ZGZhMTY1MzBlM2I5NzExYQ=="
        );
        assert_eq!(header(&headers, HEADER_APP_KEY), APP_ID);
        assert_eq!(header(&headers, HEADER_APP_DATA), "ZmFrZWFjY3QwMDEsZGVtbywyMDUyLDA=");
        assert_eq!(
            header(&headers, HEADER_KD_SIGNATURE),
            "MTdjNDdjYzc3ZTE4NGEwNWI5OGUwOWFhYjQ4MDNhMTFiZmMwYzNlNWQ1YzgxNWY2NmMwZWQ5N2FlM2RjYzRjYw=="
        );
    }

    #[test]
    fn login_by_sign_known_vector() {
        assert_eq!(
            login_by_sign("fakeacct001", "demo", "999999", SECRET, 1_700_000_000),
            "a75a1025336e29e297f6bda1c307fd10639c3c32263f2b9baa83e966a8be9b2b"
        );
    }

    #[test]
    fn enc_path_encodes_slashes() {
        assert_eq!(enc_path("https://erp.example.com/k3cloud/A.b_c-d~e.kdsvc"), "%2Fk3cloud%2FA.b_c-d~e.kdsvc");
        assert_eq!(enc_path("http://127.0.0.1:8080/K3Cloud/a b"), "%2FK3Cloud%2Fa%20b");
        assert_eq!(enc_path("/k3cloud/x"), "%2Fk3cloud%2Fx");
        assert_eq!(enc_path("http://127.0.0.1:8080/k3cloud/中"), "%2Fk3cloud%2F%E4%B8%AD");
    }

    #[test]
    fn app_id_rejects_bad_forms() {
        for bad in ["999999", "_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX", "1_2_3", "999999_short", "999999_AAECAwQFBgcICQoLDA0ODxAREhMUFR=="] {
            let error = parse_app_id(bad).unwrap_err();
            assert_eq!(error.app_id, bad);
            assert!(error.to_string().contains("应用ID"), "{error}");
        }
    }
}
