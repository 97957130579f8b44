//! The JuShuiTan token pair in the state table: one item per application key, replaced only over
//! the version the refresher read.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{TimeZone, Utc};
use countsync_core::Retry;
use countsync_core::ports::{StoreError, StoredToken, TokenStore};

use crate::DynamoState;
use crate::error::classify;

const TOKEN_SK: &str = "TOKEN";

fn token_key(app_key: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_string(), AttributeValue::S(format!("TOKEN#{app_key}"))),
        ("sk".to_string(), AttributeValue::S(TOKEN_SK.to_string())),
    ])
}

fn text<'a>(item: &'a HashMap<String, AttributeValue>, attribute: &str) -> Result<&'a str, StoreError> {
    item.get(attribute)
        .and_then(|value| value.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| StoreError::new(format!("token item has no text attribute {attribute}"), Retry::Never))
}

fn number(item: &HashMap<String, AttributeValue>, attribute: &str) -> Result<i64, StoreError> {
    item.get(attribute)
        .and_then(|value| value.as_n().ok())
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| StoreError::new(format!("token item has no number attribute {attribute}"), Retry::Never))
}

#[async_trait]
impl TokenStore for DynamoState {
    async fn load_token(&self, app_key: &str) -> Result<Option<StoredToken>, StoreError> {
        let output = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(token_key(app_key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| StoreError::new(format!("reading the token from table {} failed: {error}", self.table()), classify(&error)))?;
        let Some(item) = output.item else {
            return Ok(None);
        };

        let expires_ms = number(&item, "expires_at_ms")?;
        let expires_at = Utc
            .timestamp_millis_opt(expires_ms)
            .single()
            .ok_or_else(|| StoreError::new(format!("token expiry {expires_ms} is not a valid instant"), Retry::Never))?;
        Ok(Some(StoredToken {
            access_token: text(&item, "access_token")?.to_string(),
            refresh_token: text(&item, "refresh_token")?.to_string(),
            expires_at,
            version: u64::try_from(number(&item, "version")?).unwrap_or_default(),
        }))
    }

    async fn replace_token(&self, app_key: &str, expected_version: Option<u64>, token: &StoredToken) -> Result<bool, StoreError> {
        let mut item = token_key(app_key);
        item.insert("access_token".into(), AttributeValue::S(token.access_token.clone()));
        item.insert("refresh_token".into(), AttributeValue::S(token.refresh_token.clone()));
        item.insert("expires_at_ms".into(), AttributeValue::N(token.expires_at.timestamp_millis().to_string()));
        item.insert("version".into(), AttributeValue::N(token.version.to_string()));

        let request = self.client().put_item().table_name(self.table()).set_item(Some(item));
        let request = match expected_version {
            None => request.condition_expression("attribute_not_exists(pk)"),
            Some(version) => request
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":expected", AttributeValue::N(version.to_string())),
        };

        match request.send().await {
            Ok(_) => Ok(true),
            Err(error) if error.as_service_error().is_some_and(|service| service.is_conditional_check_failed_exception()) => Ok(false),
            Err(error) => Err(StoreError::new(format!("writing the token to table {} failed: {error}", self.table()), classify(&error))),
        }
    }
}
