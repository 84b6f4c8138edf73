//! The ekko v2 GraphQL API over HTTP.

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn account_me_and_default_id_return_the_caller() {
    let s = start().await;
    let t = s.token().await;
    for q in [
        r#"{ account(id: "me") { email full_name fullName created_at } }"#,
        "{ account { email full_name fullName created_at } }",
    ] {
        let (status, body) = s.graphql(Some(&t), q, json!({})).await;
        assert_eq!(status, 200);
        let a = &body["data"]["account"];
        assert_eq!(a["email"], EMAIL);
        assert_eq!(a["full_name"], FULL_NAME);
        assert_eq!(a["fullName"], FULL_NAME);
        assert!(a["created_at"].as_str().unwrap().ends_with('Z'));
    }
}

#[tokio::test]
async fn another_accounts_id_is_not_found_not_leaked() {
    let s = start().await;
    let mine = s.token().await;
    let theirs = s.token_response(OTHER_EMAIL).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, other) = s
        .graphql(Some(&theirs), "{ account { id } }", json!({}))
        .await;
    let other_id = other["data"]["account"]["id"].as_str().unwrap();
    let (_, body) = s
        .graphql(
            Some(&mine),
            "query($id: ID) { account(id: $id) { email } }",
            json!({"id": other_id}),
        )
        .await;
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["errors"][0]["extensions"]["code"], "NOT_FOUND");
}

#[tokio::test]
async fn anonymous_callers_can_introspect_but_not_read_data() {
    let s = start().await;
    let (status, body) = s
        .graphql(
            None,
            "{ __schema { queryType { name } subscriptionType { name } } }",
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");
    assert_eq!(
        body["data"]["__schema"]["subscriptionType"]["name"],
        "Subscription"
    );
    let (status, body) = s
        .graphql(None, r#"{ account(id: "me") { email } }"#, json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
}

#[tokio::test]
async fn account_update_validates_and_persists() {
    let s = start().await;
    let t = s.token().await;
    let m = "mutation($n: String!) { account_update(full_name: $n) { full_name } }";
    let (_, body) = s.graphql(Some(&t), m, json!({"n": "   "})).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert_eq!(body["errors"][0]["extensions"]["field"], "full_name");
    let (_, body) = s.graphql(Some(&t), m, json!({"n": "  New Name "})).await;
    assert_eq!(body["data"]["account_update"]["full_name"], "New Name");
    let (_, body) = s
        .graphql(Some(&t), "{ account { full_name } }", json!({}))
        .await;
    assert_eq!(body["data"]["account"]["full_name"], "New Name");
}

#[tokio::test]
async fn get_runs_queries_refuses_mutations_and_serves_graphiql_to_browsers() {
    let s = start().await;
    let t = s.token().await;
    let url = format!("{}/services/ekko/v2/graphql", s.base);
    let r = s
        .http
        .get(&url)
        .query(&[("query", "{ account { email } }")])
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["data"]["account"]["email"],
        EMAIL
    );
    let r = s
        .http
        .get(&url)
        .query(&[(
            "query",
            "mutation { account_update(full_name: \"x\") { full_name } }",
        )])
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = s
        .http
        .get(&url)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("text/html")
    );
    assert!(r.text().await.unwrap().to_lowercase().contains("graphiql"));
}

#[tokio::test]
async fn malformed_and_oversized_bodies_get_clear_errors() {
    let s = start().await;
    let url = format!("{}/services/ekko/v2/graphql", s.base);
    let r = s
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.json::<Value>().await.unwrap()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("JSON")
    );
    let huge = format!(r#"{{"query": "{}"}}"#, "a".repeat(2 * 1024 * 1024));
    let r = s
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let (_, body) = s
        .graphql(None, "{ account { nosuchfield } }", json!({}))
        .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nosuchfield")
    );
}

#[tokio::test]
async fn introspection_has_the_fields_gql_asks_for() {
    // gql's default introspection asks for args(includeDeprecated) and __InputValue.isDeprecated.
    let s = start().await;
    let q = r#"{ __schema { types { name fields(includeDeprecated: true) { name args(includeDeprecated: true) { name isDeprecated deprecationReason } } inputFields(includeDeprecated: true) { name } } } }"#;
    let (status, body) = s.graphql(None, q, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    let types = body["data"]["__schema"]["types"].as_array().unwrap();
    for name in [
        "Account",
        "Track",
        "TrackField",
        "Coordinates",
        "DeviceNotification",
    ] {
        assert!(
            types.iter().any(|t| t["name"] == name),
            "missing type {name}"
        );
    }
}

#[tokio::test]
async fn response_fields_come_in_query_order() {
    let s = start().await;
    let t = s.token().await;
    let aliases: Vec<String> = (0..12)
        .map(|i| format!("a{i}: account {{ email b: full_name a: id }}"))
        .collect();
    let q = format!(
        "{{ {} ... on Query {{ z: account {{ email }} }} }}",
        aliases.join(" ")
    );
    for _ in 0..20 {
        let (_, body) = s.graphql(Some(&t), &q, json!({})).await;
        let data = body["data"].as_object().unwrap();
        let mut expected: Vec<String> = (0..12).map(|i| format!("a{i}")).collect();
        expected.push("z".into());
        assert_eq!(data.keys().cloned().collect::<Vec<_>>(), expected);
        assert_eq!(
            data["a0"].as_object().unwrap().keys().collect::<Vec<_>>(),
            vec!["email", "b", "a"]
        );
    }
}

#[tokio::test]
async fn queries_over_the_depth_or_complexity_limit_get_a_clear_error() {
    let s = start().await;
    let t = s.token().await;
    // Nesting deeper than ekko_api::MAX_QUERY_DEPTH (32).
    let mut deep = String::from("name");
    for _ in 0..40 {
        deep = format!("ofType {{ {deep} }}");
    }
    let q = format!("{{ __schema {{ types {{ fields {{ type {{ {deep} }} }} }} }} }}");
    let (status, body) = s.graphql(Some(&t), &q, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or("");
    // The parser's recursion limit or the depth validation, whichever trips first.
    assert!(
        message.contains("nested too deep") || message.contains("recursion depth"),
        "{body}"
    );
    assert!(body.get("data").is_none_or(Value::is_null), "{body}");

    // More than ekko_api::MAX_QUERY_COMPLEXITY (10 000) fields in one query.
    // (Each aliased `account { id }` counts 2; `__typename` does not count at all.)
    let wide: String = (0..5_050)
        .map(|i| format!("a{i}: account {{ id }} "))
        .collect();
    let (status, body) = s
        .graphql(Some(&t), &format!("{{ {wide} }}"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or("");
    assert!(message.contains("too complex"), "{body}");

    // Paged fields cost by their page size: one full page of tracks is fine, twenty are not.
    let page = |i: usize| {
        format!(
            "t{i}: tracks(page_size: 1000) {{ count next list {{ id recorded_at fields {{ name value }} }} }} "
        )
    };
    let one = format!("{{ device(id: \"{IMEI}\") {{ {} }} }}", page(0));
    let (_, body) = s.graphql(Some(&t), &one, json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    let many: String = (0..20).map(page).collect();
    let q = format!("{{ device(id: \"{IMEI}\") {{ {many} }} }}");
    let (_, body) = s.graphql(Some(&t), &q, json!({})).await;
    let message = body["errors"][0]["message"].as_str().unwrap_or("");
    assert!(message.contains("too complex"), "{body}");
}
