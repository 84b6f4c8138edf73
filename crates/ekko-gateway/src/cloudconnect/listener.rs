//! `POST /ingest/cloudconnect`: authenticate the integration, decode, authorize every event,
//! store them in order (each durable before the next), then answer 200.

use std::collections::{HashMap, HashSet};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ekko_core::integration::IntegrationCaller;
use ekko_core::track::{MAX_RECORDS_PER_BATCH, TrackRecord};
use ekko_core::{Ekko, Imei};

use super::decode::{Batch, DecodeError, Event, decode_batch};
use crate::problem::Problem;

/// Where Munic's webhook (or anything speaking its format) posts.
pub const PATH: &str = "/ingest/cloudconnect";
/// Largest request body accepted.
pub const MAX_BODY: usize = 8 * 1024 * 1024;
/// The protocol name recorded for pending devices and presence events.
pub const PROTOCOL: &str = "cloudconnect";

/// The route, to merge into the main API router.
pub fn router(ekko: Ekko) -> Router {
    Router::new()
        .route(PATH, post(handle))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(ekko)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

async fn handle(State(ekko): State<Ekko>, headers: HeaderMap, body: Bytes) -> Response {
    let integration = match ekko
        .authenticate_integration(bearer(&headers).unwrap_or(""))
        .await
    {
        Ok(i) => i,
        Err(e) => {
            let mut r = Problem::from(e).into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ekko-cloudconnect\""),
            );
            return r;
        }
    };
    let batch = match decode_batch(&body) {
        Ok(b) => b,
        Err(DecodeError::Body(detail)) => return Problem::bad_request(detail).into_response(),
        Err(DecodeError::Events(errors)) => {
            let list: Vec<(usize, String)> =
                errors.into_iter().map(|e| (e.index, e.detail)).collect();
            return Problem::bad_request(format!(
                "{} event(s) are malformed; nothing was stored",
                list.len()
            ))
            .with_errors(&list);
        }
    };
    match ingest(&ekko, &integration, batch).await {
        Ok(r) => r,
        Err(r) => r,
    }
}

async fn ingest(
    ekko: &Ekko,
    integration: &IntegrationCaller,
    batch: Batch,
) -> Result<Response, Response> {
    // Authorize every event before storing any: a refused batch stores nothing. Each device
    // is judged once, with the integration's rights computed once for the whole request.
    let mut devices: Vec<Imei> = Vec::new();
    let mut seen: HashSet<&Imei> = HashSet::new();
    for (_, event) in &batch.events {
        if seen.insert(event.imei()) {
            devices.push(event.imei().clone());
        }
    }
    let verdicts: HashMap<Imei, Result<(), String>> = match ekko
        .authorize_integration_devices(integration, &devices, PROTOCOL)
        .await
    {
        Ok(v) => devices
            .into_iter()
            .zip(v)
            .map(|(imei, verdict)| (imei, verdict.map_err(|e| e.to_string())))
            .collect(),
        Err(e) => return Err(Problem::from(e).into_response()),
    };
    let mut refused = Vec::new();
    for (index, event) in &batch.events {
        if let Some(Err(detail)) = verdicts.get(event.imei()) {
            refused.push((*index, detail.clone()));
        }
    }
    if !refused.is_empty() {
        return Err(Problem {
            status: StatusCode::FORBIDDEN,
            detail: format!(
                "{} event(s) name devices this integration may not push for; nothing was stored",
                refused.len()
            ),
        }
        .with_errors(&refused));
    }
    let total = batch.events.len();
    // Consecutive tracks are stored together, in one transaction (resends are de-duplicated).
    let mut tracks: Vec<TrackRecord> = Vec::new();
    let mut run_start = 0;
    let mut stored = 0;
    let mut events = batch.events.into_iter().peekable();
    while let Some((index, event)) = events.next() {
        let (at, result) = match event {
            Event::Track { record, .. } => {
                if tracks.is_empty() {
                    run_start = index;
                }
                tracks.push(record);
                let run_goes_on = matches!(events.peek(), Some((_, Event::Track { .. })));
                if run_goes_on && tracks.len() < MAX_RECORDS_PER_BATCH {
                    continue;
                }
                let records = std::mem::take(&mut tracks);
                let n = records.len();
                (run_start, ekko.ingest_tracks(records).await.map(|_| n))
            }
            Event::Presence {
                imei,
                kind,
                reason,
                protocol,
                ..
            } => (
                index,
                ekko.record_presence(&imei, kind, reason.as_deref(), protocol.as_deref())
                    .await
                    .map(|_| 1),
            ),
            Event::Message { message, .. } => {
                (index, ekko.ingest_message(message).await.map(|_| 1))
            }
            Event::Poke { poke, .. } => (index, ekko.ingest_poke(poke).await.map(|_| 1)),
        };
        match result {
            Ok(n) => stored += n,
            Err(e) => {
                // Events before this one are stored (each commit is durable on its own), so
                // the answer must not look like a refused batch (400/403: nothing stored):
                // 503 for storage trouble, 409 for a device that changed (suspended, moved,
                // deleted) after the batch was authorized.
                let mut p = Problem::from(e);
                if p.status != StatusCode::SERVICE_UNAVAILABLE {
                    p.status = StatusCode::CONFLICT;
                }
                p.detail = format!(
                    "event {at} was not stored: {}; the {stored} event(s) before it (of {total}) were stored",
                    p.detail
                );
                return Err(p.with_errors(&[(at, "not stored".into())]));
            }
        }
    }
    let skipped: Vec<serde_json::Value> = batch
        .skipped
        .iter()
        .map(|s| serde_json::json!({"index": s.index, "reason": s.reason}))
        .collect();
    Ok((
        StatusCode::OK,
        axum::Json(serde_json::json!({"stored": total, "skipped": skipped})),
    )
        .into_response())
}
