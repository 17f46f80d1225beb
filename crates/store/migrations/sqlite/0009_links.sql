-- Smart links and analytics: links with their short codes, a personal code per campaign
-- recipient, every click (people and bots), and the counters and rollups that statistics and
-- dashboards read — kept as events arrive, never recomputed by scanning messages or clicks.

create table links (
    tenant_id     blob not null references tenants (id) on delete cascade,
    id            blob not null,
    -- Short and random; unique platform-wide (personal codes have another length).
    code          text not null,
    url           text not null,
    -- JSON {source, medium, campaign, term, content}; null when none.
    utm           text,
    campaign_id   blob,
    -- Personal codes are derived from it; never shown.
    salt          blob not null,
    -- The public URL short links were made with ("https://host"); /s/<code> follows it.
    short_base    text not null,
    disabled      integer not null default 0,
    expires_at    text,
    clicks        bigint not null default 0,
    unique_clicks bigint not null default 0,
    bot_clicks    bigint not null default 0,
    created_by    blob,
    created_at    text not null,
    updated_at    text not null,
    deleted_at    text,
    primary key (tenant_id, id)
);
create unique index links_code_key on links (code);
create index links_list on links (tenant_id, id) where deleted_at is null;

-- One personal code per (link, message): a campaign recipient's own short URL.
create table link_recipients (
    tenant_id   blob not null,
    link_id     blob not null,
    message_id  blob not null,
    code        text not null,
    contact_id  blob not null,
    campaign_id blob,
    run_id      blob,
    created_at  text not null,
    primary key (tenant_id, link_id, message_id),
    foreign key (tenant_id, link_id) references links (tenant_id, id) on delete cascade
);
create unique index link_recipients_code_key on link_recipients (code);

-- Every click, bots included (is_bot: recorded, not counted).
create table link_clicks (
    tenant_id   blob not null,
    id          blob not null,
    link_id     blob not null,
    at          text not null,
    code        text not null,
    contact_id  blob,
    campaign_id blob,
    run_id      blob,
    message_id  blob,
    ip          text,
    user_agent  text,
    referrer    text,
    device      text not null,
    browser     text not null,
    os          text not null,
    country     text,
    is_bot      integer not null,
    is_unique   integer not null,
    primary key (tenant_id, id),
    foreign key (tenant_id, link_id) references links (tenant_id, id) on delete cascade
);
create index link_clicks_link on link_clicks (tenant_id, link_id, id);

-- Who has clicked a link: a contact ('c:<id>') or an anonymous visitor ('v:<hash of ip, ua>').
create table link_visitors (
    tenant_id blob not null,
    link_id   blob not null,
    visitor   text not null,
    primary key (tenant_id, link_id, visitor)
);

create table link_stats_hourly (
    tenant_id     blob not null,
    link_id       blob not null,
    hour          text not null,
    clicks        bigint not null default 0,
    unique_clicks bigint not null default 0,
    bot_clicks    bigint not null default 0,
    primary key (tenant_id, link_id, hour)
);

-- Counted clicks by device, browser, os and country.
create table link_stats_dims (
    tenant_id     blob not null,
    link_id       blob not null,
    dim           text not null,
    value         text not null,
    clicks        bigint not null default 0,
    unique_clicks bigint not null default 0,
    primary key (tenant_id, link_id, dim, value)
);

-- Recipients of a campaign run who clicked (once each), for click-through and retargeting.
create table campaign_clickers (
    tenant_id   blob not null,
    run_id      blob not null,
    contact_id  blob not null,
    campaign_id blob not null,
    first_at    text not null,
    primary key (tenant_id, run_id, contact_id)
);
create index campaign_clickers_campaign on campaign_clickers (tenant_id, campaign_id, contact_id);

create table campaign_clicks (
    tenant_id   blob not null,
    campaign_id blob not null,
    clicks      bigint not null default 0,
    clickers    bigint not null default 0,
    primary key (tenant_id, campaign_id)
);

-- Per tenant, day (UTC), metric, sending number (nil uuid: none) and category ('' : none).
-- Metrics: attempted (left the queue: sent or failed), sent, delivered, read, failed (outbound
-- milestones, each counted once per message), inbound, contacts_created, opted_out, opted_in.
create table analytics_daily (
    tenant_id blob not null,
    day       text not null,
    metric    text not null,
    number_id blob not null,
    category  text not null,
    n         bigint not null default 0,
    primary key (tenant_id, day, metric, number_id, category)
);
create index analytics_daily_day on analytics_daily (day);

create table analytics_hourly (
    tenant_id blob not null,
    hour      text not null,
    metric    text not null,
    n         bigint not null default 0,
    primary key (tenant_id, hour, metric)
);

-- What happened before this release, from the tables themselves (once).
insert into analytics_daily (tenant_id, day, metric, number_id, category, n)
select tenant_id, day, metric, number_id, category, count(*) from (
    select tenant_id, substr(sent_at, 1, 10) as day, 'sent' as metric, number_id, coalesce(category, '') as category
      from messages where direction = 'outbound' and sent_at is not null
    union all
    select tenant_id, substr(coalesce(sent_at, failed_at), 1, 10), 'attempted', number_id, coalesce(category, '')
      from messages where direction = 'outbound' and (sent_at is not null or failed_at is not null)
    union all
    select tenant_id, substr(delivered_at, 1, 10), 'delivered', number_id, coalesce(category, '')
      from messages where direction = 'outbound' and delivered_at is not null
    union all
    select tenant_id, substr(read_at, 1, 10), 'read', number_id, coalesce(category, '')
      from messages where direction = 'outbound' and read_at is not null
    union all
    select tenant_id, substr(failed_at, 1, 10), 'failed', number_id, coalesce(category, '')
      from messages where direction = 'outbound' and failed_at is not null
    union all
    select tenant_id, substr(created_at, 1, 10), 'inbound', number_id, ''
      from messages where direction = 'inbound'
    union all
    select tenant_id, substr(created_at, 1, 10), 'contacts_created', zeroblob(16), ''
      from contacts
    union all
    select tenant_id, substr(at, 1, 10), consent, zeroblob(16), ''
      from consent_events
) e group by tenant_id, day, metric, number_id, category;

insert into analytics_hourly (tenant_id, hour, metric, n)
select tenant_id, hour, metric, count(*) from (
    select tenant_id, substr(sent_at, 1, 13) || ':00:00+00:00' as hour, 'sent' as metric
      from messages where direction = 'outbound' and sent_at is not null
    union all
    select tenant_id, substr(coalesce(sent_at, failed_at), 1, 13) || ':00:00+00:00', 'attempted'
      from messages where direction = 'outbound' and (sent_at is not null or failed_at is not null)
    union all
    select tenant_id, substr(delivered_at, 1, 13) || ':00:00+00:00', 'delivered'
      from messages where direction = 'outbound' and delivered_at is not null
    union all
    select tenant_id, substr(read_at, 1, 13) || ':00:00+00:00', 'read'
      from messages where direction = 'outbound' and read_at is not null
    union all
    select tenant_id, substr(failed_at, 1, 13) || ':00:00+00:00', 'failed'
      from messages where direction = 'outbound' and failed_at is not null
    union all
    select tenant_id, substr(created_at, 1, 13) || ':00:00+00:00', 'inbound'
      from messages where direction = 'inbound'
) e group by tenant_id, hour, metric;
