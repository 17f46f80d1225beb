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
    // A CSV's rows are about its lines (a quoted field may hold a line break, so the bar is
    // kept at or under its end); a spreadsheet's are not known before it is read: a spinner.
    let bar = match format {
        Format::Csv => {
            let lines = count_lines(&work)?.saturating_sub(1);
            let bar = indicatif::ProgressBar::new(lines);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {percent:>3}% {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar
        }
        _ => {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                    .expect("valid template"),
            );
            bar
        }
    };
    bar.enable_steady_tick(Duration::from_millis(120));
    let (db2, id, tid) = (db.clone(), job.id, t.id);
    let run = tokio::spawn(async move {
        pinglayer_engine::imports::run(&db2, &SystemClock, tid, id, &work, format, opts).await
    });
    loop {
        let j = db.import(t.id, job.id).await?;
        if let Some(len) = bar.length() {
            bar.set_position((j.total.max(0) as u64).min(len));
        }
        bar.set_message(format!(
            "{} rows read — {} created, {} updated, {} skipped, {} merged, {} refused",
            j.total, j.created, j.updated, j.skipped, j.merged, j.failed
        ));
        if run.is_finished() {
            if let (Some(len), "completed") = (bar.length(), j.status.as_str()) {
                bar.set_position(len);
            }
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

/// Line breaks in a file, read in blocks (a 66 MB CSV takes a few tens of milliseconds).
fn count_lines(path: &Path) -> anyhow::Result<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    let mut last = b'\n';
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        n += buf[..k].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[k - 1];
    }
    // A last line without its line break is a line too.
    Ok(n + u64::from(last != b'\n'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_are_counted_with_or_without_a_final_break() {
        let dir = tempfile::tempdir().unwrap();
        for (text, want) in [("", 0), ("a\n", 1), ("a\nb", 2), ("h\na\nb\n", 3)] {
            let p = dir.path().join("f.csv");
            std::fs::write(&p, text).unwrap();
            assert_eq!(super::count_lines(&p).unwrap(), want, "{text:?}");
        }
    }
}
