//! Connect's JSON endpoints besides the token endpoint: applications, revoke (RFC 7009),
//! introspect (RFC 7662), token info (Doorkeeper's shape), OpenID discovery, and users
//! (sign-up, `me.json`, password change). Errors are RFC 6749-shaped ([`OAuthError`]).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ekko_core::account::Account;
use ekko_core::oauth::{Application, NewApplication};
use ekko_core::time::{now_ms, rfc3339};
use ekko_core::{Caller, DomainError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::OAuthError;
use crate::http::{MAX_TOKEN_BODY, Params, client_ip, read_params, required};
use crate::tokens::{SUPPORTED_SCOPES, TokenService, bearer_token, sha256_hex};

type S = State<Arc<TokenService>>;

pub fn routes() -> Router<Arc<TokenService>> {
    Router::new()
        .route(
            "/oauth/applications",
            post(create_application).get(list_applications),
        )
        .route("/oauth/revoke", post(revoke))
        .route("/oauth/introspect", post(introspect))
        .route("/oauth/token/info", get(token_info))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/oauth-authorization-server", get(discovery))
        .route("/api/v1/users", post(sign_up))
        .route("/api/v1/users/me.json", get(me))
        .route("/api/v1/users/me", get(me))
        .route("/oauth/userinfo", get(me))
        .route(
            "/api/v1/users/password",
            post(change_password).put(change_password),
        )
}

fn json_no_store(status: StatusCode, body: Value) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn respond(r: Result<Response, OAuthError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

/// Domain errors on these endpoints, converted in one place.
fn from_domain(e: DomainError) -> OAuthError {
    match e {
        DomainError::Invalid { .. } => OAuthError::invalid_request(e.to_string()),
        DomainError::Conflict(m) => {
            let mut err = OAuthError::invalid_request(m);
            err.status = StatusCode::CONFLICT;
            err
        }
        DomainError::NotFound(m) => OAuthError::not_found(m),
        DomainError::Unauthenticated(m) => OAuthError::invalid_token(m),
        DomainError::Forbidden(m) => OAuthError::unauthorized_client_403(m),
        DomainError::Internal(m) => OAuthError::server_error(m),
    }
}

/// The user behind a bearer token (header, or `access_token` query parameter).
fn bearer_caller(tokens: &TokenService, req: &Request) -> Result<Caller, OAuthError> {
    let token = bearer_from(req)
        .ok_or_else(|| OAuthError::invalid_token("send 'Authorization: Bearer <access token>'"))?;
    tokens
        .verify_access_token(&token)
        .map_err(|e| OAuthError::invalid_token(e.to_string()))
}

fn bearer_from(req: &Request) -> Option<String> {
    if let Some(v) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return bearer_token(v).map(str::to_owned);
    }
    let q = req.uri().query()?;
    serde_urlencoded::from_str::<Vec<(String, String)>>(q)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "access_token" || k == "bearer_token")
        .map(|(_, v)| v)
}

async fn json_body<T: for<'de> Deserialize<'de>>(req: Request) -> Result<T, OAuthError> {
    let body = axum::body::to_bytes(req.into_body(), MAX_TOKEN_BODY)
        .await
        .map_err(|_| {
            OAuthError::invalid_request(format!("the body is larger than {MAX_TOKEN_BODY} bytes"))
        })?;
    serde_json::from_slice(&body)
        .map_err(|e| OAuthError::invalid_request(format!("the body is not the expected JSON: {e}")))
}

// ---- applications ----

#[derive(Deserialize)]
struct AppRequest {
    name: String,
    #[serde(default)]
    redirect_uris: RedirectUris,
    /// Doorkeeper's name: one URI per line.
    #[serde(default)]
    redirect_uri: Option<String>,
    #[serde(default = "yes")]
    confidential: bool,
    #[serde(default)]
    private: bool,
    #[serde(default)]
    authorized_users: Vec<String>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum RedirectUris {
    #[default]
    None,
    List(Vec<String>),
    Lines(String),
}

/// An application as JSON; the secret only when just created.
pub fn application_json(app: &Application, secret: Option<&str>) -> Value {
    let mut v = json!({
        "client_id": app.uid,
        "uid": app.uid,
        "name": app.name,
        "redirect_uris": app.redirect_uris,
        "redirect_uri": app.redirect_uris.join("\n"),
        "confidential": app.confidential,
        "private": app.private,
        "authorized_users": app.authorized_users,
        "scopes": "public",
        "created_at": rfc3339(&app.created_at),
    });
    if let Some(s) = secret {
        v["client_secret"] = s.into();
        v["secret"] = s.into();
    }
    v
}

/// Registers an application (API and page share this).
pub async fn register_application(
    tokens: &TokenService,
    caller: &Caller,
    new: NewApplication,
) -> Result<(Application, String), OAuthError> {
    let (uid, secret) = crate::clients::new_credentials();
    let app = tokens
        .registry()
        .register_application(Some(caller), new, uid, sha256_hex(&secret))
        .await
        .map_err(from_domain)?;
    Ok((app, secret))
}

async fn create_application(State(tokens): S, req: Request) -> Response {
    respond(
        async move {
            let caller = bearer_caller(&tokens, &req)?;
            let body: AppRequest = json_body(req).await?;
            let mut uris = match body.redirect_uris {
                RedirectUris::None => vec![],
                RedirectUris::List(l) => l,
                RedirectUris::Lines(s) => s.lines().map(str::to_owned).collect(),
            };
            if let Some(r) = body.redirect_uri {
                uris.extend(
                    r.lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(str::to_owned),
                );
            }
            let new = NewApplication {
                name: body.name,
                redirect_uris: uris,
                confidential: body.confidential,
                private: body.private,
                authorized_users: body.authorized_users,
            };
            let (app, secret) = register_application(&tokens, &caller, new).await?;
            Ok(json_no_store(
                StatusCode::CREATED,
                application_json(&app, Some(&secret)),
            ))
        }
        .await,
    )
}

async fn list_applications(State(tokens): S, req: Request) -> Response {
    respond(
        async move {
            let caller = bearer_caller(&tokens, &req)?;
            let apps = tokens
                .registry()
                .applications(Some(&caller))
                .await
                .map_err(from_domain)?;
            let list: Vec<Value> = apps.iter().map(|a| application_json(a, None)).collect();
            Ok(json_no_store(StatusCode::OK, Value::Array(list)))
        }
        .await,
    )
}

// ---- revoke, introspect, token info ----

async fn client_of(
    tokens: &TokenService,
    authorization: Option<&str>,
    p: &Params,
) -> Result<Option<Application>, OAuthError> {
    let presented = crate::clients::presented(authorization, p)?;
    crate::clients::authenticate(tokens.registry(), presented).await
}

fn authorization_of(req: &Request) -> Option<String> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn revoke(State(tokens): S, req: Request) -> Response {
    respond(
        async move {
            let auth = authorization_of(&req);
            let p = read_params(req).await?;
            let client = client_of(&tokens, auth.as_deref(), &p).await?;
            tokens
                .revoke(client.as_ref(), required(&p, "token")?)
                .await?;
            Ok(json_no_store(StatusCode::OK, json!({})))
        }
        .await,
    )
}

async fn introspect(State(tokens): S, req: Request) -> Response {
    respond(
        async move {
            let auth = authorization_of(&req);
            let is_bearer = auth
                .as_deref()
                .is_some_and(|a| a.len() > 7 && a[..7].eq_ignore_ascii_case("bearer "));
            let caller_ok = if is_bearer {
                let t = bearer_token(auth.as_deref().unwrap_or_default()).unwrap_or_default();
                tokens
                    .inspect_access_token(t)
                    .map_err(|e| OAuthError::invalid_token(e.to_string()))?;
                true
            } else {
                false
            };
            let p = read_params(req).await?;
            if !caller_ok {
                let client = client_of(
                    &tokens,
                    auth.as_deref(),
                    &p,
                )
                .await?;
                if client.is_none_or(|c| !c.confidential) {
                    return Err(OAuthError::invalid_client(
                        "introspection needs client authentication (a confidential client's HTTP Basic or client_id and client_secret) or a bearer token",
                    ));
                }
            }
            let v = tokens.introspect(required(&p, "token")?).await?;
            Ok(json_no_store(StatusCode::OK, v))
        }
        .await,
    )
}

async fn token_info(State(tokens): S, req: Request) -> Response {
    respond(
        async move {
            let token = bearer_from(&req).ok_or_else(|| {
                OAuthError::invalid_token("send 'Authorization: Bearer <access token>'")
            })?;
            let info = tokens
                .inspect_access_token(&token)
                .map_err(|e| OAuthError::invalid_token(e.to_string()))?;
            let now = now_ms().timestamp();
            Ok(json_no_store(
                StatusCode::OK,
                json!({
                    "resource_owner_id": info.account.map(|a| a.to_string()),
                    "scope": info.scope.split_whitespace().collect::<Vec<_>>(),
                    "expires_in": (info.exp - now).max(0),
                    "application": {"uid": info.client_id},
                    "created_at": info.iat,
                }),
            ))
        }
        .await,
    )
}

// ---- discovery ----

/// OpenID Connect discovery / RFC 8414 metadata.
pub fn discovery_document(tokens: &TokenService) -> Value {
    let iss = tokens.issuer().trim_end_matches('/');
    json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/oauth/authorize"),
        "token_endpoint": format!("{iss}/oauth/token"),
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "userinfo_endpoint": format!("{iss}/oauth/userinfo"),
        "revocation_endpoint": format!("{iss}/oauth/revoke"),
        "introspection_endpoint": format!("{iss}/oauth/introspect"),
        "registration_endpoint": format!("{iss}/oauth/applications"),
        "scopes_supported": SUPPORTED_SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "password", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "email", "email_verified", "name", "updated_at"],
        "ekko_environment": tokens.config().environment,
    })
}

async fn discovery(State(tokens): S) -> Response {
    let mut r = axum::Json(discovery_document(&tokens)).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

// ---- users ----

/// The user object of `me.json` and sign-up (ekko-api.md §2.4).
pub fn user_json(a: &Account) -> Value {
    json!({
        "uid": a.id.to_string(),
        "id": a.id.to_string(),
        "sub": a.id.to_string(),
        "email": a.email,
        "full_name": a.full_name,
        "name": a.full_name,
        "language": a.profile.language.as_deref().unwrap_or("english"),
        "time_zone": a.profile.time_zone.as_deref().unwrap_or("UTC"),
        "company_name": a.profile.company_name,
        "company": a.profile.company_name,
        "vat": null,
        "organization_id": a.organization.to_string(),
        "organization_name": null,
        "created_at": rfc3339(&a.created_at),
        "updated_at": rfc3339(&a.updated_at),
    })
}

#[derive(Deserialize)]
struct SignUp {
    email: String,
    password: String,
    full_name: String,
}

async fn sign_up(State(tokens): S, req: Request) -> Response {
    respond(
        async move {
            let ip = client_ip(&req);
            tokens.limits().check_sign_up(ip)?;
            let body: SignUp = json_body(req).await?;
            let a = crate::accounts::register(
                tokens.ekko(),
                &body.email,
                &body.password,
                &body.full_name,
            )
            .await
            .map_err(from_domain)?;
            Ok(json_no_store(StatusCode::CREATED, user_json(&a)))
        }
        .await,
    )
}

async fn me(State(tokens): S, req: Request) -> Response {
    respond(
        async move {
            let caller = bearer_caller(&tokens, &req)?;
            let a = tokens
                .ekko()
                .account(Some(&caller), None)
                .await
                .map_err(from_domain)?;
            Ok(json_no_store(StatusCode::OK, user_json(&a)))
        }
        .await,
    )
}

#[derive(Deserialize)]
struct PasswordChange {
    current_password: String,
    password: String,
}

async fn change_password(State(tokens): S, req: Request) -> Response {
    respond(
        async move {
            let caller = bearer_caller(&tokens, &req)?;
            let ip = client_ip(&req);
            let body: PasswordChange = json_body(req).await?;
            crate::accounts::change_password(
                &tokens,
                &caller,
                &body.current_password,
                &body.password,
                ip,
            )
            .await?;
            Ok(json_no_store(StatusCode::OK, json!({"status": "ok"})))
        }
        .await,
    )
}
