-- Smart links and analytics: links with their short codes, a personal code per campaign
-- recipient, every click (people and bots), and the counters and rollups that statistics and
-- dashboards read — kept as events arrive, never recomputed by scanning messages or clicks.

create table links (
    tenant_id     uuid not null references tenants (id) on delete cascade,
    id            uuid not null,
    -- Short and random; unique platform-wide (personal codes have another length).
    code          text not null,
    url           text not null,
    -- JSON {source, medium, campaign, term, content}; null when none.
    utm           text,
    campaign_id   uuid,
    -- Personal codes are derived from it; never shown.
    salt          bytea not null,
    -- The public URL short links were made with ("https://host"); /s/<code> follows it.
    short_base    text not null,
    disabled      boolean not null default false,
    expires_at    timestamptz,
    clicks        bigint not null default 0,
    unique_clicks bigint not null default 0,
    bot_clicks    bigint not null default 0,
    created_by    uuid,
    created_at    timestamptz not null,
    updated_at    timestamptz not null,
    deleted_at    timestamptz,
    primary key (tenant_id, id)
);
create unique index links_code_key on links (code);
create index links_list on links (tenant_id, id) where deleted_at is null;

-- One personal code per (link, message): a campaign recipient's own short URL.
create table link_recipients (
    tenant_id   uuid not null,
    link_id     uuid not null,
    message_id  uuid not null,
    code        text not null,
    contact_id  uuid not null,
    campaign_id uuid,
    run_id      uuid,
    created_at  timestamptz not null,
    primary key (tenant_id, link_id, message_id),
    foreign key (tenant_id, link_id) references links (tenant_id, id) on delete cascade
);
create unique index link_recipients_code_key on link_recipients (code);

-- Every click, bots included (is_bot: recorded, not counted).
create table link_clicks (
    tenant_id   uuid not null,
    id          uuid not null,
    link_id     uuid not null,
    at          timestamptz not null,
    code        text not null,
    contact_id  uuid,
    campaign_id uuid,
    run_id      uuid,
    message_id  uuid,
    ip          text,
    user_agent  text,
    referrer    text,
    device      text not null,
    browser     text not null,
    os          text not null,
    country     text,
    is_bot      boolean not null,
    is_unique   boolean not null,
    primary key (tenant_id, id),
    foreign key (tenant_id, link_id) references links (tenant_id, id) on delete cascade
);
create index link_clicks_link on link_clicks (tenant_id, link_id, id);

-- Who has clicked a link: a contact ('c:<id>') or an anonymous visitor ('v:<hash of ip, ua>').
create table link_visitors (
    tenant_id uuid not null,
    link_id   uuid not null,
    visitor   text not null,
    primary key (tenant_id, link_id, visitor)
);

create table link_stats_hourly (
    tenant_id     uuid not null,
    link_id       uuid not null,
    hour          timestamptz not null,
    clicks        bigint not null default 0,
    unique_clicks bigint not null default 0,
    bot_clicks    bigint not null default 0,
    primary key (tenant_id, link_id, hour)
);

-- Counted clicks by device, browser, os and country.
create table link_stats_dims (
    tenant_id     uuid not null,
    link_id       uuid not null,
    dim           text not null,
    value         text not null,
    clicks        bigint not null default 0,
    unique_clicks bigint not null default 0,
    primary key (tenant_id, link_id, dim, value)
);

-- Recipients of a campaign run who clicked (once each), for click-through and retargeting.
create table campaign_clickers (
    tenant_id   uuid not null,
    run_id      uuid not null,
    contact_id  uuid not null,
    campaign_id uuid not null,
    first_at    timestamptz not null,
    primary key (tenant_id, run_id, contact_id)
);
create index campaign_clickers_campaign on campaign_clickers (tenant_id, campaign_id, contact_id);

create table campaign_clicks (
    tenant_id   uuid not null,
    campaign_id uuid not null,
    clicks      bigint not null default 0,
    clickers    bigint not null default 0,
    primary key (tenant_id, campaign_id)
);

-- Per tenant, day (UTC), metric, sending number (nil uuid: none) and category ('' : none).
-- Metrics: attempted (left the queue: sent or failed), sent, delivered, read, failed (outbound
-- milestones, each counted once per message), inbound, contacts_created, opted_out, opted_in.
create table analytics_daily (
    tenant_id uuid not null,
    day       date not null,
    metric    text not null,
    number_id uuid not null,
    category  text not null,
    n         bigint not null default 0,
    primary key (tenant_id, day, metric, number_id, category)
);
create index analytics_daily_day on analytics_daily (day);

create table analytics_hourly (
    tenant_id uuid not null,
    hour      timestamptz not null,
    metric    text not null,
    n         bigint not null default 0,
    primary key (tenant_id, hour, metric)
);

-- What happened before this release, from the tables themselves (once).
insert into analytics_daily (tenant_id, day, metric, number_id, category, n)
select tenant_id, day, metric, number_id, category, count(*) from (
    select tenant_id, (sent_at at time zone 'UTC')::date as day, 'sent' as metric, number_id, coalesce(category, '') as category
      from messages where direction = 'outbound' and sent_at is not null
    union all
    select tenant_id, (coalesce(sent_at, failed_at) at time zone 'UTC')::date, 'attempted', number_id, coalesce(category, '')
      from messages where direction = 'outbound' and (sent_at is not null or failed_at is not null)
    union all
    select tenant_id, (delivered_at at time zone 'UTC')::date, 'delivered', number_id, coalesce(category, '')
      from messages where direction = 'outbound' and delivered_at is not null
    union all
    select tenant_id, (read_at at time zone 'UTC')::date, 'read', number_id, coalesce(category, '')
      from messages where direction = 'outbound' and read_at is not null
    union all
    select tenant_id, (failed_at at time zone 'UTC')::date, 'failed', number_id, coalesce(category, '')
      from messages where direction = 'outbound' and failed_at is not null
    union all
    select tenant_id, (created_at at time zone 'UTC')::date, 'inbound', number_id, ''
      from messages where direction = 'inbound'
    union all
    select tenant_id, (created_at at time zone 'UTC')::date, 'contacts_created', '00000000-0000-0000-0000-000000000000'::uuid, ''
      from contacts
    union all
    select tenant_id, (at at time zone 'UTC')::date, consent, '00000000-0000-0000-0000-000000000000'::uuid, ''
      from consent_events
) e group by tenant_id, day, metric, number_id, category;

insert into analytics_hourly (tenant_id, hour, metric, n)
select tenant_id, hour, metric, count(*) from (
    select tenant_id, date_trunc('hour', sent_at at time zone 'UTC') at time zone 'UTC' as hour, 'sent' as metric
      from messages where direction = 'outbound' and sent_at is not null
    union all
    select tenant_id, date_trunc('hour', coalesce(sent_at, failed_at) at time zone 'UTC') at time zone 'UTC', 'attempted'
      from messages where direction = 'outbound' and (sent_at is not null or failed_at is not null)
    union all
    select tenant_id, date_trunc('hour', delivered_at at time zone 'UTC') at time zone 'UTC', 'delivered'
      from messages where direction = 'outbound' and delivered_at is not null
    union all
    select tenant_id, date_trunc('hour', read_at at time zone 'UTC') at time zone 'UTC', 'read'
      from messages where direction = 'outbound' and read_at is not null
    union all
    select tenant_id, date_trunc('hour', failed_at at time zone 'UTC') at time zone 'UTC', 'failed'
      from messages where direction = 'outbound' and failed_at is not null
    union all
    select tenant_id, date_trunc('hour', created_at at time zone 'UTC') at time zone 'UTC', 'inbound'
      from messages where direction = 'inbound'
) e group by tenant_id, hour, metric;
