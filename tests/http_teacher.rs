//! `didact student` with an HTTP teacher on a loopback server that fails
//! part-way: the stage stops with a clear error, the rollout rows of the
//! iterations already checkpointed stay on disk, and a rerun once the
//! server is back resumes and finishes with every row.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use didact_data::tables::{RolloutRow, Table};
use didact_e2e::{scratch, smoke_run, smoke_stage};

/// An OpenAI-compatible chat-completions server on loopback: answers the
/// first `ok_first` requests, then HTTP 500 until `healthy` is set.
fn serve(ok_first: usize, healthy: Arc<AtomicBool>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let n = count.fetch_add(1, Ordering::SeqCst);
            let (status, text) = if n < ok_first || healthy.load(Ordering::SeqCst) {
                let reply = serde_json::json!({
                    "choices": [{"message": {"role": "assistant", "content": "Check each step again."}}]
                });
                (200, reply.to_string())
            } else {
                (500, "{\"error\": \"down\"}".to_string())
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (url, served)
}

#[test]
fn a_failing_http_teacher_stops_the_stage_and_loses_no_checkpointed_rollouts() {
    let dir = scratch();
    smoke_stage(dir.path(), "data");
    smoke_stage(dir.path(), "pretrain");
    let healthy = Arc::new(AtomicBool::new(false));
    // configs/smoke.toml asks at most 4 tasks × 4 members × 2 wrong turns
    // = 32 critiques an iteration: the first iteration always completes.
    let (url, served) = serve(40, healthy.clone());
    let base_url = format!("teacher.http.base_url=\"{url}\"");
    let student = || {
        smoke_run(
            dir.path(),
            "student",
            &[
                "teacher.kind=\"http\"",
                &base_url,
                "teacher.http.model=\"teacher\"",
                "teacher.http.retries=1",
                "teacher.http.backoff_s=0.01",
                "student.checkpoint_every=1",
            ],
        )
    };
    let err = student().error_line();
    assert!(
        err.contains("teacher") && err.contains(&url) && err.contains("HTTP 500"),
        "{err}"
    );
    assert!(served.load(Ordering::SeqCst) > 40);
    let run = dir.path().join("run");
    assert!(!run.join("rollouts.parquet").exists());
    let kept = RolloutRow::read(&run.join("checkpoints/student/rollouts.parquet")).unwrap();
    let done = kept.iter().map(|r| r.iteration).max().unwrap() + 1;
    assert!(done >= 1, "the first iteration was checkpointed");
    assert!(kept.iter().any(|r| r.feedback == "Check each step again."));

    healthy.store(true, Ordering::SeqCst);
    student().expect_ok();
    let rows = RolloutRow::read(&run.join("rollouts.parquet")).unwrap();
    let iterations: std::collections::BTreeSet<u64> = rows.iter().map(|r| r.iteration).collect();
    assert_eq!(iterations.len(), 4, "configs/smoke.toml runs 4 iterations");
    let before: Vec<_> = rows.iter().filter(|r| r.iteration < done).collect();
    assert_eq!(
        before.len(),
        kept.iter().filter(|r| r.iteration < done).count()
    );
    for (a, b) in before
        .iter()
        .zip(kept.iter().filter(|r| r.iteration < done))
    {
        assert_eq!(*a, b, "checkpointed rows survive the failure unchanged");
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    let metrics = &manifest["stages"]["student"]["metrics"];
    assert_eq!(metrics["resumed_from"], serde_json::json!(done));
    assert_eq!(metrics["teacher"]["kind"], "http");
    assert!(metrics["teacher"]["critiques"].as_u64().unwrap() > 0);
    assert_eq!(metrics["teacher"]["leaked_drafts"], 0);
}
