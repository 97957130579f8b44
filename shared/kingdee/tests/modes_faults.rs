//! The client against the simulator: the two session login modes, session expiry, MsgCode
//! classification, save deadlines, saves that commit late, data-permission rules and the
//! ExecuteBillQuery pager.

mod common;

use std::time::{Duration, Instant};

use common::*;
use countsync_core::Retry;
use countsync_core::ports::{BillTarget, SaveOutcome};
use countsync_kingdee::{AuthMode, KingdeeClient, KingdeeConfig, KingdeeError};
use countsync_sim::kingdee::{KingdeeSim, KingdeeSimConfig};
use secrecy::SecretString;

fn is_saved(outcome: &SaveOutcome) -> bool {
    matches!(outcome, SaveOutcome::Saved(_))
}

#[tokio::test]
async fn app_secret_login_reused() {
    let sim = start_sim().await;
    let client = client(&sim, AuthMode::AppSecret);

    assert!(is_saved(&client.save_bills(&[bill(1, MATERIAL)]).await.unwrap()[0]));
    assert!(client.find_bill(FORM_ID, "JST-1").await.unwrap().is_some());
    assert!(is_saved(&client.save_bills(&[bill(2, MATERIAL)]).await.unwrap()[0]));

    let stats = sim.stats();
    assert_eq!(stats.logins, 1);
    assert_eq!(stats.logins_by_app_secret, 1);
    assert_eq!(stats.signed_requests, 0);
    assert_eq!(stats.requests_with_session_header, 3);
    assert_eq!(stats.save_calls, 2);
    assert_eq!(sim.bill_count(), 2);
}

#[tokio::test]
async fn signed_login_reused() {
    let sim = start_sim().await;
    let client = client(&sim, AuthMode::SignedLogin);

    assert!(is_saved(&client.save_bills(&[bill(1, MATERIAL)]).await.unwrap()[0]));
    assert!(client.find_bill(FORM_ID, "JST-1").await.unwrap().is_some());
    assert!(is_saved(&client.save_bills(&[bill(2, MATERIAL)]).await.unwrap()[0]));

    let stats = sim.stats();
    assert_eq!(stats.logins, 1);
    assert_eq!(stats.logins_by_sign, 1);
    assert_eq!(stats.auth_failures, 0);
    assert_eq!(stats.requests_with_session_header, 3);
    assert_eq!(sim.bill_count(), 2);
}

#[tokio::test]
async fn wrong_secret_login_fails() {
    let sim = start_sim().await;
    for auth in [AuthMode::AppSecret, AuthMode::SignedLogin] {
        let config = KingdeeConfig { app_secret: SecretString::from("wrong-secret"), ..client_config(&sim, auth) };
        let client = KingdeeClient::new(config).unwrap();
        let error = client.save_bills(&[bill(1, MATERIAL)]).await.unwrap_err();
        assert_eq!(error.retry, Retry::Never, "{auth:?}");
        assert!(!error.outcome_unknown, "{auth:?}");
        assert!(error.message.contains("kingdee.app_secret"), "{}", error.message);
    }
    assert_eq!(sim.stats().auth_failures, 2);
    assert_eq!(sim.stats().logins, 0);
    assert_eq!(sim.bill_count(), 0);
}

#[tokio::test]
async fn session_ttl_relogs_every_n_calls() {
    let sim = KingdeeSim::start(KingdeeSimConfig { session_ttl_calls: Some(3), ..sim_config() }).await.unwrap();
    let client = client(&sim, AuthMode::AppSecret);

    for _ in 0..7 {
        assert_eq!(client.find_bill(FORM_ID, "JST-1").await.unwrap(), None);
    }
    let stats = sim.stats();
    assert_eq!(stats.queries, 7);
    assert_eq!(stats.logins, 3);
    assert_eq!(stats.sessions_expired, 2);
    assert_eq!(stats.session_lost_responses, 2);
}

#[tokio::test]
async fn session_lost_after_fresh_login_misconfigured() {
    let sim = KingdeeSim::start(KingdeeSimConfig { session_ttl_calls: Some(0), ..sim_config() }).await.unwrap();
    for auth in [AuthMode::AppSecret, AuthMode::SignedLogin] {
        let client = client(&sim, auth);
        let error = client.find_bill(FORM_ID, "JST-1").await.unwrap_err();
        assert_eq!(error.retry, Retry::Never);
        for needle in ["kingdee.acct_id", "app authorization", "IP allow-list", "白名单", "集成用户"] {
            assert!(error.message.contains(needle), "{needle} missing from {}", error.message);
        }
    }
    assert_eq!(sim.stats().logins, 2);
}

#[tokio::test]
async fn call_limit_retried_in_client() {
    let sim = start_sim().await;
    let client = client(&sim, AuthMode::SignedHeaders);

    sim.reject_next_calls_with_call_limit(2);
    assert_eq!(client.find_bill(FORM_ID, "JST-1").await.unwrap(), None);
    assert_eq!(sim.stats().call_limits_injected, 2);
    assert_eq!(sim.stats().queries, 1);

    sim.reject_next_calls_with_call_limit(3);
    assert!(is_saved(&client.save_bills(&[bill(1, MATERIAL)]).await.unwrap()[0]));
    assert_eq!(sim.stats().call_limits_injected, 5);
    assert_eq!(sim.bill_count(), 1);
}

#[tokio::test]
async fn call_limit_exhausted_retries_later() {
    let sim = start_sim().await;
    let client = client(&sim, AuthMode::SignedHeaders);
    sim.reject_next_calls_with_call_limit(4);

    let error = client.save_bills(&[bill(1, MATERIAL)]).await.unwrap_err();
    assert_eq!(error.retry, Retry::Later);
    assert!(!error.outcome_unknown);
    assert!(error.message.contains("MsgCode Some(14)"), "{}", error.message);
    assert_eq!(sim.stats().call_limits_injected, 4);
    assert_eq!(sim.bill_count(), 0);
}

#[tokio::test]
async fn per_bill_codes_permanent_and_verbatim() {
    let sim = start_sim().await;
    let client = client(&sim, AuthMode::SignedHeaders);
    let mut bad_quantity = bill(2, MATERIAL);
    bad_quantity.model["FBillEntry"][0]["FCountQty"] = "十二".into();

    let outcomes = client.save_bills(&[bill(1, "SKU-404"), bad_quantity]).await.unwrap();
    let SaveOutcome::Rejected(unknown_material) = &outcomes[0] else { panic!("expected a rejection, got {:?}", outcomes[0]) };
    assert_eq!(unknown_material.msg_code, 9);
    assert_eq!(unknown_material.message, "第1行分录字段“物料编码”(FMaterialId)的值“SKU-404”在系统中不存在或未审核");
    assert_eq!(unknown_material.retry(), Retry::Never);
    let SaveOutcome::Rejected(bad_value) = &outcomes[1] else { panic!("expected a rejection, got {:?}", outcomes[1]) };
    assert_eq!(bad_value.field_name.as_deref(), Some("FCountQty"));
    assert_eq!(bad_value.message, "第1行分录字段 FCountQty 的值 \"十二\" 不是数字");
    assert_eq!(bad_value.retry(), Retry::Never);
    assert_eq!(sim.bill_count(), 0);
}

#[tokio::test]
async fn late_commit_unknown_then_found() {
    let sim = start_sim().await;
    let config = KingdeeConfig { request_timeout_secs: 1, ..client_config(&sim, AuthMode::SignedHeaders) };
    let client = KingdeeClient::new(config).unwrap();
    sim.commit_next_saves_late(1, Duration::from_millis(1_600));

    let error = client.save_bills(&[bill(1, MATERIAL)]).await.unwrap_err();
    assert!(error.outcome_unknown, "{}", error.message);
    assert_eq!(error.retry, Retry::Later);
    // The server has not committed yet, so an immediate lookup finds nothing.
    assert_eq!(client.find_bill(FORM_ID, "JST-1").await.unwrap(), None);

    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(client.find_bill(FORM_ID, "JST-1").await.unwrap().is_some());
    assert_eq!(sim.bill_count(), 1);
    assert_eq!(sim.stats().late_commits_injected, 1);
}

#[tokio::test]
async fn deadline_caps_save_timeout() {
    let sim = start_sim().await;
    let config = KingdeeConfig { request_timeout_secs: 30, lookup_timeout_secs: 1, ..client_config(&sim, AuthMode::SignedHeaders) };
    let client = KingdeeClient::new(config).unwrap();
    sim.commit_next_saves_late(1, Duration::from_secs(5));

    let started = Instant::now();
    let deadline = chrono::Utc::now() + chrono::Duration::milliseconds(2_500);
    let error = client.save_bills_until(&[bill(1, MATERIAL)], deadline).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(error.may_have_committed(), "{error}");
    assert!(elapsed < Duration::from_millis(2_000), "the save waited {elapsed:?}");
    assert!(elapsed >= Duration::from_millis(1_000), "the save gave up after {elapsed:?}");
}

#[tokio::test]
async fn deadline_too_close_not_sent() {
    let sim = start_sim().await;
    let client = client(&sim, AuthMode::SignedHeaders);
    let deadline = chrono::Utc::now() + chrono::Duration::seconds(3);

    let error = client.save_bills_until(&[bill(1, MATERIAL)], deadline).await.unwrap_err();
    assert!(matches!(error, KingdeeError::OutOfTime { .. }), "{error}");
    assert!(!error.may_have_committed());
    assert_eq!(error.retry(), Retry::Later);
    assert_eq!(sim.stats().save_calls, 0);

    client.set_save_deadline(Some(deadline));
    let through_port = client.save_bills(&[bill(1, MATERIAL)]).await.unwrap_err();
    assert!(!through_port.outcome_unknown);
    client.set_save_deadline(None);
    assert!(is_saved(&client.save_bills(&[bill(1, MATERIAL)]).await.unwrap()[0]));
}

#[tokio::test]
async fn hidden_bill_taken_invisible() {
    let sim = start_sim().await;
    let client = client(&sim, AuthMode::SignedHeaders);
    client.save_bills(&[bill(1, MATERIAL)]).await.unwrap();
    sim.hide_bills_from_queries(["JST-1".to_string()]);

    assert_eq!(client.find_bill(FORM_ID, "JST-1").await.unwrap(), None);
    let mut changed = bill(1, MATERIAL);
    changed.model["FNoteHead"] = "second attempt".into();
    let outcomes = client.save_bills(&[changed]).await.unwrap();
    let SaveOutcome::Rejected(rejection) = &outcomes[0] else { panic!("expected a rejection, got {outcomes:?}") };
    assert!(rejection.is_duplicate_bill_no(), "{rejection:?}");
    assert_eq!(rejection.msg_code, 11);
    assert_eq!(sim.stats().rows_hidden, 1);
    assert_eq!(sim.bill_count(), 1);
}

#[tokio::test]
async fn query_all_survives_row_cap() {
    let sim = KingdeeSim::start(KingdeeSimConfig { query_row_cap: 2_000, ..sim_config() }).await.unwrap();
    let client = client(&sim, AuthMode::SignedHeaders);
    let bills: Vec<_> = (1..=4_500).map(|io_id| bill(io_id, MATERIAL)).collect();
    for chunk in bills.chunks(500) {
        let outcomes = client.save_bills(chunk).await.unwrap();
        assert!(outcomes.iter().all(is_saved));
    }
    assert_eq!(sim.bill_count(), 4_500);
    let queries_before = sim.stats().queries;

    let rows = client.query_all(FORM_ID, "FID,FBillNo", "", "FID ASC").await.unwrap();
    assert_eq!(rows.len(), 4_500);
    let fids: std::collections::BTreeSet<i64> = rows.iter().map(|row| row[0].as_i64().unwrap()).collect();
    assert_eq!(fids.len(), 4_500);
    let numbers: std::collections::BTreeSet<&str> = rows.iter().map(|row| row[1].as_str().unwrap()).collect();
    assert_eq!(numbers.len(), 4_500);
    // Pages of 2,000, 2,000 and 500 rows, then the empty page that ends the read.
    assert_eq!(sim.stats().queries - queries_before, 4);

    let by_number = client.query_all(FORM_ID, "FBillNo", "", "FBillNo DESC").await.unwrap();
    assert_eq!(by_number.len(), 4_500);
    assert_eq!(by_number[0][0], "JST-999");
}

#[tokio::test]
async fn query_all_needs_order() {
    let sim = start_sim().await;
    let client = client(&sim, AuthMode::SignedHeaders);
    let error = client.query_all(FORM_ID, "FID", "", " ").await.unwrap_err();
    assert_eq!(error.retry(), Retry::Never);
    assert!(error.to_string().contains("FID ASC"), "{error}");
    assert_eq!(sim.stats().queries, 0);
}
