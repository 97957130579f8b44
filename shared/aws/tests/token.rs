//! The DynamoDB token store against moto: one refresher at a time replaces the pair.

mod common;

use chrono::{Duration, TimeZone, Utc};
use countsync_aws::DynamoState;
use countsync_core::ports::{StoredToken, TokenStore};

fn token(access: &str, version: u64) -> StoredToken {
    StoredToken {
        access_token: access.into(),
        refresh_token: format!("refresh-{access}"),
        expires_at: Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap() + Duration::milliseconds(250),
        version,
    }
}

#[tokio::test]
async fn token_replaced_only_over_read_version() {
    let moto = common::moto().await;
    let state = DynamoState::from_conf(&moto.sdk_config().await, common::unique_name("tokens"));
    state.create_table().await.unwrap();

    assert_eq!(state.load_token("app-1").await.unwrap(), None);
    assert!(state.replace_token("app-1", None, &token("first", 1)).await.unwrap());
    // A second first write loses: a token is already stored.
    assert!(!state.replace_token("app-1", None, &token("other", 1)).await.unwrap());
    assert_eq!(state.load_token("app-1").await.unwrap(), Some(token("first", 1)));

    // Two refreshers read version 1; the second write over version 1 loses.
    assert!(state.replace_token("app-1", Some(1), &token("second", 2)).await.unwrap());
    assert!(!state.replace_token("app-1", Some(1), &token("stale", 2)).await.unwrap());
    assert_eq!(state.load_token("app-1").await.unwrap(), Some(token("second", 2)));

    // Each application key has its own pair.
    assert_eq!(state.load_token("app-2").await.unwrap(), None);
}
