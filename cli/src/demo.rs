//! Demo mode: the whole sync against the built-in simulators, seeded with a realistic data set.

use anyhow::Context;
use countsync::Config;
use countsync::local::{self, LocalSummary};
use countsync_core::fetcher::FetchRequest;
use countsync_sim::jushuitan::{JstSim, JstSimConfig};
use countsync_sim::kingdee::{KingdeeSim, KingdeeSimConfig};
use countsync_sim::seed;
use rust_i18n::t;

/// The two simulators of the demo; they stop when dropped.
pub struct Simulators {
    pub jst: JstSim,
    pub kingdee: KingdeeSim,
}

/// Starts both simulators, seeded with the demo data set, and points the configuration's
/// endpoints and credentials at them. The Kingdee simulator keeps its bills in the configured
/// state folder, so a later run finds the bills of an earlier one.
pub async fn start_simulators(mut config: Config) -> anyhow::Result<(Simulators, Config)> {
    std::fs::create_dir_all(&config.simulator.state_dir).context("creating the simulator state folder")?;

    let jst_config = JstSimConfig::default();
    let jst = JstSim::start(jst_config.clone(), seed::demo_sheets()).await?;
    let kingdee_config = KingdeeSimConfig {
        materials: seed::demo_materials().into_iter().collect(),
        stocks: seed::demo_stocks().into_iter().collect(),
        orgs: [seed::DEMO_STOCK_ORG.to_string()].into_iter().collect(),
        state_file: Some(config.simulator.state_dir.join("kingdee-simulator.json")),
        ..KingdeeSimConfig::default()
    };
    let kingdee = KingdeeSim::start(kingdee_config.clone()).await?;

    config.jushuitan.base_url = jst.base_url();
    config.jushuitan.app_key = jst_config.app_key.clone();
    config.jushuitan.app_secret = jst_config.app_secret.clone().into();
    config.jushuitan.access_token = jst_config.access_token.clone().into();
    config.kingdee.server_url = kingdee.server_url();
    config.kingdee.acct_id = kingdee_config.acct_id.clone();
    config.kingdee.username = kingdee_config.username.clone();
    config.kingdee.app_id = kingdee_config.app_id.clone();
    config.kingdee.app_secret = kingdee_config.app_secret.clone().into();
    Ok((Simulators { jst, kingdee }, config))
}

/// Starts both simulators and runs the sync against them. Returns the summary and the number
/// of bills the Kingdee simulator contains afterwards.
pub async fn run(config: Config, request: &FetchRequest) -> anyhow::Result<(LocalSummary, Option<usize>)> {
    let (simulators, config) = start_simulators(config).await?;
    // Standard error, so that `--json` leaves only the summary on standard output.
    eprintln!("{}", t!("demo.started", jst = simulators.jst.base_url(), kingdee = simulators.kingdee.server_url()));

    let state = countsync::runtime::open_state(&config, None).await?;
    let source = countsync::runtime::open_source(&config).await?;
    let target = countsync::runtime::open_target(&config)?;
    let summary = local::run(&config, source.as_ref(), target.as_ref(), &state, request, chrono::Utc::now()).await?;
    Ok((summary, Some(simulators.kingdee.bill_count())))
}
