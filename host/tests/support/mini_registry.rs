//! An in-memory registry on the fake's plumbing, speaking as much of the distribution API as
//! push and pull use (blob HEAD/GET, upload POST/PATCH/GET/PUT, manifest PUT/GET), with what
//! the real one cannot be made to do on cue: bearer tokens from its own token endpoint, and
//! faults injected per request ([`Mini::fault`]). Uploads are checked as distribution checks
//! them: a chunk must start where the session stands, a closing digest must match.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

use super::fake_registry::{Answer, FakeRegistry, Request};

/// A fault hook: an answer to give instead of the registry's, or `None`.
pub type Fault = Box<dyn Fn(&Request) -> Option<Answer> + Send + Sync>;

/// The registry's state.
#[derive(Default)]
pub struct Mini {
    /// Stored blobs by digest.
    pub blobs: Mutex<HashMap<String, Vec<u8>>>,
    /// Open upload sessions by id.
    pub uploads: Mutex<HashMap<String, Vec<u8>>>,
    /// Manifests by tag and by digest.
    pub manifests: Mutex<HashMap<String, Vec<u8>>>,
    /// Token scopes asked for, in order.
    pub scopes: Mutex<Vec<String>>,
    /// When set, every `/v2/<repo>/…` request needs `Authorization: Bearer <token>`, and the
    /// token endpoint hands it out for `USER:PASSWORD`.
    pub token: Option<String>,
    /// Tokens issued so far.
    pub issued: AtomicU64,
    /// A token's lifetime in seconds (`expires_in`; 0: 300). Each token is `<token>-<n>`, and
    /// one older than its lifetime is refused with a 401.
    pub token_seconds: u64,
    /// When each token was issued.
    issued_at: Mutex<HashMap<String, std::time::Instant>>,
    /// Requests that came with an expired token.
    pub expired: AtomicU64,
    /// Answers to give instead of the registry's.
    pub fault: Mutex<Option<Fault>>,
    port: AtomicU16,
    next: AtomicU64,
}

impl Mini {
    /// A registry that wants `token` as a bearer token (`None`: no authentication).
    pub fn new(token: Option<&str>) -> Mini {
        Mini { token: token.map(str::to_string), ..Mini::default() }
    }
}

fn full(status: u16, headers: &[(&str, String)], body: Vec<u8>) -> Answer {
    Answer::Full(status, headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(), body)
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", snapbundle_core::hex::encode(&Sha256::digest(bytes)))
}

/// `basic` credentials `user:password` as an `Authorization` value.
fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64_encode(format!("{user}:{password}").as_bytes()))
}

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

impl Mini {
    /// Starts serving `mini`.
    pub fn start(mini: Mini) -> (FakeRegistry, Arc<Mini>) {
        let mini = Arc::new(mini);
        let m = mini.clone();
        let fake = FakeRegistry::start(move |req| m.answer(req));
        mini.port.store(fake.port, Ordering::SeqCst);
        (fake, mini)
    }

    /// Sets the fault hook.
    pub fn set_fault(&self, fault: impl Fn(&Request) -> Option<Answer> + Send + Sync + 'static) {
        *self.fault.lock().expect("fault") = Some(Box::new(fault));
    }

    /// Removes the fault hook.
    pub fn clear_fault(&self) {
        *self.fault.lock().expect("fault") = None;
    }

    fn answer(&self, req: &Request) -> Answer {
        if let Some(a) = self.fault.lock().expect("fault").as_ref().and_then(|f| f(req)) {
            return a;
        }
        let port = self.port.load(Ordering::SeqCst);
        let path = req.path().to_string();
        if path == "/token" {
            return self.token_answer(req);
        }
        if self.token.is_some() {
            let presented = req.header("authorization").and_then(|a| a.strip_prefix("Bearer "));
            let age =
                presented.and_then(|t| self.issued_at.lock().expect("issued").get(t).map(|at| at.elapsed()));
            let fresh = age.is_some_and(|a| a.as_secs_f64() < self.lifetime() as f64);
            if age.is_some() && !fresh {
                self.expired.fetch_add(1, Ordering::SeqCst);
            }
            if !fresh {
                let challenge = format!(r#"Bearer realm="http://127.0.0.1:{port}/token",service="mini""#);
                return full(
                    401,
                    &[("WWW-Authenticate", challenge)],
                    b"{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}".to_vec(),
                );
            }
        }
        if path == "/v2/" {
            return full(200, &[], b"{}".to_vec());
        }
        let Some(rest) = path.strip_prefix("/v2/") else { return full(404, &[], Vec::new()) };
        if let Some((repo, d)) = rest.split_once("/blobs/sha256:") {
            let d = format!("sha256:{d}");
            let blobs = self.blobs.lock().expect("blobs");
            return match (req.method.as_str(), blobs.get(&d)) {
                ("HEAD", Some(b)) => full(200, &[("Content-Length", b.len().to_string())], Vec::new()),
                ("GET", Some(b)) => full(200, &[("Docker-Content-Digest", d.clone())], b.clone()),
                _ => {
                    let _ = repo;
                    full(404, &[], b"{\"errors\":[{\"code\":\"BLOB_UNKNOWN\"}]}".to_vec())
                }
            };
        }
        if let Some((repo, tail)) = rest.split_once("/blobs/uploads/") {
            return self.upload(req, repo, tail);
        }
        if let Some((_repo, target)) = rest.split_once("/manifests/") {
            let mut manifests = self.manifests.lock().expect("manifests");
            return match req.method.as_str() {
                "PUT" => {
                    let d = digest(&req.body);
                    manifests.insert(target.to_string(), req.body.clone());
                    manifests.insert(d.clone(), req.body.clone());
                    full(201, &[("Docker-Content-Digest", d)], Vec::new())
                }
                "GET" | "HEAD" => match manifests.get(target) {
                    Some(m) => full(
                        200,
                        &[
                            ("Content-Type", "application/vnd.oci.image.manifest.v1+json".into()),
                            ("Docker-Content-Digest", digest(m)),
                        ],
                        m.clone(),
                    ),
                    None => full(404, &[], b"{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\"}]}".to_vec()),
                },
                _ => full(405, &[], Vec::new()),
            };
        }
        full(404, &[], Vec::new())
    }

    fn lifetime(&self) -> u64 {
        if self.token_seconds == 0 {
            300
        } else {
            self.token_seconds
        }
    }

    fn token_answer(&self, req: &Request) -> Answer {
        let Some(token) = &self.token else { return full(404, &[], Vec::new()) };
        if req.header("authorization")
            != Some(basic(super::registry::USER, super::registry::PASSWORD).as_str())
        {
            return full(401, &[], b"{\"details\":\"wrong credentials\"}".to_vec());
        }
        let query = req.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        for pair in query.split('&') {
            if let Some(v) = pair.strip_prefix("scope=") {
                let v = v.replace("%3A", ":").replace("%2F", "/").replace("%2C", ",");
                self.scopes.lock().expect("scopes").push(v);
            }
        }
        let n = self.issued.fetch_add(1, Ordering::SeqCst);
        let value = format!("{token}-{n}");
        self.issued_at.lock().expect("issued").insert(value.clone(), std::time::Instant::now());
        let body = format!("{{\"token\":\"{value}\",\"expires_in\":{}}}", self.lifetime());
        full(200, &[("Content-Type", "application/json".into())], body.into_bytes())
    }

    fn upload(&self, req: &Request, repo: &str, tail: &str) -> Answer {
        let mut uploads = self.uploads.lock().expect("uploads");
        let query = req.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let param = |k: &str| {
            query.split('&').find_map(|p| p.strip_prefix(&format!("{k}="))).map(|v| v.replace("%3A", ":"))
        };
        let location = |id: &str| format!("/v2/{repo}/blobs/uploads/{id}?_state={id}");
        if tail.is_empty() && req.method == "POST" {
            let id = format!("u{}", self.next.fetch_add(1, Ordering::SeqCst));
            uploads.insert(id.clone(), Vec::new());
            return full(202, &[("Location", location(&id)), ("Range", "0-0".into())], Vec::new());
        }
        let id = tail.to_string();
        let Some(held) = uploads.get_mut(&id) else {
            return full(404, &[], b"{\"errors\":[{\"code\":\"BLOB_UPLOAD_UNKNOWN\"}]}".to_vec());
        };
        let range = |n: usize| format!("0-{}", n.saturating_sub(1));
        match req.method.as_str() {
            "GET" => full(204, &[("Location", location(&id)), ("Range", range(held.len()))], Vec::new()),
            "PATCH" => {
                let start = req
                    .header("content-range")
                    .and_then(|r| r.split_once('-'))
                    .and_then(|(a, _)| a.parse::<usize>().ok());
                if start != Some(held.len()) {
                    return full(416, &[], b"{\"errors\":[{\"code\":\"RANGE_INVALID\"}]}".to_vec());
                }
                held.extend_from_slice(&req.body);
                full(202, &[("Location", location(&id)), ("Range", range(held.len()))], Vec::new())
            }
            "PUT" => {
                held.extend_from_slice(&req.body);
                let want = param("digest").unwrap_or_default();
                if digest(held) != want {
                    return full(400, &[], b"{\"errors\":[{\"code\":\"DIGEST_INVALID\"}]}".to_vec());
                }
                let bytes = uploads.remove(&id).unwrap_or_default();
                self.blobs.lock().expect("blobs").insert(want.clone(), bytes);
                full(201, &[("Docker-Content-Digest", want)], Vec::new())
            }
            _ => full(405, &[], Vec::new()),
        }
    }
}
