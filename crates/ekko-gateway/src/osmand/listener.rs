//! The OsmAnd HTTP listener: decode, ingest (durable), then answer 200.
//!
//! Any path is accepted (clients are configured with a bare server URL). 200 means the record
//! is stored; 400 names what is wrong (the device should not resend it); 503 means storage is
//! unavailable (the device keeps the record and retries).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use ekko_core::track::TrackRecord;
use ekko_core::{DomainError, Ekko, Imei};

use super::decode::{Report, decode_json, decode_params};
use crate::presence::PresenceTracker;
use crate::problem::Problem;

/// Largest request body accepted (a Traccar Client JSON report is well under 2 KiB).
pub const MAX_BODY: usize = 64 * 1024;

pub fn router(ekko: Ekko) -> Router {
    Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(ekko)
}

fn is_json(headers: &HeaderMap, body: &[u8]) -> bool {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ct.contains("json") || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

fn report_from_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Report, Problem> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("multipart/") {
        return Err(Problem {
            status: axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            detail: "multipart bodies are not an OsmAnd form: send a query string, a form body (application/x-www-form-urlencoded) or JSON".into(),
        });
    }
    if *method == Method::POST && is_json(headers, body) {
        return decode_json(body);
    }
    let mut params: Vec<(String, String)> =
        serde_urlencoded::from_str(uri.query().unwrap_or(""))
            .map_err(|e| Problem::bad_request(format!("the query string is malformed: {e}")))?;
    if *method == Method::POST && !body.is_empty() {
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| Problem::bad_request(format!("the form body is malformed: {e}")))?;
        params.extend(form);
    }
    decode_params(&params)
}

async fn handle(
    State(ekko): State<Ekko>,
    presence: Option<Extension<Arc<PresenceTracker>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::GET && method != Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, POST")],
        )
            .into_response();
    }
    let presence = presence.as_ref().map(|p| p.0.as_ref());
    match ingest(&ekko, presence, &method, &uri, &headers, &body).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(p) => {
            tracing::debug!(status = %p.status, detail = %p.detail, "refused an OsmAnd report");
            p.into_response()
        }
    }
}

async fn ingest(
    ekko: &Ekko,
    presence: Option<&PresenceTracker>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Problem> {
    let mut report = report_from_request(method, uri, headers, body)?;
    if report.device_key.is_none() {
        // The JSON form's key comes in the URL (Traccar Client keeps a server URL's query).
        report.device_key =
            serde_urlencoded::from_str::<Vec<(String, String)>>(uri.query().unwrap_or(""))
                .ok()
                .and_then(|q| q.into_iter().find(|(k, _)| k.eq_ignore_ascii_case("key")))
                .map(|(_, v)| v.trim().to_owned());
    }
    let imei = Imei::parse(&report.device_id).map_err(|_| {
        let shown: String = report.device_id.chars().take(32).collect();
        Problem::bad_request(format!(
            "device '{shown}' is not registered (Ekko device ids are 15-digit IMEIs)"
        ))
    })?;
    ekko.check_device_key(&imei, report.device_key.as_deref())
        .await
        .map_err(Problem::from)?;
    let record = TrackRecord {
        imei: imei.clone(),
        recorded_at: report.recorded_at.unwrap_or_else(ekko_core::time::now_ms),
        coordinates: report.coordinates,
        fields: report.fields,
    };
    if let Some(p) = presence {
        // The first record after a silence is preceded by a `connect` presence event.
        p.heard(&imei).await;
    }
    match ekko.ingest_track(record).await {
        Ok(_) => Ok(()),
        Err(e @ DomainError::NotFound(_)) => {
            // Unregistered: refused, and counted for `ekko device pending`.
            ekko.record_unknown_device(&imei, "osmand").await;
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}
