//! The API's description and wiring agree with the code: the committed OpenAPI document, the
//! template's route and environment, and the local stack's router.

use integration_tests::{spawn_stack, template};
use local_stack::paths;

use crate::helpers::spawn_api;

/// `docs/openapi.json` is the document the code generates. After changing the API, regenerate
/// it with `UPDATE_OPENAPI=1 cargo test -p integration-tests --test api spec::` and commit it.
#[test]
fn the_committed_openapi_document_is_fresh() {
    let committed_path = paths::root().join("docs/openapi.json");
    let generated = send_api::openapi_json();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&committed_path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is stale: regenerate it with \
         `UPDATE_OPENAPI=1 cargo test -p integration-tests --test api spec::` and commit it"
    );
}

#[tokio::test]
async fn the_served_document_describes_every_route_and_the_bearer_scheme() {
    let api = spawn_api().await;
    let reply = api.get("/v1/openapi.json", None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, send_api::openapi_json());
    let doc = reply.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/v1/ai-config"]["get"].is_object());
    assert!(doc["paths"]["/v1/ai-config"]["put"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc["paths"]["/v1/ai-config"]["put"]["security"][0]["bearer"],
        serde_json::json!([])
    );
}

#[test]
fn the_template_and_the_local_router_send_every_v1_path_to_send_api() {
    let routes = template().http_routes("SendApiFunction").unwrap();
    assert_eq!(routes, [("ANY".to_owned(), "/v1/{proxy+}".to_owned())]);
    let manifest: toml::Table = std::fs::read_to_string(paths::root().join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let router = &manifest["workspace"]["metadata"]["lambda"]["watch"]["router"];
    assert_eq!(router["/v1/{*proxy}"].as_str(), Some("send-api"));
}

#[tokio::test]
async fn the_template_environment_needs_an_issuer_and_audience_and_then_is_valid() {
    let stack = spawn_stack().await;
    let env = template()
        .function_env("SendApiFunction", &stack.provisioned)
        .unwrap();
    assert_eq!(env["TABLE_NAME"], stack.provisioned.tables["AppTable"]);
    let config = |env: &std::collections::BTreeMap<String, String>| {
        shared::config::SendApiConfig::from_env(&shared::config::Env::from_pairs(
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ))
    };
    assert!(
        config(&env).is_err(),
        "JwtIssuer and JwtAudience have no defaults: a deploy must set them"
    );
    let mut env = env;
    env.insert("JWT_ISSUER".into(), "https://clerk.example.com".into());
    env.insert("JWT_AUDIENCE".into(), "dashboard".into());
    let config = config(&env).expect("a valid configuration");
    assert_eq!(config.auth.workspace_claim, "org_id");
}
