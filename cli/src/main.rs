//! `countsync`: runs the count-sheet sync on one machine, against the built-in simulators (the
//! default) or against real JuShuiTan and Kingdee tenants named in a configuration file.

mod demo;
mod failures;
mod output;
mod preview;
mod probe;

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use countsync::Config;
use countsync_core::fetcher::FetchRequest;

rust_i18n::i18n!("locales", fallback = "en");

/// Configuration used when no file is given: the demo against the built-in simulators.
const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");

#[derive(Parser)]
#[command(name = "countsync", version, about = "Sync confirmed JuShuiTan count sheets into Kingdee K3Cloud / 同步聚水潭盘点单到金蝶云星空")]
struct Cli {
    /// Language of the output: zh-CN or en.
    #[arg(long, global = true, env = "COUNTSYNC_LANG", default_value = "zh-CN", value_parser = ["zh-CN", "en"])]
    lang: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch confirmed sheets and save them as bills, until the queue is empty.
    Sync {
        /// TOML configuration file; without it the demo configuration runs against the simulators.
        #[arg(long, env = "COUNTSYNC_CONFIG_FILE")]
        config: Option<PathBuf>,
        /// Back-fill from this instant (RFC 3339, e.g. 2026-10-01T00:00:00+08:00) instead of the watermark.
        #[arg(long, requires = "end")]
        begin: Option<DateTime<Utc>>,
        /// End of the back-fill range (RFC 3339).
        #[arg(long, requires = "begin")]
        end: Option<DateTime<Utc>>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check the Kingdee tenant against the configuration, read-only: login, field keys, stock
    /// organization, bill type, warehouses and sampled materials. Exits with 1 if a check fails.
    Probe {
        /// TOML configuration file of the real tenants.
        #[arg(long, env = "COUNTSYNC_CONFIG_FILE")]
        config: PathBuf,
        /// Number of materials to sample from JuShuiTan's confirmed sheets of the last 7 days; 0 skips it.
        #[arg(long, default_value_t = 20)]
        sample_materials: usize,
        /// A bill number the integration user should be able to see, e.g. JST-700001.
        #[arg(long)]
        bill_no: Option<String>,
    },
    /// Print the exact Kingdee request of one sheet and every validation problem, without
    /// saving (预览映射结果).
    Preview {
        /// TOML configuration file whose [mapping] section is previewed.
        #[arg(long, env = "COUNTSYNC_CONFIG_FILE")]
        config: PathBuf,
        /// One sheet in JuShuiTan's JSON shape, as inventory.count.query returns it in `datas`.
        #[arg(long, conflicts_with = "io_id", required_unless_present = "io_id")]
        sheet_file: Option<PathBuf>,
        /// Fetch this sheet from JuShuiTan (the simulator with the demo configuration).
        #[arg(long)]
        io_id: Option<i64>,
    },
    /// List, explain and replay failed or held sheets (失败与暂挂的盘点单).
    Failures {
        /// TOML configuration file (local or AWS); without it the demo configuration is used.
        #[arg(long, global = true, env = "COUNTSYNC_CONFIG_FILE")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: failures::FailuresCommand,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    rust_i18n::set_locale(if cli.lang.starts_with("en") { "en" } else { "zh-CN" });

    let result = match cli.command {
        Command::Sync { config, begin, end, json } => sync(config, FetchRequest { begin, end }, json).await,
        Command::Probe { config, sample_materials, bill_no } => probe::run(&config, sample_materials, bill_no).await,
        Command::Preview { config, sheet_file, io_id } => {
            let input = match (&sheet_file, io_id) {
                (Some(path), _) => preview::SheetInput::File(path),
                (None, Some(io_id)) => preview::SheetInput::IoId(io_id),
                (None, None) => unreachable!("clap requires --sheet-file or --io-id"),
            };
            preview::run(&config, input).await
        }
        Command::Failures { config, command } => failures::run(config, DEMO_CONFIG, command).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn sync(config_file: Option<PathBuf>, request: FetchRequest, json: bool) -> anyhow::Result<ExitCode> {
    let config = match &config_file {
        Some(path) => Config::load(Some(path))?,
        None => Config::from_toml(DEMO_CONFIG)?,
    };
    let (summary, bills_in_simulator) = if config.simulator.enabled {
        demo::run(config, &request).await?
    } else {
        let state = countsync::runtime::open_state(&config, None).await?;
        let source = countsync::runtime::open_source(&config).await?;
        let target = countsync::runtime::open_target(&config)?;
        let summary = countsync::local::run(&config, source.as_ref(), target.as_ref(), &state, &request, Utc::now()).await?;
        (summary, None)
    };

    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        output::print_summary(&summary, bills_in_simulator);
    }
    Ok(if summary.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
