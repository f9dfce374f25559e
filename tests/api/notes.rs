//! Notes on a contact and quick replies, against moto: paging, validation, the duplicate
//! shortcut, and tenant isolation.

use serde_json::{Value, json};

use crate::helpers::{token, workspace};
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
