//! A minimal HTTP/1.1 server for `/metrics` and `/healthz`: one request per
//! connection (`Connection: close`), GET and HEAD only, bounded request size, time and
//! concurrency. Enough for Prometheus and a load balancer's health check.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

/// The largest request head accepted.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// A connection gets this long to send its request and take the answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 32;

/// The Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the scanner publishes for the server.
#[derive(Debug)]
pub struct Snapshot {
    /// The rendered `/metrics` body.
    pub metrics: Bytes,
    /// When the last scan succeeded.
    pub last_ok: Option<Instant>,
    /// Why the last scan failed, if it did.
    pub last_error: Option<String>,
}

/// The state shared between the scanner thread and the server.
pub struct Shared {
    snapshot: Mutex<Snapshot>,
    /// `/healthz` fails when no scan succeeded for this long.
    stale_after: Duration,
}

impl Shared {
    pub fn new(metrics: Bytes, stale_after: Duration) -> Self {
        Self {
            snapshot: Mutex::new(Snapshot {
                metrics,
                last_ok: None,
                last_error: None,
            }),
            stale_after,
        }
    }

    /// Replaces the published state.
    pub fn publish(&self, update: impl FnOnce(&mut Snapshot)) {
        let mut s = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        update(&mut s);
    }

    fn metrics(&self) -> Bytes {
        self.snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .metrics
            .clone()
    }

    /// `/healthz`: healthy while scans succeed.
    fn health(&self, now: Instant) -> (u16, String) {
        let s = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        match (s.last_ok, &s.last_error) {
            (Some(t), None) if now.duration_since(t) <= self.stale_after => (
                200,
                format!(
                    "ok: last scan {:.1} s ago\n",
                    now.duration_since(t).as_secs_f64()
                ),
            ),
            (_, Some(e)) => (503, format!("scan failing: {e}\n")),
            (Some(t), None) => (
                503,
                format!(
                    "stale: no scan for {:.0} s\n",
                    now.duration_since(t).as_secs_f64()
                ),
            ),
            (None, None) => (503, "starting: no scan yet\n".into()),
        }
    }
}

/// An answer to one request.
#[derive(Debug, PartialEq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from(body.into()),
        }
    }
}

/// Answers a request by its request line (`GET /metrics HTTP/1.1`).
pub fn route(request_line: &str, shared: &Shared, now: Instant) -> Response {
    let mut parts = request_line.split_ascii_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Response::text(400, "bad request\n");
    };
    if !version.starts_with("HTTP/1.") {
        return Response::text(505, "HTTP/1.x only\n");
    }
    if method != "GET" && method != "HEAD" {
        return Response::text(405, "GET or HEAD only\n");
    }
    let path = target.split(['?', '#']).next().unwrap_or("");
    match path {
        "/metrics" => Response {
            status: 200,
            content_type: METRICS_CONTENT_TYPE,
            body: shared.metrics(),
        },
        "/healthz" => {
            let (status, body) = shared.health(now);
            Response::text(status, body)
        }
        "/" => Response::text(
            200,
            "leakscope run: goroutine and thread leaks of this host.\n/metrics  Prometheus metrics\n/healthz  health check\n",
        ),
        _ => Response::text(404, "not found\n"),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// The response head.
pub fn head(response: &Response) -> String {
    let allow = if response.status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    )
}

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                log::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            log::debug!("{peer}: too many connections; closed");
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECTION_TIMEOUT, handle(stream, &shared)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::debug!("{peer}: {e}"),
                Err(_) => log::debug!("{peer}: timed out"),
            }
            drop(permit);
        });
    }
}

async fn handle(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut buf = vec![0u8; MAX_REQUEST_HEAD];
    let mut len = 0;
    let head_end = loop {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        if let Some(end) = find_head_end(&buf[..len]) {
            break end;
        }
        if len == buf.len() {
            let response = Response::text(431, "request head too large\n");
            stream.write_all(head(&response).as_bytes()).await?;
            stream.write_all(&response.body).await?;
            return stream.shutdown().await;
        }
    };
    let request = String::from_utf8_lossy(&buf[..head_end]);
    let request_line = request.lines().next().unwrap_or("");
    let response = route(request_line, shared, Instant::now());
    log::debug!("{request_line} -> {}", response.status);
    stream.write_all(head(&response).as_bytes()).await?;
    if !request_line.starts_with("HEAD ") {
        stream.write_all(&response.body).await?;
    }
    stream.shutdown().await
}

/// Where the request head ends (the blank line starts), if it is all there.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| bytes.windows(2).position(|w| w == b"\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that the routes answer as documented: metrics with the Prometheus content
    /// type, health by scan freshness and errors, 404/405/400 otherwise.
    #[test]
    fn routes_answer_as_documented() {
        let shared = Shared::new(Bytes::from_static(b"m 1\n"), Duration::from_secs(10));
        let t0 = Instant::now();
        let metrics = route("GET /metrics HTTP/1.1", &shared, t0);
        assert_eq!(metrics.status, 200);
        assert_eq!(metrics.content_type, METRICS_CONTENT_TYPE);
        assert_eq!(&metrics.body[..], b"m 1\n");
        assert_eq!(route("GET /metrics?x=1 HTTP/1.0", &shared, t0).status, 200);
        assert_eq!(route("GET /healthz HTTP/1.1", &shared, t0).status, 503);
        shared.publish(|s| s.last_ok = Some(t0));
        assert_eq!(route("GET /healthz HTTP/1.1", &shared, t0).status, 200);
        let later = t0 + Duration::from_secs(11);
        assert_eq!(route("GET /healthz HTTP/1.1", &shared, later).status, 503);
        shared.publish(|s| s.last_error = Some("boom".into()));
        let failing = route("GET /healthz HTTP/1.1", &shared, t0);
        assert_eq!(failing.status, 503);
        assert!(String::from_utf8_lossy(&failing.body).contains("boom"));
        assert_eq!(route("GET /nope HTTP/1.1", &shared, t0).status, 404);
        let post = route("POST /metrics HTTP/1.1", &shared, t0);
        assert_eq!(post.status, 405);
        assert!(head(&post).contains("Allow: GET, HEAD\r\n"));
        assert_eq!(route("garbage", &shared, t0).status, 400);
        let h = head(&metrics);
        assert!(h.starts_with("HTTP/1.1 200 OK\r\n"), "{h}");
        assert!(h.contains("Content-Length: 4\r\n"), "{h}");
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(23)
        );
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }
}
