-- Campaigns: a template sent to an audience, now, later or on a schedule. Each occurrence is a
-- run; a run's recipients are outbox messages (messages.run_id), and its counters are kept as
-- messages move, never recomputed by scanning.

create table campaigns (
    tenant_id        uuid not null references tenants (id) on delete cascade,
    id               uuid not null,
    name             text not null,
    number_id        uuid not null,
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
    next_run_at      timestamptz,
    parent_id        uuid,
    created_by       uuid,
    created_at       timestamptz not null,
    updated_at       timestamptz not null,
    launched_at      timestamptz,
    finished_at      timestamptz,
    deleted_at       timestamptz,
    primary key (tenant_id, id)
);
create index campaigns_list on campaigns (tenant_id, id) where deleted_at is null;
create index campaigns_due on campaigns (next_run_at) where status in ('scheduled', 'running');

create table campaign_runs (
    tenant_id     uuid not null,
    id            uuid not null,
    campaign_id   uuid not null,
    -- The schedule's occurrence this run serves: one run per occurrence, whatever happens.
    occurrence_at timestamptz not null,
    status        text not null,
    -- Fan-out progress: contacts are materialised in id order; the cursor survives restarts.
    fanout_cursor uuid,
    fanout_done   boolean not null default false,
    lease_until   timestamptz,
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
    started_at    timestamptz not null,
    finished_at   timestamptz,
    primary key (tenant_id, id),
    foreign key (tenant_id, campaign_id) references campaigns (tenant_id, id) on delete cascade
);
create unique index campaign_runs_occurrence on campaign_runs (tenant_id, campaign_id, occurrence_at);
create index campaign_runs_fanout on campaign_runs (started_at) where not fanout_done;

-- Contacts of a run that were not sent to, and why.
create table campaign_skips (
    tenant_id  uuid not null,
    run_id     uuid not null,
    contact_id uuid not null,
    reason     text not null,
    primary key (tenant_id, run_id, contact_id)
);

alter table messages add column campaign_id uuid;
alter table messages add column run_id uuid;
alter table messages add column replied_at timestamptz;
-- 0: conversational and one-off messages; 1: campaigns. Lower goes first within a number.
alter table messages add column priority smallint not null default 0;
-- Campaign messages get a conversation when the contact writes back.
alter table messages alter column conversation_id drop not null;

drop index messages_outbox;
-- Each sending number is a lane: its due messages in priority, then time, order.
create index messages_lane on messages (number_id, priority, next_attempt_at) where status in ('queued', 'sending');
-- A contact is in a run once, even if a fan-out batch is replayed after a crash.
create unique index messages_run_contact on messages (tenant_id, run_id, contact_id) where run_id is not null;
create index messages_contact on messages (tenant_id, contact_id, id);
drop index messages_conversation;
create index messages_conversation on messages (tenant_id, conversation_id, id) where conversation_id is not null;

-- One worker at a time sends for a number, so its throughput holds across processes.
create table dispatch_lanes (
    number_id   uuid primary key,
    holder      text not null,
    lease_until timestamptz not null
);
