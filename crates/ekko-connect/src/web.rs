//! The browser side of Connect: sign-in, sign-up and account pages, and the authorization
//! endpoint (`/oauth/authorize`) of the authorization-code flow with PKCE.
//!
//! Pages are server-rendered HTML forms: no JavaScript anywhere. A signed-in browser holds an
//! opaque session cookie (`HttpOnly`, `SameSite=Lax`); sessions live in memory, keyed by the
//! cookie's SHA-256. Every state-changing form carries the session's CSRF token.
//!
//! Authorization errors follow RFC 6749 §4.1.2.1: while the client or its redirect URI is not
//! established (unknown `client_id`, unregistered `redirect_uri`) the error is shown on a page
//! and nobody is redirected; after that, errors go back to the client's redirect URI with
//! `error`, `error_description` and `state`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use ekko_core::AccountId;
use ekko_core::Caller;
use ekko_core::account::Account;
use ekko_core::oauth::{Application, AuthorizationCode, NewApplication};
use ekko_core::time::now_ms;

use crate::http::{Params, client_ip, read_params};
use crate::tokens::{CODE_TTL_SECS, TokenService, normalize_scope, random_token, sha256_hex};

type S = axum::extract::State<std::sync::Arc<TokenService>>;

pub const SESSION_COOKIE: &str = "ekko_session";
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
const MAX_SESSIONS: usize = 100_000;

struct Session {
    account: AccountId,
    csrf: String,
    expires: Instant,
}

/// Browser sessions, in memory.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Starts a session; returns the cookie value.
    fn create(&self, account: AccountId) -> String {
        let cookie = random_token();
        let mut m = self.map.lock().expect("sessions lock");
        if m.len() >= MAX_SESSIONS {
            let now = Instant::now();
            m.retain(|_, s| s.expires > now);
            if m.len() >= MAX_SESSIONS {
                m.clear();
            }
        }
        m.insert(
            sha256_hex(&cookie),
            Session {
                account,
                csrf: random_token(),
                expires: Instant::now() + SESSION_TTL,
            },
        );
        cookie
    }

    /// The account and CSRF token of a live session.
    fn get(&self, cookie: &str) -> Option<(AccountId, String)> {
        let m = self.map.lock().expect("sessions lock");
        m.get(&sha256_hex(cookie))
            .filter(|s| s.expires > Instant::now())
            .map(|s| (s.account, s.csrf.clone()))
    }

    fn end(&self, cookie: &str) {
        self.map
            .lock()
            .expect("sessions lock")
            .remove(&sha256_hex(cookie));
    }
}

pub fn routes() -> Router<std::sync::Arc<TokenService>> {
    Router::new()
        .route("/oauth/authorize", get(authorize_get).post(authorize_post))
        .route("/users/sign_in", get(sign_in_page).post(sign_in_post))
        .route("/users/sign_up", get(sign_up_page).post(sign_up_post))
        .route("/users/sign_out", post(sign_out))
        .route("/users/account", get(account_page))
        .route("/users/password", post(password_post))
        .route("/oauth/applications/new", post(new_application_post))
}

// ---- HTML ----

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t} · Ekko Connect</title><style>body{{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#222}}\
label{{display:block;margin:.8rem 0 .2rem}}input[type=email],input[type=password],input[type=text],textarea{{width:100%;padding:.5rem;box-sizing:border-box}}\
button{{margin-top:1rem;padding:.5rem 1.2rem}}.error{{color:#a00}}code{{word-break:break-all}}</style></head>\
<body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    let mut r = (status, Html(html)).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action *; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        escape(name),
        escape(value)
    )
}

fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn cookie_of(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_owned())
}

fn session_of(
    tokens: &TokenService,
    headers: &axum::http::HeaderMap,
) -> Option<(AccountId, String, String)> {
    let c = cookie_of(headers)?;
    tokens.sessions().get(&c).map(|(a, csrf)| (a, csrf, c))
}

fn set_cookie(tokens: &TokenService, r: &mut Response, value: &str, max_age: u64) {
    let secure = if tokens.issuer().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let c = format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Only local paths are followed after sign-in (no open redirect).
fn safe_return_to(p: Option<&String>) -> String {
    match p {
        Some(r) if r.starts_with('/') && !r.starts_with("//") && !r.contains('\\') => r.clone(),
        _ => "/users/account".into(),
    }
}

fn query_params(req: &Request) -> Params {
    req.uri()
        .query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .map(|v| v.into_iter().collect())
        .unwrap_or_default()
}

fn csrf_ok(form: &Params, expected: &str) -> bool {
    form.get("csrf_token")
        .is_some_and(|t| subtle::ConstantTimeEq::ct_eq(t.as_bytes(), expected.as_bytes()).into())
}

// ---- sign-in, sign-up, sign-out ----

fn sign_in_form(return_to: &str, email: &str, error: Option<&str>) -> String {
    format!(
        "{err}<form method=\"post\" action=\"/users/sign_in\">{rt}\
<label for=\"email\">Email</label><input id=\"email\" type=\"email\" name=\"email\" value=\"{email}\" required autofocus>\
<label for=\"password\">Password</label><input id=\"password\" type=\"password\" name=\"password\" required>\
<button type=\"submit\">Sign in</button></form>\
<p>No account? <a href=\"/users/sign_up?return_to={rt_q}\">Sign up</a></p>",
        err = error
            .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
            .unwrap_or_default(),
        rt = hidden("return_to", return_to),
        email = escape(email),
        rt_q = escape(&serde_urlencoded::to_string([("", return_to)]).unwrap_or_default()[1..]),
    )
}

async fn sign_in_page(req: Request) -> Response {
    let q = query_params(&req);
    page(
        StatusCode::OK,
        "Sign in",
        &sign_in_form(&safe_return_to(q.get("return_to")), "", None),
    )
}

async fn sign_in_post(State(tokens): S, req: Request) -> Response {
    let ip = client_ip(&req);
    let Ok(form) = read_params(req).await else {
        return page(
            StatusCode::BAD_REQUEST,
            "Sign in",
            "<p class=\"error\">Malformed form.</p>",
        );
    };
    let return_to = safe_return_to(form.get("return_to"));
    let email = form.get("email").cloned().unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    match tokens.check_password(&email, &password, ip).await {
        Ok(account) => {
            let cookie = tokens.sessions().create(account.id);
            let mut r = see_other(&return_to);
            set_cookie(&tokens, &mut r, &cookie, SESSION_TTL.as_secs());
            r
        }
        Err(e) => {
            let status = if e.status == StatusCode::TOO_MANY_REQUESTS {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::UNAUTHORIZED
            };
            let msg = if status == StatusCode::TOO_MANY_REQUESTS {
                e.description.clone()
            } else {
                "The email or password is wrong.".to_owned()
            };
            let mut r = page(
                status,
                "Sign in",
                &sign_in_form(&return_to, &email, Some(&msg)),
            );
            if let Some(s) = e.retry_after {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(s));
            }
            r
        }
    }
}

fn sign_up_form(return_to: &str, email: &str, name: &str, error: Option<&str>) -> String {
    format!(
        "{err}<form method=\"post\" action=\"/users/sign_up\">{rt}\
<label for=\"full_name\">Full name</label><input id=\"full_name\" type=\"text\" name=\"full_name\" value=\"{name}\" required>\
<label for=\"email\">Email</label><input id=\"email\" type=\"email\" name=\"email\" value=\"{email}\" required>\
<label for=\"password\">Password (at least 8 characters)</label><input id=\"password\" type=\"password\" name=\"password\" required minlength=\"8\">\
<button type=\"submit\">Sign up</button></form>",
        err = error
            .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
            .unwrap_or_default(),
        rt = hidden("return_to", return_to),
        email = escape(email),
        name = escape(name),
    )
}

async fn sign_up_page(req: Request) -> Response {
    let q = query_params(&req);
    page(
        StatusCode::OK,
        "Sign up",
        &sign_up_form(&safe_return_to(q.get("return_to")), "", "", None),
    )
}

async fn sign_up_post(State(tokens): S, req: Request) -> Response {
    let ip = client_ip(&req);
    if let Err(e) = tokens.limits().check_sign_up(ip) {
        return page(
            StatusCode::TOO_MANY_REQUESTS,
            "Sign up",
            &format!("<p class=\"error\">{}</p>", escape(&e.description)),
        );
    }
    let Ok(form) = read_params(req).await else {
        return page(
            StatusCode::BAD_REQUEST,
            "Sign up",
            "<p class=\"error\">Malformed form.</p>",
        );
    };
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let return_to = safe_return_to(form.get("return_to"));
    match crate::accounts::register(
        tokens.ekko(),
        &get("email"),
        &get("password"),
        &get("full_name"),
    )
    .await
    {
        Ok(account) => {
            let cookie = tokens.sessions().create(account.id);
            let mut r = see_other(&return_to);
            set_cookie(&tokens, &mut r, &cookie, SESSION_TTL.as_secs());
            r
        }
        Err(e) => page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Sign up",
            &sign_up_form(
                &return_to,
                &get("email"),
                &get("full_name"),
                Some(&e.to_string()),
            ),
        ),
    }
}

async fn sign_out(State(tokens): S, req: Request) -> Response {
    let session = session_of(&tokens, req.headers());
    let form = read_params(req).await.unwrap_or_default();
    if let Some((_, csrf, cookie)) = session
        && csrf_ok(&form, &csrf)
    {
        tokens.sessions().end(&cookie);
    }
    let mut r = see_other("/users/sign_in");
    set_cookie(&tokens, &mut r, "", 0);
    r
}

// ---- account page: password change and application registration ----

async fn signed_in_account(
    tokens: &TokenService,
    headers: &axum::http::HeaderMap,
) -> Option<(Account, String)> {
    let (id, csrf, _) = session_of(tokens, headers)?;
    let a = tokens.ekko().account_by_id(id).await.ok()??;
    Some((a, csrf))
}

fn account_body(a: &Account, csrf: &str, apps: &[Application], notice: &str) -> String {
    let list: String = apps
        .iter()
        .map(|app| {
            format!(
                "<li>{} — client id <code>{}</code></li>",
                escape(&app.name),
                escape(&app.uid)
            )
        })
        .collect();
    format!(
        "{notice}<p>Signed in as <strong>{email}</strong> ({name}).</p>\
<h2>Your applications</h2><ul>{list}</ul>\
<h2>Register an application</h2><form method=\"post\" action=\"/oauth/applications/new\">{csrf}\
<label for=\"name\">Name</label><input id=\"name\" type=\"text\" name=\"name\" required>\
<label for=\"redirect_uri\">Redirect URIs (one per line)</label><textarea id=\"redirect_uri\" name=\"redirect_uri\" rows=\"3\" required></textarea>\
<label><input type=\"checkbox\" name=\"confidential\" value=\"true\" checked> Confidential (can keep a secret)</label>\
<label><input type=\"checkbox\" name=\"private\" value=\"true\"> Private (only authorized users may sign in)</label>\
<label for=\"authorized_users\">Authorized users (emails, one per line)</label><textarea id=\"authorized_users\" name=\"authorized_users\" rows=\"2\"></textarea>\
<button type=\"submit\">Register</button></form>\
<h2>Change your password</h2><form method=\"post\" action=\"/users/password\">{csrf}\
<label for=\"current_password\">Current password</label><input id=\"current_password\" type=\"password\" name=\"current_password\" required>\
<label for=\"new_password\">New password</label><input id=\"new_password\" type=\"password\" name=\"password\" required minlength=\"8\">\
<button type=\"submit\">Change password</button></form>\
<form method=\"post\" action=\"/users/sign_out\">{csrf}<button type=\"submit\">Sign out</button></form>",
        email = escape(&a.email),
        name = escape(&a.full_name),
        csrf = hidden("csrf_token", csrf),
    )
}

async fn account_response(
    tokens: &TokenService,
    a: &Account,
    csrf: &str,
    status: StatusCode,
    notice: &str,
) -> Response {
    let caller = Caller {
        account: a.id,
        scopes: vec![],
    };
    let apps = tokens
        .registry()
        .applications(Some(&caller))
        .await
        .unwrap_or_default();
    page(
        status,
        "Your account",
        &account_body(a, csrf, &apps, notice),
    )
}

async fn account_page(State(tokens): S, req: Request) -> Response {
    match signed_in_account(&tokens, req.headers()).await {
        Some((a, csrf)) => account_response(&tokens, &a, &csrf, StatusCode::OK, "").await,
        None => see_other("/users/sign_in?return_to=%2Fusers%2Faccount"),
    }
}

async fn password_post(State(tokens): S, req: Request) -> Response {
    let ip = client_ip(&req);
    let Some((a, csrf)) = signed_in_account(&tokens, req.headers()).await else {
        return see_other("/users/sign_in");
    };
    let form = read_params(req).await.unwrap_or_default();
    if !csrf_ok(&form, &csrf) {
        return page(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "<p class=\"error\">The form expired; reload the page.</p>",
        );
    }
    let caller = Caller {
        account: a.id,
        scopes: vec![],
    };
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    match crate::accounts::change_password(
        &tokens,
        &caller,
        &get("current_password"),
        &get("password"),
        ip,
    )
    .await
    {
        Ok(()) => {
            account_response(
                &tokens,
                &a,
                &csrf,
                StatusCode::OK,
                "<p role=\"status\">Your password was changed.</p>",
            )
            .await
        }
        Err(e) => {
            account_response(
                &tokens,
                &a,
                &csrf,
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!(
                    "<p class=\"error\" role=\"alert\">{}</p>",
                    escape(&e.description)
                ),
            )
            .await
        }
    }
}

async fn new_application_post(State(tokens): S, req: Request) -> Response {
    let Some((a, csrf)) = signed_in_account(&tokens, req.headers()).await else {
        return see_other("/users/sign_in");
    };
    let form = read_params(req).await.unwrap_or_default();
    if !csrf_ok(&form, &csrf) {
        return page(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "<p class=\"error\">The form expired; reload the page.</p>",
        );
    }
    let lines = |k: &str| -> Vec<String> {
        form.get(k)
            .map(|v| {
                v.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let new = NewApplication {
        name: form.get("name").cloned().unwrap_or_default(),
        redirect_uris: lines("redirect_uri"),
        confidential: form.get("confidential").is_some_and(|v| v == "true"),
        private: form.get("private").is_some_and(|v| v == "true"),
        authorized_users: lines("authorized_users"),
    };
    let caller = Caller {
        account: a.id,
        scopes: vec![],
    };
    match crate::api::register_application(&tokens, &caller, new).await {
        Ok((app, secret)) => page(
            StatusCode::CREATED,
            "Application registered",
            &format!(
                "<p>Copy the secret now: it is shown only once.</p><dl><dt>Application (client id)</dt><dd><code id=\"client_id\">{}</code></dd>\
<dt>Secret</dt><dd><code id=\"client_secret\">{}</code></dd></dl><p><a href=\"/users/account\">Back to your account</a></p>",
                escape(&app.uid),
                escape(&secret)
            ),
        ),
        Err(e) => {
            account_response(
                &tokens,
                &a,
                &csrf,
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!(
                    "<p class=\"error\" role=\"alert\">{}</p>",
                    escape(&e.description)
                ),
            )
            .await
        }
    }
}

// ---- the authorization endpoint ----

/// A validated authorization request.
struct AuthzRequest {
    app: Application,
    redirect_uri: String,
    scope: String,
    state: Option<String>,
    code_challenge: String,
    nonce: Option<String>,
}

enum AuthzError {
    /// The client or redirect URI is not established: show a page, redirect nobody.
    Page(String),
    /// Send the error back to the client.
    Redirect {
        redirect_uri: String,
        error: &'static str,
        description: String,
        state: Option<String>,
    },
}

fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let q = serde_urlencoded::to_string(pairs).unwrap_or_default();
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{q}")
}

fn authz_error_response(e: AuthzError) -> Response {
    match e {
        AuthzError::Page(msg) => page(
            StatusCode::BAD_REQUEST,
            "Authorization error",
            &format!("<p class=\"error\" role=\"alert\">{}</p>", escape(&msg)),
        ),
        AuthzError::Redirect {
            redirect_uri,
            error,
            description,
            state,
        } => {
            let mut pairs = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(s) = state.as_deref() {
                pairs.push(("state", s));
            }
            see_other(&with_query(&redirect_uri, &pairs))
        }
    }
}

async fn validate(tokens: &TokenService, p: &Params) -> Result<AuthzRequest, AuthzError> {
    let Some(client_id) = p.get("client_id").filter(|c| !c.is_empty()) else {
        return Err(AuthzError::Page(
            "The request names no client (client_id is missing).".into(),
        ));
    };
    let app = tokens
        .registry()
        .application(client_id)
        .await
        .map_err(|e| AuthzError::Page(e.to_string()))?
        .ok_or_else(|| AuthzError::Page("The client (client_id) is unknown.".into()))?;
    let redirect_uri = match p.get("redirect_uri").filter(|r| !r.is_empty()) {
        Some(r) if app.redirect_uris.contains(r) => r.clone(),
        Some(_) => {
            return Err(AuthzError::Page(
                "The redirect_uri is not registered for this client.".into(),
            ));
        }
        None if app.redirect_uris.len() == 1 => app.redirect_uris[0].clone(),
        None => {
            return Err(AuthzError::Page(
                "redirect_uri is missing and the client has several.".into(),
            ));
        }
    };
    let state = p.get("state").cloned();
    let fail = |error: &'static str, description: &str| AuthzError::Redirect {
        redirect_uri: redirect_uri.clone(),
        error,
        description: description.to_owned(),
        state: state.clone(),
    };
    for k in p.keys() {
        if k == "request" || k == "request_uri" {
            return Err(fail(
                "request_not_supported",
                "request objects are not supported",
            ));
        }
    }
    match p.get("response_type").map(String::as_str) {
        Some("code") => {}
        None | Some("") => {
            return Err(fail(
                "invalid_request",
                "missing required parameter 'response_type'",
            ));
        }
        Some(_) => {
            return Err(fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
    }
    let scope = normalize_scope(p.get("scope").map(String::as_str))
        .map_err(|e| fail("invalid_scope", &e.description))?;
    let code_challenge = match p.get("code_challenge").filter(|c| !c.is_empty()) {
        None => {
            return Err(fail(
                "invalid_request",
                "PKCE is required: send code_challenge and code_challenge_method=S256",
            ));
        }
        Some(c) if c.len() < 43 || c.len() > 128 => {
            return Err(fail(
                "invalid_request",
                "code_challenge must be 43 to 128 characters",
            ));
        }
        Some(c) => c.clone(),
    };
    match p.get("code_challenge_method").map(String::as_str) {
        Some("S256") => {}
        Some("plain") | None | Some("") => {
            return Err(fail(
                "invalid_request",
                "code_challenge_method must be S256 (plain is refused)",
            ));
        }
        Some(_) => {
            return Err(fail(
                "invalid_request",
                "unsupported code_challenge_method; use S256",
            ));
        }
    }
    let nonce = p
        .get("nonce")
        .filter(|n| !n.is_empty() && n.len() <= 512)
        .cloned();
    Ok(AuthzRequest {
        app,
        redirect_uri,
        scope,
        state,
        code_challenge,
        nonce,
    })
}

async fn issue_code(tokens: &TokenService, r: &AuthzRequest, account: AccountId) -> Response {
    let code = random_token();
    let now = now_ms();
    let stored = AuthorizationCode {
        code_hash: sha256_hex(&code),
        client_id: r.app.uid.clone(),
        account,
        redirect_uri: r.redirect_uri.clone(),
        scope: r.scope.clone(),
        code_challenge: r.code_challenge.clone(),
        nonce: r.nonce.clone(),
        created_at: now,
        expires_at: now + chrono::Duration::seconds(CODE_TTL_SECS),
    };
    if let Err(e) = tokens.registry().store().insert_code(&stored).await {
        tracing::error!(error = %e, "storing an authorization code failed");
        return authz_error_response(AuthzError::Redirect {
            redirect_uri: r.redirect_uri.clone(),
            error: "server_error",
            description: "the authorization code could not be stored".into(),
            state: r.state.clone(),
        });
    }
    let mut pairs = vec![("code", code.as_str())];
    if let Some(s) = r.state.as_deref() {
        pairs.push(("state", s));
    }
    let iss = tokens.issuer().to_owned();
    pairs.push(("iss", iss.as_str()));
    see_other(&with_query(&r.redirect_uri, &pairs))
}

fn consent_page(r: &AuthzRequest, p: &Params, a: &Account, csrf: &str) -> Response {
    let fields: String = [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
        "nonce",
    ]
    .iter()
    .filter_map(|k| p.get(*k).map(|v| hidden(k, v)))
    .collect();
    let scopes: String = r
        .scope
        .split(' ')
        .map(|s| {
            let what = match s {
                "public" => "read and change your Ekko data (account, devices, tracks)",
                "openid" => "know who you are (your account id)",
                "email" => "see your email address",
                "profile" => "see your name",
                _ => s,
            };
            format!("<li>{}</li>", escape(what))
        })
        .collect();
    page(
        StatusCode::OK,
        "Authorize application",
        &format!(
            "<p><strong>{name}</strong> asks to:</p><ul>{scopes}</ul><p>Signed in as {email}.</p>\
<form method=\"post\" action=\"/oauth/authorize\">{fields}{csrf}\
<button type=\"submit\" name=\"decision\" value=\"allow\" id=\"allow\">Authorize</button> \
<button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\">Deny</button></form>",
            name = escape(&r.app.name),
            email = escape(&a.email),
            csrf = hidden("csrf_token", csrf),
        ),
    )
}

async fn authorize_get(State(tokens): S, req: Request) -> Response {
    let p = query_params(&req);
    let r = match validate(&tokens, &p).await {
        Ok(r) => r,
        Err(e) => return authz_error_response(e),
    };
    let Some((account, csrf)) = signed_in_account(&tokens, req.headers()).await else {
        let here = req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str().to_owned())
            .unwrap_or_else(|| "/oauth/authorize".into());
        let q = serde_urlencoded::to_string([("return_to", here.as_str())]).unwrap_or_default();
        return see_other(&format!("/users/sign_in?{q}"));
    };
    if let Err(e) = tokens.registry().may_authorize(&account, &r.app) {
        return authz_error_response(AuthzError::Redirect {
            redirect_uri: r.redirect_uri,
            error: "access_denied",
            description: e.to_string(),
            state: r.state,
        });
    }
    match tokens
        .registry()
        .store()
        .has_consent(account.id, &r.app.uid, &r.scope)
        .await
    {
        Ok(true) => issue_code(&tokens, &r, account.id).await,
        Ok(false) => consent_page(&r, &p, &account, &csrf),
        Err(e) => {
            tracing::error!(error = %e, "reading consents failed");
            authz_error_response(AuthzError::Redirect {
                redirect_uri: r.redirect_uri,
                error: "server_error",
                description: "storage failure".into(),
                state: r.state,
            })
        }
    }
}

async fn authorize_post(State(tokens): S, req: Request) -> Response {
    let signed_in = signed_in_account(&tokens, req.headers()).await;
    let p = read_params(req).await.unwrap_or_default();
    let r = match validate(&tokens, &p).await {
        Ok(r) => r,
        Err(e) => return authz_error_response(e),
    };
    let Some((account, csrf)) = signed_in else {
        return page(
            StatusCode::UNAUTHORIZED,
            "Sign in",
            "<p class=\"error\">Your session ended; start again from the application.</p>",
        );
    };
    if !csrf_ok(&p, &csrf) {
        return page(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "<p class=\"error\">The form expired; start again from the application.</p>",
        );
    }
    if let Err(e) = tokens.registry().may_authorize(&account, &r.app) {
        return authz_error_response(AuthzError::Redirect {
            redirect_uri: r.redirect_uri,
            error: "access_denied",
            description: e.to_string(),
            state: r.state,
        });
    }
    if p.get("decision").map(String::as_str) != Some("allow") {
        return authz_error_response(AuthzError::Redirect {
            redirect_uri: r.redirect_uri,
            error: "access_denied",
            description: "the user denied the request".into(),
            state: r.state,
        });
    }
    if let Err(e) = tokens
        .registry()
        .store()
        .insert_consent(account.id, &r.app.uid, &r.scope, now_ms())
        .await
    {
        tracing::error!(error = %e, "storing a consent failed");
    }
    issue_code(&tokens, &r, account.id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn return_to_is_a_local_path_only() {
        assert_eq!(
            safe_return_to(Some(&"/oauth/authorize?x=1".into())),
            "/oauth/authorize?x=1"
        );
        for bad in ["https://evil.example", "//evil.example", "/\\evil"] {
            assert_eq!(safe_return_to(Some(&bad.into())), "/users/account");
        }
    }

    #[test]
    fn redirect_query_is_appended_to_an_existing_query() {
        assert_eq!(
            with_query("https://a/cb?x=1", &[("code", "c d")]),
            "https://a/cb?x=1&code=c+d"
        );
        assert_eq!(
            with_query("https://a/cb", &[("state", "s")]),
            "https://a/cb?state=s"
        );
    }
}
