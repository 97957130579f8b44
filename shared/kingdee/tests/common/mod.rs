//! Shared setup of the tests that run the client against the Kingdee simulator.

#![allow(dead_code)]

use std::collections::HashSet;

use countsync_core::ports::Bill;
use countsync_kingdee::{AuthMode, KingdeeClient, KingdeeConfig};
use countsync_sim::kingdee::{KingdeeSim, KingdeeSimConfig};
use secrecy::SecretString;
use serde_json::{Value, json};

pub const FORM_ID: &str = "STK_StockCountInput";
pub const MATERIAL: &str = "SKU-001";
pub const STOCK: &str = "CK001";
pub const ORG: &str = "100";

pub fn sim_config() -> KingdeeSimConfig {
    KingdeeSimConfig {
        materials: HashSet::from([MATERIAL.to_string(), "SKU-002".to_string()]),
        stocks: HashSet::from([STOCK.to_string()]),
        orgs: HashSet::from([ORG.to_string()]),
        ..KingdeeSimConfig::default()
    }
}

pub async fn start_sim() -> KingdeeSim {
    KingdeeSim::start(sim_config()).await.expect("simulator starts")
}

/// Returns a client configuration matching the simulator's defaults.
pub fn client_config(sim: &KingdeeSim, auth: AuthMode) -> KingdeeConfig {
    let defaults = KingdeeSimConfig::default();
    KingdeeConfig {
        server_url: sim.server_url(),
        auth,
        acct_id: defaults.acct_id,
        username: defaults.username,
        password: SecretString::from(defaults.password),
        app_id: defaults.app_id,
        app_secret: SecretString::from(defaults.app_secret),
        request_timeout_secs: 10,
        lookup_timeout_secs: 5,
        busy_backoff_ms: 10,
        ..KingdeeConfig::default()
    }
}

pub fn client(sim: &KingdeeSim, auth: AuthMode) -> KingdeeClient {
    KingdeeClient::new(client_config(sim, auth)).expect("valid client configuration")
}

/// Builds a one-row count bill for `material`.
pub fn bill(io_id: i64, material: &str) -> Bill {
    let bill_no = format!("JST-{io_id}");
    let model = json!({
        "FBillNo": bill_no,
        "FDate": "2024-05-01",
        "FBillTypeID": {"FNUMBER": "WLPDZY01_SYS"},
        "FStockOrgId": {"FNumber": ORG},
        "FNoteHead": format!("聚水潭盘点单 {io_id}"),
        "FBillEntry": [{
            "FMaterialId": {"FNumber": material},
            "FStockId": {"FNumber": STOCK},
            "FStockStatusId": {"FNumber": "KCZT01_SYS"},
            "FOwnerTypeId": "BD_OwnerOrg",
            "FOwnerId": {"FNumber": ORG},
            "FKeeperTypeId": "BD_KeeperOrg",
            "FKeeperId": {"FNumber": ORG},
            "FAcctQty": "10",
            "FCountQty": "12",
            "FGainQty": "2",
            "FLossQty": "0",
        }],
    });
    Bill { form_id: FORM_ID.into(), bill_no, io_id, content_hash: countsync_core::mapping::hash_model(&model), model, entry_count: 1 }
}

pub fn stored_numbers(sim: &KingdeeSim) -> Vec<String> {
    sim.bills().into_iter().map(|bill| bill.bill_no).collect()
}

pub fn model_of(sim: &KingdeeSim, bill_no: &str) -> Option<Value> {
    sim.bills().into_iter().find(|bill| bill.bill_no == bill_no).map(|bill| bill.model)
}
