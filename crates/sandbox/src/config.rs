use std::time::Duration;

/// A number the sandbox knows, with the token that may send from it.
#[derive(Debug, Clone)]
pub struct SandboxNumber {
    pub phone_number_id: String,
    pub waba_id: String,
    pub display_phone_number: String,
    pub access_token: String,
    /// Messages per second (Meta: 80 by default, up to 1,000).
    pub throughput_per_second: u32,
}

impl Default for SandboxNumber {
    /// The number a newcomer connects first (see the README).
    fn default() -> Self {
        Self {
            phone_number_id: "100000000000001".into(),
            waba_id: "200000000000001".into(),
            display_phone_number: "+1 555-000-0001".into(),
            access_token: "sandbox-access-token".into(),
            throughput_per_second: 80,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where status, inbound and template webhooks are posted; none: not posted.
    pub webhook_url: Option<String>,
    /// The Meta app: signs webhooks (`X-Hub-Signature-256`) and authenticates code exchange.
    pub app_id: String,
    pub app_secret: String,
    pub numbers: Vec<SandboxNumber>,
    /// Delay after a send before `sent`, `delivered` and `read` are posted.
    pub sent_after: Duration,
    pub delivered_after: Duration,
    pub read_after: Duration,
    /// Share of delivered messages that are read (0–1).
    pub read_rate: f64,
    /// Share of accepted messages that later fail with 131026 (0–1).
    pub fail_rate: f64,
    /// Share of status events posted twice (0–1).
    pub duplicate_rate: f64,
    /// Post each batch's events in reverse order (e.g. `read` before `delivered`).
    pub reorder: bool,
    /// Most events in one POST; events due together are batched up to this.
    pub batch_size: usize,
    /// How long a new template stays PENDING before review.
    pub template_review: Duration,
    /// Templates whose name contains this are REJECTED at review.
    pub reject_marker: String,
    /// Enforce the pair rate limit (≈1 message / 6 s to one recipient, bursts of 45).
    pub pair_limit: bool,
    /// Unique recipients of business-initiated messages per number per 24 h; 0: no limit.
    pub daily_unique_limit: u32,
    /// HTTP status for 130429/131056 (sources disagree between 429 and 400).
    pub rate_limit_status: u16,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            app_id: "sandbox-app".into(),
            app_secret: "sandbox-app-secret".into(),
            numbers: vec![SandboxNumber::default()],
            sent_after: Duration::from_millis(5),
            delivered_after: Duration::from_millis(50),
            read_after: Duration::from_millis(150),
            read_rate: 0.6,
            fail_rate: 0.0,
            duplicate_rate: 0.0,
            reorder: false,
            batch_size: 50,
            template_review: Duration::from_millis(200),
            reject_marker: "reject".into(),
            pair_limit: true,
            daily_unique_limit: 0,
            rate_limit_status: 429,
        }
    }
}
