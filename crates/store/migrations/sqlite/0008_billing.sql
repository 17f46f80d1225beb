-- Money: prepaid wallets, an append-only ledger, the operator's price list, plans and usage.
-- Amounts are bigint counts of ten-thousandths of the operator's currency (exact; no floats).

create table wallets (
    tenant_id             blob primary key references tenants (id) on delete cascade,
    -- Equals the sum of the tenant's ledger amounts; never negative.
    balance               bigint not null default 0 check (balance >= 0),
    -- Crossing it downwards raises a `low_balance` billing event; 0 disables it.
    low_balance_threshold bigint not null default 0 check (low_balance_threshold >= 0),
    updated_at            text not null
);

create table ledger_entries (
    tenant_id       blob not null references tenants (id) on delete cascade,
    id              blob not null,
    kind            text not null check (kind in ('credit', 'debit', 'refund', 'adjustment')),
    -- Signed: credits and refunds add, debits subtract, adjustments either.
    amount          bigint not null,
    balance_before  bigint not null,
    balance_after   bigint not null,
    -- What it is for: 'topup', 'message', 'campaign' (a batch of its messages), 'adjustment'.
    reference_type  text,
    reference_id    text,
    -- Messages a debit covers (a campaign's batch is one entry).
    quantity        bigint not null default 1,
    actor           text not null,
    note            text,
    idempotency_key text,
    request_hash    text,
    created_at      text not null,
    primary key (tenant_id, id)
);
create unique index ledger_idempotency on ledger_entries (tenant_id, idempotency_key) where idempotency_key is not null;
-- A message is refunded at most once, whatever replays the webhook.
create unique index ledger_refund_once on ledger_entries (tenant_id, reference_id) where kind = 'refund' and reference_type = 'message';
create index ledger_time on ledger_entries (tenant_id, created_at);

create table billing_events (
    tenant_id  blob not null references tenants (id) on delete cascade,
    id         blob not null,
    kind       text not null,
    balance    bigint not null,
    threshold  bigint not null,
    created_at text not null,
    primary key (tenant_id, id)
);

-- The operator's price list (one row): JSON {currency, default: {marketing, …}, countries: {"91": {…}}}.
create table pricing (
    id         integer primary key check (id = 1),
    document   text not null,
    updated_at text not null
);

create table plans (
    id                      blob primary key,
    name                    text not null unique,
    description             text,
    max_contacts            bigint,
    max_team_members        bigint,
    max_sending_numbers     bigint,
    max_messages_per_month  bigint,
    api_requests_per_minute bigint,
    created_at              text not null,
    updated_at              text not null
);
insert into plans (id, name, description, max_contacts, max_team_members, max_sending_numbers,
                   max_messages_per_month, api_requests_per_minute, created_at, updated_at) values
    (X'00000000000070008000000000000001', 'Starter', 'For a single shop getting started.', 1000, 3, 1, 5000, 600, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    (X'00000000000070008000000000000002', 'Pro', 'For growing businesses.', 100000, 20, 5, 250000, 3000, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    (X'00000000000070008000000000000003', 'Enterprise', 'No limits.', null, null, null, null, null, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));

-- Plan history: the current plan is the latest that has started.
create table tenant_plans (
    tenant_id   blob not null references tenants (id) on delete cascade,
    id          blob not null,
    plan_id     blob not null references plans (id),
    starts_at   text not null,
    assigned_by text,
    created_at  text not null,
    primary key (tenant_id, id)
);
create index tenant_plans_current on tenant_plans (tenant_id, starts_at);

-- Messages paid for and spend per calendar month and category, kept as messages are charged.
create table usage_counters (
    tenant_id blob not null references tenants (id) on delete cascade,
    period    text not null,
    category  text not null,
    messages  bigint not null default 0,
    spend     bigint not null default 0,
    primary key (tenant_id, period, category)
);

alter table messages add column category text;
-- What this message was charged (null: not charged yet); refunded_at: when it was given back.
alter table messages add column charge bigint;
alter table messages add column refunded_at text;
create index messages_period on messages (tenant_id, created_at) where direction = 'outbound';
-- What a campaign's sends cost, net of refunds (kept as they are charged, like its counters).
alter table campaigns add column cost bigint not null default 0;
