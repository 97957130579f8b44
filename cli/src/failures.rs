//! `countsync failures`: lists the sheets that need an operator (failed, or held because they
//! changed after sync), explains each, and replays chosen sheets once the cause is fixed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use countsync::Config;
use countsync::config::QueueBackend;
use countsync::local::{self, ReplaySummary};
use countsync::runtime::{self, State};
use countsync_core::ports::{BillTarget, LedgerRecord, LedgerState, SheetSource};
use countsync_core::writer::MessageOutcome;
use rust_i18n::t;

/// Held records read at most by `list` and by `replay --reason`/`--all`.
const MAX_LISTED: usize = 10_000;

#[derive(Subcommand)]
pub enum FailuresCommand {
    /// List failed and held sheets with their reason.
    List {
        /// Print the records as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Explain one sheet: reason in Chinese and English, Kingdee's message and what to do.
    Explain {
        /// JuShuiTan sheet id (io_id).
        io_id: i64,
    },
    /// Re-fetch sheets from JuShuiTan and save them again, after the cause was fixed.
    Replay {
        /// Sheet ids (io_id) to replay.
        #[arg(required_unless_present_any = ["reason", "all"], conflicts_with_all = ["reason", "all"])]
        io_ids: Vec<i64>,
        /// Replay every listed sheet with this reason code, e.g. unknown_warehouse.
        #[arg(long, conflicts_with = "all")]
        reason: Option<String>,
        /// Replay every listed sheet.
        #[arg(long)]
        all: bool,
    },
}

/// Runs one `failures` subcommand. Without `config_file` the demo configuration is used.
pub async fn run(config_file: Option<PathBuf>, demo_config: &str, command: FailuresCommand) -> anyhow::Result<ExitCode> {
    let config = match &config_file {
        Some(path) => Config::load(Some(path))?,
        None => Config::from_toml(demo_config)?,
    };
    let state = runtime::open_state(&config, None).await?;
    match command {
        FailuresCommand::List { json } => list(&state, json).await,
        FailuresCommand::Explain { io_id } => explain(&state, io_id).await,
        FailuresCommand::Replay { io_ids, reason, all } => {
            let chosen = choose(&state, io_ids, reason.as_deref(), all).await?;
            replay(config, &state, &chosen).await
        }
    }
}

async fn list(state: &State, json: bool) -> anyhow::Result<ExitCode> {
    let held = state.ledger.list_held(MAX_LISTED).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&held)?);
        return Ok(ExitCode::SUCCESS);
    }
    if held.is_empty() {
        println!("{}", t!("failures.none"));
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", t!("failures.header", count = held.len()));
    for record in &held {
        let (code, message) = reason_text(record);
        println!("  {:>12}  {:<8} [{code}] {message}", record.io_id, record.state.as_str());
    }
    Ok(ExitCode::SUCCESS)
}

async fn explain(state: &State, io_id: i64) -> anyhow::Result<ExitCode> {
    let Some(record) = state.ledger.get(io_id).await? else {
        println!("{}", t!("failures.not_found", io_id = io_id));
        return Ok(ExitCode::from(1));
    };
    println!("io_id {io_id}: {}", record.state.as_str());
    println!("  {}", t!("failures.attempts", attempts = record.attempts, updated_at = record.updated_at.to_rfc3339()));
    if let Some(bill) = &record.bill {
        println!("  {}", t!("failures.bill", number = bill.number, id = bill.id));
    }
    if let Some(reason) = &record.reason {
        println!("  {}: {}", t!("failures.reason_code"), reason.code);
        println!("  中文: {}", reason.message_zh);
        println!("  English: {}", reason.message_en);
        if let Some(detail) = &reason.detail {
            println!("  {}: {detail}", t!("failures.detail"));
        }
        let (zh, en) = advice(&reason.code);
        println!("  {}:", t!("failures.what_to_do"));
        println!("    {zh}");
        println!("    {en}");
    }
    if record.state == LedgerState::Changed {
        println!("  {}", t!("failures.hashes", sent = record.content_hash, changed = record.changed_hash.as_deref().unwrap_or("?")));
    }
    Ok(ExitCode::SUCCESS)
}

/// Returns the sheets to replay: the given ids, or the held records with the reason, or all.
async fn choose(state: &State, io_ids: Vec<i64>, reason: Option<&str>, all: bool) -> anyhow::Result<Vec<i64>> {
    if !all && reason.is_none() {
        return Ok(io_ids);
    }
    let held = state.ledger.list_held(MAX_LISTED).await?;
    Ok(held
        .iter()
        .filter(|record| all || record.reason.as_ref().map(|found| found.code.as_str()) == reason)
        .map(|record| record.io_id)
        .collect())
}

async fn replay(config: Config, state: &State, io_ids: &[i64]) -> anyhow::Result<ExitCode> {
    if io_ids.is_empty() {
        println!("{}", t!("failures.nothing_to_replay"));
        return Ok(ExitCode::SUCCESS);
    }
    if config.queue.backend == QueueBackend::Sqs {
        let sdk = runtime::aws_sdk_config().await;
        let queue = runtime::open_sqs_queue(&config, &sdk)?;
        let source = runtime::open_source(&config).await?;
        let summary = local::replay_to_queue(source.as_ref(), state.ledger.as_ref(), queue.as_ref(), io_ids).await?;
        print_replay(&summary, true);
        return Ok(ExitCode::SUCCESS);
    }

    let (_simulators, config) = simulators_if_demo(config).await?;
    let source: Arc<dyn SheetSource> = runtime::open_source(&config).await?;
    let target: Arc<dyn BillTarget> = runtime::open_target(&config)?;
    let summary = local::replay_local(&config, source.as_ref(), target.as_ref(), state, io_ids).await?;
    print_replay(&summary, false);
    let failed = summary.outcomes.iter().any(|report| matches!(report.outcome, MessageOutcome::Failed { .. } | MessageOutcome::Held { .. }));
    Ok(if failed || !summary.missing.is_empty() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn print_replay(summary: &ReplaySummary, queued: bool) {
    println!("{}", t!("failures.replay_reset", count = summary.reset.len()));
    if !summary.missing.is_empty() {
        let ids: Vec<String> = summary.missing.iter().map(i64::to_string).collect();
        println!("{}", t!("failures.replay_missing", ids = ids.join(", ")));
    }
    if queued {
        println!("{}", t!("failures.replay_queued", count = summary.replayed.len()));
        return;
    }
    for report in &summary.outcomes {
        let io_id = report.io_id.map_or("?".to_string(), |id| id.to_string());
        let line = match &report.outcome {
            MessageOutcome::Created { bill } => t!("failures.outcome_created", io_id = io_id, bill = bill.number),
            MessageOutcome::Recovered { bill } | MessageOutcome::AlreadyDone { bill } => {
                t!("failures.outcome_done", io_id = io_id, bill = bill.number)
            }
            MessageOutcome::Held { reason, .. } | MessageOutcome::Failed { reason, .. } => {
                t!("failures.outcome_failed", io_id = io_id, code = reason.code, message = localized(reason))
            }
        };
        println!("  {line}");
    }
}

fn reason_text(record: &LedgerRecord) -> (String, String) {
    match &record.reason {
        Some(reason) => (reason.code.clone(), localized(reason).to_string()),
        None => ("-".into(), String::new()),
    }
}

fn localized(reason: &countsync_core::ports::FailureReason) -> &str {
    if rust_i18n::locale().starts_with("zh") { &reason.message_zh } else { &reason.message_en }
}

/// Returns what an operator should do for a reason code, in Chinese and English.
pub fn advice(code: &str) -> (&'static str, &'static str) {
    match code {
        "unknown_warehouse" => (
            "在配置的 [[mapping.warehouses]] 中添加该仓库对应的金蝶仓库编码，然后重放。",
            "Add the warehouse to [[mapping.warehouses]] in the configuration with its Kingdee stock number, then replay.",
        ),
        "missing_quantity" | "missing_io_date" | "batch_without_item" | "batch_quantity_mismatch" | "ambiguous_batches" | "mapping_failed" => (
            "在聚水潭中更正盘点单数据（或调整映射配置），然后重放。",
            "Correct the count sheet in JuShuiTan (or the mapping settings), then replay.",
        ),
        "not_confirmed" => ("只有已确认的盘点单会同步：在聚水潭中确认后重放。", "Only confirmed sheets are synced: confirm it in JuShuiTan, then replay."),
        "kingdee_rejected" => (
            "按金蝶返回的消息修正基础资料（物料、仓库、组织、单据类型）或权限，然后重放。",
            "Fix the base data (material, stock, organization, bill type) or permissions that Kingdee's message names, then replay.",
        ),
        "bill_no_taken_invisible" => (
            "该编号已被占用但集成用户查不到：检查金蝶数据权限和编码规则，确认是否为本盘点单的单据；确认后重放。",
            "The number is taken but the integration user cannot see the bill: check Kingdee data permissions and the numbering rule, confirm whose bill it is, then replay.",
        ),
        "changed_after_sync" => (
            "盘点单在同步后被修改：在金蝶中核对并手工调整单据（或删除后重放以重新生成）；不需处理时可忽略。",
            "The sheet changed after sync: compare and adjust the Kingdee bill by hand (or delete it and replay to save it again); ignore it if no change is needed.",
        ),
        "bill_differs" => (
            "金蝶中同编号的单据与盘点单不同：人工核对；删除错误单据后重放会重新保存，修改一致后重放会记为已完成。",
            "Kingdee's bill with this number differs from the sheet: compare by hand. Delete the wrong bill and replay to save it again, or make them equal and replay to record it as done.",
        ),
        "invalid_message" => ("队列消息损坏：按 io_id 重放即可从聚水潭重新读取。", "The queue message is corrupt: replay by io_id to read the sheet from JuShuiTan again."),
        "kingdee_call_failed" => (
            "检查金蝶地址、账套和集成用户的配置及权限，修正后重放。",
            "Check the Kingdee URL, account set, integration user and permissions, then replay.",
        ),
        _ => (
            "可重试的错误通常会自动恢复；若仍失败，查看日志中该 io_id 的记录后重放。",
            "Retryable errors usually clear by themselves; if the sheet still fails, read the logs for this io_id, then replay.",
        ),
    }
}

/// Starts the built-in simulators when the configuration enables them (the demo), as `sync`
/// does, and points the configuration at them. The simulators stay alive while the returned
/// value does.
async fn simulators_if_demo(config: Config) -> anyhow::Result<(Option<crate::demo::Simulators>, Config)> {
    if !config.simulator.enabled {
        return Ok((None, config));
    }
    let (simulators, config) = crate::demo::start_simulators(config).await?;
    Ok((Some(simulators), config))
}
