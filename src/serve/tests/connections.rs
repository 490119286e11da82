//! Connections over real loopback sockets: the header-read timeout (half-sent headers,
//! silent sockets, idle keep-alives) and the bound on open connections.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER_TIMEOUT: Duration = Duration::from_millis(300);

fn short_timeouts(env: &Env, max_connections: usize) -> ServeConfig {
    ServeConfig {
        header_timeout: HEADER_TIMEOUT,
        max_connections,
        ..env.config()
    }
}

fn addr(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_string()
}

/// Reads until the peer closes the connection (EOF or reset), up to `limit`; how long
/// that took, or `None` when the connection was still open at `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Reads one response whose end the body's `}` marks (every JSON answer here), and
/// returns it as text.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text.ends_with(b"}") {
        let n = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(
            n > 0,
            "closed before answering: {:?}",
            String::from_utf8_lossy(&text)
        );
        text.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_and_silent_sockets_are_closed_after_the_header_timeout() {
    let env = Env::new();
    let server = Server::start(short_timeouts(&env, 1000)).await;
    let started = Instant::now();
    let mut half = TcpStream::connect(addr(&server)).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nAccept: ")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(addr(&server)).await.unwrap();
    let limit = Duration::from_secs(5);
    let (half_closed, silent_closed) = tokio::join!(
        closed_within(&mut half, limit),
        closed_within(&mut silent, limit)
    );
    assert!(
        started.elapsed() >= HEADER_TIMEOUT / 2,
        "{:?}",
        started.elapsed()
    );
    for (what, closed) in [
        ("half-sent headers", half_closed),
        ("silent", silent_closed),
    ] {
        let took = closed.unwrap_or_else(|| panic!("{what}: still open after 5 s"));
        assert!(
            took < HEADER_TIMEOUT + Duration::from_secs(2),
            "{what}: closed after {took:?}"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let env = Env::new();
    let server = Server::start(short_timeouts(&env, 1000)).await;
    let mut stream = TcpStream::connect(addr(&server)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_response(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    let took = closed_within(&mut stream, Duration::from_secs(5))
        .await
        .expect("the idle keep-alive connection is closed");
    assert!(took < HEADER_TIMEOUT + Duration::from_secs(2), "{took:?}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_healthz_waits_for_the_silent_ones_to_time_out() {
    const LIMIT: usize = 8;
    let env = Env::new();
    let server = Server::start(short_timeouts(&env, LIMIT)).await;
    // The start-up probe's keep-alive connection holds a slot until it times out.
    tokio::time::sleep(HEADER_TIMEOUT + Duration::from_millis(200)).await;
    let mut silent = Vec::new();
    for _ in 0..LIMIT {
        silent.push(TcpStream::connect(addr(&server)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let mut health = TcpStream::connect(addr(&server)).await.unwrap();
    health
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_response(&mut health).await;
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Not served beside the silent ones (the limit holds), but once the first of them
    // timed out (the limit does not starve it).
    assert!(
        took >= HEADER_TIMEOUT / 2 && took < HEADER_TIMEOUT + Duration::from_secs(3),
        "healthz answered after {took:?}"
    );
    for mut s in silent {
        assert!(
            closed_within(&mut s, Duration::from_secs(5))
                .await
                .is_some(),
            "a silent socket stayed open"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_after_complete_headers_is_not_cut_by_the_header_timeout() {
    let env = Env::new();
    let server = Server::start(short_timeouts(&env, 1000)).await;
    let body =
        serde_json::to_vec(&json!({"customer_id": "slow", "features": features(1.0)})).unwrap();
    let mut stream = TcpStream::connect(addr(&server)).await.unwrap();
    let head = format!(
        "POST /v1/score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    for chunk in body.chunks(body.len().div_ceil(8)) {
        tokio::time::sleep(HEADER_TIMEOUT / 3).await;
        stream.write_all(chunk).await.unwrap();
    }
    assert!(started.elapsed() > HEADER_TIMEOUT * 2);
    let answer = read_response(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_past_the_header_timeout_for_a_silent_socket() {
    let env = Env::new();
    let server = Server::start(short_timeouts(&env, 1000)).await;
    let _silent = TcpStream::connect(addr(&server)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    server.stop().await.unwrap();
    assert!(
        started.elapsed() < HEADER_TIMEOUT + Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
