-- SQLite twin of postgres/0002 (uuid, bytea → blob; timestamptz → RFC 3339 text written by Rust).
-- WhatsApp layer: connected numbers, templates, contacts (the minimum the inbox needs; the
-- contacts issue extends it), conversations, the message outbox, and raw webhook events.

create table whatsapp_numbers (
    tenant_id             blob not null references tenants (id) on delete cascade,
    id                    blob not null,
    waba_id               text not null,
    -- Meta's id of the number; webhooks are routed by it, so it names one tenant platform-wide.
    phone_number_id       text not null,
    display_phone_number  text not null,
    -- AES-256-GCM, associated data "<tenant>/<field>"; never returned, never logged.
    access_token_enc      blob not null,
    app_secret_enc        blob,
    verify_token_hash     text,
    throughput_per_second integer not null default 80,
    status                text not null default 'connected',
    created_at            text not null,
    updated_at            text not null,
    primary key (tenant_id, id)
);
create unique index whatsapp_numbers_pnid_key on whatsapp_numbers (phone_number_id);

create table templates (
    tenant_id        blob not null references tenants (id) on delete cascade,
    id               blob not null,
    waba_id          text not null,
    name             text not null,
    category         text not null,
    parameter_format text not null default 'POSITIONAL',
    created_at       text not null,
    updated_at       text not null,
    primary key (tenant_id, id)
);
create unique index templates_name_key on templates (tenant_id, waba_id, name);

create table template_languages (
    tenant_id   blob not null,
    template_id blob not null,
    language    text not null,
    status      text not null,
    components  text not null,
    -- Meta's id of this language version (`hsm_id`), once submitted.
    meta_id     text,
    reason      text,
    updated_at  text not null,
    primary key (tenant_id, template_id, language),
    foreign key (tenant_id, template_id) references templates (tenant_id, id) on delete cascade
);
create index template_languages_meta_key on template_languages (meta_id);

create table contacts (
    tenant_id       blob not null references tenants (id) on delete cascade,
    id              blob not null,
    phone           text not null,
    wa_id           text,
    name            text,
    created_at      text not null,
    updated_at      text not null,
    last_inbound_at text,
    primary key (tenant_id, id)
);
create unique index contacts_phone_key on contacts (tenant_id, phone);

create table conversations (
    tenant_id        blob not null,
    id               blob not null,
    contact_id       blob not null,
    number_id        blob not null,
    status           text not null default 'open',
    assignee_id      blob,
    -- Message ids are time-ordered: the newest message's id orders the inbox.
    last_message_id  blob,
    last_message_at  text,
    last_inbound_at  text,
    last_inbound_wamid text,
    last_preview     text,
    unread_count     integer not null default 0,
    created_at       text not null,
    updated_at       text not null,
    primary key (tenant_id, id),
    foreign key (tenant_id, contact_id) references contacts (tenant_id, id) on delete cascade,
    foreign key (tenant_id, number_id) references whatsapp_numbers (tenant_id, id) on delete cascade
);
create unique index conversations_pair_key on conversations (tenant_id, contact_id, number_id);
create index conversations_inbox on conversations (tenant_id, last_message_id);

create table messages (
    tenant_id       blob not null,
    id              blob not null,
    number_id       blob not null,
    contact_id      blob not null,
    conversation_id blob not null,
    direction       text not null check (direction in ('outbound', 'inbound')),
    kind            text not null,
    content         text not null,
    preview         text not null,
    to_phone        text not null,
    status          text not null,
    status_rank     integer not null,
    wamid           text,
    error_code      bigint,
    error_title     text,
    error_detail    text,
    attempts        integer not null default 0,
    next_attempt_at text,
    lease_until     text,
    idempotency_key text,
    request_hash    text,
    created_at      text not null,
    updated_at      text not null,
    sent_at         text,
    delivered_at    text,
    read_at         text,
    failed_at       text,
    primary key (tenant_id, id),
    foreign key (tenant_id, conversation_id) references conversations (tenant_id, id) on delete cascade
);
create unique index messages_wamid_key on messages (wamid) where wamid is not null;
create unique index messages_idempotency_key on messages (tenant_id, idempotency_key) where idempotency_key is not null;
create index messages_outbox on messages (next_attempt_at) where status in ('queued', 'sending');
create index messages_conversation on messages (tenant_id, conversation_id, id);

-- Every state a message reached, with its time and error.
create table message_events (
    tenant_id  blob not null,
    message_id blob not null,
    status     text not null,
    at         text not null,
    error_code bigint,
    error_title text,
    primary key (tenant_id, message_id, status),
    foreign key (tenant_id, message_id) references messages (tenant_id, id) on delete cascade
);

-- Webhook POSTs as received (after the signature check), applied by the engine.
create table webhook_events (
    id           blob primary key,
    received_at  text not null,
    -- Whose secret verified it: 'platform' or a phone_number_id with its own app secret.
    scope        text not null,
    body         text not null,
    status       text not null default 'pending',
    attempts     integer not null default 0,
    next_attempt_at text not null,
    lease_until  text,
    processed_at text,
    error        text
);
create index webhook_events_pending on webhook_events (next_attempt_at) where status = 'pending';
