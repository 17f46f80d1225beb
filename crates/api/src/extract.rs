//! axum's extractors, with rejections turned into [`ApiError`]s so that malformed input gets the
//! same JSON error shape (and never a 500).

use axum::{
    extract::{FromRequest, FromRequestParts, Request, rejection::JsonRejection},
    http::{StatusCode, request::Parts},
};
use serde::de::DeserializeOwned;
use std::str::FromStr;

use crate::ApiError;

/// `axum::Json` with our errors: 400 malformed, 415 wrong content type, 413 too large,
/// 422 well-formed JSON of the wrong shape.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(r) => Err(json_rejection(r)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    let text = r.body_text();
    match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(
            "Send JSON with `Content-Type: application/json`.".into(),
        ),
        StatusCode::UNPROCESSABLE_ENTITY => {
            // serde's message names the field and what was wrong with it.
            let msg = text
                .split_once(": ")
                .map(|(_, m)| m.to_string())
                .unwrap_or(text);
            ApiError::Validation(vec![pinglayer_domain::FieldError::new("body", msg)])
        }
        _ => ApiError::bad_request(
            "malformed_json",
            format!("The body is not valid JSON: {text}"),
        ),
    }
}

/// `axum::extract::Query` with our errors (400 `invalid_query`).
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
    }
}

/// A typed id from the path. Ids are opaque: one that does not parse names nothing, so it is a
/// 404, exactly like an id that parses but belongs to nobody (or to another tenant).
pub struct PathId<T>(pub T);

impl<T: FromStr + Send, S: Send + Sync> FromRequestParts<S> for PathId<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::NotFound)?;
        raw.parse().map(PathId).map_err(|_| ApiError::NotFound)
    }
}

/// The client's address as the socket saw it ("unknown" when served without connect info).
pub struct ClientIp(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_else(|| "unknown".into()),
        ))
    }
}

/// Parses a JSON body already read as bytes, with the same errors as [`Json`]: for handlers
/// that need the raw body too (hashing for idempotency, signatures).
pub fn json_value(
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<serde_json::Value, ApiError> {
    let is_json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json") || ct.contains("+json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType(
            "Send JSON with `Content-Type: application/json`.".into(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("malformed_json", format!("The body is not valid JSON: {e}"))
    })
}

/// A JSON body that may be left out: an empty (or blank) body is `T::default()`. For actions
/// whose options are all optional (logout, sync, opt-in/out).
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
                _ => ApiError::bad_request("malformed_body", e.body_text()),
            })?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        serde_json::from_slice(&body)
            .map(OptionalJson)
            .map_err(|e| ApiError::bad_request("malformed_json", e.to_string()))
    }
}

/// For PATCH bodies: distinguishes a missing field (`None`) from an explicit `null`
/// (`Some(None)`), which clears the value.
pub(crate) fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    serde::Deserialize::deserialize(d).map(Some)
}
