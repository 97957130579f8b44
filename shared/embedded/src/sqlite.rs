//! [`SqliteState`]: watermarks and the idempotency ledger in one SQLite database.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use countsync_core::Retry;
use countsync_core::ports::{
    BillRef, Claim, FailureReason, IdempotencyLedger, LedgerRecord, LedgerState, RunLease, StoreError, WatermarkStore,
    decide_claim,
};
use rusqlite::types::Type;
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};
use tracing::{debug, warn};

mod token;

/// Version stored in `PRAGMA user_version` by this schema. Version 2 added the `changed` state,
/// `changed_hash` and the `run_lease` table; [`migrate_v1`] upgrades a version 1 file.
const SCHEMA_VERSION: i64 = 2;

/// How long a statement waits for another connection's write lock before failing as busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS watermark (
    stream TEXT PRIMARY KEY NOT NULL,
    at     TEXT NOT NULL,
    at_ns  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger (
    io_id        INTEGER PRIMARY KEY NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('claimed', 'done', 'retry', 'failed', 'changed')),
    content_hash TEXT NOT NULL,
    claim_token  TEXT,
    lease_until  TEXT,
    bill_id      TEXT,
    bill_no      TEXT,
    reason       TEXT,
    attempts     INTEGER NOT NULL,
    updated_at   TEXT NOT NULL,
    changed_hash TEXT
);
CREATE INDEX IF NOT EXISTS ledger_state ON ledger (state);
CREATE TABLE IF NOT EXISTS run_lease (
    stream   TEXT PRIMARY KEY NOT NULL,
    holder   TEXT NOT NULL,
    until_ns INTEGER NOT NULL
);
";

/// Rebuilds a version 1 ledger table, whose CHECK constraint lacks `changed`, with the version 2
/// columns. Runs in one transaction.
const MIGRATE_V1: &str = "
BEGIN IMMEDIATE;
ALTER TABLE ledger RENAME TO ledger_v1;
DROP INDEX IF EXISTS ledger_state;
CREATE TABLE ledger (
    io_id        INTEGER PRIMARY KEY NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('claimed', 'done', 'retry', 'failed', 'changed')),
    content_hash TEXT NOT NULL,
    claim_token  TEXT,
    lease_until  TEXT,
    bill_id      TEXT,
    bill_no      TEXT,
    reason       TEXT,
    attempts     INTEGER NOT NULL,
    updated_at   TEXT NOT NULL,
    changed_hash TEXT
);
INSERT INTO ledger (io_id, state, content_hash, claim_token, lease_until, bill_id, bill_no, reason, attempts, updated_at)
    SELECT io_id, state, content_hash, claim_token, lease_until, bill_id, bill_no, reason, attempts, updated_at FROM ledger_v1;
DROP TABLE ledger_v1;
CREATE INDEX ledger_state ON ledger (state);
CREATE TABLE IF NOT EXISTS run_lease (
    stream   TEXT PRIMARY KEY NOT NULL,
    holder   TEXT NOT NULL,
    until_ns INTEGER NOT NULL
);
PRAGMA user_version = 2;
COMMIT;
";

const RECORD_COLUMNS: &str = "io_id, state, content_hash, claim_token, lease_until, bill_id, bill_no, reason, \
     attempts, updated_at, changed_hash";

/// Watermarks and the idempotency ledger on SQLite, for the single-machine mode.
///
/// Several `SqliteState` values, in one process or several, may open the same file: every claim
/// runs in one `BEGIN IMMEDIATE` transaction and every other change is one conditional statement.
#[derive(Debug, Clone)]
pub struct SqliteState {
    connection: Arc<Mutex<Connection>>,
    /// Database path for error messages, or `:memory:`.
    location: Arc<str>,
}

impl SqliteState {
    /// Opens (or creates) the database file, switches it to WAL mode, sets a busy timeout and
    /// creates the schema if missing.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let location: Arc<str> = path.display().to_string().into();
        let connection = Connection::open(path).map_err(|error| sql_error(&location, "open", &error))?;
        Self::prepare(connection, location)
    }

    /// Opens a private in-memory database, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        let location: Arc<str> = ":memory:".into();
        let connection = Connection::open_in_memory().map_err(|error| sql_error(&location, "open", &error))?;
        Self::prepare(connection, location)
    }

    fn prepare(connection: Connection, location: Arc<str>) -> Result<Self, StoreError> {
        init_schema(&connection).map_err(|error| sql_error(&location, "create schema", &error))?;
        let version: i64 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|error| sql_error(&location, "read schema version", &error))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::new(
                format!(
                    "sqlite database {location} has schema version {version}, newer than the supported \
                     {SCHEMA_VERSION}: upgrade countsync or use another file"
                ),
                Retry::Never,
            ));
        }
        Ok(Self { connection: Arc::new(Mutex::new(connection)), location })
    }

    /// Runs `work` on the connection in a blocking thread and maps its error.
    async fn run<T, F>(&self, operation: &'static str, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let connection = Arc::clone(&self.connection);
        let joined = tokio::task::spawn_blocking(move || {
            // A panic while the lock was held rolled its transaction back on unwind, so the
            // connection is still usable.
            let mut connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut connection)
        })
        .await;
        match joined {
            Ok(result) => result.map_err(|error| sql_error(&self.location, operation, &error)),
            Err(error) => Err(StoreError::new(
                format!("sqlite {operation} on {} did not complete: {error}", self.location),
                Retry::Later,
            )),
        }
    }

    /// Applies one transition out of `claimed`; `sql` must bind `?1` = io_id and `?2` = token.
    async fn transition(
        &self,
        operation: &'static str,
        io_id: i64,
        token: &str,
        sql: &'static str,
        values: Vec<Option<String>>,
    ) -> Result<(), StoreError> {
        let token = token.to_string();
        let changed = self
            .run(operation, move |connection| {
                let mut bound: Vec<&dyn rusqlite::ToSql> = vec![&io_id, &token];
                bound.extend(values.iter().map(|value| value as &dyn rusqlite::ToSql));
                connection.execute(sql, bound.as_slice())
            })
            .await?;
        if changed == 0 {
            warn!(io_id, operation, database = %self.location, "ledger transition rejected: claim lost");
            return Err(StoreError::new(
                format!("claim on sheet {io_id} was lost to another writer ({operation} rejected by {})", self.location),
                Retry::Never,
            ));
        }
        Ok(())
    }
}

fn init_schema(connection: &Connection) -> rusqlite::Result<()> {
    connection.busy_timeout(BUSY_TIMEOUT)?;
    // An in-memory database returns "memory" and stays in that mode.
    let _mode: String = connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version == 1 {
        migrate_v1(connection)?;
        return Ok(());
    }
    connection.execute_batch(SCHEMA)?;
    if version == 0 {
        connection.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    Ok(())
}

fn migrate_v1(connection: &Connection) -> rusqlite::Result<()> {
    if let Err(error) = connection.execute_batch(MIGRATE_V1) {
        let _ = connection.execute_batch("ROLLBACK");
        return Err(error);
    }
    tracing::info!("sqlite ledger schema upgraded from version 1 to 2");
    Ok(())
}

#[async_trait]
impl WatermarkStore for SqliteState {
    async fn load(&self, stream: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let stream = stream.to_string();
        self.run("load watermark", move |connection| {
            connection
                .query_row("SELECT at_ns FROM watermark WHERE stream = ?1", [&stream], |row| row.get::<_, i64>(0))
                .optional()
                .map(|nanos| nanos.map(DateTime::from_timestamp_nanos))
        })
        .await
    }

    async fn advance(&self, stream: &str, to: DateTime<Utc>) -> Result<bool, StoreError> {
        let Some(to_ns) = to.timestamp_nanos_opt() else {
            return Err(StoreError::new(
                format!("watermark {to} for stream {stream} is outside the range 1677..2262 that sqlite stores"),
                Retry::Never,
            ));
        };
        let stream = stream.to_string();
        let text = format_time(to);
        let moved = self
            .run("advance watermark", move |connection| {
                connection.execute(
                    "INSERT INTO watermark (stream, at, at_ns) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (stream) DO UPDATE SET at = excluded.at, at_ns = excluded.at_ns \
                     WHERE excluded.at_ns > watermark.at_ns",
                    params![stream, text, to_ns],
                )
            })
            .await?;
        Ok(moved == 1)
    }

    async fn acquire_run_lease(&self, stream: &str, holder: &str, until: DateTime<Utc>, now: DateTime<Utc>) -> Result<RunLease, StoreError> {
        let (Some(until_ns), Some(now_ns)) = (until.timestamp_nanos_opt(), now.timestamp_nanos_opt()) else {
            return Err(StoreError::new(format!("run lease times for stream {stream} are outside the range 1677..2262"), Retry::Never));
        };
        let stream = stream.to_string();
        let holder = holder.to_string();
        self.run("acquire run lease", move |connection| {
            // One conditional upsert: it writes only over no lease or an ended one.
            let written = connection.execute(
                "INSERT INTO run_lease (stream, holder, until_ns) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (stream) DO UPDATE SET holder = excluded.holder, until_ns = excluded.until_ns \
                 WHERE run_lease.until_ns <= ?4",
                params![stream, holder, until_ns, now_ns],
            )?;
            if written == 1 {
                return Ok(RunLease::Acquired);
            }
            let (holder, until_ns): (String, i64) =
                connection.query_row("SELECT holder, until_ns FROM run_lease WHERE stream = ?1", [&stream], |row| Ok((row.get(0)?, row.get(1)?)))?;
            Ok(RunLease::Held { holder, until: DateTime::from_timestamp_nanos(until_ns) })
        })
        .await
    }

    async fn release_run_lease(&self, stream: &str, holder: &str) -> Result<bool, StoreError> {
        let stream = stream.to_string();
        let holder = holder.to_string();
        let deleted = self
            .run("release run lease", move |connection| {
                connection.execute("DELETE FROM run_lease WHERE stream = ?1 AND holder = ?2", params![stream, holder])
            })
            .await?;
        Ok(deleted == 1)
    }
}

#[async_trait]
impl IdempotencyLedger for SqliteState {
    async fn claim(
        &self,
        io_id: i64,
        content_hash: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let content_hash = content_hash.to_string();
        let token = uuid::Uuid::new_v4().to_string();
        let claim = self
            .run("claim", move |connection| {
                let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let existing = read_record(&transaction, io_id)?;
                let (claim, record) = decide_claim(existing.as_ref(), io_id, &content_hash, lease_until, now, token);
                if let Some(record) = record {
                    write_record(&transaction, &record)?;
                }
                transaction.commit()?;
                Ok(claim)
            })
            .await?;
        debug!(io_id, outcome = claim_kind(&claim), "ledger claim");
        Ok(claim)
    }

    async fn mark_done(&self, io_id: i64, token: &str, bill: &BillRef, now: DateTime<Utc>) -> Result<(), StoreError> {
        let sql = "UPDATE ledger SET state = 'done', bill_id = ?3, bill_no = ?4, updated_at = ?5, \
                   claim_token = NULL, lease_until = NULL, reason = NULL \
                   WHERE io_id = ?1 AND state = 'claimed' AND claim_token = ?2";
        let values = vec![Some(bill.id.clone()), Some(bill.number.clone()), Some(format_time(now))];
        self.transition("mark done", io_id, token, sql, values).await
    }

    async fn mark_failed(&self, io_id: i64, token: &str, reason: &FailureReason, now: DateTime<Utc>) -> Result<(), StoreError> {
        let sql = "UPDATE ledger SET state = 'failed', reason = ?3, updated_at = ?4, \
                   claim_token = NULL, lease_until = NULL \
                   WHERE io_id = ?1 AND state = 'claimed' AND claim_token = ?2";
        let reason = serde_json::to_string(reason).expect("FailureReason serializes to JSON");
        let values = vec![Some(reason), Some(format_time(now))];
        self.transition("mark failed", io_id, token, sql, values).await
    }

    async fn release(&self, io_id: i64, token: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let sql = "UPDATE ledger SET state = 'retry', updated_at = ?3, claim_token = NULL, lease_until = NULL \
                   WHERE io_id = ?1 AND state = 'claimed' AND claim_token = ?2";
        self.transition("release", io_id, token, sql, vec![Some(format_time(now))]).await
    }

    async fn mark_held(&self, io_id: i64, token: &str, bill: &BillRef, reason: &FailureReason, now: DateTime<Utc>) -> Result<(), StoreError> {
        let sql = "UPDATE ledger SET state = 'changed', bill_id = ?3, bill_no = ?4, reason = ?5, updated_at = ?6, \
                   changed_hash = content_hash, claim_token = NULL, lease_until = NULL \
                   WHERE io_id = ?1 AND state = 'claimed' AND claim_token = ?2";
        let reason = serde_json::to_string(reason).expect("FailureReason serializes to JSON");
        let values = vec![Some(bill.id.clone()), Some(bill.number.clone()), Some(reason), Some(format_time(now))];
        self.transition("mark held", io_id, token, sql, values).await
    }

    async fn reset(&self, io_id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let now = format_time(now);
        let changed = self
            .run("reset", move |connection| {
                connection.execute(
                    "UPDATE ledger SET state = 'retry', changed_hash = NULL, updated_at = ?2 \
                     WHERE io_id = ?1 AND state IN ('failed', 'changed')",
                    params![io_id, now],
                )
            })
            .await?;
        Ok(changed == 1)
    }

    async fn list_held(&self, limit: usize) -> Result<Vec<LedgerRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run("list held records", move |connection| {
            let sql = format!("SELECT {RECORD_COLUMNS} FROM ledger WHERE state IN ('failed', 'changed') ORDER BY io_id LIMIT ?1");
            let mut statement = connection.prepare(&sql)?;
            let rows = statement.query_map([limit], record_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn get(&self, io_id: i64) -> Result<Option<LedgerRecord>, StoreError> {
        self.run("get ledger record", move |connection| read_record(connection, io_id)).await
    }
}

fn claim_kind(claim: &Claim) -> &'static str {
    match claim {
        Claim::Acquired { check_first: false, .. } => "acquired",
        Claim::Acquired { check_first: true, .. } => "acquired_check_first",
        Claim::Done(_) => "done",
        Claim::Busy { .. } => "busy",
        Claim::Held(_) => "held",
    }
}

fn read_record(connection: &Connection, io_id: i64) -> rusqlite::Result<Option<LedgerRecord>> {
    let sql = format!("SELECT {RECORD_COLUMNS} FROM ledger WHERE io_id = ?1");
    connection.query_row(&sql, [io_id], record_from_row).optional()
}

fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<LedgerRecord> {
            let state: String = row.get(1)?;
            let lease_until: Option<String> = row.get(4)?;
            let bill_id: Option<String> = row.get(5)?;
            let bill_no: Option<String> = row.get(6)?;
            let reason: Option<String> = row.get(7)?;
            let updated_at: String = row.get(9)?;
            Ok(LedgerRecord {
                io_id: row.get(0)?,
                state: LedgerState::parse(&state).ok_or_else(|| conversion_error(1, format!("unknown ledger state {state:?}")))?,
                content_hash: row.get(2)?,
                claim_token: row.get(3)?,
                lease_until: lease_until.map(|text| parse_time(4, &text)).transpose()?,
                bill: match (bill_id, bill_no) {
                    (Some(id), Some(number)) => Some(BillRef { id, number }),
                    _ => None,
                },
                reason: reason
                    .map(|text| serde_json::from_str(&text).map_err(|error| conversion_error(7, error.to_string())))
                    .transpose()?,
                attempts: row.get(8)?,
                updated_at: parse_time(9, &updated_at)?,
                changed_hash: row.get(10)?,
            })
}

fn write_record(connection: &Connection, record: &LedgerRecord) -> rusqlite::Result<usize> {
    let reason = record
        .reason
        .as_ref()
        .map(|reason| serde_json::to_string(reason).expect("FailureReason serializes to JSON"));
    connection.execute(
        "INSERT OR REPLACE INTO ledger \
         (io_id, state, content_hash, claim_token, lease_until, bill_id, bill_no, reason, attempts, updated_at, changed_hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            record.io_id,
            record.state.as_str(),
            record.content_hash,
            record.claim_token,
            record.lease_until.map(format_time),
            record.bill.as_ref().map(|bill| bill.id.as_str()),
            record.bill.as_ref().map(|bill| bill.number.as_str()),
            reason,
            record.attempts,
            format_time(record.updated_at),
            record.changed_hash,
        ],
    )
}

/// Formats an instant as RFC 3339 in UTC with as many fractional digits as it has, so that
/// parsing returns the same instant.
fn format_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn parse_time(column: usize, text: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|error| conversion_error(column, format!("invalid time {text:?}: {error}")))
}

fn conversion_error(column: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, Type::Text, message.into())
}

/// Maps a SQLite error to a [`StoreError`]: lock contention may clear at once, I/O trouble later,
/// and anything else (a corrupt row, a schema mismatch) needs an operator.
fn sql_error(location: &str, operation: &str, error: &rusqlite::Error) -> StoreError {
    let retry = match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Retry::Now,
        Some(ErrorCode::DiskFull | ErrorCode::SystemIoFailure | ErrorCode::CannotOpen | ErrorCode::OutOfMemory) => {
            Retry::Later
        }
        _ => Retry::Never,
    };
    StoreError::new(format!("sqlite {operation} on {location} failed: {error}"), retry)
}
