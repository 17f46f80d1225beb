//! Commands that act on a tenant's data from the shell.

use anyhow::Context;
use pinglayer_domain::{Clock, SystemClock};
use pinglayer_engine::imports::{Format, ImportOptions};
use pinglayer_store::Db;
use std::{path::Path, time::Duration};

/// `pinglayer contacts import FILE --tenant SLUG`: runs the same import as the API, here, and
/// shows its progress.
pub async fn import_contacts(
    db: &Db,
    file: &Path,
    tenant: &str,
    default_country: Option<String>,
    tags: Vec<String>,
    update: bool,
) -> anyhow::Result<()> {
    let t = db
        .tenant_by_slug(tenant)
        .await
        .with_context(|| format!("no tenant with slug {tenant:?}"))?;
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("import")
        .to_string();
    let format = match file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_lowercase)
        .as_deref()
    {
        Some("csv") => Format::Csv,
        Some("xlsx" | "xls" | "ods") => Format::Xlsx,
        _ => anyhow::bail!("give a .csv or .xlsx file"),
    };
    // The importer deletes its input when done: work on a copy (with the file's own extension,
    // by which the spreadsheet reader picks its parser).
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_lowercase)
        .unwrap_or_default();
    let work =
        std::env::temp_dir().join(format!("pinglayer-import-{}.{ext}", uuid::Uuid::now_v7()));
    std::fs::copy(file, &work).with_context(|| format!("reading {}", file.display()))?;
    let default_country = match default_country {
        Some(c) => Some(pinglayer_domain::phone::country_code(&c)?),
        None => t.default_country.clone(),
    };
    let opts = ImportOptions {
        default_country,
        tags,
        on_duplicate: Some(if update { "update" } else { "skip" }.into()),
        ..Default::default()
    };
    let options = serde_json::json!({"default_country": opts.default_country, "tags": opts.tags, "on_duplicate": opts.on_duplicate});
    let job = db
        .create_import(
            t.id,
            &name,
            if format == Format::Csv { "csv" } else { "xlsx" },
            &options,
            SystemClock.now(),
        )
        .await?;
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let (db2, id, tid) = (db.clone(), job.id, t.id);
    let run = tokio::spawn(async move {
        pinglayer_engine::imports::run(&db2, &SystemClock, tid, id, &work, format, opts).await
    });
    loop {
        let j = db.import(t.id, job.id).await?;
        bar.set_message(format!(
            "{} rows read — {} created, {} updated, {} skipped, {} merged, {} refused",
            j.total, j.created, j.updated, j.skipped, j.merged, j.failed
        ));
        if run.is_finished() {
            bar.finish();
            anyhow::ensure!(
                j.status == "completed",
                "import failed: {}",
                j.error.unwrap_or_default()
            );
            println!(
                "import {}: {} created, {} updated, {} skipped, {} merged, {} refused",
                j.id, j.created, j.updated, j.skipped, j.merged, j.failed
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
