//! Kingdee's rejection of a bill dated in a closed period, turned into a reason an operator can
//! act on: reason code `period_closed`, naming the bill date and the closing date.

use serde_json::Value;

use crate::ports::{Bill, FailureReason};

/// Reason code of a bill rejected because its date lies in a closed period.
pub const PERIOD_CLOSED: &str = "period_closed";

/// Words of Kingdee's closed-period messages: 关账 (stock closing) and 结账 (period end closing).
// NOTE: the simulator's message is modeled on Kingdee's stock-closing check; the exact wording
// of a real tenant is not confirmed, so detection keys on these two words only.
const CLOSED_MARKERS: [&str; 2] = ["关账", "结账"];

/// Returns whether Kingdee's message rejects a bill because its period is closed.
pub fn is_period_closed(message: &str) -> bool {
    CLOSED_MARKERS.iter().any(|marker| message.contains(marker))
}

/// Builds the `period_closed` reason when `message` is Kingdee's closed-period rejection of
/// `bill`; `None` for any other message.
pub fn period_closed_reason(bill: &Bill, message: &str) -> Option<FailureReason> {
    if !is_period_closed(message) {
        return None;
    }
    let bill_date = bill.model.get("FDate").and_then(Value::as_str).unwrap_or("?").to_string();
    let closed = closing_date(message, &bill_date).unwrap_or_else(|| "?".into());
    Some(FailureReason {
        code: PERIOD_CLOSED.into(),
        message_zh: format!(
            "单据 {} 的日期 {bill_date} 所在期间已关账（关账日期 {closed}）：请在金蝶中反关账，或修改 date_source / 盘点日期后重放",
            bill.bill_no
        ),
        message_en: format!(
            "bill {} is dated {bill_date}, which lies in a closed period (closed up to {closed}): reopen the period in Kingdee, or change date_source or the count date and replay",
            bill.bill_no
        ),
        detail: Some(message.to_string()),
    })
}

/// Returns the first `yyyy-MM-dd` date in the message other than the bill date.
fn closing_date(message: &str, bill_date: &str) -> Option<String> {
    let chars: Vec<char> = message.chars().collect();
    (0..chars.len().saturating_sub(9))
        .map(|start| chars[start..start + 10].iter().collect::<String>())
        .find(|candidate| is_iso_date(candidate) && candidate != bill_date)
}

/// Returns whether the text is exactly `yyyy-MM-dd` and a valid date; chrono's parser alone
/// also accepts leading spaces and one-digit days.
fn is_iso_date(text: &str) -> bool {
    let shape = text.char_indices().all(|(index, c)| if index == 4 || index == 7 { c == '-' } else { c.is_ascii_digit() });
    shape && text.len() == 10 && chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok()
}
