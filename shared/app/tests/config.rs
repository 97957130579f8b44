//! Configuration loading: errors name the key, defaults fill the rest.

use countsync::Config;
use countsync::config::{QueueBackend, StateBackend};

const VALID: &str = r#"
[simulator]
enabled = true

[mapping]
stock_org = "100"

[[mapping.warehouses]]
wms_co_id = 0
wh_id = 1
stock = "CK001"
"#;

#[test]
fn demo_config_loads() {
    let config = Config::from_toml(include_str!("../../../config/demo.toml")).unwrap();
    assert!(config.simulator.enabled);
    assert_eq!(config.state.backend, StateBackend::Sqlite);
    assert_eq!(config.queue.backend, QueueBackend::Memory);
    assert_eq!(config.mapping.warehouses.len(), 4);
}

#[test]
fn defaults_fill_missing_sections() {
    let config = Config::from_toml(VALID).unwrap();
    assert_eq!(config.writer.batch_size, 20);
    assert_eq!(config.fetch.window_hours, 168);
    assert_eq!(config.mapping.bill_type, "WLPDZY01_SYS");
}

#[test]
fn unknown_key_named() {
    let error = Config::from_toml(&format!("{VALID}\n[writer]\nbatch_sise = 5\n")).unwrap_err().to_string();
    assert!(error.contains("batch_sise"), "{error}");
}

#[test]
fn wrong_type_named() {
    let error = Config::from_toml(&format!("{VALID}\n[writer]\nbatch_size = \"twenty\"\n")).unwrap_err().to_string();
    assert!(error.contains("batch_size"), "{error}");
}

#[test]
fn out_of_range_named() {
    let error = Config::from_toml(&format!("{VALID}\n[writer]\nbatch_size = 500\n")).unwrap_err().to_string();
    assert!(error.contains("writer.batch_size"), "{error}");

    let error = Config::from_toml(&format!("{VALID}\n[fetch]\nwindow_hours = 200\n")).unwrap_err().to_string();
    assert!(error.contains("fetch.window_hours"), "{error}");
}

#[test]
fn missing_table_named() {
    let error = Config::from_toml(&format!("{VALID}\n[state]\nbackend = \"dynamodb\"\n")).unwrap_err().to_string();
    assert!(error.contains("state.table"), "{error}");
}

#[test]
fn missing_stock_org_named() {
    let error = Config::from_toml("[simulator]\nenabled = true\n").unwrap_err().to_string();
    assert!(error.contains("mapping.stock_org"), "{error}");
}

#[test]
fn real_mode_requires_credentials() {
    let text = VALID.replace("enabled = true", "enabled = false");
    let error = Config::from_toml(&text).unwrap_err().to_string();
    assert!(error.contains("jushuitan"), "{error}");
}

#[test]
fn load_error_printed_once() {
    let error = Config::parse_toml("[jushuitan]\npage_sise = 50\n").unwrap_err();
    let chain = format!("{:#}", anyhow::Error::new(error));
    assert_eq!(chain.matches("unknown field").count(), 1, "{chain}");
}

#[test]
fn missing_file_names_fix() {
    let error = Config::load(Some(std::path::Path::new("/nonexistent/countsync.toml"))).unwrap_err().to_string();
    assert!(error.contains("--config"), "{error}");
    assert!(error.contains("/nonexistent/countsync.toml"), "{error}");
    assert!(error.contains("config/example.toml"), "{error}");
}
