//! The API's errors and how they map to HTTP: every error answer is a
//! [`boifi_core::wire::ApiError`] (`{"error","message","details","code"}`).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use boifi_core::wire::ApiError;

use crate::store::StoreError;

/// Why a request failed. Client mistakes are 4xx with a message naming the problem; server
/// failures are 5xx and never leak internal details (those are logged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiFailure {
    /// 400: the request is malformed or the policy invalid.
    #[error("{message}")]
    BadRequest {
        /// Machine-readable kind, e.g. `invalid_policy`.
        kind: &'static str,
        /// What is wrong.
        message: String,
        /// Each problem, e.g. every field error with its path.
        details: Vec<String>,
    },
    /// 401: no or a wrong bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a known token that may not do this, or a target outside what may be targeted.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 405, with the methods the resource does allow (sent as `Allow`, RFC 9110 15.5.6).
    #[error("{message}")]
    MethodNotAllowed {
        /// What was asked.
        message: String,
        /// The resource's methods, e.g. `GET, PUT, DELETE`.
        allow: &'static str,
    },
    /// 409: strict create of an existing name.
    #[error("{0}")]
    Conflict(String),
    /// 412: `If-Match` did not hold.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 413.
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// 415.
    #[error("content type `{0}` is not supported: send `application/json` or `application/yaml`")]
    UnsupportedMediaType(String),
    /// 503: the store is unreachable or not loaded.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a server fault; the text is logged, never sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiFailure {
    /// A 400 without details.
    pub fn bad_request(kind: &'static str, message: impl Into<String>) -> ApiFailure {
        ApiFailure::BadRequest {
            kind,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// The `error` field of the answer.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiFailure::BadRequest { kind, .. } => kind,
            ApiFailure::Unauthorized(_) => "unauthorized",
            ApiFailure::Forbidden(_) => "forbidden",
            ApiFailure::NotFound(_) => "not_found",
            ApiFailure::MethodNotAllowed { .. } => "method_not_allowed",
            ApiFailure::Conflict(_) => "already_exists",
            ApiFailure::PreconditionFailed(_) => "revision_mismatch",
            ApiFailure::PayloadTooLarge { .. } => "payload_too_large",
            ApiFailure::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiFailure::Unavailable(_) => "unavailable",
            ApiFailure::Internal(_) => "internal",
        }
    }

    /// The answer body.
    pub fn to_api_error(&self) -> ApiError {
        ApiError {
            error: self.kind().to_owned(),
            message: self.to_string(),
            details: match self {
                ApiFailure::BadRequest { details, .. } => details.clone(),
                _ => Vec::new(),
            },
            code: self.status_code().as_u16(),
        }
    }
}

impl From<StoreError> for ApiFailure {
    fn from(e: StoreError) -> ApiFailure {
        match e {
            StoreError::NotFound { .. } => ApiFailure::NotFound(e.to_string()),
            StoreError::AlreadyExists { .. } => ApiFailure::Conflict(e.to_string()),
            StoreError::RevisionMismatch { .. } => ApiFailure::PreconditionFailed(e.to_string()),
            StoreError::Unavailable(_) => ApiFailure::Unavailable(e.to_string()),
            StoreError::Backend(_) => ApiFailure::Internal(e.to_string()),
        }
    }
}

/// `Retry-After` of every 503.
pub const RETRY_AFTER_SECONDS: &str = "1";

impl ResponseError for ApiFailure {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiFailure::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiFailure::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiFailure::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiFailure::NotFound(_) => StatusCode::NOT_FOUND,
            ApiFailure::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiFailure::Conflict(_) => StatusCode::CONFLICT,
            ApiFailure::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiFailure::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiFailure::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiFailure::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiFailure::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiFailure::Internal(detail) = self {
            tracing::error!(error = %detail, "internal error");
        }
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiFailure::Unauthorized(_)) {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        if let ApiFailure::MethodNotAllowed { allow, .. } = self {
            response.insert_header((header::ALLOW, *allow));
        }
        // A refusal the caller should retry (the store lost etcd, a leader election): etcd
        // elects a new leader within about a second.
        if matches!(self, ApiFailure::Unavailable(_)) {
            response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECONDS));
        }
        response.json(self.to_api_error())
    }
}
