//! AWS adapters of the sync's ports: [`DynamoState`] stores watermarks and the idempotency ledger
//! in one DynamoDB table, and [`SqsQueue`] hands sheets from the fetcher to the writer over SQS.

mod dynamo;
mod error;
mod item;
mod sqs;
mod token;

pub use dynamo::DynamoState;
pub use error::classify;
pub use sqs::{MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, SqsQueue};
