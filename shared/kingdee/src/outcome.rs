//! Mapping of a BatchSave `ResponseStatus` to one outcome per bill.
//!
//! BatchSave is not atomic: Kingdee may save some bills of a call and reject others. Results are
//! matched by `DIndex` (the bill's position in `Model`) and cross-checked with `Number`, never by
//! list position, so a retry touches only the bills that failed.

use countsync_core::ports::{Bill, BillRef, MSG_CODE_CALL_LIMIT, MSG_CODE_LOCKED, Rejection, SaveOutcome};
use tracing::warn;

use crate::error::KingdeeError;
use crate::wire::{ResponseStatus, StatusError};

/// Maps a BatchSave status to outcomes in request order, or to an error when the status
/// rejects the call as a whole.
pub fn map_save_status(service: &str, bills: &[Bill], status: &ResponseStatus) -> Result<Vec<SaveOutcome>, KingdeeError> {
    if is_call_level_refusal(status) {
        return Err(KingdeeError::Rejected {
            service: service.to_string(),
            msg_code: status.msg_code,
            error_code: status.error_code,
            message: join_messages(&status.errors),
        });
    }
    let mut outcomes: Vec<Option<SaveOutcome>> = vec![None; bills.len()];
    apply_successes(bills, status, &mut outcomes);
    let unassigned = apply_errors(bills, status, &mut outcomes);

    let any_assigned = outcomes.iter().any(Option::is_some);
    if !any_assigned && !unassigned.is_empty() && !status.is_success {
        return Err(KingdeeError::Rejected {
            service: service.to_string(),
            msg_code: status.msg_code,
            error_code: status.error_code,
            message: join_messages(&unassigned),
        });
    }
    if !unassigned.is_empty() {
        warn!(service, errors = unassigned.len(), message = %join_messages(&unassigned), "kingdee errors name no bill; those bills stay unknown");
    }

    Ok(outcomes.into_iter().map(|outcome| outcome.unwrap_or(SaveOutcome::Unknown)).collect())
}

/// Returns whether the status refuses the whole call for a lock conflict (MsgCode 13) or the
/// call limit (MsgCode 14): nothing saved and no error names a bill. Without this rule a
/// one-bill call would take the unindexed error as that bill's rejection.
fn is_call_level_refusal(status: &ResponseStatus) -> bool {
    !status.is_success
        && status.success_entities.is_empty()
        && matches!(status.msg_code, Some(MSG_CODE_LOCKED | MSG_CODE_CALL_LIMIT))
        && status.errors.iter().all(|error| error.dindex.is_none())
}

/// Joins error messages for one rejection or log line.
pub fn join_messages(errors: &[StatusError]) -> String {
    errors.iter().map(|error| error.message.as_str()).collect::<Vec<_>>().join("；")
}

/// Returns the bill index a result names: its `DIndex`, or bill 0 when only one bill was sent
/// and the result names none.
fn bill_index(dindex: Option<usize>, bill_count: usize) -> Option<usize> {
    match dindex {
        Some(index) if index < bill_count => Some(index),
        Some(_) => None,
        None if bill_count == 1 => Some(0),
        None => None,
    }
}

fn apply_successes(bills: &[Bill], status: &ResponseStatus, outcomes: &mut [Option<SaveOutcome>]) {
    let mut entities = status.success_entities.clone();
    if entities.is_empty() && status.is_success && bills.len() == 1 && status.result_id.is_some() {
        // A single save may name the bill only in `Result.Id` and `Result.Number`.
        entities.push(crate::wire::SuccessEntity { id: status.result_id.clone(), number: status.result_number.clone(), dindex: Some(0) });
    }

    for entity in &entities {
        let Some(index) = bill_index(entity.dindex, bills.len()) else {
            warn!(dindex = ?entity.dindex, number = ?entity.number, "kingdee success entity names no bill of the request");
            continue;
        };
        let bill = &bills[index];
        let outcome = match (&entity.id, &entity.number) {
            (Some(id), Some(number)) if number != &bill.bill_no => {
                warn!(dindex = index, bill_no = %bill.bill_no, returned_number = %number, fid = %id, "kingdee returned another bill number for this position");
                SaveOutcome::Unknown
            }
            (Some(id), _) if !id.is_empty() && id != "0" => SaveOutcome::Saved(BillRef { id: id.clone(), number: bill.bill_no.clone() }),
            _ => {
                warn!(dindex = index, bill_no = %bill.bill_no, "kingdee success entity has no FID");
                SaveOutcome::Unknown
            }
        };
        outcomes[index] = Some(outcome);
    }
}

/// Applies the errors that name a bill and returns those that name none.
fn apply_errors(bills: &[Bill], status: &ResponseStatus, outcomes: &mut [Option<SaveOutcome>]) -> Vec<StatusError> {
    let mut per_bill: Vec<Vec<&StatusError>> = vec![Vec::new(); bills.len()];
    let mut unassigned = Vec::new();
    for error in &status.errors {
        match bill_index(error.dindex, bills.len()) {
            Some(index) => per_bill[index].push(error),
            None => unassigned.push(error.clone()),
        }
    }

    for (index, errors) in per_bill.iter().enumerate() {
        if errors.is_empty() {
            continue;
        }
        if matches!(outcomes[index], Some(SaveOutcome::Saved(_))) {
            warn!(dindex = index, bill_no = %bills[index].bill_no, "kingdee reported both success and errors for one bill");
            outcomes[index] = Some(SaveOutcome::Unknown);
            continue;
        }
        outcomes[index] = Some(SaveOutcome::Rejected(rejection(status, errors)));
    }
    unassigned
}

/// Builds one bill's rejection. The field name is `FBillNo` when any error names it, so that a
/// duplicate number is recognized even when other errors come with it.
fn rejection(status: &ResponseStatus, errors: &[&StatusError]) -> Rejection {
    let field_name = errors
        .iter()
        .filter_map(|error| error.field_name.clone())
        .find(|name| name.eq_ignore_ascii_case("FBillNo"))
        .or_else(|| errors.iter().find_map(|error| error.field_name.clone()));
    Rejection {
        msg_code: status.msg_code.unwrap_or(0),
        field_name,
        message: errors.iter().map(|error| error.message.as_str()).collect::<Vec<_>>().join("；"),
    }
}

#[cfg(test)]
mod tests {
    use countsync_core::Retry;
    use serde_json::json;

    use super::*;
    use crate::wire::{self, Response};

    fn bill(number: &str) -> Bill {
        Bill {
            form_id: "STK_StockCountInput".into(),
            bill_no: number.into(),
            io_id: 1,
            model: json!({"FBillNo": number}),
            entry_count: 1,
            content_hash: String::new(),
        }
    }

    fn status(body: &str) -> ResponseStatus {
        match wire::parse(body) {
            Response::Status(status) => status,
            other => panic!("expected a status, got {other:?}"),
        }
    }

    #[test]
    fn partial_success_by_dindex() {
        let bills = [bill("JST-1"), bill("JST-2"), bill("JST-3")];
        let body = r#"{"Result":{"ResponseStatus":{"IsSuccess":false,"MsgCode":9,"Errors":[{"FieldName":"FMaterialId","Message":"bad","DIndex":1}],
            "SuccessEntitys":[{"Id":12,"Number":"JST-3","DIndex":2},{"Id":11,"Number":"JST-1","DIndex":0}]}}}"#;
        let outcomes = map_save_status("BatchSave", &bills, &status(body)).unwrap();
        assert_eq!(outcomes[0], SaveOutcome::Saved(BillRef { id: "11".into(), number: "JST-1".into() }));
        let SaveOutcome::Rejected(rejection) = &outcomes[1] else { panic!("expected a rejection, got {:?}", outcomes[1]) };
        assert_eq!(rejection.msg_code, 9);
        assert_eq!(rejection.field_name.as_deref(), Some("FMaterialId"));
        assert_eq!(outcomes[2], SaveOutcome::Saved(BillRef { id: "12".into(), number: "JST-3".into() }));
    }

    #[test]
    fn number_mismatch_is_unknown() {
        let bills = [bill("JST-1"), bill("JST-2")];
        let body = r#"{"Result":{"ResponseStatus":{"IsSuccess":true,"SuccessEntitys":[{"Id":11,"Number":"JST-2","DIndex":0},{"Id":12,"Number":"JST-2","DIndex":1}]}}}"#;
        let outcomes = map_save_status("BatchSave", &bills, &status(body)).unwrap();
        assert_eq!(outcomes[0], SaveOutcome::Unknown);
        assert!(matches!(outcomes[1], SaveOutcome::Saved(_)));
    }

    #[test]
    fn unnamed_bill_is_unknown() {
        let bills = [bill("JST-1"), bill("JST-2")];
        let body = r#"{"Result":{"ResponseStatus":{"IsSuccess":true,"SuccessEntitys":[{"Id":11,"Number":"JST-1","DIndex":0}]}}}"#;
        let outcomes = map_save_status("BatchSave", &bills, &status(body)).unwrap();
        assert!(matches!(outcomes[0], SaveOutcome::Saved(_)));
        assert_eq!(outcomes[1], SaveOutcome::Unknown);
    }

    #[test]
    fn single_bill_takes_unindexed_error() {
        let bills = [bill("JST-1")];
        let body = r#"{"Result":{"ResponseStatus":{"IsSuccess":false,"MsgCode":11,"Errors":[{"FieldName":"FBillNo","Message":"违反字段唯一性要求"}]}}}"#;
        let outcomes = map_save_status("BatchSave", &bills, &status(body)).unwrap();
        let SaveOutcome::Rejected(rejection) = &outcomes[0] else { panic!("expected a rejection, got {outcomes:?}") };
        assert!(rejection.is_duplicate_bill_no());
        assert_eq!(rejection.message, "违反字段唯一性要求");
    }

    #[test]
    fn whole_call_lock_is_retryable_error() {
        let bills = [bill("JST-1"), bill("JST-2")];
        let body = r#"{"Result":{"ResponseStatus":{"IsSuccess":false,"ErrorCode":500,"MsgCode":13,"Errors":[{"Message":"网控冲突"}]}}}"#;
        let error = map_save_status("BatchSave", &bills, &status(body)).unwrap_err();
        assert_eq!(error.retry(), Retry::Later);
        assert!(!error.may_have_committed());
    }

    #[test]
    fn single_bill_call_limit_is_whole_call() {
        let bills = [bill("JST-1")];
        let body = r#"{"Result":{"ResponseStatus":{"IsSuccess":false,"ErrorCode":500,"MsgCode":14,"Errors":[{"Message":"接口调用次数超过限制"}]}}}"#;
        let error = map_save_status("BatchSave", &bills, &status(body)).unwrap_err();
        assert!(error.is_busy());
        assert_eq!(error.retry(), Retry::Later);
    }

    #[test]
    fn indexed_lock_is_per_bill() {
        let bills = [bill("JST-1"), bill("JST-2")];
        let body = r#"{"Result":{"ResponseStatus":{"IsSuccess":false,"MsgCode":13,"Errors":[{"Message":"网控冲突","DIndex":1}],"SuccessEntitys":[{"Id":11,"Number":"JST-1","DIndex":0}]}}}"#;
        let outcomes = map_save_status("BatchSave", &bills, &status(body)).unwrap();
        assert!(matches!(outcomes[0], SaveOutcome::Saved(_)));
        let SaveOutcome::Rejected(rejection) = &outcomes[1] else { panic!("expected a rejection, got {outcomes:?}") };
        assert_eq!(rejection.retry(), Retry::Later);
    }

    #[test]
    fn success_and_error_for_one_bill_is_unknown() {
        let bills = [bill("JST-1"), bill("JST-2")];
        let body = r#"{"Result":{"ResponseStatus":{"IsSuccess":false,"MsgCode":11,"Errors":[{"Message":"x","DIndex":0}],"SuccessEntitys":[{"Id":11,"Number":"JST-1","DIndex":0}]}}}"#;
        let outcomes = map_save_status("BatchSave", &bills, &status(body)).unwrap();
        assert_eq!(outcomes, vec![SaveOutcome::Unknown, SaveOutcome::Unknown]);
    }

    #[test]
    fn single_save_result_id_counts() {
        let bills = [bill("JST-9")];
        let body = r#"{"Result":{"ResponseStatus":{"IsSuccess":true},"Id":90,"Number":"JST-9"}}"#;
        let outcomes = map_save_status("Save", &bills, &status(body)).unwrap();
        assert_eq!(outcomes[0], SaveOutcome::Saved(BillRef { id: "90".into(), number: "JST-9".into() }));
    }
}
