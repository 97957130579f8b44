//! Runs the chaos harness once and prints its report; exits with 1 when a bill is lost,
//! duplicated or extra.
//!
//! `cargo run --release -p countsync-tests --bin chaos -- --sheets 5000`

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use countsync_tests::chaos::{self, ChaosOptions};

#[derive(Parser)]
#[command(about = "Run the count-sheet pipeline on moto and the simulators under injected faults")]
struct Args {
    /// Count sheets to generate (about one in ten is not confirmed).
    #[arg(long, default_value_t = 5_000)]
    sheets: usize,
    /// Concurrent writers consuming the queue.
    #[arg(long, default_value_t = 6)]
    writers: usize,
    /// Seed of the sheet generator and of Kingdee's fault draws.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 1_800)]
    time_limit_secs: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let args = Args::parse();
    let options = ChaosOptions {
        sheets: args.sheets,
        writers: args.writers,
        seed: args.seed,
        time_limit: Duration::from_secs(args.time_limit_secs),
        ..ChaosOptions::default()
    };
    match chaos::run(options).await {
        Ok(report) => {
            println!("{report}");
            if report.problems().is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(error) => {
            eprintln!("error: chaos run failed: {error:#}");
            ExitCode::from(2)
        }
    }
}
