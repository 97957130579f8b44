//! Test setup shared by the moto-backed tests.

use std::sync::Once;

use countsync_sim::moto::Moto;

/// Starts (or connects to) moto after making sure the SDK never calls the EC2 metadata service.
pub async fn moto() -> Moto {
    static DISABLE_METADATA: Once = Once::new();
    // Set once, before any SDK client exists; the SDK reads the environment through std, which
    // serializes access.
    DISABLE_METADATA.call_once(|| std::env::set_var("AWS_EC2_METADATA_DISABLED", "true"));
    Moto::start().await.expect("moto must start")
}

/// Returns a name no other test uses, so tests may share one moto server.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}
