//! Contact imports: a CSV or XLSX file read row by row (CSV streamed, never whole in memory),
//! columns mapped to contact fields (header auto-detection, unknown columns → attributes),
//! phones parsed in the import's default country, rows upserted in batches of 5,000, every
//! refused row kept with its reason.

use calamine::{Data, Reader as _};
use futures::StreamExt as _;
use pinglayer_domain::{
    Clock, Email, ImportId, PhoneE164, TenantId,
    billing::Limit,
    contact::{Birthday, Language, tag},
};
use pinglayer_store::{
    Db,
    imports::{Expect, ImportRow, Progress},
};
use serde::Deserialize;
use serde_json::Value;
use std::{
    collections::{HashMap, HashSet},
    io::Read,
    path::Path,
};

const BATCH: usize = 5000;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImportOptions {
    /// Column header → field (`phone`, `name`, `email`, `language`, `birthday`, `tags`,
    /// `attributes.<key>`, or `skip`). Unmapped columns are detected by their header.
    #[serde(default)]
    pub mapping: HashMap<String, String>,
    /// ISO 3166 alpha-2 for phones written without a country code.
    pub default_country: Option<String>,
    /// Tags added to every imported contact.
    #[serde(default)]
    pub tags: Vec<String>,
    /// `skip` (default) or `update` existing contacts.
    #[serde(default)]
    pub on_duplicate: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Xlsx,
}

#[derive(Debug, Clone, PartialEq)]
enum Target {
    Phone,
    Name,
    Email,
    Language,
    Birthday,
    Tags,
    Attribute(String),
    Skip,
}

fn snake(h: &str) -> String {
    let mut out = String::new();
    for c in h.trim().to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').chars().take(64).collect()
}

fn target(header: &str, mapping: &HashMap<String, String>) -> Target {
    let explicit = mapping.get(header).map(|s| s.trim().to_lowercase());
    let key = explicit.clone().unwrap_or_else(|| snake(header));
    match key.as_str() {
        "phone" | "mobile" | "number" | "phone_number" | "mobile_number" | "whatsapp"
        | "whatsapp_number" | "contact_number" | "msisdn" => Target::Phone,
        "name" | "full_name" | "customer_name" | "contact_name" => Target::Name,
        "email" | "e_mail" | "email_address" => Target::Email,
        "language" | "lang" | "preferred_language" => Target::Language,
        "birthday" | "dob" | "date_of_birth" | "birth_date" => Target::Birthday,
        "tags" | "tag" | "labels" => Target::Tags,
        "skip" | "" => Target::Skip,
        other => match other.strip_prefix("attributes.") {
            Some(k) => Target::Attribute(snake(k)),
            None if explicit.is_some() => Target::Skip,
            None => Target::Attribute(other.to_string()),
        },
    }
}

/// Phones as spreadsheets mangle them: digits without `+`, lost leading zeros, `9.1981E+11`.
fn phone(raw: &str, country: Option<&str>) -> Result<PhoneE164, String> {
    let t = raw.trim();
    match PhoneE164::parse(t, country) {
        Ok(p) => Ok(p),
        Err(e) => {
            let digits: String = t.chars().filter(|c| c.is_ascii_digit()).collect();
            if !digits.is_empty() && t.chars().all(|c| c.is_ascii_digit() || " -()".contains(c)) {
                PhoneE164::parse(&format!("+{digits}"), None).map_err(|_| e.message)
            } else {
                Err(e.message)
            }
        }
    }
}

/// Whether a spreadsheet is Office Open XML (read streamed), by its extension.
fn is_xlsx(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("xlsx") || e.eq_ignore_ascii_case("xlsm"))
}

fn cell(d: &Data) -> String {
    match d {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        // Numbers typed into Excel: phones arrive as floats; print them as integers.
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e17 => format!("{}", *f as i64),
        Data::Float(f) => f.to_string(),
        Data::Int(i) => i.to_string(),
        Data::Bool(b) => b.to_string(),
        Data::DateTime(dt) => dt
            .as_datetime()
            .map(|d| d.date().to_string())
            .unwrap_or_default(),
        other => other.to_string(),
    }
}

/// Builds one contact from a row, or says why not.
fn row(cells: &[String], targets: &[Target], opts: &ImportOptions) -> Result<ImportRow, String> {
    let mut r = ImportRow {
        phone: String::new(),
        name: None,
        email: None,
        language: None,
        birthday: None,
        attributes: Default::default(),
        tags: vec![],
    };
    let mut phone_raw = None;
    for (value, t) in cells.iter().zip(targets) {
        let v = value.trim();
        if v.is_empty() {
            continue;
        }
        match t {
            Target::Phone => phone_raw = Some(v),
            Target::Name => r.name = Some(v.chars().take(200).collect()),
            Target::Email => {
                r.email = Some(
                    Email::parse(v)
                        .map_err(|e| e.to_string())?
                        .as_str()
                        .to_string(),
                )
            }
            Target::Language => {
                r.language = Some(
                    Language::parse(v)
                        .map_err(|e| e.to_string())?
                        .as_str()
                        .to_string(),
                )
            }
            Target::Birthday => {
                r.birthday = Some(
                    Birthday::parse(v)
                        .map_err(|e| e.to_string())?
                        .as_str()
                        .to_string(),
                )
            }
            Target::Tags => {
                for t in v.split([',', ';', '|']).filter(|t| !t.trim().is_empty()) {
                    r.tags.push(tag(t).map_err(|e| e.to_string())?);
                }
            }
            Target::Attribute(k) => {
                let value = v
                    .parse::<i64>()
                    .map(Value::from)
                    .or_else(|_| v.parse::<f64>().map(Value::from))
                    .unwrap_or_else(|_| Value::String(v.to_string()));
                r.attributes.insert(k.clone(), value);
            }
            Target::Skip => {}
        }
    }
    let raw = phone_raw.ok_or("no phone number")?;
    r.phone = phone(raw, opts.default_country.as_deref())?
        .as_str()
        .to_string();
    Ok(r)
}

/// Streams the file once to check it is UTF-8 before anything is written.
fn check_utf8(path: &Path) -> anyhow::Result<()> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            anyhow::ensure!(carry.is_empty(), "the file is not UTF-8 text");
            return Ok(());
        }
        carry.extend_from_slice(&buf[..n]);
        match std::str::from_utf8(&carry) {
            Ok(_) => carry.clear(),
            Err(e) if e.error_len().is_none() => {
                let keep = carry.split_off(e.valid_up_to());
                carry = keep;
            }
            Err(_) => anyhow::bail!("the file is not UTF-8 text (save it as CSV UTF-8)"),
        }
    }
}

/// What the reader hands the writer: up to [`BATCH`] rows with phones new to the file, the rows
/// repeating a phone of an earlier batch, the refused rows, and the counts so far.
#[derive(Default)]
struct Batch {
    rows: Vec<ImportRow>,
    /// The file row each entry of `rows` came from.
    row_numbers: Vec<i64>,
    later: Vec<ImportRow>,
    errors: Vec<(i64, String, String)>,
    /// Rows read, and rows refused, from the start of the file.
    total: i64,
    failed: i64,
    /// Rows merged into an earlier row of this batch (same phone).
    merged: i64,
}

/// Reads and parses the file on its own thread, so parsing the next batch overlaps writing
/// the last. It stops when the writer hangs up.
struct FileReader<'a> {
    opts: &'a ImportOptions,
    out: tokio::sync::mpsc::Sender<anyhow::Result<Batch>>,
    batch: Batch,
    in_batch: HashMap<String, usize>,
    /// Phones of the batches already handed over, as numbers (E.164 has at most 15 digits):
    /// a million of them take 16 MB, not the 60 MB they would as strings.
    seen: HashSet<u64>,
}

/// An E.164 phone (`+` and up to 15 digits, as parsing made it) as one number.
fn phone_number(e164: &str) -> u64 {
    e164.bytes()
        .filter(u8::is_ascii_digit)
        .fold(0, |n, d| n * 10 + u64::from(d - b'0'))
}

/// The writer stopped (it failed, or the import was abandoned): nothing more to read for.
#[derive(Debug, thiserror::Error)]
#[error("the import's writer stopped")]
struct WriterGone;

impl FileReader<'_> {
    fn push(&mut self, n: i64, cells: Vec<String>, targets: &[Target]) -> anyhow::Result<()> {
        let b = &mut self.batch;
        b.total += 1;
        match row(&cells, targets, self.opts) {
            Ok(r) => {
                if let Some(i) = self.in_batch.get(&r.phone) {
                    // The same phone twice in the file: the later row wins, one contact.
                    b.rows[*i] = merge(b.rows[*i].clone(), r);
                    b.merged += 1;
                } else if self.seen.contains(&phone_number(&r.phone)) {
                    b.later.push(r);
                } else {
                    self.in_batch.insert(r.phone.clone(), b.rows.len());
                    b.rows.push(r);
                    b.row_numbers.push(n);
                }
            }
            Err(reason) => {
                b.failed += 1;
                b.errors.push((n, reason, cells.join(",")));
            }
        }
        if b.rows.len() >= BATCH {
            self.send()?;
        }
        Ok(())
    }

    /// Hands the batch over (also the last, short or empty one: it carries the counts).
    fn send(&mut self) -> anyhow::Result<()> {
        let next = Batch {
            total: self.batch.total,
            failed: self.batch.failed,
            rows: Vec::with_capacity(BATCH),
            row_numbers: Vec::with_capacity(BATCH),
            ..Default::default()
        };
        let b = std::mem::replace(&mut self.batch, next);
        self.seen
            .extend(self.in_batch.drain().map(|(p, _)| phone_number(&p)));
        self.out.blocking_send(Ok(b)).map_err(|_| WriterGone.into())
    }

    /// What each column is; a file without a phone column is refused.
    fn targets(&self, headers: &[String]) -> anyhow::Result<Vec<Target>> {
        let targets: Vec<Target> = headers
            .iter()
            .map(|h| target(h, &self.opts.mapping))
            .collect();
        anyhow::ensure!(
            targets.contains(&Target::Phone),
            "no phone column: name one phone/mobile/number, or map a column to \"phone\""
        );
        Ok(targets)
    }

    /// An .xlsx sheet read cell by cell from its XML, one row at a time: memory holds the
    /// shared strings and one row, not the sheet. Rows with no cell are not rows.
    fn read_xlsx_streamed(&mut self, path: &Path) -> anyhow::Result<()> {
        let unreadable =
            |e: calamine::XlsxError| anyhow::anyhow!("not a readable spreadsheet: {e}");
        let mut wb: calamine::Xlsx<_> = calamine::open_workbook(path).map_err(unreadable)?;
        let sheet = wb
            .sheet_names()
            .first()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("the workbook has no sheet"))?;
        let mut cells = wb.worksheet_cells_reader(&sheet).map_err(unreadable)?;
        let mut targets: Option<Vec<Target>> = None;
        let mut at: Option<u32> = None;
        let mut cur: Vec<String> = Vec::new();
        loop {
            let next = cells.next_cell().map_err(unreadable)?;
            let row_of_next = next.as_ref().map(|c| c.get_position().0);
            if let Some(r) = at.filter(|r| Some(*r) != row_of_next) {
                let done = std::mem::take(&mut cur);
                match &targets {
                    None => targets = Some(self.targets(&done)?),
                    // Sheet rows count from 0; people count from 1.
                    Some(t) => self.push(i64::from(r) + 1, done, t)?,
                }
            }
            let Some(c) = next else { break };
            let (r, col) = c.get_position();
            at = Some(r);
            let col = col as usize;
            if cur.len() <= col {
                cur.resize(col + 1, String::new());
            }
            cur[col] = cell(&Data::from(c.get_value().clone()));
        }
        if targets.is_none() {
            self.targets(&[])?;
        }
        Ok(())
    }

    fn read(&mut self, path: &Path, format: Format) -> anyhow::Result<()> {
        match format {
            Format::Csv => {
                check_utf8(path)?;
                let mut rdr = csv::ReaderBuilder::new()
                    .flexible(true)
                    .trim(csv::Trim::All)
                    .from_path(path)?;
                let headers: Vec<String> = rdr
                    .headers()?
                    .iter()
                    .map(|h| h.trim_start_matches('\u{feff}').to_string())
                    .collect();
                let targets = self.targets(&headers)?;
                for (i, rec) in rdr.records().enumerate() {
                    let rec = rec?;
                    self.push(
                        i as i64 + 2,
                        rec.iter().map(str::to_string).collect(),
                        &targets,
                    )?;
                }
            }
            Format::Xlsx if is_xlsx(path) => self.read_xlsx_streamed(path)?,
            Format::Xlsx => {
                // .xls and .ods: calamine reads these whole (they are rarely large).
                let mut wb = calamine::open_workbook_auto(path)
                    .map_err(|e| anyhow::anyhow!("not a readable spreadsheet: {e}"))?;
                let sheet = wb
                    .sheet_names()
                    .first()
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("the workbook has no sheet"))?;
                let range = wb
                    .worksheet_range(&sheet)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let mut rows = range.rows();
                let headers: Vec<String> = rows
                    .next()
                    .map(|r| r.iter().map(cell).collect())
                    .unwrap_or_default();
                let targets = self.targets(&headers)?;
                for (i, r) in rows.enumerate() {
                    self.push(i as i64 + 2, r.iter().map(cell).collect(), &targets)?;
                }
            }
        }
        self.send()
    }
}

/// Writes the batches, keeping the job's progress. Batches hold phones new to the file, so
/// on PostgreSQL three of them are written at once, one connection and task each (a single
/// connection kept the database on one core, and the machine 40% idle); whatever depends on
/// order — rows repeating an earlier batch's phone, errors, progress — follows in file order.
struct Writer<'a> {
    db: &'a Db,
    clock: &'a dyn Clock,
    tenant: TenantId,
    id: ImportId,
    extra_tags: &'a [String],
    update: bool,
    progress: Progress,
    /// Rows the plan's limit refused (the reader's count does not know them).
    refused: i64,
    /// The plan's contact limit: the import stops when it is reached.
    max_contacts: Option<i64>,
    /// Every phone of the batches finished so far was new: the next batch's likely are too.
    fresh: bool,
    /// Phones of contacts the import left alone (`skip`), as numbers: their later rows too.
    kept: HashSet<u64>,
}

/// A batch whose new phones are written, with what came of them.
struct Written {
    batch: Batch,
    outcome: pinglayer_store::imports::BatchOutcome,
    /// The plan's limit, when this batch reached it.
    stop: Option<i64>,
    now: chrono::DateTime<chrono::Utc>,
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A batch being written, in its own task.
type Writing = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<Written>> + Send>>;

impl Writer<'_> {
    /// How many batches may be written at once: one on SQLite (one writer at a time anyway),
    /// and one under a plan's contact limit (each batch must count what the last created).
    fn lanes(&self) -> usize {
        match (self.db.backend(), self.max_contacts) {
            (pinglayer_store::Backend::Postgres, None) => 3,
            _ => 1,
        }
    }

    /// Writes the batch's rows with phones new to the file: independent of every other batch.
    fn write_new(&self, batch: Batch, stop: Option<i64>) -> Writing {
        let (db, tenant, update, tags, now) = (
            self.db.clone(),
            self.tenant,
            self.update,
            self.extra_tags.to_vec(),
            self.clock.now(),
        );
        let expect = if self.fresh {
            Expect::New
        } else {
            Expect::Unknown
        };
        // A task of its own: the lanes' client work (encoding rows, reading answers) runs on
        // whichever core is free, instead of in turn on the one task that waits for them all.
        let task = tokio::spawn(async move {
            let outcome = db
                .upsert_contacts(tenant, &batch.rows, update, &tags, now, expect)
                .await?;
            Ok(Written {
                batch,
                outcome,
                stop,
                now,
            })
        });
        // An import that stops (a failed batch, the plan's limit) stops its other batches.
        let abort = AbortOnDrop(task.abort_handle());
        Box::pin(async move {
            let _abort = abort;
            task.await?
        })
    }

    /// The rest of a written batch, in file order.
    async fn finish(&mut self, w: Written) -> anyhow::Result<()> {
        let Written {
            batch: b,
            outcome: o,
            stop,
            now,
        } = w;
        self.fresh = o.created == b.rows.len() as i64;
        self.kept
            .extend(o.skipped_phones.iter().map(|p| phone_number(p)));
        // Rows repeating a phone of an earlier batch merge into what that batch wrote, or are
        // skipped with it when it was a contact the import was asked to leave alone.
        let (later_skipped, later): (Vec<ImportRow>, Vec<ImportRow>) = b
            .later
            .into_iter()
            .partition(|r| self.kept.contains(&phone_number(&r.phone)));
        let repeats = later.len() as i64;
        self.progress.skipped += later_skipped.len() as i64;
        self.db
            .upsert_contacts(
                self.tenant,
                &dedupe(later),
                true,
                self.extra_tags,
                now,
                Expect::Unknown,
            )
            .await?;
        self.progress.total = b.total;
        self.progress.failed = b.failed + self.refused;
        self.progress.created += o.created;
        self.progress.updated += o.updated;
        self.progress.merged += b.merged + repeats;
        self.progress.skipped += o.skipped;
        self.progress.processed = self.progress.total;
        if !b.errors.is_empty() {
            self.db
                .add_import_errors(self.tenant, self.id, &b.errors)
                .await?;
        }
        self.db
            .import_progress(self.tenant, self.id, "running", self.progress, None, now)
            .await?;
        match stop {
            Some(max) => anyhow::bail!(
                "plan_limit_reached: the plan allows {max} contacts; the import stopped there (rows not imported are in errors.csv)"
            ),
            None => Ok(()),
        }
    }

    /// Drops the new contacts of the batch that would pass the plan's contact limit (they go
    /// to the errors); returns the limit when that happened, so the import stops.
    async fn within_plan(
        &mut self,
        b: &mut Batch,
        now: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<Option<i64>> {
        let Some(max) = self.max_contacts else {
            return Ok(None);
        };
        let have = self.db.count_of(self.tenant, Limit::Contacts, now).await?;
        if have + b.rows.len() as i64 <= max {
            return Ok(None);
        }
        let phones: Vec<&str> = b.rows.iter().map(|r| r.phone.as_str()).collect();
        let existing = self.db.existing_phones(self.tenant, &phones).await?;
        let mut room = (max - have).max(0);
        let mut keep = Vec::with_capacity(b.rows.len());
        let mut refused = false;
        let numbers = std::mem::take(&mut b.row_numbers);
        for (r, n) in std::mem::take(&mut b.rows).into_iter().zip(numbers) {
            if existing.contains(&r.phone) {
                keep.push(r);
            } else if room > 0 {
                room -= 1;
                keep.push(r);
            } else {
                refused = true;
                self.refused += 1;
                b.errors.push((
                    n,
                    format!("contact_limit_reached: the plan allows {max} contacts"),
                    r.phone,
                ));
            }
        }
        b.rows = keep;
        Ok(refused.then_some(max))
    }
}

fn merge(mut a: ImportRow, b: ImportRow) -> ImportRow {
    a.name = b.name.or(a.name);
    a.email = b.email.or(a.email);
    a.language = b.language.or(a.language);
    a.birthday = b.birthday.or(a.birthday);
    a.attributes.extend(b.attributes);
    a.tags.extend(b.tags);
    a
}

fn dedupe(rows: Vec<ImportRow>) -> Vec<ImportRow> {
    let mut by: Vec<ImportRow> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for r in rows {
        match at.get(&r.phone) {
            Some(i) => by[*i] = merge(by[*i].clone(), r),
            None => {
                at.insert(r.phone.clone(), by.len());
                by.push(r);
            }
        }
    }
    by
}

/// Runs an import to its end, recording progress, errors and the outcome on the job.
pub async fn run(
    db: &Db,
    clock: &dyn Clock,
    tenant: TenantId,
    id: ImportId,
    path: &Path,
    format: Format,
    opts: ImportOptions,
) {
    let result = import(db, clock, tenant, id, path, format, opts).await;
    let now = clock.now();
    let outcome = match result {
        Ok(p) => {
            db.import_progress(tenant, id, "completed", p, None, now)
                .await
        }
        Err((p, e)) => {
            tracing::warn!(%tenant, import_id = %id, error = %e, "import failed");
            db.import_progress(tenant, id, "failed", p, Some(&e.to_string()), now)
                .await
        }
    };
    if let Err(e) = outcome {
        tracing::error!(error = %e, "could not record an import's outcome");
    }
    let _ = std::fs::remove_file(path);
}

async fn import(
    db: &Db,
    clock: &dyn Clock,
    tenant: TenantId,
    id: ImportId,
    path: &Path,
    format: Format,
    opts: ImportOptions,
) -> Result<Progress, (Progress, anyhow::Error)> {
    let fail = |e: anyhow::Error| (Progress::default(), e);
    let update = opts.on_duplicate.as_deref() == Some("update");
    let extra_tags = opts
        .tags
        .iter()
        .map(|t| tag(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(anyhow::anyhow!("{e}")))?;
    db.import_progress(
        tenant,
        id,
        "running",
        Progress::default(),
        None,
        clock.now(),
    )
    .await
    .map_err(|e| fail(e.into()))?;
    let max_contacts = db
        .current_plan(tenant, clock.now())
        .await
        .map_err(|e| fail(e.into()))?
        .and_then(|c| c.plan.max_contacts);
    let mut writer = Writer {
        db,
        clock,
        tenant,
        id,
        extra_tags: &extra_tags,
        update,
        progress: Progress::default(),
        refused: 0,
        max_contacts,
        fresh: false,
        kept: HashSet::new(),
    };
    // One batch waiting beside those being written: memory stays flat whatever the file's
    // size. A bad file (not UTF-8, no phone column) is refused by the reader before its first
    // batch.
    let (out, mut batches) = tokio::sync::mpsc::channel(1);
    let path = path.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || {
        let mut r = FileReader {
            opts: &opts,
            out,
            batch: Batch::default(),
            in_batch: HashMap::new(),
            seen: HashSet::new(),
        };
        if let Err(e) = r.read(&path, format)
            && !e.is::<WriterGone>()
        {
            let _ = r.out.blocking_send(Err(e));
        }
    });
    let lanes = writer.lanes();
    let mut writing = futures::stream::FuturesOrdered::<Writing>::new();
    let mut reading = true;
    loop {
        tokio::select! {
            // Finish what is written first: progress keeps up, and a failure stops the reading.
            biased;
            Some(written) = writing.next(), if !writing.is_empty() => {
                let written = written.map_err(|e| (writer.progress, e))?;
                writer.finish(written).await.map_err(|e| (writer.progress, e))?;
            }
            batch = batches.recv(), if reading && writing.len() < lanes => match batch {
                Some(batch) => {
                    let mut batch = batch.map_err(|e| (writer.progress, e))?;
                    let now = clock.now();
                    let stop = writer
                        .within_plan(&mut batch, now)
                        .await
                        .map_err(|e| (writer.progress, e))?;
                    writing.push_back(writer.write_new(batch, stop));
                }
                None => reading = false,
            },
            else => break,
        }
    }
    let _ = reader.await;
    Ok(writer.progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_map_to_fields() {
        let m = HashMap::from([
            ("Cell".to_string(), "phone".to_string()),
            ("Notes".to_string(), "skip".to_string()),
        ]);
        assert_eq!(target("Mobile Number", &HashMap::new()), Target::Phone);
        assert_eq!(target("Cell", &m), Target::Phone);
        assert_eq!(target("Notes", &m), Target::Skip);
        assert_eq!(target("Date of Birth", &HashMap::new()), Target::Birthday);
        assert_eq!(
            target("City Name", &HashMap::new()),
            Target::Attribute("city_name".into())
        );
    }

    #[test]
    fn phones_become_distinct_numbers() {
        assert_eq!(phone_number("+919812345678"), 919_812_345_678);
        assert_eq!(phone_number("+999999999999999"), 999_999_999_999_999);
        assert_ne!(
            phone_number("+2348031234567"),
            phone_number("+234803123456")
        );
    }

    #[test]
    fn spreadsheet_phones_are_recovered() {
        assert_eq!(
            phone("919812345678", None).unwrap().as_str(),
            "+919812345678"
        );
        assert_eq!(
            phone("9812345678", Some("IN")).unwrap().as_str(),
            "+919812345678"
        );
        assert_eq!(
            phone("8031234567", Some("NG")).unwrap().as_str(),
            "+2348031234567"
        );
        assert!(phone("12", Some("IN")).is_err());
        assert_eq!(cell(&Data::Float(919812345678.0)), "919812345678");
    }
}
