//! Segments: saved filters, and their translation to SQL for either backend. The filter tree is
//! turned into one `WHERE` clause (values bound, never spliced); only attribute keys, which the
//! domain restricts to `[A-Za-z0-9_]`, appear in the SQL text, as JSON paths.

use chrono::{DateTime, Duration, Utc};
use pinglayer_domain::{
    PageRequest, SegmentId, TenantId,
    contact::ContactSort,
    segment::{Condition, Field, Filter, MonthDay},
};
use serde_json::Value;

use crate::{Backend, Db, Result, StoreError, conflict_on_unique, contacts::Contact, on_db};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Segment {
    pub tenant_id: TenantId,
    pub id: SegmentId,
    pub name: String,
    /// The filter as JSON text.
    pub filter: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A value bound into a filter's SQL.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Text(String),
    Num(f64),
    Time(DateTime<Utc>),
    Id(uuid::Uuid),
}

struct Sql<'a> {
    backend: Backend,
    now: DateTime<Utc>,
    out: String,
    binds: Vec<Bind>,
    first: usize,
    _f: std::marker::PhantomData<&'a ()>,
}

impl Sql<'_> {
    fn bind(&mut self, b: Bind) -> String {
        self.binds.push(b);
        format!("${}", self.first + self.binds.len() - 1)
    }

    fn attr_text(&self, k: &str) -> String {
        match self.backend {
            Backend::Postgres => format!("(c.attributes ->> '{k}')"),
            Backend::Sqlite => format!("cast(json_extract(c.attributes, '$.{k}') as text)"),
        }
    }

    fn attr_num(&self, k: &str) -> String {
        match self.backend {
            Backend::Postgres => format!(
                "(case when jsonb_typeof(c.attributes -> '{k}') = 'number' then (c.attributes ->> '{k}')::float8 end)"
            ),
            Backend::Sqlite => format!(
                "(case when json_type(c.attributes, '$.{k}') in ('integer', 'real') then json_extract(c.attributes, '$.{k}') end)"
            ),
        }
    }

    fn attr_bool(&self, k: &str, v: bool) -> String {
        match self.backend {
            Backend::Postgres => format!("((c.attributes -> '{k}') = '{v}'::jsonb)"),
            Backend::Sqlite => format!("(json_type(c.attributes, '$.{k}') = '{v}')"),
        }
    }

    fn attr_exists(&self, k: &str) -> String {
        match self.backend {
            Backend::Postgres => format!("((c.attributes -> '{k}') is not null)"),
            Backend::Sqlite => format!("(json_type(c.attributes, '$.{k}') is not null)"),
        }
    }

    /// An attribute's day (`YYYY-MM-DD`, the first ten characters of an ISO 8601 text) against
    /// `t`'s day: ISO days compare as text. Values that do not start like a date never match.
    fn attr_day(&mut self, k: &str, op: &str, t: DateTime<Utc>) -> String {
        let e = self.attr_text(k);
        let day = self.bind(Bind::Text(t.format("%Y-%m-%d").to_string()));
        format!("(case when {e} like '____-__-__%' then substr({e}, 1, 10) end) {op} {day}")
    }

    fn month_day(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => "right(c.birthday, 5)",
            Backend::Sqlite => "substr(c.birthday, -5)",
        }
    }

    /// The text column of a plain field, compared case-insensitively where people type it.
    fn column(f: &Field) -> &'static str {
        match f {
            Field::Name => "lower(c.name)",
            Field::Email => "lower(c.email)",
            Field::Phone => "c.phone",
            Field::Language => "c.language",
            Field::Consent => "coalesce(c.consent, 'unknown')",
            Field::CreatedAt => "c.created_at",
            Field::LastInboundAt => "c.last_inbound_at",
            Field::Birthday => "c.birthday",
            Field::Tag | Field::Attribute(_) => unreachable!("handled apart"),
        }
    }

    fn lowers(f: &Field) -> bool {
        matches!(f, Field::Name | Field::Email)
    }

    fn text_bind(&mut self, f: &Field, v: &Value) -> String {
        let s = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        self.bind(Bind::Text(if Self::lowers(f) {
            s.to_lowercase()
        } else {
            s
        }))
    }

    fn eq(&mut self, f: &Field, v: &Value) -> String {
        match (f, v) {
            (Field::Attribute(k), Value::Number(n)) => {
                let e = self.attr_num(k);
                format!(
                    "{e} = {}",
                    self.bind(Bind::Num(n.as_f64().unwrap_or_default()))
                )
            }
            (Field::Attribute(k), Value::Bool(b)) => self.attr_bool(k, *b),
            (Field::Attribute(k), _) => {
                let e = self.attr_text(k);
                format!("{e} = {}", self.text_bind(f, v))
            }
            _ => format!("{} = {}", Self::column(f), self.text_bind(f, v)),
        }
    }

    fn cond(&mut self, c: &Condition) {
        let sql = match c {
            Condition::Eq(f, v) => self.eq(f, v),
            Condition::Neq(f, v) => format!("not coalesce({}, false)", self.eq(f, v)),
            Condition::In(f, vs) => {
                let parts: Vec<String> = vs.iter().map(|v| self.eq(f, v)).collect();
                format!("({})", parts.join(" or "))
            }
            Condition::Contains(f, s) => {
                let e = match f {
                    Field::Attribute(k) => format!("lower({})", self.attr_text(k)),
                    other => format!("lower({})", Self::column(other)),
                };
                let pat = format!(
                    "%{}%",
                    s.to_lowercase()
                        .replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_")
                );
                format!("{e} like {} escape '\\'", self.bind(Bind::Text(pat)))
            }
            Condition::Exists(f, yes) => {
                let e = match f {
                    Field::Attribute(k) => self.attr_exists(k),
                    other => format!("({} is not null)", Self::column(other)),
                };
                if *yes { e } else { format!("not {e}") }
            }
            Condition::Cmp(Field::Attribute(k), op, n) => {
                let e = self.attr_num(k);
                format!("{e} {} {}", op.sql(), self.bind(Bind::Num(*n)))
            }
            Condition::Cmp(..) => "false".into(),
            Condition::After(Field::Attribute(k), t) => self.attr_day(k, ">=", *t),
            Condition::Before(Field::Attribute(k), t) => self.attr_day(k, "<", *t),
            Condition::WithinDays(Field::Attribute(k), d) => {
                self.attr_day(k, ">=", self.now - Duration::days(*d))
            }
            Condition::After(f, t) => {
                format!("{} >= {}", Self::column(f), self.bind(Bind::Time(*t)))
            }
            Condition::Before(f, t) => {
                format!("{} < {}", Self::column(f), self.bind(Bind::Time(*t)))
            }
            Condition::WithinDays(f, d) => {
                let since = self.now - Duration::days(*d);
                format!("{} >= {}", Self::column(f), self.bind(Bind::Time(since)))
            }
            Condition::HasTag(t) | Condition::HasNotTag(t) => {
                let p = self.bind(Bind::Text(t.clone()));
                let e = format!(
                    "exists (select 1 from contact_tags t where t.tenant_id = c.tenant_id and t.contact_id = c.id and t.tag = {p})"
                );
                if matches!(c, Condition::HasTag(_)) {
                    e
                } else {
                    format!("not {e}")
                }
            }
            Condition::BirthdayOn(md) => {
                let md = match md {
                    MonthDay::Today => self.now.format("%m-%d").to_string(),
                    MonthDay::Fixed(s) => s.clone(),
                };
                format!("{} = {}", self.month_day(), self.bind(Bind::Text(md)))
            }
            Condition::BirthdayMonth(m) => format!(
                "substr({}, 1, 2) = {}",
                self.month_day(),
                self.bind(Bind::Text(format!("{m:02}")))
            ),
        };
        self.out.push('(');
        self.out.push_str(&sql);
        self.out.push(')');
    }

    fn filter(&mut self, f: &Filter) {
        match f {
            Filter::Cond(c) => self.cond(c),
            // An empty group matches everything (a list with no filters).
            Filter::All(items) if items.is_empty() => self.out.push_str("(1 = 1)"),
            Filter::All(items) | Filter::Any(items) => {
                let joiner = if matches!(f, Filter::All(_)) {
                    " and "
                } else {
                    " or "
                };
                self.out.push('(');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(joiner);
                    }
                    self.filter(item);
                }
                self.out.push(')');
            }
        }
    }
}

/// The `WHERE` fragment (over contacts aliased `c`) of a filter, with its binds numbered from
/// `$first`.
pub fn filter_sql(
    f: &Filter,
    backend: Backend,
    now: DateTime<Utc>,
    first: usize,
) -> (String, Vec<Bind>) {
    let mut s = Sql {
        backend,
        now,
        out: String::new(),
        binds: Vec::new(),
        first,
        _f: std::marker::PhantomData,
    };
    s.filter(f);
    (s.out, s.binds)
}

#[macro_export]
#[doc(hidden)]
macro_rules! bind_all {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for b in $binds {
            q = match b {
                $crate::segments::Bind::Text(s) => q.bind(s.clone()),
                $crate::segments::Bind::Num(n) => q.bind(*n),
                $crate::segments::Bind::Time(t) => q.bind(*t),
                $crate::segments::Bind::Id(u) => q.bind(*u),
            };
        }
        q
    }};
}

impl Db {
    pub async fn create_segment(
        &self,
        tenant: TenantId,
        name: &str,
        filter: &Value,
        now: DateTime<Utc>,
    ) -> Result<Segment> {
        on_db!(self, p => sqlx::query_as(
            "insert into segments (tenant_id, id, name, filter, created_at, updated_at) values ($1, $2, $3, $4, $5, $5)
             returning tenant_id, id, name, filter, created_at, updated_at",
        )
        .bind(tenant)
        .bind(SegmentId::new())
        .bind(name)
        .bind(filter.to_string())
        .bind(now)
        .fetch_one(p)
        .await)
        .map_err(conflict_on_unique("segment_name"))
    }

    pub async fn segment(&self, tenant: TenantId, id: SegmentId) -> Result<Segment> {
        on_db!(self, p => sqlx::query_as(
            "select tenant_id, id, name, filter, created_at, updated_at from segments where tenant_id = $1 and id = $2",
        )
        .bind(tenant)
        .bind(id)
        .fetch_one(p)
        .await)
        .map_err(Into::into)
    }

    pub async fn list_segments(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Vec<Segment>> {
        on_db!(self, p => sqlx::query_as(
            "select tenant_id, id, name, filter, created_at, updated_at from segments
             where tenant_id = $1 and ($2 is null or id > $2) order by id limit $3",
        )
        .bind(tenant)
        .bind(page.after.map(|c| c.0))
        .bind(page.fetch_limit())
        .fetch_all(p)
        .await)
        .map_err(Into::into)
    }

    pub async fn update_segment(
        &self,
        tenant: TenantId,
        id: SegmentId,
        name: Option<&str>,
        filter: Option<&Value>,
        now: DateTime<Utc>,
    ) -> Result<Segment> {
        on_db!(self, p => sqlx::query_as(
            "update segments set name = coalesce($3, name), filter = coalesce($4, filter), updated_at = $5
             where tenant_id = $1 and id = $2 returning tenant_id, id, name, filter, created_at, updated_at",
        )
        .bind(tenant)
        .bind(id)
        .bind(name)
        .bind(filter.map(|f| f.to_string()))
        .bind(now)
        .fetch_one(p)
        .await)
        .map_err(|e| match e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            e => conflict_on_unique("segment_name")(e),
        })
    }

    pub async fn delete_segment(&self, tenant: TenantId, id: SegmentId) -> Result<()> {
        let n = on_db!(self, p => sqlx::query("delete from segments where tenant_id = $1 and id = $2")
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

    /// How many live contacts match.
    pub async fn count_matching(
        &self,
        tenant: TenantId,
        f: &Filter,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        let (w, binds) = filter_sql(f, self.backend(), now, 2);
        let sql = format!(
            "select count(*) from contacts c where c.tenant_id = $1 and c.deleted_at is null and {w}"
        );
        let n: i64 = on_db!(self, p => {
            let q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone())).bind(tenant);
            bind_all!(q, &binds).fetch_one(p).await
        })?;
        Ok(n)
    }

    /// The live contacts that match, newest first.
    pub async fn matching_contacts(
        &self,
        tenant: TenantId,
        f: &Filter,
        sort: ContactSort,
        page: &PageRequest,
        now: DateTime<Utc>,
    ) -> Result<Vec<Contact>> {
        let (w, binds) = filter_sql(f, self.backend(), now, 4);
        // Ids are UUIDv7, so id order is creation order. Names page by (name, id) after the
        // cursor's contact, looked up here: the cursor stays an id.
        const NAME: &str = "coalesce(lower(c.name), '')";
        const AT_CURSOR: &str = "(select coalesce(lower(k.name), ''), k.id from contacts k where k.tenant_id = $1 and k.id = $2)";
        let (after, order) = match sort {
            ContactSort::Newest => ("c.id < $2".to_string(), "c.id desc".to_string()),
            ContactSort::Oldest => ("c.id > $2".to_string(), "c.id".to_string()),
            ContactSort::NameAsc => (
                format!("({NAME}, c.id) > {AT_CURSOR}"),
                format!("{NAME}, c.id"),
            ),
            ContactSort::NameDesc => (
                format!("({NAME}, c.id) < {AT_CURSOR}"),
                format!("{NAME} desc, c.id desc"),
            ),
        };
        let sql = format!(
            concat!(
                "select ",
                crate::contact_cols!(),
                " from contacts c where c.tenant_id = $1 and c.deleted_at is null
                and ($2 is null or {}) and {} order by {} limit $3"
            ),
            after, w, order
        );
        on_db!(self, p => {
            let q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(tenant).bind(page.after.map(|c| c.0)).bind(page.fetch_limit());
            bind_all!(q, &binds).fetch_all(p).await
        })
        .map_err(Into::into)
    }

    /// Adds and removes tags on every live contact that matches, in set-based statements.
    /// Returns how many contacts matched.
    pub async fn tag_matching(
        &self,
        tenant: TenantId,
        f: &Filter,
        add: &[String],
        remove: &[String],
        now: DateTime<Utc>,
    ) -> Result<i64> {
        let matched = self.count_matching(tenant, f, now).await?;
        let mut tx = self.begin().await?;
        for t in add {
            let (w, binds) = filter_sql(f, self.backend(), now, 4);
            let sql = format!(
                "insert into contact_tags (tenant_id, contact_id, tag, created_at)
                 select c.tenant_id, c.id, $2, $3 from contacts c where c.tenant_id = $1 and c.deleted_at is null and {w}
                 on conflict do nothing"
            );
            crate::on_tx!(&mut tx, c => {
                let q = sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(tenant).bind(t.clone()).bind(now);
                bind_all!(q, &binds).execute(c).await.map(|r| r.rows_affected())
            })?;
        }
        for t in remove {
            let (w, binds) = filter_sql(f, self.backend(), now, 3);
            let sql = format!(
                "delete from contact_tags where tenant_id = $1 and tag = $2 and contact_id in
                 (select c.id from contacts c where c.tenant_id = $1 and c.deleted_at is null and {w})"
            );
            crate::on_tx!(&mut tx, c => {
                let q = sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(tenant).bind(t.clone());
                bind_all!(q, &binds).execute(c).await.map(|r| r.rows_affected())
            })?;
        }
        tx.commit().await?;
        crate::changes::contacts_changed(tenant);
        Ok(matched)
    }
}
