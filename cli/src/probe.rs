//! `countsync probe`: read-only checks of the Kingdee tenant named in a configuration file.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use chrono::Utc;
use countsync::Config;
use countsync_core::ports::SheetQuery;
use countsync_core::sheet::CONFIRMED;
use countsync_core::window::{MAX_WINDOW, Window};
use countsync_kingdee::KingdeeClient;
use countsync_kingdee::probe::{self, Check, CheckKind, ProbeRequest};
use rust_i18n::t;

/// Sheets requested from JuShuiTan when sampling materials (its page maximum).
const SAMPLE_PAGE_SIZE: u32 = 50;

/// Runs the probe and prints one line per check. Exits with 1 when a check failed.
pub async fn run(config_file: &Path, sample_materials: usize, bill_no: Option<String>) -> anyhow::Result<ExitCode> {
    let config = Config::load(Some(config_file))?;
    let client = KingdeeClient::new(config.kingdee.clone())?;
    let materials = if sample_materials == 0 { Vec::new() } else { sample_skus(&config, sample_materials).await? };
    println!("{}", t!("probe.started", server = config.kingdee.server_url, materials = materials.len()));

    let request = ProbeRequest { materials, bill_no };
    let report = probe::run(&client, &config.mapping, &request).await;
    for check in &report.checks {
        println!("{}", line(check));
    }
    let failed = report.failures().count();
    if failed == 0 {
        println!("{}", t!("probe.passed", count = report.checks.len()));
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{}", t!("probe.failed", failed = failed, count = report.checks.len()));
        Ok(ExitCode::from(1))
    }
}

/// Reads up to `count` distinct SKUs from the confirmed sheets JuShuiTan changed in the last 7
/// days (first page only).
async fn sample_skus(config: &Config, count: usize) -> anyhow::Result<Vec<String>> {
    let source = countsync::runtime::open_source(config).await?;
    let now = Utc::now();
    let query = SheetQuery {
        window: Window { begin: now - MAX_WINDOW, end: now },
        page_index: 1,
        page_size: SAMPLE_PAGE_SIZE,
        status: CONFIRMED.to_string(),
    };
    let page = source.query_page(&query).await.map_err(|error| anyhow::anyhow!("{}: {error}", t!("probe.sample_failed")))?;
    let skus: BTreeSet<String> = page.sheets.iter().flat_map(|sheet| sheet.items.iter().map(|item| item.sku_id.clone())).collect();
    Ok(skus.into_iter().take(count).collect())
}

fn line(check: &Check) -> String {
    let mark = if check.passed { "✓" } else { "✗" };
    let description = match check.kind {
        CheckKind::Login => t!("probe.login", user = check.subject),
        CheckKind::Metadata => t!("probe.metadata", form = check.subject),
        CheckKind::FieldKey => t!("probe.field", key = check.subject),
        CheckKind::StockOrg => t!("probe.stock_org", code = check.subject),
        CheckKind::BillType => t!("probe.bill_type", code = check.subject),
        CheckKind::Warehouse => t!("probe.warehouse", code = check.subject),
        CheckKind::Material => t!("probe.material", code = check.subject),
        CheckKind::BillVisible => t!("probe.bill_visible", bill_no = check.subject),
    };
    match &check.detail {
        Some(detail) => format!("{mark} {description}: {detail}"),
        None if check.passed => format!("{mark} {description}"),
        None => format!("{mark} {description}: {}", t!("probe.not_found")),
    }
}
