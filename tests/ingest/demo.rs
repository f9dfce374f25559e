//! The README's first command, run as a user runs it: `infra/demo` starts the whole local stack
//! (every function under `cargo lambda watch`, with the environment the template gives it) and
//! pushes a signed message through it. It exits 0 only when every step it shows happened.

use std::process::Command;

#[test]
fn the_demo_pushes_a_signed_message_through_the_real_functions_and_exits_zero() {
    let root = local_stack::paths::root();
    let output = Command::new(root.join("infra/demo"))
        .current_dir(&root)
        .output()
        .expect("infra/demo starts");
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "infra/demo failed:\n{shown}");
    assert!(
        shown.contains("answered once, delivered and read"),
        "the demo ends with its verdict:\n{shown}"
    );
}
