//! Human-readable summary of a run, in the chosen language.

use countsync::local::LocalSummary;
use rust_i18n::t;

/// Sheets named per failure reason in the summary.
const IDS_SHOWN: usize = 5;

pub fn print_summary(summary: &LocalSummary, bills_in_simulator: Option<usize>) {
    let fetch = &summary.fetch;
    println!("{}", t!("summary.title"));
    println!("{}", t!("summary.windows", windows = fetch.windows, pages = fetch.pages));
    println!("{}", t!("summary.fetched", count = fetch.sheets_enqueued));
    println!("{}", t!("summary.created", count = summary.created));
    println!("{}", t!("summary.already_done", count = summary.already_done));
    println!("{}", t!("summary.recovered", count = summary.recovered));
    println!("{}", t!("summary.redeliveries", count = summary.redeliveries));
    println!("{}", t!("summary.failed", count = summary.failed.len()));

    let zh = rust_i18n::locale().starts_with("zh");
    for (code, sheets) in summary.failures_by_reason() {
        let ids: Vec<String> = sheets.iter().take(IDS_SHOWN).map(|sheet| sheet.io_id.map_or("?".into(), |id| id.to_string())).collect();
        println!("{}", t!("summary.failed_group", code = code, count = sheets.len(), ids = ids.join(", ")));
        if let Some(first) = sheets.first() {
            let message = if zh { &first.reason.message_zh } else { &first.reason.message_en };
            println!("    {message}");
            if let Some(detail) = &first.reason.detail {
                println!("    {detail}");
            }
        }
    }
    if let Some(watermark) = fetch.watermark {
        println!("{}", t!("summary.watermark", watermark = watermark.to_rfc3339()));
    }
    if fetch.more_pending {
        println!("{}", t!("summary.more_pending"));
    }
    if let Some(count) = bills_in_simulator {
        println!("{}", t!("demo.bills_total", count = count));
    }
}
