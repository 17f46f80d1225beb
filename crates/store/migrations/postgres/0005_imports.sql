-- Contact imports: one job per uploaded file, with counters and the rows it refused.
create table imports (
    tenant_id    uuid not null references tenants (id) on delete cascade,
    id           uuid not null,
    status       text not null check (status in ('queued', 'running', 'completed', 'failed')),
    filename     text not null,
    format       text not null,
    options      text not null,
    total        bigint not null default 0,
    processed    bigint not null default 0,
    created      bigint not null default 0,
    updated      bigint not null default 0,
    skipped      bigint not null default 0,
    failed       bigint not null default 0,
    error        text,
    created_at   timestamptz not null,
    started_at   timestamptz,
    finished_at  timestamptz,
    primary key (tenant_id, id)
);

create table import_errors (
    tenant_id  uuid not null,
    import_id  uuid not null,
    row_number bigint not null,
    reason     text not null,
    raw        text not null,
    primary key (tenant_id, import_id, row_number),
    foreign key (tenant_id, import_id) references imports (tenant_id, id) on delete cascade
);
