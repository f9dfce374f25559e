//! `GET` and `PUT /v1/ai-config`: the caller's own AI settings, validated, in the very item the
//! message processor reads.

use serde_json::{Value, json};
use shared::conversations::model::AiConfig;
use shared::conversations::store::TenantStore;

use crate::helpers::{spawn_api, token, workspace};

fn settings() -> Value {
    json!({
        "enabled": true,
        "systemPrompt": "You sell jackets. Answer in one sentence.",
        "providers": { "grok": { "model": "grok-3-mini" }, "sealion": { "model": null } },
        "grokWeight": 30,
        "historyLength": 8,
        "temperature": 0.2,
        "maxTokens": 300,
        "pauseOnHumanReply": false
    })
}

#[tokio::test]
async fn a_workspace_without_settings_reads_the_defaults_with_ai_off() {
    let api = spawn_api().await;
    let reply = api
        .get("/v1/ai-config", Some(&token(&workspace("ws"))))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["enabled"], false);
    assert_eq!(body["grokWeight"], 50);
    assert_eq!(body["temperature"], 0.4);
    assert_eq!(body["providers"]["grok"]["model"], Value::Null);
}

#[tokio::test]
async fn put_stores_the_settings_and_get_reads_them_back() {
    let api = spawn_api().await;
    let token = token(&workspace("ws"));
    let reply = api.put("/v1/ai-config", Some(&token), &settings()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json(), settings());
    let reply = api.get("/v1/ai-config", Some(&token)).await;
    assert_eq!(reply.json(), settings());
}

#[tokio::test]
async fn the_processor_reads_what_put_stored() {
    let api = spawn_api().await;
    let ws = workspace("ws");
    let reply = api
        .put("/v1/ai-config", Some(&token(&ws)), &settings())
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = api.processor_store.ai_config(&ws).await.unwrap();
    assert_eq!(
        seen,
        AiConfig {
            enabled: true,
            system_prompt: "You sell jackets. Answer in one sentence.".into(),
            grok_model: Some("grok-3-mini".into()),
            sealion_model: None,
            grok_weight: 30,
            history_length: 8,
            temperature: 0.2,
            max_tokens: 300,
            pause_on_human_reply: false,
        }
    );
}

#[tokio::test]
async fn workspace_a_can_neither_read_nor_change_workspace_bs_settings() {
    let api = spawn_api().await;
    let (a, b) = (workspace("ws-a"), workspace("ws-b"));
    let mut b_settings = settings();
    b_settings["systemPrompt"] = "B's own prompt".into();
    assert_eq!(
        api.put("/v1/ai-config", Some(&token(&b)), &b_settings)
            .await
            .status,
        200
    );

    // A reads its own (default) settings, never B's.
    let read = api.get("/v1/ai-config", Some(&token(&a))).await.json();
    assert_ne!(read["systemPrompt"], "B's own prompt");
    assert_eq!(read["enabled"], false);

    // A's write lands in A's item; B's is untouched.
    let mut a_settings = settings();
    a_settings["systemPrompt"] = "A's prompt".into();
    assert_eq!(
        api.put("/v1/ai-config", Some(&token(&a)), &a_settings)
            .await
            .status,
        200
    );
    assert_eq!(
        api.get("/v1/ai-config", Some(&token(&b))).await.json(),
        b_settings
    );
    assert_eq!(
        api.processor_store
            .ai_config(&b)
            .await
            .unwrap()
            .system_prompt,
        "B's own prompt"
    );
    assert_eq!(
        api.processor_store
            .ai_config(&a)
            .await
            .unwrap()
            .system_prompt,
        "A's prompt"
    );
}

#[tokio::test]
async fn invalid_settings_get_400_naming_the_field_and_change_nothing() {
    let api = spawn_api().await;
    let ws = workspace("ws");
    let token = token(&ws);
    type Change = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Change)> = vec![
        ("grokWeight", Box::new(|s| s["grokWeight"] = 101.into())),
        ("grokWeight", Box::new(|s| s["grokWeight"] = (-1).into())),
        ("grokWeight", Box::new(|s| s["grokWeight"] = "half".into())),
        (
            "historyLength",
            Box::new(|s| s["historyLength"] = 500.into()),
        ),
        ("temperature", Box::new(|s| s["temperature"] = 3.into())),
        ("maxTokens", Box::new(|s| s["maxTokens"] = 0.into())),
        ("systemPrompt", Box::new(|s| s["systemPrompt"] = "".into())),
        (
            "systemPrompt",
            Box::new(|s| {
                s.as_object_mut().unwrap().remove("systemPrompt");
            }),
        ),
        (
            "providers.grok.model",
            Box::new(|s| s["providers"]["grok"]["model"] = "".into()),
        ),
        (
            "providers.sealion",
            Box::new(|s| {
                s["providers"].as_object_mut().unwrap().remove("sealion");
            }),
        ),
        ("enabled", Box::new(|s| s["enabled"] = "yes".into())),
        ("grok_weight", Box::new(|s| s["grok_weight"] = 10.into())),
    ];
    for (field, change) in cases {
        let mut body = settings();
        change(&mut body);
        let reply = api.put("/v1/ai-config", Some(&token), &body).await;
        assert_eq!(reply.status, 400, "{field}: {}", reply.body);
        assert_eq!(reply.error_code(), "validation_failed", "{field}");
        let error = &reply.json()["error"];
        assert_eq!(error["details"]["field"], field, "{}", reply.body);
        assert!(
            error["message"].as_str().unwrap().contains(field),
            "{}",
            reply.body
        );
    }
    let not_json = api
        .send_raw(integration_tests::ApiRequest {
            method: "PUT",
            path: "/v1/ai-config".into(),
            query: String::new(),
            headers: vec![("authorization".into(), format!("Bearer {token}"))],
            body: Some(b"{\"enabled\": tru".to_vec()),
            base64: false,
        })
        .await;
    assert_eq!(not_json.status, 400, "{}", not_json.body);
    assert_eq!(
        api.processor_store.ai_config(&ws).await.unwrap(),
        AiConfig::default()
    );
}
