//! The gateway's one error type, answered as an RFC 9457 problem body (`application/problem+json`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ekko_core::DomainError;

#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub status: StatusCode,
    pub detail: String,
}

impl Problem {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem {
            status: StatusCode::BAD_REQUEST,
            detail: detail.into(),
        }
    }
}

impl From<DomainError> for Problem {
    fn from(e: DomainError) -> Self {
        let status = match &e {
            // Devices cannot act on 404 vs 403; "the request was wrong" is what they need to know.
            DomainError::Invalid { .. } | DomainError::NotFound(_) | DomainError::Conflict(_) => {
                StatusCode::BAD_REQUEST
            }
            DomainError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            DomainError::Forbidden(_) => StatusCode::FORBIDDEN,
            // Storage trouble: 503 tells the device to keep the record and retry.
            DomainError::Internal(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Problem {
            status,
            detail: e.to_string(),
        }
    }
}

impl Problem {
    /// The problem body plus an `errors` member: one `{index, detail}` per refused item of a
    /// batch (e.g. CloudConnect events), so a sender learns every problem at once.
    pub fn with_errors(self, errors: &[(usize, String)]) -> Response {
        let list: Vec<serde_json::Value> = errors
            .iter()
            .map(|(index, detail)| serde_json::json!({"index": index, "detail": detail}))
            .collect();
        self.respond(Some(list.into()))
    }

    fn respond(self, errors: Option<serde_json::Value>) -> Response {
        let mut body = serde_json::json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(errors) = errors {
            body["errors"] = errors;
        }
        let mut r = (self.status, axum::Json(body)).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        r
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        self.respond(None)
    }
}
