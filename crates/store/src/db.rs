use sqlx::{
    ConnectOptions, PgPool, Postgres, Sqlite, SqlitePool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use std::{str::FromStr, time::Duration};

use crate::Result;

static PG_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A connection pool to whichever database `DATABASE_URL` names.
#[derive(Clone, Debug)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// An open transaction on either backend. Dropped without `commit` it rolls back.
pub enum Tx {
    Postgres(sqlx::Transaction<'static, Postgres>),
    Sqlite(sqlx::Transaction<'static, Sqlite>),
}

/// Runs the same code against the native pool of either backend: `on_db!(db, p => query.fetch_one(p))`.
#[macro_export]
macro_rules! on_db {
    ($db:expr, $p:ident => $body:expr) => {
        match $db {
            $crate::Db::Postgres($p) => $body,
            $crate::Db::Sqlite($p) => $body,
        }
    };
}

/// Runs the same code against the connection of an open transaction on either backend.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, $c:ident => $body:expr) => {
        match $tx {
            $crate::Tx::Postgres(t) => {
                let $c = &mut **t;
                $body
            }
            $crate::Tx::Sqlite(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
}

impl Db {
    /// Connects to `postgres://…` or `sqlite://…` (the file is created if missing).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)?
                // Plan every execution for its parameters: a cached generic plan is made from
                // the statistics of its first runs (say, an empty contacts table, or a small
                // tenant) and can scan a whole table forever after. Tenants differ wildly in size.
                .options([("plan_cache_mode", "force_custom_plan")])
                .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
            let port = opts.get_port();
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(move |_, _| {
                    Box::pin(async move {
                        nodelay_to(port);
                        Ok(())
                    })
                })
                .connect_with(opts)
                .await?;
            Ok(Db::Postgres(pool))
        } else if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // WAL + NORMAL is durable across application crashes; only a power cut can lose
                // the last commits, which is SQLite's documented trade-off for this mode.
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .pragma("cache_size", "-16000")
                .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await?;
            Ok(Db::Sqlite(pool))
        } else {
            Err(crate::StoreError::Other(sqlx::Error::Configuration(
                "DATABASE_URL must start with postgres:// or sqlite:".into(),
            )))
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Postgres(_) => Backend::Postgres,
            Db::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Applies the embedded migrations of this backend.
    pub async fn migrate(&self) -> Result<()> {
        match self {
            Db::Postgres(p) => PG_MIGRATIONS.run(p).await?,
            Db::Sqlite(p) => SQLITE_MIGRATIONS.run(p).await?,
        }
        Ok(())
    }

    /// Is the database answering? Used by `/ready`.
    pub async fn ping(&self) -> Result<()> {
        on_db!(self, p => sqlx::query("select 1").execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Takes a lease on due rows with one `UPDATE … WHERE key IN (SELECT … LIMIT $3 {lock})
    /// RETURNING …`, binding `$1` now, `$2` the lease's end and `$3` the limit. PostgreSQL gets
    /// `FOR UPDATE SKIP LOCKED` in place of `{lock}`, so concurrent claimers take disjoint rows;
    /// SQLite has one writer, so the bare statement is already exclusive. Every queue (outbox,
    /// webhook events) claims through here.
    pub(crate) async fn claim<R>(
        &self,
        sql: &str,
        now: chrono::DateTime<chrono::Utc>,
        lease_until: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<R>>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + Send
            + Unpin,
    {
        self.claim_with(sql, now, lease_until, limit, None).await
    }

    /// [`Db::claim`] with a fourth bind (`$4`), such as the number of a lane.
    pub(crate) async fn claim_with<R>(
        &self,
        sql: &str,
        now: chrono::DateTime<chrono::Utc>,
        lease_until: chrono::DateTime<chrono::Utc>,
        limit: i64,
        extra: Option<uuid::Uuid>,
    ) -> Result<Vec<R>>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + Send
            + Unpin,
    {
        let lock = match self {
            Db::Postgres(_) => "for update skip locked",
            Db::Sqlite(_) => "",
        };
        let sql = sql.replace("{lock}", lock);
        Ok(on_db!(self, p => {
            let q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(now).bind(lease_until).bind(limit);
            match extra {
                Some(x) => q.bind(x).fetch_all(p).await,
                None => q.fetch_all(p).await,
            }
        })?)
    }

    pub async fn begin(&self) -> Result<Tx> {
        Ok(match self {
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
            // IMMEDIATE takes the write lock up front: a deferred transaction that reads and
            // then writes can fail with SQLITE_BUSY when another writer got in between.
            Db::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
        })
    }

    pub async fn close(&self) {
        on_db!(self, p => p.close().await)
    }
}

impl Tx {
    /// For a transaction whose statements find rows by their primary key from a batch of
    /// keys (`FROM unnest(…) AS v WHERE t.id = v.id`): PostgreSQL must not hash- or merge-join
    /// the batch against the whole table. It did, with the statistics of a table that grew
    /// quickly since its last `ANALYZE` (without statistics any filter looks selective): it
    /// read 100,000 messages to update 1,000, 85 ms a batch and growing with the table.
    /// Whatever the statistics say, a batch of keys is best served by a nested loop over the
    /// primary key, the one join left. JIT is off too: a batch's estimated cost crosses
    /// `jit_above_cost`, and compiling its expressions (1.7 % of an import's samples, in
    /// LLVM) costs more than per-row work this simple could save.
    pub async fn keyed_plans(&mut self) -> Result<()> {
        if let Tx::Postgres(t) = self {
            sqlx::query(
                "select set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true),
                        set_config('jit', 'off', true)",
            )
            .execute(&mut **t)
            .await?;
        }
        Ok(())
    }

    pub async fn commit(self) -> Result<()> {
        match self {
            Tx::Postgres(t) => t.commit().await?,
            Tx::Sqlite(t) => t.commit().await?,
        }
        Ok(())
    }
}

/// Cross-process notice that access may have been withdrawn in a tenant (see the API's auth
/// cache). PostgreSQL carries it with LISTEN/NOTIFY; SQLite serves from one process, so there
/// is no one else to tell.
const AUTH_CHANNEL: &str = "pinglayer_auth";

impl Db {
    pub async fn notify_auth_changed(&self, tenant: pinglayer_domain::TenantId) -> Result<()> {
        if let Db::Postgres(p) = self {
            sqlx::query("select pg_notify($1, $2)")
                .bind(AUTH_CHANNEL)
                .bind(tenant.to_string())
                .execute(p)
                .await?;
        }
        Ok(())
    }

    /// Starts listening for changes announced by other processes (PostgreSQL; on SQLite the
    /// listener never fires): auth changes, and contact changes (sent by triggers, see
    /// [`crate::changes`]). Listening has begun when this returns, so a process that awaits it
    /// before serving cannot miss a change made after it started serving.
    pub async fn change_listener(&self) -> Result<ChangeListener> {
        let Db::Postgres(pool) = self else {
            return Ok(ChangeListener(None));
        };
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener
            .listen_all([AUTH_CHANNEL, CONTACTS_CHANNEL])
            .await?;
        Ok(ChangeListener(Some(listener)))
    }
}

/// Sent by the triggers of migration 0010 with the tenant's id, when a transaction that
/// changed its contacts or their tags commits.
const CONTACTS_CHANNEL: &str = "pinglayer_contacts";

pub struct ChangeListener(Option<sqlx::postgres::PgListener>);

impl ChangeListener {
    /// Announces contact changes to [`crate::changes`], and calls `on_auth(Some(tenant))` for
    /// each auth change. When the connection was lost and re-made (notices may have been
    /// missed), everything is announced as changed and `on_auth(None)` called.
    pub async fn run(self, on_auth: impl Fn(Option<pinglayer_domain::TenantId>)) -> Result<()> {
        let Some(mut listener) = self.0 else {
            return std::future::pending().await;
        };
        loop {
            match listener.try_recv().await? {
                Some(n) if n.channel() == CONTACTS_CHANNEL => match n.payload().parse() {
                    Ok(t) => crate::changes::contacts_changed(t),
                    Err(_) => crate::changes::all_contacts_changed(),
                },
                Some(n) => on_auth(n.payload().parse().ok()),
                None => {
                    crate::changes::all_contacts_changed();
                    on_auth(None);
                }
            }
        }
    }
}

/// Turns Nagle's algorithm off on this process's TCP connections to the database's port.
///
/// sqlx 0.9.0 stopped setting `TCP_NODELAY` on its sockets (upstream issue 4335, no release
/// fixes it yet), so every statement larger than one segment — a batch of a thousand rows as
/// arrays — waits for the server's delayed ACK, about 40 ms, before its last bytes leave. sqlx
/// does not hand out its socket, so after each new connection we find it among the process's
/// descriptors (a TCP stream whose peer has the database's port) and set the option; setting
/// it twice, or on another connection to that port, is harmless. Linux only (elsewhere a no-op).
pub(crate) fn nodelay_to(port: u16) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::BorrowedFd;
        let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
            return;
        };
        for entry in dir.flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            // Only sockets; the descriptor may close meanwhile, which makes the calls below fail.
            if !std::fs::read_link(entry.path())
                .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
            {
                continue;
            }
            // SAFETY: the descriptor is only borrowed for the duration of these calls; if it was
            // closed (or reused) meanwhile, the calls fail or touch another socket, whose peer
            // port is checked before anything is set.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            let sock = socket2::SockRef::from(&fd);
            let to_db = sock
                .peer_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .is_some_and(|a| a.port() == port);
            if to_db && !sock.tcp_nodelay().unwrap_or(true) {
                let _ = sock.set_tcp_nodelay(true);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = port;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Every TCP connection the pool opened to the database has Nagle's algorithm off.
    #[tokio::test]
    async fn postgres_connections_have_nodelay() {
        let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
            eprintln!("TEST_DATABASE_URL is not set: skipped");
            return;
        };
        let db = Db::connect(&url, 3).await.expect("connect");
        let port = PgConnectOptions::from_str(&url).unwrap().get_port();
        // Hold three connections at once so that three sockets exist.
        let Db::Postgres(p) = &db else { unreachable!() };
        let conns = futures::future::join_all((0..3).map(|_| p.acquire())).await;
        assert!(conns.iter().all(|c| c.is_ok()));
        let mut seen = 0;
        for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            if !std::fs::read_link(entry.path())
                .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
            {
                continue;
            }
            // SAFETY: borrowed only for these calls, while the pool holds its connections open.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let sock = socket2::SockRef::from(&fd);
            if sock
                .peer_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .is_some_and(|a| a.port() == port)
            {
                seen += 1;
                assert!(
                    sock.tcp_nodelay().unwrap(),
                    "a connection without TCP_NODELAY"
                );
            }
        }
        assert!(seen >= 3, "found {seen} connections");
    }
}
