//! Environment overrides, in a test binary of their own because they change the process
//! environment.

use countsync::Config;

#[test]
fn env_overrides_file() {
    // SAFETY: this test binary has a single test, so no other thread reads the environment.
    unsafe {
        std::env::set_var("COUNTSYNC_WRITER__BATCH_SIZE", "7");
        std::env::set_var("COUNTSYNC_MAPPING__STOCK_ORG", "200");
        std::env::set_var("COUNTSYNC_CONFIG_FILE", "ignored-by-the-loader.toml");
    }
    let config = Config::from_toml(include_str!("../../../config/demo.toml")).unwrap();
    assert_eq!(config.writer.batch_size, 7);
    assert_eq!(config.mapping.stock_org, "200");

    unsafe {
        std::env::set_var("COUNTSYNC_WRITER__BATCH_SIZE", "0");
    }
    let error = Config::from_toml(include_str!("../../../config/demo.toml")).unwrap_err().to_string();
    assert!(error.contains("writer.batch_size"), "{error}");
}
