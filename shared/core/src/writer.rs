//! Writer logic: queue messages → idempotency claims → bills → BatchSave → ledger records, with
//! one outcome per message so the Lambda can report exactly the failed ones.

use std::collections::HashSet;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};

use futures::FutureExt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{debug, error, info, warn};

use crate::error::Retry;
use crate::mapping::lookup::{CachedMaterialLookup, MaterialCache, MaterialLookup, PrepareError, prepare_context};
use crate::mapping::{AfterSave, MappedSheet, MappingConfig, map_sheet_with, period};
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
    /// Maximum claim. A claim never outlives the invocation deadline plus `reserve`.
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

/// Outcome of one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MessageOutcome {
    /// The sheet's bills were saved; `bill` is the first. A sheet that needs no bill (no
    /// counted difference under `target = "gain_loss"`) is reported here with an empty `bill`.
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

/// A message whose sheet is claimed and mapped, waiting for its bills to be saved.
struct Pending {
    index: usize,
    io_id: i64,
    token: String,
    check_first: bool,
    /// Zero, one or two bills, by the target mode; see [`MappedSheet`].
    bills: Vec<Bill>,
}

/// One bill of a pending sheet, on its way through lookup and BatchSave.
struct PendingBill {
    /// Position of the sheet in the pending list.
    sheet: usize,
    /// Position of the bill among the sheet's bills.
    slot: usize,
    bill: Bill,
}

/// Result of saving or looking up one bill. The sheet's ledger record is written once, from
/// the results of all its bills (see [`Writer::finish_sheet`]).
#[derive(Debug, Clone)]
enum BillResult {
    /// Saved by this attempt.
    Saved(BillRef),
    /// Kingdee already had the bill, equal to the sheet as far as it can be read back.
    Found(BillRef),
    /// Kingdee has a bill with this number that differs from the sheet.
    Differs(BillRef, FailureReason),
    /// Permanently rejected; an operator must act.
    Failed(FailureReason),
    /// Not saved or outcome unknown; a redelivery looks the bill up first.
    Retry(FailureReason),
}

/// Saves sheets as Kingdee bills, at most once each.
///
/// One sheet may map to several bills (`target = "gain_loss"` writes a gain and a loss bill).
/// The sheet is claimed once, with a content hash over all its bills, and recorded `done` only
/// when every bill is saved or found. A sheet that maps to no bill (`gain_loss` without any
/// difference) is recorded `done` with an empty [`BillRef`]: empty `id` and empty `number`.
pub struct Writer<'a> {
    pub ledger: &'a dyn IdempotencyLedger,
    pub target: &'a dyn BillTarget,
    pub mapping: &'a MappingConfig,
    pub settings: &'a WriterSettings,
    /// Material codes found for `materials.source = "kingdee_lookup"`; keep one per process so
    /// later batches do not ask Kingdee again.
    pub materials: &'a MaterialCache,
}

impl Writer<'_> {
    /// Processes one batch of messages. Never fails as a whole: every problem, a panic included,
    /// becomes the outcome of the message it belongs to. No Kingdee call starts later than
    /// `deadline - reserve`, and none runs past `deadline - reserve / 2`.
    pub async fn process(&self, messages: &[InboundMessage], deadline: DateTime<Utc>) -> WriteReport {
        let mut outcomes: Vec<Option<(Option<i64>, MessageOutcome)>> = vec![None; messages.len()];
        let lease_until = (Utc::now() + self.settings.lease).min(deadline + self.settings.reserve);

        let materials = self.target.material_lookup().map(|lookup| CachedMaterialLookup::with_cache(lookup, self.materials.clone()));
        let mut pending = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            let prepared = AssertUnwindSafe(self.prepare(index, message, lease_until, materials.as_ref())).catch_unwind().await;
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

        let mut results: Vec<Vec<Option<BillResult>>> = pending.iter().map(|sheet| vec![None; sheet.bills.len()]).collect();
        let mut to_save = Vec::new();
        let mut scheme_bills = HashSet::new();
        for (position, sheet) in pending.iter().enumerate() {
            // Each sheet's write-back model was built from the scheme bill as read before any
            // save of this batch, so a second sheet of the same bill waits for a redelivery
            // that reads the bill again.
            let shares_scheme_bill = sheet.bills.iter().filter(|bill| bill.updates_existing()).any(|bill| !scheme_bills.insert(bill.bill_no.clone()));
            if shares_scheme_bill {
                info!(io_id = sheet.io_id, "another sheet of this batch writes into the same scheme bill; retrying later");
                results[position].fill(Some(BillResult::Retry(scheme_bill_shared())));
                continue;
            }
            for (slot, bill) in sheet.bills.iter().enumerate() {
                let item = PendingBill { sheet: position, slot, bill: bill.clone() };
                if bill.updates_existing() && bill.entry_count == 0 {
                    debug!(io_id = sheet.io_id, bill_no = %bill.bill_no, "scheme bill already has every counted quantity");
                    results[position][slot] = Some(BillResult::Found(existing_ref(bill)));
                    continue;
                }
                // A write-back model is built from the scheme bill as read just now, so it
                // writes only what is still missing and needs no lookup first.
                if !sheet.check_first || bill.updates_existing() {
                    to_save.push(item);
                    continue;
                }
                if self.out_of_time(deadline) {
                    results[position][slot] = Some(BillResult::Retry(out_of_time()));
                    continue;
                }
                let checked = AssertUnwindSafe(self.check_existing(&item.bill, deadline)).catch_unwind().await;
                match checked {
                    Ok(None) => to_save.push(item),
                    Ok(Some(result)) => results[position][slot] = Some(result),
                    Err(_) => {
                        error!(io_id = item.bill.io_id, bill_no = %item.bill.bill_no, "looking the bill up panicked");
                        results[position][slot] = Some(BillResult::Retry(panic_reason()));
                    }
                }
            }
        }

        for group in self.groups(to_save) {
            let group_results = if self.out_of_time(deadline) {
                group.iter().map(|_| BillResult::Retry(out_of_time())).collect()
            } else {
                self.save_group_isolated(&group, deadline).await
            };
            for (item, result) in group.iter().zip(group_results) {
                results[item.sheet][item.slot] = Some(result);
            }
        }

        for (sheet, sheet_results) in pending.iter().zip(results) {
            let finished = AssertUnwindSafe(self.finish_sheet(sheet, sheet_results, deadline)).catch_unwind().await;
            let outcome = match finished {
                Ok(outcome) => outcome,
                Err(_) => {
                    error!(io_id = sheet.io_id, "recording the save outcome panicked");
                    self.release(sheet, panic_reason()).await
                }
            };
            outcomes[sheet.index] = Some((Some(sheet.io_id), outcome));
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
    async fn check_existing(&self, bill: &Bill, deadline: DateTime<Utc>) -> Option<BillResult> {
        let found = self.bounded(deadline, self.target.fetch_bill_summary(&bill.form_id, &bill.bill_no)).await;
        match found {
            Ok(Some(summary)) => Some(compare_existing(bill, summary)),
            Ok(None) => None,
            Err(error) => Some(BillResult::Retry(lookup_failed(&error))),
        }
    }

    /// Decodes, maps and claims one message.
    async fn prepare(
        &self,
        index: usize,
        message: &InboundMessage,
        lease_until: DateTime<Utc>,
        materials: Option<&CachedMaterialLookup<&dyn MaterialLookup>>,
    ) -> Result<Pending, (Option<i64>, MessageOutcome)> {
        let sheet = message::decode(&message.body).map_err(|decode_error| {
            let io_id = message::peek_io_id(&message.body);
            error!(message_id = %message.message_id, ?io_id, error = %decode_error, "queue message cannot be decoded");
            (io_id, failed(Retry::Never, reason("invalid_message", "队列消息格式无效，无法解析", "the queue message is not valid", Some(decode_error.to_string()))))
        })?;
        let io_id = sheet.io_id;

        let mapped = match prepare_context(&sheet, self.mapping, materials, self.target.count_bill_lookup()).await {
            Ok(context) => catch_unwind(AssertUnwindSafe(|| map_sheet_with(&sheet, self.mapping, &context))).map_err(|_| {
                error!(message_id = %message.message_id, io_id, "mapping panicked");
                (Some(io_id), failed(Retry::Never, reason("mapping_panicked", "映射时发生内部错误", "mapping failed with an internal error", None)))
            })?,
            Err(PrepareError::Mapping(mapping_error)) => Err(mapping_error),
            Err(PrepareError::Lookup(lookup_error)) => {
                warn!(io_id, error = %lookup_error, retry = ?lookup_error.retry, "kingdee lookup before mapping failed");
                let failure = reason(
                    "kingdee_lookup_failed",
                    "映射前在金蝶中查询物料或盘点方案的物料盘点作业失败",
                    "looking materials or the scheme's 物料盘点作业 up in Kingdee before mapping failed",
                    Some(lookup_error.message),
                );
                return Err((Some(io_id), failed(lookup_error.retry.max_later(), failure)));
            }
        };
        let (content_hash, mapped) = match mapped {
            Ok(mapped) => (sheet_content_hash(&mapped), Ok(mapped)),
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
                info!(io_id, %lease_until, "sheet claimed by another writer; retrying later");
                return Err((Some(io_id), failed(Retry::Later, reason("claimed_elsewhere", "另一个写入进程正在处理该盘点单，稍后重试", "another writer is saving this sheet; retrying later", None))));
            }
            Claim::Acquired { token, check_first } => (token, check_first),
        };

        match mapped {
            Ok(mapped) => {
                if !mapped.report.dropped.is_empty() {
                    info!(io_id, dropped = mapped.report.dropped.len(), "mapping left lines out of the bills");
                }
                Ok(Pending { index, io_id, token, check_first, bills: mapped.bills })
            }
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

    /// Splits the bills into BatchSave calls. Bills of different forms never share a call,
    /// because one BatchSave saves one form, and neither do new bills and write-backs into
    /// existing ones, because the save options differ. Large bills go alone, the rest
    /// `batch_size` at a time.
    fn groups(&self, pending: Vec<PendingBill>) -> Vec<Vec<PendingBill>> {
        let mut by_form: Vec<((String, bool), Vec<PendingBill>)> = Vec::new();
        for item in pending {
            let key = (item.bill.form_id.clone(), item.bill.updates_existing());
            match by_form.iter_mut().find(|(form, _)| *form == key) {
                Some((_, items)) => items.push(item),
                None => by_form.push((key, vec![item])),
            }
        }

        let mut groups = Vec::new();
        for (_, items) in by_form {
            let mut current = Vec::new();
            for item in items {
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
        }
        groups
    }

    /// Saves one group; a panic inside leaves the group's outcome unknown, so its bills count
    /// as retryable and the next claimer looks them up first.
    async fn save_group_isolated(&self, group: &[PendingBill], deadline: DateTime<Utc>) -> Vec<BillResult> {
        let saved = AssertUnwindSafe(self.save_group(group, deadline)).catch_unwind().await;
        match saved {
            Ok(results) => results,
            Err(_) => {
                error!(bills = group.len(), "saving the group panicked; its outcome is unknown");
                group.iter().map(|_| BillResult::Retry(panic_reason())).collect()
            }
        }
    }

    /// Returns one result per bill of the group, in group order.
    async fn save_group(&self, group: &[PendingBill], deadline: DateTime<Utc>) -> Vec<BillResult> {
        let bills: Vec<Bill> = group.iter().map(|item| item.bill.clone()).collect();
        let result = self.bounded(deadline, self.target.save_bills(&bills)).await;
        let mut results = Vec::with_capacity(group.len());

        match result {
            Ok(outcomes) => {
                for (item, outcome) in group.iter().zip(outcomes.into_iter().chain(std::iter::repeat(SaveOutcome::Unknown))) {
                    let bill_result = AssertUnwindSafe(self.handle_outcome(&item.bill, outcome, deadline)).catch_unwind().await;
                    let bill_result = match bill_result {
                        Ok(result) => result,
                        Err(_) => {
                            error!(io_id = item.bill.io_id, bill_no = %item.bill.bill_no, "handling the save outcome panicked");
                            BillResult::Retry(panic_reason())
                        }
                    };
                    results.push(bill_result);
                }
            }
            Err(target_error) if target_error.outcome_unknown => {
                warn!(bills = group.len(), error = %target_error, "batch save outcome unknown; looking the bills up");
                for item in group {
                    results.push(self.resolve_unknown(&item.bill, &target_error.message, deadline).await);
                }
            }
            Err(target_error) => {
                warn!(bills = group.len(), error = %target_error, retry = ?target_error.retry, "batch save failed");
                for _ in group {
                    let failure = reason("kingdee_call_failed", "调用金蝶 BatchSave 失败", "the Kingdee BatchSave call failed", Some(target_error.message.clone()));
                    results.push(if target_error.retry == Retry::Never { BillResult::Failed(failure) } else { BillResult::Retry(failure) });
                }
            }
        }
        results
    }

    async fn handle_outcome(&self, bill: &Bill, outcome: SaveOutcome, deadline: DateTime<Utc>) -> BillResult {
        match outcome {
            SaveOutcome::Saved(saved) => BillResult::Saved(saved),
            SaveOutcome::Rejected(rejection) => self.handle_rejection(bill, rejection, deadline).await,
            SaveOutcome::Unknown => self.resolve_unknown(bill, "BatchSave response has no result for this bill", deadline).await,
        }
    }

    async fn handle_rejection(&self, bill: &Bill, rejection: Rejection, deadline: DateTime<Utc>) -> BillResult {
        let io_id = bill.io_id;
        if rejection.is_duplicate_bill_no() {
            // The number is taken: an earlier attempt saved this sheet. Never add a suffix.
            info!(io_id, bill_no = %bill.bill_no, "bill number already used; looking the bill up");
            return match self.bounded(deadline, self.target.fetch_bill_summary(&bill.form_id, &bill.bill_no)).await {
                Ok(Some(summary)) => compare_existing(bill, summary),
                Ok(None) => BillResult::Failed(reason(
                    "bill_no_taken_invisible",
                    &format!("金蝶提示单据编号 {} 已被使用，但集成用户查询不到该单据：请检查数据权限或编号规则", bill.bill_no),
                    &format!("Kingdee says bill number {} is taken, but the integration user cannot see that bill: check data permissions and the numbering rule", bill.bill_no),
                    Some(rejection.message),
                )),
                Err(error) => BillResult::Retry(lookup_failed(&error)),
            };
        }

        let failure = period::period_closed_reason(bill, &rejection.message).unwrap_or_else(|| {
            reason(
                "kingdee_rejected",
                &format!("金蝶拒绝保存单据 {}（MsgCode {}）", bill.bill_no, rejection.msg_code),
                &format!("Kingdee rejected bill {} (MsgCode {})", bill.bill_no, rejection.msg_code),
                Some(rejection.message.clone()),
            )
        });
        if rejection.retry() == Retry::Never {
            error!(io_id, bill_no = %bill.bill_no, reason = %failure.code, msg_code = rejection.msg_code, message = %rejection.message, "kingdee rejected the bill");
            BillResult::Failed(failure)
        } else {
            warn!(io_id, bill_no = %bill.bill_no, reason = %failure.code, msg_code = rejection.msg_code, message = %rejection.message, "kingdee rejected the bill for now; retrying later");
            BillResult::Retry(failure)
        }
    }

    /// Decides a bill whose save may or may not have been committed, by looking it up. A
    /// write-back is retried instead: the redelivery reads the scheme bill again and writes only
    /// what is still missing.
    async fn resolve_unknown(&self, bill: &Bill, cause: &str, deadline: DateTime<Utc>) -> BillResult {
        if bill.updates_existing() {
            return BillResult::Retry(reason(
                "kingdee_outcome_unknown",
                "金蝶回写结果未知，稍后重新读取物料盘点作业并补写未写入的行",
                "the Kingdee write-back outcome is unknown; the retry reads the 物料盘点作业 again and writes what is missing",
                Some(cause.to_string()),
            ));
        }
        match self.bounded(deadline, self.target.fetch_bill_summary(&bill.form_id, &bill.bill_no)).await {
            Ok(Some(summary)) => compare_existing(bill, summary),
            Ok(None) => BillResult::Retry(reason(
                "kingdee_outcome_unknown",
                "金蝶保存结果未知，且查询不到该单据，稍后重试",
                "the Kingdee save outcome is unknown and the bill was not found; retrying later",
                Some(cause.to_string()),
            )),
            Err(error) => BillResult::Retry(lookup_failed(&error)),
        }
    }

    /// Writes the sheet's ledger record from the results of all its bills. A differing bill
    /// holds the sheet, else a permanent failure fails it, else a retryable one releases it.
    /// Only when every bill is saved or found is the sheet done.
    async fn finish_sheet(&self, sheet: &Pending, results: Vec<Option<BillResult>>, deadline: DateTime<Utc>) -> MessageOutcome {
        let results: Vec<BillResult> = results.into_iter().map(|result| result.unwrap_or_else(|| BillResult::Retry(internal_reason()))).collect();

        if let Some((bill, failure)) = results.iter().find_map(|result| match result {
            BillResult::Differs(bill, failure) => Some((bill, failure)),
            _ => None,
        }) {
            if let Err(store_error) = self.ledger.mark_held(sheet.io_id, &sheet.token, bill, failure, Utc::now()).await {
                warn!(io_id = sheet.io_id, error = %store_error, "hold not recorded; retrying later");
                return failed(Retry::Later, failure.clone());
            }
            return MessageOutcome::Held { bill: Some(bill.clone()), reason: failure.clone() };
        }
        if let Some(failure) = results.iter().find_map(|result| match result {
            BillResult::Failed(failure) => Some(failure.clone()),
            _ => None,
        }) {
            return self.fail(sheet, failure).await;
        }
        if let Some(failure) = results.iter().find_map(|result| match result {
            BillResult::Retry(failure) => Some(failure.clone()),
            _ => None,
        }) {
            return self.release(sheet, failure).await;
        }

        let mut refs = Vec::with_capacity(results.len());
        let mut saved = Vec::new();
        for (bill, result) in sheet.bills.iter().zip(results) {
            match result {
                BillResult::Saved(reference) => {
                    saved.push(bill);
                    refs.push(reference);
                }
                BillResult::Found(reference) => refs.push(reference),
                BillResult::Differs(..) | BillResult::Failed(_) | BillResult::Retry(_) => unreachable!("handled above"),
            }
        }
        self.record_done(sheet, &refs, &saved, deadline).await
    }

    /// Records the sheet as done. The ledger stores one [`BillRef`] per sheet: the first bill,
    /// or an empty one for a sheet without bills.
    // NOTE: for a sheet with a gain and a loss bill the ledger keeps only the gain bill's
    // reference. The loss bill is logged here and can be found by its number (the sheet's bill
    // number plus `gain_loss.loss_suffix`), but the ledger record does not list it.
    async fn record_done(&self, sheet: &Pending, refs: &[BillRef], saved: &[&Bill], deadline: DateTime<Utc>) -> MessageOutcome {
        let io_id = sheet.io_id;
        let first = refs.first().cloned().unwrap_or_else(no_bill);
        if let Err(store_error) = self.ledger.mark_done(io_id, &sheet.token, &first, Utc::now()).await {
            // The bills exist but are not recorded: the redelivery takes the claim over after it
            // expires, finds the bills by number and records them.
            warn!(io_id, bill_no = %first.number, error = %store_error, "bill saved but not recorded; retrying later");
            return failed(Retry::Later, reason("ledger_unavailable", "单据已保存但幂等记录写入失败，稍后重试", "the bill was saved but the idempotency record failed; retrying later", Some(store_error.message)));
        }

        let entries: usize = sheet.bills.iter().map(|bill| bill.entry_count).sum();
        if refs.is_empty() {
            info!(io_id, "sheet has no bill to write (no counted difference); recorded as done");
        } else if saved.is_empty() {
            info!(io_id, bill_no = %first.number, bill_id = %first.id, bills = refs.len(), "existing bill found and recorded");
        } else {
            info!(io_id, bill_no = %first.number, bill_id = %first.id, bills = refs.len(), entries, "bill created");
        }
        for other in refs.iter().skip(1) {
            info!(io_id, bill_no = %other.number, bill_id = %other.id, "further bill of the sheet; the ledger records only the first");
        }

        self.run_after_save(io_id, saved, deadline).await;
        if saved.is_empty() && !refs.is_empty() {
            MessageOutcome::Recovered { bill: first }
        } else {
            MessageOutcome::Created { bill: first }
        }
    }

    /// Submits or audits the bills this attempt saved, as `after_save` requests. A failure is logged
    /// and does not fail the message, because the bills exist and are recorded: a redelivery
    /// would find the sheet done and never repeat the operation, so an operator submits or
    /// audits those bills in Kingdee.
    // NOTE: a bill found by lookup (saved by an attempt that stopped before this step) is not
    // submitted here either, so it also needs an operator.
    async fn run_after_save(&self, io_id: i64, saved: &[&Bill], deadline: DateTime<Utc>) {
        let action = self.mapping.after_save;
        if action == AfterSave::None || saved.is_empty() {
            return;
        }
        let mut by_form: Vec<(&str, Vec<String>)> = Vec::new();
        for bill in saved {
            match by_form.iter_mut().find(|(form_id, _)| *form_id == bill.form_id) {
                Some((_, numbers)) => numbers.push(bill.bill_no.clone()),
                None => by_form.push((&bill.form_id, vec![bill.bill_no.clone()])),
            }
        }
        for (form_id, numbers) in by_form {
            if self.out_of_time(deadline) {
                warn!(io_id, form_id, ?numbers, ?action, "too little time left for the after-save operation; submit or audit these bills in Kingdee");
                continue;
            }
            match self.bounded(deadline, self.target.after_save(form_id, &numbers, action)).await {
                Ok(()) => info!(io_id, form_id, ?numbers, ?action, "after-save operation done"),
                Err(error) => warn!(io_id, form_id, ?numbers, ?action, error = %error, "after-save operation failed; the bills are saved, so submit or audit them in Kingdee"),
            }
        }
    }

    async fn release(&self, sheet: &Pending, failure: FailureReason) -> MessageOutcome {
        if let Err(store_error) = self.ledger.release(sheet.io_id, &sheet.token, Utc::now()).await {
            warn!(io_id = sheet.io_id, error = %store_error, "claim not released; it expires at its lease end");
        }
        failed(Retry::Later, failure)
    }

    async fn fail(&self, sheet: &Pending, failure: FailureReason) -> MessageOutcome {
        if let Err(store_error) = self.ledger.mark_failed(sheet.io_id, &sheet.token, &failure, Utc::now()).await {
            warn!(io_id = sheet.io_id, error = %store_error, "failure record not written");
        }
        failed(Retry::Never, failure)
    }
}

/// Compares a bill that Kingdee already has under this number with the bill the writer would
/// send. It counts as found when it equals the bill as far as it can be read back, and as
/// differing otherwise.
fn compare_existing(bill: &Bill, summary: BillSummary) -> BillResult {
    let Some(stored) = &summary.entries else {
        return BillResult::Found(summary.bill);
    };
    let expected = bill.entry_summaries();
    if *stored == expected {
        return BillResult::Found(summary.bill);
    }
    warn!(io_id = bill.io_id, bill_no = %bill.bill_no, stored_entries = stored.len(), expected_entries = expected.len(), "kingdee bill differs from the sheet; held for an operator");
    let failure = bill_differs(&bill.bill_no, stored, &expected);
    BillResult::Differs(summary.bill, failure)
}

/// Returns the content hash claimed for a sheet. A sheet with one bill uses that bill's hash,
/// so ledger records written before sheets could have several bills stay valid. Otherwise the
/// hash covers the form, number and hash of every bill in order; for no bill it is the SHA-256
/// of empty input, which is never empty, so a later version with bills counts as a change.
fn sheet_content_hash(mapped: &MappedSheet) -> String {
    if let [bill] = mapped.bills.as_slice() {
        return bill.content_hash.clone();
    }
    let mut hasher = Sha256::new();
    for bill in &mapped.bills {
        hasher.update(bill.form_id.as_bytes());
        hasher.update(b"\n");
        hasher.update(bill.bill_no.as_bytes());
        hasher.update(b"\n");
        hasher.update(bill.content_hash.as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

/// Returns the reference of the existing bill a write-back model names by `FID`.
fn existing_ref(bill: &Bill) -> BillRef {
    let id = match &bill.model["FID"] {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    BillRef { id, number: bill.bill_no.clone() }
}

fn scheme_bill_shared() -> FailureReason {
    reason(
        "scheme_bill_shared",
        "同一批消息中另一张盘点单正在回写同一张物料盘点作业，稍后重试",
        "another sheet of this batch writes into the same 物料盘点作业; retrying later",
        None,
    )
}

/// Returns the reference recorded for a sheet that needed no bill: empty id and number.
fn no_bill() -> BillRef {
    BillRef { id: String::new(), number: String::new() }
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

fn internal_reason() -> FailureReason {
    reason("internal", "内部错误：该单据没有处理结果，稍后重试", "internal error: the bill got no result; retrying later", None)
}

#[cfg(test)]
mod tests;
