//! Connected WhatsApp numbers. Tokens and app secrets arrive here already encrypted.

use chrono::{DateTime, Utc};
use pinglayer_domain::{NumberId, PageRequest, TenantId};

use crate::{Db, Result, StoreError, conflict_on_unique, on_db};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Number {
    pub tenant_id: TenantId,
    pub id: NumberId,
    pub waba_id: String,
    pub phone_number_id: String,
    pub display_phone_number: String,
    pub access_token_enc: Vec<u8>,
    pub app_secret_enc: Option<Vec<u8>>,
    pub verify_token_hash: Option<String>,
    pub throughput_per_second: i32,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub struct NewNumber<'a> {
    pub tenant_id: TenantId,
    pub waba_id: &'a str,
    pub phone_number_id: &'a str,
    pub display_phone_number: &'a str,
    pub access_token_enc: Vec<u8>,
    pub app_secret_enc: Option<Vec<u8>>,
    pub verify_token_hash: Option<String>,
    pub throughput_per_second: i32,
}

#[derive(Default)]
pub struct NumberPatch {
    pub display_phone_number: Option<String>,
    pub access_token_enc: Option<Vec<u8>>,
    pub app_secret_enc: Option<Vec<u8>>,
    pub verify_token_hash: Option<String>,
    pub throughput_per_second: Option<i32>,
}

macro_rules! cols {
    () => {
        "tenant_id, id, waba_id, phone_number_id, display_phone_number, access_token_enc, \
         app_secret_enc, verify_token_hash, throughput_per_second, status, created_at, updated_at"
    };
}

impl Db {
    /// Connects a number. The same tenant re-adding a number it disconnected reconnects it;
    /// a number another tenant holds is a `Conflict("phone_number_id")`.
    pub async fn connect_number(&self, n: NewNumber<'_>, now: DateTime<Utc>) -> Result<Number> {
        let row: Option<Number> = on_db!(self, p => sqlx::query_as(concat!(
            "insert into whatsapp_numbers (tenant_id, id, waba_id, phone_number_id, display_phone_number,
                access_token_enc, app_secret_enc, verify_token_hash, throughput_per_second, status, created_at, updated_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'connected', $10, $10)
             on conflict (phone_number_id) do update set
                waba_id = excluded.waba_id, display_phone_number = excluded.display_phone_number,
                access_token_enc = excluded.access_token_enc, app_secret_enc = excluded.app_secret_enc,
                verify_token_hash = excluded.verify_token_hash,
                throughput_per_second = excluded.throughput_per_second,
                status = 'connected', updated_at = excluded.updated_at
             where whatsapp_numbers.tenant_id = excluded.tenant_id and whatsapp_numbers.status = 'disconnected'
             returning ", cols!()))
        .bind(n.tenant_id)
        .bind(NumberId::new())
        .bind(n.waba_id)
        .bind(n.phone_number_id)
        .bind(n.display_phone_number)
        .bind(n.access_token_enc)
        .bind(n.app_secret_enc)
        .bind(n.verify_token_hash)
        .bind(n.throughput_per_second)
        .bind(now)
        .fetch_optional(p)
        .await)
        .map_err(conflict_on_unique("phone_number_id"))?;
        row.ok_or(StoreError::Conflict("phone_number_id"))
    }

    pub async fn list_numbers(&self, tenant: TenantId, page: &PageRequest) -> Result<Vec<Number>> {
        on_db!(self, p => sqlx::query_as(concat!("select ", cols!(),
            " from whatsapp_numbers where tenant_id = $1 and status <> 'disconnected'
              and ($2 is null or id > $2) order by id limit $3"))
        .bind(tenant)
        .bind(page.after.map(|c| c.0))
        .bind(page.fetch_limit())
        .fetch_all(p)
        .await)
        .map_err(Into::into)
    }

    pub async fn number(&self, tenant: TenantId, id: NumberId) -> Result<Number> {
        on_db!(self, p => sqlx::query_as(concat!("select ", cols!(),
            " from whatsapp_numbers where tenant_id = $1 and id = $2 and status <> 'disconnected'"))
        .bind(tenant)
        .bind(id)
        .fetch_one(p)
        .await)
        .map_err(Into::into)
    }

    /// The tenant's first connected number: the sender when a request names none.
    pub async fn default_number(&self, tenant: TenantId) -> Result<Option<Number>> {
        on_db!(self, p => sqlx::query_as(concat!("select ", cols!(),
            " from whatsapp_numbers where tenant_id = $1 and status = 'connected' order by id limit 1"))
        .bind(tenant)
        .fetch_optional(p)
        .await)
        .map_err(Into::into)
    }

    /// Webhook routing: the numbers with these Meta ids, whichever tenants hold them.
    pub async fn numbers_by_phone_number_ids(&self, ids: &[String]) -> Result<Vec<Number>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let rows = on_db!(self, p => {
            let mut qb = sqlx::QueryBuilder::new(concat!("select ", cols!(), " from whatsapp_numbers where phone_number_id in ("));
            let mut sep = qb.separated(", ");
            for id in ids {
                sep.push_bind(id.as_str());
            }
            qb.push(") and status <> 'disconnected'");
            qb.build_query_as::<Number>().fetch_all(p).await
        })?;
        Ok(rows)
    }

    /// The tenants that hold numbers of this WABA (template webhooks are addressed by WABA).
    pub async fn tenants_of_waba(&self, waba_id: &str) -> Result<Vec<TenantId>> {
        on_db!(self, p => sqlx::query_scalar(
            "select distinct tenant_id from whatsapp_numbers where waba_id = $1 and status <> 'disconnected'",
        )
        .bind(waba_id)
        .fetch_all(p)
        .await)
        .map_err(Into::into)
    }

    pub async fn verify_token_known(&self, hash: &str) -> Result<bool> {
        let n: i64 = on_db!(self, p => sqlx::query_scalar(
            "select count(*) from whatsapp_numbers where verify_token_hash = $1 and status <> 'disconnected'",
        )
        .bind(hash)
        .fetch_one(p)
        .await)?;
        Ok(n > 0)
    }

    pub async fn update_number(
        &self,
        tenant: TenantId,
        id: NumberId,
        patch: NumberPatch,
        now: DateTime<Utc>,
    ) -> Result<Number> {
        on_db!(self, p => sqlx::query_as(concat!(
            "update whatsapp_numbers set
                display_phone_number = coalesce($3, display_phone_number),
                access_token_enc = coalesce($4, access_token_enc),
                app_secret_enc = coalesce($5, app_secret_enc),
                verify_token_hash = coalesce($6, verify_token_hash),
                throughput_per_second = coalesce($7, throughput_per_second),
                updated_at = $8
             where tenant_id = $1 and id = $2 and status <> 'disconnected'
             returning ", cols!()))
        .bind(tenant)
        .bind(id)
        .bind(patch.display_phone_number)
        .bind(patch.access_token_enc)
        .bind(patch.app_secret_enc)
        .bind(patch.verify_token_hash)
        .bind(patch.throughput_per_second)
        .bind(now)
        .fetch_one(p)
        .await)
        .map_err(Into::into)
    }

    /// Disconnects a number: credentials are wiped, history (conversations, messages) stays.
    pub async fn disconnect_number(
        &self,
        tenant: TenantId,
        id: NumberId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let n = on_db!(self, p => sqlx::query(
            "update whatsapp_numbers set status = 'disconnected', access_token_enc = $3,
                app_secret_enc = null, verify_token_hash = null, updated_at = $4
             where tenant_id = $1 and id = $2 and status <> 'disconnected'",
        )
        .bind(tenant)
        .bind(id)
        .bind(Vec::<u8>::new())
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}
