//! Import jobs and the batched contact upsert they run.

use chrono::{DateTime, Utc};
use pinglayer_domain::{ContactId, ImportId, TenantId};
use serde_json::Value;
use std::collections::HashMap;

use crate::{Db, Result, StoreError, Tx, on_db};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Import {
    pub tenant_id: TenantId,
    pub id: ImportId,
    pub status: String,
    pub filename: String,
    pub format: String,
    pub options: String,
    pub total: i64,
    pub processed: i64,
    pub created: i64,
    pub updated: i64,
    pub skipped: i64,
    pub failed: i64,
    pub merged: i64,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

macro_rules! icols {
    () => {
        "tenant_id, id, status, filename, format, options, total, processed, created, updated, skipped, failed, merged, error, created_at, started_at, finished_at"
    };
}

/// One parsed row, ready to store.
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub phone: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub language: Option<String>,
    pub birthday: Option<String>,
    pub attributes: serde_json::Map<String, Value>,
    pub tags: Vec<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    pub created: i64,
    pub updated: i64,
    pub skipped: i64,
    /// The phones skipped (known to the tenant, and `skip` asked for): a later row of the
    /// file with one of them is skipped too, not merged into the contact.
    pub skipped_phones: Vec<String>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Progress {
    pub total: i64,
    pub processed: i64,
    pub created: i64,
    pub updated: i64,
    pub skipped: i64,
    pub failed: i64,
    /// Rows repeating a phone seen earlier in the file, merged into that row's contact.
    pub merged: i64,
}

impl Db {
    pub async fn create_import(
        &self,
        tenant: TenantId,
        filename: &str,
        format: &str,
        options: &Value,
        now: DateTime<Utc>,
    ) -> Result<Import> {
        on_db!(self, p => sqlx::query_as(concat!(
            "insert into imports (tenant_id, id, status, filename, format, options, created_at)
             values ($1, $2, 'queued', $3, $4, $5, $6) returning ", icols!()))
        .bind(tenant)
        .bind(ImportId::new())
        .bind(filename)
        .bind(format)
        .bind(options.to_string())
        .bind(now)
        .fetch_one(p)
        .await)
        .map_err(Into::into)
    }

    /// Marks failed the imports whose runner has written nothing since `silent_since` (their
    /// process died or restarted mid-file; a live runner writes after every batch). What they
    /// wrote stays; importing the file again with `skip` or `update` completes it.
    pub async fn fail_interrupted_imports(
        &self,
        silent_since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        on_db!(self, p => sqlx::query(
            "update imports set status = 'failed', finished_at = $2,
                error = 'interrupted: the import stopped mid-file (its process ended); the rows counted were written, import the file again to finish'
             where status in ('queued', 'running') and coalesce(heartbeat_at, created_at) < $1",
        )
        .bind(silent_since)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(Into::into)
    }

    pub async fn import(&self, tenant: TenantId, id: ImportId) -> Result<Import> {
        on_db!(self, p => sqlx::query_as(concat!("select ", icols!(), " from imports where tenant_id = $1 and id = $2"))
            .bind(tenant)
            .bind(id)
            .fetch_one(p)
            .await)
        .map_err(Into::into)
    }

    pub async fn import_progress(
        &self,
        tenant: TenantId,
        id: ImportId,
        status: &str,
        p: Progress,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let done = matches!(status, "completed" | "failed");
        on_db!(self, db => sqlx::query(
            "update imports set status = $3, total = $4, processed = $5, created = $6, updated = $7, skipped = $8,
                failed = $9, merged = $13, error = coalesce($10, error), started_at = coalesce(started_at, $11),
                heartbeat_at = $11,
                finished_at = case when $12 then $11 else finished_at end
             where tenant_id = $1 and id = $2",
        )
        .bind(tenant)
        .bind(id)
        .bind(status)
        .bind(p.total)
        .bind(p.processed)
        .bind(p.created)
        .bind(p.updated)
        .bind(p.skipped)
        .bind(p.failed)
        .bind(error)
        .bind(now)
        .bind(done)
        .bind(p.merged)
        .execute(db)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn add_import_errors(
        &self,
        tenant: TenantId,
        id: ImportId,
        errors: &[(i64, String, String)],
    ) -> Result<()> {
        for chunk in errors.chunks(500) {
            on_db!(self, p => {
                let mut qb = sqlx::QueryBuilder::new("insert into import_errors (tenant_id, import_id, row_number, reason, raw) ");
                qb.push_values(chunk, |mut b, (row, reason, raw)| {
                    b.push_bind(tenant).push_bind(id).push_bind(*row).push_bind(reason.clone()).push_bind(raw.clone());
                });
                qb.push(" on conflict do nothing");
                qb.build().execute(p).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }

    pub async fn import_errors(
        &self,
        tenant: TenantId,
        id: ImportId,
    ) -> Result<Vec<(i64, String, String)>> {
        on_db!(self, p => sqlx::query_as(
            "select row_number, reason, raw from import_errors where tenant_id = $1 and import_id = $2 order by row_number",
        )
        .bind(tenant)
        .bind(id)
        .fetch_all(p)
        .await)
        .map_err(Into::into)
    }

    /// Upserts a batch of rows (phones unique within the batch) in one transaction: new phones
    /// are inserted, hidden contacts restored, existing ones updated (`update`) or left alone.
    pub async fn upsert_contacts(
        &self,
        tenant: TenantId,
        rows: &[ImportRow],
        update: bool,
        extra_tags: &[String],
        now: DateTime<Utc>,
        expect: Expect,
    ) -> Result<BatchOutcome> {
        // The batch's new phones are inserted plainly: checking each for a conflict first
        // cost PostgreSQL a tenth of its time, for a race (another writer adding one of these
        // phones since we looked) that almost never happens. When it does, the unique index
        // refuses the batch, and it is written again the careful way.
        let mut inserts = match expect {
            Expect::New => Inserts::Blind,
            Expect::Unknown => Inserts::Plain,
        };
        loop {
            match self
                .try_upsert_contacts(tenant, rows, update, extra_tags, now, inserts)
                .await
            {
                Err(StoreError::Conflict(_)) if !matches!(inserts, Inserts::Checked) => {
                    inserts = Inserts::Checked
                }
                other => return other,
            }
        }
    }

    async fn try_upsert_contacts(
        &self,
        tenant: TenantId,
        rows: &[ImportRow],
        update: bool,
        extra_tags: &[String],
        now: DateTime<Utc>,
        inserts: Inserts,
    ) -> Result<BatchOutcome> {
        let mut out = BatchOutcome::default();
        if rows.is_empty() {
            return Ok(out);
        }
        let on_conflict = match inserts {
            Inserts::Checked => " on conflict (tenant_id, phone) do nothing",
            Inserts::Blind | Inserts::Plain => "",
        };
        let mut tx = self.begin().await?;
        tx.keyed_plans().await?;
        // A batch of a file that has been all new so far is copied in without looking its
        // phones up (5,000 index probes that find nothing). Should one exist after all, the
        // unique index refuses the copy, the savepoint undoes it, and the batch takes the
        // usual road.
        let mut blind = None;
        if let (Tx::Postgres(t), Inserts::Blind) = (&mut tx, inserts) {
            sqlx::query("savepoint fresh").execute(&mut **t).await?;
            let all: Vec<&ImportRow> = rows.iter().collect();
            match copy_contacts(t, tenant, &all, now).await {
                Ok(inserted) => blind = Some(inserted),
                Err(StoreError::Conflict(_)) => {
                    sqlx::query("rollback to savepoint fresh")
                        .execute(&mut **t)
                        .await?;
                }
                Err(e) => return Err(e),
            }
        }
        // phone → (id, hidden?), for every row once the new ones are in.
        let (mut ids, new, mut old): (_, Vec<&ImportRow>, Vec<&ImportRow>) = if blind.is_some() {
            (HashMap::new(), rows.iter().collect(), Vec::new())
        } else {
            let phones: Vec<&str> = rows.iter().map(|r| r.phone.as_str()).collect();
            let ids = phones_in(&mut tx, tenant, &phones).await?;
            let (new, old) = rows.iter().partition(|r| !ids.contains_key(&r.phone));
            (ids, new, old)
        };
        // PostgreSQL takes each column as one array (one statement, planned once per batch);
        // SQLite a VALUES list. Both return what they inserted.
        let inserted: Vec<(String, ContactId)> = match &mut tx {
            _ if blind.is_some() => blind.take().unwrap_or_default(),
            Tx::Postgres(t) if !new.is_empty() && !matches!(inserts, Inserts::Checked) => {
                copy_contacts(t, tenant, &new, now).await?
            }
            // The careful road, after a race: each row checked, what went in returned.
            Tx::Postgres(t) if !new.is_empty() => {
                sqlx::query_as(
                    "insert into contacts (tenant_id, id, phone, wa_id, name, email, language, birthday, attributes, created_at, updated_at)
                     select $1, v.*, $10, $10 from unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[]::jsonb[]) as v
                     on conflict (tenant_id, phone) do nothing returning phone, id",
                )
                .bind(tenant)
                .bind(new.iter().map(|_| ContactId::new().0).collect::<Vec<_>>())
                .bind(new.iter().map(|r| r.phone.as_str()).collect::<Vec<_>>())
                .bind(new.iter().map(|r| r.phone.trim_start_matches('+')).collect::<Vec<_>>())
                .bind(new.iter().map(|r| r.name.as_deref()).collect::<Vec<_>>())
                .bind(new.iter().map(|r| r.email.as_deref()).collect::<Vec<_>>())
                .bind(new.iter().map(|r| r.language.as_deref()).collect::<Vec<_>>())
                .bind(new.iter().map(|r| r.birthday.as_deref()).collect::<Vec<_>>())
                .bind(new.iter().map(|r| attributes_json(r)).collect::<Vec<_>>())
                .bind(now)
                .fetch_all(&mut **t)
                .await?
            }
            Tx::Postgres(_) => vec![],
            Tx::Sqlite(t) => {
                let mut inserted = Vec::with_capacity(new.len());
                for chunk in new.chunks(1000) {
                    let mut qb = sqlx::QueryBuilder::new(
                        "insert into contacts (tenant_id, id, phone, wa_id, name, email, language, birthday, attributes, created_at, updated_at) ",
                    );
                    qb.push_values(chunk, |mut b, r| {
                        b.push_bind(tenant)
                            .push_bind(ContactId::new())
                            .push_bind(r.phone.clone())
                            .push_bind(r.phone.trim_start_matches('+').to_string())
                            .push_bind(r.name.clone())
                            .push_bind(r.email.clone())
                            .push_bind(r.language.clone())
                            .push_bind(r.birthday.clone())
                            .push_bind(attributes_json(r))
                            .push_bind(now)
                            .push_bind(now);
                    });
                    qb.push(on_conflict).push(" returning phone, id");
                    inserted.extend(
                        qb.build_query_as::<(String, ContactId)>()
                            .fetch_all(&mut **t)
                            .await
                            .map_err(crate::conflict_on_unique("phone"))?,
                    );
                }
                inserted
            }
        };
        out.created = inserted.len() as i64;
        ids.extend(inserted.into_iter().map(|(p, id)| (p, (id, false))));
        // A phone another writer inserted meanwhile is an existing contact like the others.
        let raced: Vec<&ImportRow> = new
            .into_iter()
            .filter(|r| !ids.contains_key(&r.phone))
            .collect();
        if !raced.is_empty() {
            let phones: Vec<&str> = raced.iter().map(|r| r.phone.as_str()).collect();
            ids.extend(phones_in(&mut tx, tenant, &phones).await?);
            old.extend(raced);
        }
        // Restoring a hidden contact always takes the file's data; `update` fills in the
        // columns the file has and replaces the attributes. One statement per batch. A
        // contact the file does not change is left alone (no new row version, index entries
        // or WAL): re-importing the same list is the common case.
        let (upd, skipped): (Vec<&ImportRow>, Vec<&ImportRow>) = old
            .iter()
            .partition(|r| update || ids.get(&r.phone).is_some_and(|(_, hidden)| *hidden));
        out.skipped += skipped.len() as i64;
        out.updated += upd.len() as i64;
        out.skipped_phones
            .extend(skipped.iter().map(|r| r.phone.clone()));
        const SET: &str = "name = coalesce(v.name, contacts.name), email = coalesce(v.email, contacts.email),
            language = coalesce(v.language, contacts.language), birthday = coalesce(v.birthday, contacts.birthday),
            deleted_at = null";
        match &mut tx {
            Tx::Postgres(t) if !upd.is_empty() => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "update contacts set {SET}, attributes = v.attributes::jsonb, updated_at = $8
                     from unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
                       as v (phone, name, email, language, birthday, attributes)
                     where contacts.tenant_id = $1 and contacts.phone = v.phone and {CHANGED}",
                    CHANGED = changed("v.attributes::jsonb"),
                )))
                .bind(tenant)
                .bind(upd.iter().map(|r| r.phone.as_str()).collect::<Vec<_>>())
                .bind(upd.iter().map(|r| r.name.as_deref()).collect::<Vec<_>>())
                .bind(upd.iter().map(|r| r.email.as_deref()).collect::<Vec<_>>())
                .bind(upd.iter().map(|r| r.language.as_deref()).collect::<Vec<_>>())
                .bind(upd.iter().map(|r| r.birthday.as_deref()).collect::<Vec<_>>())
                .bind(upd.iter().map(|r| attributes_json(r)).collect::<Vec<_>>())
                .bind(now)
                .execute(&mut **t)
                .await?;
            }
            Tx::Postgres(_) => {}
            Tx::Sqlite(t) => {
                for chunk in upd.chunks(5000 / 6) {
                    let mut qb = sqlx::QueryBuilder::new(
                        "with v (phone, name, email, language, birthday, attributes) as (",
                    );
                    qb.push_values(chunk, |mut b, r| {
                        b.push_bind(r.phone.clone())
                            .push_bind(r.name.clone())
                            .push_bind(r.email.clone())
                            .push_bind(r.language.clone())
                            .push_bind(r.birthday.clone())
                            .push_bind(attributes_json(r));
                    });
                    qb.push(") update contacts set ")
                        .push(SET)
                        .push(", attributes = v.attributes, updated_at = ")
                        .push_bind(now)
                        .push(" from v where contacts.tenant_id = ")
                        .push_bind(tenant)
                        .push(" and contacts.phone = v.phone and ")
                        .push(changed("v.attributes"));
                    qb.build().execute(&mut **t).await?;
                }
            }
        }
        // Tags for every row not skipped.
        let skipped: std::collections::HashSet<&str> =
            skipped.iter().map(|r| r.phone.as_str()).collect();
        let mut tag_rows: Vec<(ContactId, &str)> = Vec::new();
        for r in rows {
            if skipped.contains(r.phone.as_str()) {
                continue;
            }
            if let Some((id, _)) = ids.get(&r.phone) {
                let first = tag_rows.len();
                for t in r.tags.iter().chain(extra_tags) {
                    if !tag_rows[first..].iter().any(|(_, x)| *x == t.as_str()) {
                        tag_rows.push((*id, t.as_str()));
                    }
                }
            }
        }
        // When every tagged contact is one this batch created (none was updated or restored),
        // none has tags yet: the tags go in plainly, without a conflict check each.
        let on_conflict = if upd.is_empty() {
            ""
        } else {
            " on conflict do nothing"
        };
        match &mut tx {
            Tx::Postgres(t) if !tag_rows.is_empty() && on_conflict.is_empty() => {
                let mut rows = copy::Rows::with_capacity(tag_rows.len() * 70);
                for (c, tg) in &tag_rows {
                    rows.row(4)
                        .uuid(tenant.0)
                        .uuid(c.0)
                        .text(Some(tg))
                        .timestamp(now);
                }
                copy::into(
                    t,
                    "copy contact_tags (tenant_id, contact_id, tag, created_at) from stdin (format binary)",
                    rows,
                )
                .await?;
            }
            Tx::Postgres(t) if !tag_rows.is_empty() => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "insert into contact_tags (tenant_id, contact_id, tag, created_at)
                     select $1, v.c, v.t, $4 from unnest($2::uuid[], $3::text[]) as v (c, t){on_conflict}",
                )))
                .bind(tenant)
                .bind(tag_rows.iter().map(|(c, _)| c.0).collect::<Vec<_>>())
                .bind(tag_rows.iter().map(|(_, t)| *t).collect::<Vec<_>>())
                .bind(now)
                .execute(&mut **t)
                .await?;
            }
            Tx::Postgres(_) => {}
            Tx::Sqlite(t) => {
                for chunk in tag_rows.chunks(1000) {
                    let mut qb = sqlx::QueryBuilder::new(
                        "insert into contact_tags (tenant_id, contact_id, tag, created_at) ",
                    );
                    qb.push_values(chunk, |mut b, (id, tg)| {
                        b.push_bind(tenant)
                            .push_bind(*id)
                            .push_bind(tg.to_string())
                            .push_bind(now);
                    });
                    qb.push(on_conflict);
                    qb.build().execute(&mut **t).await?;
                }
            }
        }
        // Last: the counter's row is shared by every batch, and its lock is held to the commit.
        crate::analytics::bump(
            &mut tx,
            tenant,
            crate::analytics::CONTACTS_CREATED,
            None,
            out.created,
            now,
        )
        .await?;
        tx.commit().await?;
        crate::changes::contacts_changed(tenant);
        Ok(out)
    }
}

/// What the caller knows of a batch's phones: most likely all new (every phone of the file so
/// far was), or nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    New,
    Unknown,
}

/// How a batch inserts its new contacts: all of them without a lookup first (PostgreSQL; any
/// known phone sends the batch on to `Plain`), plainly after a lookup (the unique index refuses
/// the whole batch if another writer added one of its phones meanwhile), or each checked for a
/// conflict.
#[derive(Clone, Copy)]
enum Inserts {
    Blind,
    Plain,
    Checked,
}

/// The update's condition: the file changes something of the contact (`v` is the batch, with
/// its attributes as `attributes`, an expression of the stored column's type).
fn changed(attributes: &str) -> String {
    format!(
        "(contacts.name, contacts.email, contacts.language, contacts.birthday, contacts.attributes, contacts.deleted_at)
           is distinct from (coalesce(v.name, contacts.name), coalesce(v.email, contacts.email),
             coalesce(v.language, contacts.language), coalesce(v.birthday, contacts.birthday), {attributes}, null)"
    )
}

/// Inserts new contacts by COPY (no plan, no arrays to unpack, the heap written a page at a
/// time); their phones and ids (ours, so nothing needs returning). A phone that exists already
/// refuses the whole copy: [`StoreError::Conflict`].
async fn copy_contacts(
    conn: &mut sqlx::PgConnection,
    tenant: TenantId,
    new: &[&ImportRow],
    now: DateTime<Utc>,
) -> Result<Vec<(String, ContactId)>> {
    let ids: Vec<(String, ContactId)> = new
        .iter()
        .map(|r| (r.phone.clone(), ContactId::new()))
        .collect();
    let mut rows = copy::Rows::with_capacity(new.len() * 200);
    for (r, (_, id)) in new.iter().zip(&ids) {
        rows.row(11)
            .uuid(tenant.0)
            .uuid(id.0)
            .text(Some(&r.phone))
            .text(Some(r.phone.trim_start_matches('+')))
            .text(r.name.as_deref())
            .text(r.email.as_deref())
            .text(r.language.as_deref())
            .text(r.birthday.as_deref())
            .jsonb(&attributes_json(r))
            .timestamp(now)
            .timestamp(now);
    }
    copy::into(
        conn,
        "copy contacts (tenant_id, id, phone, wa_id, name, email, language, birthday, attributes, created_at, updated_at)
         from stdin (format binary)",
        rows,
    )
    .await
    .map_err(crate::conflict_on_unique("phone"))?;
    Ok(ids)
}

/// PostgreSQL's `COPY … FROM STDIN` in its binary format: the server reads each value as it
/// is stored (no text to parse into uuids and timestamps, a tenth of its time as text).
mod copy {
    use chrono::{DateTime, Utc};

    /// Rows to copy, encoded as they are added.
    pub(super) struct Rows(Vec<u8>);

    impl Rows {
        pub(super) fn with_capacity(bytes: usize) -> Self {
            let mut b = Vec::with_capacity(bytes + 32);
            // Signature, flags (no OIDs), no header extension.
            b.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
            b.extend_from_slice(&0i32.to_be_bytes());
            b.extend_from_slice(&0i32.to_be_bytes());
            Rows(b)
        }

        /// Starts a row of `fields` values.
        pub(super) fn row(&mut self, fields: i16) -> &mut Self {
            self.0.extend_from_slice(&fields.to_be_bytes());
            self
        }

        fn value(&mut self, bytes: &[u8]) -> &mut Self {
            self.0
                .extend_from_slice(&(bytes.len() as i32).to_be_bytes());
            self.0.extend_from_slice(bytes);
            self
        }

        pub(super) fn uuid(&mut self, u: uuid::Uuid) -> &mut Self {
            self.value(u.as_bytes())
        }

        pub(super) fn text(&mut self, s: Option<&str>) -> &mut Self {
            match s {
                Some(s) => self.value(s.as_bytes()),
                None => {
                    self.0.extend_from_slice(&(-1i32).to_be_bytes());
                    self
                }
            }
        }

        /// `jsonb`: a version byte (1), then the JSON text.
        pub(super) fn jsonb(&mut self, json: &str) -> &mut Self {
            self.0
                .extend_from_slice(&(json.len() as i32 + 1).to_be_bytes());
            self.0.push(1);
            self.0.extend_from_slice(json.as_bytes());
            self
        }

        /// `timestamptz`: microseconds since 2000-01-01 UTC.
        pub(super) fn timestamp(&mut self, t: DateTime<Utc>) -> &mut Self {
            const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
            self.value(&(t.timestamp_micros() - PG_EPOCH_MICROS).to_be_bytes())
        }

        fn finish(mut self) -> Vec<u8> {
            self.0.extend_from_slice(&(-1i16).to_be_bytes());
            self.0
        }
    }

    /// Sends the rows through `statement` (`COPY … FROM STDIN (FORMAT binary)`); how many it
    /// wrote.
    pub(super) async fn into(
        conn: &mut sqlx::PgConnection,
        statement: &str,
        rows: Rows,
    ) -> Result<u64, sqlx::Error> {
        let mut copy = conn.copy_in_raw(statement).await?;
        if let Err(e) = copy.send(rows.finish()).await {
            copy.abort("the client could not send its rows").await?;
            return Err(e);
        }
        copy.finish().await
    }
}

/// A row's attributes as JSON text (both backends store them from text).
fn attributes_json(r: &ImportRow) -> String {
    serde_json::to_string(&r.attributes).unwrap_or_else(|_| "{}".into())
}

/// Which of these phones exist already: phone → (id, hidden?).
async fn phones_in(
    tx: &mut Tx,
    tenant: TenantId,
    phones: &[&str],
) -> Result<HashMap<String, (ContactId, bool)>> {
    type Found = Vec<(String, ContactId, Option<DateTime<Utc>>)>;
    let mut out = HashMap::new();
    // PostgreSQL takes the whole batch as one array; SQLite's variable limit wants chunks.
    let size = if matches!(tx, Tx::Postgres(_)) {
        phones.len().max(1)
    } else {
        1000
    };
    for chunk in phones.chunks(size) {
        let found: Found = match tx {
            // One array parameter, each phone looked up in the index: the lateral subquery
            // (kept whole by `offset 0`) leaves the planner no other order, even for a
            // table that grew since its statistics were taken (it scanned such a table once
            // per phone: 2.4 s a batch). `= any($2)` is no better: planning it estimates every
            // phone against the statistics, 50 ms a batch.
            Tx::Postgres(t) => {
                sqlx::query_as(
                    "select v.phone, c.id, c.deleted_at from unnest($2::text[]) as v (phone)
                     cross join lateral (select id, deleted_at from contacts
                                         where tenant_id = $1 and phone = v.phone offset 0) as c",
                )
                .bind(tenant)
                .bind(chunk)
                .fetch_all(&mut **t)
                .await?
            }
            Tx::Sqlite(t) => {
                let mut qb = sqlx::QueryBuilder::new(
                    "select phone, id, deleted_at from contacts where tenant_id = ",
                );
                qb.push_bind(tenant).push(" and phone in (");
                let mut sep = qb.separated(", ");
                for p in chunk {
                    sep.push_bind(p.to_string());
                }
                qb.push(")");
                qb.build_query_as().fetch_all(&mut **t).await?
            }
        };
        out.extend(found.into_iter().map(|(p, id, d)| (p, (id, d.is_some()))));
    }
    Ok(out)
}
