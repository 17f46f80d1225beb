//! The API's one error type. Every failure a client sees is
//! `{"error": {"code": "snake_case", "message": "…", "details": …}}` with a fitting status.
//! Internal errors are logged with their cause and shown only as `internal_error`.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use pinglayer_domain::FieldError;
use pinglayer_store::StoreError;
use serde_json::{Value, json};

pub type ApiResult<T> = Result<T, ApiError>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{message}")]
    Unauthorized { code: &'static str, message: String },
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("not found")]
    NotFound,
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("method not allowed")]
    MethodNotAllowed(String),
    /// It existed, and is no more (an expired or disabled link).
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    #[error("request body is too large")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// A well-formed request the current state cannot serve, with its own code.
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// Meta (or the sandbox) failed us.
    #[error("{message}")]
    BadGateway { code: &'static str, message: String },
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("service unavailable")]
    Unavailable,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unauthorized {
            code,
            message: message.into(),
        }
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::Forbidden {
            code,
            message: message.into(),
        }
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unprocessable {
            code,
            message: message.into(),
        }
    }
    pub fn field(field: &'static str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    fn parts(&self) -> (StatusCode, &'static str, String, Value) {
        match self {
            Self::BadRequest { code, message } => {
                (StatusCode::BAD_REQUEST, code, message.clone(), Value::Null)
            }
            Self::Unauthorized { code, message } => {
                (StatusCode::UNAUTHORIZED, code, message.clone(), Value::Null)
            }
            Self::Forbidden { code, message } => {
                (StatusCode::FORBIDDEN, code, message.clone(), Value::Null)
            }
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "No such resource.".into(),
                Value::Null,
            ),
            Self::Conflict { code, message } => {
                (StatusCode::CONFLICT, code, message.clone(), Value::Null)
            }
            Self::Gone { code, message } => (StatusCode::GONE, code, message.clone(), Value::Null),
            Self::MethodNotAllowed(m) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                m.clone(),
                Value::Null,
            ),
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "The request body is larger than this server accepts.".into(),
                Value::Null,
            ),
            Self::UnsupportedMediaType(m) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                m.clone(),
                Value::Null,
            ),
            Self::Validation(fields) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                fields
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
                json!({ "fields": fields.iter().map(|f| json!({"field": f.field, "message": f.message})).collect::<Vec<_>>() }),
            ),
            Self::Unprocessable { code, message } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                message.clone(),
                Value::Null,
            ),
            Self::BadGateway { code, message } => {
                (StatusCode::BAD_GATEWAY, code, message.clone(), Value::Null)
            }
            Self::TooManyRequests { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("Too many requests; retry in {retry_after_secs} s."),
                json!({ "retry_after": retry_after_secs }),
            ),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "The service is not ready.".into(),
                Value::Null,
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Something went wrong on our side; it has been logged.".into(),
                Value::Null,
            ),
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        Self::Validation(vec![e])
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound,
            StoreError::Conflict(what) => {
                Self::conflict("conflict", format!("That {what} is already in use."))
            }
            other => Self::Internal(anyhow::Error::new(other)),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, details) = self.parts();
        if let Self::Internal(e) = &self {
            tracing::error!(error = ?e, "request failed");
        }
        let mut body = json!({ "error": { "code": code, "message": message } });
        if !details.is_null() {
            body["error"]["details"] = details;
        }
        let mut resp = (status, Json(body)).into_response();
        match self {
            Self::TooManyRequests { retry_after_secs } => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            Self::Unauthorized { .. } => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        resp
    }
}
