//! A small fake registry for what the real one cannot be made to do cheaply: plain HTTP on
//! 127.0.0.1, one thread per connection, one request per connection (`Connection: close`).
//! Each test gives it a handler that answers a parsed request; it records every request and,
//! for streamed answers, how many body bytes went out and whether the client hung up.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `HEAD`, …
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes; at most 64 MiB are read).
    pub body: Vec<u8>,
}

impl Request {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// An answer.
pub enum Answer {
    /// Status, headers and a whole body (`Content-Length` added).
    Full(u16, Vec<(String, String)>, Vec<u8>),
    /// `status`, headers, then `prefix` and `filler` repeated until `total` bytes went out or
    /// the client hung up; no `Content-Length` (the body ends when the connection closes)
    /// unless `declare_length`.
    Endless { status: u16, headers: Vec<(String, String)>, prefix: Vec<u8>, total: u64, declare_length: bool },
    /// Status 200 with the whole body's `Content-Length`, but only its first `send` bytes; then
    /// the connection is closed (`release: None`), or the rest follows once `release` is set.
    Partial { headers: Vec<(String, String)>, body: Vec<u8>, send: usize, release: Option<Arc<AtomicBool>> },
    /// Status 200 with the whole body's `Content-Length`, then the body one byte every `every`
    /// (a registry that never stalls long enough for a read timeout), until done or hung up.
    Trickle { headers: Vec<(String, String)>, body: Vec<u8>, every: std::time::Duration },
}

/// What the fake recorded.
#[derive(Default)]
pub struct Seen {
    /// Every request, in arrival order.
    pub requests: Mutex<Vec<Request>>,
    /// Body bytes an endless answer managed to write.
    pub streamed: AtomicU64,
    /// Whether the client closed the connection before an endless answer was complete.
    pub hung_up: AtomicBool,
}

/// A running fake (its thread ends with the test process).
pub struct FakeRegistry {
    /// The port it listens on.
    pub port: u16,
    /// What it saw.
    pub seen: Arc<Seen>,
}

type Handler = dyn Fn(&Request) -> Answer + Send + Sync;

impl FakeRegistry {
    /// Starts serving with `handler`.
    pub fn start(handler: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake registry");
        let port = listener.local_addr().expect("local addr").port();
        let seen = Arc::new(Seen::default());
        let handler: Arc<Handler> = Arc::new(handler);
        let s = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (h, s) = (handler.clone(), s.clone());
                std::thread::spawn(move || serve(stream, &*h, &s));
            }
        });
        FakeRegistry { port, seen }
    }

    /// `127.0.0.1:<port>/<repo_tag>`.
    pub fn reference(&self, repo_tag: &str) -> String {
        format!("127.0.0.1:{}/{repo_tag}", self.port)
    }

    /// Waits (20 s at most) until the client has hung up on an endless answer; returns the
    /// body bytes that answer got out.
    pub fn wait_hung_up(&self) -> u64 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !self.seen.hung_up.load(Ordering::SeqCst) {
            assert!(std::time::Instant::now() < deadline, "the server never saw the connection closed");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.seen.streamed.load(Ordering::SeqCst)
    }

    /// The requests so far.
    pub fn requests(&self) -> Vec<Request> {
        self.seen.requests.lock().expect("requests").clone()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Status",
    }
}

fn serve(stream: TcpStream, handler: &Handler, seen: &Seen) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(64 << 20);
    let mut body = vec![0u8; length];
    if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
        body.clear();
    }
    let req = Request { method, target, headers, body };
    seen.requests.lock().expect("requests").push(req.clone());
    let head_only = req.method == "HEAD";
    let mut out = stream;
    match handler(&req) {
        Answer::Full(status, headers, body) => {
            let mut head = format!(
                "HTTP/1.1 {status} {}\r\nConnection: close\r\nContent-Length: {}\r\n",
                reason(status),
                body.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let _ = out.write_all(head.as_bytes());
            if !head_only {
                let _ = out.write_all(&body);
            }
        }
        Answer::Partial { headers, body, send, release } => {
            let mut head =
                format!("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let (first, rest) = body.split_at(send.min(body.len()));
            if out.write_all(head.as_bytes()).is_err()
                || out.write_all(first).is_err()
                || out.flush().is_err()
            {
                return;
            }
            if let Some(flag) = release {
                while !flag.load(Ordering::SeqCst) {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                let _ = out.write_all(rest);
            }
        }
        Answer::Trickle { headers, body, every } => {
            let mut head =
                format!("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            if out.write_all(head.as_bytes()).and_then(|()| out.flush()).is_err() {
                seen.hung_up.store(true, Ordering::SeqCst);
                return;
            }
            for byte in body.chunks(1) {
                std::thread::sleep(every);
                if out.write_all(byte).and_then(|()| out.flush()).is_err() {
                    seen.hung_up.store(true, Ordering::SeqCst);
                    return;
                }
                seen.streamed.fetch_add(1, Ordering::SeqCst);
            }
        }
        Answer::Endless { status, headers, prefix, total, declare_length } => {
            let mut head = format!("HTTP/1.1 {status} {}\r\nConnection: close\r\n", reason(status));
            if declare_length {
                head.push_str(&format!("Content-Length: {total}\r\n"));
            }
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            if out.write_all(head.as_bytes()).is_err() || out.write_all(&prefix).is_err() {
                seen.hung_up.store(true, Ordering::SeqCst);
                return;
            }
            let mut sent = prefix.len() as u64;
            seen.streamed.store(sent, Ordering::SeqCst);
            let filler = vec![b' '; 64 << 10];
            while sent < total {
                if out.write_all(&filler).is_err() {
                    seen.hung_up.store(true, Ordering::SeqCst);
                    return;
                }
                sent += filler.len() as u64;
                seen.streamed.store(sent, Ordering::SeqCst);
            }
        }
    }
    let _ = out.flush();
}
