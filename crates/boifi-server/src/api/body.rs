//! Reading a policy from a request body: JSON, or YAML by `Content-Type`.

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use boifi_core::policy::{parse_policies_yaml, parse_policy_json, PolicyDocument, PolicyError};

use crate::error::ApiFailure;

/// The body formats the API reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/json` (also when no `Content-Type` is given).
    Json,
    /// `application/yaml`, `application/x-yaml`, `text/yaml` or `text/x-yaml`.
    Yaml,
    /// `text/plain` or `application/x-www-form-urlencoded` (curl's default): JSON if the body
    /// starts with `{`, else YAML.
    Sniff,
}

/// The format named by the request's `Content-Type`.
pub fn body_format(req: &HttpRequest) -> Result<BodyFormat, ApiFailure> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(BodyFormat::Json);
    };
    let text = value.to_str().unwrap_or("");
    let mime = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" | "text/json" | "" => Ok(BodyFormat::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => {
            Ok(BodyFormat::Yaml)
        }
        // `curl -d @policy.json` without `-H` sends this; legacy scripts do.
        "application/x-www-form-urlencoded" | "text/plain" => Ok(BodyFormat::Sniff),
        _ => Err(ApiFailure::UnsupportedMediaType(text.to_owned())),
    }
}

/// Reads the whole body, refusing more than `limit` bytes with 413.
pub async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiFailure> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Err(ApiFailure::PayloadTooLarge { limit });
    }
    match payload.to_bytes_limited(limit).await {
        Err(_) => Err(ApiFailure::PayloadTooLarge { limit }),
        Ok(Err(e)) => Err(ApiFailure::bad_request(
            "invalid_body",
            format!("the request body could not be read: {e}"),
        )),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

fn policy_failure(kind: &'static str, errors: Vec<PolicyError>) -> ApiFailure {
    let several = errors.len() > 1;
    let mut details = Vec::new();
    let mut names = Vec::new();
    for error in &errors {
        match error {
            PolicyError::Invalid {
                document,
                name,
                errors,
            } => {
                if let Some(n) = name {
                    names.push(format!("`{n}`"));
                }
                for e in &errors.0 {
                    if several {
                        details.push(format!("document {document}: {e}"));
                    } else {
                        details.push(e.to_string());
                    }
                }
            }
            other => details.push(other.to_string()),
        }
    }
    let syntax = errors
        .iter()
        .any(|e| matches!(e, PolicyError::Syntax { .. }));
    let message = if syntax {
        let format = if kind == "invalid_yaml" {
            "YAML"
        } else {
            "JSON"
        };
        format!("request body is not valid {format}: {}", details.join("; "))
    } else if names.is_empty() {
        format!("invalid policy: {}", details.join("; "))
    } else {
        format!(
            "invalid policy {}: {}",
            names.join(", "),
            details.join("; ")
        )
    };
    ApiFailure::BadRequest {
        kind: if syntax { kind } else { "invalid_policy" },
        message,
        details,
    }
}

/// Parses exactly one policy from `bytes` in `format`; every problem is reported with its
/// field path in `details`.
pub fn parse_one(format: BodyFormat, bytes: &[u8]) -> Result<PolicyDocument, ApiFailure> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ApiFailure::bad_request(
            "invalid_body",
            format!(
                "request body is not UTF-8: invalid byte at offset {}",
                e.valid_up_to()
            ),
        )
    })?;
    if text.trim().is_empty() {
        return Err(ApiFailure::bad_request(
            "invalid_body",
            "request body is empty: send one policy document",
        ));
    }
    let format = match format {
        BodyFormat::Sniff if text.trim_start().starts_with('{') => BodyFormat::Json,
        BodyFormat::Sniff => BodyFormat::Yaml,
        other => other,
    };
    match format {
        BodyFormat::Json | BodyFormat::Sniff => {
            parse_policy_json(text).map_err(|e| policy_failure("invalid_json", vec![e]))
        }
        BodyFormat::Yaml => {
            let mut policies =
                parse_policies_yaml(text).map_err(|e| policy_failure("invalid_yaml", e))?;
            match policies.len() {
                1 => policies
                    .pop()
                    .ok_or_else(|| ApiFailure::Internal("parsed policy vanished".to_owned())),
                n => Err(ApiFailure::bad_request(
                    "invalid_body",
                    format!("expected exactly one policy document, found {n}"),
                )),
            }
        }
    }
}
