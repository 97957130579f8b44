//! Kingdee K3Cloud (金蝶云星空) WebAPI client for the count-sheet sync.
//!
//! - [`config`]: the `[kingdee]` settings and their validation,
//! - [`sign`]: the signed headers of the official SDK and the LoginBySign hash,
//! - [`wire`]: classification of every response shape Kingdee is known to return,
//! - [`outcome`]: per-bill outcomes of a BatchSave, matched by `DIndex`,
//! - [`error`]: [`KingdeeError`] and its retry classification,
//! - [`client`]: [`KingdeeClient`], the [`countsync_core::ports::BillTarget`] adapter,
//! - [`probe`]: read-only checks of a tenant against the configuration.

pub mod client;
pub mod config;
pub mod error;
pub mod operations;
pub mod outcome;
pub mod probe;
pub mod sign;
pub mod wire;

pub use client::KingdeeClient;
pub use config::{AuthMode, ConfigError, KingdeeConfig};
pub use error::KingdeeError;
