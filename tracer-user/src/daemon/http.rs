//! A minimal HTTP/1.1 server for `/metrics` and `/healthz`: one request per
//! connection (`Connection: close`), GET and HEAD only. Whoever can reach the port may
//! be hostile, so every connection is bounded:
//!
//! - the request head must arrive whole within [`HEAD_DEADLINE`] (a slowloris client
//!   sending a byte now and then is cut off) and fit in [`MAX_REQUEST_HEAD`] bytes;
//!   the answer must be taken within [`WRITE_DEADLINE`];
//! - at most [`MAX_CONNECTIONS`] are open; when one more arrives, the connection that
//!   sent nothing for the longest while, still without a whole request, is closed to
//!   make room, so idle connections can never lock out a scrape;
//! - the head is parsed as it arrives, each byte looked at once ([`HeadReader`]);
//!   the one header kept is `Authorization`.
//!
//! With a web configuration ([`super::web`]) the same bounds hold over TLS (the handshake
//! counts against the head deadline; a client speaking plain HTTP to the TLS port gets a
//! plain 400 saying so) and every path but `/healthz` asks for basic authentication:
//! `/healthz` says only whether scans succeed, and the kubelet's probes carry no
//! credentials.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use bytes::Bytes;
use thiserror::Error;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::AbortHandle,
};

use super::web::WebSecurity;
use crate::isolate::{Faults, StuckReads};

/// The largest request head accepted.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// A connection gets this long, from its accept, to send its whole request head.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// And this long to take the answer.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// Connections open at once; one more closes the idlest (see the module doc).
pub const MAX_CONNECTIONS: usize = 64;

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
    /// When the scan under way started (None between scans).
    pub scanning_since: Option<Instant>,
}

/// The state shared between the scanner thread and the server.
pub struct Shared {
    snapshot: Mutex<Snapshot>,
    /// `/healthz` fails when no scan finished for this long.
    stale_after: Duration,
    /// The watch's failed processes, for the reads stuck now (set once it started).
    faults: OnceLock<Arc<Faults>>,
}

/// What `/healthz` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// The last scan finished this long ago.
    Ok(Duration),
    /// No scan has finished yet.
    Starting,
    /// The last scan failed.
    Failing(String),
    /// A scan has been running this long (reading this process, if one).
    Stalled(Duration, Option<u32>),
    /// No scan finished for this long (and none is running).
    Stale(Duration),
}

impl Health {
    pub fn is_ok(&self) -> bool {
        matches!(self, Health::Ok(_))
    }

    /// The `/healthz` status and body, which also says how many reads are stuck now
    /// (those processes are reported unreadable; the scans go on).
    fn answer(&self, stuck: &StuckReads) -> (u16, String) {
        let (status, mut body) = self.state();
        if let Some((pid, waited)) = stuck.oldest {
            body.push_str(&format!(
                "{} read(s) stuck in the kernel, the oldest for {:.0} s (pid {pid}): \
                 reported unreadable, the scans go on\n",
                stuck.now,
                waited.as_secs_f64()
            ));
        }
        (status, body)
    }

    /// The `/healthz` status and first line.
    fn state(&self) -> (u16, String) {
        let body = match self {
            Health::Ok(ago) => {
                return (
                    200,
                    format!("ok: last scan {:.1} s ago\n", ago.as_secs_f64()),
                );
            }
            Health::Starting => "starting: no scan yet\n".to_string(),
            Health::Failing(e) => format!("scan failing: {e}\n"),
            Health::Stalled(running, pid) => format!(
                "stalled: the scan under way started {:.0} s ago{}\n",
                running.as_secs_f64(),
                pid.map(|p| format!(", reading pid {p}"))
                    .unwrap_or_default()
            ),
            Health::Stale(ago) => format!("stale: no scan for {:.0} s\n", ago.as_secs_f64()),
        };
        (503, body)
    }
}

impl Shared {
    pub fn new(metrics: Bytes, stale_after: Duration) -> Self {
        Self {
            snapshot: Mutex::new(Snapshot {
                metrics,
                last_ok: None,
                last_error: None,
                scanning_since: None,
            }),
            stale_after,
            faults: OnceLock::new(),
        }
    }

    /// Has `/healthz` say how many of this watch's reads are stuck.
    pub fn watch_stuck_reads(&self, faults: Arc<Faults>) {
        let _ = self.faults.set(faults);
    }

    /// The reads stuck now.
    pub fn stuck_reads(&self) -> StuckReads {
        self.faults
            .get()
            .map(|f| f.stuck_reads())
            .unwrap_or_default()
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

    /// Health at `now`: judged here, by the server, not by the scanner, so a scanner
    /// that hangs is still noticed. `reading` is the process being analysed, if any.
    pub fn health(&self, now: Instant, reading: Option<u32>) -> Health {
        let s = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(started) = s.scanning_since {
            let running = now.saturating_duration_since(started);
            if running > self.stale_after {
                return Health::Stalled(running, reading);
            }
        }
        match (s.last_ok, &s.last_error) {
            (_, Some(e)) => Health::Failing(e.clone()),
            (Some(t), None) => {
                let ago = now.saturating_duration_since(t);
                if ago <= self.stale_after {
                    Health::Ok(ago)
                } else {
                    Health::Stale(ago)
                }
            }
            (None, None) => Health::Starting,
        }
    }
}

/// An answer to one request.
#[derive(Debug, PartialEq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
    /// Whether the body is left out (a HEAD request).
    pub head_only: bool,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from(body.into()),
            head_only: false,
        }
    }
}

/// The methods served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
}

/// A request the server answers: its method and path (query and fragment cut off), and
/// its `Authorization` header, if it sent one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub authorization: Option<String>,
}

/// Why a request head is refused.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("bad request")]
    BadRequestLine,
    #[error("HTTP/1.x only")]
    Version,
    #[error("GET or HEAD only")]
    Method,
    #[error("request head too large")]
    TooLarge,
    #[error("bad Authorization header")]
    Authorization,
}

impl HeadError {
    pub fn status(self) -> u16 {
        match self {
            HeadError::BadRequestLine | HeadError::Authorization => 400,
            HeadError::Version => 505,
            HeadError::Method => 405,
            HeadError::TooLarge => 431,
        }
    }
}

/// A request head read as it arrives: bytes are appended with [`HeadReader::push`] and
/// each is looked at once, so a head sent a byte at a time costs what it costs sent
/// whole. Holds at most [`MAX_REQUEST_HEAD`] bytes.
#[derive(Debug, Default)]
pub struct HeadReader {
    buf: Vec<u8>,
    /// Bytes of `buf` already looked at.
    scanned: usize,
    /// Where the request line ends (its `\n`), once seen.
    request_line_end: Option<usize>,
    /// Where the current line starts.
    line_start: usize,
    /// Whether the current line has a byte other than `\r`.
    line_has_content: bool,
    /// The `Authorization` header's value, once seen.
    authorization: Option<String>,
    /// The outcome, once known.
    done: Option<Result<Request, HeadError>>,
}

impl HeadReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `bytes` (what one read returned); `Ok(None)` until the head ends (at its
    /// first empty line) or is refused. Once known, the outcome is repeated and further
    /// bytes are ignored.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Option<Request>, HeadError> {
        if let Some(done) = &self.done {
            return done.clone().map(Some);
        }
        let room = MAX_REQUEST_HEAD - self.buf.len();
        self.buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        while self.scanned < self.buf.len() {
            let byte = self.buf[self.scanned];
            self.scanned += 1;
            match byte {
                b'\n' if !self.line_has_content => {
                    let line_end = self.request_line_end.unwrap_or(self.scanned - 1);
                    let request = parse_request_line(&self.buf[..line_end]).map(|mut request| {
                        request.authorization = self.authorization.take();
                        request
                    });
                    return self.finish(request);
                }
                b'\n' => {
                    let line_end = self.scanned - 1;
                    if self.request_line_end.is_none() {
                        self.request_line_end = Some(line_end);
                    } else if let Err(e) = self.header_line(self.line_start, line_end) {
                        return self.finish(Err(e));
                    }
                    self.line_start = self.scanned;
                    self.line_has_content = false;
                }
                b'\r' => {}
                _ => self.line_has_content = true,
            }
        }
        if self.buf.len() == MAX_REQUEST_HEAD {
            return self.finish(Err(HeadError::TooLarge));
        }
        Ok(None)
    }

    /// Keeps the value of an `Authorization` header line (`buf[start..end]`); a second
    /// one is refused (which of two credentials counts would be a guess).
    fn header_line(&mut self, start: usize, end: usize) -> Result<(), HeadError> {
        let line = &self.buf[start..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Ok(());
        };
        if !line[..colon].eq_ignore_ascii_case(b"authorization") {
            return Ok(());
        }
        if self.authorization.is_some() {
            return Err(HeadError::Authorization);
        }
        let value =
            std::str::from_utf8(&line[colon + 1..]).map_err(|_| HeadError::Authorization)?;
        self.authorization = Some(value.trim().to_string());
        Ok(())
    }

    fn finish(
        &mut self,
        outcome: Result<Request, HeadError>,
    ) -> Result<Option<Request>, HeadError> {
        self.done = Some(outcome.clone());
        outcome.map(Some)
    }
}

/// Parses a whole request head (or its beginning): what [`HeadReader`] makes of `bytes`
/// pushed at once. `Ok(None)`: incomplete. The entry point of the HTTP fuzz target.
pub fn parse_request_head(bytes: &[u8]) -> Result<Option<Request>, HeadError> {
    HeadReader::new().push(bytes)
}

/// `GET /metrics HTTP/1.1` (a trailing `\r` allowed) into a request.
fn parse_request_line(line: &[u8]) -> Result<Request, HeadError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).map_err(|_| HeadError::BadRequestLine)?;
    let mut parts = line.split_ascii_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::BadRequestLine);
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HeadError::Version);
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => return Err(HeadError::Method),
    };
    let path = target.split(['?', '#']).next().unwrap_or("").to_string();
    Ok(Request {
        method,
        path,
        authorization: None,
    })
}

/// Whether answering `request` needs credentials when basic authentication is on: all
/// but the health check do.
pub fn needs_credentials(request: &Request) -> bool {
    request.path != "/healthz"
}

/// The answer to a request without valid credentials.
pub fn unauthorized() -> Response {
    Response::text(401, "unauthorized\n")
}

/// The answer to a client that speaks plain HTTP to the TLS port (as Go's servers say).
const PLAIN_HTTP_TO_TLS: &[u8] = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// Answers a request (its credentials, if needed, already checked).
pub fn route(request: &Request, shared: &Shared, now: Instant) -> Response {
    let mut response = match request.path.as_str() {
        "/metrics" => Response {
            status: 200,
            content_type: METRICS_CONTENT_TYPE,
            body: shared.metrics(),
            head_only: false,
        },
        "/healthz" => {
            let health = shared.health(now, crate::isolate::current_pid());
            let (status, body) = health.answer(&shared.stuck_reads());
            Response::text(status, body)
        }
        "/" => Response::text(
            200,
            "leakscope run: goroutine and thread leaks of this host.\n/metrics  Prometheus metrics\n/healthz  health check\n",
        ),
        _ => Response::text(404, "not found\n"),
    };
    response.head_only = request.method == Method::Head;
    response
}

/// The answer to a refused head.
fn refusal(error: HeadError) -> Response {
    Response::text(error.status(), format!("{error}\n"))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
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
    let allow = match response.status {
        401 => "WWW-Authenticate: Basic realm=\"leakscope\", charset=\"UTF-8\"\r\n",
        405 => "Allow: GET, HEAD\r\n",
        _ => "",
    };
    format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    )
}

/// One open connection, as the table sees it.
struct Slot {
    /// When it last sent a byte (or was accepted).
    last_input: Instant,
    /// Its request head is whole: it is being answered, not idle.
    answering: bool,
    abort: Option<AbortHandle>,
}

/// The open connections, at most [`MAX_CONNECTIONS`].
#[derive(Default)]
struct Connections {
    next_id: u64,
    open: HashMap<u64, Slot>,
}

impl Connections {
    /// Makes room for one more connection: closes the one idle longest among those
    /// still sending their head (if none, the oldest being answered); returns its id.
    fn make_room(&mut self) -> Option<u64> {
        if self.open.len() < MAX_CONNECTIONS {
            return None;
        }
        let victim = self
            .open
            .iter()
            .min_by_key(|(_, slot)| (slot.answering, slot.last_input))
            .map(|(&id, _)| id)?;
        if let Some(slot) = self.open.remove(&victim)
            && let Some(abort) = slot.abort
        {
            abort.abort();
        }
        Some(victim)
    }
}

/// A connection's entry in the table; removed when the connection ends (or is closed
/// to make room: its task is aborted, which drops this).
struct Registered {
    table: Arc<Mutex<Connections>>,
    id: u64,
}

impl Registered {
    fn update(&self, change: impl FnOnce(&mut Slot)) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = table.open.get_mut(&self.id) {
            change(slot);
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.open.remove(&self.id);
    }
}

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, security: Arc<WebSecurity>) {
    let table = Arc::new(Mutex::new(Connections::default()));
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
        let registered = {
            let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
            if t.make_room().is_some() {
                log::debug!("{peer}: connection limit; closed the idlest connection");
            }
            let id = t.next_id;
            t.next_id += 1;
            t.open.insert(
                id,
                Slot {
                    last_input: Instant::now(),
                    answering: false,
                    abort: None,
                },
            );
            Registered {
                table: table.clone(),
                id,
            }
        };
        let id = registered.id;
        let shared = shared.clone();
        let security = security.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = handle(stream, &shared, &security, &registered).await {
                log::debug!("{peer}: {e}");
            }
        });
        let abort = task.abort_handle();
        // The task may have finished (and left the table) already: then nothing to set.
        if let Some(slot) = table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .open
            .get_mut(&id)
        {
            slot.abort = Some(abort);
        }
        // Let the new connection read what it already sent before accepting more: a
        // scrape that sent its request with its connect is then answering, not idle.
        tokio::task::yield_now().await;
    }
}

/// Serves one connection: over TLS when configured (the handshake and the request head
/// together within [`HEAD_DEADLINE`] of the accept), then one request.
async fn handle(
    stream: TcpStream,
    shared: &Shared,
    security: &WebSecurity,
    registered: &Registered,
) -> std::io::Result<()> {
    let head_deadline = tokio::time::Instant::now() + HEAD_DEADLINE;
    let Some(acceptor) = &security.tls else {
        return answer(stream, head_deadline, shared, security, registered).await;
    };
    let opened = tokio::time::timeout_at(head_deadline, async {
        // A TLS connection opens with a handshake record (0x16); anything else is most
        // likely plain HTTP, told so in plain HTTP.
        let mut first = [0u8; 1];
        if stream.peek(&mut first).await? == 0 {
            return Ok(None);
        }
        if first[0] != 0x16 {
            let mut stream = stream;
            stream.write_all(PLAIN_HTTP_TO_TLS).await?;
            stream.shutdown().await?;
            return Ok(None);
        }
        acceptor.accept(stream).await.map(Some)
    })
    .await
    .map_err(|_| std::io::Error::other("no TLS handshake in time"))?;
    match opened? {
        Some(tls) => answer(tls, head_deadline, shared, security, registered).await,
        None => Ok(()),
    }
}

/// Reads one request head by `head_deadline`, answers within [`WRITE_DEADLINE`].
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    head_deadline: tokio::time::Instant,
    shared: &Shared,
    security: &WebSecurity,
    registered: &Registered,
) -> std::io::Result<()> {
    let read = tokio::time::timeout_at(head_deadline, read_head(&mut stream, registered)).await;
    let request = match read {
        Err(_) => return Err(std::io::Error::other("no whole request head in time")),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(None)) => return Ok(()),
        Ok(Ok(Some(request))) => request,
    };
    registered.update(|slot| slot.answering = true);
    let write = async {
        let response = match request {
            Ok(request) => {
                let response = respond(&request, shared, security).await;
                log::debug!(
                    "{:?} {} -> {}",
                    request.method,
                    request.path,
                    response.status
                );
                response
            }
            Err(refused) => refusal(refused),
        };
        stream.write_all(head(&response).as_bytes()).await?;
        if !response.head_only {
            stream.write_all(&response.body).await?;
        }
        stream.shutdown().await
    };
    tokio::time::timeout(WRITE_DEADLINE, write)
        .await
        .map_err(|_| std::io::Error::other("answer not taken in time"))?
}

/// The answer to a whole request: 401 without the credentials it needs.
async fn respond(request: &Request, shared: &Shared, security: &WebSecurity) -> Response {
    if let Some(auth) = &security.auth
        && needs_credentials(request)
        && !auth.allows(request.authorization.as_deref()).await
    {
        let mut response = unauthorized();
        response.head_only = request.method == Method::Head;
        return response;
    }
    route(request, shared, Instant::now())
}

/// Reads until the head is whole or refused; `None` if the peer closed first.
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    registered: &Registered,
) -> std::io::Result<Option<Result<Request, HeadError>>> {
    let mut reader = HeadReader::new();
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        registered.update(|slot| slot.last_input = Instant::now());
        match reader.push(&chunk[..n]) {
            Ok(None) => {}
            Ok(Some(request)) => return Ok(Some(Ok(request))),
            Err(e) => return Ok(Some(Err(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Request {
        parse_request_head(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap()
            .unwrap()
    }

    /// Check that the routes answer as documented: metrics with the Prometheus content
    /// type, health by scan freshness, errors and stalls, 404 otherwise.
    #[test]
    fn routes_answer_as_documented() {
        let shared = Shared::new(Bytes::from_static(b"m 1\n"), Duration::from_secs(10));
        let t0 = Instant::now();
        let metrics = route(&get("/metrics"), &shared, t0);
        assert_eq!(metrics.status, 200);
        assert_eq!(metrics.content_type, METRICS_CONTENT_TYPE);
        assert_eq!(&metrics.body[..], b"m 1\n");
        assert_eq!(route(&get("/metrics?x=1"), &shared, t0).status, 200);
        assert_eq!(route(&get("/healthz"), &shared, t0).status, 503);
        shared.publish(|s| s.last_ok = Some(t0));
        assert_eq!(route(&get("/healthz"), &shared, t0).status, 200);
        let later = t0 + Duration::from_secs(11);
        assert_eq!(route(&get("/healthz"), &shared, later).status, 503);
        assert_eq!(
            shared.health(later, None),
            Health::Stale(Duration::from_secs(11))
        );
        shared.publish(|s| s.last_error = Some("boom".into()));
        let failing = route(&get("/healthz"), &shared, t0);
        assert_eq!(failing.status, 503);
        assert!(String::from_utf8_lossy(&failing.body).contains("boom"));
        assert_eq!(route(&get("/nope"), &shared, t0).status, 404);
        let h = head(&metrics);
        assert!(h.starts_with("HTTP/1.1 200 OK\r\n"), "{h}");
        assert!(h.contains("Content-Length: 4\r\n"), "{h}");
        let head_only = parse_request_head(b"HEAD /metrics HTTP/1.0\n\n").unwrap();
        assert!(route(&head_only.unwrap(), &shared, t0).head_only);
    }

    /// Check that a scan running longer than the stale bound makes health "stalled",
    /// naming the process being read, even though the last scan was recent.
    #[test]
    fn a_scan_running_too_long_is_a_stall() {
        let shared = Shared::new(Bytes::new(), Duration::from_secs(10));
        let t0 = Instant::now();
        shared.publish(|s| {
            s.last_ok = Some(t0);
            s.scanning_since = Some(t0);
        });
        assert!(shared.health(t0 + Duration::from_secs(9), None).is_ok());
        let stalled = shared.health(t0 + Duration::from_secs(12), Some(42));
        assert_eq!(stalled, Health::Stalled(Duration::from_secs(12), Some(42)));
        let (status, body) = stalled.answer(&StuckReads::default());
        assert_eq!(status, 503);
        assert!(
            body.contains("stalled") && body.contains("pid 42"),
            "{body}"
        );
        let stuck = StuckReads {
            now: 2,
            total: 3,
            oldest: Some((77, Duration::from_secs(40))),
        };
        let (status, body) = Health::Ok(Duration::from_secs(1)).answer(&stuck);
        assert_eq!(
            status, 200,
            "stuck reads cost their processes, not the health"
        );
        assert!(
            body.contains("2 read(s) stuck") && body.contains("pid 77"),
            "{body}"
        );
    }

    /// Check that request heads parse to their method and path or to the refusal with
    /// its status (400, 405 with Allow, 505, 431), and that incomplete heads wait.
    #[test]
    fn heads_parse_or_are_refused() {
        assert_eq!(
            get("/metrics?x=1#y"),
            Request {
                method: Method::Get,
                path: "/metrics".into(),
                authorization: None,
            }
        );
        assert_eq!(
            parse_request_head(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Ok(None)
        );
        assert_eq!(parse_request_head(b"GET / HTTP/1.1\r\n"), Ok(None));
        assert_eq!(parse_request_head(b""), Ok(None));
        let refused = |bytes: &[u8]| parse_request_head(bytes).unwrap_err();
        assert_eq!(refused(b"POST / HTTP/1.1\r\n\r\n"), HeadError::Method);
        assert_eq!(refused(b"GET / SPDY/3\r\n\r\n"), HeadError::Version);
        assert_eq!(refused(b"garbage\r\n\r\n"), HeadError::BadRequestLine);
        assert_eq!(refused(b"\r\n"), HeadError::BadRequestLine);
        assert_eq!(
            refused(b"GET /\xff HTTP/1.1\n\n"),
            HeadError::BadRequestLine
        );
        assert_eq!(refused(&[b'a'; MAX_REQUEST_HEAD]), HeadError::TooLarge);
        let post = refusal(HeadError::Method);
        assert_eq!(post.status, 405);
        assert!(head(&post).contains("Allow: GET, HEAD\r\n"));
        assert_eq!(refusal(HeadError::TooLarge).status, 431);
    }

    /// Check that the Authorization header is kept whatever its name's case and place,
    /// that a second one is refused (400), and that other headers are ignored.
    #[test]
    fn the_authorization_header_is_kept() {
        let text =
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nauthorization:  Basic YTpi \r\nX-A: b\r\n\r\n";
        let request = parse_request_head(text).unwrap().unwrap();
        assert_eq!(request.authorization.as_deref(), Some("Basic YTpi"));
        for size in 1..text.len() {
            let mut reader = HeadReader::new();
            let mut outcome = Ok(None);
            for chunk in text.chunks(size) {
                outcome = reader.push(chunk);
            }
            assert_eq!(
                outcome,
                Ok(Some(request.clone())),
                "pushed {size} bytes at a time"
            );
        }
        let bare = parse_request_head(b"GET / HTTP/1.0\nAuthorization: Basic x\n\n");
        assert_eq!(
            bare.unwrap().unwrap().authorization.as_deref(),
            Some("Basic x")
        );
        let twice = b"GET / HTTP/1.1\r\nAuthorization: Basic a\r\nAUTHORIZATION: Basic b\r\n\r\n";
        assert_eq!(parse_request_head(twice), Err(HeadError::Authorization));
        assert_eq!(refusal(HeadError::Authorization).status, 400);
        assert_eq!(get("/").authorization, None);
        let denied = unauthorized();
        assert!(
            head(&denied).contains("WWW-Authenticate: Basic realm=\"leakscope\""),
            "{}",
            head(&denied)
        );
        assert!(!needs_credentials(&get("/healthz")));
        assert!(needs_credentials(&get("/metrics")) && needs_credentials(&get("/x")));
    }

    /// Check that a head sent a byte at a time is parsed like the whole head, each byte
    /// looked at once (linear, not rescanned per read), and that an endless head stops
    /// at the size bound with its bytes looked at once too.
    #[test]
    fn heads_are_read_linearly() {
        let mut text = b"GET /healthz HTTP/1.1\r\n".to_vec();
        for i in 0..200 {
            text.extend_from_slice(format!("X-Pad-{i}: {}\r\n", "v".repeat(20)).as_bytes());
        }
        text.extend_from_slice(b"\r\n");
        let mut reader = HeadReader::new();
        let mut outcome = Ok(None);
        for byte in &text {
            outcome = reader.push(std::slice::from_ref(byte));
            if outcome != Ok(None) {
                break;
            }
        }
        assert_eq!(outcome, parse_request_head(&text));
        assert_eq!(outcome.unwrap().unwrap().path, "/healthz");
        assert_eq!(reader.scanned, text.len(), "each byte looked at once");

        let mut reader = HeadReader::new();
        let mut pushes = 0;
        let outcome = loop {
            pushes += 1;
            match reader.push(b"x") {
                Ok(None) => {}
                other => break other,
            }
        };
        assert_eq!(outcome, Err(HeadError::TooLarge));
        assert_eq!(pushes, MAX_REQUEST_HEAD);
        assert_eq!(reader.scanned, MAX_REQUEST_HEAD);
        assert_eq!(
            reader.push(b"GET / HTTP/1.1\r\n\r\n"),
            Err(HeadError::TooLarge)
        );
    }

    /// Check that a full table closes the connection idle longest among those still
    /// sending their head, and one being answered only when no other is left.
    #[test]
    fn full_table_closes_the_idlest_head() {
        let t0 = Instant::now();
        let mut table = Connections::default();
        for id in 0..MAX_CONNECTIONS as u64 {
            let slot = Slot {
                last_input: t0 + Duration::from_millis(id),
                answering: id < 3,
                abort: None,
            };
            table.open.insert(id, slot);
        }
        assert_eq!(
            table.make_room(),
            Some(3),
            "oldest idle head, not an answer"
        );
        assert_eq!(table.make_room(), None, "room left");
        table.open.insert(
            100,
            Slot {
                last_input: t0,
                answering: false,
                abort: None,
            },
        );
        assert_eq!(table.make_room(), Some(100));
        for id in 4..MAX_CONNECTIONS as u64 {
            table.open.get_mut(&id).unwrap().answering = true;
        }
        let late = t0 + Duration::from_secs(60);
        table.open.insert(
            101,
            Slot {
                last_input: late,
                answering: true,
                abort: None,
            },
        );
        assert_eq!(table.make_room(), Some(0), "all answering: the oldest goes");
    }
}
