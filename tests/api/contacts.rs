//! The contact routes against moto, with contacts created by the real message processor:
//! listing by phone number over several pages, phone-prefix and name-prefix search, PATCH
//! (name, tags, opt-out honoured by the processor), validation, and tenant isolation.

use serde_json::{Value, json};

use crate::helpers::{token, workspace};
use crate::inbox::{CUSTOMERS, Inbox, inbox};

const SINGAPORE: [&str; 2] = ["6591230001", "6591230002"];

impl Inbox {
    /// The ids of every contact a search finds, following `nextCursor`, and the page count.
    async fn contacts(&self, query: &str) -> (Vec<String>, usize) {
        let mut ids = vec![];
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let q = match &cursor {
                Some(c) => format!("{query}&cursor={c}"),
                None => query.to_owned(),
            };
            let page = self.ok("GET", "/v1/contacts", &q, None).await;
            ids.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["id"].as_str().unwrap().to_owned()),
            );
            pages += 1;
            assert!(pages < 20, "pagination ends");
            cursor = page["nextCursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                return (ids, pages);
            }
        }
    }

    async fn everyone_writes(&self) {
        for (i, customer) in CUSTOMERS.iter().chain(&SINGAPORE).enumerate() {
            self.customer_writes(customer, &format!("wamid.CT{i}"), "Hi")
                .await;
        }
    }
}

fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn contacts_list_by_phone_number_across_pages_and_search_by_phone_prefix() {
    let inbox = inbox(false).await;
    inbox.everyone_writes().await;
    let (all, pages) = inbox.contacts("limit=3").await;
    let mut expected = strings(&CUSTOMERS);
    expected.extend(strings(&SINGAPORE));
    assert_eq!(all, expected, "by phone number");
    assert_eq!(pages, 3);

    let (singapore, _) = inbox.contacts("phone=%2B65%2091").await;
    assert_eq!(singapore, strings(&SINGAPORE));
    let (us, pages) = inbox.contacts("phone=1650555000&limit=2").await;
    assert_eq!(us, strings(&CUSTOMERS));
    assert_eq!(pages, 3);
    assert_eq!(inbox.contacts("phone=44").await.0, Vec::<String>::new());

    let one = inbox
        .ok("GET", &format!("/v1/contacts/{}", SINGAPORE[0]), "", None)
        .await;
    assert_eq!(one["phone"], "+6591230001");
    assert_eq!(one["profileName"], "Sheena Nelson");
    assert_eq!(one["optedOut"], false);
    assert_eq!(one["tags"], json!([]));
}

#[tokio::test]
async fn name_search_finds_profile_names_and_given_names_by_prefix_in_any_case() {
    let inbox = inbox(false).await;
    inbox.everyone_writes().await;
    let renamed = CUSTOMERS[2];
    let reply = inbox
        .ok(
            "PATCH",
            &format!("/v1/contacts/{renamed}"),
            "",
            Some(&json!({ "name": "Ana  Lim" })),
        )
        .await;
    assert_eq!(reply["name"], "Ana Lim");
    assert_eq!(reply["profileName"], "Sheena Nelson");

    assert_eq!(inbox.contacts("name=aNa").await.0, [renamed]);
    let (sheenas, pages) = inbox.contacts("name=SHEENA%20n&limit=2").await;
    assert_eq!(sheenas.len(), 6, "everyone else: {sheenas:?}");
    assert!(!sheenas.contains(&renamed.to_owned()));
    assert!(pages >= 3);
    assert_eq!(inbox.contacts("name=zed").await.0, Vec::<String>::new());

    // A new message keeps the given name; clearing it goes back to the profile name.
    inbox
        .customer_writes(renamed, "wamid.CT9", "Hello again")
        .await;
    assert_eq!(inbox.contacts("name=ana").await.0, [renamed]);
    let reply = inbox
        .ok(
            "PATCH",
            &format!("/v1/contacts/{renamed}"),
            "",
            Some(&json!({ "name": null })),
        )
        .await;
    assert_eq!(reply["name"], "Sheena Nelson");
    assert_eq!(inbox.contacts("name=ana").await.0, Vec::<String>::new());
    assert_eq!(inbox.contacts("name=sheena").await.0.len(), 7);
}

#[tokio::test]
async fn patch_sets_tags_and_opt_out_and_the_processor_honours_the_opt_out() {
    let inbox = inbox(true).await;
    let customer = CUSTOMERS[0];
    inbox.customer_writes(customer, "wamid.OPT1", "Hello").await;
    assert_eq!(inbox.replies().await, 1);
    let path = format!("/v1/contacts/{customer}");

    let reply = inbox
        .ok(
            "PATCH",
            &path,
            "",
            Some(&json!({ "tags": ["vip", " vip ", "wholesale"], "optedOut": true })),
        )
        .await;
    assert_eq!(reply["tags"], json!(["vip", "wholesale"]));
    assert_eq!(reply["optedOut"], true);
    assert_eq!(inbox.ok("GET", &path, "", None).await, reply);

    inbox
        .customer_writes(customer, "wamid.OPT2", "Prices?")
        .await;
    assert_eq!(
        inbox.replies().await,
        1,
        "no AI reply to an opted-out contact"
    );

    let reply = inbox
        .ok("PATCH", &path, "", Some(&json!({ "optedOut": false })))
        .await;
    assert_eq!(reply["optedOut"], false);
    assert_eq!(reply["tags"], json!(["vip", "wholesale"]), "untouched");
    inbox
        .customer_writes(customer, "wamid.OPT3", "Prices?")
        .await;
    assert_eq!(inbox.replies().await, 2, "answered again once opted in");
}

#[tokio::test]
async fn invalid_contact_parameters_and_bodies_are_refused_naming_the_field() {
    let inbox = inbox(false).await;
    let customer = CUSTOMERS[0];
    inbox.customer_writes(customer, "wamid.CV1", "Hello").await;
    let path = format!("/v1/contacts/{customer}");
    let cases: Vec<(&'static str, &str, &str, Option<Value>, &str)> = vec![
        ("GET", "/v1/contacts", "phone=abc", None, "phone"),
        ("GET", "/v1/contacts", "phone=1&name=a", None, "name"),
        ("GET", "/v1/contacts", "name=%20", None, "name"),
        ("GET", "/v1/contacts", "limit=500", None, "limit"),
        ("GET", "/v1/contacts", "cursor=xyz", None, "cursor"),
        ("GET", "/v1/contacts", "email=a", None, "email"),
        ("PATCH", &path, "", Some(json!({})), "body"),
        ("PATCH", &path, "", Some(json!({ "name": "" })), "name"),
        (
            "PATCH",
            &path,
            "",
            Some(json!({ "tags": ["ok", ""] })),
            "tags[1]",
        ),
        ("PATCH", &path, "", Some(json!({ "tags": "vip" })), "tags"),
        (
            "PATCH",
            &path,
            "",
            Some(json!({ "optedOut": "yes" })),
            "optedOut",
        ),
    ];
    for (method, path, query, body, field) in cases {
        let reply = inbox.call(method, path, query, body.as_ref()).await;
        assert_eq!(reply.status, 400, "{method} {path}?{query}: {}", reply.body);
        assert_eq!(reply.error_code(), "validation_failed");
        assert_eq!(
            reply.json()["error"]["details"]["field"],
            field,
            "{}",
            reply.body
        );
    }
    let reply = inbox
        .call("GET", "/v1/contacts/16505559999", "", None)
        .await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn workspace_a_gets_404_for_workspace_bs_contact_on_every_route_and_never_its_data() {
    let inbox = inbox(false).await;
    inbox.everyone_writes().await;
    let a = token(&workspace("ws-a"));
    let path = format!("/v1/contacts/{}", CUSTOMERS[0]);
    for (method, body) in [
        ("GET", None),
        (
            "PATCH",
            Some(json!({ "name": "Mine now", "optedOut": true })),
        ),
    ] {
        let reply = inbox.call_as(&a, method, &path, "", body.as_ref()).await;
        assert_eq!(reply.status, 404, "{method}: {}", reply.body);
        assert_eq!(reply.error_code(), "not_found");
    }
    for query in ["", "phone=1", "name=sheena"] {
        let reply = inbox.call_as(&a, "GET", "/v1/contacts", query, None).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["items"], json!([]), "{query}");
    }
    let page = inbox.ok("GET", "/v1/contacts", "limit=1", None).await;
    let b_cursor = page["nextCursor"].as_str().unwrap();
    let reply = inbox
        .call_as(
            &a,
            "GET",
            "/v1/contacts",
            &format!("limit=1&cursor={b_cursor}"),
            None,
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);

    let b_view = inbox.ok("GET", &path, "", None).await;
    assert_eq!(b_view["name"], "Sheena Nelson");
    assert_eq!(b_view["optedOut"], false);
}
