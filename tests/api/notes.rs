//! Notes on a contact and quick replies, against moto: paging, validation, the duplicate
//! shortcut, and tenant isolation.

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use shared::adapters::dynamo::quick_reply_count_key;
use shared::dashboard::page::PageKey;
use shared::dashboard::quick_replies::MAX_QUICK_REPLIES;

use crate::helpers::{spawn_api, token, workspace};
use crate::inbox::{CUSTOMERS, inbox};

#[tokio::test]
async fn notes_are_written_on_a_contact_and_read_back_newest_first_across_pages() {
    let inbox = inbox(false).await;
    let customer = CUSTOMERS[0];
    inbox
        .customer_writes(customer, "wamid.NOTE1", "Hello")
        .await;
    let path = format!("/v1/contacts/{customer}/notes");
    for i in 1..=3 {
        let reply = inbox
            .call(
                "POST",
                &path,
                "",
                Some(&json!({ "text": format!("  note {i} ") })),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        assert_eq!(reply.json()["text"], format!("note {i}"));
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let first = inbox.ok("GET", &path, "limit=2", None).await;
    let cursor = first["nextCursor"].as_str().expect("a second page");
    let second = inbox
        .ok("GET", &path, &format!("limit=2&cursor={cursor}"), None)
        .await;
    let texts: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .map(|n| n["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["note 3", "note 2", "note 1"]);
    assert!(second.get("nextCursor").is_none());

    // Validation names the field; an unknown contact is a 404.
    for (body, field) in [
        (json!({ "text": "  " }), "text"),
        (json!({ "text": "x".repeat(4001) }), "text"),
        (json!({}), "text"),
        (json!({ "text": "a", "pinned": true }), "pinned"),
    ] {
        let reply = inbox.call("POST", &path, "", Some(&body)).await;
        assert_eq!(reply.status, 400, "{}", reply.body);
        assert_eq!(reply.json()["error"]["details"]["field"], field);
    }
    let reply = inbox.call("GET", &path, "cursor=bad", None).await;
    assert_eq!(reply.json()["error"]["details"]["field"], "cursor");
    let reply = inbox
        .call(
            "POST",
            "/v1/contacts/16505559999/notes",
            "",
            Some(&json!({ "text": "hi" })),
        )
        .await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn workspace_a_can_neither_read_nor_write_notes_on_workspace_bs_contact() {
    let inbox = inbox(false).await;
    let customer = CUSTOMERS[0];
    inbox
        .customer_writes(customer, "wamid.NOTE2", "Hello")
        .await;
    let path = format!("/v1/contacts/{customer}/notes");
    inbox
        .call("POST", &path, "", Some(&json!({ "text": "B's secret" })))
        .await;
    let a = token(&workspace("ws-a"));
    let reply = inbox.call_as(&a, "GET", &path, "", None).await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert!(!reply.body.contains("secret"));
    let reply = inbox
        .call_as(&a, "POST", &path, "", Some(&json!({ "text": "A's note" })))
        .await;
    assert_eq!(reply.status, 404);
    let notes = inbox.ok("GET", &path, "", None).await;
    assert_eq!(notes["items"].as_array().unwrap().len(), 1);
}

fn quick(title: &str, shortcut: Option<&str>) -> Value {
    let mut body = json!({ "title": title, "text": format!("{title}: we open 9 to 5") });
    if let Some(s) = shortcut {
        body["shortcut"] = s.into();
    }
    body
}

#[tokio::test]
async fn quick_replies_are_created_read_replaced_and_deleted() {
    let inbox = inbox(false).await;
    let created = inbox
        .call(
            "POST",
            "/v1/quick-replies",
            "",
            Some(&quick("Hours", Some("/Hours"))),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let created = created.json();
    assert_eq!(created["shortcut"], "/hours");
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/quick-replies/{id}");
    assert_eq!(inbox.ok("GET", &path, "", None).await, created);
    let second = inbox
        .call(
            "POST",
            "/v1/quick-replies",
            "",
            Some(&quick("Address", None)),
        )
        .await;
    assert_eq!(second.status, 201);

    let list = inbox.ok("GET", "/v1/quick-replies", "", None).await;
    let titles: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Hours", "Address"]);

    let replaced = inbox
        .ok(
            "PUT",
            &path,
            "",
            Some(&quick("Opening hours", Some("open"))),
        )
        .await;
    assert_eq!(replaced["title"], "Opening hours");
    assert_eq!(replaced["shortcut"], "/open");
    assert_eq!(replaced["createdAt"], created["createdAt"]);
    assert_eq!(inbox.ok("GET", &path, "", None).await, replaced);

    let reply = inbox.call("DELETE", &path, "", None).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(inbox.call("GET", &path, "", None).await.status, 404);
    assert_eq!(inbox.call("DELETE", &path, "", None).await.status, 404);
    let list = inbox.ok("GET", "/v1/quick-replies", "", None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_duplicate_shortcut_is_a_conflict_until_the_first_one_lets_it_go() {
    let inbox = inbox(false).await;
    let first = inbox
        .call(
            "POST",
            "/v1/quick-replies",
            "",
            Some(&quick("Hours", Some("/hours"))),
        )
        .await
        .json();
    let first_path = format!("/v1/quick-replies/{}", first["id"].as_str().unwrap());

    let duplicate = inbox
        .call(
            "POST",
            "/v1/quick-replies",
            "",
            Some(&quick("Times", Some("HOURS"))),
        )
        .await;
    assert_eq!(duplicate.status, 409, "{}", duplicate.body);
    assert_eq!(duplicate.error_code(), "conflict");
    let list = inbox.ok("GET", "/v1/quick-replies", "", None).await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "nothing half-written"
    );

    // Renaming another onto the shortcut is a conflict too.
    let other = inbox
        .call(
            "POST",
            "/v1/quick-replies",
            "",
            Some(&quick("Times", Some("/times"))),
        )
        .await
        .json();
    let other_path = format!("/v1/quick-replies/{}", other["id"].as_str().unwrap());
    let reply = inbox
        .call(
            "PUT",
            &other_path,
            "",
            Some(&quick("Times", Some("/hours"))),
        )
        .await;
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert_eq!(
        inbox.ok("GET", &other_path, "", None).await["shortcut"],
        "/times"
    );

    // Once the first moves off it, or is deleted, the shortcut is free.
    inbox
        .ok(
            "PUT",
            &first_path,
            "",
            Some(&quick("Hours", Some("/opening"))),
        )
        .await;
    inbox
        .ok(
            "PUT",
            &other_path,
            "",
            Some(&quick("Times", Some("/hours"))),
        )
        .await;
    inbox.call("DELETE", &other_path, "", None).await;
    let reply = inbox
        .call(
            "POST",
            "/v1/quick-replies",
            "",
            Some(&quick("Again", Some("/hours"))),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    // Another workspace has its own shortcuts.
    let a = token(&workspace("ws-a"));
    let reply = inbox
        .call_as(
            &a,
            "POST",
            "/v1/quick-replies",
            "",
            Some(&quick("Hours", Some("/hours"))),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

#[tokio::test]
async fn invalid_quick_replies_are_refused_naming_the_field() {
    let inbox = inbox(false).await;
    for (body, field) in [
        (json!({ "title": "", "text": "t" }), "title"),
        (json!({ "title": "t", "text": " " }), "text"),
        (json!({ "text": "t" }), "title"),
        (
            json!({ "title": "t", "text": "t", "shortcut": "two words" }),
            "shortcut",
        ),
        (json!({ "title": "t", "text": "t", "emoji": "x" }), "emoji"),
    ] {
        let reply = inbox
            .call("POST", "/v1/quick-replies", "", Some(&body))
            .await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        assert_eq!(
            reply.json()["error"]["details"]["field"],
            field,
            "{}",
            reply.body
        );
    }
}

#[tokio::test]
async fn workspace_a_gets_404_for_workspace_bs_quick_reply_on_every_route() {
    let inbox = inbox(false).await;
    let b = inbox
        .call(
            "POST",
            "/v1/quick-replies",
            "",
            Some(&quick("B only", Some("/b"))),
        )
        .await
        .json();
    let path = format!("/v1/quick-replies/{}", b["id"].as_str().unwrap());
    let a = token(&workspace("ws-a"));
    for (method, body) in [
        ("GET", None),
        ("PUT", Some(quick("Mine", None))),
        ("DELETE", None),
    ] {
        let reply = inbox.call_as(&a, method, &path, "", body.as_ref()).await;
        assert_eq!(reply.status, 404, "{method}: {}", reply.body);
        assert!(!reply.body.contains("B only"));
    }
    let list = inbox
        .call_as(&a, "GET", "/v1/quick-replies", "", None)
        .await;
    assert_eq!(list.json()["items"], json!([]));
    assert_eq!(inbox.ok("GET", &path, "", None).await, b);
}

#[tokio::test]
async fn quick_replies_are_listed_oldest_first_page_by_page() {
    let inbox = inbox(false).await;
    for title in ["First", "Second", "Third"] {
        let reply = inbox
            .call("POST", "/v1/quick-replies", "", Some(&quick(title, None)))
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        // Ids are ULIDs: a millisecond apart, they sort as they were made.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let first = inbox.ok("GET", "/v1/quick-replies", "limit=2", None).await;
    let cursor = first["nextCursor"].as_str().expect("a second page");
    let second = inbox
        .ok(
            "GET",
            "/v1/quick-replies",
            &format!("limit=2&cursor={cursor}"),
            None,
        )
        .await;
    assert!(second.get("nextCursor").is_none(), "{second}");
    let titles: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .map(|q| q["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["First", "Second", "Third"]);

    for query in ["limit=0", "limit=101", "limit=ten", "cursor=bad"] {
        let reply = inbox.call("GET", "/v1/quick-replies", query, None).await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
        let field = query.split('=').next().unwrap();
        assert_eq!(reply.json()["error"]["details"]["field"], field, "{query}");
    }
}

#[tokio::test]
async fn a_quick_reply_cursor_from_another_workspace_is_refused_naming_the_cursor() {
    let inbox = inbox(false).await;
    for title in ["B one", "B two"] {
        inbox
            .call("POST", "/v1/quick-replies", "", Some(&quick(title, None)))
            .await;
    }
    let page = inbox.ok("GET", "/v1/quick-replies", "limit=1", None).await;
    let cursor = page["nextCursor"].as_str().expect("a second page");
    let a_ws = workspace("ws-a");
    let a = token(&a_ws);
    inbox
        .call_as(
            &a,
            "POST",
            "/v1/quick-replies",
            "",
            Some(&quick("A one", None)),
        )
        .await;
    let reply = inbox
        .call_as(
            &a,
            "GET",
            "/v1/quick-replies",
            &format!("limit=1&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.json()["error"]["details"]["field"], "cursor");
    assert!(!reply.body.contains("B two"));

    // Nor one of a partition that merely starts like the caller's.
    let forged = PageKey {
        pk: format!("WS#{}x", a_ws.as_str()),
        sk: "QUICK_REPLY#0".into(),
        index_sk: "QUICK_REPLY#0".into(),
    };
    let reply = inbox
        .call_as(
            &a,
            "GET",
            "/v1/quick-replies",
            &format!("cursor={}", forged.encode()),
            None,
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.json()["error"]["details"]["field"], "cursor");
}

#[tokio::test]
async fn racing_creates_never_pass_the_quick_reply_cap() {
    let api = spawn_api().await;
    let ws = workspace("ws");
    let bearer = token(&ws);
    // Two places left: the counter as 498 creates would have left it.
    let (pk, sk) = quick_reply_count_key(&ws);
    aws_sdk_dynamodb::Client::new(&api.stack.aws)
        .put_item()
        .table_name(api.processor_store.table())
        .item("pk", AttributeValue::S(pk))
        .item("sk", AttributeValue::S(sk))
        .item(
            "count",
            AttributeValue::N((MAX_QUICK_REPLIES - 2).to_string()),
        )
        .send()
        .await
        .expect("the counter is seeded");

    let bodies: Vec<Value> = (0..4)
        .map(|i| quick(&format!("Race {i}"), Some(&format!("/race{i}"))))
        .collect();
    let replies = futures_util::future::join_all(
        bodies
            .iter()
            .map(|body| api.send("POST", "/v1/quick-replies", Some(&bearer), Some(body))),
    )
    .await;
    let created: Vec<&str> = replies
        .iter()
        .filter(|r| r.status == 201)
        .map(|r| r.body.as_str())
        .collect();
    assert_eq!(
        created.len(),
        2,
        "{:?}",
        replies.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    for refused in replies.iter().filter(|r| r.status != 201) {
        assert_eq!(refused.status, 409, "{}", refused.body);
        assert_eq!(refused.error_code(), "conflict");
        assert!(refused.body.contains("at most 500"), "{}", refused.body);
    }
    let list = api.get("/v1/quick-replies", Some(&bearer)).await.json();
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");

    // A delete frees a place, for one more.
    let id = serde_json::from_str::<Value>(created[0]).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deleted = api
        .send(
            "DELETE",
            &format!("/v1/quick-replies/{id}"),
            Some(&bearer),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let again = api
        .send(
            "POST",
            "/v1/quick-replies",
            Some(&bearer),
            Some(&quick("Again", None)),
        )
        .await;
    assert_eq!(again.status, 201, "{}", again.body);
    let full = api
        .send(
            "POST",
            "/v1/quick-replies",
            Some(&bearer),
            Some(&quick("Full", None)),
        )
        .await;
    assert_eq!(full.status, 409, "{}", full.body);
}
