//! The connection to one repository of a registry: the HTTP transport (`registry::http`:
//! reqwest, TLS by default, the credentials and the bearer token they were traded for) on a
//! small tokio runtime, and the retry policy (backoff on transient failures, never on 401/403)
//! that every request runs under (`Registry::retry`).

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{HostError, RegistryErrorCode};
use crate::registry::auth::Credentials;
use crate::registry::http::{classify, error_text, Deadlines, Failure, RequestError, Transport};
use crate::registry::reference::Target;
use crate::registry::upload;

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
    /// The whole of one request, from connecting to the last byte of its answer, for requests
    /// that move little data (manifests, tokens, configs, HEADs); a blob transfer gets this plus
    /// its size at [`Connection::min_rate`]. `None`: [`DEFAULT_DEADLINE`].
    pub deadline: Option<Duration>,
    /// The slowest transfer rate, in bytes per second, a blob transfer is given time for
    /// (0: [`DEFAULT_MIN_RATE`]).
    pub min_rate: u64,
}

/// Default deadline of one request ([`Connection::deadline`]).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);
/// Default slowest blob transfer rate given time for: 64 KiB/s ([`Connection::min_rate`]).
pub const DEFAULT_MIN_RATE: u64 = 64 << 10;

/// Default blobs in flight.
pub const DEFAULT_JOBS: usize = 4;
/// Default attempts per request.
pub const DEFAULT_ATTEMPTS: u32 = 4;
/// First backoff delay; doubled on each retry.
const BACKOFF: Duration = Duration::from_millis(250);

/// A repository of a registry, ready for requests.
pub struct Registry {
    rt: tokio::runtime::Runtime,
    /// Where every request goes, authenticated ([`crate::registry::fetch`] for pull's GETs,
    /// `registry::upload` for push's requests).
    pub(crate) http: Transport,
    pub(crate) jobs: usize,
    attempts: u32,
    retries: AtomicU64,
}

/// What a connection is for (the token scope asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    /// Reading: manifests and blobs.
    Pull,
    /// Writing: uploads, mounts and the manifest.
    Push,
}

/// Why an attempt under [`Registry::retry`] stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    /// A request failed: retried if transient, by the rule of [`Registry::retry`].
    Net(RequestError),
    /// Something that is not the registry's doing (reading the blob to send): not retried.
    Local(HostError),
}

impl From<RequestError> for Stop {
    fn from(e: RequestError) -> Self {
        Stop::Net(e)
    }
}

impl Registry {
    /// Connects to the repository of `reference` (nothing is sent until the first request).
    pub fn connect(reference: Target, conn: &Connection) -> Result<Registry, HostError> {
        let setup = |e: &dyn std::fmt::Display| HostError::Registry {
            code: RegistryErrorCode::Error,
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
            http: Transport::new(
                http,
                conn.plain_http,
                reference,
                conn.credentials.clone(),
                Deadlines::new(conn.deadline.unwrap_or(DEFAULT_DEADLINE), conn.min_rate),
            ),
            jobs: if conn.jobs == 0 { DEFAULT_JOBS } else { conn.jobs },
            attempts: if conn.attempts == 0 { DEFAULT_ATTEMPTS } else { conn.attempts },
            retries: AtomicU64::new(0),
        })
    }

    /// The token endpoint (`host[:port]`) the credentials were sent to, when the registry's
    /// challenge named another host than its own.
    pub fn credentials_sent_to(&self) -> Option<String> {
        self.http.credentials_sent_to()
    }

    /// The reference as given, normalised (`host/repo:tag` or `host/repo@digest`).
    pub fn reference(&self) -> &Target {
        &self.http.reference
    }

    /// `registry/repository`, for messages.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.reference().resolve_registry(), self.reference().repository())
    }

    /// Requests retried so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Authenticates for `op` (basic credentials, or a bearer token from the registry's token
    /// endpoint when it asks for one; push also asks for pull access to each of `mount_from`),
    /// then proves the credentials with one cheap request for a blob no one has, so that wrong
    /// ones fail before any work, in few requests.
    pub(crate) async fn login(&self, op: Operation, mount_from: &[String]) -> Result<(), HostError> {
        let what = format!("authenticating to {}", self.repository());
        let repo = self.reference().repository();
        let mut scopes = vec![match op {
            Operation::Pull => format!("repository:{repo}:pull"),
            Operation::Push => format!("repository:{repo}:pull,push"),
        }];
        scopes
            .extend(mount_from.iter().filter(|m| m.as_str() != repo).map(|m| format!("repository:{m}:pull")));
        self.http.set_scopes(scopes);
        let token = self.retry(&what, || self.http.token()).await?;
        self.http.set_bearer(token);
        let probe = format!("sha256:{}", "0".repeat(64));
        self.retry(&what, || upload::exists(&self.http, &probe)).await.map(|_| ())
    }

    /// Runs `f` until it succeeds, fails for good, or the attempts are used up: a transient
    /// failure ([`Failure::Transient`]) is retried after 250 ms, 500 ms, 1 s, … until the
    /// connection's attempts are used up; anything else (401/403 and other client errors, or
    /// a [`Stop::Local`]) fails at once. `f` may carry state from one attempt to the next (an
    /// upload asks where its session stands). `what` names the request in the error.
    pub(crate) async fn retry<T, E>(
        &self,
        what: &str,
        mut f: impl AsyncFnMut() -> Result<T, E>,
    ) -> Result<T, HostError>
    where
        E: Into<Stop>,
    {
        let mut attempt = 1u32;
        let mut delay = BACKOFF;
        loop {
            let e = match f().await.map_err(Into::into) {
                Ok(v) => return Ok(v),
                Err(Stop::Local(e)) => return Err(e),
                Err(Stop::Net(e)) => e,
            };
            let failure = classify(&e);
            if failure != Failure::Transient || attempt >= self.attempts {
                return Err(self.error(what, failure, &e, attempt));
            }
            self.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
            attempt = attempt.saturating_add(1);
        }
    }

    /// The error for a failed request.
    pub(crate) fn error(&self, what: &str, failure: Failure, e: &RequestError, attempts: u32) -> HostError {
        let detail = error_text(e);
        let registry = self.reference().resolve_registry();
        let message = match failure {
            Failure::Auth => format!(
                "{what}: access denied by {registry} ({detail}); check the credentials (--username with --password-stdin, or `docker login {registry}`)"
            ),
            Failure::NotFound => format!("{what}: not found ({detail})"),
            Failure::Transient => {
                format!("{what}: {detail} (gave up after {})", crate::plural::count(attempts, "attempt", "attempts"))
            }
            Failure::Other => format!("{what}: {detail}"),
        };
        HostError::Registry { code: failure.code(), message }
    }

    /// Runs a future on the connection's runtime.
    pub(crate) fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(attempts: u32) -> Registry {
        let target = crate::registry::reference::parse("localhost:1/snaps/a:t", true).expect("reference");
        Registry::connect(target, &Connection { plain_http: true, attempts, ..Connection::default() })
            .expect("connect")
    }

    fn status(code: u16) -> RequestError {
        RequestError::Status { code, url: "u".into(), message: String::new() }
    }

    fn code(r: Result<(), HostError>) -> Option<RegistryErrorCode> {
        match r {
            Err(HostError::Registry { code, .. }) => Some(code),
            _ => None,
        }
    }

    #[test]
    fn transient_failures_are_retried_until_the_attempts_run_out() {
        let reg = registry(3);
        let mut calls = 0;
        let r = reg.block_on(reg.retry("t", async || -> Result<(), RequestError> {
            calls += 1;
            Err(status(503))
        }));
        assert_eq!((calls, reg.retries()), (3, 2));
        assert_eq!(code(r), Some(RegistryErrorCode::Unreachable));
        let mut calls = 0;
        let r = reg.block_on(reg.retry("t", async || {
            calls += 1;
            if calls < 2 {
                Err(status(502))
            } else {
                Ok(())
            }
        }));
        assert!(r.is_ok());
        assert_eq!(calls, 2);
    }

    #[test]
    fn refusals_and_local_failures_are_not_retried() {
        let reg = registry(4);
        let mut calls = 0;
        let r = reg.block_on(reg.retry("t", async || -> Result<(), RequestError> {
            calls += 1;
            Err(status(401))
        }));
        assert_eq!(code(r), Some(RegistryErrorCode::Auth));
        let r = reg.block_on(reg.retry("t", async || -> Result<(), Stop> {
            calls += 1;
            Err(Stop::Local(HostError::Usage("local".into())))
        }));
        assert!(matches!(r, Err(HostError::Usage(_))));
        assert_eq!((calls, reg.retries()), (2, 0));
    }
}
