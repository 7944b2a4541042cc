//! Flood campaign (issue 8): slow-loris and connection floods against the real `boifi-server`
//! binary on loopback, bounded in count and time. While 1 000 connections trickle an unfinished
//! request head and 1 000 more sit idle, health and config keep answering within a 2 s client
//! timeout; a burst of 2 000 connect-and-close adds nothing; the server sheds the stalled
//! connections itself (its request-head timeout) instead of holding them forever.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::Binary;

const SLOW: usize = 1000;
const IDLE: usize = 1000;
const CHURN: usize = 2000;
/// The longest a health or config answer may take during the flood.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the server may hold a connection that never finishes its request head.
const SHED_WITHIN: Duration = Duration::from_secs(15);

/// Holds a connection that sends part of a request head, then one header byte every 500 ms.
/// Returns how long the server kept it open (or `None` if it was still open at `give_up`).
/// `connected` counts the connections that have made their first move (or failed to).
async fn slow_loris(
    addr: String,
    give_up: Duration,
    connected: Arc<AtomicUsize>,
) -> Option<Duration> {
    let started = Instant::now();
    let stream = TcpStream::connect(&addr).await;
    let stream = match stream {
        Ok(mut stream) => stream
            .write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .map(|()| stream),
        Err(e) => Err(e),
    };
    connected.fetch_add(1, Ordering::Relaxed);
    let mut stream = stream.ok()?;
    let mut buf = [0u8; 512];
    loop {
        if started.elapsed() > give_up {
            return None;
        }
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
            // The server answered (408) or closed: it shed us.
            Ok(_) => return Some(started.elapsed()),
            Err(_) => {
                if stream.write_all(b"a").await.is_err() {
                    return Some(started.elapsed());
                }
            }
        }
    }
}

/// Holds a connection that never sends a byte.
async fn idle(addr: String, give_up: Duration, connected: Arc<AtomicUsize>) -> Option<Duration> {
    let started = Instant::now();
    let stream = TcpStream::connect(&addr).await;
    connected.fetch_add(1, Ordering::Relaxed);
    let mut stream = stream.ok()?;
    let mut buf = [0u8; 512];
    match tokio::time::timeout(give_up, stream.read(&mut buf)).await {
        Ok(_) => Some(started.elapsed()),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_and_connection_floods_do_not_stop_health_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let server = Binary::start(&["--storage", "memory"], &log);
    let addr = server.addr.to_string();
    let client = reqwest::Client::builder()
        .timeout(ANSWER_TIMEOUT)
        // A fresh connection per request: each one has to get through the accept queue.
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    let flood_started = Instant::now();
    let mut held = tokio::task::JoinSet::new();
    let connected = Arc::new(AtomicUsize::new(0));
    for i in 0..(SLOW + IDLE) {
        let addr = addr.clone();
        let connected = Arc::clone(&connected);
        if i % 2 == 0 {
            held.spawn(async move { ("slow", slow_loris(addr, SHED_WITHIN, connected).await) });
        } else {
            held.spawn(async move { ("idle", idle(addr, SHED_WITHIN, connected).await) });
        }
    }
    // The flood is connected (every connection made its first move) before measuring.
    let deadline = Instant::now() + SHED_WITHIN;
    while connected.load(Ordering::Relaxed) < SLOW + IDLE {
        assert!(
            Instant::now() < deadline,
            "only {} of {} flood connections connected",
            connected.load(Ordering::Relaxed),
            SLOW + IDLE
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut slowest = Duration::ZERO;
    let mut answered = 0;
    for round in 0..40 {
        let path = if round % 2 == 0 {
            "/v1/health".to_owned()
        } else {
            format!("/v1/config?service=frontend&namespace=demo&pod=p-{round}")
        };
        let started = Instant::now();
        let response = client
            .get(server.url(&path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path} during the flood: {e}"));
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        slowest = slowest.max(started.elapsed());
        answered += 1;
        if round == 20 {
            // A burst of connect-and-close from 8 tasks at once.
            let mut churn = tokio::task::JoinSet::new();
            for _ in 0..8 {
                let addr = addr.clone();
                churn.spawn(async move {
                    for _ in 0..CHURN / 8 {
                        if let Ok(s) = TcpStream::connect(&addr).await {
                            drop(s);
                        }
                    }
                });
            }
            while churn.join_next().await.is_some() {}
        }
    }
    assert_eq!(answered, 40);
    assert!(slowest < ANSWER_TIMEOUT, "slowest answer {slowest:?}");

    let mut shed = [0usize; 2];
    let mut kept = [0usize; 2];
    let mut longest_held = Duration::ZERO;
    while let Some(result) = held.join_next().await {
        let (kind, outcome) = result.unwrap();
        let k = usize::from(kind == "idle");
        match outcome {
            Some(d) => {
                shed[k] += 1;
                longest_held = longest_held.max(d);
            }
            None => kept[k] += 1,
        }
    }
    eprintln!(
        "flood: {answered} answers, slowest {slowest:?}; shed slow {} idle {}; kept slow {} idle {}; longest held {longest_held:?}; total {:?}",
        shed[0], shed[1], kept[0], kept[1], flood_started.elapsed()
    );
    assert_eq!(kept, [0, 0], "connections still held after {SHED_WITHIN:?}");

    // Still healthy afterwards.
    let response = client.get(server.url("/v1/health")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
