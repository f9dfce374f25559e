//! The send API's reminder store: creation with an idempotency key, tenancy, filters and pages.

use std::collections::HashSet;

use shared::dashboard::DashboardError;
use shared::reminders::model::ReminderStatus;
use shared::reminders::store::{Cancelled, Created, KeyedRequest, ReminderFilter, ReminderStore};
use time::OffsetDateTime;

use crate::helpers::*;

fn keyed(key: &str) -> KeyedRequest<'_> {
    KeyedRequest {
        key,
        request_hash: "hash-1",
    }
}

#[tokio::test]
async fn the_same_idempotency_key_creates_one_reminder() {
    let world = spawn_world(1).await;
    let now = OffsetDateTime::now_utc();
    let first = shared::reminders::model::NewReminder::parse(
        wa(),
        template_channel(world.pn()),
        now + time::Duration::hours(1),
        false,
        now,
    )
    .unwrap()
    .into_reminder(world.ws().clone(), now);
    let mut second = first.clone();
    second.id = shared::reminders::model::ReminderId::new_at(now + time::Duration::seconds(1));
    let a = world
        .store
        .create_reminder(&first, Some(keyed("key-1")))
        .await
        .unwrap();
    let b = world
        .store
        .create_reminder(&second, Some(keyed("key-1")))
        .await
        .unwrap();
    assert_eq!(a, Created::New(first.clone()));
    assert_eq!(
        b,
        Created::Existing {
            reminder: first.clone(),
            request_hash: "hash-1".into()
        }
    );
    assert!(
        world
            .store
            .reminder(world.ws(), &second.id)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn another_workspaces_reminder_cannot_be_read_or_cancelled() {
    let world = spawn_world(2).await;
    let theirs = world.due_reminder(template_channel(world.pn())).await;
    let other = &world.workspaces[1].0;
    assert_eq!(world.store.reminder(other, &theirs.id).await.unwrap(), None);
    let cancel = world
        .store
        .cancel_reminder(other, &theirs.id, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(cancel, Cancelled::NotFound);
    assert_eq!(world.get(&theirs.id).await.status, ReminderStatus::Pending);
    let page = world
        .store
        .list_reminders(other, &ReminderFilter::default(), 50, None)
        .await
        .unwrap();
    assert!(page.items.is_empty());
}

#[tokio::test]
async fn a_list_is_paged_by_due_time_and_filtered_by_status_and_due_range() {
    let world = spawn_world(2).await;
    let base = (OffsetDateTime::now_utc() - time::Duration::hours(10))
        .replace_nanosecond(0)
        .unwrap();
    let mut created = Vec::new();
    for i in 0..7 {
        let r = world
            .reminder_at(world.ws(), email_channel(), base + time::Duration::hours(i))
            .await;
        created.push(r);
    }
    // Another workspace's reminder never shows.
    world
        .reminder_at(&world.workspaces[1].0, email_channel(), base)
        .await;
    world
        .store
        .cancel_reminder(world.ws(), &created[2].id, OffsetDateTime::now_utc())
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = world
            .store
            .list_reminders(world.ws(), &ReminderFilter::default(), 3, cursor.take())
            .await
            .unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.into_iter().map(|r| r.id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let expected: Vec<_> = created.iter().map(|r| r.id.clone()).collect();
    assert_eq!(seen, expected, "every reminder once, by due time");

    let cancelled = world
        .store
        .list_reminders(
            world.ws(),
            &ReminderFilter {
                status: Some(ReminderStatus::Cancelled),
                ..ReminderFilter::default()
            },
            50,
            None,
        )
        .await
        .unwrap();
    assert_eq!(cancelled.items.len(), 1);
    assert_eq!(cancelled.items[0].id, created[2].id);

    let window = world
        .store
        .list_reminders(
            world.ws(),
            &ReminderFilter {
                due_from: Some(base + time::Duration::hours(3)),
                due_to: Some(base + time::Duration::hours(5)),
                ..ReminderFilter::default()
            },
            50,
            None,
        )
        .await
        .unwrap();
    let ids: HashSet<_> = window.items.iter().map(|r| r.id.clone()).collect();
    assert_eq!(
        ids,
        HashSet::from([created[3].id.clone(), created[4].id.clone()])
    );
}

#[tokio::test]
async fn a_cursor_from_another_workspace_is_refused() {
    let world = spawn_world(2).await;
    for i in 0..3 {
        world
            .reminder_at(
                world.ws(),
                email_channel(),
                OffsetDateTime::now_utc() - time::Duration::minutes(i),
            )
            .await;
    }
    let page = world
        .store
        .list_reminders(world.ws(), &ReminderFilter::default(), 1, None)
        .await
        .unwrap();
    let cursor = page.next.expect("more than one page");
    let other = &world.workspaces[1].0;
    let refused = world
        .store
        .list_reminders(other, &ReminderFilter::default(), 1, Some(cursor))
        .await;
    assert!(
        matches!(&refused, Err(DashboardError::Validation { field, .. }) if field == "cursor"),
        "{refused:?}"
    );
}
