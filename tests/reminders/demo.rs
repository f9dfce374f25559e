//! `infra/demo reminders`, run as a user runs it: the whole local stack with its scheduler
//! ticking, a reminder scheduled through the send API, and the run that sends it once. It exits
//! 0 only when every step it shows happened.

use std::process::Command;

#[test]
fn the_reminders_demo_schedules_a_reminder_through_the_api_and_the_scheduled_run_sends_it_once() {
    let _turn = crate::helpers::HEAVY.blocking_lock();
    let root = local_stack::paths::root();
    let output = Command::new(root.join("infra/demo"))
        .arg("reminders")
        .env("REMINDERS_TICK_SECONDS", "2")
        .current_dir(&root)
        .output()
        .expect("infra/demo starts");
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "infra/demo reminders failed:\n{shown}"
    );
    assert!(
        shown.contains("sent once by the scheduled run"),
        "the demo ends with its verdict:\n{shown}"
    );
    assert!(
        shown.contains("status=\"sent\" resultId=\"wamid."),
        "the demo shows the reminder sent with its wamid:\n{shown}"
    );
    assert!(
        shown.contains("status=\"sent\" resultId=\"email-standin-"),
        "the email reminder went to the Resend stand-in:\n{shown}"
    );
    assert!(
        shown.contains("template sends at the stand-in: 1"),
        "the demo counts one send:\n{shown}"
    );
}
