//! The DynamoDB token store against moto, through the shared conformance case.

mod common;

use countsync_aws::DynamoState;
use countsync_embedded::conformance;

#[tokio::test]
async fn token_store_conformance() {
    let moto = common::moto().await;
    let state = DynamoState::from_conf(&moto.sdk_config().await, common::unique_name("tokens"));
    state.create_table().await.unwrap();

    conformance::token_replaced_only_over_read_version(&state).await;
}
