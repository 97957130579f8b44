//! End-to-end scenarios, one module each, in one test binary.

mod chaos;
mod failures;
mod jushuitan_faults;
mod kingdee_faults;
mod lambda_binaries;
mod pipeline;
