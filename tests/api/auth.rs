//! Every `/v1/` route but the OpenAPI document needs a valid Bearer token; each way a token can
//! be wrong gets 401 with the one error shape, and the API never runs the route.

use integration_tests::{default_secrets, fixture};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use local_stack::token::{LOCAL_JWT_AUDIENCE, LOCAL_JWT_ISSUER, LOCAL_JWT_SECRET, TokenSpec};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{TestApi, spawn_api, spawn_api_with, token, workspace};

/// Every operation of the committed OpenAPI document, as (method, path with ids filled in,
/// whether it takes a body). The spec tests keep the document equal to the code's routes.
fn every_operation() -> Vec<(&'static str, String, bool)> {
    let doc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(local_stack::paths::root().join("docs/openapi.json")).unwrap(),
    )
    .unwrap();
    let mut operations = vec![];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method = ["get", "put", "post", "patch", "delete"]
                .into_iter()
                .zip(["GET", "PUT", "POST", "PATCH", "DELETE"])
                .find(|(m, _)| m == method)
                .unwrap_or_else(|| panic!("an operation with method {method}"))
                .1;
            let mut concrete = path.clone();
            for (param, value) in [("{id}", "c123"), ("{phoneNumberId}", "123456789")] {
                concrete = concrete.replace(param, value);
            }
            assert!(
                !concrete.contains('{'),
                "a path parameter to fill in: {path}"
            );
            operations.push((method, concrete, operation.get("requestBody").is_some()));
        }
    }
    assert!(
        operations.len() >= 20,
        "the document lists the API: {operations:?}"
    );
    operations
}

async fn assert_unauthenticated(api: &TestApi, token: Option<&str>, why: &str) {
    let reply = api.get("/v1/ai-config", token).await;
    assert_eq!(reply.status, 401, "{why}: {}", reply.body);
    assert_eq!(reply.error_code(), "unauthenticated", "{why}");
    assert_eq!(reply.headers["www-authenticate"], "Bearer", "{why}");
}

#[tokio::test]
async fn a_valid_token_reaches_the_route() {
    let api = spawn_api().await;
    let reply = api
        .get("/v1/ai-config", Some(&token(&workspace("ws"))))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn a_request_without_a_token_gets_401() {
    let api = spawn_api().await;
    assert_unauthenticated(&api, None, "no Authorization header").await;
    let reply = api
        .put("/v1/ai-config", None, &json!({ "enabled": true }))
        .await;
    assert_eq!(reply.status, 401, "a write without a token: {}", reply.body);
}

#[tokio::test]
async fn a_token_with_a_bad_signature_gets_401() {
    let api = spawn_api().await;
    let forged = TokenSpec {
        secret: "not-the-local-secret",
        ..TokenSpec::local("ws-any")
    }
    .mint()
    .unwrap();
    assert_unauthenticated(&api, Some(&forged), "signed with another key").await;
    let valid = token(&workspace("ws"));
    let mut parts: Vec<&str> = valid.split('.').collect();
    parts[2] = "c2lnbmF0dXJl";
    assert_unauthenticated(&api, Some(&parts.join(".")), "signature replaced").await;
    assert_unauthenticated(&api, Some("not-a-jwt"), "not a JWT").await;
}

#[tokio::test]
async fn an_expired_token_gets_401() {
    let api = spawn_api().await;
    let ws = workspace("ws");
    let an_hour_ago = time::OffsetDateTime::now_utc().unix_timestamp() - 7200;
    let expired = TokenSpec::local(ws.as_str()).mint_at(an_hour_ago).unwrap();
    assert_unauthenticated(&api, Some(&expired), "expired an hour ago").await;
}

#[tokio::test]
async fn a_token_for_another_audience_gets_401() {
    let api = spawn_api().await;
    let other = TokenSpec {
        audience: "another-api",
        ..TokenSpec::local("ws-any")
    }
    .mint()
    .unwrap();
    assert_unauthenticated(&api, Some(&other), "wrong audience").await;
}

#[tokio::test]
async fn a_token_from_another_issuer_gets_401() {
    let api = spawn_api().await;
    let other = TokenSpec {
        issuer: "https://evil.invalid",
        ..TokenSpec::local("ws-any")
    }
    .mint()
    .unwrap();
    assert_unauthenticated(&api, Some(&other), "wrong issuer").await;
}

#[tokio::test]
async fn a_token_without_a_workspace_gets_401() {
    let api = spawn_api().await;
    let no_workspace = TokenSpec {
        workspace_claim: "team",
        ..TokenSpec::local("ws-any")
    }
    .mint()
    .unwrap();
    assert_unauthenticated(&api, Some(&no_workspace), "no org_id claim").await;
}

#[tokio::test]
async fn without_a_token_secret_in_the_app_secret_every_token_gets_401() {
    let api = spawn_api_with(default_secrets(), &[]).await;
    assert_unauthenticated(
        &api,
        Some(&token(&workspace("ws"))),
        "no dashboard_jwt_secret",
    )
    .await;
}

#[tokio::test]
async fn a_jwks_key_rotation_is_picked_up() {
    let idp = MockServer::start().await;
    let serve = |jwks: &'static str| {
        Mock::given(method("GET"))
            .and(path("/.well-known/jwks.json"))
            .respond_with(
                ResponseTemplate::new(200).set_body_raw(fixture(jwks), "application/json"),
            )
    };
    serve("jwt/jwks-a.json").mount(&idp).await;
    let jwks_url = format!("{}/.well-known/jwks.json", idp.uri());
    let api = spawn_api_with(
        default_secrets(),
        &[("JWKS_URL", jwks_url.as_str()), ("JWT_ALGORITHMS", "RS256")],
    )
    .await;
    let ws = workspace("ws");
    let signed = |key: &str, kid: &str| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = json!({ "iss": LOCAL_JWT_ISSUER, "aud": LOCAL_JWT_AUDIENCE, "exp": now + 300, "org_id": ws.as_str() });
        let key = EncodingKey::from_rsa_pem(&fixture(key)).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };

    let reply = api
        .get(
            "/v1/ai-config",
            Some(&signed("jwt/rsa-a.pem", "test-key-a")),
        )
        .await;
    assert_eq!(reply.status, 200, "key A: {}", reply.body);
    let before = signed("jwt/rsa-b.pem", "test-key-b");
    assert_unauthenticated(
        &api,
        Some(&before),
        "key B before the provider publishes it",
    )
    .await;

    idp.reset().await;
    serve("jwt/jwks-a-b.json").mount(&idp).await;
    let reply = api
        .get(
            "/v1/ai-config",
            Some(&signed("jwt/rsa-b.pem", "test-key-b")),
        )
        .await;
    assert_eq!(
        reply.status, 200,
        "key B after the rotation: {}",
        reply.body
    );
    assert_eq!(
        idp.received_requests().await.unwrap().len(),
        1,
        "one refresh"
    );

    // The local HS256 secret means nothing to a JWKS verifier.
    let hs256 = TokenSpec {
        secret: LOCAL_JWT_SECRET,
        ..TokenSpec::local(ws.as_str())
    }
    .mint()
    .unwrap();
    assert_unauthenticated(&api, Some(&hs256), "HS256 where RS256 is configured").await;
}

#[tokio::test]
async fn an_unreachable_jwks_endpoint_gets_503_not_a_pass() {
    let api = spawn_api_with(
        default_secrets(),
        &[
            ("JWKS_URL", "http://127.0.0.1:9/jwks.json"),
            ("JWT_ALGORITHMS", "RS256"),
        ],
    )
    .await;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-key-a".into());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = json!({ "iss": LOCAL_JWT_ISSUER, "aud": LOCAL_JWT_AUDIENCE, "exp": now + 300, "org_id": "ws-a" });
    let key = EncodingKey::from_rsa_pem(&fixture("jwt/rsa-a.pem")).unwrap();
    let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    let reply = api.get("/v1/ai-config", Some(&token)).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.error_code(), "auth_unavailable");
    assert!(reply.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn the_openapi_document_needs_no_token_and_unknown_routes_get_a_json_404() {
    let api = spawn_api().await;
    let reply = api.get("/v1/openapi.json", None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["info"]["title"], "send-api");
    let reply = api.get("/v1/nothing-here", None).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.error_code(), "not_found");
    let reply = api.send("DELETE", "/v1/ai-config", None, None).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.error_code(), "method_not_allowed");
}

#[tokio::test]
async fn every_route_of_the_openapi_document_but_the_document_gets_401_for_each_bad_token() {
    let api = spawn_api().await;
    let forged = TokenSpec {
        secret: "not-the-local-secret",
        ..TokenSpec::local("ws-any")
    }
    .mint()
    .unwrap();
    let an_hour_ago = time::OffsetDateTime::now_utc().unix_timestamp() - 7200;
    let expired = TokenSpec::local("ws-any").mint_at(an_hour_ago).unwrap();
    let body = json!({});
    let mut checked = 0;
    for (method, path, has_body) in every_operation() {
        if (method, path.as_str()) == ("GET", "/v1/openapi.json") {
            let reply = api.get(&path, None).await;
            assert_eq!(reply.status, 200, "the document needs no token");
            continue;
        }
        for (why, token) in [
            ("no token", None),
            ("a bad signature", Some(forged.as_str())),
            ("an expired token", Some(expired.as_str())),
        ] {
            let reply = api
                .send(method, &path, token, has_body.then_some(&body))
                .await;
            let what = format!("{method} {path} with {why}");
            assert_eq!(reply.status, 401, "{what}: {}", reply.body);
            assert_eq!(reply.error_code(), "unauthenticated", "{what}");
            assert_eq!(reply.headers["www-authenticate"], "Bearer", "{what}");
            checked += 1;
        }
    }
    assert!(checked >= 60, "{checked} requests checked");
}

/// `method path?query` with a valid token, `headers` and `body`, as API Gateway delivers it.
async fn raw(
    api: &TestApi,
    method: &'static str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> crate::helpers::Reply {
    let mut all = vec![(
        "authorization".to_owned(),
        format!("Bearer {}", token(&workspace("ws"))),
    )];
    all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    api.send_raw(integration_tests::ApiRequest {
        method,
        path: path.into(),
        query: query.into(),
        headers: all,
        body: body.map(|b| b.as_bytes().to_vec()),
        base64: false,
    })
    .await
}

#[tokio::test]
async fn an_id_that_is_not_utf8_in_the_path_gets_400_in_the_json_error_shape() {
    let api = spawn_api().await;
    for (method, path, body) in [
        ("GET", "/v1/contacts/%FF", None),
        ("GET", "/v1/conversations/%C3%28/messages", None),
        ("PATCH", "/v1/contacts/%FF", Some(r#"{"name":"A"}"#)),
        ("DELETE", "/v1/quick-replies/ab%FE", None),
        ("DELETE", "/v1/whatsapp/integrations/%FF", None),
    ] {
        let json = [("content-type", "application/json")];
        let reply = raw(&api, method, path, "", &json, body).await;
        assert_eq!(reply.status, 400, "{method} {path}: {}", reply.body);
        assert_eq!(reply.error_code(), "validation_failed", "{method} {path}");
        assert_eq!(reply.headers["content-type"], "application/json");
        // Named as the document names it.
        let field = if path.contains("integrations") {
            "phoneNumberId"
        } else {
            "id"
        };
        assert_eq!(
            reply.json()["error"]["details"]["field"],
            field,
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_gets_a_json_error_with_its_status() {
    let api = spawn_api().await;
    let put = |headers: &'static [(&'static str, &'static str)], body: &'static str| {
        raw(&api, "PUT", "/v1/ai-config", "", headers, Some(body))
    };
    let json = &[("content-type", "application/json")];
    let settings = api
        .get("/v1/ai-config", Some(&token(&workspace("ws"))))
        .await
        .body;
    let valid: &'static str = settings.leak();
    for (why, reply) in [
        (
            "text/plain",
            put(&[("content-type", "text/plain")], valid).await,
        ),
        (
            "a form",
            put(
                &[("content-type", "application/x-www-form-urlencoded")],
                valid,
            )
            .await,
        ),
    ] {
        assert_eq!(reply.status, 415, "{why}: {}", reply.body);
        assert_eq!(reply.error_code(), "unsupported_media_type", "{why}");
    }
    for (why, body) in [
        ("malformed", r#"{"enabled": tru"#),
        ("empty", ""),
        ("not an object", "[1, 2]"),
    ] {
        let reply = put(json, body).await;
        assert_eq!(reply.status, 400, "{why}: {}", reply.body);
        assert_eq!(reply.error_code(), "validation_failed", "{why}");
    }
    // JSON with parameters, a +json type, or no declared type, is read as JSON.
    for headers in [
        &[("content-type", "application/json; charset=utf-8")][..],
        &[("content-type", "application/merge-patch+json")][..],
        &[][..],
    ] {
        let reply = put(headers, valid).await;
        assert_eq!(reply.status, 200, "{headers:?}: {}", reply.body);
    }
}

#[tokio::test]
async fn a_query_string_the_route_does_not_take_gets_400_in_the_json_error_shape() {
    let api = spawn_api().await;
    for query in ["bogus=1", "limit=1&limit=2", "status=%FF", "cursor=%"] {
        let reply = raw(&api, "GET", "/v1/conversations", query, &[], None).await;
        assert_eq!(reply.status, 400, "?{query}: {}", reply.body);
        assert_eq!(reply.error_code(), "validation_failed", "?{query}");
    }
}

#[tokio::test]
async fn an_unknown_route_or_method_gets_404_or_405_in_the_json_error_shape_with_a_token() {
    let api = spawn_api().await;
    for (method, path, status, code) in [
        ("GET", "/v1/nothing-here", 404, "not_found"),
        ("POST", "/v1/conversations/c1/archive", 404, "not_found"),
        ("GET", "/v1", 404, "not_found"),
        ("GET", "/v2/conversations", 404, "not_found"),
        ("POST", "/v1/conversations", 405, "method_not_allowed"),
        ("PUT", "/v1/contacts/c1/notes", 405, "method_not_allowed"),
        ("DELETE", "/v1/openapi.json", 405, "method_not_allowed"),
    ] {
        let reply = raw(&api, method, path, "", &[], None).await;
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.body);
        assert_eq!(reply.error_code(), code, "{method} {path}");
    }
}
