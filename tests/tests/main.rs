//! End-to-end scenarios, one module each, in one test binary.

mod kingdee_faults;
mod jushuitan_faults;
mod lambda_binaries;
mod pipeline;
mod chaos;
mod failures;
