//! The audit stream for a SIEM (`audit.stream`), on both backends: every committed entry, in
//! chain order, as the export's line, identifiers only; what is committed before shutdown is
//! written before the process ends.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::audit::{busy_cellule, head_seq};
use crate::backend_tests;
use crate::helpers::{Backend, COORD, Options, spawn_app_with};

fn perpignan_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("each line is JSON"))
        .filter(|l| l["cellule"] == "perpignan")
        .collect()
}

async fn the_stream_carries_every_entry_in_chain_order(backend: Backend) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let stream = dir.path().join("audit.jsonl");
    let target = stream.display().to_string();
    let app = spawn_app_with(
        backend,
        Options {
            customize: Box::new(move |c| c.audit.stream = Some(target)),
            ..Options::default()
        },
    )
    .await;
    let ids = busy_cellule(&app).await;
    let head = head_seq(&app).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while (perpignan_lines(&stream).len() as i64) < head && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = perpignan_lines(&stream);
    assert_eq!(lines.len() as i64, head);
    // The chain, in order, each line as the export shows the entry.
    let entries = app
        .state
        .db
        .audit_entries("perpignan", 0, 1000)
        .await
        .expect("entries");
    for (i, (line, entry)) in lines.iter().zip(&entries).enumerate() {
        assert_eq!(line["seq"], i as i64 + 1);
        let view =
            serde_json::to_value(cellule::services::auditor::EntryView::from(entry)).expect("view");
        assert_eq!(line, &view);
        if i > 0 {
            assert_eq!(line["prev_hash"], lines[i - 1]["hash"]);
        }
        let text = line.to_string();
        assert!(!text.contains("Situation"), "{text}");
    }
    // Entries committed just before shutdown are written before the process ends.
    let a = app
        .get(
            &format!("/v1/cellules/perpignan/cases/{}", ids[0]),
            Some(&app.token(COORD)),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let head = head_seq(&app).await;
    app.stop().await;
    let lines = perpignan_lines(&stream);
    assert_eq!(lines.len() as i64, head);
    assert_eq!(
        lines.last().map(|l| l["action"].clone()),
        Some("read_case".into())
    );
}

backend_tests!(the_stream_carries_every_entry_in_chain_order);
