//! Support for the end-to-end tests: simulators seeded for a scenario and the configuration
//! that points the sync at them.

pub mod chaos;

use std::collections::HashSet;

use countsync::Config;
use countsync_core::sheet::CountSheet;
use countsync_sim::jushuitan::{JstSim, JstSimConfig};
use countsync_sim::kingdee::{KingdeeSim, KingdeeSimConfig};
use countsync_sim::seed;

/// Both simulators, with the credentials the sync needs to reach them.
pub struct Peers {
    pub jst: JstSim,
    pub jst_config: JstSimConfig,
    pub kingdee: KingdeeSim,
    pub kingdee_config: KingdeeSimConfig,
}

impl Peers {
    /// Starts both simulators: JuShuiTan serves `sheets`, Kingdee accepts the demo materials,
    /// stocks and organization, less the materials in `unknown_materials`.
    pub async fn start(sheets: Vec<CountSheet>, unknown_materials: &[&str]) -> anyhow::Result<Self> {
        let jst_config = JstSimConfig::default();
        let jst = JstSim::start(jst_config.clone(), sheets).await?;
        let unknown: HashSet<&str> = unknown_materials.iter().copied().collect();
        let kingdee_config = KingdeeSimConfig {
            materials: seed::demo_materials().into_iter().filter(|material| !unknown.contains(material.as_str())).collect(),
            stocks: seed::demo_stocks().into_iter().collect(),
            orgs: [seed::DEMO_STOCK_ORG.to_string()].into_iter().collect(),
            ..KingdeeSimConfig::default()
        };
        let kingdee = KingdeeSim::start(kingdee_config.clone()).await?;
        Ok(Self { jst, jst_config, kingdee, kingdee_config })
    }

    /// Returns the TOML configuration that points the sync at these simulators. Secrets are
    /// left out; [`Peers::secrets_json`] carries them, as Secrets Manager does in AWS.
    pub fn config_toml(&self) -> String {
        let mut toml = format!(
            r#"
[jushuitan]
base_url = "{jst_url}"
app_key = "{app_key}"

[kingdee]
server_url = "{kingdee_url}"
acct_id = "{acct_id}"
username = "{username}"
app_id = "{app_id}"

[fetch]
start = "2026-10-01T00:00:00+08:00"
lag_secs = 0

[mapping]
stock_org = "{org}"
"#,
            jst_url = self.jst.base_url(),
            app_key = self.jst_config.app_key,
            kingdee_url = self.kingdee.server_url(),
            acct_id = self.kingdee_config.acct_id,
            username = self.kingdee_config.username,
            app_id = self.kingdee_config.app_id,
            org = seed::DEMO_STOCK_ORG,
        );
        for warehouse in seed::demo_warehouses() {
            toml.push_str(&format!(
                "\n[[mapping.warehouses]]\nwms_co_id = {}\nwh_id = {}\nstock = \"{}\"\n",
                warehouse.wms_co_id, warehouse.wh_id, warehouse.stock
            ));
        }
        toml
    }

    /// Returns the secrets as the Secrets Manager JSON the Lambda functions read.
    pub fn secrets_json(&self) -> String {
        serde_json::json!({
            "jushuitan": {
                "app_secret": self.jst_config.app_secret,
                "access_token": self.jst_config.access_token,
            },
            "kingdee": { "app_secret": self.kingdee_config.app_secret },
        })
        .to_string()
    }

    /// Builds a local configuration (SQLite state at `state_path`) against these simulators.
    pub fn local_config(&self, state_path: &std::path::Path) -> anyhow::Result<Config> {
        let mut text = self.config_toml();
        text.push_str(&format!("\n[state]\nbackend = \"sqlite\"\npath = {:?}\n", state_path.display().to_string()));
        let mut config: Config = Config::parse_toml(&text)?;
        config.jushuitan.app_secret = self.jst_config.app_secret.clone().into();
        config.jushuitan.access_token = self.jst_config.access_token.clone().into();
        config.kingdee.app_secret = self.kingdee_config.app_secret.clone().into();
        config.validate()?;
        Ok(config)
    }
}

/// Confirmed sheets of the demo data set, without the 5,000-line sheet, for quick scenarios.
pub fn small_confirmed_sheets(count: usize) -> Vec<CountSheet> {
    seed::demo_sheets().into_iter().filter(|sheet| sheet.is_confirmed() && sheet.items.len() < 100).take(count).collect()
}
