//! Contacts as the inbox needs them, and conversations (one per contact and sending number).

use chrono::{DateTime, Utc};
use pinglayer_domain::{
    ContactId, ConversationId, MessageId, NumberId, PageRequest, PhoneE164, TenantId, UserId,
};

use crate::{Db, Result, StoreError, Tx, on_db, on_tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Conversation {
    pub tenant_id: TenantId,
    pub id: ConversationId,
    pub contact_id: ContactId,
    pub number_id: NumberId,
    pub status: String,
    pub assignee_id: Option<UserId>,
    pub last_message_id: Option<MessageId>,
    pub last_message_at: Option<DateTime<Utc>>,
    pub last_inbound_at: Option<DateTime<Utc>>,
    pub last_inbound_wamid: Option<String>,
    pub last_preview: Option<String>,
    pub unread_count: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A conversation with what the inbox shows of its contact.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InboxRow {
    #[sqlx(flatten)]
    pub conversation: Conversation,
    pub contact_phone: String,
    pub contact_name: Option<String>,
}

macro_rules! ccols {
    () => {
        "c.tenant_id, c.id, c.contact_id, c.number_id, c.status, c.assignee_id, c.last_message_id,
         c.last_message_at, c.last_inbound_at, c.last_inbound_wamid, c.last_preview, c.unread_count,
         c.created_at, c.updated_at"
    };
}

/// The contact with this phone, created if new. A known `name`/`wa_id` fills blanks only.
pub async fn upsert_contact_in(
    tx: &mut Tx,
    tenant: TenantId,
    phone: &PhoneE164,
    wa_id: Option<&str>,
    name: Option<&str>,
    now: DateTime<Utc>,
) -> Result<ContactId> {
    // The row is new when it carries the id we made up for it.
    let (id, created): (ContactId, bool) = on_tx!(tx, c => sqlx::query_as(
        "insert into contacts (tenant_id, id, phone, wa_id, name, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $6)
         on conflict (tenant_id, phone) do update set
            wa_id = coalesce(contacts.wa_id, excluded.wa_id),
            name = coalesce(contacts.name, excluded.name)
         returning id, id = $2",
    )
    .bind(tenant)
    .bind(ContactId::new())
    .bind(phone.as_str())
    .bind(wa_id)
    .bind(name)
    .bind(now)
    .fetch_one(c)
    .await)?;
    if created {
        crate::analytics::bump(tx, tenant, crate::analytics::CONTACTS_CREATED, None, 1, now)
            .await?;
    }
    Ok(id)
}

/// The conversation of a contact with a number, created if new.
pub async fn ensure_conversation_in(
    tx: &mut Tx,
    tenant: TenantId,
    contact: ContactId,
    number: NumberId,
    now: DateTime<Utc>,
) -> Result<Conversation> {
    let fresh = ConversationId::new();
    let conv: Conversation = on_tx!(tx, c => sqlx::query_as(
        "insert into conversations (tenant_id, id, contact_id, number_id, status, unread_count, created_at, updated_at)
         values ($1, $2, $3, $4, 'open', 0, $5, $5)
         on conflict (tenant_id, contact_id, number_id) do update set updated_at = conversations.updated_at
         returning tenant_id, id, contact_id, number_id, status, assignee_id, last_message_id, last_message_at,
                   last_inbound_at, last_inbound_wamid, last_preview, unread_count, created_at, updated_at",
    )
    .bind(tenant)
    .bind(fresh)
    .bind(contact)
    .bind(number)
    .bind(now)
    .fetch_one(c)
    .await)?;
    if conv.id == fresh {
        // Campaign messages are sent without a conversation; the thread gathers them when the
        // contact first writes back.
        on_tx!(tx, c => sqlx::query(
            "update messages set conversation_id = $4
             where tenant_id = $1 and contact_id = $2 and number_id = $3 and conversation_id is null",
        )
        .bind(tenant)
        .bind(contact)
        .bind(number)
        .bind(conv.id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    }
    Ok(conv)
}

/// Records a message on its conversation: newest message, preview and, for inbound ones, the
/// service window (from the message's own time, not the time we heard of it) and unread count.
pub async fn touch_conversation_in(
    tx: &mut Tx,
    tenant: TenantId,
    conversation: ConversationId,
    message: MessageId,
    preview: &str,
    at: DateTime<Utc>,
    inbound: Option<&str>,
) -> Result<()> {
    let preview: String = preview.chars().take(200).collect();
    on_tx!(tx, c => sqlx::query(
        "update conversations set
            last_message_id = case when last_message_id is null or last_message_id < $3 then $3 else last_message_id end,
            last_message_at = case when last_message_at is null or last_message_at < $5 then $5 else last_message_at end,
            last_preview = case when last_message_id is null or last_message_id < $3 then $4 else last_preview end,
            last_inbound_at = case when $6 is not null and (last_inbound_at is null or last_inbound_at < $5) then $5 else last_inbound_at end,
            last_inbound_wamid = case when $6 is not null and (last_inbound_at is null or last_inbound_at < $5) then $6 else last_inbound_wamid end,
            unread_count = unread_count + case when $6 is not null then 1 else 0 end,
            status = case when $6 is not null then 'open' else status end,
            updated_at = $5
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(conversation)
    .bind(message)
    .bind(preview)
    .bind(at)
    .bind(inbound)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// A contact's marketing consent (`opted_in`, `opted_out` or none), read inside `tx`.
pub async fn consent_in(
    tx: &mut Tx,
    tenant: TenantId,
    contact: ContactId,
) -> Result<Option<String>> {
    let c: Option<Option<String>> = on_tx!(tx, c => sqlx::query_scalar("select consent from contacts where tenant_id = $1 and id = $2")
        .bind(tenant)
        .bind(contact)
        .fetch_optional(c)
        .await)?;
    Ok(c.flatten())
}

/// The contact wrote to us at `at`: their last inbound time moves forward.
pub async fn note_contact_inbound_in(
    tx: &mut Tx,
    tenant: TenantId,
    contact: ContactId,
    at: DateTime<Utc>,
) -> Result<()> {
    on_tx!(tx, c => sqlx::query(
        "update contacts set last_inbound_at = $3, updated_at = $3
         where tenant_id = $1 and id = $2 and (last_inbound_at is null or last_inbound_at < $3)",
    )
    .bind(tenant)
    .bind(contact)
    .bind(at)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

impl Db {
    /// The inbox: newest activity first.
    pub async fn list_conversations(
        &self,
        tenant: TenantId,
        page: &PageRequest,
        status: Option<&str>,
        assignee: Option<UserId>,
    ) -> Result<Vec<InboxRow>> {
        on_db!(self, p => sqlx::query_as(concat!("select ", ccols!(),
            ", k.phone as contact_phone, k.name as contact_name
             from conversations c join contacts k on k.tenant_id = c.tenant_id and k.id = c.contact_id
             where c.tenant_id = $1 and c.last_message_id is not null
               and ($2 is null or c.last_message_id < $2)
               and ($3 is null or c.status = $3)
               and ($4 is null or c.assignee_id = $4)
             order by c.last_message_id desc limit $5"))
        .bind(tenant)
        .bind(page.after.map(|c| c.0))
        .bind(status)
        .bind(assignee)
        .bind(page.fetch_limit())
        .fetch_all(p)
        .await)
        .map_err(Into::into)
    }

    /// One contact's conversations (one per sending number), for their data export.
    pub async fn contact_conversations(
        &self,
        tenant: TenantId,
        contact: ContactId,
    ) -> Result<Vec<InboxRow>> {
        on_db!(self, p => sqlx::query_as(concat!("select ", ccols!(),
            ", k.phone as contact_phone, k.name as contact_name
             from conversations c join contacts k on k.tenant_id = c.tenant_id and k.id = c.contact_id
             where c.tenant_id = $1 and c.contact_id = $2 order by c.id"))
        .bind(tenant)
        .bind(contact)
        .fetch_all(p)
        .await)
        .map_err(Into::into)
    }

    pub async fn conversation(&self, tenant: TenantId, id: ConversationId) -> Result<InboxRow> {
        on_db!(self, p => sqlx::query_as(concat!("select ", ccols!(),
            ", k.phone as contact_phone, k.name as contact_name
             from conversations c join contacts k on k.tenant_id = c.tenant_id and k.id = c.contact_id
             where c.tenant_id = $1 and c.id = $2"))
        .bind(tenant)
        .bind(id)
        .fetch_one(p)
        .await)
        .map_err(Into::into)
    }

    /// Assigns (`Some(Some(user))`), unassigns (`Some(None)`) and/or opens/closes.
    pub async fn update_conversation(
        &self,
        tenant: TenantId,
        id: ConversationId,
        status: Option<&str>,
        assignee: Option<Option<UserId>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let n = on_db!(self, p => sqlx::query(
            "update conversations set status = coalesce($3, status),
                assignee_id = case when $4 then $5 else assignee_id end, updated_at = $6
             where tenant_id = $1 and id = $2",
        )
        .bind(tenant)
        .bind(id)
        .bind(status)
        .bind(assignee.is_some())
        .bind(assignee.flatten())
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub async fn clear_unread(&self, tenant: TenantId, id: ConversationId) -> Result<()> {
        on_db!(self, p => sqlx::query("update conversations set unread_count = 0 where tenant_id = $1 and id = $2")
            .bind(tenant)
            .bind(id)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }
}
