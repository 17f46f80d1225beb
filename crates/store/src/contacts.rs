//! Contacts: a tenant's customers, with tags, consent and its history, soft deletion and
//! erasure. One phone per tenant.

use chrono::{DateTime, Utc};
use pinglayer_domain::{ConsentEventId, ContactId, PhoneE164, TenantId, contact::Consent};
use serde_json::Value;
use sqlx::types::Json;

use crate::{Db, Result, StoreError, Tx, changes::contacts_changed as changed, on_db, on_tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Contact {
    pub tenant_id: TenantId,
    pub id: ContactId,
    pub phone: String,
    pub wa_id: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub language: Option<String>,
    pub birthday: Option<String>,
    pub attributes: Json<Value>,
    pub consent: Option<String>,
    pub consent_at: Option<DateTime<Utc>>,
    pub consent_source: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_inbound_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

#[macro_export]
#[doc(hidden)]
macro_rules! contact_cols {
    () => {
        "c.tenant_id, c.id, c.phone, c.wa_id, c.name, c.email, c.language, c.birthday, c.attributes,
         c.consent, c.consent_at, c.consent_source, c.created_at, c.updated_at, c.last_inbound_at, c.deleted_at"
    };
}

/// The fields of a contact as given; `None` leaves a field as it is on update.
#[derive(Debug, Default, Clone)]
pub struct ContactFields {
    pub name: Option<String>,
    pub email: Option<String>,
    pub language: Option<String>,
    pub birthday: Option<String>,
    /// Replaces the attributes when set.
    pub attributes: Option<Value>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConsentEvent {
    pub consent: String,
    pub source: String,
    pub note: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Default, Clone)]
pub struct ContactStats {
    pub total: i64,
    pub by_consent: Vec<(String, i64)>,
    pub by_language: Vec<(String, i64)>,
    pub by_tag: Vec<(String, i64)>,
}

async fn tags_in(
    tx: &mut Tx,
    tenant: TenantId,
    contact: ContactId,
    tags: &[String],
    now: DateTime<Utc>,
) -> Result<()> {
    for t in tags {
        on_tx!(tx, c => sqlx::query(
            "insert into contact_tags (tenant_id, contact_id, tag, created_at) values ($1, $2, $3, $4) on conflict do nothing",
        )
        .bind(tenant)
        .bind(contact)
        .bind(t)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    }
    Ok(())
}

/// Sets consent and records the change (nothing is recorded when it does not change).
pub async fn set_consent_in(
    tx: &mut Tx,
    tenant: TenantId,
    contact: ContactId,
    consent: Consent,
    source: &str,
    note: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let changed = on_tx!(tx, c => sqlx::query(
        "update contacts set consent = $3, consent_at = $4, consent_source = $5, updated_at = $4
         where tenant_id = $1 and id = $2 and (consent is null or consent <> $3)",
    )
    .bind(tenant)
    .bind(contact)
    .bind(consent.as_str())
    .bind(now)
    .bind(source)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    if changed > 0 {
        on_tx!(tx, c => sqlx::query(
            "insert into consent_events (tenant_id, id, contact_id, consent, source, note, at) values ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(tenant)
        .bind(ConsentEventId::new())
        .bind(contact)
        .bind(consent.as_str())
        .bind(source)
        .bind(note)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        crate::analytics::bump(tx, tenant, consent.as_str(), None, 1, now).await?;
    }
    Ok(changed > 0)
}

impl Db {
    /// Creates a contact; a soft-deleted one with the same phone is restored with these fields.
    /// A live contact with the phone is `Conflict("contact_exists")`.
    pub async fn create_contact(
        &self,
        tenant: TenantId,
        phone: &PhoneE164,
        f: &ContactFields,
        tags: &[String],
        consent: Option<(Consent, &str)>,
        now: DateTime<Utc>,
    ) -> Result<Contact> {
        let mut tx = self.begin().await?;
        let id: Option<ContactId> = on_tx!(&mut tx, c => sqlx::query_scalar(
            "insert into contacts (tenant_id, id, phone, wa_id, name, email, language, birthday, attributes, created_at, updated_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
             on conflict (tenant_id, phone) do update set
                name = excluded.name, email = excluded.email, language = excluded.language,
                birthday = excluded.birthday, attributes = excluded.attributes,
                deleted_at = null, updated_at = excluded.updated_at
             where contacts.deleted_at is not null
             returning id",
        )
        .bind(tenant)
        .bind(ContactId::new())
        .bind(phone.as_str())
        .bind(phone.digits())
        .bind(&f.name)
        .bind(&f.email)
        .bind(&f.language)
        .bind(&f.birthday)
        .bind(Json(f.attributes.clone().unwrap_or_else(|| Value::Object(Default::default()))))
        .bind(now)
        .fetch_optional(c)
        .await)?;
        let id = id.ok_or(StoreError::Conflict("contact_exists"))?;
        crate::analytics::bump(
            &mut tx,
            tenant,
            crate::analytics::CONTACTS_CREATED,
            None,
            1,
            now,
        )
        .await?;
        tags_in(&mut tx, tenant, id, tags, now).await?;
        if let Some((c, source)) = consent {
            set_consent_in(&mut tx, tenant, id, c, source, None, now).await?;
        }
        tx.commit().await?;
        changed(tenant);
        self.contact(tenant, id).await
    }

    /// A live (not deleted) contact.
    pub async fn contact(&self, tenant: TenantId, id: ContactId) -> Result<Contact> {
        on_db!(self, p => sqlx::query_as(concat!("select ", contact_cols!(),
            " from contacts c where c.tenant_id = $1 and c.id = $2 and c.deleted_at is null"))
        .bind(tenant)
        .bind(id)
        .fetch_one(p)
        .await)
        .map_err(Into::into)
    }

    /// A contact the tenant still holds data on: live or soft-deleted, but not erased.
    pub async fn contact_held(&self, tenant: TenantId, id: ContactId) -> Result<Contact> {
        on_db!(self, p => sqlx::query_as(concat!("select ", contact_cols!(),
            " from contacts c where c.tenant_id = $1 and c.id = $2 and c.phone not like 'erased:%'"))
        .bind(tenant)
        .bind(id)
        .fetch_one(p)
        .await)
        .map_err(Into::into)
    }

    /// The live contact with this phone (E.164), if any.
    pub async fn contact_by_phone(&self, tenant: TenantId, phone: &str) -> Result<Option<Contact>> {
        on_db!(self, p => sqlx::query_as(concat!("select ", contact_cols!(),
            " from contacts c where c.tenant_id = $1 and c.phone = $2 and c.deleted_at is null"))
        .bind(tenant)
        .bind(phone)
        .fetch_optional(p)
        .await)
        .map_err(Into::into)
    }

    /// Contacts by id, deleted ones included (the dispatcher tells them apart).
    pub async fn contacts_by_ids(
        &self,
        tenant: TenantId,
        ids: &[ContactId],
    ) -> Result<Vec<Contact>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                concat!(
                    "select ",
                    contact_cols!(),
                    " from contacts c where c.tenant_id = $1 and c.id in ({})"
                ),
                marks.join(", ")
            );
            let rows: Vec<Contact> = on_db!(self, p => {
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(tenant);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.fetch_all(p).await
            })?;
            out.extend(rows);
        }
        Ok(out)
    }

    pub async fn contact_tags(
        &self,
        tenant: TenantId,
        ids: &[ContactId],
    ) -> Result<Vec<(ContactId, String)>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        on_db!(self, p => {
            let mut qb = sqlx::QueryBuilder::new("select contact_id, tag from contact_tags where tenant_id = ");
            qb.push_bind(tenant).push(" and contact_id in (");
            let mut sep = qb.separated(", ");
            for id in ids {
                sep.push_bind(*id);
            }
            // No `order by tag` here: it makes SQLite walk the tenant's whole tag index to
            // avoid a sort. Sorted below instead.
            qb.push(")");
            qb.build_query_as().fetch_all(p).await
        })
        .map(|mut rows: Vec<(ContactId, String)>| {
            rows.sort_by(|a, b| a.1.cmp(&b.1));
            rows
        })
        .map_err(Into::into)
    }

    /// Updates fields (those set) and, when given, replaces the tags.
    pub async fn update_contact(
        &self,
        tenant: TenantId,
        id: ContactId,
        f: &ContactFields,
        tags: Option<&[String]>,
        now: DateTime<Utc>,
    ) -> Result<Contact> {
        let mut tx = self.begin().await?;
        let n = on_tx!(&mut tx, c => sqlx::query(
            "update contacts set name = coalesce($3, name), email = coalesce($4, email),
                language = coalesce($5, language), birthday = coalesce($6, birthday),
                attributes = coalesce($7, attributes), updated_at = $8
             where tenant_id = $1 and id = $2 and deleted_at is null",
        )
        .bind(tenant)
        .bind(id)
        .bind(&f.name)
        .bind(&f.email)
        .bind(&f.language)
        .bind(&f.birthday)
        .bind(f.attributes.clone().map(Json))
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        if let Some(tags) = tags {
            on_tx!(&mut tx, c => sqlx::query("delete from contact_tags where tenant_id = $1 and contact_id = $2")
                .bind(tenant)
                .bind(id)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
            tags_in(&mut tx, tenant, id, tags, now).await?;
        }
        tx.commit().await?;
        changed(tenant);
        self.contact(tenant, id).await
    }

    pub async fn add_tags(
        &self,
        tenant: TenantId,
        id: ContactId,
        tags: &[String],
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.contact(tenant, id).await?;
        let mut tx = self.begin().await?;
        tags_in(&mut tx, tenant, id, tags, now).await?;
        tx.commit().await?;
        changed(tenant);
        Ok(())
    }

    pub async fn remove_tag(&self, tenant: TenantId, id: ContactId, tag: &str) -> Result<()> {
        self.contact(tenant, id).await?;
        on_db!(self, p => sqlx::query("delete from contact_tags where tenant_id = $1 and contact_id = $2 and tag = $3")
            .bind(tenant)
            .bind(id)
            .bind(tag)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        changed(tenant);
        Ok(())
    }

    /// Tags with how many live contacts carry each.
    pub async fn tag_counts(&self, tenant: TenantId) -> Result<Vec<(String, i64)>> {
        on_db!(self, p => sqlx::query_as(
            "select t.tag, count(*) from contact_tags t join contacts c on c.tenant_id = t.tenant_id and c.id = t.contact_id
             where t.tenant_id = $1 and c.deleted_at is null group by t.tag order by count(*) desc, t.tag",
        )
        .bind(tenant)
        .fetch_all(p)
        .await)
        .map_err(Into::into)
    }

    pub async fn set_consent(
        &self,
        tenant: TenantId,
        id: ContactId,
        consent: Consent,
        source: &str,
        note: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.contact(tenant, id).await?;
        let mut tx = self.begin().await?;
        let moved = set_consent_in(&mut tx, tenant, id, consent, source, note, now).await?;
        tx.commit().await?;
        changed(tenant);
        Ok(moved)
    }

    pub async fn consent_history(
        &self,
        tenant: TenantId,
        id: ContactId,
    ) -> Result<Vec<ConsentEvent>> {
        on_db!(self, p => sqlx::query_as(
            "select consent, source, note, at from consent_events where tenant_id = $1 and contact_id = $2 order by id",
        )
        .bind(tenant)
        .bind(id)
        .fetch_all(p)
        .await)
        .map_err(Into::into)
    }

    /// Hides a contact; importing or creating the phone again restores it.
    pub async fn soft_delete_contact(
        &self,
        tenant: TenantId,
        id: ContactId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let n = on_db!(self, p => sqlx::query(
            "update contacts set deleted_at = $3, updated_at = $3 where tenant_id = $1 and id = $2 and deleted_at is null",
        )
        .bind(tenant)
        .bind(id)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        changed(tenant);
        Ok(())
    }

    /// Erases a person for good (a data-protection request): their details, tags and consent
    /// history go, their messages keep only what statistics need (no content, no number), and
    /// refused import rows and processed raw webhooks that hold their number are deleted.
    pub async fn erase_contact(
        &self,
        tenant: TenantId,
        id: ContactId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let phone: Option<String> = on_tx!(&mut tx, c => sqlx::query_scalar(
            "select phone from contacts where tenant_id = $1 and id = $2 and phone not like 'erased:%'",
        )
        .bind(tenant)
        .bind(id)
        .fetch_optional(c)
        .await)?;
        let Some(phone) = phone.map(PhoneE164::from_stored) else {
            return Err(StoreError::NotFound);
        };
        let n = on_tx!(&mut tx, c => sqlx::query(
            "update contacts set phone = $3, wa_id = null, name = null, email = null, language = null,
                birthday = null, attributes = $4, consent = null, consent_at = null, consent_source = null,
                deleted_at = $5, updated_at = $5
             where tenant_id = $1 and id = $2 and phone not like 'erased:%'",
        )
        .bind(tenant)
        .bind(id)
        .bind(format!("erased:{id}"))
        .bind(Json(Value::Object(Default::default())))
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        for sql in [
            "delete from contact_tags where tenant_id = $1 and contact_id = $2",
            "delete from consent_events where tenant_id = $1 and contact_id = $2",
            "update messages set content = '{}', preview = '[erased]', to_phone = 'erased' where tenant_id = $1 and contact_id = $2",
            "update conversations set last_preview = '[erased]' where tenant_id = $1 and contact_id = $2",
            // Their smart-link clicks stay counted, without where and on what they clicked.
            "update link_clicks set ip = null, user_agent = null, referrer = null, country = null
             where tenant_id = $1 and contact_id = $2",
        ] {
            on_tx!(&mut tx, c => sqlx::query(sql).bind(tenant).bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        }
        // Rows an import refused keep the raw line, which may hold the number in any notation:
        // compared without the separators people write numbers with.
        on_tx!(&mut tx, c => sqlx::query(
            "delete from import_errors where tenant_id = $1
               and (replace(replace(replace(replace(replace(raw, ' ', ''), '-', ''), '(', ''), ')', ''), '.', '') like $2
                 or replace(replace(replace(replace(replace(raw, ' ', ''), '-', ''), '(', ''), ')', ''), '.', '') like $3)",
        )
        .bind(tenant)
        .bind(format!("%{}%", phone.digits()))
        .bind(format!("%{}%", phone.national_digits()))
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        // Meta's raw payloads name the person by `wa_id`/`from`/`recipient_id` (quoted digits).
        // Pending ones are still to be applied; they go with the retention purge once processed.
        on_tx!(&mut tx, c => sqlx::query(
            "delete from webhook_events where status <> 'pending' and body like $1",
        )
        .bind(format!("%\"{}\"%", phone.digits()))
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        tx.commit().await?;
        changed(tenant);
        Ok(())
    }

    pub async fn contact_stats(&self, tenant: TenantId) -> Result<ContactStats> {
        let total: i64 = on_db!(self, p => sqlx::query_scalar("select count(*) from contacts where tenant_id = $1 and deleted_at is null")
            .bind(tenant)
            .fetch_one(p)
            .await)?;
        let by_consent = on_db!(self, p => sqlx::query_as(
            "select coalesce(consent, 'unknown'), count(*) from contacts where tenant_id = $1 and deleted_at is null
             group by coalesce(consent, 'unknown') order by 1",
        )
        .bind(tenant)
        .fetch_all(p)
        .await)?;
        let by_language = on_db!(self, p => sqlx::query_as(
            "select coalesce(language, 'unknown'), count(*) from contacts where tenant_id = $1 and deleted_at is null
             group by coalesce(language, 'unknown') order by count(*) desc, 1",
        )
        .bind(tenant)
        .fetch_all(p)
        .await)?;
        Ok(ContactStats {
            total,
            by_consent,
            by_language,
            by_tag: self.tag_counts(tenant).await?,
        })
    }
}

/// A tenant's own consent keyword, if `word` (normalised) is one: (consent, its language).
pub async fn custom_keyword_in(
    tx: &mut Tx,
    tenant: TenantId,
    word: &str,
) -> Result<Option<(String, Option<String>)>> {
    Ok(
        on_tx!(tx, c => sqlx::query_as("select consent, language from consent_keywords where tenant_id = $1 and keyword = $2")
        .bind(tenant)
        .bind(word)
        .fetch_optional(c)
        .await)?,
    )
}

/// The text confirming a consent change to a contact: in the contact's language, else the
/// keyword's, else English; for each, the tenant's own text before the built-in one.
pub async fn confirmation_in(
    tx: &mut Tx,
    tenant: TenantId,
    contact: ContactId,
    consent: Consent,
    keyword_language: Option<&str>,
) -> Result<String> {
    let contact_language: Option<String> = on_tx!(tx, c => sqlx::query_scalar(
        "select language from contacts where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(contact)
    .fetch_optional(c)
    .await)?
    .flatten();
    let own: Vec<(String, String)> = on_tx!(tx, c => sqlx::query_as(
        "select language, body from consent_replies where tenant_id = $1 and consent = $2",
    )
    .bind(tenant)
    .bind(consent.as_str())
    .fetch_all(c)
    .await)?;
    for lang in [contact_language.as_deref(), keyword_language, Some("en")]
        .into_iter()
        .flatten()
    {
        if let Some((_, body)) = own.iter().find(|(l, _)| l == lang) {
            return Ok(body.clone());
        }
        if let Some(b) = pinglayer_domain::contact::builtin_confirmation(lang, consent) {
            return Ok(b.to_string());
        }
    }
    unreachable!("English has a built-in confirmation")
}

/// A tenant's own consent settings, as stored.
#[derive(Debug, Clone, Default)]
pub struct ConsentSettings {
    /// (keyword, consent, language), alphabetical.
    pub keywords: Vec<(String, String, Option<String>)>,
    /// (language, consent, text).
    pub replies: Vec<(String, String, String)>,
}

impl Db {
    pub async fn consent_settings(&self, tenant: TenantId) -> Result<ConsentSettings> {
        let keywords = on_db!(self, p => sqlx::query_as(
            "select keyword, consent, language from consent_keywords where tenant_id = $1 order by keyword",
        )
        .bind(tenant)
        .fetch_all(p)
        .await)?;
        let replies = on_db!(self, p => sqlx::query_as(
            "select language, consent, body from consent_replies where tenant_id = $1 order by language, consent",
        )
        .bind(tenant)
        .fetch_all(p)
        .await)?;
        Ok(ConsentSettings { keywords, replies })
    }

    /// Replaces a tenant's own keywords and confirmations (already normalised and checked).
    pub async fn set_consent_settings(
        &self,
        tenant: TenantId,
        settings: &ConsentSettings,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        for sql in [
            "delete from consent_keywords where tenant_id = $1",
            "delete from consent_replies where tenant_id = $1",
        ] {
            on_tx!(&mut tx, c => sqlx::query(sql).bind(tenant).execute(c).await.map(|r| r.rows_affected()))?;
        }
        for (w, consent, language) in &settings.keywords {
            on_tx!(&mut tx, c => sqlx::query(
                "insert into consent_keywords (tenant_id, keyword, consent, language, created_at) values ($1, $2, $3, $4, $5)",
            )
            .bind(tenant)
            .bind(w)
            .bind(consent)
            .bind(language)
            .bind(now)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        }
        for (language, consent, body) in &settings.replies {
            on_tx!(&mut tx, c => sqlx::query(
                "insert into consent_replies (tenant_id, language, consent, body, created_at) values ($1, $2, $3, $4, $5)",
            )
            .bind(tenant)
            .bind(language)
            .bind(consent)
            .bind(body)
            .bind(now)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        }
        tx.commit().await
    }
}

impl Db {
    /// Which of these phones belong to a live contact of the tenant.
    pub async fn existing_phones(
        &self,
        tenant: TenantId,
        phones: &[&str],
    ) -> Result<std::collections::HashSet<String>> {
        let mut out = std::collections::HashSet::new();
        for chunk in phones.chunks(500) {
            let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "select phone from contacts where tenant_id = $1 and deleted_at is null and phone in ({})",
                marks.join(", ")
            );
            let rows: Vec<String> = on_db!(self, p => {
                let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone())).bind(tenant);
                for ph in chunk {
                    q = q.bind(*ph);
                }
                q.fetch_all(p).await
            })?;
            out.extend(rows);
        }
        Ok(out)
    }
}
