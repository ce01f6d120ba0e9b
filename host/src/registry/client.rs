//! The connection to one repository of a registry: an HTTP client (reqwest, TLS by default) on a
//! small tokio runtime, the credentials and the bearer token they were traded for, and the
//! retry policy (backoff on transient failures, never on 401/403).

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::HostError;
use crate::registry::auth::Credentials;
use crate::registry::reference::Target;

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// Speak plain HTTP instead of HTTPS (TLS is the default).
    pub plain_http: bool,
    /// Extra PEM certificate(s) to trust (a private CA or a self-signed registry).
    pub ca_file: Option<PathBuf>,
    /// Credentials; see [`crate::registry::auth`].
    pub credentials: Credentials,
    /// Blobs transferred at once (0: the default, 4).
    pub jobs: usize,
    /// Attempts per request before giving up on a transient failure (0: the default, 4).
    pub attempts: u32,
}

/// Default blobs in flight.
pub const DEFAULT_JOBS: usize = 4;
/// Default attempts per request.
pub const DEFAULT_ATTEMPTS: u32 = 4;
/// First backoff delay; doubled on each retry.
pub(crate) const BACKOFF: Duration = Duration::from_millis(250);

/// A repository of a registry, ready for requests.
pub struct Registry {
    pub(crate) rt: tokio::runtime::Runtime,
    /// The HTTP client every request goes through ([`crate::registry::fetch`] for pull's
    /// GETs and the token, [`crate::registry::upload`] for push's requests).
    pub(crate) http: reqwest::Client,
    /// The bearer token [`Registry::login`] obtained, if the registry asked for one.
    pub(crate) bearer: std::sync::Mutex<Option<Bearer>>,
    /// The token scopes asked for (`repository:<repo>:pull`, `…:pull,push`, and
    /// `repository:<source>:pull` for each repository push may mount from).
    pub(crate) scopes: std::sync::Mutex<Vec<String>>,
    /// Plain HTTP instead of HTTPS.
    pub(crate) plain_http: bool,
    pub(crate) auth: Credentials,
    /// The reference as given, normalised (`host/repo:tag` or `host/repo@digest`).
    pub(crate) reference: Target,
    pub(crate) jobs: usize,
    attempts: u32,
    retries: AtomicU64,
}

/// The retry rule of one request, for loops that must do more between attempts than
/// [`Registry::retry`] does (an upload asks where its session stands): a transient failure is
/// retried after 250 ms, 500 ms, 1 s, … until the registry's attempts are used up; anything
/// else fails at once.
pub(crate) struct Backoff {
    attempt: u32,
    delay: Duration,
}

impl Backoff {
    /// Before the first attempt.
    pub(crate) fn new() -> Backoff {
        Backoff { attempt: 1, delay: BACKOFF }
    }

    /// After attempt failed with `e`: waits out the delay and returns `Ok` to try again, or the
    /// error to give up with (`what` names the request in it).
    pub(crate) async fn wait(
        &mut self,
        reg: &Registry,
        what: &str,
        e: &RequestError,
    ) -> Result<(), HostError> {
        let failure = classify(e);
        if failure != Failure::Transient || self.attempt >= reg.attempts {
            return Err(reg.error(what, failure, e, self.attempt));
        }
        reg.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(self.delay).await;
        self.delay = self.delay.saturating_mul(2);
        self.attempt = self.attempt.saturating_add(1);
        Ok(())
    }
}

/// A bearer token and when to trade the credentials for a new one (before it expires).
#[derive(Debug, Clone)]
pub(crate) struct Bearer {
    pub(crate) token: String,
    pub(crate) renew_at: std::time::Instant,
}

/// What a connection is for (the token scope asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    /// Reading: manifests and blobs.
    Pull,
    /// Writing: uploads, mounts and the manifest.
    Push,
}

/// A request that failed.
#[derive(Debug)]
pub(crate) enum RequestError {
    /// It could not be sent or its answer not read (connection, TLS, timeout).
    Http(reqwest::Error),
    /// The registry answered with a status that is not a success (at most
    /// `fetch::MAX_ERROR_BYTES` of the body kept in `message`).
    Status {
        /// The HTTP status.
        code: u16,
        /// The request's URL.
        url: String,
        /// The start of the answer's body.
        message: String,
    },
    /// The token endpoint refused the credentials.
    Auth(String),
    /// The registry broke the protocol (a missing header, an answer past its limit, …).
    Protocol(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Http(e) => write!(f, "{e}"),
            RequestError::Status { code, url, message } if message.is_empty() => write!(f, "{url}: {code}"),
            RequestError::Status { code, url, message } => write!(f, "{url}: {code}: {message}"),
            RequestError::Auth(m) | RequestError::Protocol(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for RequestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RequestError::Http(e) => Some(e),
            _ => None,
        }
    }
}

impl From<reqwest::Error> for RequestError {
    fn from(e: reqwest::Error) -> Self {
        RequestError::Http(e)
    }
}

/// Why a request failed, for the retry decision and the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// 401/403: wrong or missing credentials. Never retried.
    Auth,
    /// 404 / unknown manifest or blob.
    NotFound,
    /// Connection refused, reset, timed out, 5xx, 429: retried with backoff.
    Transient,
    /// Anything else (4xx, protocol violations): not retried.
    Other,
}

fn status_failure(code: u16) -> Failure {
    match code {
        401 | 403 => Failure::Auth,
        404 => Failure::NotFound,
        408 | 429 => Failure::Transient,
        c if c >= 500 => Failure::Transient,
        _ => Failure::Other,
    }
}

/// Classifies a request error.
pub(crate) fn classify(e: &RequestError) -> Failure {
    match e {
        RequestError::Auth(_) => Failure::Auth,
        RequestError::Status { code, .. } => status_failure(*code),
        RequestError::Http(r) => match r.status() {
            Some(s) => status_failure(s.as_u16()),
            None if r.is_builder() => Failure::Other,
            None => Failure::Transient,
        },
        RequestError::Protocol(_) => Failure::Other,
    }
}

impl Registry {
    /// Connects to the repository of `reference` (nothing is sent until the first request).
    pub fn connect(reference: Target, conn: &Connection) -> Result<Registry, HostError> {
        let setup = |e: &dyn std::fmt::Display| HostError::Registry {
            code: "registry_error",
            message: format!("cannot set up the registry client: {e}"),
        };
        let mut http = reqwest::Client::builder()
            .tls_backend_native()
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(120))
            .user_agent(concat!("snapbundle/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &conn.ca_file {
            let data =
                std::fs::read(ca).map_err(|e| HostError::io(format!("reading {}", ca.display()), e))?;
            for cert in reqwest::Certificate::from_pem_bundle(&data).map_err(|e| setup(&e))? {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http.build().map_err(|e| setup(&e))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| HostError::io("starting the network runtime", e))?;
        Ok(Registry {
            rt,
            http,
            bearer: std::sync::Mutex::new(None),
            scopes: std::sync::Mutex::new(Vec::new()),
            plain_http: conn.plain_http,
            auth: conn.credentials.clone(),
            reference,
            jobs: if conn.jobs == 0 { DEFAULT_JOBS } else { conn.jobs },
            attempts: if conn.attempts == 0 { DEFAULT_ATTEMPTS } else { conn.attempts },
            retries: AtomicU64::new(0),
        })
    }

    /// `registry/repository`, for messages.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.reference.resolve_registry(), self.reference.repository())
    }

    /// Requests retried so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Authenticates for `op` (basic credentials, or a bearer token from the registry's token
    /// endpoint when it asks for one; push also asks for pull access to each of `mount_from`),
    /// then proves the credentials with one cheap request for a blob no one has, so that wrong
    /// ones fail before any work, in few requests. Every request is our own and bounded
    /// ([`crate::registry::fetch`], [`crate::registry::upload`]).
    pub(crate) async fn login(&self, op: Operation, mount_from: &[String]) -> Result<(), HostError> {
        let what = format!("authenticating to {}", self.repository());
        let repo = self.reference.repository();
        let mut scopes = vec![match op {
            Operation::Pull => format!("repository:{repo}:pull"),
            Operation::Push => format!("repository:{repo}:pull,push"),
        }];
        scopes
            .extend(mount_from.iter().filter(|m| m.as_str() != repo).map(|m| format!("repository:{m}:pull")));
        if let Ok(mut s) = self.scopes.lock() {
            *s = scopes;
        }
        let token = self.retry(&what, || crate::registry::fetch::token(self)).await?;
        if let Ok(mut bearer) = self.bearer.lock() {
            *bearer = token;
        }
        let probe = format!("sha256:{}", "0".repeat(64));
        self.retry(&what, || crate::registry::upload::exists(self, &probe)).await.map(|_| ())
    }

    /// Runs `f` until it succeeds, fails for good, or the attempts are used up, by the rule of
    /// [`Backoff`] (401/403 and other client errors fail at once).
    pub(crate) async fn retry<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, HostError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RequestError>>,
    {
        let mut backoff = Backoff::new();
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) => backoff.wait(self, what, &e).await?,
            }
        }
    }

    /// The error for a failed request.
    pub(crate) fn error(&self, what: &str, failure: Failure, e: &RequestError, attempts: u32) -> HostError {
        let detail = error_text(e);
        match failure {
            Failure::Auth => HostError::Registry {
                code: "registry_auth",
                message: format!(
                    "{what}: access denied by {} ({detail}); check the credentials (--username with --password-stdin, or `docker login {}`)",
                    self.reference.resolve_registry(),
                    self.reference.resolve_registry()
                ),
            },
            Failure::NotFound => HostError::Registry { code: "registry_not_found", message: format!("{what}: not found ({detail})") },
            Failure::Transient => HostError::Registry {
                code: "registry_unreachable",
                message: format!("{what}: {detail} (gave up after {})", crate::render::count(attempts, "attempt", "attempts")),
            },
            Failure::Other => HostError::Registry { code: "registry_error", message: format!("{what}: {detail}") },
        }
    }

    /// Runs a future on the connection's runtime.
    pub(crate) fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

/// An error's text with its causes (reqwest hides the useful part in `source()`).
pub(crate) fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        cur = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_failures_are_never_transient() {
        assert_eq!(status_failure(401), Failure::Auth);
        assert_eq!(status_failure(403), Failure::Auth);
        assert_eq!(status_failure(503), Failure::Transient);
        assert_eq!(status_failure(400), Failure::Other);
        assert_eq!(classify(&RequestError::Auth("no".into())), Failure::Auth);
        let e = RequestError::Status { code: 404, url: "u".into(), message: String::new() };
        assert_eq!(classify(&e), Failure::NotFound);
        assert_eq!(classify(&RequestError::Protocol("odd".into())), Failure::Other);
    }
}
