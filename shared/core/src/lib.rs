//! Domain model, ports and handler logic of the JuShuiTan → Kingdee count-sheet sync.
//!
//! This crate knows nothing about HTTP, AWS or SQLite. It owns:
//! - the count sheet as the sync understands it ([`sheet`]),
//! - the ports the handlers call ([`ports`]) and their in-memory adapters ([`memory`]),
//! - the mapping from a sheet to a Kingdee `STK_StockCountInput` bill ([`mapping`]),
//! - the fetch windows ([`window`]) and the queue message format ([`message`]),
//! - the fetcher and writer logic ([`fetcher`], [`writer`]) that the Lambda functions and the
//!   local run share.

pub mod error;
pub mod fetcher;
pub mod mapping;
pub mod memory;
pub mod message;
pub mod ports;
pub mod sheet;
pub mod time;
pub mod window;
pub mod writer;

pub use error::Retry;
