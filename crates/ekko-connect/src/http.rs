//! Connect's HTTP surface: `POST /oauth/token`, `GET /.well-known/jwks.json`, and (from
//! [`crate::api`] and [`crate::web`]) applications, revoke, introspect, token info, discovery,
//! users, and the browser pages of the authorization-code flow.
//!
//! The token endpoint takes JSON, `application/x-www-form-urlencoded` and `multipart/form-data`
//! bodies (Munic documents JSON and `curl -F`; OAuth libraries send forms). Parameters may be
//! JSON strings or numbers. The request body is never logged.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::OAuthError;
use crate::tokens::TokenService;

/// Largest token request body accepted.
pub const MAX_TOKEN_BODY: usize = 16 * 1024;

pub fn router(tokens: Arc<TokenService>) -> Router {
    Router::new()
        .route("/oauth/token", post(token_endpoint))
        .route("/.well-known/jwks.json", get(jwks))
        .merge(crate::api::routes())
        .merge(crate::web::routes())
        .with_state(tokens)
}

/// The caller's IP address, when the server was started with connect info.
pub(crate) fn client_ip(req: &Request) -> Option<std::net::IpAddr> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

async fn jwks(State(tokens): State<Arc<TokenService>>) -> Response {
    let mut r = axum::Json(tokens.keys().jwks()).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

pub(crate) type Params = HashMap<String, String>;

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

fn params_from_json(body: &[u8]) -> Result<Params, OAuthError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| OAuthError::invalid_request(format!("the body is not valid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| OAuthError::invalid_request("the JSON body must be an object"))?;
    let mut out = Params::new();
    for (k, v) in obj {
        let s = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Null => continue,
            _ => {
                return Err(OAuthError::invalid_request(format!(
                    "parameter '{k}' must be a string"
                )));
            }
        };
        out.insert(k.clone(), s);
    }
    Ok(out)
}

fn params_from_form(body: &[u8]) -> Result<Params, OAuthError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|e| OAuthError::invalid_request(format!("the form body is malformed: {e}")))?;
    let mut out = Params::new();
    for (k, v) in pairs {
        // RFC 6749 §3.2: parameters must not be repeated.
        if out.insert(k.clone(), v).is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter '{k}' is repeated"
            )));
        }
    }
    Ok(out)
}

async fn params_from_multipart(req: Request) -> Result<Params, OAuthError> {
    let mut mp = Multipart::from_request(req, &()).await.map_err(|e| {
        OAuthError::invalid_request(format!("the multipart body is malformed: {e}"))
    })?;
    let mut out = Params::new();
    while let Some(field) = mp
        .next_field()
        .await
        .map_err(|e| OAuthError::invalid_request(format!("the multipart body is malformed: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        let text = field
            .text()
            .await
            .map_err(|e| OAuthError::invalid_request(format!("multipart field '{name}': {e}")))?;
        out.insert(name, text);
    }
    Ok(out)
}

pub(crate) async fn read_params(req: Request) -> Result<Params, OAuthError> {
    let ct = content_type(req.headers());
    if ct == "multipart/form-data" {
        return params_from_multipart(req).await;
    }
    let body: Bytes = axum::body::to_bytes(req.into_body(), MAX_TOKEN_BODY)
        .await
        .map_err(|_| {
            OAuthError::invalid_request(format!("the body is larger than {MAX_TOKEN_BODY} bytes"))
        })?;
    match ct.as_str() {
        "application/json" => params_from_json(&body),
        "application/x-www-form-urlencoded" => params_from_form(&body),
        // No Content-Type: guess from the first byte rather than refuse a curl one-liner.
        "" if body.first() == Some(&b'{') => params_from_json(&body),
        "" => params_from_form(&body),
        other => Err(OAuthError::invalid_request(format!(
            "unsupported Content-Type '{other}'; send application/json, application/x-www-form-urlencoded or multipart/form-data"
        ))),
    }
}

pub(crate) fn required<'a>(p: &'a Params, name: &str) -> Result<&'a str, OAuthError> {
    p.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OAuthError::invalid_request(format!("missing required parameter '{name}'")))
}

async fn token_endpoint(State(tokens): State<Arc<TokenService>>, req: Request) -> Response {
    match handle_token(&tokens, req).await {
        Ok(body) => {
            let mut r = axum::Json(body).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r.headers_mut()
                .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            r
        }
        Err(e) => e.into_response(),
    }
}

async fn handle_token(
    tokens: &TokenService,
    req: Request,
) -> Result<crate::tokens::TokenResponse, OAuthError> {
    let ip = client_ip(&req);
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let p = read_params(req).await?;
    let grant = required(&p, "grant_type")?;
    let presented = crate::clients::presented(authorization.as_deref(), &p)?;
    let client = crate::clients::authenticate(tokens.registry(), presented).await?;
    let scope = p.get("scope").map(String::as_str);
    match grant {
        "password" => {
            let username = required(&p, "username")?;
            let password = required(&p, "password")?;
            tokens
                .password_grant(client, username, password, scope, ip)
                .await
        }
        "refresh_token" => {
            tokens
                .refresh_grant(client, required(&p, "refresh_token")?, scope)
                .await
        }
        "client_credentials" => tokens.client_credentials_grant(client, scope).await,
        "authorization_code" => {
            tokens
                .authorization_code_grant(
                    client,
                    required(&p, "code")?,
                    p.get("redirect_uri").map(String::as_str),
                    p.get("code_verifier").map(String::as_str),
                )
                .await
        }
        other => Err(OAuthError::unsupported_grant_type(format!(
            "grant_type '{other}' is not supported; use password, refresh_token, client_credentials or authorization_code"
        ))),
    }
}
