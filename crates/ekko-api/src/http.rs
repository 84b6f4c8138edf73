//! GraphQL over HTTP at `/services/ekko/v2/graphql`.
//!
//! - `POST` with a JSON body `{query, variables?, operationName?, extensions?}`.
//! - `GET` with `?query=...&variables=...&operationName=...` (queries only: a mutation over GET
//!   is refused with 405, as GraphQL-over-HTTP requires).
//! - `GET` from a browser (`Accept: text/html`, no `query`): the GraphiQL editor. Its header
//!   editor takes `{"Authorization": "Bearer <token>"}`.
//!
//! Auth: no `Authorization` header means anonymous (introspection works; data needs a token).
//! A header whose token is invalid, expired or tampered gets HTTP 401 with
//! `WWW-Authenticate: Bearer error="invalid_token"` and a GraphQL-shaped error body.

use std::sync::Arc;

use async_graphql::http::GraphiQLSource;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use ekko_connect::{AuthError, TokenService};

use crate::{EkkoSchema, OperationKind, RequestAuth, operation_kind};

pub const GRAPHQL_PATH: &str = "/services/ekko/v2/graphql";
pub const SOCKET_PATH: &str = "/services/ekko/v2/socket/websocket";
/// Largest GraphQL request body accepted.
pub const MAX_GRAPHQL_BODY: usize = 1024 * 1024;

#[derive(Clone)]
pub struct ApiState {
    pub schema: EkkoSchema,
    pub tokens: Arc<TokenService>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route(GRAPHQL_PATH, get(graphql_get).post(graphql_post))
        .with_state(state)
}

/// Reads the caller from an `Authorization` header. `Ok(None)`: no header (anonymous).
pub fn authenticate(
    tokens: &TokenService,
    headers: &HeaderMap,
) -> Result<Option<ekko_core::Caller>, AuthError> {
    match headers.get(header::AUTHORIZATION) {
        None => Ok(None),
        Some(v) => {
            let v = v.to_str().map_err(|_| AuthError::Malformed)?;
            tokens.verify_authorization(v).map(Some)
        }
    }
}

fn error_body(message: &str, code: &str) -> serde_json::Value {
    serde_json::json!({ "errors": [ { "message": message, "extensions": { "code": code } } ] })
}

/// 401 for a bad token, per RFC 6750 §3.
pub fn invalid_token_response(e: &AuthError) -> Response {
    let msg = e.to_string();
    // RFC 6750 §3: error_description is printable ASCII without '"' or '\\'. The message can
    // quote attacker-chosen text (a header's `alg`), so it is filtered and bounded here.
    let description: String = msg
        .chars()
        .map(|c| if c == '"' || c == '\\' { '\'' } else { c })
        .filter(|c| (' '..='~').contains(c))
        .take(200)
        .collect();
    let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{description}\"");
    let mut r = (
        StatusCode::UNAUTHORIZED,
        axum::Json(error_body(&msg, "UNAUTHENTICATED")),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

fn bad_request(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(error_body(message, "BAD_REQUEST"))).into_response()
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

fn graphiql() -> Response {
    Html(
        GraphiQLSource::build()
            .endpoint(GRAPHQL_PATH)
            .title("Ekko GraphQL editor (GraphiQL)")
            .finish(),
    )
    .into_response()
}

async fn execute(
    state: &ApiState,
    headers: &HeaderMap,
    request: async_graphql::Request,
    method: &Method,
) -> Response {
    let caller = match authenticate(&state.tokens, headers) {
        Ok(c) => c,
        Err(e) => return invalid_token_response(&e),
    };
    match operation_kind(&request.query, request.operation_name.as_deref()) {
        Ok(OperationKind::Mutation) if method == Method::GET => {
            let mut r = bad_request(
                StatusCode::METHOD_NOT_ALLOWED,
                "mutations must be sent with POST",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return r;
        }
        Ok(OperationKind::Subscription) => {
            return bad_request(
                StatusCode::BAD_REQUEST,
                "subscriptions need a socket: use the Phoenix channel socket at /services/ekko/v2/socket/websocket",
            );
        }
        // Parse errors and unknown operation names are reported by the executor, in GraphQL form.
        _ => {}
    }
    let response = state
        .schema
        .execute(request.data(RequestAuth(caller)))
        .await;
    axum::Json(response).into_response()
}

async fn graphql_get(State(state): State<ApiState>, req: Request) -> Response {
    let query = req.uri().query().unwrap_or("");
    let headers = req.headers().clone();
    if wants_html(&headers) && !query.split('&').any(|kv| kv.starts_with("query=")) {
        return graphiql();
    }
    if query.is_empty() {
        return bad_request(
            StatusCode::BAD_REQUEST,
            "send a GraphQL request: POST a JSON body {\"query\": ...}, or GET with ?query=...",
        );
    }
    match async_graphql::http::parse_query_string(query) {
        Ok(request) => execute(&state, &headers, request, &Method::GET).await,
        Err(e) => bad_request(
            StatusCode::BAD_REQUEST,
            &format!("malformed GraphQL GET request: {e}"),
        ),
    }
}

async fn graphql_post(State(state): State<ApiState>, req: Request) -> Response {
    let headers = req.headers().clone();
    let body: Bytes = match axum::body::to_bytes(req.into_body(), MAX_GRAPHQL_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return bad_request(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the request body is larger than {MAX_GRAPHQL_BODY} bytes"),
            );
        }
    };
    // GraphQL-over-HTTP: the body is an object with a string `query`. Anything else (an array,
    // a bare string, `{}`) is a malformed request, not a document to parse.
    let shape_ok = matches!(
        serde_json::from_slice::<serde_json::Value>(&body),
        Ok(serde_json::Value::Object(ref o)) if o.get("query").is_some_and(serde_json::Value::is_string)
    );
    if !shape_ok {
        return bad_request(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object with a string \"query\" (and optional \"variables\", \"operationName\")",
        );
    }
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return bad_request(
                StatusCode::BAD_REQUEST,
                &format!(
                    "the body must be a JSON object {{\"query\": ..., \"variables\": ...}}: {e}"
                ),
            );
        }
    };
    execute(&state, &headers, request, &Method::POST).await
}
