//! `countsync preview`: maps one sheet with the configured mapping and prints the exact Kingdee
//! request of each bill, then every dropped or rounded line and every problem. Read-only: it
//! saves nothing, and it calls Kingdee only for the lookups the mapping needs
//! (`materials.source = "kingdee_lookup"`, `target = "scheme_writeback"`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use countsync::Config;
use countsync_core::mapping::lookup::{CachedMaterialLookup, CountBillLookup, PrepareError, prepare_context};
use countsync_core::mapping::{MappedSheet, MappingContext, MappingError, MaterialSource, Target, map_sheet_with};
use countsync_core::sheet::CountSheet;
use countsync_jushuitan::wire;
use countsync_kingdee::KingdeeClient;
use countsync_kingdee::client::batch_save_body;
use countsync_sim::jushuitan::{JstSim, JstSimConfig};
use countsync_sim::seed;
use rust_i18n::t;
use serde_json::value::RawValue;

/// Source of the sheet to preview.
pub enum SheetInput<'a> {
    File(&'a Path),
    IoId(i64),
}

/// Prints the preview. Exits with 1 when the sheet cannot be mapped.
pub async fn run(config_file: &Path, input: SheetInput<'_>) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(config_file).with_context(|| format!("reading {}", config_file.display()))?;
    let mut config = Config::parse_toml(&text).with_context(|| format!("parsing {}", config_file.display()))?;
    config.mapping.validate().map_err(|error| anyhow::anyhow!("{error}"))?;

    let sheet = match input {
        SheetInput::File(path) => read_sheet_file(path)?,
        SheetInput::IoId(io_id) => fetch_sheet(&mut config, io_id).await?,
    };
    let english = rust_i18n::locale().starts_with("en");
    let context = match lookups(&config, &sheet).await {
        Ok(context) => context,
        Err(PrepareError::Mapping(error)) => return Ok(print_problems(&error, english)),
        Err(PrepareError::Lookup(error)) => anyhow::bail!("{}", t!("preview.lookup_failed", error = error.to_string())),
    };
    match map_sheet_with(&sheet, &config.mapping, &context) {
        Ok(mapped) => {
            print_bills(&mapped, english)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => Ok(print_problems(&error, english)),
    }
}

/// Decodes a sheet file in JuShuiTan's own JSON shape, with the API client's decoder.
fn read_sheet_file(path: &Path) -> anyhow::Result<CountSheet> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let raw: Box<RawValue> = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    wire::decode_sheet(&raw, path.display().to_string()).map_err(|error| anyhow::anyhow!("{error}"))
}

/// Fetches one sheet by `io_id` through the configured JuShuiTan client; with the demo
/// configuration the JuShuiTan simulator is started with the demo data first.
async fn fetch_sheet(config: &mut Config, io_id: i64) -> anyhow::Result<CountSheet> {
    let mut simulator = None;
    if config.simulator.enabled {
        let jst_config = JstSimConfig::default();
        let jst = JstSim::start(jst_config.clone(), seed::demo_sheets()).await?;
        config.jushuitan.base_url = jst.base_url();
        config.jushuitan.app_key = jst_config.app_key.clone();
        config.jushuitan.app_secret = jst_config.app_secret.clone().into();
        config.jushuitan.access_token = jst_config.access_token.clone().into();
        simulator = Some(jst);
    } else {
        config.jushuitan.validate().map_err(|error| anyhow::anyhow!("jushuitan: {error}"))?;
    }
    let source = countsync::runtime::open_source(config).await?;
    let sheets = source.fetch_by_ids(&[io_id]).await.map_err(|error| anyhow::anyhow!("{error}"))?;
    drop(simulator);
    sheets.into_iter().find(|sheet| sheet.io_id == io_id).ok_or_else(|| anyhow::anyhow!("{}", t!("preview.not_found", io_id = io_id)))
}

/// Runs the Kingdee lookups the mapping needs, with a real client when Kingdee is configured.
/// Without one, the context stays empty and the mapping reports what is missing.
async fn lookups(config: &Config, sheet: &CountSheet) -> Result<MappingContext, PrepareError> {
    let needs_kingdee = config.mapping.materials.source == MaterialSource::KingdeeLookup || config.mapping.target == Target::SchemeWriteback;
    let client = if needs_kingdee && !config.simulator.enabled { KingdeeClient::new(config.kingdee.clone()).ok() } else { None };
    let materials = client.as_ref().map(CachedMaterialLookup::new);
    let count_bills = client.as_ref().map(|client| client as &dyn CountBillLookup);
    prepare_context(sheet, &config.mapping, materials.as_ref(), count_bills).await
}

fn print_bills(mapped: &MappedSheet, english: bool) -> anyhow::Result<()> {
    let total = mapped.bills.len();
    if total == 0 {
        println!("{}", t!("preview.no_bills"));
    }
    for (index, bill) in mapped.bills.iter().enumerate() {
        println!(
            "{}",
            t!("preview.bill", index = index + 1, total = total, form = bill.form_id, bill_no = bill.bill_no, rows = bill.entry_count)
        );
        println!("{}", serde_json::to_string_pretty(&batch_save_body(std::slice::from_ref(bill)))?);
    }
    let report = &mapped.report;
    if !report.dropped.is_empty() {
        println!("{}", t!("preview.dropped", count = report.dropped.len()));
        for line in &report.dropped {
            let (zh, en) = line.describe();
            println!("  - {}", if english { en } else { zh });
        }
    }
    if !report.rounded.is_empty() {
        println!("{}", t!("preview.rounded", count = report.rounded.len()));
        for line in &report.rounded {
            let (zh, en) = line.describe();
            println!("  - {}", if english { en } else { zh });
        }
    }
    println!("{}", t!("preview.no_problems"));
    Ok(())
}

fn print_problems(error: &MappingError, english: bool) -> ExitCode {
    println!("{}", t!("preview.problems", io_id = error.io_id, count = error.problems.len()));
    for problem in &error.problems {
        println!("  [{}] {}", problem.code, if english { &problem.message_en } else { &problem.message_zh });
    }
    ExitCode::from(1)
}
