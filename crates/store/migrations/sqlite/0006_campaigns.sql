-- no-transaction
pragma foreign_keys = off;
begin;
-- Campaigns: a template sent to an audience, now, later or on a schedule. Each occurrence is a
-- run; a run's recipients are outbox messages (messages.run_id), and its counters are kept as
-- messages move, never recomputed by scanning.

create table campaigns (
    tenant_id        blob not null references tenants (id) on delete cascade,
    id               blob not null,
    name             text not null,
    number_id        blob not null,
    template_name    text not null,
    default_language text not null,
    -- JSON: how each template parameter is filled from contact data, with fallbacks.
    parameters       text not null,
    -- JSON: {segment_id?, tags?, contact_ids?, all_opted_in?, retarget?}.
    audience         text not null,
    -- JSON: {at?, cron?, timezone?, ends_at?}; none of them means "now".
    schedule         text not null,
    -- JSON: {start: "21:00", end: "09:00", timezone}; null when there are none.
    quiet_hours      text,
    status           text not null,
    status_reason    text,
    next_run_at      text,
    parent_id        blob,
    created_by       blob,
    created_at       text not null,
    updated_at       text not null,
    launched_at      text,
    finished_at      text,
    deleted_at       text,
    primary key (tenant_id, id)
);
create index campaigns_list on campaigns (tenant_id, id) where deleted_at is null;
create index campaigns_due on campaigns (next_run_at) where status in ('scheduled', 'running');

create table campaign_runs (
    tenant_id     blob not null,
    id            blob not null,
    campaign_id   blob not null,
    -- The schedule's occurrence this run serves: one run per occurrence, whatever happens.
    occurrence_at text not null,
    status        text not null,
    -- Fan-out progress: contacts are materialised in id order; the cursor survives restarts.
    fanout_cursor blob,
    fanout_done   integer not null default 0,
    lease_until   text,
    targeted      bigint not null default 0,
    skipped       bigint not null default 0,
    skipped_opted_out bigint not null default 0,
    queued        bigint not null default 0,
    -- Messages that left the queue (accepted by Meta, failed, or cancelled).
    done          bigint not null default 0,
    sent          bigint not null default 0,
    delivered     bigint not null default 0,
    read          bigint not null default 0,
    failed        bigint not null default 0,
    cancelled     bigint not null default 0,
    replied       bigint not null default 0,
    started_at    text not null,
    finished_at   text,
    primary key (tenant_id, id),
    foreign key (tenant_id, campaign_id) references campaigns (tenant_id, id) on delete cascade
);
create unique index campaign_runs_occurrence on campaign_runs (tenant_id, campaign_id, occurrence_at);
create index campaign_runs_fanout on campaign_runs (started_at) where fanout_done = 0;

-- Contacts of a run that were not sent to, and why.
create table campaign_skips (
    tenant_id  blob not null,
    run_id     blob not null,
    contact_id blob not null,
    reason     text not null,
    primary key (tenant_id, run_id, contact_id)
);

-- SQLite cannot drop a NOT NULL: the messages table is rebuilt (foreign keys are off for this
-- migration, so message_events are kept; see the first line).
create table messages_new (
    tenant_id       blob not null,
    id              blob not null,
    number_id       blob not null,
    contact_id      blob not null,
    conversation_id blob,
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
    campaign_id     blob,
    run_id          blob,
    replied_at      text,
    priority        integer not null default 0,
    primary key (tenant_id, id),
    foreign key (tenant_id, conversation_id) references conversations (tenant_id, id) on delete cascade
);
insert into messages_new (tenant_id, id, number_id, contact_id, conversation_id, direction, kind, content, preview,
    to_phone, status, status_rank, wamid, error_code, error_title, error_detail, attempts, next_attempt_at, lease_until,
    idempotency_key, request_hash, created_at, updated_at, sent_at, delivered_at, read_at, failed_at)
select tenant_id, id, number_id, contact_id, conversation_id, direction, kind, content, preview,
    to_phone, status, status_rank, wamid, error_code, error_title, error_detail, attempts, next_attempt_at, lease_until,
    idempotency_key, request_hash, created_at, updated_at, sent_at, delivered_at, read_at, failed_at from messages;
drop table messages;
alter table messages_new rename to messages;
create unique index messages_wamid_key on messages (wamid) where wamid is not null;
create unique index messages_idempotency_key on messages (tenant_id, idempotency_key) where idempotency_key is not null;

-- Each sending number is a lane: its due messages in priority, then time, order.
create index messages_lane on messages (number_id, priority, next_attempt_at) where status in ('queued', 'sending');
-- A contact is in a run once, even if a fan-out batch is replayed after a crash.
create unique index messages_run_contact on messages (tenant_id, run_id, contact_id) where run_id is not null;
create index messages_contact on messages (tenant_id, contact_id, id);
create index messages_conversation on messages (tenant_id, conversation_id, id) where conversation_id is not null;

-- One worker at a time sends for a number, so its throughput holds across processes.
create table dispatch_lanes (
    number_id   blob primary key,
    holder      text not null,
    lease_until text not null
);
commit;
pragma foreign_keys = on;
