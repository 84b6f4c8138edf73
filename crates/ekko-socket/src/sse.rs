//! GraphQL over Server-Sent Events, "distinct connections" mode (graphql-sse): a GraphQL
//! request (POST JSON body, or GET parameters) with `Accept: text/event-stream` on the GraphQL
//! path is answered with an event stream: one `next` event per result, then `complete`.
//!
//! Errors found before execution (validation, a device the caller may not see) arrive as a
//! `next` event with `errors`, then `complete`, as the protocol requires. A slow subscriber's
//! overflow error, or its token's expiry, is the last `next` before `complete`. The client
//! cancels by closing the connection, which drops the subscription.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

use async_graphql::Response as GqlResponse;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use ekko_api::http::{MAX_GRAPHQL_BODY, invalid_token_response};
use ekko_api::{OperationKind, RequestAuth, SubscriptionReady, operation_kind};
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt};
use serde_json::json;

use crate::auth::{self, TOKEN_EXPIRED_REASON};
use crate::phoenix::SocketState;
use crate::phoenix::channel::{response_json, setup};

/// Whether a request asks for an event stream.
pub fn wants_event_stream(req: &Request) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"))
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(
            json!({"errors": [{"message": message, "extensions": {"code": "BAD_REQUEST"}}]}),
        ),
    )
        .into_response()
}

fn next(response: GqlResponse) -> Event {
    Event::default()
        .event("next")
        .data(response_json(response).to_string())
}

fn complete() -> Event {
    Event::default().event("complete").data("")
}

/// Answers a GraphQL request with an event stream.
pub async fn handle(state: SocketState, req: Request) -> Response {
    let method = req.method().clone();
    let headers = req.headers().clone();
    let authn = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => match auth::authenticate(&state.tokens, v.to_str().unwrap_or("")) {
            Ok(a) => Some(a),
            Err(e) => return invalid_token_response(&e),
        },
    };
    let request: async_graphql::Request = if method == Method::GET {
        match async_graphql::http::parse_query_string(req.uri().query().unwrap_or("")) {
            Ok(r) => r,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("malformed GraphQL GET request: {e}"),
                );
            }
        }
    } else if method == Method::POST {
        let body: Bytes = match axum::body::to_bytes(req.into_body(), MAX_GRAPHQL_BODY).await {
            Ok(b) => b,
            Err(_) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("the request body is larger than {MAX_GRAPHQL_BODY} bytes"),
                );
            }
        };
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "the body must be a JSON object {{\"query\": ..., \"variables\": ...}}: {e}"
                    ),
                );
            }
        }
    } else {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "GraphQL over SSE takes GET or POST",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
        return r;
    };
    let kind = operation_kind(&request.query, request.operation_name.as_deref());
    if method == Method::GET && kind == Ok(OperationKind::Mutation) {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "mutations must be sent with POST",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let expires_at = authn.as_ref().and_then(|a| a.expires_at);
    let request = request.data(RequestAuth(authn.map(|a| a.caller)));
    let schema = state.schema.clone();
    let results: BoxStream<'static, GqlResponse> = if kind == Ok(OperationKind::Subscription) {
        let (ready, ready_rx) = SubscriptionReady::new();
        let stream = schema.execute_stream(request.data(ready));
        match setup(stream, ready_rx).await {
            Ok(s) => s,
            Err(refused) => stream::once(async move { refused }).boxed(),
        }
    } else {
        stream::once(async move { schema.execute(request).await }).boxed()
    };
    let events = events(results, expires_at);
    let response = match state.config.keepalive {
        // Comment lines (":") that every SSE parser skips.
        Some(every) => Sse::new(events)
            .keep_alive(KeepAlive::new().interval(every))
            .into_response(),
        None => Sse::new(events).into_response(),
    };
    let mut response = response;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

type Expiry = Pin<Box<dyn Future<Output = ()> + Send>>;

/// `next` per result, then `complete`; when the token expires first, a last `next` saying so.
fn events(
    results: BoxStream<'static, GqlResponse>,
    expires_at: Option<tokio::time::Instant>,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let expiry: Expiry = Box::pin(auth::until(expires_at));
    stream::unfold(Some((results, expiry)), |state| async move {
        let (mut results, mut expiry) = state?;
        tokio::select! {
            item = results.next() => match item {
                Some(r) => Some((Ok(next(r)), Some((results, expiry)))),
                None => Some((Ok(complete()), None)),
            },
            _ = &mut expiry => {
                let expired = GqlResponse::from_errors(vec![async_graphql::ServerError::new(
                    TOKEN_EXPIRED_REASON,
                    None,
                )]);
                let never: Expiry = Box::pin(std::future::pending());
                Some((Ok(next(expired)), Some((stream::empty().boxed(), never))))
            }
        }
    })
}
