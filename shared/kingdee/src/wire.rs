//! Kingdee response bodies, classified without panicking.
//!
//! Kingdee reports most failures with HTTP 200 and a body whose shape varies by service and
//! version: a `ResponseStatus` under `Result`, at the top level, inside `[[{"Result": …}]]` for
//! queries, inside `Result` as an array, with `Errors` as objects or plain strings, a null status,
//! or plain text starting with `response_error:`. [`parse`] maps each of them to one
//! [`Response`] variant, so callers never take an error for data.

use serde_json::{Map, Value};

/// `ResponseStatus` of a write or a failed call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponseStatus {
    pub is_success: bool,
    /// `ErrorCode`, 500 on failure.
    pub error_code: Option<i64>,
    /// `MsgCode`: 1 session lost, 11 validation failed, 13 lock conflict, 14 call limit, ….
    pub msg_code: Option<i64>,
    pub errors: Vec<StatusError>,
    /// `SuccessEntitys` (Kingdee's spelling).
    pub success_entities: Vec<SuccessEntity>,
    /// `Result.Id` of a single save, when present.
    pub result_id: Option<String>,
    /// `Result.Number` of a single save, when present.
    pub result_number: Option<String>,
}

/// One element of `Errors`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusError {
    pub field_name: Option<String>,
    pub message: String,
    /// Position of the bill in the request's `Model` array.
    pub dindex: Option<usize>,
}

/// One element of `SuccessEntitys`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SuccessEntity {
    /// `Id`, the bill's `FID`.
    pub id: Option<String>,
    /// `Number`, the bill's `FBillNo`.
    pub number: Option<String>,
    pub dindex: Option<usize>,
}

/// A ValidateUser (or other login) response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginResult {
    /// 1 on success; -5 and others are failures.
    pub login_result_type: Option<i64>,
    pub message: Option<String>,
    pub message_code: Option<String>,
    pub session_id: Option<String>,
}

impl LoginResult {
    pub fn is_success(&self) -> bool {
        self.login_result_type == Some(1)
    }
}

/// A classified response body.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// A `ResponseStatus` object, wherever it was found.
    Status(ResponseStatus),
    /// Query rows, each in `FieldKeys` order.
    Rows(Vec<Vec<Value>>),
    Login(LoginResult),
    /// A `Result` whose `ResponseStatus` is null or absent: the call's outcome is not stated.
    MissingStatus,
    /// Plain text after `response_error:`.
    ServerError(String),
    /// Anything else, as a short excerpt for the log.
    Unrecognized(String),
}

/// Maximum excerpt of an unrecognized body kept for messages, in characters.
const EXCERPT_CHARS: usize = 300;
/// Maximum depth of nested arrays searched for a wrapped `ResponseStatus`.
const WRAP_DEPTH: usize = 3;

/// Classifies a response body.
pub fn parse(body: &str) -> Response {
    let text = body.trim_start_matches('\u{feff}').trim();
    if let Some(rest) = text.strip_prefix("response_error:") {
        return Response::ServerError(excerpt(rest.trim()));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => classify_object(&map, text),
        Ok(Value::Array(items)) => classify_array(&items, text),
        _ => Response::Unrecognized(excerpt(text)),
    }
}

/// Returns at most [`EXCERPT_CHARS`] characters of a body.
pub fn excerpt(text: &str) -> String {
    let mut out: String = text.chars().take(EXCERPT_CHARS).collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

fn classify_object(map: &Map<String, Value>, text: &str) -> Response {
    if map.contains_key("LoginResultType") {
        return Response::Login(login_result(map));
    }
    if let Some(result) = map.get("Result") {
        return classify_result(result, text);
    }
    match map.get("ResponseStatus") {
        Some(Value::Object(status)) => Response::Status(response_status(status, map)),
        Some(Value::Null) => Response::MissingStatus,
        _ => Response::Unrecognized(excerpt(text)),
    }
}

fn classify_result(result: &Value, text: &str) -> Response {
    match result {
        Value::Object(inner) => match inner.get("ResponseStatus") {
            Some(Value::Object(status)) => Response::Status(response_status(status, inner)),
            Some(Value::Null) | None => Response::MissingStatus,
            Some(_) => Response::Unrecognized(excerpt(text)),
        },
        Value::Array(items) => classify_array(items, text),
        Value::Null => Response::MissingStatus,
        _ => Response::Unrecognized(excerpt(text)),
    }
}

fn classify_array(items: &[Value], text: &str) -> Response {
    if let Some(status) = find_wrapped_status(items, WRAP_DEPTH) {
        return status;
    }
    let rows: Option<Vec<Vec<Value>>> = items
        .iter()
        .map(|item| match item {
            Value::Array(cells) if cells.iter().all(|cell| !cell.is_object() && !cell.is_array()) => Some(cells.clone()),
            _ => None,
        })
        .collect();
    match rows {
        Some(rows) => Response::Rows(rows),
        None => Response::Unrecognized(excerpt(text)),
    }
}

/// Looks for `{"Result": …}` or `{"ResponseStatus": …}` objects inside nested arrays.
fn find_wrapped_status(items: &[Value], depth: usize) -> Option<Response> {
    for item in items {
        match item {
            Value::Object(map) if map.contains_key("Result") || map.contains_key("ResponseStatus") => {
                return Some(classify_object(map, ""));
            }
            Value::Array(inner) if depth > 1 => {
                if let Some(found) = find_wrapped_status(inner, depth - 1) {
                    return Some(found);
                }
            }
            _ => {}
        }
    }
    None
}

fn response_status(status: &Map<String, Value>, result: &Map<String, Value>) -> ResponseStatus {
    ResponseStatus {
        is_success: status.get("IsSuccess").is_some_and(as_bool),
        error_code: status.get("ErrorCode").and_then(as_i64),
        msg_code: status.get("MsgCode").and_then(as_i64),
        errors: list(status.get("Errors")).iter().filter_map(status_error).collect(),
        success_entities: list(status.get("SuccessEntitys")).iter().filter_map(success_entity).collect(),
        result_id: result.get("Id").and_then(as_text),
        result_number: result.get("Number").and_then(as_text),
    }
}

fn status_error(value: &Value) -> Option<StatusError> {
    match value {
        Value::Object(map) => Some(StatusError {
            field_name: map.get("FieldName").and_then(as_text).filter(|name| !name.is_empty()),
            message: map.get("Message").and_then(as_text).unwrap_or_default(),
            dindex: map.get("DIndex").and_then(as_index),
        }),
        Value::Null => None,
        other => Some(StatusError { field_name: None, message: as_text(other).unwrap_or_default(), dindex: None }),
    }
}

fn success_entity(value: &Value) -> Option<SuccessEntity> {
    let map = value.as_object()?;
    Some(SuccessEntity {
        id: map.get("Id").and_then(as_text),
        number: map.get("Number").and_then(as_text),
        dindex: map.get("DIndex").and_then(as_index),
    })
}

fn login_result(map: &Map<String, Value>) -> LoginResult {
    LoginResult {
        login_result_type: map.get("LoginResultType").and_then(as_i64),
        message: map.get("Message").and_then(as_text),
        message_code: map.get("MessageCode").and_then(as_text),
        session_id: map.get("KDSVCSessionId").and_then(as_text).filter(|id| !id.is_empty()),
    }
}

/// Returns the elements of an array, a single object as one element, and nothing otherwise.
fn list(value: Option<&Value>) -> Vec<Value> {
    match value {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![other.clone()],
    }
}

fn as_bool(value: &Value) -> bool {
    match value {
        Value::Bool(flag) => *flag,
        Value::String(text) => text.trim().eq_ignore_ascii_case("true"),
        Value::Number(number) => number.as_i64() == Some(1),
        _ => false,
    }
}

fn as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

fn as_index(value: &Value) -> Option<usize> {
    as_i64(value).and_then(|index| usize::try_from(index).ok())
}

fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
