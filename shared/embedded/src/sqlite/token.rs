//! The JuShuiTan token pair in SQLite, replaced only over the version the refresher read.

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use countsync_core::ports::{StoreError, StoredToken, TokenStore};
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteState;

const CREATE_TABLE: &str = "
CREATE TABLE IF NOT EXISTS jushuitan_token (
    app_key       TEXT PRIMARY KEY NOT NULL,
    access_token  TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    version       INTEGER NOT NULL
);
";

fn ensure_table(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(CREATE_TABLE)
}

#[async_trait]
impl TokenStore for SqliteState {
    async fn load_token(&self, app_key: &str) -> Result<Option<StoredToken>, StoreError> {
        let app_key = app_key.to_string();
        let row = self
            .run("load token", move |connection| {
                ensure_table(connection)?;
                connection
                    .query_row(
                        "SELECT access_token, refresh_token, expires_at_ms, version FROM jushuitan_token WHERE app_key = ?1",
                        params![app_key],
                        |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?, row.get::<_, i64>(3)?)),
                    )
                    .optional()
            })
            .await?;

        Ok(row.map(|(access_token, refresh_token, expires_ms, version)| StoredToken {
            access_token,
            refresh_token,
            expires_at: Utc.timestamp_millis_opt(expires_ms).single().unwrap_or(chrono::DateTime::<Utc>::MIN_UTC),
            version: u64::try_from(version).unwrap_or_default(),
        }))
    }

    async fn replace_token(&self, app_key: &str, expected_version: Option<u64>, token: &StoredToken) -> Result<bool, StoreError> {
        let app_key = app_key.to_string();
        let token = token.clone();
        let changed = self
            .run("replace token", move |connection| {
                ensure_table(connection)?;
                let version = i64::try_from(token.version).unwrap_or(i64::MAX);
                let expires_ms = token.expires_at.timestamp_millis();
                match expected_version {
                    // The primary key makes a second first write fail to insert anything.
                    None => connection.execute(
                        "INSERT OR IGNORE INTO jushuitan_token (app_key, access_token, refresh_token, expires_at_ms, version)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![app_key, token.access_token, token.refresh_token, expires_ms, version],
                    ),
                    Some(expected) => connection.execute(
                        "UPDATE jushuitan_token SET access_token = ?2, refresh_token = ?3, expires_at_ms = ?4, version = ?5
                         WHERE app_key = ?1 AND version = ?6",
                        params![app_key, token.access_token, token.refresh_token, expires_ms, version, i64::try_from(expected).unwrap_or(i64::MAX)],
                    ),
                }
            })
            .await?;
        Ok(changed == 1)
    }
}
