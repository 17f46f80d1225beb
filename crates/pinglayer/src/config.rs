//! Command line and environment. Every setting is a flag and a `PINGLAYER_*` variable of the
//! same name (`--bind` / `PINGLAYER_BIND`); the database is `DATABASE_URL`. A `.env` file in the
//! working directory is read first, if present.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::{net::SocketAddr, path::PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "pinglayer",
    version,
    about = "Self-hosted, multi-tenant WhatsApp Business messaging"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the HTTP API and run the background workers.
    Serve(ServeArgs),
    /// Run only the background workers (scale them out beside `serve` on one PostgreSQL).
    Worker(CommonArgs),
    /// Apply database migrations and exit.
    Migrate(CommonArgs),
    /// Operator commands.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create a platform superadmin (or reset the password of an existing one).
    CreateSuperadmin {
        #[arg(long)]
        email: String,
        /// At least 10 characters, not a common password.
        #[arg(long, env = "PINGLAYER_SUPERADMIN_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, default_value = "Platform admin")]
        name: String,
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Env {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SignupPolicyArg {
    Open,
    Approval,
    Closed,
}

#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Where PingLayer keeps its SQLite file, generated secrets and the development mailbox.
    #[arg(long, env = "PINGLAYER_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// `sqlite://path/to/file.db` or `postgres://user:pass@host/db`. Default: a SQLite file in
    /// the data directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// `development` generates missing secrets and writes e-mails to a local file;
    /// `production` refuses to start without secrets and logs JSON.
    #[arg(long, env = "PINGLAYER_ENV", value_enum, default_value = "development")]
    pub env: Env,
    /// Database connections per process.
    #[arg(long, env = "PINGLAYER_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// Log filter, e.g. `info` or `pinglayer=debug,sqlx=warn`.
    #[arg(long, env = "PINGLAYER_LOG", default_value = "info")]
    pub log: String,
    /// Log as JSON lines (always on in production).
    #[arg(long, env = "PINGLAYER_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}

impl CommonArgs {
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("pinglayer.db").display()))
    }
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address to listen on.
    #[arg(long, env = "PINGLAYER_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// The URL clients reach this server at (used in links and e-mails).
    #[arg(
        long,
        env = "PINGLAYER_PUBLIC_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub public_url: String,
    /// Who may create tenants: `open`, `approval` (a platform admin approves each), `closed`.
    #[arg(
        long,
        env = "PINGLAYER_SIGNUP_POLICY",
        value_enum,
        default_value = "open"
    )]
    pub signup_policy: SignupPolicyArg,
    /// Key that signs access tokens (at least 32 bytes). Generated into the data directory in
    /// development when unset; required in production.
    #[arg(long, env = "PINGLAYER_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Base64 of 32 bytes: the AES-256-GCM key that encrypts tenants' secrets (WhatsApp tokens).
    /// Generated into the data directory in development when unset; required in production.
    #[arg(long, env = "PINGLAYER_ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<String>,
    /// Access token lifetime, seconds.
    #[arg(long, env = "PINGLAYER_ACCESS_TOKEN_TTL", default_value_t = 900)]
    pub access_token_ttl: u64,
    /// Refresh token lifetime, seconds.
    #[arg(long, env = "PINGLAYER_REFRESH_TOKEN_TTL", default_value_t = 30 * 24 * 3600)]
    pub refresh_token_ttl: u64,
    /// Requests per second per API key, token or (anonymous) IP; 0 turns the limit off.
    #[arg(long, env = "PINGLAYER_RATE_LIMIT_PER_SECOND", default_value_t = 100)]
    pub rate_limit_per_second: u32,
    /// Burst allowed above the per-second rate.
    #[arg(long, env = "PINGLAYER_RATE_LIMIT_BURST", default_value_t = 200)]
    pub rate_limit_burst: u32,
    /// Largest request body accepted, bytes (larger: 413).
    #[arg(long, env = "PINGLAYER_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// How long (ms) an authenticated token or key may be served from the per-process cache.
    /// Changes that withdraw access invalidate it at once (on PostgreSQL in every process, via
    /// NOTIFY); 0 turns the cache off.
    #[arg(long, env = "PINGLAYER_AUTH_CACHE_TTL_MS", default_value_t = 5000)]
    pub auth_cache_ttl_ms: u64,
    /// Comma-separated origins allowed by CORS (`*` for any); empty: same-origin only.
    #[arg(long, env = "PINGLAYER_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Failed sign-ins allowed per e-mail in the window (4× per IP) before 429.
    #[arg(long, env = "PINGLAYER_LOGIN_MAX_FAILURES", default_value_t = 5)]
    pub login_max_failures: u32,
    /// The sign-in failure window, seconds.
    #[arg(long, env = "PINGLAYER_LOGIN_WINDOW", default_value_t = 900)]
    pub login_window: u64,
    /// SMTP server for e-mail, `smtps://user:pass@host:465` or `smtp://host:587?tls=required`.
    #[arg(long, env = "PINGLAYER_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender address of e-mails.
    #[arg(
        long,
        env = "PINGLAYER_SMTP_FROM",
        default_value = "PingLayer <no-reply@localhost>"
    )]
    pub smtp_from: String,
}
