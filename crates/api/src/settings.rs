//! What the API needs to know from the operator. Built by the binary from flags and environment.

use pinglayer_domain::SignupPolicy;
use std::{path::PathBuf, time::Duration};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Clone)]
pub struct SmtpSettings {
    /// `smtp://user:pass@host:587` or `smtps://…` (lettre's URL form).
    pub url: String,
    pub from: String,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("SmtpSettings")
            .field("url", &"<redacted>")
            .field("from", &self.from)
            .finish()
    }
}

#[derive(Clone)]
pub struct Settings {
    pub env: Environment,
    pub data_dir: PathBuf,
    pub public_url: String,
    pub signup_policy: SignupPolicy,
    /// HMAC key for access tokens (and for hashing one-time codes).
    pub jwt_secret: Vec<u8>,
    /// AES-256-GCM key for tenants' secrets at rest (WhatsApp tokens, app secrets).
    pub encryption_key: [u8; 32],
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// Requests per second allowed per credential (or per IP without one); 0 turns it off.
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    pub max_body_bytes: usize,
    /// Largest contact import file accepted, bytes.
    pub max_import_bytes: usize,
    /// How long an authenticated principal may be served from the per-process cache when no
    /// invalidation arrives (see `auth::cache`); zero turns the cache off.
    pub auth_cache_ttl: Duration,
    /// Allowed CORS origins; empty means same-origin only, `*` any.
    pub cors_origins: Vec<String>,
    /// Failed sign-ins allowed per e-mail (and 4× that per IP) in `login_window`.
    pub login_max_failures: u32,
    pub login_window: Duration,
    pub smtp: Option<SmtpSettings>,
    /// The operator's Meta app: signs webhooks (app secret), answers the webhook handshake
    /// (verify token), exchanges Embedded Signup codes (id + secret). A number may bring its
    /// own app secret and verify token instead.
    pub meta: MetaApp,
    /// MaxMind-format database for the country of smart-link clicks.
    pub geoip_db: Option<PathBuf>,
}

#[derive(Clone, Default)]
pub struct MetaApp {
    pub app_id: Option<String>,
    pub app_secret: Option<String>,
    pub verify_token: Option<String>,
}

impl std::fmt::Debug for MetaApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaApp")
            .field("app_id", &self.app_id)
            .field(
                "app_secret",
                &self.app_secret.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "verify_token",
                &self.verify_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("env", &self.env)
            .field("data_dir", &self.data_dir)
            .field("public_url", &self.public_url)
            .field("signup_policy", &self.signup_policy)
            .field("jwt_secret", &"<redacted>")
            .field("smtp", &self.smtp)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Sensible settings for tests and examples: development, open sign-up.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        Self {
            env: Environment::Development,
            data_dir,
            public_url: "http://127.0.0.1:8080".into(),
            signup_policy: SignupPolicy::Open,
            jwt_secret: b"test-secret-test-secret-test-secret!".to_vec(),
            encryption_key: [7; 32],
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            rate_limit_per_second: 100,
            rate_limit_burst: 200,
            max_body_bytes: 1024 * 1024,
            max_import_bytes: 50 * 1024 * 1024,
            auth_cache_ttl: Duration::from_secs(5),
            cors_origins: vec![],
            login_max_failures: 5,
            login_window: Duration::from_secs(15 * 60),
            smtp: None,
            meta: MetaApp::default(),
            geoip_db: None,
        }
    }
}
