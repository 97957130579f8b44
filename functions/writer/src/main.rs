//! Writer Lambda: saves each SQS message's count sheet as a Kingdee bill, at most once.

use aws_lambda_events::event::sqs::SqsEvent;
use countsync::lambda::WriterApp;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let app = WriterApp::from_aws().await.map_err(|error| {
        tracing::error!(error = %error, "writer cannot start");
        error
    })?;
    let app = &app;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move { app.handle(event).await })).await
}
