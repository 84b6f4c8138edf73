//! Connect's token endpoint and JWT verification, end to end over HTTP.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use serde_json::{Value, json};

fn b64json(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test]
async fn password_grant_accepts_json_form_and_multipart_bodies() {
    let s = start().await;
    let url = format!("{}/oauth/token", s.base);
    let json_body = s
        .http
        .post(&url)
        .json(&json!({"grant_type": "password", "username": EMAIL, "password": PASSWORD}));
    let form_body = s.http.post(&url).form(&[
        ("grant_type", "password"),
        ("username", EMAIL),
        ("password", PASSWORD),
    ]);
    let multipart = reqwest::multipart::Form::new()
        .text("grant_type", "password")
        .text("username", EMAIL)
        .text("password", PASSWORD);
    let multipart_body = s.http.post(&url).multipart(multipart);
    for req in [json_body, form_body, multipart_body] {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["cache-control"], "no-store");
        let t: Value = r.json().await.unwrap();
        assert_eq!(t["token_type"], "Bearer");
        assert_eq!(t["expires_in"], 7200);
        assert_eq!(t["scope"], "public");
        assert!(t["created_at"].is_i64());
        assert!(t["refresh_token"].as_str().unwrap().len() >= 40);
    }
}

#[tokio::test]
async fn access_token_is_an_rs256_jwt_with_kid_and_munic_claims() {
    let s = start().await;
    let t = s.token_response(EMAIL).await;
    let access = t["access_token"].as_str().unwrap();
    let parts: Vec<&str> = access.split('.').collect();
    let header = b64json(parts[0]);
    let payload = b64json(parts[1]);
    assert_eq!(header["alg"], "RS256");
    let kid = header["kid"].as_str().unwrap();
    let jwks: Value = s
        .http
        .get(format!("{}/.well-known/jwks.json", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid)
    );
    for claim in ["exp", "iat", "iss", "jti", "scope"] {
        assert!(!payload[claim].is_null(), "missing {claim} in {payload}");
    }
    assert_eq!(
        payload["exp"].as_i64().unwrap() - payload["iat"].as_i64().unwrap(),
        7200
    );
    assert_eq!(payload["scope"], "public");
    let uid = payload["user"]["uid"].as_str().unwrap();
    let (_, me) = s
        .graphql(Some(access), r#"{ account(id: "me") { id } }"#, json!({}))
        .await;
    assert_eq!(me["data"]["account"]["id"], uid);
}

#[tokio::test]
async fn token_errors_follow_rfc6749_and_never_echo_the_password() {
    let s = start().await;
    let url = format!("{}/oauth/token", s.base);
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (s.http.post(&url).json(&json!({"grant_type": "password", "username": EMAIL, "password": "wrong-password-123"})), 400, "invalid_grant"),
        (s.http.post(&url).json(&json!({"grant_type": "password", "username": "nobody@example.com", "password": PASSWORD})), 400, "invalid_grant"),
        (s.http.post(&url).json(&json!({"username": EMAIL, "password": PASSWORD})), 400, "invalid_request"),
        (s.http.post(&url).json(&json!({"grant_type": "password", "username": EMAIL})), 400, "invalid_request"),
        (s.http.post(&url).json(&json!({"grant_type": "device_code"})), 400, "unsupported_grant_type"),
        (s.http.post(&url).json(&json!({"grant_type": "password", "username": EMAIL, "password": PASSWORD, "scope": "admin"})), 400, "invalid_scope"),
        (s.http.post(&url).json(&json!({"grant_type": "refresh_token", "refresh_token": "not-a-token"})), 400, "invalid_grant"),
        (s.http.post(&url).basic_auth("app", Some("secret")).json(&json!({"grant_type": "password", "username": EMAIL, "password": PASSWORD})), 401, "invalid_client"),
        (s.http.post(&url).header("content-type", "application/json").body("{not json"), 400, "invalid_request"),
        (s.http.post(&url).header("content-type", "text/plain").body("grant_type=password"), 400, "invalid_request"),
    ];
    for (req, status, error) in cases {
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "expected {error}");
        let text = r.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"], error, "{text}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{text}"
        );
        assert!(
            !text.contains("wrong-password-123") && !text.contains(PASSWORD),
            "password echoed: {text}"
        );
    }
}

#[tokio::test]
async fn refresh_rotates_and_a_spent_token_is_refused_without_killing_the_new_one() {
    let s = start().await;
    let first = s.token_response(EMAIL).await;
    let refresh = |t: &str| {
        s.http
            .post(format!("{}/oauth/token", s.base))
            .json(&json!({"grant_type": "refresh_token", "refresh_token": t}))
            .send()
    };
    let r = refresh(first["refresh_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let second: Value = r.json().await.unwrap();
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    // The old token is spent (a replay long after revokes the family: see the store's tests)...
    let again = refresh(first["refresh_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(again.status(), 400);
    assert_eq!(
        again.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    // ...but a duplicate moments later is a lost race, and the winner's token keeps working.
    let newest = refresh(second["refresh_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(newest.status(), 200);
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_give_one_success_and_a_working_successor() {
    let s = start().await;
    let first = s.token_response(EMAIL).await;
    let rt = first["refresh_token"].as_str().unwrap().to_owned();
    let url = format!("{}/oauth/token", s.base);
    let send = || {
        s.http
            .post(&url)
            .json(&json!({"grant_type": "refresh_token", "refresh_token": rt}))
            .send()
    };
    let (a, b) = tokio::join!(send(), send());
    let results = [a.unwrap(), b.unwrap()];
    let winners: Vec<_> = results.iter().filter(|r| r.status() == 200).collect();
    assert_eq!(winners.len(), 1, "exactly one concurrent refresh succeeds");
    let mut winner_token = None;
    for r in results {
        if r.status() == 200 {
            winner_token = Some(
                r.json::<Value>().await.unwrap()["refresh_token"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
    }
    let next = s
        .http
        .post(&url)
        .json(&json!({"grant_type": "refresh_token", "refresh_token": winner_token.unwrap()}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        next.status(),
        200,
        "the winner's refresh token must still work"
    );
}

#[tokio::test]
async fn a_refresh_with_an_unknown_scope_does_not_spend_the_token() {
    let s = start().await;
    let first = s.token_response(EMAIL).await;
    let rt = first["refresh_token"].as_str().unwrap();
    let url = format!("{}/oauth/token", s.base);
    let bad = s
        .http
        .post(&url)
        .json(&json!({"grant_type": "refresh_token", "refresh_token": rt, "scope": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().await.unwrap()["error"], "invalid_scope");
    let ok = s
        .http
        .post(&url)
        .json(&json!({"grant_type": "refresh_token", "refresh_token": rt}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn graphql_refuses_expired_tampered_foreign_and_unsigned_tokens_with_401() {
    let s = start().await;
    let good = s.token().await;
    let payload = b64json(good.split('.').nth(1).unwrap());
    let now = chrono::Utc::now().timestamp();
    let mut expired = payload.clone();
    expired["exp"] = json!(now - 3600);
    expired["iat"] = json!(now - 10800);
    expired["nbf"] = json!(now - 10800);
    let mut wrong_issuer = payload.clone();
    wrong_issuer["iss"] = json!("https://elsewhere.example");
    let mut future = payload.clone();
    future["nbf"] = json!(now + 3600);
    let header_none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let parts: Vec<&str> = good.split('.').collect();
    let unsigned = format!("{header_none}.{}.", parts[1]);
    let mut tampered_payload = payload.clone();
    tampered_payload["user"]["uid"] = json!("00000000-0000-0000-0000-000000000000");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(tampered_payload.to_string()),
        parts[2]
    );
    let mut unknown_kid_header = b64json(parts[0]);
    unknown_kid_header["kid"] = json!("no-such-key");
    let unknown_kid = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(unknown_kid_header.to_string()),
        parts[1],
        parts[2]
    );
    let hs256_header = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"alg":"HS256","typ":"JWT","kid":{}}}"#,
        b64json(parts[0])["kid"]
    ));
    let hs256 = format!("{hs256_header}.{}.{}", parts[1], parts[2]);
    let cases = [
        ("HS256 with the public key", hs256, "algorithm"),
        (
            "expired",
            forge(&s, expired, jsonwebtoken::Algorithm::RS256),
            "expired",
        ),
        (
            "wrong issuer",
            forge(&s, wrong_issuer, jsonwebtoken::Algorithm::RS256),
            "issuer",
        ),
        (
            "not yet valid",
            forge(&s, future, jsonwebtoken::Algorithm::RS256),
            "not valid yet",
        ),
        ("alg none", unsigned, "algorithm"),
        ("tampered", tampered, "signature"),
        ("unknown kid", unknown_kid, "key"),
        ("garbage", "abc".to_owned(), "not a JWT"),
    ];
    for (name, token, hint) in cases {
        let r = s
            .http
            .post(format!("{}/services/ekko/v2/graphql", s.base))
            .bearer_auth(&token)
            .json(&json!({"query": "{ account { email } }"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{name}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{name}: {challenge}"
        );
        let body: Value = r.json().await.unwrap();
        let msg = body["errors"][0]["message"].as_str().unwrap();
        assert!(msg.contains(hint), "{name}: {msg}");
        assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    }
}
