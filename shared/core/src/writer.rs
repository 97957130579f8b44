//! Writer logic: queue messages → idempotency claims → bills → BatchSave → ledger records, with
//! one outcome per message so the Lambda can report exactly the failed ones.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};

use futures::FutureExt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use tracing::{debug, error, info, warn};

use crate::error::Retry;
use crate::mapping::{MappingConfig, map_sheet};
use crate::message;
use crate::ports::{
    BILL_DIFFERS, Bill, BillRef, BillSummary, BillTarget, Claim, EntrySummary, FailureReason, IdempotencyLedger, Rejection,
    SaveOutcome, TargetError, changed_after_sync_reason,
};

/// Writer settings, validated by the configuration loader.
#[derive(Debug, Clone)]
pub struct WriterSettings {
    /// Bills per BatchSave call; about 20 is the community's advice.
    pub batch_size: usize,
    /// Bills with more entry rows than this are sent in a BatchSave of their own.
    pub large_bill_entries: usize,
    /// Longest claim; a claim never outlives the invocation deadline plus this margin.
    pub lease: Duration,
    /// Time kept free before the deadline: no new save starts later than this.
    pub reserve: Duration,
}

impl Default for WriterSettings {
    fn default() -> Self {
        Self {
            batch_size: 20,
            large_bill_entries: 2_000,
            lease: Duration::minutes(15),
            reserve: Duration::seconds(20),
        }
    }
}

/// One received queue message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    pub message_id: String,
    pub body: String,
}

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MessageOutcome {
    /// A new bill was saved.
    Created { bill: BillRef },
    /// The ledger already recorded the bill; Kingdee was not called.
    AlreadyDone { bill: BillRef },
    /// An earlier attempt had saved the bill; the writer found it and recorded it.
    Recovered { bill: BillRef },
    /// Held for an operator (`changed` in the ledger): the sheet differs from its bill, so no
    /// second bill was saved. The message is acknowledged, because a redelivery cannot help.
    Held { bill: Option<BillRef>, reason: FailureReason },
    /// Nothing was saved by this attempt.
    Failed { retry: Retry, reason: FailureReason },
}

/// Outcome of one message, with the ids needed to report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageReport {
    pub message_id: String,
    pub io_id: Option<i64>,
    pub outcome: MessageOutcome,
}

/// Outcomes of one batch, in message order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WriteReport {
    pub messages: Vec<MessageReport>,
}

impl WriteReport {
    /// Ids of the messages that must be delivered again (or dead-lettered).
    pub fn failed_message_ids(&self) -> Vec<String> {
        self.messages
            .iter()
            .filter(|report| matches!(report.outcome, MessageOutcome::Failed { .. }))
            .map(|report| report.message_id.clone())
            .collect()
    }
}

/// A message whose sheet is claimed and mapped, waiting to be saved.
struct Pending {
    index: usize,
    bill: Bill,
    token: String,
    check_first: bool,
}

/// Saves sheets as Kingdee bills, at most once each.
pub struct Writer<'a> {
    pub ledger: &'a dyn IdempotencyLedger,
    pub target: &'a dyn BillTarget,
    pub mapping: &'a MappingConfig,
    pub settings: &'a WriterSettings,
}

impl Writer<'_> {
    /// Processes one batch of messages. Never fails as a whole: every problem, a panic included,
    /// becomes the outcome of the message it belongs to. No Kingdee call starts later than
    /// `deadline - reserve`, and none runs past `deadline - reserve / 2`.
    pub async fn process(&self, messages: &[InboundMessage], deadline: DateTime<Utc>) -> WriteReport {
        let mut outcomes: Vec<Option<(Option<i64>, MessageOutcome)>> = vec![None; messages.len()];
        let lease_until = (Utc::now() + self.settings.lease).min(deadline + self.settings.reserve);

        let mut pending = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            let prepared = AssertUnwindSafe(self.prepare(index, message, lease_until)).catch_unwind().await;
            match prepared {
                Ok(Ok(ready)) => pending.push(ready),
                Ok(Err((io_id, outcome))) => outcomes[index] = Some((io_id, outcome)),
                Err(_) => {
                    let io_id = message::peek_io_id(&message.body);
                    error!(message_id = %message.message_id, ?io_id, "preparing the message panicked");
                    outcomes[index] = Some((io_id, panicked()));
                }
            }
        }

        let mut to_save = Vec::new();
        for item in pending {
            if !item.check_first {
                to_save.push(item);
                continue;
            }
            if self.out_of_time(deadline) {
                let outcome = self.release(&item, out_of_time()).await;
                outcomes[item.index] = Some((Some(item.bill.io_id), outcome));
                continue;
            }
            let checked = AssertUnwindSafe(self.check_existing(&item, deadline)).catch_unwind().await;
            match checked {
                Ok(None) => to_save.push(item),
                Ok(Some(outcome)) => outcomes[item.index] = Some((Some(item.bill.io_id), outcome)),
                Err(_) => {
                    error!(io_id = item.bill.io_id, "looking the bill up panicked");
                    let outcome = self.release(&item, panic_reason()).await;
                    outcomes[item.index] = Some((Some(item.bill.io_id), outcome));
                }
            }
        }

        for group in self.groups(to_save) {
            if self.out_of_time(deadline) {
                for item in group {
                    let outcome = self.release(&item, out_of_time()).await;
                    outcomes[item.index] = Some((Some(item.bill.io_id), outcome));
                }
                continue;
            }
            for (index, io_id, outcome) in self.save_group_isolated(group, deadline).await {
                outcomes[index] = Some((Some(io_id), outcome));
            }
        }

        let messages = messages
            .iter()
            .zip(outcomes)
            .map(|(message, outcome)| {
                let (io_id, outcome) = outcome.unwrap_or_else(|| (None, internal_gap()));
                MessageReport { message_id: message.message_id.clone(), io_id, outcome }
            })
            .collect();
        WriteReport { messages }
    }

    /// Returns whether too little time is left to start a Kingdee call.
    fn out_of_time(&self, deadline: DateTime<Utc>) -> bool {
        Utc::now() + self.settings.reserve > deadline
    }

    /// Runs a Kingdee call, cut off at `deadline - reserve / 2` so that the ledger writes after
    /// it still fit before the deadline. A cut-off call has an unknown outcome.
    async fn bounded<T>(&self, deadline: DateTime<Utc>, call: impl Future<Output = Result<T, TargetError>>) -> Result<T, TargetError> {
        let stop = deadline - self.settings.reserve / 2;
        let budget = (stop - Utc::now()).to_std().unwrap_or_default();
        match tokio::time::timeout(budget, call).await {
            Ok(result) => result,
            Err(_) => {
                warn!(budget_ms = budget.as_millis() as u64, "kingdee call cut off before the invocation deadline");
                Err(TargetError { message: "kingdee call cut off before the invocation deadline".into(), retry: Retry::Later, outcome_unknown: true })
            }
        }
    }

    /// Looks the bill up before saving, for a claim that replaced an earlier attempt. Returns
    /// `None` when the bill is absent and must be saved.
    async fn check_existing(&self, item: &Pending, deadline: DateTime<Utc>) -> Option<MessageOutcome> {
        let found = self.bounded(deadline, self.target.fetch_bill_summary(&item.bill.form_id, &item.bill.bill_no)).await;
        match found {
            Ok(Some(summary)) => Some(self.adopt_existing(item, summary).await),
            Ok(None) => None,
            Err(error) => Some(self.release(item, lookup_failed(&error)).await),
        }
    }

    /// Records a bill that Kingdee already has under this sheet's number. It is done when it equals
    /// the sheet as far as it can be read back, and held for an operator when it differs.
    async fn adopt_existing(&self, item: &Pending, summary: BillSummary) -> MessageOutcome {
        let Some(stored) = &summary.entries else {
            return self.record_done(item, summary.bill, true).await;
        };
        let expected = item.bill.entry_summaries();
        if *stored == expected {
            return self.record_done(item, summary.bill, true).await;
        }
        let failure = bill_differs(&item.bill.bill_no, stored, &expected);
        warn!(io_id = item.bill.io_id, bill_no = %item.bill.bill_no, stored_entries = stored.len(), expected_entries = expected.len(), "kingdee bill differs from the sheet; held for an operator");
        if let Err(store_error) = self.ledger.mark_held(item.bill.io_id, &item.token, &summary.bill, &failure, Utc::now()).await {
            warn!(io_id = item.bill.io_id, error = %store_error, "hold not recorded; retrying later");
            return failed(Retry::Later, failure);
        }
        MessageOutcome::Held { bill: Some(summary.bill), reason: failure }
    }

    /// Decodes, maps and claims one message.
    async fn prepare(
        &self,
        index: usize,
        message: &InboundMessage,
        lease_until: DateTime<Utc>,
    ) -> Result<Pending, (Option<i64>, MessageOutcome)> {
        let sheet = message::decode(&message.body).map_err(|decode_error| {
            let io_id = message::peek_io_id(&message.body);
            error!(message_id = %message.message_id, ?io_id, error = %decode_error, "queue message cannot be decoded");
            (io_id, failed(Retry::Never, reason("invalid_message", "队列消息格式无效，无法解析", "the queue message is not valid", Some(decode_error.to_string()))))
        })?;
        let io_id = sheet.io_id;

        let mapped = catch_unwind(AssertUnwindSafe(|| map_sheet(&sheet, self.mapping))).map_err(|_| {
            error!(message_id = %message.message_id, io_id, "mapping panicked");
            (Some(io_id), failed(Retry::Never, reason("mapping_panicked", "映射时发生内部错误", "mapping failed with an internal error", None)))
        })?;
        let (content_hash, mapped) = match mapped {
            Ok(bill) => (bill.content_hash.clone(), Ok(bill)),
            Err(mapping_error) => (String::new(), Err(mapping_error)),
        };

        let claim = self.ledger.claim(io_id, &content_hash, lease_until, Utc::now()).await.map_err(|store_error| {
            warn!(io_id, error = %store_error, "idempotency claim failed");
            (Some(io_id), failed(store_error.retry.max_later(), reason("ledger_unavailable", "幂等记录写入失败，稍后重试", "the idempotency ledger failed; retrying later", Some(store_error.message))))
        })?;
        let (token, check_first) = match claim {
            Claim::Done(record) => {
                let bill = record.bill.unwrap_or_else(|| BillRef { id: String::new(), number: self.mapping.bill_no(io_id) });
                debug!(io_id, bill_no = %bill.number, "sheet already synced");
                return Err((Some(io_id), MessageOutcome::AlreadyDone { bill }));
            }
            Claim::Held(record) => {
                let held_reason = record.reason.clone().unwrap_or_else(|| changed_after_sync_reason(&self.mapping.bill_no(io_id), &record.content_hash, &content_hash));
                warn!(io_id, reason = %held_reason.code, "sheet is held for an operator; message acknowledged without saving");
                return Err((Some(io_id), MessageOutcome::Held { bill: record.bill, reason: held_reason }));
            }
            Claim::Busy { lease_until } => {
                info!(io_id, %lease_until, "another writer holds the sheet; retrying later");
                return Err((Some(io_id), failed(Retry::Later, reason("claimed_elsewhere", "另一个写入进程正在处理该盘点单，稍后重试", "another writer is saving this sheet; retrying later", None))));
            }
            Claim::Acquired { token, check_first } => (token, check_first),
        };

        match mapped {
            Ok(bill) => Ok(Pending { index, bill, token, check_first }),
            Err(mapping_error) => {
                error!(io_id, error = %mapping_error, "sheet cannot be mapped to a bill");
                let failure = mapping_error.to_reason();
                if let Err(store_error) = self.ledger.mark_failed(io_id, &token, &failure, Utc::now()).await {
                    warn!(io_id, error = %store_error, "failure record not written");
                }
                Err((Some(io_id), failed(Retry::Never, failure)))
            }
        }
    }

    /// Splits the bills into BatchSave calls: large bills alone, the rest `batch_size` at a time.
    fn groups(&self, pending: Vec<Pending>) -> Vec<Vec<Pending>> {
        let mut groups = Vec::new();
        let mut current = Vec::new();
        for item in pending {
            if item.bill.entry_count > self.settings.large_bill_entries {
                groups.push(vec![item]);
                continue;
            }
            current.push(item);
            if current.len() == self.settings.batch_size.max(1) {
                groups.push(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            groups.push(current);
        }
        groups
    }

    /// Saves one group; a panic inside leaves the group's outcome unknown, so its claims are
    /// released and the next claimer looks the bills up first.
    async fn save_group_isolated(&self, group: Vec<Pending>, deadline: DateTime<Utc>) -> Vec<(usize, i64, MessageOutcome)> {
        let saved = AssertUnwindSafe(self.save_group(&group, deadline)).catch_unwind().await;
        match saved {
            Ok(results) => results,
            Err(_) => {
                error!(bills = group.len(), "saving the group panicked; its outcome is unknown");
                let mut results = Vec::with_capacity(group.len());
                for item in &group {
                    results.push((item.index, item.bill.io_id, self.release(item, panic_reason()).await));
                }
                results
            }
        }
    }

    async fn save_group(&self, group: &[Pending], deadline: DateTime<Utc>) -> Vec<(usize, i64, MessageOutcome)> {
        let bills: Vec<Bill> = group.iter().map(|item| item.bill.clone()).collect();
        let result = self.bounded(deadline, self.target.save_bills(&bills)).await;
        let mut results = Vec::with_capacity(group.len());

        match result {
            Ok(outcomes) => {
                for (item, outcome) in group.iter().zip(outcomes.into_iter().chain(std::iter::repeat(SaveOutcome::Unknown))) {
                    let message_outcome = AssertUnwindSafe(self.handle_outcome(item, outcome, deadline)).catch_unwind().await;
                    let message_outcome = match message_outcome {
                        Ok(outcome) => outcome,
                        Err(_) => {
                            error!(io_id = item.bill.io_id, "recording the save outcome panicked");
                            self.release(item, panic_reason()).await
                        }
                    };
                    results.push((item.index, item.bill.io_id, message_outcome));
                }
            }
            Err(target_error) if target_error.outcome_unknown => {
                warn!(bills = group.len(), error = %target_error, "batch save outcome unknown; looking the bills up");
                for item in group {
                    let outcome = self.resolve_unknown(item, &target_error.message, deadline).await;
                    results.push((item.index, item.bill.io_id, outcome));
                }
            }
            Err(target_error) => {
                warn!(bills = group.len(), error = %target_error, retry = ?target_error.retry, "batch save failed");
                for item in group {
                    let failure = reason("kingdee_call_failed", "调用金蝶 BatchSave 失败", "the Kingdee BatchSave call failed", Some(target_error.message.clone()));
                    let outcome = if target_error.retry == Retry::Never {
                        self.fail(item, failure).await
                    } else {
                        self.release(item, failure).await
                    };
                    results.push((item.index, item.bill.io_id, outcome));
                }
            }
        }
        results
    }

    async fn handle_outcome(&self, item: &Pending, outcome: SaveOutcome, deadline: DateTime<Utc>) -> MessageOutcome {
        match outcome {
            SaveOutcome::Saved(bill) => self.record_done(item, bill, false).await,
            SaveOutcome::Rejected(rejection) => self.handle_rejection(item, rejection, deadline).await,
            SaveOutcome::Unknown => self.resolve_unknown(item, "BatchSave response has no result for this bill", deadline).await,
        }
    }

    async fn handle_rejection(&self, item: &Pending, rejection: Rejection, deadline: DateTime<Utc>) -> MessageOutcome {
        let io_id = item.bill.io_id;
        if rejection.is_duplicate_bill_no() {
            // The number is taken: an earlier attempt saved this sheet. Never add a suffix.
            info!(io_id, bill_no = %item.bill.bill_no, "bill number already used; looking the bill up");
            return match self.bounded(deadline, self.target.fetch_bill_summary(&item.bill.form_id, &item.bill.bill_no)).await {
                Ok(Some(summary)) => self.adopt_existing(item, summary).await,
                Ok(None) => {
                    let failure = reason(
                        "bill_no_taken_invisible",
                        &format!("金蝶提示单据编号 {} 已被使用，但集成用户查询不到该单据：请检查数据权限或编号规则", item.bill.bill_no),
                        &format!("Kingdee says bill number {} is taken, but the integration user cannot see that bill: check data permissions and the numbering rule", item.bill.bill_no),
                        Some(rejection.message),
                    );
                    self.fail(item, failure).await
                }
                Err(error) => self.release(item, lookup_failed(&error)).await,
            };
        }

        let failure = reason(
            "kingdee_rejected",
            &format!("金蝶拒绝保存单据 {}（MsgCode {}）", item.bill.bill_no, rejection.msg_code),
            &format!("Kingdee rejected bill {} (MsgCode {})", item.bill.bill_no, rejection.msg_code),
            Some(rejection.message.clone()),
        );
        if rejection.retry() == Retry::Never {
            error!(io_id, bill_no = %item.bill.bill_no, msg_code = rejection.msg_code, message = %rejection.message, "kingdee rejected the bill");
            self.fail(item, failure).await
        } else {
            warn!(io_id, bill_no = %item.bill.bill_no, msg_code = rejection.msg_code, message = %rejection.message, "kingdee rejected the bill for now; retrying later");
            self.release(item, failure).await
        }
    }

    /// Decides a bill whose save may or may not have been committed, by looking it up.
    async fn resolve_unknown(&self, item: &Pending, cause: &str, deadline: DateTime<Utc>) -> MessageOutcome {
        match self.bounded(deadline, self.target.fetch_bill_summary(&item.bill.form_id, &item.bill.bill_no)).await {
            Ok(Some(summary)) => self.adopt_existing(item, summary).await,
            Ok(None) => {
                let failure = reason("kingdee_outcome_unknown", "金蝶保存结果未知，且查询不到该单据，稍后重试", "the Kingdee save outcome is unknown and the bill was not found; retrying later", Some(cause.to_string()));
                self.release(item, failure).await
            }
            Err(error) => self.release(item, lookup_failed(&error)).await,
        }
    }

    async fn record_done(&self, item: &Pending, bill: BillRef, recovered: bool) -> MessageOutcome {
        let io_id = item.bill.io_id;
        if let Err(store_error) = self.ledger.mark_done(io_id, &item.token, &bill, Utc::now()).await {
            // The bill exists but is not recorded: the redelivery takes the claim over after it
            // expires, finds the bill by number and records it.
            warn!(io_id, bill_no = %bill.number, error = %store_error, "bill saved but not recorded; retrying later");
            return failed(Retry::Later, reason("ledger_unavailable", "单据已保存但幂等记录写入失败，稍后重试", "the bill was saved but the idempotency record failed; retrying later", Some(store_error.message)));
        }
        if recovered {
            info!(io_id, bill_no = %bill.number, bill_id = %bill.id, "existing bill found and recorded");
            MessageOutcome::Recovered { bill }
        } else {
            info!(io_id, bill_no = %bill.number, bill_id = %bill.id, entries = item.bill.entry_count, "bill created");
            MessageOutcome::Created { bill }
        }
    }

    async fn release(&self, item: &Pending, failure: FailureReason) -> MessageOutcome {
        if let Err(store_error) = self.ledger.release(item.bill.io_id, &item.token, Utc::now()).await {
            warn!(io_id = item.bill.io_id, error = %store_error, "claim not released; it expires at its lease end");
        }
        failed(Retry::Later, failure)
    }

    async fn fail(&self, item: &Pending, failure: FailureReason) -> MessageOutcome {
        if let Err(store_error) = self.ledger.mark_failed(item.bill.io_id, &item.token, &failure, Utc::now()).await {
            warn!(io_id = item.bill.io_id, error = %store_error, "failure record not written");
        }
        failed(Retry::Never, failure)
    }
}

impl Retry {
    /// Returns `Later` for `Now`: a retry inside the writer would hold the whole batch.
    fn max_later(self) -> Retry {
        if self == Retry::Never { Retry::Never } else { Retry::Later }
    }
}

fn failed(retry: Retry, reason: FailureReason) -> MessageOutcome {
    MessageOutcome::Failed { retry, reason }
}

fn reason(code: &str, message_zh: &str, message_en: &str, detail: Option<String>) -> FailureReason {
    FailureReason { code: code.into(), message_zh: message_zh.into(), message_en: message_en.into(), detail }
}

fn lookup_failed(error: &TargetError) -> FailureReason {
    reason("kingdee_lookup_failed", "按单据编号查询金蝶失败，结果未知，稍后重试", "looking the bill up in Kingdee failed, so its state is unknown; retrying later", Some(error.message.clone()))
}

fn out_of_time() -> FailureReason {
    reason("deadline", "本次调用剩余时间不足，稍后重试", "too little time was left in this invocation; retrying later", None)
}

fn panic_reason() -> FailureReason {
    reason("internal_panic", "处理该盘点单时发生内部错误（panic），结果未知，稍后重试", "processing this sheet panicked, so its result is unknown; retrying later", None)
}

fn panicked() -> MessageOutcome {
    failed(Retry::Later, panic_reason())
}

/// Builds the reason for a Kingdee bill that differs from the sheet, naming the first rows that
/// differ.
fn bill_differs(bill_no: &str, stored: &[EntrySummary], expected: &[EntrySummary]) -> FailureReason {
    const SHOWN: usize = 3;
    let missing: Vec<String> = expected.iter().filter(|row| !stored.contains(row)).take(SHOWN).map(describe_row).collect();
    let extra: Vec<String> = stored.iter().filter(|row| !expected.contains(row)).take(SHOWN).map(describe_row).collect();
    reason(
        BILL_DIFFERS,
        &format!("金蝶已有编号为 {bill_no} 的单据，但与盘点单内容不同（金蝶 {} 行，盘点单 {} 行）：未保存第二张单据，请人工核对", stored.len(), expected.len()),
        &format!("Kingdee already has bill {bill_no}, but it differs from the count sheet ({} rows in Kingdee, {} in the sheet): no second bill was saved; compare them by hand", stored.len(), expected.len()),
        Some(format!("only in the sheet: [{}]; only in Kingdee: [{}]", missing.join("; "), extra.join("; "))),
    )
}

fn describe_row(row: &EntrySummary) -> String {
    format!("{} @ {} = {}", row.material, row.stock, row.count_qty)
}

fn internal_gap() -> MessageOutcome {
    failed(Retry::Later, reason("internal", "内部错误：该消息没有处理结果", "internal error: the message got no outcome", None))
}

#[cfg(test)]
mod tests;
