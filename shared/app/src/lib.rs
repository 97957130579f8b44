//! Configuration and wiring of the count-sheet sync, shared by the two Lambda functions and the
//! `countsync` command line.
//!
//! - [`config`] reads the settings once at start: a TOML file (an SSM parameter in AWS), secrets
//!   (Secrets Manager in AWS, a file or the environment locally) and `COUNTSYNC_*` variables.
//! - [`runtime`] builds the adapters the configuration names.
//! - [`lambda`] turns Lambda events into fetcher and writer calls and back.
//! - [`local`] runs fetcher and writer in one process with an in-process queue.

pub mod config;
pub mod lambda;
pub mod local;
pub mod runtime;

pub use config::{Config, ConfigError};
