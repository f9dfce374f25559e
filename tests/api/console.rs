//! The local console in a real browser: `infra/demo up` serves it next to the whole local stack,
//! and headless Chromium (Debian's `chromium` and `chromium-driver`, which `infra/bootstrap`
//! installs) drives it as a person would. Screenshots of each side are kept under
//! `target/tmp/console/`.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use local_stack::token::TokenSpec;
use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: [&str; 2] = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"];
const CUSTOMER: &str = "16505551234";
/// The first delivery may wait for `cargo lambda watch` to build a function.
const FIRST_REPLY: Duration = Duration::from_secs(600);
const STEP: Duration = Duration::from_secs(60);

/// A process group started by the test, stopped (Ctrl-C, then kill) when dropped.
struct Group {
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
}

impl Group {
    fn output(&self) -> String {
        self.output.lock().map(|o| o.join("\n")).unwrap_or_default()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-INT", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// Starts `command` in its own process group, collecting its output; `ready` picks a value out
/// of a line of output, and the call returns once it has (or fails after `within`).
fn start_group(
    mut command: Command,
    within: Duration,
    ready: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
) -> (Group, String) {
    command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("the command starts");
    let output = Arc::new(Mutex::new(Vec::new()));
    let (found, wait) = mpsc::channel();
    let ready = Arc::new(ready);
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let (output, found, ready) = (Arc::clone(&output), found.clone(), Arc::clone(&ready));
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(value) = ready(&line) {
                    let _ = found.send(value);
                }
                if let Ok(mut o) = output.lock() {
                    o.push(line);
                }
            }
        });
    }
    let group = Group { child, output };
    match wait.recv_timeout(within) {
        Ok(value) => (group, value),
        Err(_) => panic!("not ready within {within:?}; output:\n{}", group.output()),
    }
}

/// `infra/demo up`, on free ports, with the LLM stand-in answering as SEA-LION (so replies carry
/// a model and token counts); returns the console's URL.
fn start_stack() -> (Group, String) {
    let root = local_stack::paths::root();
    let mut command = Command::new(root.join("infra/demo"));
    command.arg("up").current_dir(&root);
    for name in ["MOTO_PORT", "WATCH_PORT", "CONSOLE_PORT"] {
        command.env_remove(name);
    }
    command.env("DEMO_LLM", "standin");
    start_group(command, Duration::from_secs(1200), |line| {
        line.trim()
            .strip_prefix("console:")
            .map(|url| url.trim().to_owned())
    })
}

/// chromedriver on a free port, once it answers; fails clearly when the browser is missing.
fn start_chromedriver() -> (Group, String, &'static str) {
    let chromium = CHROMIUM.into_iter().find(|p| Path::new(p).exists());
    let (Some(chromium), true) = (chromium, Path::new(CHROMEDRIVER).exists()) else {
        panic!(
            "Chromium and chromedriver are not installed ({} / {CHROMEDRIVER} missing): run \
             infra/bootstrap, which installs Debian's `chromium` and `chromium-driver` with apt-get",
            CHROMIUM.join(" or ")
        );
    };
    let port = local_stack::free_port().unwrap();
    let mut command = Command::new(CHROMEDRIVER);
    command.arg(format!("--port={port}"));
    let (group, _) = start_group(command, Duration::from_secs(60), |line| {
        line.contains("started successfully").then(String::new)
    });
    (group, format!("http://127.0.0.1:{port}"), chromium)
}

async fn browser(driver: &str, chromium: &str, profile: &Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), json!("chrome"));
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,860",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    ClientBuilder::rustls()
        .expect("TLS roots load")
        .capabilities(capabilities)
        .connect(driver)
        .await
        .expect("chromedriver opens a Chromium session")
}

/// Evaluates `script` (a function body returning JSON) until `accept` takes its value.
async fn wait_for<T>(
    page: &Client,
    what: &str,
    within: Duration,
    script: &str,
    accept: impl Fn(&Value) -> Option<T>,
    stack: &Group,
) -> T {
    let deadline = Instant::now() + within;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        last = page.execute(script, vec![]).await.expect("the script runs");
        if let Some(value) = accept(&last) {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let errors = page
        .execute(
            "return [document.getElementById('stack-state').textContent, \
             document.getElementById('phone-error').textContent, \
             document.getElementById('inbox-error').textContent];",
            vec![],
        )
        .await
        .unwrap_or_default();
    panic!(
        "{what}: not within {within:?}; last seen {last}; page says {errors}; stack output:\n{}",
        stack.output()
    );
}

const PHONE_BUBBLES: &str = "return [...document.querySelectorAll('#phone-chat .bubble')].map(b => ({ \
    from: b.dataset.from, wamid: b.dataset.wamid, status: b.dataset.status, \
    text: b.querySelector('.text').textContent, \
    choices: [...b.querySelectorAll('button.choice')].map(c => c.dataset.id) }));";

const THREAD: &str = "return [...document.querySelectorAll('#thread-messages .msg')].map(m => ({ \
    wamid: m.dataset.wamid, direction: m.dataset.direction, status: m.dataset.status, \
    type: m.dataset.type, text: m.querySelector('.text').textContent, \
    ai: m.querySelector('.ai')?.textContent ?? null }));";

/// Clicks the element `css` names, as a person would (a pane re-rendered under the pointer
/// gets a second try).
async fn click(page: &Client, css: &str) {
    let mut last = None;
    for _ in 0..10 {
        match page.find(Locator::Css(css)).await {
            Ok(element) => match element.click().await {
                Ok(()) => return,
                Err(e) => last = Some(e),
            },
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("clicking {css}: {last:?}");
}

async fn type_and_send(page: &Client, input: &str, button: &str, text: &str) {
    page.find(Locator::Css(input))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
    click(page, button).await;
}

fn business_bubbles(bubbles: &Value) -> Vec<Value> {
    bubbles
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["from"] == "business")
        .cloned()
        .collect()
}

async fn screenshot(page: &Client, css: Option<&str>, name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&dir).unwrap();
    let png = match css {
        Some(css) => page
            .find(Locator::Css(css))
            .await
            .unwrap()
            .screenshot()
            .await
            .unwrap(),
        None => page.screenshot().await.unwrap(),
    };
    let path = dir.join(name);
    std::fs::write(&path, png).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn in_the_console_a_customer_chats_with_the_bot_and_a_person_takes_over() {
    // The browser first: a missing one fails in a second, not after the stack's build.
    let (driver, driver_url, chromium) = start_chromedriver();
    let (stack, console_url) = start_stack();
    let profile = std::env::temp_dir().join(format!("console-chromium-{}", std::process::id()));
    let page = browser(&driver_url, chromium, &profile).await;
    page.goto(&console_url).await.unwrap();
    wait_for(
        &page,
        "the console loads its config",
        STEP,
        "return document.querySelectorAll('#business option').length;",
        |n| (n.as_u64() > Some(0)).then_some(()),
        &stack,
    )
    .await;

    // The customer says hello; the bot's reply arrives and the phone reads it.
    type_and_send(&page, "#phone-input", "#phone-send", "Hello").await;
    let reply = wait_for(
        &page,
        "the bot's reply bubble, read",
        FIRST_REPLY,
        PHONE_BUBBLES,
        |b| {
            business_bubbles(b)
                .into_iter()
                .find(|b| b["status"] == "read")
        },
        &stack,
    )
    .await;
    let reply_wamid = reply["wamid"].as_str().unwrap().to_owned();
    assert!(!reply["text"].as_str().unwrap().is_empty(), "{reply}");

    // The inbox shows the conversation, the reply with its status and who wrote it.
    let conversation = format!(".conversation[data-contact='{CUSTOMER}']");
    wait_for(
        &page,
        "the conversation in the inbox",
        STEP,
        &format!("return document.querySelector(\"{conversation}\") !== null;"),
        |found| (found == true).then_some(()),
        &stack,
    )
    .await;
    click(&page, &conversation).await;
    let ai = wait_for(
        &page,
        "the AI reply in the inbox, read, with its provider",
        STEP,
        THREAD,
        |messages| {
            messages.as_array()?.iter().find_map(|m| {
                (m["wamid"] == reply_wamid.as_str() && m["status"] == "read")
                    .then(|| m["ai"].as_str().map(str::to_owned))
                    .flatten()
            })
        },
        &stack,
    )
    .await;
    assert!(
        ai.starts_with("AI: sealion · ") && ai.contains(" ms · 18 tokens (10 in, 8 out)"),
        "the LLM stand-in answered as SEA-LION, with its latency and tokens: {ai}"
    );
    assert_eq!(
        reply["text"], "(local LLM stand-in) You said: Hello",
        "the phone shows the reply the model wrote"
    );
    screenshot(&page, Some("#phone"), "customer.png").await;
    screenshot(&page, Some("#inbox"), "inbox.png").await;

    // A person takes over: the bot is paused, and the customer's next message gets no AI reply.
    click(&page, "#pause-toggle").await;
    wait_for(
        &page,
        "the conversation paused",
        STEP,
        &format!(
            "return [document.getElementById('pause-toggle').dataset.paused, \
             document.querySelector(\"{conversation}\").dataset.paused];"
        ),
        |v| (*v == json!(["true", "true"])).then_some(()),
        &stack,
    )
    .await;
    let question = "Can I talk to a person?";
    type_and_send(&page, "#phone-input", "#phone-send", question).await;
    wait_for(
        &page,
        "the paused conversation's message stored",
        STEP,
        THREAD,
        |messages| {
            messages
                .as_array()?
                .iter()
                .any(|m| m["direction"] == "inbound" && m["text"] == question)
                .then_some(())
        },
        &stack,
    )
    .await;

    // The person answers from the inbox; it arrives on the phone.
    let answer = "Hi, this is Sam from the shop. I can help.";
    type_and_send(&page, "#inbox-input", "#inbox-send", answer).await;
    wait_for(
        &page,
        "the person's answer on the phone",
        STEP,
        PHONE_BUBBLES,
        |b| {
            business_bubbles(b)
                .iter()
                .any(|b| b["text"] == answer)
                .then_some(())
        },
        &stack,
    )
    .await;

    // Buttons and lists the business sends are clickable, and come back as the customer's
    // button and list replies.
    let token = TokenSpec::local("demo-shop").mint().unwrap();
    let choosable = [
        (
            json!({ "type": "buttons", "body": "Shall I reserve it?",
                    "buttons": [{ "id": "reserve-yes", "title": "Yes please" },
                                { "id": "reserve-no", "title": "No thanks" }] }),
            ["reserve-yes", "reserve-no"],
            "Yes please",
        ),
        (
            json!({ "type": "list", "body": "Which size?", "button": "Sizes",
                    "sections": [{ "title": "In stock", "rows": [
                        { "id": "size-m", "title": "M", "description": "2 left" },
                        { "id": "size-l", "title": "L" }] }] }),
            ["size-m", "size-l"],
            "M",
        ),
    ];
    for (message, ids, choice) in choosable {
        let sent = reqwest::Client::new()
            .post(format!("{console_url}v1/messages"))
            .bearer_auth(&token)
            .json(&json!({ "contactId": CUSTOMER, "message": message }))
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status(), 201, "{}", sent.text().await.unwrap());
        wait_for(
            &page,
            "the choices on the phone",
            STEP,
            PHONE_BUBBLES,
            |b| {
                business_bubbles(b)
                    .iter()
                    .any(|b| b["choices"] == json!(ids))
                    .then_some(())
            },
            &stack,
        )
        .await;
        click(&page, &format!("button.choice[data-id='{}']", ids[0])).await;
        wait_for(
            &page,
            "the customer's choice in the inbox",
            STEP,
            THREAD,
            |messages| {
                messages
                    .as_array()?
                    .iter()
                    .any(|m| {
                        m["direction"] == "inbound"
                            && m["type"] == "interactive"
                            && m["text"] == choice
                    })
                    .then_some(())
            },
            &stack,
        )
        .await;
    }

    // Nothing from the AI after the pause: the phone holds the reply to "Hello", the person's
    // answer, the buttons and the list, and the inbox one AI reply.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let bubbles = page.execute(PHONE_BUBBLES, vec![]).await.unwrap();
    let texts: Vec<Value> = business_bubbles(&bubbles)
        .iter()
        .map(|b| b["text"].clone())
        .collect();
    assert_eq!(
        texts,
        [
            reply["text"].clone(),
            json!(answer),
            json!("Shall I reserve it?"),
            json!("Which size?"),
        ],
        "no AI reply while the bot is paused"
    );
    // And the inbox still shows the conversation handed to a person, as the API reads it.
    let paused = page
        .execute(
            &format!(
                "return [document.getElementById('pause-toggle').dataset.paused, \
                 document.querySelector(\"{conversation}\").dataset.paused];"
            ),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(paused, json!(["true", "true"]), "still paused in the inbox");
    let thread = page.execute(THREAD, vec![]).await.unwrap();
    let ai_replies = thread
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| !m["ai"].is_null())
        .count();
    assert_eq!(ai_replies, 1, "{thread}");

    screenshot(&page, Some("#phone"), "customer-handoff.png").await;
    screenshot(&page, Some("#inbox"), "inbox-handoff.png").await;
    screenshot(&page, None, "console.png").await;

    // The bot resumes, and a message delivered as Kapso v2 gets its reply, read through Kapso's
    // status events.
    click(&page, "#pause-toggle").await;
    wait_for(
        &page,
        "the conversation resumed",
        STEP,
        "return document.getElementById('pause-toggle').dataset.paused;",
        |v| (v == "false").then_some(()),
        &stack,
    )
    .await;
    click(&page, "#kapso").await;
    type_and_send(&page, "#phone-input", "#phone-send", "Is it in stock?").await;
    wait_for(
        &page,
        "the reply to the Kapso delivery, read",
        STEP,
        PHONE_BUBBLES,
        |b| {
            business_bubbles(b).into_iter().find(|b| {
                b["text"] == "(local LLM stand-in) You said: Is it in stock?"
                    && b["status"] == "read"
            })
        },
        &stack,
    )
    .await;
    wait_for(
        &page,
        "the Kapso-delivered reply read in the inbox, as the status events left it",
        STEP,
        THREAD,
        |messages| {
            messages
                .as_array()?
                .iter()
                .any(|m| {
                    m["text"] == "(local LLM stand-in) You said: Is it in stock?"
                        && m["status"] == "read"
                        && !m["ai"].is_null()
                })
                .then_some(())
        },
        &stack,
    )
    .await;
    page.close().await.unwrap();
    drop(driver);
    let _ = std::fs::remove_dir_all(&profile);
}
