//! Abuse resistance: bounded metrics labels, answers that never repeat what the caller sent,
//! security headers, identifiers, duplicates, data files.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backend_tests;
use crate::helpers::{Backend, spawn_app};

/// Sends `requests` raw HTTP/1.1 requests pipelined on one connection (the last one closing
/// it) and returns everything the server answered.
pub async fn pipelined(addr: &str, requests: &[String]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut out = String::new();
    for (i, line) in requests.iter().enumerate() {
        let close = if i + 1 == requests.len() {
            "Connection: close\r\n"
        } else {
            ""
        };
        out.push_str(&format!("{line} HTTP/1.1\r\nHost: test\r\n{close}\r\n"));
    }
    let (mut reader, mut writer) = stream.split();
    let write = async {
        writer.write_all(out.as_bytes()).await.expect("write");
    };
    let mut answers = Vec::new();
    let read = reader.read_to_end(&mut answers);
    let (_, read) = tokio::join!(write, read);
    read.expect("read");
    String::from_utf8_lossy(&answers).into_owned()
}

async fn metrics_stay_bounded_under_odd_methods_and_paths(backend: Backend) {
    let app = spawn_app(backend).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let baseline = app.get("/metrics", None).await.text.len();
    let mut tasks = Vec::new();
    for connection in 0..10 {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let requests: Vec<String> = (0..1000)
                .map(|i| {
                    let n = connection * 1000 + i;
                    let method = format!("M{n}{}", "X".repeat(40));
                    // Half on a known route (405), half on paths that match nothing (404).
                    if n % 2 == 0 {
                        format!("{method} /healthz")
                    } else {
                        format!("{method} /odd/{n}/{}", "p".repeat(40))
                    }
                })
                .collect();
            pipelined(&addr, &requests).await
        }));
    }
    let mut answered = 0;
    for task in tasks {
        answered += task.await.expect("task").matches("HTTP/1.1 ").count();
    }
    assert_eq!(answered, 10_000, "every odd request was answered");
    let a = app.get("/metrics", None).await;
    assert_eq!(a.status, 200);
    assert!(
        a.text.contains(r#"method="other",route="/healthz""#),
        "{}",
        a.text
    );
    assert!(
        a.text.contains(r#"method="other",route="unmatched""#),
        "{}",
        a.text
    );
    assert!(!a.text.contains("XXXX") && !a.text.contains("/odd/"));
    assert!(
        a.text.len() < baseline + 16 * 1024,
        "the scrape grew from {baseline} to {} bytes",
        a.text.len()
    );
}

backend_tests!(metrics_stay_bounded_under_odd_methods_and_paths);
