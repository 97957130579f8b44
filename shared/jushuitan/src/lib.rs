//! JuShuiTan (聚水潭) open platform client for inventory count sheets (`inventory.count.query`).
//!
//! - [`sign`]: request signatures of the current platform and the legacy gateway,
//! - [`config`]: settings and their validation,
//! - [`client`]: the [`JushuitanClient`] implementing [`countsync_core::ports::SheetSource`],
//!   with client-side rate limits and retries of throttling, clock skew and transport failures,
//! - [`token`]: the access token of the `static`, `merchant` and `isv` token modes,
//! - [`wire`]: lenient decoding of the API's JSON into [`countsync_core::sheet::CountSheet`],
//! - [`error`]: typed errors with JuShuiTan's codes and a retry classification.

pub mod client;
pub mod config;
pub mod error;
mod limits;
mod paging;
pub mod sign;
pub mod token;
pub mod wire;

pub use client::{ClientOptions, CountQueryBiz, JushuitanClient, LEGACY_METHOD, MAX_IO_IDS};
pub use config::{ConfigError, JushuitanConfig, Protocol, TokenMode};
pub use error::JstError;
