//! The Kingdee client against the simulator: signed headers and password login, partial batch success, duplicate
//! numbers, lookups, session loss and the failures whose outcome is unknown.

mod common;

use common::*;
use countsync_core::Retry;
use countsync_core::ports::{BillRef, BillTarget, SaveOutcome};
use countsync_kingdee::{AuthMode, KingdeeClient, KingdeeConfig};
use countsync_sim::kingdee::{KingdeeSim, KingdeeSimConfig};
use secrecy::SecretString;

fn saved(outcome: &SaveOutcome) -> BillRef {
    match outcome {
        SaveOutcome::Saved(bill) => bill.clone(),
        other => panic!("expected Saved, got {other:?}"),
    }
}

#[tokio::test]
async fn signed_headers_save_and_find() {
    let sim = start_sim().await;
    let client = client(&sim, AuthMode::SignedHeaders);

    let outcomes = client.save_bills(&[bill(1, MATERIAL)]).await.unwrap();
    assert_eq!(outcomes.len(), 1);
    let saved = saved(&outcomes[0]);
    assert_eq!(saved.number, "JST-1");

    let found = client.find_bill(FORM_ID, "JST-1").await.unwrap();
    assert_eq!(found, Some(saved.clone()));
    assert_eq!(sim.bills()[0].fid.to_string(), saved.id);

    let stats = sim.stats();
    assert_eq!(stats.logins, 0);
    assert_eq!(stats.signed_requests, 2);
    assert_eq!(stats.auth_failures, 0);
    // The first response set the session cookie; the lookup replayed it as cookie and header.
    assert_eq!(stats.requests_with_session_cookie, 1);
    assert_eq!(stats.requests_with_session_header, 1);
}

#[tokio::test]
async fn password_login_cookie_and_header() {
    let sim = start_sim().await;
    let client = client(&sim, AuthMode::Password);

    let outcomes = client.save_bills(&[bill(1, MATERIAL), bill(2, "SKU-002")]).await.unwrap();
    assert!(outcomes.iter().all(|outcome| matches!(outcome, SaveOutcome::Saved(_))), "{outcomes:?}");
    assert!(client.find_bill(FORM_ID, "JST-2").await.unwrap().is_some());

    let stats = sim.stats();
    assert_eq!(stats.logins, 1);
    assert_eq!(stats.save_calls, 1);
    assert_eq!(stats.queries, 1);
    assert_eq!(stats.signed_requests, 0);
    assert_eq!(stats.requests_with_session_cookie, 2);
    assert_eq!(stats.requests_with_session_header, 2);
}

#[tokio::test]
async fn wrong_password_is_configuration_error() {
    let sim = start_sim().await;
    let config = KingdeeConfig { password: SecretString::from("wrong"), ..client_config(&sim, AuthMode::Password) };
    let client = KingdeeClient::new(config).unwrap();

    let error = client.save_bills(&[bill(1, MATERIAL)]).await.unwrap_err();
    assert_eq!(error.retry, Retry::Never);
    assert!(!error.outcome_unknown);
    assert!(error.message.contains("kingdee.password"), "{}", error.message);
    assert_eq!(sim.stats().auth_failures, 1);
    assert_eq!(sim.bill_count(), 0);
}

#[tokio::test]
async fn batch_partial_success_by_dindex() {
    let sim = start_sim().await;
    let client = client(&sim, AuthMode::SignedHeaders);

    let bills = [bill(1, MATERIAL), bill(2, "SKU-404"), bill(3, "SKU-002")];
    let outcomes = client.save_bills(&bills).await.unwrap();
    assert_eq!(outcomes.len(), 3);
    assert_eq!(saved(&outcomes[0]).number, "JST-1");
    assert_eq!(saved(&outcomes[2]).number, "JST-3");
    let SaveOutcome::Rejected(rejection) = &outcomes[1] else { panic!("expected a rejection, got {:?}", outcomes[1]) };
    assert_eq!(rejection.msg_code, 9);
    assert_eq!(rejection.field_name.as_deref(), Some("FMaterialId"));
    assert!(rejection.message.contains("SKU-404"), "{}", rejection.message);
    assert!(rejection.message.contains("第1行"), "{}", rejection.message);
    assert_eq!(rejection.retry(), Retry::Never);

    assert_eq!(stored_numbers(&sim), vec!["JST-1", "JST-3"]);
    let stats = sim.stats();
    assert_eq!(stats.bills_saved, 2);
    assert_eq!(stats.bills_rejected, 1);
}

#[tokio::test]
async fn duplicate_bill_no_rejected() {
    let sim = start_sim().await;
    let client = client(&sim, AuthMode::SignedHeaders);
    let first = client.save_bills(&[bill(1, MATERIAL)]).await.unwrap();
    let first_id = saved(&first[0]).id;

    let mut changed = bill(1, MATERIAL);
    changed.model["FNoteHead"] = "changed in JuShuiTan".into();
    let outcomes = client.save_bills(&[changed]).await.unwrap();
    let SaveOutcome::Rejected(rejection) = &outcomes[0] else { panic!("expected a rejection, got {outcomes:?}") };
    assert!(rejection.is_duplicate_bill_no(), "{rejection:?}");
    assert!(rejection.message.contains("[JST-1]已经被使用"), "{}", rejection.message);

    assert_eq!(sim.bill_count(), 1);
    assert_eq!(client.find_bill(FORM_ID, "JST-1").await.unwrap().map(|bill| bill.id), Some(first_id));
}

#[tokio::test]
async fn identical_repeat_rejected() {
    let sim = start_sim().await;
    let client = client(&sim, AuthMode::SignedHeaders);
    client.save_bills(&[bill(1, MATERIAL)]).await.unwrap();

    let outcomes = client.save_bills(&[bill(1, MATERIAL)]).await.unwrap();
    let SaveOutcome::Rejected(rejection) = &outcomes[0] else { panic!("expected a rejection, got {outcomes:?}") };
    assert!(rejection.message.contains("ValidateRepeatJson"), "{}", rejection.message);
    assert_eq!(sim.bill_count(), 1);
}

#[tokio::test]
async fn find_bill_absent_and_quoted() {
    let sim = start_sim().await;
    let client = client(&sim, AuthMode::SignedHeaders);
    client.save_bills(&[bill(1, MATERIAL)]).await.unwrap();

    assert_eq!(client.find_bill(FORM_ID, "JST-999").await.unwrap(), None);
    assert_eq!(client.find_bill(FORM_ID, "JST-1' or '1'='1").await.unwrap(), None);
    assert_eq!(client.find_bill("STK_StockCountGain", "JST-1").await.unwrap(), None);
    assert_eq!(sim.stats().queries, 3);

    let error = client.find_bill(FORM_ID, " ").await.unwrap_err();
    assert_eq!(error.retry, Retry::Never);
}

#[tokio::test]
async fn session_expiry_relogs_once() {
    let sim = start_sim().await;
    let client = client(&sim, AuthMode::Password);
    client.save_bills(&[bill(1, MATERIAL)]).await.unwrap();
    assert_eq!(sim.stats().logins, 1);

    // A lookup is re-sent after one new login.
    sim.expire_sessions();
    assert!(client.find_bill(FORM_ID, "JST-1").await.unwrap().is_some());
    assert_eq!(sim.stats().logins, 2);

    // A save is not re-sent: the writer must look the bill up first.
    sim.expire_sessions();
    let error = client.save_bills(&[bill(2, MATERIAL)]).await.unwrap_err();
    assert!(error.outcome_unknown);
    assert_eq!(error.retry, Retry::Later);
    assert_eq!(sim.bill_count(), 1);
    assert_eq!(sim.stats().save_calls, 1);

    assert_eq!(client.find_bill(FORM_ID, "JST-2").await.unwrap(), None);
    assert_eq!(sim.stats().logins, 3);
    let outcomes = client.save_bills(&[bill(2, MATERIAL)]).await.unwrap();
    assert_eq!(saved(&outcomes[0]).number, "JST-2");
    assert_eq!(sim.stats().logins, 3);
}

#[tokio::test]
async fn session_lost_after_login_is_misconfiguration() {
    let sim = KingdeeSim::start(KingdeeSimConfig { session_ttl_calls: Some(0), ..sim_config() }).await.unwrap();
    let client = client(&sim, AuthMode::Password);

    let error = client.find_bill(FORM_ID, "JST-1").await.unwrap_err();
    assert_eq!(error.retry, Retry::Never);
    assert!(error.message.contains("kingdee.acct_id"), "{}", error.message);
    assert_eq!(sim.stats().logins, 1);
}

#[tokio::test]
async fn wrong_app_secret_rejected() {
    let sim = start_sim().await;
    let config = KingdeeConfig { app_secret: SecretString::from("ffffffffffffffffffffffffffffffff"), ..client_config(&sim, AuthMode::SignedHeaders) };
    let client = KingdeeClient::new(config).unwrap();

    let error = client.save_bills(&[bill(1, MATERIAL)]).await.unwrap_err();
    assert_eq!(error.retry, Retry::Never);
    assert!(!error.outcome_unknown);
    assert!(error.message.contains("IP allow-list"), "{}", error.message);
    assert_eq!(sim.bill_count(), 0);
    assert_eq!(sim.stats().auth_failures, 1);
    assert_eq!(sim.stats().save_calls, 0);
}

#[tokio::test]
async fn http_500_after_commit_unknown() {
    let sim = start_sim().await;
    let client = client(&sim, AuthMode::SignedHeaders);
    sim.fail_next_saves_with_500_after_commit(1);

    let error = client.save_bills(&[bill(1, MATERIAL)]).await.unwrap_err();
    assert!(error.outcome_unknown);
    assert_eq!(error.retry, Retry::Later);
    assert!(error.message.contains("HTTP 500"), "{}", error.message);
    assert_eq!(sim.bill_count(), 1);
    assert!(client.find_bill(FORM_ID, "JST-1").await.unwrap().is_some());
}

#[tokio::test]
async fn whole_call_lock_retries_later() {
    let sim = start_sim().await;
    let client = client(&sim, AuthMode::SignedHeaders);
    // One more lock than the client retries on its own.
    sim.reject_next_saves_with_lock(4);

    let error = client.save_bills(&[bill(1, MATERIAL), bill(2, MATERIAL)]).await.unwrap_err();
    assert_eq!(error.retry, Retry::Later);
    assert!(!error.outcome_unknown);
    assert_eq!(sim.bill_count(), 0);
    assert_eq!(sim.stats().save_calls, 4);
    assert_eq!(sim.stats().locks_injected, 4);

    // The same request may be sent again unchanged, because nothing was saved.
    let outcomes = client.save_bills(&[bill(1, MATERIAL), bill(2, MATERIAL)]).await.unwrap();
    assert!(outcomes.iter().all(|outcome| matches!(outcome, SaveOutcome::Saved(_))), "{outcomes:?}");
}

#[tokio::test]
async fn connection_refused_not_sent() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let config = KingdeeConfig {
        server_url: format!("http://127.0.0.1:{port}/k3cloud/"),
        acct_id: "fakeacct001".into(),
        username: "demo".into(),
        app_id: KingdeeSimConfig::default().app_id,
        app_secret: SecretString::from("0123456789abcdef0123456789abcdef"),
        ..KingdeeConfig::default()
    };
    let client = KingdeeClient::new(config).unwrap();

    let error = client.save_bills(&[bill(1, MATERIAL)]).await.unwrap_err();
    assert!(!error.outcome_unknown, "{}", error.message);
    assert_eq!(error.retry, Retry::Later);
}

#[tokio::test]
async fn state_file_survives_restart() {
    let path = std::env::temp_dir().join(format!("kingdee-sim-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let config = KingdeeSimConfig { state_file: Some(path.clone()), ..sim_config() };

    let first = KingdeeSim::start(config.clone()).await.unwrap();
    let saved_id = saved(&client(&first, AuthMode::SignedHeaders).save_bills(&[bill(1, MATERIAL)]).await.unwrap()[0]).id;
    first.stop().await;

    let second = KingdeeSim::start(config).await.unwrap();
    assert_eq!(stored_numbers(&second), vec!["JST-1"]);
    let client = client(&second, AuthMode::SignedHeaders);
    assert_eq!(client.find_bill(FORM_ID, "JST-1").await.unwrap().map(|bill| bill.id), Some(saved_id.clone()));
    let next = saved(&client.save_bills(&[bill(2, MATERIAL)]).await.unwrap()[0]).id;
    assert_ne!(next, saved_id);
    assert!(model_of(&second, "JST-2").is_some());
    second.stop().await;
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn bill_summary_reads_entries() {
    let sim = start_sim().await;
    let kingdee = client(&sim, AuthMode::SignedHeaders);
    let saved = bill(601, MATERIAL);
    kingdee.batch_save(std::slice::from_ref(&saved)).await.unwrap();

    let summary = kingdee.fetch_bill_summary(FORM_ID, &saved.bill_no).await.unwrap().expect("saved bill found");
    assert_eq!(summary.bill.number, saved.bill_no);
    assert_eq!(summary.entries.as_deref(), Some(saved.entry_summaries().as_slice()));
    assert_eq!(summary.entries.as_ref().unwrap()[0].count_qty, "12");
    assert!(kingdee.fetch_bill_summary(FORM_ID, "JST-404").await.unwrap().is_none());
    sim.stop().await;
}

#[tokio::test]
async fn bill_summary_shows_edited_bill() {
    let sim = start_sim().await;
    let kingdee = client(&sim, AuthMode::SignedHeaders);
    let expected = bill(602, MATERIAL);
    // The same number in Kingdee, edited by a user: another count, and the row copied.
    let mut edited = expected.model.clone();
    edited["FBillEntry"][0]["FCountQty"] = serde_json::json!("11.000");
    let second_row = edited["FBillEntry"][0].clone();
    edited["FBillEntry"].as_array_mut().unwrap().push(second_row);
    sim.insert_bill(FORM_ID, &expected.bill_no, edited, "A");

    let summary = kingdee.fetch_bill_summary(FORM_ID, &expected.bill_no).await.unwrap().expect("edited bill found");
    let entries = summary.entries.expect("the client reads the rows back");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].count_qty, "11", "quantities are normalized");
    assert_ne!(entries, expected.entry_summaries());
    sim.stop().await;
}
