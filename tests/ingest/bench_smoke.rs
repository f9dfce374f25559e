//! `infra/bench` in its smoke mode (a few events, debug builds), so the measurement cannot rot:
//! every function and the Python peer run under the bench's fake Lambda Runtime API against
//! moto, and every figure of the report is there. The figures themselves are not judged here.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

#[test]
fn the_bench_runs_both_functions_and_the_python_peer_and_reports_every_figure() {
    let root = local_stack::paths::root();
    let workdir = std::env::temp_dir().join(format!("bench-smoke-{}", std::process::id()));
    let json = workdir.join("report.json");
    let output = Command::new(root.join("infra/bench"))
        .arg("--smoke")
        .arg("--json")
        .arg(&json)
        .arg("--workdir")
        .arg(&workdir)
        .current_dir(&root)
        .output()
        .expect("infra/bench starts");
    assert!(
        output.status.success(),
        "infra/bench --smoke failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("peer / Rust"), "the table compares: {table}");

    let report: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON report is written"))
            .expect("the report is JSON");
    for (subject, invocations) in [
        ("ingest", 3),
        ("peer", 3),
        ("processor-off", 2),
        ("processor-on", 2),
    ] {
        let median = &report["median"][subject];
        assert_eq!(median["invocations"], invocations, "{subject}: {median}");
        for figure in [
            "init_ms",
            "first_ms",
            "p50_ms",
            "p99_ms",
            "cpu_per_invocation_ms",
            "cpu_per_record_ms",
            "peak_rss_mb",
        ] {
            let value = median[figure].as_f64().unwrap_or_default();
            assert!(value > 0.0, "{subject}: {figure} is {value}");
        }
    }
    assert!(report["peer_over_rust"]["cpu_per_invocation_ms"].as_f64() > Some(0.0));

    let requests = &report["aws_requests_per_warm_invocation"];
    for subject in ["ingest", "peer"] {
        assert_eq!(
            requests[subject]["per_invocation"]["AmazonSQS.SendMessageBatch"], 1,
            "one webhook of one text is one SendMessageBatch: {requests}"
        );
    }
    for subject in ["processor-off", "processor-on"] {
        let dynamodb: u64 = requests[subject]["per_invocation"]
            .as_object()
            .map(|counts| {
                counts
                    .iter()
                    .filter(|(target, _)| target.starts_with("DynamoDB"))
                    .filter_map(|(_, n)| n.as_u64())
                    .sum()
            })
            .unwrap_or_default();
        assert!(dynamodb >= 10, "{subject} stores ten texts: {requests}");
    }
    assert!(
        report["whatsapp_requests"].as_u64() > Some(0),
        "with AI on, the processor replied through the WhatsApp stand-in"
    );
    // Only a temporary folder: a leftover is harmless.
    std::fs::remove_dir_all(&workdir).ok();
}

#[test]
fn the_bench_runs_another_build_of_each_rust_function_in_the_same_rounds_and_reports_ratios() {
    let root = local_stack::paths::root();
    let workdir = std::env::temp_dir().join(format!("bench-compare-{}", std::process::id()));
    let json = workdir.join("report.json");
    // The debug binaries `--smoke` builds, compared with themselves: the path is what is tested.
    let debug = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target folder holds tmp/")
        .join("debug");
    let output = Command::new(root.join("infra/bench"))
        .args(["--smoke", "--subjects", "ingest,processor-off", "--compare"])
        .arg(&debug)
        .arg("--json")
        .arg(&json)
        .arg("--workdir")
        .arg(&workdir)
        .current_dir(&root)
        .output()
        .expect("infra/bench starts");
    assert!(
        output.status.success(),
        "infra/bench --smoke --compare failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON report is written"))
            .expect("the report is JSON");
    for (subject, invocations) in [("ingest", 3), ("processor-off", 2)] {
        let alt = format!("{subject}-alt");
        assert_eq!(
            report["median"][&alt]["invocations"], invocations,
            "{alt} ran: {}",
            report["median"]
        );
        let ratio = report["compare_over_this"][subject]["cpu_per_invocation_ms"].as_f64();
        assert!(
            ratio > Some(0.0),
            "{subject}: a CPU ratio: {}",
            report["compare_over_this"]
        );
        assert_eq!(
            report["aws_requests_per_warm_invocation"][&alt],
            report["aws_requests_per_warm_invocation"][subject],
            "the same build makes the same AWS requests"
        );
    }
    std::fs::remove_dir_all(&workdir).ok();
}
