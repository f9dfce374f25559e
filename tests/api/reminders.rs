//! The reminder routes against moto: creation (validation, due times in any offset stored in
//! UTC, `Idempotency-Key`), filtered lists over several pages, tenancy isolation on every route,
//! and cancelling, checked against the real `reminders` run use case with a WhatsApp fake.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use integration_tests::processor::cloud_api;
use integration_tests::reminders::{Runner, fast_run_settings, reminder_runner};
use integration_tests::{ApiRequest, default_secrets};
use serde_json::{Value, json};
use shared::conversations::model::{Integration, IntegrationStatus, Provider};
use shared::conversations::store::ContactStore;
use shared::ids::{PhoneNumberId, WaId, WorkspaceId};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer};

use crate::helpers::{Reply, TestApi, spawn_api_with, token, workspace};

const ANA: &str = "16505551234";
const BEN: &str = "6591230001";
const NUMBER_A: &str = "106540352242001";
const NUMBER_B: &str = "106540352242002";

/// Two workspaces, each with its own number; Ana and Ben are contacts of A only.
struct Scene {
    api: TestApi,
    whatsapp: MockServer,
    token_a: String,
    token_b: String,
    workspace_b: WorkspaceId,
}

async fn scene() -> Scene {
    let whatsapp = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"/messages$"))
        .respond_with(cloud_api())
        .mount(&whatsapp)
        .await;
    let mut secrets = default_secrets();
    secrets["dashboard_jwt_secret"] = local_stack::token::LOCAL_JWT_SECRET.into();
    secrets["meta_access_token"] = "test-meta-token".into();
    let api = spawn_api_with(secrets, &[]).await;
    let (a, b) = (workspace("rem-a"), workspace("rem-b"));
    for (ws, number) in [(&a, NUMBER_A), (&b, NUMBER_B)] {
        api.processor_store
            .put_integration(&Integration {
                phone_number_id: PhoneNumberId::parse(number).unwrap(),
                workspace_id: ws.clone(),
                provider: Provider::Meta,
                status: IntegrationStatus::Active,
                error: None,
                access_token: None,
            })
            .await
            .unwrap();
    }
    for contact in [ANA, BEN] {
        api.processor_store
            .upsert_contact(
                &a,
                &PhoneNumberId::parse(NUMBER_A).unwrap(),
                &WaId::parse(contact).unwrap(),
                None,
                OffsetDateTime::now_utc(),
            )
            .await
            .unwrap();
    }
    Scene {
        token_a: token(&a),
        token_b: token(&b),
        workspace_b: b,
        api,
        whatsapp,
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

/// `hours` from now, to the second, in UTC.
fn in_hours(hours: i64) -> OffsetDateTime {
    (OffsetDateTime::now_utc() + time::Duration::hours(hours))
        .replace_nanosecond(0)
        .unwrap()
}

fn template_reminder(contact: &str, due_at: &str) -> Value {
    json!({
        "contactId": contact,
        "dueAt": due_at,
        "channel": {
            "type": "whatsapp_template",
            "phoneNumberId": NUMBER_A,
            "template": {
                "name": "appointment_reminder",
                "language": "en_US",
                "components": [{ "type": "body", "parameters": [{ "type": "text", "text": "Tuesday" }] }]
            }
        }
    })
}

impl Scene {
    async fn call(
        &self,
        method: &'static str,
        path: &str,
        query: &str,
        token: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Reply {
        let mut headers = vec![("authorization".to_owned(), format!("Bearer {token}"))];
        if body.is_some() {
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
        }
        if let Some(key) = key {
            headers.push(("idempotency-key".to_owned(), key.to_owned()));
        }
        self.api
            .send_raw(ApiRequest {
                method,
                path: path.into(),
                query: query.into(),
                headers,
                body: body.map(|b| b.to_string().into_bytes()),
                base64: false,
            })
            .await
    }

    async fn create(&self, body: &Value) -> Value {
        let reply = self
            .call("POST", "/v1/reminders", "", &self.token_a, Some(body), None)
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.json()
    }

    /// Every reminder of a list query, following `nextCursor`, and the number of pages.
    async fn list_all(&self, query: &str, limit: u32) -> (Vec<Value>, usize) {
        let mut items = vec![];
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut q = format!("limit={limit}");
            if !query.is_empty() {
                q = format!("{q}&{query}");
            }
            if let Some(c) = &cursor {
                q = format!("{q}&cursor={c}");
            }
            let reply = self
                .call("GET", "/v1/reminders", &q, &self.token_a, None, None)
                .await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            let page = reply.json();
            items.extend(page["items"].as_array().unwrap().iter().cloned());
            pages += 1;
            assert!(pages < 20, "pagination ends");
            cursor = page["nextCursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                return (items, pages);
            }
        }
    }

    /// The runner as the `reminders` function builds it, sending to the WhatsApp fake.
    fn runner(&self) -> Runner {
        // No email reminder here: Resend is unreachable on purpose.
        reminder_runner(
            &self.api.stack,
            self.api.processor_store.clone(),
            &self.whatsapp.uri(),
            "http://127.0.0.1:9",
            fast_run_settings(),
        )
    }

    /// The WhatsApp message bodies the fake received.
    async fn whatsapp_sends(&self) -> Vec<Value> {
        self.whatsapp
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
            .collect()
    }
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_due_time_given_at_plus_0530_is_stored_read_and_listed_in_utc() {
    let s = scene().await;
    let utc = in_hours(30);
    let kolkata = utc.to_offset(time::UtcOffset::from_hms(5, 30, 0).unwrap());
    let given = rfc3339(kolkata);
    assert!(given.ends_with("+05:30"), "{given}");

    let created = s.create(&template_reminder(ANA, &given)).await;

    let expected = rfc3339(utc);
    assert!(expected.ends_with('Z'), "{expected}");
    assert_eq!(created["dueAt"], expected.as_str());
    assert_eq!(created["status"], "pending");
    assert_eq!(created["contactId"], ANA);
    assert_eq!(created["attempts"], 0);
    assert_eq!(created["channel"]["type"], "whatsapp_template");
    assert_eq!(created["channel"]["phoneNumberId"], NUMBER_A);
    let id = created["id"].as_str().unwrap();
    let read = s
        .call(
            "GET",
            &format!("/v1/reminders/{id}"),
            "",
            &s.token_a,
            None,
            None,
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json(), created);
    let (listed, _) = s.list_all("", 25).await;
    assert_eq!(listed, vec![created.clone()]);
    // The UTC instant is what the range filter sees: a window around it finds it.
    let window = format!(
        "dueFrom={}&dueTo={}",
        rfc3339(utc - time::Duration::minutes(1)).replace('+', "%2B"),
        rfc3339(kolkata + time::Duration::minutes(1)).replace('+', "%2B"),
    );
    let (found, _) = s.list_all(&window, 25).await;
    assert_eq!(ids(&found), vec![id.to_owned()]);
}

#[tokio::test]
async fn each_invalid_reminder_gets_400_naming_the_field() {
    let s = scene().await;
    let due = rfc3339(in_hours(2));
    let base = template_reminder(ANA, &due);
    let with = |pointer: &str, value: Value| {
        let mut body = base.clone();
        *body.pointer_mut(pointer).unwrap() = value;
        body
    };
    let email = |to: &str, subject: &str, body: &str| {
        let mut b = base.clone();
        b["channel"] = json!({ "type": "email", "to": to, "subject": subject, "body": body });
        b
    };
    let text = |number: &str, body: &str| {
        let mut b = base.clone();
        b["channel"] = json!({ "type": "whatsapp_text", "phoneNumberId": number, "body": body });
        b
    };
    let mut missing_contact = base.clone();
    missing_contact.as_object_mut().unwrap().remove("contactId");
    let cases: Vec<(&str, Value, &str)> = vec![
        ("no contact", missing_contact, "contactId"),
        (
            "a contact that is not one",
            with("/contactId", "+1 650".into()),
            "contactId",
        ),
        (
            "another workspace's or no contact",
            with("/contactId", "4915112345678".into()),
            "contactId",
        ),
        (
            "an unknown channel",
            with("/channel/type", "sms".into()),
            "channel.type",
        ),
        (
            "a template name with capitals",
            with("/channel/template/name", "Reminder".into()),
            "channel.template",
        ),
        (
            "a language that is not a code",
            with("/channel/template/language", "english (US)".into()),
            "channel.template",
        ),
        (
            "a component that is not an object",
            with("/channel/template/components", json!(["body"])),
            "channel.template",
        ),
        (
            "a number that is not an id",
            with("/channel/phoneNumberId", "abc".into()),
            "channel.phoneNumberId",
        ),
        (
            "another workspace's number",
            with("/channel/phoneNumberId", NUMBER_B.into()),
            "channel.phoneNumberId",
        ),
        (
            "a text from another workspace's number",
            text(NUMBER_B, "See you"),
            "channel.phoneNumberId",
        ),
        ("an empty text", text(NUMBER_A, "  "), "channel.body"),
        (
            "an address without a domain",
            email("ana@example", "Hi", "See you"),
            "channel.to",
        ),
        (
            "a subject of two lines",
            email("ana@example.com", "Hi\nBcc: x@y.z", "See you"),
            "channel.subject",
        ),
        (
            "an empty email body",
            email("ana@example.com", "Hi", ""),
            "channel.body",
        ),
        (
            "a due time without an offset",
            with("/dueAt", "2030-01-01T10:00:00".into()),
            "dueAt",
        ),
        (
            "a due time that is not a time",
            with("/dueAt", "tomorrow".into()),
            "dueAt",
        ),
        (
            "a due time in the past",
            with("/dueAt", rfc3339(in_hours(-1)).into()),
            "dueAt",
        ),
        (
            "a due time years ahead",
            with("/dueAt", "2099-01-01T10:00:00Z".into()),
            "dueAt",
        ),
        (
            "sendNow that is not a boolean",
            base.clone().tap(|b| b["sendNow"] = "yes".into()),
            "sendNow",
        ),
        (
            "an unknown field",
            base.clone().tap(|b| b["due"] = "x".into()),
            "due",
        ),
    ];
    for (what, body, field) in cases {
        let reply = s
            .call("POST", "/v1/reminders", "", &s.token_a, Some(&body), None)
            .await;
        assert_eq!(reply.status, 400, "{what}: {}", reply.body);
        assert_eq!(reply.error_code(), "validation_failed", "{what}");
        assert_eq!(
            reply.json()["error"]["details"]["field"],
            field,
            "{what}: {}",
            reply.body
        );
    }
    let bad_key = s
        .call(
            "POST",
            "/v1/reminders",
            "",
            &s.token_a,
            Some(&base),
            Some("has#hash"),
        )
        .await;
    assert_eq!(bad_key.status, 400, "{}", bad_key.body);
    assert_eq!(
        bad_key.json()["error"]["details"]["field"],
        "Idempotency-Key"
    );
    for (query, field) in [
        ("status=done", "status"),
        ("contactId=%2B1", "contactId"),
        ("dueFrom=yesterday", "dueFrom"),
        (
            "dueFrom=2030-01-02T00:00:00Z&dueTo=2030-01-01T00:00:00Z",
            "dueTo",
        ),
        ("limit=0", "limit"),
        ("limit=many", "limit"),
        ("cursor=not-a-cursor!", "cursor"),
        ("sort=due", "sort"),
    ] {
        let reply = s
            .call("GET", "/v1/reminders", query, &s.token_a, None, None)
            .await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
        assert_eq!(reply.json()["error"]["details"]["field"], field, "{query}");
    }
    // None of them stored anything; a past due time with `sendNow` is accepted.
    assert!(s.list_all("", 25).await.0.is_empty());
    let now = with("/dueAt", rfc3339(in_hours(-1)).into()).tap(|b| b["sendNow"] = true.into());
    let created = s.create(&now).await;
    let due = OffsetDateTime::parse(created["dueAt"].as_str().unwrap(), &Rfc3339).unwrap();
    assert_eq!(due, in_hours(-1));
}

/// `tap` for building a JSON value inline.
trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}

impl Tap for Value {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

#[tokio::test]
async fn workspace_b_gets_404_for_workspace_as_reminder_on_every_route_and_never_sees_it() {
    let s = scene().await;
    let theirs = s
        .create(&template_reminder(ANA, &rfc3339(in_hours(3))))
        .await;
    let id = theirs["id"].as_str().unwrap();
    let path = format!("/v1/reminders/{id}");

    for method in ["GET", "DELETE"] {
        let reply = s.call(method, &path, "", &s.token_b, None, None).await;
        assert_eq!(reply.status, 404, "{method}: {}", reply.body);
        assert_eq!(reply.error_code(), "not_found");
        assert!(!reply.body.contains(ANA), "{}", reply.body);
    }
    let listed = s
        .call("GET", "/v1/reminders", "", &s.token_b, None, None)
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.json()["items"], json!([]));
    // A's cursor is refused in B's list rather than read from.
    s.create(&template_reminder(BEN, &rfc3339(in_hours(4))))
        .await;
    let page = s
        .call("GET", "/v1/reminders", "limit=1", &s.token_a, None, None)
        .await
        .json();
    let cursor = page["nextCursor"].as_str().expect("a second page");
    let forged = s
        .call(
            "GET",
            "/v1/reminders",
            &format!("cursor={cursor}"),
            &s.token_b,
            None,
            None,
        )
        .await;
    assert_eq!(forged.status, 400, "{}", forged.body);
    // B cannot schedule for A's contact, nor from A's number.
    let mut from_b = template_reminder(ANA, &rfc3339(in_hours(3)));
    let created = s
        .call("POST", "/v1/reminders", "", &s.token_b, Some(&from_b), None)
        .await;
    assert_eq!(created.status, 400, "{}", created.body);
    assert_eq!(created.json()["error"]["details"]["field"], "contactId");
    from_b["channel"]["phoneNumberId"] = NUMBER_B.into();
    let created = s
        .call("POST", "/v1/reminders", "", &s.token_b, Some(&from_b), None)
        .await;
    assert_eq!(created.status, 400, "{}", created.body);

    let still = s.call("GET", &path, "", &s.token_a, None, None).await;
    assert_eq!(still.json()["status"], "pending");
}

#[tokio::test]
async fn reminders_list_by_due_time_over_pages_without_duplicates_and_filter_by_status_contact_and_range()
 {
    let s = scene().await;
    let base = in_hours(1);
    let mut created = vec![];
    // Created out of due order, seven of them: Ana's at 0, 2, 4, 6 hours later, Ben's at 1, 3, 5.
    for h in [6i64, 1, 4, 0, 3, 5, 2] {
        let contact = if h % 2 == 0 { ANA } else { BEN };
        let due = rfc3339(base + time::Duration::hours(h));
        created.push((h, s.create(&template_reminder(contact, &due)).await));
    }
    created.sort_by_key(|(h, _)| *h);
    let in_due_order: Vec<String> = created
        .iter()
        .map(|(_, r)| r["id"].as_str().unwrap().to_owned())
        .collect();

    let (all, pages) = s.list_all("", 3).await;
    assert_eq!(pages, 3);
    assert_eq!(ids(&all), in_due_order);
    assert_eq!(ids(&all).into_iter().collect::<HashSet<_>>().len(), 7);

    let cancelled = &in_due_order[2];
    let reply = s
        .call(
            "DELETE",
            &format!("/v1/reminders/{cancelled}"),
            "",
            &s.token_a,
            None,
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["status"], "cancelled");

    let (only_cancelled, _) = s.list_all("status=cancelled", 2).await;
    assert_eq!(ids(&only_cancelled), vec![cancelled.clone()]);
    let (pending, _) = s.list_all("status=pending", 2).await;
    assert_eq!(pending.len(), 6);
    assert!(!ids(&pending).contains(cancelled));

    let (bens, bens_pages) = s.list_all(&format!("contactId={BEN}"), 2).await;
    assert!(bens_pages >= 2, "{bens_pages}");
    assert_eq!(
        ids(&bens),
        [1, 3, 5].map(|h| in_due_order[h].clone()).to_vec()
    );

    // Due from hour 2 (inclusive) to hour 5 (exclusive), across pages of one.
    let range = format!(
        "dueFrom={}&dueTo={}",
        rfc3339(base + time::Duration::hours(2)),
        rfc3339(base + time::Duration::hours(5)),
    );
    let (ranged, ranged_pages) = s.list_all(&range, 1).await;
    assert_eq!(ids(&ranged), in_due_order[2..5].to_vec());
    assert!(ranged_pages >= 3);
    let (anas_pending_in_range, _) = s
        .list_all(&format!("{range}&status=pending&contactId={ANA}"), 1)
        .await;
    assert_eq!(ids(&anas_pending_in_range), vec![in_due_order[4].clone()]);
}

#[tokio::test]
async fn the_same_idempotency_key_and_body_answer_with_one_reminder_and_another_body_gets_422() {
    let s = scene().await;
    let due = rfc3339(in_hours(5));
    let body = template_reminder(ANA, &due);
    let post = |body: Value, key: &'static str| {
        let s = &s;
        async move {
            s.call(
                "POST",
                "/v1/reminders",
                "",
                &s.token_a,
                Some(&body),
                Some(key),
            )
            .await
        }
    };

    let first = post(body.clone(), "booking-42").await;
    assert_eq!(first.status, 201, "{}", first.body);
    // The same body with its keys in another order is the same request.
    let reordered: Value =
        serde_json::from_str(&serde_json::to_string_pretty(&body).unwrap()).unwrap();
    let again = post(reordered, "booking-42").await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.json()["id"], first.json()["id"]);

    let other = post(template_reminder(BEN, &due), "booking-42").await;
    assert_eq!(other.status, 422, "{}", other.body);
    assert_eq!(other.error_code(), "idempotency_key_reused");

    // Another workspace's identical key is its own: B, with its own Ana on its own number,
    // creates a new reminder (not A's, and not a 422 for a reused key).
    s.api
        .processor_store
        .upsert_contact(
            &s.workspace_b,
            &PhoneNumberId::parse(NUMBER_B).unwrap(),
            &WaId::parse(ANA).unwrap(),
            None,
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    let mut theirs = body.clone();
    theirs["channel"]["phoneNumberId"] = NUMBER_B.into();
    let b = s
        .call(
            "POST",
            "/v1/reminders",
            "",
            &s.token_b,
            Some(&theirs),
            Some("booking-42"),
        )
        .await;
    assert_eq!(b.status, 201, "{}", b.body);
    assert!(b.json()["id"].is_string(), "{}", b.body);
    assert_ne!(b.json()["id"], first.json()["id"]);

    let another_key = post(body.clone(), "booking-43").await;
    assert_eq!(another_key.status, 201);
    assert_ne!(another_key.json()["id"], first.json()["id"]);
    let (all, _) = s.list_all("", 25).await;
    assert_eq!(all.len(), 2);
}

#[tokio::test]
async fn a_reminder_cancelled_before_the_run_is_not_sent_and_cancelling_a_sent_one_gets_409() {
    let s = scene().await;
    let past = rfc3339(in_hours(-1));
    let due_now =
        |contact: &str| template_reminder(contact, &past).tap(|b| b["sendNow"] = true.into());
    let kept = s.create(&due_now(ANA)).await;
    let cancelled = s.create(&due_now(BEN)).await;
    let kept_id = kept["id"].as_str().unwrap();
    let cancelled_id = cancelled["id"].as_str().unwrap();
    let reply = s
        .call(
            "DELETE",
            &format!("/v1/reminders/{cancelled_id}"),
            "",
            &s.token_a,
            None,
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let summary = s
        .runner()
        .run(Instant::now() + Duration::from_secs(20))
        .await;

    assert_eq!((summary.claimed, summary.sent), (1, 1), "{summary:?}");
    let sends = s.whatsapp_sends().await;
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0]["to"], ANA);
    assert_eq!(
        sends[0]["biz_opaque_callback_data"],
        format!("reminder:{kept_id}")
    );
    let sent = s
        .call(
            "GET",
            &format!("/v1/reminders/{kept_id}"),
            "",
            &s.token_a,
            None,
            None,
        )
        .await
        .json();
    assert_eq!(sent["status"], "sent");
    assert!(
        sent["resultId"].as_str().unwrap().starts_with("wamid."),
        "{sent}"
    );
    assert!(sent["sentAt"].is_string());
    let still_cancelled = s
        .call(
            "GET",
            &format!("/v1/reminders/{cancelled_id}"),
            "",
            &s.token_a,
            None,
            None,
        )
        .await
        .json();
    assert_eq!(still_cancelled["status"], "cancelled");

    for id in [kept_id, cancelled_id] {
        let reply = s
            .call(
                "DELETE",
                &format!("/v1/reminders/{id}"),
                "",
                &s.token_a,
                None,
                None,
            )
            .await;
        assert_eq!(reply.status, 409, "{}", reply.body);
        assert_eq!(reply.error_code(), "conflict");
    }
    // A second run sends nothing more.
    let again = s
        .runner()
        .run(Instant::now() + Duration::from_secs(20))
        .await;
    assert_eq!(again.claimed, 0, "{again:?}");
    assert_eq!(s.whatsapp_sends().await.len(), 1);
}
