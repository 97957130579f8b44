//! The read-only probe against the simulator.

mod common;

use std::collections::HashSet;

use common::*;
use countsync_core::mapping::{MappingConfig, WarehouseMapping};
use countsync_kingdee::probe::{self, CheckKind, ProbeRequest};
use countsync_kingdee::{AuthMode, KingdeeClient, KingdeeConfig};
use countsync_sim::kingdee::{KingdeeSim, KingdeeSimConfig};
use secrecy::SecretString;

fn mapping(stocks: &[&str]) -> MappingConfig {
    let warehouses = stocks
        .iter()
        .enumerate()
        .map(|(index, stock)| WarehouseMapping { wms_co_id: 0, wh_id: index as i64 + 1, stock: stock.to_string(), stock_location: None })
        .collect();
    MappingConfig { stock_org: ORG.into(), warehouses, ..MappingConfig::default() }
}

fn request() -> ProbeRequest {
    ProbeRequest { materials: vec![MATERIAL.into(), "SKU-002".into()], bill_no: None }
}

#[tokio::test]
async fn probe_passes_on_matching_tenant() {
    let sim = start_sim().await;
    let client = client(&sim, AuthMode::AppSecret);
    client.save_bills_until(&[bill(1, MATERIAL)], chrono::Utc::now() + chrono::Duration::minutes(1)).await.unwrap();
    let request = ProbeRequest { bill_no: Some("JST-1".into()), ..request() };

    let report = probe::run(&client, &mapping(&[STOCK]), &request).await;
    assert!(report.passed(), "{:#?}", report.failures().collect::<Vec<_>>());
    let count = |kind| report.checks.iter().filter(|check| check.kind == kind).count();
    assert_eq!(count(CheckKind::Login), 1);
    assert_eq!(count(CheckKind::FieldKey), 20);
    assert_eq!(count(CheckKind::Warehouse), 1);
    assert_eq!(count(CheckKind::Material), 2);
    assert_eq!(count(CheckKind::BillVisible), 1);
    assert_eq!(sim.stats().metadata_queries, 1);
    assert_eq!(sim.stats().save_calls, 1);
}

#[tokio::test]
async fn probe_names_missing_warehouse() {
    let sim = start_sim().await;
    let client = client(&sim, AuthMode::SignedHeaders);

    let report = probe::run(&client, &mapping(&[STOCK, "CK404"]), &request()).await;
    assert!(!report.passed());
    let failures: Vec<_> = report.failures().collect();
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert_eq!(failures[0].kind, CheckKind::Warehouse);
    assert_eq!(failures[0].subject, "CK404");
    assert_eq!(sim.stats().save_calls, 0);
}

#[tokio::test]
async fn probe_reports_missing_field_and_material() {
    let config = KingdeeSimConfig { omitted_metadata_fields: HashSet::from(["FGainQty".to_string()]), ..sim_config() };
    let sim = KingdeeSim::start(config).await.unwrap();
    let client = client(&sim, AuthMode::SignedLogin);
    let request = ProbeRequest { materials: vec![MATERIAL.into(), "SKU-O'404".into()], bill_no: Some("JST-9".into()) };

    let report = probe::run(&client, &mapping(&[STOCK]), &request).await;
    let failed: Vec<(CheckKind, &str)> = report.failures().map(|check| (check.kind, check.subject.as_str())).collect();
    assert_eq!(failed, vec![(CheckKind::FieldKey, "FBillEntry.FGainQty"), (CheckKind::Material, "SKU-O'404"), (CheckKind::BillVisible, "JST-9")]);
}

#[tokio::test]
async fn probe_stops_at_failed_login() {
    let sim = start_sim().await;
    let config = KingdeeConfig { password: SecretString::from("wrong"), ..client_config(&sim, AuthMode::Password) };
    let client = KingdeeClient::new(config).unwrap();

    let report = probe::run(&client, &mapping(&[STOCK]), &request()).await;
    assert_eq!(report.checks.len(), 1);
    assert_eq!(report.checks[0].kind, CheckKind::Login);
    assert!(!report.checks[0].passed);
    assert!(report.checks[0].detail.as_deref().unwrap_or_default().contains("kingdee.password"));
    assert_eq!(sim.stats().metadata_queries, 0);
}
