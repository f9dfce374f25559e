//! Local stand-ins for the outside services, so the demo never touches the internet.
//! The WhatsApp stand-in answers like the Cloud API (and Kapso's proxy of it) and hands out
//! wamids; the LLM stand-in answers OpenAI-compatible chat completions; the Resend stand-in
//! accepts emails. Each records its requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

/// One request a stand-in received.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recorded {
    /// Its place in the stand-in's log, from 1: `GET /_requests?since=N` lists those after N.
    pub seq: u64,
    pub path: String,
    /// Which credential came with it: `x-api-key`, `bearer`, or none.
    pub auth: Option<&'static str>,
    pub body: Value,
    /// The wamid the stand-in answered with, for sends.
    pub wamid: Option<String>,
}

#[derive(Clone, Default)]
struct Log {
    requests: Arc<Mutex<Vec<Recorded>>>,
    counter: Arc<AtomicU64>,
}

impl Log {
    fn record(&self, path: String, headers: &HeaderMap, body: Value, wamid: Option<String>) {
        let auth = if headers.contains_key("x-api-key") {
            Some("x-api-key")
        } else if headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer "))
        {
            Some("bearer")
        } else {
            None
        };
        if let Ok(mut requests) = self.requests.lock() {
            let seq = requests.len() as u64 + 1;
            requests.push(Recorded {
                seq,
                path,
                auth,
                body,
                wamid,
            });
        }
    }
}

/// A router served on loopback; the server stops when this is dropped.
pub struct Served {
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub base_url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A listener on `127.0.0.1:port` (a free port when `None`), for [`serve`]: its address is known
/// before the router that needs it is built.
pub async fn loopback(port: Option<u16>) -> anyhow::Result<tokio::net::TcpListener> {
    let port = port.unwrap_or(0);
    tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port}"))
}

/// Serves `router` on `listener` until the returned guard is dropped; `name` says who stopped
/// in the log if the server fails.
pub fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    name: &'static str,
) -> anyhow::Result<Served> {
    let base_url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            eprintln!("{name} stopped: {e}");
        }
    });
    Ok(Served { base_url, task })
}

/// A running stand-in; it stops when dropped.
pub struct StandIn {
    pub base_url: String,
    log: Log,
    _server: Served,
}

impl StandIn {
    pub fn requests(&self) -> Vec<Recorded> {
        self.log
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

async fn stand_in(router: Router, log: Log) -> anyhow::Result<StandIn> {
    let server = serve(loopback(None).await?, router, "stand-in")?;
    Ok(StandIn {
        base_url: server.base_url.clone(),
        log,
        _server: server,
    })
}

/// The WhatsApp Cloud API stand-in. Serves both `/{version}/{phone_number_id}/messages` (Meta)
/// and `/meta/whatsapp/{version}/{phone_number_id}/messages` (Kapso's proxy).
pub async fn whatsapp() -> anyhow::Result<StandIn> {
    let log = Log::default();
    let router = Router::new()
        .route("/{version}/{phone}/messages", post(send_message))
        .route(
            "/meta/whatsapp/{version}/{phone}/messages",
            post(send_message),
        )
        .route("/_requests", get(list_requests))
        .with_state(log.clone());
    stand_in(router, log).await
}

async fn send_message(
    State(log): State<Log>,
    Path(params): Path<Vec<(String, String)>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    let path = params
        .iter()
        .map(|(_, v)| v.as_str())
        .collect::<Vec<_>>()
        .join("/");
    let path = format!("/{path}/messages");
    if body.get("status").and_then(Value::as_str) == Some("read") {
        log.record(path, &headers, body, None);
        return Json(json!({ "success": true }));
    }
    let wamid = format!(
        "wamid.STANDIN{:06}",
        log.counter.fetch_add(1, Ordering::SeqCst) + 1
    );
    let to = body.get("to").cloned().unwrap_or(Value::Null);
    log.record(path, &headers, body, Some(wamid.clone()));
    Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": to, "wa_id": to }],
        "messages": [{ "id": wamid }]
    }))
}

/// `GET /_requests[?since=N]`: every recorded request, or those after the `seq` N (a poller's
/// cursor: pass the last `seq` it saw).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Since {
    since: Option<u64>,
}

async fn list_requests(State(log): State<Log>, Query(cursor): Query<Since>) -> Json<Value> {
    let since = cursor.since.unwrap_or(0);
    let requests: Vec<Recorded> = log
        .requests
        .lock()
        .map(|r| r.iter().filter(|r| r.seq > since).cloned().collect())
        .unwrap_or_default();
    Json(serde_json::to_value(requests).unwrap_or(Value::Null))
}

/// An OpenAI-compatible chat completions stand-in: it answers deterministically from the
/// last user message and reports token usage.
pub async fn llm() -> anyhow::Result<StandIn> {
    let log = Log::default();
    let router = Router::new()
        .route("/v1/chat/completions", post(complete))
        .route("/chat/completions", post(complete))
        .route("/_requests", get(list_requests))
        .with_state(log.clone());
    stand_in(router, log).await
}

async fn complete(
    State(log): State<Log>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    log.record("/chat/completions".into(), &headers, body.clone(), None);
    let last = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    let content = format!("(local LLM stand-in) You said: {last}");
    Json(json!({
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "model": body.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{ "index": 0, "finish_reason": "stop",
                      "message": { "role": "assistant", "content": content } }],
        "usage": { "prompt_tokens": 10, "completion_tokens": 8, "total_tokens": 18 }
    }))
}

/// The Resend stand-in: `POST /emails` answers like Resend with a new email id (recorded as
/// the request's `wamid`, the id it answered with). The stack's `RESEND_BASE_URL` points here.
pub async fn resend() -> anyhow::Result<StandIn> {
    let log = Log::default();
    let router = Router::new()
        .route("/emails", post(send_email))
        .route("/_requests", get(list_requests))
        .with_state(log.clone());
    stand_in(router, log).await
}

async fn send_email(
    State(log): State<Log>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    let id = format!(
        "email-standin-{:06}",
        log.counter.fetch_add(1, Ordering::SeqCst) + 1
    );
    log.record("/emails".into(), &headers, body, Some(id.clone()));
    Json(json!({ "id": id }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_request_list_resumes_after_a_cursor() {
        let standin = whatsapp().await.unwrap();
        let http = reqwest::Client::new();
        for text in ["one", "two", "three"] {
            http.post(format!("{}/v23.0/123/messages", standin.base_url))
                .json(&json!({ "to": "16505551234", "type": "text", "text": { "body": text } }))
                .send()
                .await
                .unwrap();
        }
        let after_first: Vec<Value> = http
            .get(format!("{}/_requests?since=1", standin.base_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let texts: Vec<_> = after_first
            .iter()
            .map(|r| {
                (
                    r["seq"].as_u64().unwrap(),
                    r["body"]["text"]["body"].clone(),
                )
            })
            .collect();
        assert_eq!(texts, [(2, json!("two")), (3, json!("three"))]);
        let all: Vec<Value> = http
            .get(format!("{}/_requests", standin.base_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(all.len(), 3);
        let response = http
            .get(format!("{}/_requests?since=soon", standin.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
    }
}
