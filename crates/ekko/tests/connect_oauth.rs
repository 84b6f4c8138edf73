//! Connect as a full OAuth 2.0 / OpenID Connect provider, end to end over HTTP: applications,
//! client authentication, every grant, the authorization endpoint and its pages, revoke,
//! introspect, token info, discovery, users, rate limits.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use ekko_connect::tokens::pkce_challenge;
use serde_json::{Value, json};

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const VERIFIER: &str = "a-long-enough-pkce-code-verifier-0123456789-abcdefghijklmnop";

fn claims(jwt: &str) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn register_app(s: &TestServer, token: &str, body: Value) -> (u16, Value) {
    let r = s
        .http
        .post(format!("{}/oauth/applications", s.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A confidential app of the main account: (client_id, client_secret).
async fn app(s: &TestServer, extra: Value) -> (String, String) {
    let token = s.token().await;
    let mut body =
        json!({"name": "Fleet dashboard", "redirect_uris": [REDIRECT], "confidential": true});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, v) = register_app(s, &token, body).await;
    assert_eq!(status, 201, "{v}");
    (
        v["client_id"].as_str().unwrap().to_owned(),
        v["client_secret"].as_str().unwrap().to_owned(),
    )
}

async fn token_req(
    s: &TestServer,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, Value) {
    let mut req = s.http.post(format!("{}/oauth/token", s.base)).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Signs in through the HTML form; returns the session cookie.
async fn sign_in(s: &TestServer, email: &str) -> String {
    let r = no_redirects()
        .post(format!("{}/users/sign_in", s.base))
        .form(&[
            ("email", email),
            ("password", PASSWORD),
            ("return_to", "/users/account"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let set = r.headers()["set-cookie"].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    set.split(';').next().unwrap().to_owned()
}

fn authorize_url(s: &TestServer, client_id: &str, extra: &[(&str, &str)]) -> String {
    let challenge = pkce_challenge(VERIFIER);
    let mut q = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", "public openid"),
        ("state", "xyz-state"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("nonce", "n-0S6"),
    ];
    for (k, v) in extra {
        q.retain(|(qk, _)| qk != k);
        if !v.is_empty() {
            q.push((k, v));
        }
    }
    format!(
        "{}/oauth/authorize?{}",
        s.base,
        serde_urlencoded::to_string(&q).unwrap()
    )
}

fn query_of(location: &str) -> std::collections::HashMap<String, String> {
    let q = location.split_once('?').map(|(_, q)| q).unwrap_or("");
    serde_urlencoded::from_str::<Vec<(String, String)>>(q)
        .unwrap()
        .into_iter()
        .collect()
}

fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .map(|rest| {
            let name = rest
                .split("name=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let value = rest
                .split("value=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let unescape = |v: &str| {
                v.replace("&quot;", "\"")
                    .replace("&#39;", "'")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&")
            };
            (unescape(name), unescape(value))
        })
        .collect()
}

/// Walks the authorization endpoint as a signed-in browser, consenting if asked; returns
/// the redirect's query.
async fn authorize(
    s: &TestServer,
    cookie: &str,
    url: &str,
) -> std::collections::HashMap<String, String> {
    let c = no_redirects();
    let r = c.get(url).header("cookie", cookie).send().await.unwrap();
    if r.status() == 303 {
        return query_of(r.headers()["location"].to_str().unwrap());
    }
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("Authorize application"), "{html}");
    let mut form = hidden_fields(&html);
    form.push(("decision".into(), "allow".into()));
    let r = c
        .post(format!("{}/oauth/authorize", s.base))
        .header("cookie", cookie)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(loc.starts_with(REDIRECT), "{loc}");
    query_of(&loc)
}

#[tokio::test]
async fn applications_get_64_hex_credentials_shown_once_and_are_listed_without_secrets() {
    let s = start().await;
    let token = s.token().await;
    let (status, v) = register_app(
        &s,
        &token,
        json!({"name": "My app", "redirect_uris": [REDIRECT], "confidential": true, "private": true, "authorized_users": ["Other@Example.com"]}),
    )
    .await;
    assert_eq!(status, 201);
    for k in ["client_id", "client_secret", "uid", "secret"] {
        let x = v[k].as_str().unwrap();
        assert_eq!(x.len(), 64, "{k}");
        assert!(x.bytes().all(|b| b.is_ascii_hexdigit()), "{k}");
    }
    assert_eq!(v["uid"], v["client_id"]);
    assert_eq!(v["secret"], v["client_secret"]);
    assert_eq!(v["authorized_users"], json!(["other@example.com"]));
    let list: Value = s
        .http
        .get(format!("{}/oauth/applications", s.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["client_id"], v["client_id"]);
    assert!(list[0].get("client_secret").is_none() && list[0].get("secret").is_none());
    // The other account sees none of them; no token is 401; bad input is 400.
    let other = s.token_response(OTHER_EMAIL).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let theirs: Value = s
        .http
        .get(format!("{}/oauth/applications", s.base))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs, json!([]));
    let r = s
        .http
        .get(format!("{}/oauth/applications", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (status, v) = register_app(
        &s,
        &token,
        json!({"name": "x", "redirect_uris": ["/relative"]}),
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );
}

#[tokio::test]
async fn client_credentials_grant_authenticates_by_basic_or_body_and_never_returns_a_refresh_token()
{
    let s = start().await;
    let (id, secret) = app(&s, json!({})).await;
    let (status, basic) = token_req(
        &s,
        &[("grant_type", "client_credentials")],
        Some((&id, &secret)),
    )
    .await;
    assert_eq!(status, 200, "{basic}");
    assert!(basic.get("refresh_token").is_none());
    assert_eq!(
        claims(basic["access_token"].as_str().unwrap())["client_id"],
        id.as_str()
    );
    let (status, body) = token_req(
        &s,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, bad) = token_req(
        &s,
        &[("grant_type", "client_credentials")],
        Some((&id, "0000")),
    )
    .await;
    assert_eq!(
        (status, bad["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, none) = token_req(&s, &[("grant_type", "client_credentials")], None).await;
    assert_eq!(
        (status, none["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, both) = token_req(
        &s,
        &[
            ("grant_type", "client_credentials"),
            ("client_secret", &secret),
        ],
        Some((&id, &secret)),
    )
    .await;
    assert_eq!(
        (status, both["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // A client token acts for no user: the GraphQL API refuses it.
    let (code, _) = s
        .graphql(
            Some(basic["access_token"].as_str().unwrap()),
            "{ account { email } }",
            json!({}),
        )
        .await;
    assert_eq!(code, 401);
}

#[tokio::test]
async fn password_grant_with_a_client_binds_its_refresh_token_to_that_client() {
    let s = start().await;
    let (id, secret) = app(&s, json!({})).await;
    let (status, t) = token_req(
        &s,
        &[
            ("grant_type", "password"),
            ("username", EMAIL),
            ("password", PASSWORD),
        ],
        Some((&id, &secret)),
    )
    .await;
    assert_eq!(status, 200, "{t}");
    let refresh = t["refresh_token"].as_str().unwrap();
    // Without the client, the refresh is refused as invalid_grant (and nothing is spent)...
    let (status, e) = token_req(
        &s,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        None,
    )
    .await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));
    // ...with it, it works.
    let (status, t2) = token_req(
        &s,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        Some((&id, &secret)),
    )
    .await;
    assert_eq!(status, 200, "{t2}");
}

#[tokio::test]
async fn authorization_code_flow_with_pkce_through_the_html_pages_issues_tokens_and_an_id_token() {
    let s = start().await;
    let (id, secret) = app(&s, json!({})).await;
    // Not signed in: the authorization endpoint sends the browser to the sign-in page.
    let r = no_redirects()
        .get(authorize_url(&s, &id, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        loc.starts_with("/users/sign_in?return_to=%2Foauth%2Fauthorize"),
        "{loc}"
    );
    let page = s
        .http
        .get(format!("{}{loc}", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<form method=\"post\" action=\"/users/sign_in\">")
            && !page.contains("<script")
    );
    let cookie = sign_in(&s, EMAIL).await;
    let q = authorize(&s, &cookie, &authorize_url(&s, &id, &[])).await;
    assert_eq!(q["state"], "xyz-state");
    let code = q["code"].clone();
    let (status, t) = token_req(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
        Some((&id, &secret)),
    )
    .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["scope"], "openid public");
    let id_token = claims(t["id_token"].as_str().unwrap());
    assert_eq!(id_token["aud"], id.as_str());
    assert_eq!(id_token["nonce"], "n-0S6");
    assert_eq!(
        id_token["sub"],
        claims(t["access_token"].as_str().unwrap())["user"]["uid"]
    );
    // The access token works on the API.
    let (code_status, me) = s
        .graphql(
            Some(t["access_token"].as_str().unwrap()),
            "{ account { email } }",
            json!({}),
        )
        .await;
    assert_eq!(
        (code_status, me["data"]["account"]["email"].as_str()),
        (200, Some(EMAIL))
    );
}

#[tokio::test]
async fn a_code_works_once_with_the_right_verifier_and_a_replay_revokes_its_tokens() {
    let s = start().await;
    let (id, secret) = app(&s, json!({})).await;
    let cookie = sign_in(&s, EMAIL).await;
    let code = authorize(&s, &cookie, &authorize_url(&s, &id, &[])).await["code"].clone();
    let exchange = |verifier: &'static str, code: String| {
        let (id, secret) = (id.clone(), secret.clone());
        let s = &s;
        async move {
            token_req(
                s,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", verifier),
                ],
                Some((&id, &secret)),
            )
            .await
        }
    };
    let (status, e) = exchange(
        "wrong-verifier-wrong-verifier-wrong-verifier-xx",
        code.clone(),
    )
    .await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));
    // A failed attempt spends the code too (it cannot be brute-forced); get a fresh one.
    let code = authorize(&s, &cookie, &authorize_url(&s, &id, &[])).await["code"].clone();
    let (status, t) = exchange(VERIFIER, code.clone()).await;
    assert_eq!(status, 200, "{t}");
    let (status, e) = exchange(VERIFIER, code).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));
    let (status, _) = token_req(
        &s,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ],
        Some((&id, &secret)),
    )
    .await;
    assert_eq!(
        status, 400,
        "the refresh token of a replayed code is revoked"
    );
}

#[tokio::test]
async fn consent_is_remembered_per_application_and_scope() {
    let s = start().await;
    let (id, _) = app(&s, json!({})).await;
    let cookie = sign_in(&s, EMAIL).await;
    authorize(&s, &cookie, &authorize_url(&s, &id, &[])).await;
    let c = no_redirects();
    let again = c
        .get(authorize_url(&s, &id, &[]))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 303, "same app and scope: no consent page");
    let wider = c
        .get(authorize_url(&s, &id, &[("scope", "public openid email")]))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(wider.status(), 200, "another scope asks again");
}

#[tokio::test]
async fn authorize_errors_redirect_to_the_client_or_show_a_page_when_the_redirect_uri_is_not_established()
 {
    let s = start().await;
    let (id, _) = app(&s, json!({})).await;
    let cookie = sign_in(&s, EMAIL).await;
    let c = no_redirects();
    for (name, url) in [
        ("unknown client", authorize_url(&s, "nope", &[])),
        (
            "missing client",
            authorize_url(&s, "", &[("client_id", "")]),
        ),
        (
            "unregistered redirect",
            authorize_url(&s, &id, &[("redirect_uri", "https://evil.example/cb")]),
        ),
    ] {
        let r = c.get(&url).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(r.status(), 400, "{name}");
        assert!(r.headers().get("location").is_none(), "{name}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
    for (name, extra, error) in [
        (
            "bad response_type",
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (
            "missing response_type",
            vec![("response_type", "")],
            "invalid_request",
        ),
        ("unknown scope", vec![("scope", "admin")], "invalid_scope"),
        (
            "no PKCE",
            vec![("code_challenge", ""), ("code_challenge_method", "")],
            "invalid_request",
        ),
        (
            "plain PKCE",
            vec![("code_challenge_method", "plain")],
            "invalid_request",
        ),
    ] {
        let r = c
            .get(authorize_url(&s, &id, &extra))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{name}");
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        assert!(loc.starts_with(REDIRECT), "{name}: {loc}");
        let q = query_of(&loc);
        assert_eq!(q["error"], error, "{name}");
        assert_eq!(q["state"], "xyz-state", "{name}");
    }
    // The user denies: access_denied.
    let r = c
        .get(authorize_url(&s, &id, &[]))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let mut form = hidden_fields(&r.text().await.unwrap());
    form.push(("decision".into(), "deny".into()));
    let r = c
        .post(format!("{}/oauth/authorize", s.base))
        .header("cookie", &cookie)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        query_of(r.headers()["location"].to_str().unwrap())["error"],
        "access_denied"
    );
    // A forged consent without the CSRF token is refused.
    form.retain(|(k, _)| k != "csrf_token" && k != "decision");
    form.push(("decision".into(), "allow".into()));
    let r = c
        .post(format!("{}/oauth/authorize", s.base))
        .header("cookie", &cookie)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn a_private_application_can_only_be_authorized_by_its_allow_list() {
    let s = start().await;
    let (id, secret) = app(&s, json!({"private": true, "authorized_users": []})).await;
    let cookie = sign_in(&s, OTHER_EMAIL).await;
    let q = authorize(&s, &cookie, &authorize_url(&s, &id, &[])).await;
    assert_eq!(q["error"], "access_denied");
    let (status, e) = token_req(
        &s,
        &[
            ("grant_type", "password"),
            ("username", OTHER_EMAIL),
            ("password", PASSWORD),
        ],
        Some((&id, &secret)),
    )
    .await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));
    let (allowed, _) = app(
        &s,
        json!({"private": true, "authorized_users": [OTHER_EMAIL]}),
    )
    .await;
    assert!(
        authorize(&s, &cookie, &authorize_url(&s, &allowed, &[]))
            .await
            .contains_key("code")
    );
}

#[tokio::test]
async fn a_public_client_uses_pkce_without_a_secret() {
    let s = start().await;
    let (id, _) = app(&s, json!({"confidential": false})).await;
    let cookie = sign_in(&s, EMAIL).await;
    let code = authorize(&s, &cookie, &authorize_url(&s, &id, &[])).await["code"].clone();
    let (status, t) = token_req(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", &id),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{t}");
    let (status, e) = token_req(
        &s,
        &[("grant_type", "client_credentials"), ("client_id", &id)],
        None,
    )
    .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
}

#[tokio::test]
async fn sign_up_creates_an_account_and_me_json_returns_the_user_shape() {
    let s = start().await;
    let url = format!("{}/api/v1/users", s.base);
    let r = s.http.post(&url).json(&json!({"email": "New.User@Example.com", "password": "a good password", "full_name": "New User"})).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["email"], "new.user@example.com");
    let dup = s.http.post(&url).json(&json!({"email": "new.user@EXAMPLE.com", "password": "a good password", "full_name": "Again"})).send().await.unwrap();
    assert_eq!(dup.status(), 409);
    let short = s
        .http
        .post(&url)
        .json(&json!({"email": "x@example.com", "password": "short", "full_name": "X"}))
        .send()
        .await
        .unwrap();
    assert_eq!(short.status(), 400);
    let t = s.http.post(format!("{}/oauth/token", s.base)).json(&json!({"grant_type": "password", "username": "new.user@example.com", "password": "a good password"})).send().await.unwrap().json::<Value>().await.unwrap();
    let me: Value = s
        .http
        .get(format!("{}/api/v1/users/me.json", s.base))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for k in [
        "uid",
        "id",
        "email",
        "full_name",
        "language",
        "time_zone",
        "company_name",
        "organization_id",
        "organization_name",
        "updated_at",
    ] {
        assert!(me.get(k).is_some(), "missing {k} in {me}");
    }
    assert_eq!(me["uid"], created["uid"]);
    assert_eq!(me["id"], me["uid"]);
    assert_eq!(me["full_name"], "New User");
    let r = s
        .http
        .get(format!("{}/api/v1/users/me.json", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_password_change_needs_the_current_password_and_the_new_one_signs_in() {
    let s = start().await;
    let token = s.token().await;
    let url = format!("{}/api/v1/users/password", s.base);
    let wrong = s
        .http
        .put(&url)
        .bearer_auth(&token)
        .json(&json!({"current_password": "not it at all", "password": "brand new password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);
    let ok = s
        .http
        .put(&url)
        .bearer_auth(&token)
        .json(&json!({"current_password": PASSWORD, "password": "brand new password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let (status, _) = token_req(
        &s,
        &[
            ("grant_type", "password"),
            ("username", EMAIL),
            ("password", "brand new password"),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = token_req(
        &s,
        &[
            ("grant_type", "password"),
            ("username", EMAIL),
            ("password", PASSWORD),
        ],
        None,
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn revoked_access_and_refresh_tokens_stop_working() {
    let s = start().await;
    let t = s.token_response(EMAIL).await;
    let access = t["access_token"].as_str().unwrap();
    let revoke = |token: &str| {
        s.http
            .post(format!("{}/oauth/revoke", s.base))
            .form(&[("token", token)])
            .send()
    };
    assert_eq!(revoke(access).await.unwrap().status(), 200);
    let (status, _) = s
        .graphql(Some(access), "{ account { email } }", json!({}))
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        revoke(t["refresh_token"].as_str().unwrap())
            .await
            .unwrap()
            .status(),
        200
    );
    let (status, _) = token_req(
        &s,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ],
        None,
    )
    .await;
    assert_eq!(status, 400);
    let r = revoke("unknown-token").await.unwrap();
    assert_eq!(r.status(), 200, "unknown tokens revoke silently (RFC 7009)");
    // A token issued to a client cannot be revoked by someone else.
    let (id, secret) = app(&s, json!({})).await;
    let (_, ct) = token_req(
        &s,
        &[("grant_type", "client_credentials")],
        Some((&id, &secret)),
    )
    .await;
    let r = revoke(ct["access_token"].as_str().unwrap()).await.unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn introspection_needs_client_authentication_and_describes_tokens() {
    let s = start().await;
    let (id, secret) = app(&s, json!({})).await;
    let t = s.token_response(EMAIL).await;
    let url = format!("{}/oauth/introspect", s.base);
    let anon = s
        .http
        .post(&url)
        .form(&[("token", t["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
    let v: Value = s
        .http
        .post(&url)
        .basic_auth(&id, Some(&secret))
        .form(&[("token", t["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["active"], true);
    assert_eq!(v["scope"], "public");
    assert_eq!(v["token_type"], "Bearer");
    assert!(v["exp"].is_i64() && v["iat"].is_i64());
    let r: Value = s
        .http
        .post(&url)
        .basic_auth(&id, Some(&secret))
        .form(&[("token", t["refresh_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["active"], true);
    assert!(r.get("token_type").is_none() && r.get("exp").is_none());
    let gone: Value = s
        .http
        .post(&url)
        .basic_auth(&id, Some(&secret))
        .form(&[("token", "garbage")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(gone, json!({"active": false}));
}

#[tokio::test]
async fn token_info_has_doorkeepers_shape() {
    let s = start().await;
    let t = s.token_response(EMAIL).await;
    let r = s
        .http
        .get(format!("{}/oauth/token/info", s.base))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["scope"], json!(["public"]));
    assert!(v["resource_owner_id"].is_string());
    assert!(v["expires_in"].as_i64().unwrap() > 7000);
    assert!(v["application"].as_object().unwrap().contains_key("uid"));
    assert!(v["created_at"].is_i64());
    let bad = s
        .http
        .get(format!("{}/oauth/token/info", s.base))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    assert!(
        bad.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer error=\"invalid_token\"")
    );
    assert_eq!(bad.json::<Value>().await.unwrap()["error"], "invalid_token");
}

#[tokio::test]
async fn discovery_document_names_every_endpoint_and_s256_only() {
    let s = start().await;
    let d: Value = s
        .http
        .get(format!("{}/.well-known/openid-configuration", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["issuer"], s.base.as_str());
    for k in [
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "userinfo_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
    ] {
        assert!(d[k].as_str().unwrap().starts_with(&s.base), "{k}");
    }
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(d["id_token_signing_alg_values_supported"], json!(["RS256"]));
}

#[tokio::test]
async fn repeated_password_failures_get_429_with_retry_after_then_a_lockout() {
    let mut connect = ekko_connect::ConnectConfig::default();
    connect.limits.lockout_after = 3;
    let s = start_with_connect(connect).await;
    for _ in 0..3 {
        let (status, _) = token_req(
            &s,
            &[
                ("grant_type", "password"),
                ("username", EMAIL),
                ("password", "wrong password!"),
            ],
            None,
        )
        .await;
        assert_eq!(status, 400);
    }
    let r = s
        .http
        .post(format!("{}/oauth/token", s.base))
        .form(&[
            ("grant_type", "password"),
            ("username", EMAIL),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "locked, even with the right password");
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    // The sign-in page is locked the same way; other accounts are not.
    let page = no_redirects()
        .post(format!("{}/users/sign_in", s.base))
        .form(&[("email", EMAIL), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 429);
    assert_eq!(s.token_response(OTHER_EMAIL).await["token_type"], "Bearer");
}

#[tokio::test]
async fn too_many_attempts_from_one_address_get_429() {
    let mut connect = ekko_connect::ConnectConfig::default();
    connect.limits.per_ip = 2;
    let s = start_with_connect(connect).await;
    for _ in 0..2 {
        let (status, _) = token_req(
            &s,
            &[
                ("grant_type", "password"),
                ("username", OTHER_EMAIL),
                ("password", PASSWORD),
            ],
            None,
        )
        .await;
        assert_eq!(status, 200);
    }
    let (status, e) = token_req(
        &s,
        &[
            ("grant_type", "password"),
            ("username", EMAIL),
            ("password", PASSWORD),
        ],
        None,
    )
    .await;
    assert_eq!((status, e["error"].as_str()), (429, Some("slow_down")));
}

#[tokio::test]
async fn revoke_on_use_rotation_keeps_the_old_refresh_token_until_the_new_one_is_used() {
    let connect = ekko_connect::ConnectConfig {
        rotation: ekko_core::oauth::RotationMode::RevokeOnUse,
        ..Default::default()
    };
    let s = start_with_connect(connect).await;
    let t = s.token_response(EMAIL).await;
    let r1 = t["refresh_token"].as_str().unwrap();
    let (status, t2) = token_req(
        &s,
        &[("grant_type", "refresh_token"), ("refresh_token", r1)],
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = token_req(
        &s,
        &[("grant_type", "refresh_token"), ("refresh_token", r1)],
        None,
    )
    .await;
    assert_eq!(
        status, 200,
        "grace window: the response carrying the new token may have been lost"
    );
    let (status, _) = token_req(
        &s,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t2["refresh_token"].as_str().unwrap()),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = token_req(
        &s,
        &[("grant_type", "refresh_token"), ("refresh_token", r1)],
        None,
    )
    .await;
    assert_eq!(status, 400);
}
