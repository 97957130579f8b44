//! Typed configuration, read once at start and validated with errors that name the key.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use countsync_core::fetcher::{FetchSettings, MAX_PAGE_SIZE};
use countsync_core::mapping::MappingConfig;
use countsync_core::window::MAX_WINDOW;
use countsync_core::writer::WriterSettings;
use countsync_jushuitan::JushuitanConfig;
use countsync_kingdee::KingdeeConfig;
use figment::Figment;
use figment::providers::{Env, Format, Json, Serialized, Toml};
use serde::Deserialize;

/// Prefix of the environment variables that override configuration keys, with `__` between
/// levels: `COUNTSYNC_STATE__TABLE` sets `state.table`.
pub const ENV_PREFIX: &str = "COUNTSYNC_";
/// Environment variable naming the configuration file of the command line.
pub const CONFIG_FILE_VAR: &str = "COUNTSYNC_CONFIG_FILE";
/// Environment variable naming a second TOML file with secrets, merged over the first.
pub const SECRETS_FILE_VAR: &str = "COUNTSYNC_SECRETS_FILE";
/// Environment variable naming the SSM parameter that contains the TOML configuration in AWS.
pub const CONFIG_PARAMETER_VAR: &str = "COUNTSYNC_CONFIG_PARAMETER";
/// Environment variable naming the Secrets Manager secret (JSON) merged over it in AWS.
pub const SECRET_ID_VAR: &str = "COUNTSYNC_SECRET_ID";

/// Merges the `COUNTSYNC_*` variables over `figment` and extracts the configuration.
///
/// figment parses variable values, so `COUNTSYNC_MAPPING__STOCK_ORG=200` arrives as a number
/// where a string code is expected. Such a key is then taken again verbatim as a string, one
/// key at a time, until the extraction succeeds or fails for another reason.
fn extract_with_env(figment: Figment) -> Result<Config, ConfigError> {
    let mut verbatim: Vec<(String, String)> = Vec::new();
    loop {
        let skipped: Vec<String> = verbatim.iter().map(|(key, _)| key.replace('.', "__")).collect();
        // Only variables with a `__` name a key; COUNTSYNC_CONFIG_FILE and its kind do not.
        let env = Env::prefixed(ENV_PREFIX)
            .filter(move |key| key.as_str().contains("__") && !skipped.iter().any(|skip| skip == key.as_str()))
            .split("__");
        let mut merged = figment.clone().merge(env);
        for (key, value) in &verbatim {
            merged = merged.merge(Serialized::default(key, value));
        }

        let error = match merged.extract::<Config>() {
            Ok(config) => return Ok(config),
            Err(error) => error,
        };
        let from_env = error.metadata.as_ref().is_some_and(|metadata| metadata.name.contains(ENV_PREFIX));
        let expects_string = matches!(&error.kind, figment::error::Kind::InvalidType(_, expected) if expected.contains("string"));
        let key = error.path.join(".");
        let raw = std::env::var(format!("{ENV_PREFIX}{}", key.replace('.', "__").to_uppercase()));
        match raw {
            Ok(value) if from_env && expects_string && !verbatim.iter().any(|(seen, _)| *seen == key) => verbatim.push((key, value)),
            _ => return Err(ConfigError::Load(Box::new(error))),
        }
    }
}

/// All settings of the sync.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub jushuitan: JushuitanConfig,
    pub kingdee: KingdeeConfig,
    pub mapping: MappingConfig,
    pub fetch: FetchConfig,
    pub writer: WriterConfig,
    pub state: StateConfig,
    pub queue: QueueConfig,
    pub simulator: SimulatorConfig,
}

/// `[fetch]`: how the fetcher walks JuShuiTan's modification times.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FetchConfig {
    /// Watermark name; use one per JuShuiTan tenant when several share a table.
    pub stream: String,
    /// Start of the first run when no watermark is stored (RFC 3339). When unset, the first run
    /// starts `initial_lookback_days` before now.
    pub start: Option<DateTime<Utc>>,
    pub initial_lookback_days: i64,
    /// Seconds a run stays behind now, so sheets that become visible late are read next time.
    pub lag_secs: i64,
    /// Seconds before the watermark a run starts again, to re-read sheets on the seam.
    pub overlap_secs: i64,
    /// Maximum query window in hours; JuShuiTan accepts at most 168 (7 days).
    pub window_hours: i64,
    pub max_windows_per_run: usize,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            stream: "jushuitan".into(),
            start: None,
            initial_lookback_days: 7,
            lag_secs: 120,
            overlap_secs: 600,
            window_hours: MAX_WINDOW.num_hours(),
            max_windows_per_run: 60,
        }
    }
}

/// `[writer]`: how bills are sent to Kingdee.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriterConfig {
    /// Bills per BatchSave call, 1 to 100.
    pub batch_size: usize,
    /// Bills with more entry rows than this go in a BatchSave of their own.
    pub large_bill_entries: usize,
    /// Maximum idempotency claim, in seconds.
    pub lease_secs: i64,
    /// Seconds kept free before the invocation deadline; no save starts later.
    pub reserve_secs: i64,
}

impl Default for WriterConfig {
    fn default() -> Self {
        let defaults = WriterSettings::default();
        Self {
            batch_size: defaults.batch_size,
            large_bill_entries: defaults.large_bill_entries,
            lease_secs: defaults.lease.num_seconds(),
            reserve_secs: defaults.reserve.num_seconds(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateBackend {
    /// A SQLite file, for the single-machine mode.
    #[default]
    Sqlite,
    Dynamodb,
}

/// `[state]`: where watermarks and idempotency records live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    pub backend: StateBackend,
    /// SQLite file, for `backend = "sqlite"`.
    pub path: PathBuf,
    /// DynamoDB table, for `backend = "dynamodb"`.
    pub table: String,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self { backend: StateBackend::Sqlite, path: PathBuf::from(".local/countsync.sqlite"), table: String::new() }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueBackend {
    /// An in-process queue: the command line runs fetcher and writer in one process.
    #[default]
    Memory,
    Sqs,
}

/// `[queue]`: how sheets travel from the fetcher to the writer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub backend: QueueBackend,
    /// SQS queue URL, for `backend = "sqs"`.
    pub url: String,
}

/// `[simulator]`: run against the built-in JuShuiTan and Kingdee simulators instead of the
/// real systems (the demo). Endpoints and credentials are then set by the command line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorConfig {
    pub enabled: bool,
    /// Folder for the Kingdee simulator's saved bills, so a second run finds the first run's bills.
    pub state_dir: PathBuf,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self { enabled: false, state_dir: PathBuf::from(".local") }
    }
}

/// A configuration problem, naming the key and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration value `{key}`: {message}")]
    Invalid { key: String, message: String },
    /// The figment error is the message, not a source, so `{:#}` prints it once.
    #[error("cannot read configuration: {0}")]
    Load(Box<figment::Error>),
    #[error("cannot read configuration from AWS: {0}")]
    Aws(String),
}

impl From<Box<figment::Error>> for ConfigError {
    fn from(error: Box<figment::Error>) -> Self {
        ConfigError::Load(error)
    }
}

impl ConfigError {
    fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid { key: key.into(), message: message.into() }
    }
}

impl Config {
    /// Reads a TOML file (when given), the secrets file named by `COUNTSYNC_SECRETS_FILE` (when
    /// set) and `COUNTSYNC_*` variables, then validates the result.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::invalid(
                    &format!("--config ({CONFIG_FILE_VAR})"),
                    format!("configuration file {} not found: check the path, or copy config/example.toml and edit it", path.display()),
                ));
            }
            figment = figment.merge(Toml::file(path));
        }
        if let Ok(secrets) = std::env::var(SECRETS_FILE_VAR) {
            figment = figment.merge(Toml::file(secrets));
        }
        Self::finish(figment)
    }

    /// Parses TOML text and `COUNTSYNC_*` variables, then validates the result.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::finish(Figment::new().merge(Toml::string(text)))
    }

    /// Parses TOML text alone, without environment variables or validation, for callers that
    /// fill in more values (such as secrets) before calling [`Config::validate`].
    pub fn parse_toml(text: &str) -> Result<Self, ConfigError> {
        Ok(Figment::new().merge(Toml::string(text)).extract().map_err(Box::new)?)
    }

    /// Reads the configuration as the Lambda functions do: the TOML text of the SSM parameter
    /// named by `COUNTSYNC_CONFIG_PARAMETER`, the JSON secret named by `COUNTSYNC_SECRET_ID`
    /// merged over it, then `COUNTSYNC_*` variables.
    pub async fn load_from_aws(sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Ok(name) = std::env::var(CONFIG_PARAMETER_VAR) {
            let output = aws_sdk_ssm::Client::new(sdk)
                .get_parameter()
                .name(&name)
                .with_decryption(true)
                .send()
                .await
                .map_err(|error| ConfigError::Aws(format!("reading SSM parameter {name} failed: {}", aws_sdk_ssm::error::DisplayErrorContext(&error))))?;
            let text = output.parameter.and_then(|parameter| parameter.value).unwrap_or_default();
            figment = figment.merge(Toml::string(&text));
        }
        if let Ok(secret_id) = std::env::var(SECRET_ID_VAR) {
            let output = aws_sdk_secretsmanager::Client::new(sdk)
                .get_secret_value()
                .secret_id(&secret_id)
                .send()
                .await
                .map_err(|error| ConfigError::Aws(format!("reading secret {secret_id} failed: {}", aws_sdk_secretsmanager::error::DisplayErrorContext(&error))))?;
            let text = output.secret_string.unwrap_or_default();
            figment = figment.merge(Json::string(&text));
        }
        Self::finish(figment)
    }

    fn finish(figment: Figment) -> Result<Self, ConfigError> {
        let config = extract_with_env(figment)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every section; the error names the first invalid key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.mapping
            .validate()
            .map_err(|error| ConfigError::Invalid { key: error.key, message: error.message })?;
        if !self.simulator.enabled {
            self.jushuitan.validate().map_err(|error| ConfigError::invalid("jushuitan", error.to_string()))?;
            self.kingdee.validate().map_err(|error| ConfigError::invalid("kingdee", error.to_string()))?;
        }

        let fetch = &self.fetch;
        if fetch.window_hours < 1 || fetch.window_hours > MAX_WINDOW.num_hours() {
            return Err(ConfigError::invalid("fetch.window_hours", format!("{} is outside 1..=168 (JuShuiTan accepts at most 7 days)", fetch.window_hours)));
        }
        if fetch.lag_secs < 0 || fetch.overlap_secs < 0 {
            return Err(ConfigError::invalid("fetch.lag_secs", "lag_secs and overlap_secs must not be negative"));
        }
        if fetch.max_windows_per_run == 0 {
            return Err(ConfigError::invalid("fetch.max_windows_per_run", "must be at least 1"));
        }
        if fetch.stream.trim().is_empty() {
            return Err(ConfigError::invalid("fetch.stream", "must not be empty"));
        }

        let writer = &self.writer;
        if !(1..=100).contains(&writer.batch_size) {
            return Err(ConfigError::invalid("writer.batch_size", format!("{} is outside 1..=100; about 20 bills per BatchSave is advised", writer.batch_size)));
        }
        if writer.lease_secs < 30 {
            return Err(ConfigError::invalid("writer.lease_secs", format!("{} is below 30 seconds", writer.lease_secs)));
        }
        if writer.reserve_secs < 0 {
            return Err(ConfigError::invalid("writer.reserve_secs", "must not be negative"));
        }

        if self.state.backend == StateBackend::Dynamodb && self.state.table.trim().is_empty() {
            return Err(ConfigError::invalid("state.table", "missing; set the DynamoDB table name (COUNTSYNC_STATE__TABLE)"));
        }
        if self.queue.backend == QueueBackend::Sqs && self.queue.url.trim().is_empty() {
            return Err(ConfigError::invalid("queue.url", "missing; set the SQS queue URL (COUNTSYNC_QUEUE__URL)"));
        }
        Ok(())
    }

    /// Fetcher settings for a run starting at `now`.
    pub fn fetch_settings(&self, now: DateTime<Utc>) -> FetchSettings {
        let fetch = &self.fetch;
        FetchSettings {
            stream: fetch.stream.clone(),
            initial_start: fetch.start.unwrap_or(now - Duration::days(fetch.initial_lookback_days)),
            lag: Duration::seconds(fetch.lag_secs),
            overlap: Duration::seconds(fetch.overlap_secs),
            max_window: Duration::hours(fetch.window_hours),
            page_size: self.jushuitan.page_size.min(MAX_PAGE_SIZE),
            max_windows_per_run: fetch.max_windows_per_run,
            ..FetchSettings::default()
        }
    }

    pub fn writer_settings(&self) -> WriterSettings {
        WriterSettings {
            batch_size: self.writer.batch_size,
            large_bill_entries: self.writer.large_bill_entries,
            lease: Duration::seconds(self.writer.lease_secs),
            reserve: Duration::seconds(self.writer.reserve_secs),
        }
    }
}
