//! Lenient readers for the loosely typed fields of JuShuiTan responses.
//!
//! Values stay [`RawValue`]s until a reader converts them, so a JSON number's text is parsed
//! directly into a [`Decimal`] and never passes through `f64`.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::{NaiveDate, NaiveDateTime};
use countsync_core::time::{parse_date, parse_wall_clock};
use rust_decimal::Decimal;
use serde_json::value::RawValue;

use super::DecodeError;

/// One JSON scalar as JuShuiTan may send it.
enum Scalar<'a> {
    Null,
    Bool(bool),
    /// The number's text exactly as sent.
    Number(&'a str),
    Text(String),
    /// An array or object where a scalar was expected.
    Composite,
}

fn scalar(raw: &RawValue) -> Result<Scalar<'_>, String> {
    let text = raw.get().trim();
    match text.as_bytes().first() {
        Some(b'n') => Ok(Scalar::Null),
        Some(b't') => Ok(Scalar::Bool(true)),
        Some(b'f') => Ok(Scalar::Bool(false)),
        Some(b'"') => serde_json::from_str::<String>(text).map(Scalar::Text).map_err(|error| error.to_string()),
        Some(b'[' | b'{') => Ok(Scalar::Composite),
        Some(_) => Ok(Scalar::Number(text)),
        None => Ok(Scalar::Null),
    }
}

fn parse_decimal(text: &str) -> Option<Decimal> {
    let text = text.trim();
    Decimal::from_str(text).ok().or_else(|| Decimal::from_scientific(text).ok())
}

fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The fields of one JSON object, with the path used in error messages.
pub(crate) struct Object<'a> {
    path: String,
    fields: HashMap<String, &'a RawValue>,
}

impl<'a> Object<'a> {
    /// Parses `raw` as an object; `path` names it in errors, e.g. `datas[3]`.
    pub(crate) fn parse(raw: &'a RawValue, path: String) -> Result<Self, DecodeError> {
        match serde_json::from_str::<HashMap<String, &'a RawValue>>(raw.get()) {
            Ok(fields) => Ok(Self { path, fields }),
            Err(_) => Err(DecodeError::field(&path, format!("is {}, expected an object", shorten(raw.get())))),
        }
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    pub(crate) fn set_path(&mut self, path: String) {
        self.path = path;
    }

    fn error(&self, key: &str, reason: String) -> DecodeError {
        DecodeError::field(&format!("{}.{key}", self.path), reason)
    }

    fn scalar(&self, key: &str) -> Result<Option<Scalar<'a>>, DecodeError> {
        let Some(raw) = self.fields.get(key) else { return Ok(None) };
        scalar(raw).map(Some).map_err(|reason| self.error(key, format!("is not valid JSON: {reason}")))
    }

    /// Reads an integer sent as a number or a numeric string; null and `""` read as `None`.
    pub(crate) fn int(&self, key: &str) -> Result<Option<i64>, DecodeError> {
        let text = match self.scalar(key)? {
            None | Some(Scalar::Null) => return Ok(None),
            Some(Scalar::Number(text)) => text.to_string(),
            Some(Scalar::Text(text)) if text.trim().is_empty() => return Ok(None),
            Some(Scalar::Text(text)) => text,
            Some(Scalar::Bool(_) | Scalar::Composite) => return Err(self.error(key, "is not an integer".into())),
        };
        let integral = parse_decimal(&text).filter(|value| value.fract().is_zero());
        match integral.and_then(|value| i64::try_from(value).ok()) {
            Some(value) => Ok(Some(value)),
            None => Err(self.error(key, format!("has value {:?}, which is not an integer", shorten(&text)))),
        }
    }

    /// Reads a required integer.
    pub(crate) fn required_int(&self, key: &str) -> Result<i64, DecodeError> {
        self.int(key)?.ok_or_else(|| self.error(key, "is missing".into()))
    }

    /// Reads an exact decimal sent as a number or a numeric string; null and `""` read as `None`.
    pub(crate) fn decimal(&self, key: &str) -> Result<Option<Decimal>, DecodeError> {
        let text = match self.scalar(key)? {
            None | Some(Scalar::Null) => return Ok(None),
            Some(Scalar::Number(text)) => text.to_string(),
            Some(Scalar::Text(text)) if text.trim().is_empty() => return Ok(None),
            Some(Scalar::Text(text)) => text,
            Some(Scalar::Bool(_) | Scalar::Composite) => return Err(self.error(key, "is not a number".into())),
        };
        match parse_decimal(&text) {
            Some(value) => Ok(Some(value)),
            None => Err(self.error(key, format!("has value {:?}, which is not a number", shorten(&text)))),
        }
    }

    /// Reads a text; numbers and booleans are kept as their JSON text.
    pub(crate) fn text(&self, key: &str) -> Result<Option<String>, DecodeError> {
        match self.scalar(key)? {
            None | Some(Scalar::Null) => Ok(None),
            Some(Scalar::Text(text)) => Ok(Some(text)),
            Some(Scalar::Number(text)) => Ok(Some(text.to_string())),
            Some(Scalar::Bool(value)) => Ok(Some(value.to_string())),
            Some(Scalar::Composite) => Err(self.error(key, "is an array or object, expected a text".into())),
        }
    }

    /// Reads a required, non-blank text.
    pub(crate) fn required_text(&self, key: &str) -> Result<String, DecodeError> {
        match self.text(key)? {
            Some(text) if !text.trim().is_empty() => Ok(text),
            Some(_) => Err(self.error(key, "is empty".into())),
            None => Err(self.error(key, "is missing".into())),
        }
    }

    /// Reads a wall-clock time, with or without fractional seconds; `""` reads as `None`.
    pub(crate) fn time(&self, key: &str) -> Result<Option<NaiveDateTime>, DecodeError> {
        let Some(text) = self.text(key)?.filter(|text| !text.trim().is_empty()) else { return Ok(None) };
        match parse_wall_clock(&text) {
            Some(time) => Ok(Some(time)),
            None => Err(self.error(key, format!("has value {:?}, expected yyyy-MM-dd HH:mm:ss", shorten(&text)))),
        }
    }

    /// Reads a date, ignoring a time of day; `""` reads as `None`.
    pub(crate) fn date(&self, key: &str) -> Result<Option<NaiveDate>, DecodeError> {
        let Some(text) = self.text(key)?.filter(|text| !text.trim().is_empty()) else { return Ok(None) };
        match parse_date(&text) {
            Some(date) => Ok(Some(date)),
            None => Err(self.error(key, format!("has value {:?}, expected yyyy-MM-dd", shorten(&text)))),
        }
    }

    /// Reads a boolean sent as `true`/`false`, `1`/`0` or their string forms.
    pub(crate) fn boolean(&self, key: &str) -> Result<Option<bool>, DecodeError> {
        let text = match self.scalar(key)? {
            None | Some(Scalar::Null) => return Ok(None),
            Some(Scalar::Bool(value)) => return Ok(Some(value)),
            Some(Scalar::Number(text)) => text.to_string(),
            Some(Scalar::Text(text)) => text,
            Some(Scalar::Composite) => return Err(self.error(key, "is not a boolean".into())),
        };
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            other => Err(self.error(key, format!("has value {:?}, expected true or false", shorten(other)))),
        }
    }

    /// Reads an array; missing and null read as empty.
    pub(crate) fn list(&self, key: &str) -> Result<Vec<&'a RawValue>, DecodeError> {
        let Some(raw) = self.fields.get(key) else { return Ok(Vec::new()) };
        if raw.get().trim() == "null" {
            return Ok(Vec::new());
        }
        serde_json::from_str::<Vec<&'a RawValue>>(raw.get())
            .map_err(|_| self.error(key, format!("is {}, expected an array", shorten(raw.get()))))
    }

    /// Reads labels sent either as one comma-separated text or as an array of texts.
    pub(crate) fn labels(&self, key: &str) -> Result<Vec<String>, DecodeError> {
        let Some(raw) = self.fields.get(key) else { return Ok(Vec::new()) };
        let split = |text: &str| -> Vec<String> {
            text.split([',', '，']).map(str::trim).filter(|label| !label.is_empty()).map(String::from).collect()
        };
        match scalar(raw) {
            Ok(Scalar::Null) => Ok(Vec::new()),
            Ok(Scalar::Text(text)) => Ok(split(&text)),
            Ok(Scalar::Composite) => match serde_json::from_str::<Vec<String>>(raw.get()) {
                Ok(labels) => Ok(labels.iter().flat_map(|label| split(label)).collect()),
                Err(_) => Err(self.error(key, "is neither a text nor an array of texts".into())),
            },
            _ => Err(self.error(key, "is neither a text nor an array of texts".into())),
        }
    }

    /// Returns the raw value of a field, if present.
    pub(crate) fn raw(&self, key: &str) -> Option<&'a RawValue> {
        self.fields.get(key).copied()
    }
}
