//! Once through the real Lambda runtime loop: `cargo lambda watch` routes `/v1/` to send-api as
//! API Gateway does, and the local stack's minted token opens it.

use std::process::Command;
use std::time::Duration;

use local_stack::state;

use crate::helpers::{spawn_api, token, watch_send_api, workspace};

#[tokio::test]
async fn a_minted_token_reads_the_ai_config_through_cargo_lambda_watch() {
    let api = spawn_api().await;
    let watch = watch_send_api(&api, &[]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let url = format!("{}/v1/ai-config", watch.base_url());

    // The first invocation compiles the function, so allow for a build.
    let ws = workspace("ws");
    let response = http
        .get(&url)
        .header("authorization", format!("Bearer {}", token(&ws)))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "{body}; log: {}", watch.log.display());
    assert!(body.contains("\"grokWeight\""), "{body}");

    let response = http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 401);
}

/// `local-stack token [WORKSPACE]`, the built binary, with `env`: (stdout, stderr).
fn local_stack_token(workspace: &str, env: &[(&str, &str)]) -> (String, String) {
    let root = local_stack::paths::root();
    let built = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args([
            "build",
            "--quiet",
            "-p",
            "local-stack",
            "--bin",
            "local-stack",
        ])
        .status()
        .expect("cargo runs");
    assert!(built.success(), "local-stack builds");
    // The test binary is target/<profile>/deps/api-…; the stack's binary is in target/<profile>.
    let exe = std::env::current_exe().unwrap();
    let binary = exe.parent().unwrap().parent().unwrap().join("local-stack");
    let mut command = Command::new(binary);
    command.args(["token", workspace]).env_remove("WATCH_PORT");
    command.envs(env.iter().copied());
    let output = command.output().expect("local-stack runs");
    assert!(output.status.success(), "{output:?}");
    (
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// The `curl` line in the subcommand's output, run as a person pasting it would: its stdout.
fn run_curl_line(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("curl "))
        .unwrap_or_else(|| panic!("a curl line in: {stderr}"));
    assert!(
        !line.contains('$') && !line.contains('<'),
        "nothing left to fill in: {line}"
    );
    let output = Command::new("sh").args(["-c", line]).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn the_token_subcommand_prints_a_curl_line_that_reads_the_running_stacks_ai_config() {
    let api = spawn_api().await;
    let watch = watch_send_api(&api, &[]);
    // The first invocation compiles the function: not what the printed line should wait for.
    let warm = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap()
        .get(format!("{}/v1/openapi.json", watch.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), 200);
    let state_file = std::env::temp_dir()
        .join(integration_tests::unique_name("local-stack-state"))
        .with_extension("json");
    let state_env = state_file.to_str().unwrap();

    // No stack recorded and no WATCH_PORT: a token, and no line pointing nowhere.
    let (token, stderr) = local_stack_token("demo-shop", &[("LOCAL_STACK_STATE", state_env)]);
    assert_eq!(
        token.trim().split('.').count(),
        3,
        "a JWT on stdout: {token}"
    );
    assert!(!stderr.contains("curl "), "{stderr}");
    assert!(stderr.contains("no running stack"), "{stderr}");

    // As `local-stack up` records the stack it runs: the line reaches it, with a valid token.
    let ws = workspace("ws");
    state::write(&state_file, &state::StackState { port: watch.port }).unwrap();
    let (token, stderr) = local_stack_token(ws.as_str(), &[("LOCAL_STACK_STATE", state_env)]);
    assert!(
        stderr.contains(token.trim()),
        "the line carries the printed token: {stderr}"
    );
    let body = run_curl_line(&stderr);
    let settings: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("the AI settings: {body}"));
    assert!(
        settings["grokWeight"].is_number(),
        "200 with the settings: {body}"
    );

    // WATCH_PORT names the port when no stack is recorded.
    state::clear(&state_file);
    let port = watch.port.to_string();
    let (_, stderr) = local_stack_token(
        ws.as_str(),
        &[("LOCAL_STACK_STATE", state_env), ("WATCH_PORT", &port)],
    );
    let body = run_curl_line(&stderr);
    assert!(body.contains("\"grokWeight\""), "{body}");
}
