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
    Serve(Box<ServeArgs>),
    /// Run only the background workers (scale them out beside `serve` on one PostgreSQL).
    Worker(WorkerArgs),
    /// Apply database migrations and exit.
    Migrate(CommonArgs),
    /// Operator commands.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Serve a local simulator of the WhatsApp Cloud API (for tests, demos and benchmarks).
    Sandbox(SandboxArgs),
    /// Contacts from the command line.
    #[command(subcommand)]
    Contacts(ContactsCommand),
    /// Load benchmarks (see docs/benchmarks.md).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand, Debug)]
pub enum ContactsCommand {
    /// Import a CSV or XLSX file into a tenant's contacts, with a progress bar.
    Import {
        /// The file (.csv or .xlsx).
        file: std::path::PathBuf,
        /// The tenant's slug.
        #[arg(long)]
        tenant: String,
        /// ISO 3166 alpha-2 for phones without a country code.
        #[arg(long)]
        default_country: Option<String>,
        /// Tags added to every imported contact (comma-separated).
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
        /// Update contacts that exist already (default: skip them).
        #[arg(long, default_value_t = false)]
        update: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Contact import: generates a CSV of `rows` contacts and imports it, then again with update.
    Import {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
    },
    /// Webhook ingestion: signed status POSTs into a running app, then applied by the engine.
    Webhooks {
        /// The database to use (a bench tenant is created in it).
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        /// Statuses per POST (Meta batches; 1 = unbatched).
        #[arg(long, default_value_t = 100)]
        batch: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Campaigns: fan-out of a large audience, then dispatch through the sandbox with status
    /// webhooks flowing back; checks nothing is sent twice.
    Campaign {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// Contacts in the fan-out audience (0: skip the fan-out part).
        #[arg(long, default_value_t = 1_000_000)]
        contacts: usize,
        /// Messages dispatched end to end (spread over the numbers).
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        #[arg(long, default_value_t = 10)]
        numbers: u32,
        /// Each number's throughput (messages/s).
        #[arg(long, default_value_t = 1000)]
        rate: i32,
        /// `pinglayer worker` processes to dispatch with (0: this process's engine).
        #[arg(long, default_value_t = 0)]
        workers: usize,
        /// Charge every message (a price list and a topped-up wallet) to measure what billing
        /// costs the dispatcher; without it no message costs anything.
        #[arg(long)]
        billing: bool,
    },
    /// Listing contacts (a page of 50 filtered by a tag) with wrk, optionally while an import
    /// runs beside it.
    Contacts {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        #[arg(long, default_value_t = 1_000_000)]
        contacts: usize,
        /// Seconds of load.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Rows imported into another tenant while the list is loaded at a set pace (0: skip).
        #[arg(long, default_value_t = 0)]
        import_rows: usize,
    },
    /// Smart-link redirects with click recording, against a bare axum redirect in the same run;
    /// checks every redirect became a recorded click.
    Redirect {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// Seconds of load per target.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Load with `wrk` (must be installed) instead of the in-process client.
        #[arg(long)]
        wrk: bool,
        /// With --wrk: milliseconds each connection waits between requests, to measure
        /// latency at a set load (about connections × 1000 / pause per second) rather than at
        /// saturation.
        #[arg(long)]
        pause_ms: Option<u32>,
    },
    /// The analytics dashboard over a large seeded message table (PostgreSQL).
    Dashboard {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        #[arg(long, default_value_t = 10_000_000)]
        messages: u64,
        /// Days the messages are spread over (ending today).
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Requests timed per report.
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// The sandbox's send rate.
    Sandbox {
        #[arg(long, default_value_t = 32)]
        numbers: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
}

/// Talking to Meta (or the sandbox), and the background engine.
#[derive(Args, Debug, Clone)]
pub struct WhatsAppArgs {
    /// Base URL of the Graph API; point it at `pinglayer sandbox` to work offline.
    #[arg(
        long,
        env = "PINGLAYER_GRAPH_BASE_URL",
        default_value = "https://graph.facebook.com"
    )]
    pub graph_base_url: String,
    /// Graph API version used in paths.
    #[arg(long, env = "PINGLAYER_GRAPH_API_VERSION", default_value = "v23.0")]
    pub graph_api_version: String,
    /// Timeout of one Graph API call, seconds.
    #[arg(long, env = "PINGLAYER_GRAPH_TIMEOUT", default_value_t = 20)]
    pub graph_timeout: u64,
    /// How long sends that failed transiently (rate limits, frequency caps, 5xx) are retried, seconds.
    #[arg(long, env = "PINGLAYER_RETRY_FOR", default_value_t = 3600)]
    pub retry_for: u64,
    /// Messages the dispatcher claims per round.
    #[arg(long, env = "PINGLAYER_DISPATCH_BATCH", default_value_t = 200)]
    pub dispatch_batch: i64,
    /// Sends in flight at once per process.
    #[arg(long, env = "PINGLAYER_DISPATCH_CONCURRENCY", default_value_t = 64)]
    pub dispatch_concurrency: usize,
    /// Meta error codes that refund a message's charge when its status comes back `failed`
    /// (comma-separated). Default: 130472, 131000, 131026, 131047, 131049, 131050, 131051, 131053.
    #[arg(long, env = "PINGLAYER_REFUNDABLE_ERROR_CODES", value_delimiter = ',')]
    pub refundable_error_codes: Option<Vec<i64>>,
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
pub struct WorkerArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub whatsapp: WhatsAppArgs,
    /// Base64 of 32 bytes: decrypts the numbers' tokens (same key as `serve`).
    #[arg(long, env = "PINGLAYER_ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct SandboxArgs {
    /// Address the simulator listens on.
    #[arg(long, env = "PINGLAYER_SANDBOX_BIND", default_value = "127.0.0.1:9090")]
    pub bind: std::net::SocketAddr,
    /// Where webhooks go, e.g. `http://127.0.0.1:8080/webhooks/whatsapp`.
    #[arg(long, env = "PINGLAYER_SANDBOX_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// The simulated Meta app's id (for Embedded Signup code exchange).
    #[arg(long, env = "PINGLAYER_SANDBOX_APP_ID", default_value = "sandbox-app")]
    pub app_id: String,
    /// Signs webhooks; give the platform the same value as `--meta-app-secret`.
    #[arg(
        long,
        env = "PINGLAYER_SANDBOX_APP_SECRET",
        default_value = "sandbox-app-secret",
        hide_env_values = true
    )]
    pub app_secret: String,
    /// The seeded number's phone_number_id, WABA id, display number and token.
    #[arg(long, default_value = "100000000000001")]
    pub phone_number_id: String,
    #[arg(long, default_value = "200000000000001")]
    pub waba_id: String,
    #[arg(long, default_value = "+1 555-000-0001")]
    pub display_phone_number: String,
    #[arg(
        long,
        default_value = "sandbox-access-token",
        hide_default_value = true
    )]
    pub access_token: String,
    /// Extra numbers `N` seeded as phone_number_id +1…+N with the same token and WABA.
    #[arg(long, default_value_t = 0)]
    pub extra_numbers: u32,
    /// Messages per second per number (1–1000).
    #[arg(long, default_value_t = 80)]
    pub throughput: u32,
    /// Milliseconds until `delivered` / `read` are posted.
    #[arg(long, default_value_t = 50)]
    pub delivered_after_ms: u64,
    #[arg(long, default_value_t = 150)]
    pub read_after_ms: u64,
    /// Shares (0–1) of messages read, failed (131026), and status events posted twice.
    #[arg(long, default_value_t = 0.6)]
    pub read_rate: f64,
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    #[arg(long, default_value_t = 0.0)]
    pub duplicate_rate: f64,
    /// Post each batch of events in reverse order.
    #[arg(long, default_value_t = false)]
    pub reorder: bool,
    /// Most events per webhook POST.
    #[arg(long, default_value_t = 50)]
    pub batch_size: usize,
    /// Milliseconds a new template waits in PENDING; names containing "reject" are rejected.
    #[arg(long, default_value_t = 200)]
    pub template_review_ms: u64,
    /// Turn the pair rate limit (131056) off.
    #[arg(long, default_value_t = false)]
    pub no_pair_limit: bool,
    /// Unique business-initiated recipients per number per 24 h (0: unlimited).
    #[arg(long, default_value_t = 0)]
    pub daily_unique_limit: u32,
    #[arg(long, env = "PINGLAYER_LOG", default_value = "info")]
    pub log: String,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub whatsapp: WhatsAppArgs,
    /// The platform's Meta app id (Embedded Signup).
    #[arg(long, env = "PINGLAYER_META_APP_ID")]
    pub meta_app_id: Option<String>,
    /// The platform's Meta app secret: verifies webhook signatures, exchanges signup codes.
    #[arg(long, env = "PINGLAYER_META_APP_SECRET", hide_env_values = true)]
    pub meta_app_secret: Option<String>,
    /// The token Meta echoes in the webhook verification handshake.
    #[arg(long, env = "PINGLAYER_META_VERIFY_TOKEN", hide_env_values = true)]
    pub meta_verify_token: Option<String>,
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
    /// A MaxMind-format GeoIP database (GeoLite2/GeoIP2 Country or City, `.mmdb`): smart-link
    /// clicks then record the visitor's country.
    #[arg(long, env = "PINGLAYER_GEOIP_DB")]
    pub geoip_db: Option<PathBuf>,
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
    /// Largest contact import file (CSV/XLSX) accepted, bytes.
    #[arg(long, env = "PINGLAYER_MAX_IMPORT_BYTES", default_value_t = 200 * 1024 * 1024)]
    pub max_import_bytes: usize,
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
