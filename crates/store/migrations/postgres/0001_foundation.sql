-- Foundation: tenants, their users and sessions, API keys, one-time codes.
-- Every tenant-owned table is keyed by (tenant_id, id) and its foreign keys carry tenant_id,
-- so that a query cannot cross tenants by accident and the schema can be sharded by tenant.

create table tenants (
    id           uuid primary key,
    slug         text not null unique,
    name         text not null,
    status       text not null check (status in ('pending', 'active', 'suspended')),
    -- The operator's own tenant, home of the platform's superadmins; never listed.
    is_platform  boolean not null default false,
    created_at   timestamptz not null,
    updated_at   timestamptz not null
);

create table users (
    tenant_id     uuid not null references tenants (id) on delete cascade,
    id            uuid not null,
    email         text not null,
    name          text not null,
    role          text not null check (role in ('owner', 'admin', 'agent', 'viewer', 'superadmin')),
    password_hash text,
    created_at    timestamptz not null,
    updated_at    timestamptz not null,
    last_login_at timestamptz,
    primary key (tenant_id, id)
);
-- One mailbox, one login. (Under Citus this would move to a reference table of identities.)
create unique index users_email_key on users (email);

create table sessions (
    tenant_id   uuid not null,
    id          uuid not null,
    user_id     uuid not null,
    created_at  timestamptz not null,
    expires_at  timestamptz not null,
    revoked_at  timestamptz,
    revoked_why text,
    primary key (tenant_id, id),
    foreign key (tenant_id, user_id) references users (tenant_id, id) on delete cascade
);

create table refresh_tokens (
    tenant_id   uuid not null,
    id          uuid not null,
    session_id  uuid not null,
    token_hash  text not null,
    created_at  timestamptz not null,
    expires_at  timestamptz not null,
    rotated_at  timestamptz,
    primary key (tenant_id, id),
    foreign key (tenant_id, session_id) references sessions (tenant_id, id) on delete cascade
);
create unique index refresh_tokens_hash_key on refresh_tokens (token_hash);

create table api_keys (
    tenant_id    uuid not null references tenants (id) on delete cascade,
    id           uuid not null,
    name         text not null,
    role         text not null check (role in ('owner', 'admin', 'agent', 'viewer')),
    prefix       text not null,
    key_hash     text not null,
    created_by   uuid,
    created_at   timestamptz not null,
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz,
    primary key (tenant_id, id)
);
create unique index api_keys_hash_key on api_keys (key_hash);

create table otp_codes (
    tenant_id   uuid not null,
    user_id     uuid not null,
    code_hash   text not null,
    created_at  timestamptz not null,
    expires_at  timestamptz not null,
    attempts    integer not null default 0,
    consumed_at timestamptz,
    primary key (tenant_id, user_id),
    foreign key (tenant_id, user_id) references users (tenant_id, id) on delete cascade
);
