//! Fetcher Lambda: reads confirmed count sheets from JuShuiTan and sends one SQS message each.

use countsync::lambda::FetcherApp;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let app = FetcherApp::from_aws().await.map_err(|error| {
        tracing::error!(error = %error, "fetcher cannot start");
        error
    })?;
    let app = &app;
    run(service_fn(move |event: LambdaEvent<Value>| async move { app.handle(event).await })).await
}
