//! The Cloud API client: one `reqwest` client (rustls, HTTP/2, pooled connections, timeouts)
//! against a configurable base URL and Graph version, so it can talk to graph.facebook.com or
//! to `pinglayer sandbox`.

use reqwest::{Method, StatusCode};
use serde::{Serialize, de::DeserializeOwned};
use std::time::Duration;

use crate::{
    error::{ErrorAction, GraphError, GraphErrorEnvelope, retryable_http},
    types::*,
};

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `https://graph.facebook.com`, or the sandbox's address.
    pub base_url: String,
    /// `v23.0`…
    pub version: String,
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            base_url: "https://graph.facebook.com".into(),
            version: "v23.0".into(),
            timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Graph answered with an error object.
    #[error("graph error {} ({}): {}", .error.code, .status, .error.message)]
    Graph { status: u16, error: Box<GraphError> },
    /// No usable answer: connection refused, timed out, reset…
    #[error("transport: {0}")]
    Transport(#[source] reqwest::Error),
    /// An answer we could not read.
    #[error("unexpected response ({status}): {body}")]
    Unexpected { status: u16, body: String },
}

impl ClientError {
    pub fn action(&self) -> ErrorAction {
        match self {
            ClientError::Graph { error, status } => match error.action() {
                // Codes we do not know, on a server-side status, are worth another try.
                ErrorAction::Fail if retryable_http(*status) => {
                    ErrorAction::RetryLater { after: None }
                }
                a => a,
            },
            ClientError::Transport(_) => ErrorAction::RetryLater { after: None },
            ClientError::Unexpected { status, .. } if retryable_http(*status) => {
                ErrorAction::RetryLater { after: None }
            }
            ClientError::Unexpected { .. } => ErrorAction::Fail,
        }
    }

    /// Whether the request may have reached Meta (a retry could then send twice).
    pub fn maybe_delivered(&self) -> bool {
        match self {
            ClientError::Transport(e) => !e.is_connect(),
            _ => false,
        }
    }

    /// The Graph error code, when there is one.
    pub fn code(&self) -> Option<i64> {
        match self {
            ClientError::Graph { error, .. } => Some(error.code),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    config: ClientConfig,
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .user_agent(concat!("pinglayer/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientError::Transport)?;
        Ok(Self { http, config })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/{}/{}",
            self.config.base_url.trim_end_matches('/'),
            self.config.version,
            path.trim_start_matches('/')
        )
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&(impl Serialize + ?Sized)>,
        query: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(ClientError::Transport)?;
        read(resp).await
    }

    /// Sends one message. HTTP 200 means *accepted*; delivery is reported by webhooks.
    pub async fn send(
        &self,
        phone_number_id: &str,
        token: &str,
        msg: &SendMessage,
    ) -> Result<SendResponse, ClientError> {
        self.call(
            Method::POST,
            &format!("{phone_number_id}/messages"),
            Some(token),
            Some(msg),
            &[],
        )
        .await
    }

    /// Marks an inbound message (and those before it) as read.
    pub async fn mark_read(
        &self,
        phone_number_id: &str,
        token: &str,
        wamid: &str,
    ) -> Result<Success, ClientError> {
        let body = MarkRead {
            messaging_product: MESSAGING_PRODUCT.into(),
            status: "read".into(),
            message_id: wamid.into(),
        };
        self.call(
            Method::POST,
            &format!("{phone_number_id}/messages"),
            Some(token),
            Some(&body),
            &[],
        )
        .await
    }

    /// One page of the WABA's templates.
    pub async fn list_templates(
        &self,
        waba_id: &str,
        token: &str,
        after: Option<&str>,
    ) -> Result<Paged<TemplateInfo>, ClientError> {
        let mut q = vec![("limit", "100")];
        if let Some(a) = after {
            q.push(("after", a));
        }
        self.call(
            Method::GET,
            &format!("{waba_id}/message_templates"),
            Some(token),
            None::<&()>,
            &q,
        )
        .await
    }

    /// Every template of the WABA, following the pages.
    pub async fn all_templates(
        &self,
        waba_id: &str,
        token: &str,
    ) -> Result<Vec<TemplateInfo>, ClientError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .list_templates(waba_id, token, after.as_deref())
                .await?;
            let n = page.data.len();
            out.extend(page.data);
            after = page
                .paging
                .filter(|p| p.next.is_some())
                .and_then(|p| p.cursors)
                .and_then(|c| c.after);
            if after.is_none() || n == 0 {
                return Ok(out);
            }
        }
    }

    pub async fn create_template(
        &self,
        waba_id: &str,
        token: &str,
        t: &TemplateCreate,
    ) -> Result<TemplateCreated, ClientError> {
        self.call(
            Method::POST,
            &format!("{waba_id}/message_templates"),
            Some(token),
            Some(t),
            &[],
        )
        .await
    }

    /// Deletes one language version (`hsm_id`) or, without it, every language of `name`.
    pub async fn delete_template(
        &self,
        waba_id: &str,
        token: &str,
        name: &str,
        hsm_id: Option<&str>,
    ) -> Result<Success, ClientError> {
        let mut q = vec![("name", name)];
        if let Some(id) = hsm_id {
            q.push(("hsm_id", id));
        }
        self.call(
            Method::DELETE,
            &format!("{waba_id}/message_templates"),
            Some(token),
            None::<&()>,
            &q,
        )
        .await
    }

    pub async fn phone_number(
        &self,
        phone_number_id: &str,
        token: &str,
    ) -> Result<PhoneNumberInfo, ClientError> {
        self.call(
            Method::GET,
            phone_number_id,
            Some(token),
            None::<&()>,
            &[(
                "fields",
                "id,display_phone_number,verified_name,quality_rating,throughput",
            )],
        )
        .await
    }

    /// Uploads media for later sends by id.
    pub async fn upload_media(
        &self,
        phone_number_id: &str,
        token: &str,
        bytes: Vec<u8>,
        mime: &str,
        filename: &str,
    ) -> Result<MediaId, ClientError> {
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(filename.to_string())
            .mime_str(mime)
            .map_err(ClientError::Transport)?;
        let form = reqwest::multipart::Form::new()
            .text("messaging_product", MESSAGING_PRODUCT)
            .text("type", mime.to_string())
            .part("file", part);
        let resp = self
            .http
            .post(self.url(&format!("{phone_number_id}/media")))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .map_err(ClientError::Transport)?;
        read(resp).await
    }

    /// Embedded Signup: exchanges the code from the pop-up for a business integration token.
    pub async fn exchange_code(
        &self,
        app_id: &str,
        app_secret: &str,
        code: &str,
    ) -> Result<OAuthToken, ClientError> {
        self.call(
            Method::GET,
            "oauth/access_token",
            None,
            None::<&()>,
            &[
                ("client_id", app_id),
                ("client_secret", app_secret),
                ("code", code),
            ],
        )
        .await
    }
}

async fn read<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, ClientError> {
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(ClientError::Transport)?;
    if status == StatusCode::OK || status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| ClientError::Unexpected {
            status: status.as_u16(),
            body: format!(
                "{e}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(500)])
            ),
        });
    }
    match serde_json::from_slice::<GraphErrorEnvelope>(&bytes) {
        Ok(env) => Err(ClientError::Graph {
            status: status.as_u16(),
            error: Box::new(env.error),
        }),
        Err(_) => Err(ClientError::Unexpected {
            status: status.as_u16(),
            body: String::from_utf8_lossy(&bytes[..bytes.len().min(500)]).into(),
        }),
    }
}
