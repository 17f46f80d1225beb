//! `/webhooks/whatsapp`: Meta's verification handshake and event delivery.
//!
//! A POST is accepted only with a valid `X-Hub-Signature-256` over the exact bytes received,
//! checked in constant time against the platform app's secret, or else against the own secret
//! of a number the payload names (which then may speak only for that number). The raw event is
//! stored and the engine is woken; Meta gets its 200 without waiting for the event to be applied.

use axum::{
    Router,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use pinglayer_whatsapp::webhook;
use serde::Deserialize;
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use crate::{ApiContext, ApiError, ApiResult, auth::secrets::sha256_hex};

pub fn routes() -> Router<ApiContext> {
    Router::new().route("/webhooks/whatsapp", get(verify).post(receive))
}

#[derive(Deserialize)]
pub struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// Echoes the challenge when the verify token is the platform's or a number's.
async fn verify(State(ctx): State<ApiContext>, Query(q): Query<Handshake>) -> ApiResult<Response> {
    let (Some("subscribe"), Some(token), Some(challenge)) =
        (q.mode.as_deref(), q.verify_token.as_deref(), q.challenge)
    else {
        return Err(ApiError::forbidden(
            "verification_failed",
            "Not a subscription handshake.",
        ));
    };
    let platform = ctx
        .settings
        .meta
        .verify_token
        .as_deref()
        .is_some_and(|v| subtle::ConstantTimeEq::ct_eq(v.as_bytes(), token.as_bytes()).into());
    if platform || ctx.db.verify_token_known(&sha256_hex(token)).await? {
        return Ok((StatusCode::OK, challenge).into_response());
    }
    Err(ApiError::forbidden(
        "verification_failed",
        "The verify token does not match.",
    ))
}

/// Just the ids a payload names, read before the signature is known to be good only to choose
/// which secrets to try.
#[derive(Deserialize)]
struct Peek {
    #[serde(default)]
    entry: Vec<PeekEntry>,
}
#[derive(Deserialize)]
struct PeekEntry {
    #[serde(default)]
    changes: Vec<PeekChange>,
}
#[derive(Deserialize)]
struct PeekChange {
    #[serde(default)]
    value: PeekValue,
}
#[derive(Deserialize, Default)]
struct PeekValue {
    #[serde(default)]
    metadata: Option<PeekMeta>,
}
#[derive(Deserialize)]
struct PeekMeta {
    phone_number_id: String,
}

const SECRET_TTL: Duration = Duration::from_secs(30);

impl ApiContext {
    /// The own app secret of the number with this Meta id, if it has one (cached briefly).
    async fn number_secret(&self, pnid: &str) -> ApiResult<Option<Vec<u8>>> {
        if let Some((s, at)) = self
            .number_secrets
            .lock()
            .expect("secrets poisoned")
            .get(pnid)
            && at.elapsed() < SECRET_TTL
        {
            return Ok(s.clone());
        }
        let numbers = self
            .db
            .numbers_by_phone_number_ids(&[pnid.to_string()])
            .await?;
        let secret = match numbers
            .first()
            .and_then(|n| n.app_secret_enc.as_ref().map(|s| (n.tenant_id, s)))
        {
            Some((t, enc)) => Some(self.open(t, "app_secret", enc)?.into_bytes()),
            None => None,
        };
        let mut cache = self.number_secrets.lock().expect("secrets poisoned");
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(pnid.to_string(), (secret.clone(), Instant::now()));
        Ok(secret)
    }

    /// Which secret signed `body`: `Some("platform")`, `Some(phone_number_id)`, or `None`.
    async fn signature_scope(&self, body: &[u8], signature: &str) -> ApiResult<Option<String>> {
        if let Some(secret) = self.settings.meta.app_secret.as_deref()
            && webhook::verify(secret.as_bytes(), body, signature)
        {
            return Ok(Some("platform".into()));
        }
        let Ok(peek) = serde_json::from_slice::<Peek>(body) else {
            return Ok(None);
        };
        let mut tried: HashMap<String, ()> = HashMap::new();
        for pnid in peek
            .entry
            .iter()
            .flat_map(|e| &e.changes)
            .filter_map(|c| c.value.metadata.as_ref())
            .map(|m| &m.phone_number_id)
        {
            if tried.insert(pnid.clone(), ()).is_some() {
                continue;
            }
            if let Some(secret) = self.number_secret(pnid).await?
                && webhook::verify(&secret, body, signature)
            {
                return Ok(Some(pnid.clone()));
            }
        }
        Ok(None)
    }
}

async fn receive(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let Some(sig) = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
    else {
        return Err(ApiError::unauthorized(
            "missing_signature",
            "X-Hub-Signature-256 is required.",
        ));
    };
    let Some(scope) = ctx.signature_scope(&body, sig).await? else {
        metrics::counter!("webhook_rejected_total").increment(1);
        return Err(ApiError::forbidden(
            "invalid_signature",
            "The signature does not match the payload.",
        ));
    };
    let text = String::from_utf8(body.into())
        .map_err(|_| ApiError::bad_request("malformed_json", "The body is not UTF-8."))?;
    ctx.webhook_intake
        .store(&ctx.db, scope, text, ctx.clock.now())
        .await?;
    ctx.wake_webhooks.notify_one();
    metrics::counter!("webhook_received_total").increment(1);
    Ok(StatusCode::OK)
}
