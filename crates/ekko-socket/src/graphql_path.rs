//! Transports served on the GraphQL path itself (`/services/ekko/v2/graphql`), in front of
//! GraphQL over HTTP: a WebSocket upgrade goes to [`crate::graphql_ws`], a request that accepts
//! `text/event-stream` to [`crate::sse`]; everything else passes through to the HTTP handler.
//!
//! Wiring: `ekko_api::http::router(..).layer(axum::middleware::from_fn_with_state(state, intercept))`.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::phoenix::SocketState;

fn is_websocket_upgrade(method: &Method, headers: &HeaderMap) -> bool {
    *method == Method::GET
        && headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The middleware: routes upgrades and event-stream requests, passes the rest on.
pub async fn intercept(State(state): State<SocketState>, req: Request, next: Next) -> Response {
    if is_websocket_upgrade(req.method(), req.headers()) {
        let (mut parts, _body) = req.into_parts();
        let ws = axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &state).await;
        return crate::graphql_ws::upgrade(state, parts.headers, ws).await;
    }
    if crate::sse::wants_event_stream(&req) {
        return crate::sse::handle(state, req).await;
    }
    next.run(req).await
}
