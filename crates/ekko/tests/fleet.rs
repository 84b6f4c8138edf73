//! The fleet graph over GraphQL: accounts (both spellings, `account_update`), groups (a tree,
//! roles inherited down it), devices and vehicles in groups, installations, invitations, and
//! the errors a person understands (`extensions.code`).

mod common;

use common::*;
use serde_json::{Value, json};

async fn ok(s: &TestServer, token: &str, q: &str, vars: Value) -> Value {
    let (status, body) = s.graphql(Some(token), q, vars).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{q}\n{body}");
    body["data"].clone()
}

/// The `extensions.code` and message of the first error.
async fn err(s: &TestServer, token: &str, q: &str, vars: Value) -> (String, String) {
    let (_, body) = s.graphql(Some(token), q, vars).await;
    let e = &body["errors"][0];
    assert!(e.is_object(), "expected an error: {body}");
    (
        e["extensions"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        e["message"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn token_of(s: &TestServer, email: &str) -> String {
    s.token_response(email).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn root_group(s: &TestServer, token: &str) -> String {
    let d = ok(
        s,
        token,
        "{ account { organization_id } groups { list { id parent_id } } }",
        json!({}),
    )
    .await;
    d["groups"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["parent_id"].is_null())
        .expect("a root group")["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn create_group(s: &TestServer, token: &str, parent: &str, name: &str) -> String {
    ok(
        s,
        token,
        "mutation($p: ID!, $n: String!) { group_create(parent_id: $p, name: $n) { id name parent_id } }",
        json!({"p": parent, "n": name}),
    )
    .await["group_create"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn account_has_both_spellings_and_account_update_edits_every_field() {
    let s = start().await;
    let t = s.token().await;
    let d = ok(
        &s,
        &t,
        r#"mutation { account_update(full_name: "Ada L", short_name: "Ada", phone: "+33 6 12 34 56 78",
             company_name: "Fleet SA", country_code: "fr", language: "fr-fr", time_zone: "Europe/Paris") {
             full_name fullName short_name shortName phone company_name companyName
             country_code countryCode language time_zone timeZone organization_id organizationId } }"#,
        json!({}),
    )
    .await;
    let a = &d["account_update"];
    assert_eq!(a["fullName"], "Ada L");
    assert_eq!(a["shortName"], "Ada");
    assert_eq!(a["phone"], "+33612345678");
    assert_eq!(a["companyName"], "Fleet SA");
    assert_eq!(a["countryCode"], "FR");
    assert_eq!(a["language"], "fr-FR");
    assert_eq!(a["timeZone"], "Europe/Paris");
    assert_eq!(a["organization_id"], a["organizationId"]);
    // The password grant above records the sign-in.
    let d = ok(
        &s,
        &t,
        "{ account(id: \"me\") { lastSignInAt last_sign_in_at confirmedAt createdAt } }",
        json!({}),
    )
    .await;
    assert_eq!(
        d["account"]["lastSignInAt"],
        d["account"]["last_sign_in_at"]
    );
    // "" clears an optional field; a bad value is a clear BAD_USER_INPUT.
    let d = ok(
        &s,
        &t,
        "mutation { account_update(short_name: \"\") { short_name full_name } }",
        json!({}),
    )
    .await;
    assert!(d["account_update"]["short_name"].is_null());
    assert_eq!(d["account_update"]["full_name"], "Ada L");
    let (code, msg) = err(
        &s,
        &t,
        "mutation { account_update(country_code: \"France\") { id } }",
        json!({}),
    )
    .await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(msg.contains("ISO 3166-1"), "{msg}");
    let (code, _) = err(&s, &t, "mutation { account_update { id } }", json!({})).await;
    assert_eq!(code, "BAD_USER_INPUT");
}

#[tokio::test]
async fn groups_form_a_tree_and_lists_filter_by_group_text_and_status() {
    let s = start().await;
    let t = s.token().await;
    let root = root_group(&s, &t).await;
    let paris = create_group(&s, &t, &root, "Paris").await;
    let north = create_group(&s, &t, &paris, "Paris North").await;
    let lyon = create_group(&s, &t, &root, "Lyon").await;

    let d = ok(
        &s,
        &t,
        "query($g: ID!) { group(id: $g) { name my_role parent { id } children { count list { name } } } }",
        json!({"g": paris}),
    )
    .await;
    assert_eq!(d["group"]["my_role"], "admin");
    assert_eq!(d["group"]["parent"]["id"], root);
    assert_eq!(d["group"]["children"]["list"][0]["name"], "Paris North");

    let add = "mutation($i: String!, $g: ID!, $n: String) { device_create(imei: $i, group_id: $g, name: $n) { id group_id status name } }";
    ok(
        &s,
        &t,
        add,
        json!({"i": "490154203237518", "g": north, "n": "Van 7"}),
    )
    .await;
    ok(
        &s,
        &t,
        add,
        json!({"i": "353918057329613", "g": lyon, "n": "Truck 2"}),
    )
    .await;

    let list = "query($g: ID, $t: String, $s: String) { devices(group_id: $g, text: $t, status: $s) { count list { id } } }";
    let ids = |d: &Value| -> Vec<String> {
        d["devices"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // The subtree of Paris holds the device of Paris North; the root holds all three.
    let d = ok(&s, &t, list, json!({"g": paris})).await;
    assert_eq!(ids(&d), vec!["490154203237518"]);
    let d = ok(&s, &t, list, json!({})).await;
    assert_eq!(d["devices"]["count"], 3);
    let d = ok(&s, &t, list, json!({"t": "truck"})).await;
    assert_eq!(ids(&d), vec!["353918057329613"]);

    // Suspended: listed by status, and refused at ingestion.
    ok(
        &s,
        &t,
        "mutation { device_update(id: \"353918057329613\", status: \"suspended\") { status } }",
        json!({}),
    )
    .await;
    let d = ok(&s, &t, list, json!({"s": "suspended"})).await;
    assert_eq!(ids(&d), vec!["353918057329613"]);
    assert_ne!(s.push_position("353918057329613", 45.76, 4.83).await, 200);
    assert_eq!(s.push_position(IMEI, 48.85, 2.35).await, 200);
    let d = ok(
        &s,
        &t,
        "{ device(id: \"359881234567899\") { last_contact } }",
        json!({}),
    )
    .await;
    assert!(d["device"]["last_contact"].is_string(), "{d}");

    // Bad filters and a non-empty group are clear errors.
    let (code, msg) = err(&s, &t, list, json!({"s": "lost"})).await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(msg.contains("active or suspended"), "{msg}");
    let (code, msg) = err(
        &s,
        &t,
        "mutation($g: ID!) { group_delete(id: $g) }",
        json!({"g": paris}),
    )
    .await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(msg.contains("not empty"), "{msg}");
    let (code, _) = err(
        &s,
        &t,
        "mutation($g: ID!) { group_delete(id: $g) }",
        json!({"g": root}),
    )
    .await;
    assert_eq!(code, "BAD_USER_INPUT");
    // A group cannot move below itself.
    let (code, msg) = err(
        &s,
        &t,
        "mutation($g: ID!, $p: ID!) { group_update(id: $g, parent_id: $p) { id } }",
        json!({"g": paris, "p": north}),
    )
    .await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(msg.contains("below itself"), "{msg}");
    // Lyon is empty once its device moves out; then it can go.
    ok(
        &s,
        &t,
        "mutation($g: ID!) { device_update(id: \"353918057329613\", group_id: $g) { group_id } }",
        json!({"g": root}),
    )
    .await;
    ok(
        &s,
        &t,
        "mutation($g: ID!) { group_delete(id: $g) }",
        json!({"g": lyon}),
    )
    .await;
}

#[tokio::test]
async fn vehicles_keep_the_history_of_the_devices_installed_in_them() {
    let s = start().await;
    let t = s.token().await;
    let create = "mutation($n: String, $v: String, $p: String, $g: ID!) { vehicle_create(group_id: $g, name: $n, vin: $v, plate: $p, make: \"Renault\", model: \"Kangoo\", year: 2021, fuel_type: \"electric\") { id vin fuel_type year } }";
    let root = root_group(&s, &t).await;
    let van = ok(
        &s,
        &t,
        create,
        json!({"g": root, "n": "Van 1", "v": "vf1kw0abc12345678", "p": "AB-123-CD"}),
    )
    .await["vehicle_create"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let car = ok(&s, &t, create, json!({"g": root, "n": "Car 2"})).await["vehicle_create"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let d = ok(
        &s,
        &t,
        "{ vehicles(text: \"ab-123\") { count list { name vin fuel_type } } }",
        json!({}),
    )
    .await;
    assert_eq!(d["vehicles"]["count"], 1);
    assert_eq!(d["vehicles"]["list"][0]["vin"], "VF1KW0ABC12345678");

    let attach = "mutation($d: ID!, $v: ID!) { device_attach(device_id: $d, vehicle_id: $v) { device_id vehicle_id removed_at } }";
    ok(&s, &t, attach, json!({"d": IMEI, "v": van})).await;
    let d = ok(
        &s,
        &t,
        "query($v: ID!) { vehicle(id: $v) { device { id } } device(id: \"359881234567899\") { vehicle { name } } }",
        json!({"v": van}),
    )
    .await;
    assert_eq!(d["vehicle"]["device"]["id"], IMEI);
    assert_eq!(d["device"]["vehicle"]["name"], "Van 1");

    // Moved to the car: the van's installation closes, both stay in the history.
    ok(&s, &t, attach, json!({"d": IMEI, "v": car})).await;
    let d = ok(
        &s,
        &t,
        "{ device(id: \"359881234567899\") { vehicle { name } installations { vehicle_id removed_at } } }",
        json!({}),
    )
    .await;
    let history = d["device"]["installations"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["vehicle_id"], car);
    assert!(history[0]["removed_at"].is_null());
    assert_eq!(history[1]["vehicle_id"], van);
    assert!(history[1]["removed_at"].is_string());
    let d = ok(
        &s,
        &t,
        "mutation { device_detach(device_id: \"359881234567899\") { removed_at } }",
        json!({}),
    )
    .await;
    assert!(d["device_detach"]["removed_at"].is_string());
    let (code, msg) = err(
        &s,
        &t,
        "mutation { device_detach(device_id: \"359881234567899\") { id } }",
        json!({}),
    )
    .await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(msg.contains("not installed"), "{msg}");

    // Validation speaks plainly.
    for (vars, needle) in [
        (json!({"g": root, "v": "TOO-SHORT"}), "not a VIN"),
        (json!({"g": "abc"}), "group_id must be a group id"),
    ] {
        let (code, msg) = err(&s, &t, create, vars).await;
        assert_eq!(code, "BAD_USER_INPUT");
        assert!(msg.contains(needle), "{msg}");
    }
    let (code, _) = err(
        &s,
        &t,
        "mutation($g: ID!) { vehicle_create(group_id: $g, year: 1700) { id } }",
        json!({"g": root}),
    )
    .await;
    assert_eq!(code, "BAD_USER_INPUT");
}

#[tokio::test]
async fn roles_are_inherited_down_the_tree_and_nothing_else_is_visible() {
    let s = start().await;
    let t = s.token().await;
    let root = root_group(&s, &t).await;
    let paris = create_group(&s, &t, &root, "Paris").await;
    let north = create_group(&s, &t, &paris, "Paris North").await;
    let lyon = create_group(&s, &t, &root, "Lyon").await;
    ok(
        &s,
        &t,
        "mutation($g: ID!) { device_update(id: \"359881234567899\", group_id: $g) { id } }",
        json!({"g": north}),
    )
    .await;
    let d = ok(
        &s,
        &t,
        "mutation($g: ID!, $e: String!) { group_invite(group_id: $g, email: $e, role: \"viewer\") { status role account { email } } }",
        json!({"g": paris, "e": OTHER_EMAIL}),
    )
    .await;
    assert_eq!(d["group_invite"]["status"], "added");

    let other = token_of(&s, OTHER_EMAIL).await;
    // The viewer sees Paris, its subgroup and its device, plus its own organization.
    let d = ok(
        &s,
        &other,
        "{ device(id: \"359881234567899\") { id group { name my_role } } devices { list { id } } }",
        json!({}),
    )
    .await;
    assert_eq!(d["device"]["group"]["name"], "Paris North");
    assert_eq!(d["device"]["group"]["my_role"], "viewer");
    let mut seen: Vec<&str> = d["devices"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, vec![OTHER_IMEI, IMEI]);
    // Lyon and the root are invisible: not found, exactly like a group that does not exist.
    for g in [&lyon, &root, &"999999".to_owned()] {
        let (code, _) = err(
            &s,
            &other,
            "query($g: ID!) { group(id: $g) { id } }",
            json!({"g": g}),
        )
        .await;
        assert_eq!(code, "NOT_FOUND", "group {g}");
    }
    // A viewer may not change anything, and is told which role it needs.
    let (code, msg) = err(
        &s,
        &other,
        "mutation { device_update(id: \"359881234567899\", name: \"mine\") { id } }",
        json!({}),
    )
    .await;
    assert_eq!(code, "FORBIDDEN");
    assert!(msg.contains("manager"), "{msg}");
    let (code, _) = err(
        &s,
        &other,
        "mutation($g: ID!) { group_create(parent_id: $g, name: \"x\") { id } }",
        json!({"g": paris}),
    )
    .await;
    assert_eq!(code, "FORBIDDEN");
    // The admin sees the viewer among the accounts of Paris; the viewer sees both.
    let d = ok(
        &s,
        &t,
        "query($g: ID!) { accounts(group_id: $g) { count list { email } } group(id: $g) { roles { role account { email } } } }",
        json!({"g": paris}),
    )
    .await;
    assert_eq!(d["accounts"]["list"][0]["email"], OTHER_EMAIL);
    assert_eq!(d["group"]["roles"][0]["role"], "viewer");

    // Revoked: the device is invisible again, and subscribing to it is an error.
    let other_id = ok(&s, &other, "{ account { id } }", json!({})).await["account"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let d = ok(
        &s,
        &t,
        "mutation($g: ID!, $a: ID!) { role_revoke(group_id: $g, account_id: $a) }",
        json!({"g": paris, "a": other_id}),
    )
    .await;
    assert_eq!(d["role_revoke"], true);
    let (code, _) = err(
        &s,
        &other,
        "{ device(id: \"359881234567899\") { id } }",
        json!({}),
    )
    .await;
    assert_eq!(code, "NOT_FOUND");
    // The last admin of an organization cannot be removed.
    let me = ok(&s, &t, "{ account { id } }", json!({})).await["account"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, msg) = err(
        &s,
        &t,
        "mutation($g: ID!, $a: ID!) { role_revoke(group_id: $g, account_id: $a) }",
        json!({"g": root, "a": me}),
    )
    .await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(msg.contains("last admin"), "{msg}");
}

#[tokio::test]
async fn an_invitation_for_a_new_email_is_taken_with_its_one_time_code_only() {
    let s = start().await;
    let t = s.token().await;
    let root = root_group(&s, &t).await;
    let d = ok(
        &s,
        &t,
        "mutation($g: ID!) { group_invite(group_id: $g, email: \"New.Hire@Example.com\", role: \"manager\") { status email role code account { id } } }",
        json!({"g": root}),
    )
    .await;
    assert_eq!(d["group_invite"]["status"], "pending");
    assert_eq!(d["group_invite"]["email"], "new.hire@example.com");
    let code = d["group_invite"]["code"].as_str().unwrap().to_owned();
    {
        let (ekko, store) = ekko::server::open_domain(s.dir.path()).await.unwrap();
        ekko_connect::accounts::register(&ekko, "new.hire@example.com", PASSWORD, "New Hire")
            .await
            .unwrap();
        store.close().await;
    }
    let hire = token_of(&s, "new.hire@example.com").await;
    // Signing up with the address gives nothing (Ekko does not confirm emails).
    let d = ok(&s, &hire, "{ devices { count } }", json!({})).await;
    assert_eq!(d["devices"]["count"], 0);
    let accept = "mutation($c: String!) { invitation_accept(code: $c) { role group_id } }";
    let (code_err, _) = err(&s, &hire, accept, json!({"c": "inv_wrong"})).await;
    assert_eq!(code_err, "NOT_FOUND");
    let d = ok(&s, &hire, accept, json!({"c": code})).await;
    assert_eq!(d["invitation_accept"]["role"], "manager");
    assert_eq!(d["invitation_accept"]["group_id"], root);
    // Spent: the same code works once.
    let (code_err, _) = err(&s, &t, accept, json!({"c": code})).await;
    assert_eq!(code_err, "NOT_FOUND");
    let d = ok(&s, &hire, "{ devices { count } }", json!({})).await;
    assert_eq!(d["devices"]["count"], 1);
    // A manager may rename the device, but not grant roles.
    ok(
        &s,
        &hire,
        "mutation { device_update(id: \"359881234567899\", name: \"Van\") { name } }",
        json!({}),
    )
    .await;
    let (code, _) = err(
        &s,
        &hire,
        "mutation($g: ID!) { group_invite(group_id: $g, email: \"x@y.z\", role: \"admin\") { status } }",
        json!({"g": root}),
    )
    .await;
    assert_eq!(code, "FORBIDDEN");
}

/// From a break-test: a manager of groups in two organizations could carry a device (and its
/// history) from one to the other; the last admin could demote itself through group_invite.
#[tokio::test]
async fn devices_and_vehicles_never_leave_their_organization_and_an_admin_always_remains() {
    let s = start().await;
    let t = s.token().await;
    let root = root_group(&s, &t).await;
    ok(
        &s,
        &t,
        "mutation($g: ID!, $e: String!) { group_invite(group_id: $g, email: $e, role: \"manager\") { status } }",
        json!({"g": root, "e": OTHER_EMAIL}),
    )
    .await;
    let other = token_of(&s, OTHER_EMAIL).await;
    let theirs = root_group_named(&s, &other, "Someone Else").await;
    let (code, msg) = err(
        &s,
        &other,
        "mutation($g: ID!) { device_update(id: \"359881234567899\", group_id: $g) { id } }",
        json!({"g": theirs}),
    )
    .await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(msg.contains("within its organization"), "{msg}");
    let v = ok(
        &s,
        &t,
        "mutation($g: ID!) { vehicle_create(group_id: $g, name: \"V\") { id } }",
        json!({"g": root}),
    )
    .await["vehicle_create"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, _) = err(
        &s,
        &other,
        "mutation($v: ID!, $g: ID!) { vehicle_update(id: $v, group_id: $g) { id } }",
        json!({"v": v, "g": theirs}),
    )
    .await;
    assert_eq!(code, "BAD_USER_INPUT");
    // The only admin of the root group cannot demote itself.
    let (code, msg) = err(
        &s,
        &t,
        "mutation($g: ID!, $e: String!) { group_invite(group_id: $g, email: $e, role: \"viewer\") { status } }",
        json!({"g": root, "e": EMAIL}),
    )
    .await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(msg.contains("last admin"), "{msg}");
}

/// From a break-test: two concurrent moves (A under B, B under A) both passed their checks and
/// made a cycle, which then hung every rights computation.
#[tokio::test]
async fn concurrent_group_moves_never_make_a_cycle() {
    let s = start().await;
    let t = s.token().await;
    let root = root_group(&s, &t).await;
    for _ in 0..5 {
        let a = create_group(&s, &t, &root, "A").await;
        let b = create_group(&s, &t, &root, "B").await;
        let mv = "mutation($g: ID!, $p: ID!) { group_update(id: $g, parent_id: $p) { id } }";
        let (r1, r2) = tokio::join!(
            s.graphql(Some(&t), mv, json!({"g": a, "p": b})),
            s.graphql(Some(&t), mv, json!({"g": b, "p": a}))
        );
        let failed = [&r1.1, &r2.1]
            .iter()
            .filter(|r| r.get("errors").is_some())
            .count();
        assert_eq!(failed, 1, "exactly one move wins: {r1:?} {r2:?}");
        let d = ok(&s, &t, "{ groups { count } }", json!({})).await;
        assert!(d["groups"]["count"].as_i64().unwrap() >= 3);
    }
}

async fn root_group_named(s: &TestServer, token: &str, name: &str) -> String {
    let d = ok(
        s,
        token,
        "{ groups(page_size: 500) { list { id name parent_id } } }",
        json!({}),
    )
    .await;
    d["groups"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["parent_id"].is_null() && g["name"] == name)
        .expect("that root group")["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn ids_may_be_sent_as_json_numbers_even_beyond_2_pow_53() {
    let s = start().await;
    let t = s.token().await;
    let root: i64 = root_group(&s, &t).await.parse().unwrap();
    let d = ok(
        &s,
        &t,
        "query($g: ID!) { group(id: $g) { id } }",
        json!({ "g": root }),
    )
    .await;
    assert_eq!(d["group"]["id"], root.to_string());
    // 123456789123456789 is exact as an integer: it is looked up, not rounded.
    let (code, msg) = err(
        &s,
        &t,
        "{ group(id: 123456789123456789) { id } }",
        json!({}),
    )
    .await;
    assert_eq!(code, "NOT_FOUND");
    assert!(msg.contains("123456789123456789"), "{msg}");
}

#[tokio::test]
async fn devices_of_other_organizations_stay_invisible_and_unchangeable() {
    let s = start().await;
    let t = s.token().await;
    for q in [
        "{ device(id: \"356307042441013\") { id } }",
        "mutation { device_update(id: \"356307042441013\", name: \"x\") { id } }",
        "mutation { device_delete(id: \"356307042441013\") }",
    ] {
        let (code, _) = err(&s, &t, q, json!({})).await;
        assert_eq!(code, "NOT_FOUND", "{q}");
    }
    // Registering a device that exists elsewhere is a conflict, never a takeover.
    let root = root_group(&s, &t).await;
    let (code, _) = err(
        &s,
        &t,
        "mutation($g: ID!) { device_create(imei: \"356307042441013\", group_id: $g) { id } }",
        json!({"g": root}),
    )
    .await;
    assert_eq!(code, "CONFLICT");
    let other = token_of(&s, OTHER_EMAIL).await;
    let d = ok(
        &s,
        &other,
        "{ device(id: \"356307042441013\") { id name } }",
        json!({}),
    )
    .await;
    assert!(d["device"]["name"].is_null());
}
