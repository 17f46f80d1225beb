//! The test harness: `spawn(backend, configure)` starts the real application on a random port
//! with a fresh database (a SQLite file in a temporary directory, or a fresh PostgreSQL schema
//! when `TEST_DATABASE_URL` is set, dropped afterwards), and gives typed helpers to call it.

use pinglayer::startup::Application;
use pinglayer_api::{ApiContext, MetaApp, Settings};
use pinglayer_domain::{Clock, ManualClock, SystemClock};
use pinglayer_engine::{Engine, EngineConfig};
use pinglayer_sandbox::{Sandbox, SandboxConfig, SandboxState};
use pinglayer_whatsapp::{Client, ClientConfig};
use std::time::Duration;

use pinglayer_store::Db;
use reqwest::{Method, header::HeaderMap};
use serde_json::{Value, json};
use std::{net::SocketAddr, sync::Arc};
use tempfile::TempDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one test body against SQLite, and against PostgreSQL when `TEST_DATABASE_URL` is set:
/// `both!(case)` or `both!(case, |s: &mut Settings| …)` for an `async fn case(app: TestApp)`.
#[macro_export]
macro_rules! both {
    ($case:ident) => {
        both!($case, |_o: &mut $crate::helpers::TestOptions| {});
    };
    ($case:ident, $cfg:expr) => {
        mod $case {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = $crate::helpers::spawn($crate::helpers::Backend::Sqlite, $cfg)
                    .await
                    .expect("sqlite app");
                super::$case(app).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                match $crate::helpers::spawn($crate::helpers::Backend::Postgres, $cfg).await {
                    Some(app) => super::$case(app).await,
                    None => eprintln!("TEST_DATABASE_URL is not set: PostgreSQL half skipped"),
                }
            }
        }
    };
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub db: Db,
    pub ctx: ApiContext,
    pub engine: Engine,
    pub sandbox: Arc<SandboxState>,
    /// The sandbox's base URL.
    pub graph: String,
    _sandbox_stop: tokio::sync::oneshot::Sender<()>,
    pub clock: ManualClock,
    pub data_dir: TempDir,
    pub db_url: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    pg_schema: Option<(String, String)>,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    /// The error code of an error body, or "" when there is none.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// A freshly registered tenant and its owner's tokens.
pub struct Registered {
    pub token: String,
    pub refresh: String,
    pub tenant_id: String,
    pub user_id: String,
    pub body: Value,
}

pub const PASSWORD: &str = "correct horse battery";
/// The Meta app secret shared by the platform and the sandbox in tests.
pub const APP_SECRET: &str = "test-app-secret";

/// How a test wants its application: settings, the sandbox behind it, and whether the engine
/// runs by itself or is stepped by the test.
pub struct TestOptions {
    pub settings: Settings,
    pub sandbox: SandboxConfig,
    pub auto_engine: bool,
    /// Whether the sandbox posts its webhooks to the app.
    pub sandbox_webhooks: bool,
}

pub async fn spawn(backend: Backend, configure: impl FnOnce(&mut TestOptions)) -> Option<TestApp> {
    // Logs are noise in tests unless asked for: `TEST_LOG=debug cargo test …`.
    if let Ok(filter) = std::env::var("TEST_LOG") {
        pinglayer::telemetry::init(&filter, false);
    }
    let data_dir = tempfile::tempdir().expect("temp dir");
    let (url, pg_schema) = match backend {
        Backend::Sqlite => (
            format!("sqlite://{}", data_dir.path().join("test.db").display()),
            None,
        ),
        Backend::Postgres => {
            let base = std::env::var("TEST_DATABASE_URL")
                .ok()
                .filter(|u| !u.is_empty())?;
            let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
            let admin = Db::connect(&base, 1)
                .await
                .expect("connecting to TEST_DATABASE_URL");
            if let Db::Postgres(p) = &admin {
                sqlx::query(sqlx::AssertSqlSafe(format!("create schema {schema}")))
                    .execute(p)
                    .await
                    .expect("creating the test schema");
            }
            admin.close().await;
            let sep = if base.contains('?') { '&' } else { '?' };
            (
                format!("{base}{sep}options=-c%20search_path%3D{schema}"),
                Some((base, schema)),
            )
        }
    };
    let db = Db::connect(&url, 5).await.expect("connecting");
    db.migrate().await.expect("migrating");

    let mut settings = Settings::for_tests(data_dir.path().to_path_buf());
    settings.meta = MetaApp {
        app_id: Some("sandbox-app".into()),
        app_secret: Some(APP_SECRET.into()),
        verify_token: Some("platform-verify-token".into()),
    };
    let mut opts = TestOptions {
        settings,
        sandbox: SandboxConfig {
            app_secret: APP_SECRET.into(),
            sent_after: Duration::from_millis(1),
            delivered_after: Duration::from_millis(15),
            read_after: Duration::from_millis(30),
            read_rate: 1.0,
            template_review: Duration::from_millis(30),
            ..SandboxConfig::default()
        },
        auto_engine: true,
        sandbox_webhooks: true,
    };
    configure(&mut opts);
    let sandbox = Sandbox::build(opts.sandbox, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("sandbox");
    let graph = format!("http://{}", sandbox.local_addr());
    let sandbox_state = sandbox.state();
    let (sb_tx, sb_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sandbox.run_until(async {
        let _ = sb_rx.await;
    }));
    let client = Client::new(ClientConfig {
        base_url: graph.clone(),
        ..Default::default()
    })
    .expect("client");
    let engine_config = EngineConfig {
        poll: Duration::from_millis(20),
        ..Default::default()
    };
    // Business time comes from a clock the test moves (expiry of codes, keys, tokens).
    let clock = ManualClock::new(SystemClock.now());
    let mut app = Application::build(
        db.clone(),
        opts.settings,
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(clock.clone()),
        client,
        engine_config,
    )
    .await
    .expect("building the app");
    if !opts.auto_engine {
        app = app.without_workers();
    }
    let addr = app.local_addr();
    if opts.sandbox_webhooks {
        sandbox_state
            .queue
            .set_url(Some(format!("http://{addr}/webhooks/whatsapp")));
    }
    let ctx = app.context().clone();
    let engine = app.engine().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.run_until(async {
            let _ = rx.await;
        })
        .await
        .expect("serving");
    });
    Some(TestApp {
        addr,
        client: reqwest::Client::new(),
        db,
        ctx,
        engine,
        sandbox: sandbox_state,
        graph,
        _sandbox_stop: sb_tx,
        clock,
        data_dir,
        db_url: url,
        shutdown: Some(tx),
        server: Some(server),
        pg_schema,
    })
}

/// A second server process's worth of application on the same database (its own caches and
/// throttles), for multi-process behaviour.
pub struct Twin {
    pub addr: SocketAddr,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl TestApp {
    pub async fn twin(&self) -> Twin {
        let db = Db::connect(&self.db_url, 3).await.expect("connecting twin");
        let settings = Settings::for_tests(self.data_dir.path().to_path_buf());
        let client = Client::new(ClientConfig {
            base_url: self.graph.clone(),
            ..Default::default()
        })
        .expect("client");
        let app = Application::build(
            db,
            settings,
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(self.clock.clone()),
            client,
            EngineConfig::default(),
        )
        .await
        .expect("building twin");
        let addr = app.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        Twin {
            addr,
            _shutdown: tx,
        }
    }

    /// Shuts the application down gracefully (as SIGTERM does) and waits until it has stopped:
    /// requests finished, in-memory state flushed, the pool closed. `db` is closed after this;
    /// reconnect with `db_url`.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            h.await.expect("the server stopped cleanly");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        into_resp(req.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, Some(token), None).await
    }
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.call(Method::POST, path, token, Some(body)).await
    }
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }
    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Sends a raw request (for malformed bodies, odd headers).
    pub async fn raw(&self, req: reqwest::RequestBuilder) -> Resp {
        into_resp(req.send().await.expect("request sent")).await
    }

    pub async fn register(&self, business: &str, email: &str) -> Registered {
        let r = self
            .post(
                "/api/v1/auth/register",
                None,
                json!({"business_name": business, "name": "Owner", "email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, 201, "register failed: {:?}", r.body);
        Registered {
            token: r.body["access_token"].as_str().unwrap().to_string(),
            refresh: r.body["refresh_token"].as_str().unwrap().to_string(),
            tenant_id: r.body["tenant"]["id"].as_str().unwrap().to_string(),
            user_id: r.body["user"]["id"].as_str().unwrap().to_string(),
            body: r.body,
        }
    }

    pub async fn login(&self, email: &str, password: &str) -> Resp {
        self.post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// Creates a superadmin the way `pinglayer admin create-superadmin` does, and signs in.
    pub async fn superadmin(&self) -> String {
        pinglayer::admin::create_superadmin(&self.db, "root@operator.test", PASSWORD, "Root")
            .await
            .expect("creating superadmin");
        let r = self.login("root@operator.test", PASSWORD).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["access_token"].as_str().unwrap().to_string()
    }

    /// Adds a member with a role to the tenant of `owner` and returns their access token.
    pub async fn member(&self, owner: &Registered, email: &str, role: &str) -> (String, String) {
        let r = self
            .post(
                "/api/v1/users",
                Some(&owner.token),
                json!({"email": email, "name": role, "role": role, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let id = r.body["id"].as_str().unwrap().to_string();
        let l = self.login(email, PASSWORD).await;
        assert_eq!(l.status, 200, "{:?}", l.body);
        (l.body["access_token"].as_str().unwrap().to_string(), id)
    }

    /// The last one-time code the development mailbox holds for `email`.
    pub async fn mailbox_code(&self, email: &str) -> Option<String> {
        // The mail is written by a background task: give it a moment.
        for _ in 0..100 {
            if let Ok(text) = std::fs::read_to_string(self.data_dir.path().join("dev-mailbox.log"))
            {
                let code = text
                    .lines()
                    .rev()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .find(|m| m["to"] == email)
                    .and_then(|m| {
                        m["body"].as_str().and_then(|b| {
                            b.split_whitespace()
                                .map(|w| w.trim_end_matches('.'))
                                .find(|w| w.len() == 6 && w.chars().all(|c| c.is_ascii_digit()))
                                .map(str::to_string)
                        })
                    });
                if code.is_some() {
                    return code;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        None
    }
}

pub async fn into_resp(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let bytes = r.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    Resp {
        status,
        headers,
        body,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            h.abort();
        }
        if let Some((base, schema)) = self.pg_schema.take() {
            // Drop runs outside async: clean up on a thread with its own runtime.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    if let Ok(Db::Postgres(p)) = Db::connect(&base, 1).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "drop schema if exists {schema} cascade"
                        )))
                        .execute(&p)
                        .await;
                        p.close().await;
                    }
                });
            })
            .join();
        }
    }
}
