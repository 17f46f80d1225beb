//! Webhook POSTs, stored as received (after their signature was checked) before Meta gets its
//! 200, then applied by the engine. Nothing Meta sent is lost if applying fails or the process
//! dies: the row stays pending and is retried.

use chrono::{DateTime, Duration, Utc};
use pinglayer_domain::WebhookEventId;

use crate::{Db, Result, Tx, on_db};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WebhookEvent {
    pub id: WebhookEventId,
    pub received_at: DateTime<Utc>,
    pub scope: String,
    pub body: String,
    pub attempts: i32,
}

impl Db {
    /// Stores webhook POSTs as received, several in one statement (and one commit). With
    /// `lease_until`, the events are stored already leased to the caller (one attempt taken),
    /// which applies them from memory; otherwise they wait to be claimed.
    pub async fn store_webhook_events(
        &self,
        received: Vec<(String, String)>,
        lease_until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<WebhookEvent>> {
        let attempts = i32::from(lease_until.is_some());
        let events: Vec<WebhookEvent> = received
            .into_iter()
            .map(|(scope, body)| WebhookEvent {
                id: WebhookEventId::new(),
                received_at: now,
                scope,
                body,
                attempts,
            })
            .collect();
        if events.is_empty() {
            return Ok(events);
        }
        match self {
            Db::Postgres(p) => {
                sqlx::query(
                    "insert into webhook_events (id, received_at, scope, body, status, attempts, next_attempt_at, lease_until)
                     select id, $1, scope, body, 'pending', $2, $1, $3 from unnest($4::uuid[], $5::text[], $6::text[]) as v (id, scope, body)",
                )
                .bind(now)
                .bind(attempts)
                .bind(lease_until)
                .bind(events.iter().map(|e| e.id).collect::<Vec<_>>())
                .bind(events.iter().map(|e| e.scope.as_str()).collect::<Vec<_>>())
                .bind(events.iter().map(|e| e.body.as_str()).collect::<Vec<_>>())
                .execute(p)
                .await?;
            }
            Db::Sqlite(_) => {
                let mut tx = self.begin().await?;
                let Tx::Sqlite(t) = &mut tx else {
                    unreachable!("a SQLite database begins SQLite transactions")
                };
                for chunk in events.chunks(100) {
                    let mut qb = sqlx::QueryBuilder::new(
                        "insert into webhook_events (id, received_at, scope, body, status, attempts, next_attempt_at, lease_until) ",
                    );
                    qb.push_values(chunk, |mut b, e| {
                        b.push_bind(e.id)
                            .push_bind(now)
                            .push_bind(e.scope.as_str())
                            .push_bind(e.body.as_str())
                            .push_bind("pending")
                            .push_bind(attempts)
                            .push_bind(now)
                            .push_bind(lease_until);
                    });
                    qb.build().execute(&mut **t).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(events)
    }

    /// Leases up to `limit` pending events, oldest first (lease as in the outbox).
    pub async fn claim_webhook_events(
        &self,
        limit: i64,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<WebhookEvent>> {
        let mut rows: Vec<WebhookEvent> = self
            .claim(
                "update webhook_events set attempts = attempts + 1, lease_until = $2
                 where id in (select id from webhook_events
                    where status = 'pending' and next_attempt_at <= $1 and (lease_until is null or lease_until < $1)
                    order by next_attempt_at, id limit $3 {lock})
                 returning id, received_at, scope, body, attempts",
                now,
                now + lease,
                limit,
            )
            .await?;
        rows.sort_by_key(|e| e.id);
        Ok(rows)
    }

    pub async fn finish_webhook_events(
        &self,
        ids: &[WebhookEventId],
        now: DateTime<Utc>,
    ) -> Result<()> {
        for chunk in ids.chunks(500) {
            on_db!(self, p => {
                let mut qb = sqlx::QueryBuilder::new("update webhook_events set status = 'processed', lease_until = null, processed_at = ");
                qb.push_bind(now);
                qb.push(" where id in (");
                let mut sep = qb.separated(", ");
                for id in chunk {
                    sep.push_bind(*id);
                }
                qb.push(")");
                qb.build().execute(p).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }

    /// Gives leased events back to the table (the process holding them is stopping).
    pub async fn release_webhook_events(&self, ids: &[WebhookEventId]) -> Result<()> {
        for chunk in ids.chunks(500) {
            on_db!(self, p => {
                let mut qb = sqlx::QueryBuilder::new("update webhook_events set lease_until = null where status = 'pending' and id in (");
                let mut sep = qb.separated(", ");
                for id in chunk {
                    sep.push_bind(*id);
                }
                qb.push(")");
                qb.build().execute(p).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }

    /// Tries the event again at `at` (e.g. a status for a message whose send has not returned).
    pub async fn retry_webhook_event(
        &self,
        id: WebhookEventId,
        at: DateTime<Utc>,
        error: &str,
    ) -> Result<()> {
        on_db!(self, p => sqlx::query(
            "update webhook_events set next_attempt_at = $2, lease_until = null, error = $3 where id = $1",
        )
        .bind(id)
        .bind(at)
        .bind(error)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Gives up on an event that cannot be applied, keeping it for inspection.
    pub async fn fail_webhook_event(
        &self,
        id: WebhookEventId,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        on_db!(self, p => sqlx::query(
            "update webhook_events set status = 'failed', lease_until = null, processed_at = $3, error = $2 where id = $1",
        )
        .bind(id)
        .bind(error)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn pending_webhook_events(&self) -> Result<i64> {
        on_db!(self, p => sqlx::query_scalar("select count(*) from webhook_events where status = 'pending'")
            .fetch_one(p)
            .await)
        .map_err(Into::into)
    }
}
