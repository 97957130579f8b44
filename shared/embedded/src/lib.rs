//! SQLite state store for the single-machine mode: watermarks and the idempotency ledger in one
//! database file, with the same conditional semantics as the in-memory and DynamoDB adapters.

#[cfg(feature = "conformance")]
pub mod conformance;
mod sqlite;

pub use sqlite::SqliteState;
