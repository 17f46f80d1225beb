//! Message templates and their language versions, as known from Meta (create, sync, webhooks).

use chrono::{DateTime, Utc};
use pinglayer_domain::{PageRequest, TemplateId, TenantId};

use crate::{Db, Result, StoreError, Tx, conflict_on_unique, on_db, on_tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Template {
    pub tenant_id: TenantId,
    pub id: TemplateId,
    pub waba_id: String,
    pub name: String,
    pub category: String,
    pub parameter_format: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TemplateLanguage {
    pub tenant_id: TenantId,
    pub template_id: TemplateId,
    pub language: String,
    pub status: String,
    /// The components as JSON text (Meta's creation shape).
    pub components: String,
    pub meta_id: Option<String>,
    pub reason: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// What identifies a template and how it is defined, apart from its language versions.
pub struct TemplateHead<'a> {
    pub tenant: TenantId,
    pub waba_id: &'a str,
    pub name: &'a str,
    pub category: &'a str,
    pub parameter_format: &'a str,
}

/// A review outcome from Meta (`message_template_status_update`).
pub struct TemplateReview<'a> {
    pub meta_id: &'a str,
    pub name: &'a str,
    pub language: &'a str,
    pub status: &'a str,
    pub reason: Option<&'a str>,
}

pub struct LanguageVersion {
    pub language: String,
    pub status: String,
    pub components: String,
    pub meta_id: Option<String>,
    pub reason: Option<String>,
}

macro_rules! tcols {
    () => {
        "tenant_id, id, waba_id, name, category, parameter_format, created_at, updated_at"
    };
}
macro_rules! lcols {
    () => {
        "tenant_id, template_id, language, status, components, meta_id, reason, updated_at"
    };
}

async fn upsert_language(
    tx: &mut Tx,
    tenant: TenantId,
    template: TemplateId,
    v: &LanguageVersion,
    now: DateTime<Utc>,
) -> Result<()> {
    on_tx!(tx, c => sqlx::query(
        "insert into template_languages (tenant_id, template_id, language, status, components, meta_id, reason, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8)
         on conflict (tenant_id, template_id, language) do update set
            status = excluded.status, components = excluded.components,
            meta_id = coalesce(excluded.meta_id, template_languages.meta_id),
            reason = excluded.reason, updated_at = excluded.updated_at",
    )
    .bind(tenant)
    .bind(template)
    .bind(&v.language)
    .bind(&v.status)
    .bind(&v.components)
    .bind(&v.meta_id)
    .bind(&v.reason)
    .bind(now)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

impl Db {
    /// Creates a template with its language versions; a name already used in the WABA is a
    /// `Conflict("template_name")`.
    pub async fn create_template(
        &self,
        head: &TemplateHead<'_>,
        versions: &[LanguageVersion],
        now: DateTime<Utc>,
    ) -> Result<TemplateId> {
        self.put_template(head, versions, false, now).await
    }

    /// Brings a template (found by WABA and name, created if new) in line with what Meta says.
    pub async fn sync_template(
        &self,
        head: &TemplateHead<'_>,
        versions: &[LanguageVersion],
        now: DateTime<Utc>,
    ) -> Result<TemplateId> {
        self.put_template(head, versions, true, now).await
    }

    /// Writes a template and its versions in one transaction. A name already used in the WABA
    /// is updated when `update` (sync), else refused with `Conflict("template_name")` (create).
    async fn put_template(
        &self,
        head: &TemplateHead<'_>,
        versions: &[LanguageVersion],
        update: bool,
        now: DateTime<Utc>,
    ) -> Result<TemplateId> {
        let on_conflict = if update {
            "on conflict (tenant_id, waba_id, name) do update set
                category = excluded.category, parameter_format = excluded.parameter_format,
                updated_at = excluded.updated_at"
        } else {
            ""
        };
        let sql = sqlx::AssertSqlSafe(format!(
            "insert into templates (tenant_id, id, waba_id, name, category, parameter_format, created_at, updated_at)
             values ($1, $2, $3, $4, $5, $6, $7, $7) {on_conflict} returning id"
        ));
        let mut tx = self.begin().await?;
        let id: TemplateId = on_tx!(&mut tx, c => sqlx::query_scalar(sql)
            .bind(head.tenant)
            .bind(TemplateId::new())
            .bind(head.waba_id)
            .bind(head.name)
            .bind(head.category)
            .bind(head.parameter_format)
            .bind(now)
            .fetch_one(c)
            .await)
        .map_err(conflict_on_unique("template_name"))?;
        for v in versions {
            upsert_language(&mut tx, head.tenant, id, v, now).await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    pub async fn list_templates(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Vec<(Template, Vec<TemplateLanguage>)>> {
        let templates: Vec<Template> = on_db!(self, p => sqlx::query_as(concat!("select ", tcols!(),
            " from templates where tenant_id = $1 and ($2 is null or id > $2) order by id limit $3"))
        .bind(tenant)
        .bind(page.after.map(|c| c.0))
        .bind(page.fetch_limit())
        .fetch_all(p)
        .await)?;
        let Some(first) = templates.first() else {
            return Ok(vec![]);
        };
        let last = templates.last().expect("non-empty");
        let langs: Vec<TemplateLanguage> = on_db!(self, p => sqlx::query_as(concat!("select ", lcols!(),
            " from template_languages where tenant_id = $1 and template_id >= $2 and template_id <= $3
              order by template_id, language"))
        .bind(tenant)
        .bind(first.id)
        .bind(last.id)
        .fetch_all(p)
        .await)?;
        Ok(templates
            .into_iter()
            .map(|t| {
                let mine = langs
                    .iter()
                    .filter(|l| l.template_id == t.id)
                    .cloned()
                    .collect();
                (t, mine)
            })
            .collect())
    }

    pub async fn template(
        &self,
        tenant: TenantId,
        id: TemplateId,
    ) -> Result<(Template, Vec<TemplateLanguage>)> {
        let t: Template = on_db!(self, p => sqlx::query_as(concat!("select ", tcols!(),
            " from templates where tenant_id = $1 and id = $2"))
        .bind(tenant)
        .bind(id)
        .fetch_one(p)
        .await)?;
        let langs = on_db!(self, p => sqlx::query_as(concat!("select ", lcols!(),
            " from template_languages where tenant_id = $1 and template_id = $2 order by language"))
        .bind(tenant)
        .bind(id)
        .fetch_all(p)
        .await)?;
        Ok((t, langs))
    }

    /// A template and all its language versions, by name.
    pub async fn template_named(
        &self,
        tenant: TenantId,
        name: &str,
    ) -> Result<Option<(Template, Vec<TemplateLanguage>)>> {
        let t: Option<Template> = on_db!(self, p => sqlx::query_as(concat!("select ", tcols!(),
            " from templates where tenant_id = $1 and name = $2 order by id limit 1"))
        .bind(tenant)
        .bind(name)
        .fetch_optional(p)
        .await)?;
        let Some(t) = t else { return Ok(None) };
        Ok(Some(self.template(tenant, t.id).await?))
    }

    /// A template version by name and language, for sending.
    pub async fn template_version(
        &self,
        tenant: TenantId,
        name: &str,
        language: &str,
    ) -> Result<Option<(Template, TemplateLanguage)>> {
        let t: Option<Template> = on_db!(self, p => sqlx::query_as(concat!("select ", tcols!(),
            " from templates where tenant_id = $1 and name = $2 order by id limit 1"))
        .bind(tenant)
        .bind(name)
        .fetch_optional(p)
        .await)?;
        let Some(t) = t else { return Ok(None) };
        let l: Option<TemplateLanguage> = on_db!(self, p => sqlx::query_as(concat!("select ", lcols!(),
            " from template_languages where tenant_id = $1 and template_id = $2 and language = $3"))
        .bind(tenant)
        .bind(t.id)
        .bind(language)
        .fetch_optional(p)
        .await)?;
        Ok(l.map(|l| (t, l)))
    }

    pub async fn update_template_category(
        &self,
        tenant: TenantId,
        id: TemplateId,
        category: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let n = on_db!(self, p => sqlx::query("update templates set category = $3, updated_at = $4 where tenant_id = $1 and id = $2")
            .bind(tenant)
            .bind(id)
            .bind(category)
            .bind(now)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub async fn put_template_language(
        &self,
        tenant: TenantId,
        id: TemplateId,
        v: &LanguageVersion,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        upsert_language(&mut tx, tenant, id, v, now).await?;
        tx.commit().await
    }

    pub async fn delete_template(&self, tenant: TenantId, id: TemplateId) -> Result<()> {
        let n = on_db!(self, p => sqlx::query("delete from templates where tenant_id = $1 and id = $2")
            .bind(tenant)
            .bind(id)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// A `message_template_status_update`: moves the version with Meta id `meta_id` in one of
    /// `tenants` (those holding the WABA the webhook names). Returns how many versions moved.
    pub async fn set_template_status(
        &self,
        tenants: &[TenantId],
        review: &TemplateReview<'_>,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let TemplateReview {
            meta_id,
            name,
            language,
            status,
            reason,
        } = *review;
        let mut moved = 0;
        for tenant in tenants {
            moved += on_db!(self, p => sqlx::query(
                "update template_languages set status = $3, reason = $4, updated_at = $5, meta_id = coalesce(meta_id, $2)
                 where tenant_id = $1 and (meta_id = $2 or (meta_id is null and language = $7 and template_id in
                    (select id from templates where tenant_id = $1 and name = $6)))",
            )
            .bind(tenant)
            .bind(meta_id)
            .bind(status)
            .bind(reason)
            .bind(now)
            .bind(name)
            .bind(language)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        }
        Ok(moved)
    }
}
