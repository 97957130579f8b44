//! End-to-end scenarios, one module each, in one test binary.

mod lambda_binaries;
mod pipeline;
