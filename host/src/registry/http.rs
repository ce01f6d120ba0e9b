//! The bottom of every registry request: the [`Transport`] (the HTTP client, the repository's
//! address and the credentials, with the bearer token they were traded for) that sends a request
//! authenticated, the bounded reads of an answer's body, and why a request failed
//! ([`RequestError`], [`classify`]). The requests themselves ([`fetch`](super::fetch) for
//! pull's GETs, `upload` for push's) and the retry policy ([`client`](super::client)) build on
//! it; this module imports none of them.
//!
//! Nothing a registry sends is read past a bound: a token endpoint's answer at
//! [`MAX_TOKEN_BYTES`], an error body at [`MAX_ERROR_BYTES`] (the rest is not read: the
//! connection is dropped); the callers bound the bodies they read with `read_bounded`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::RegistryErrorCode;
use crate::registry::auth::Credentials;
use crate::registry::reference::Target;

/// The most of a token endpoint's answer read.
pub const MAX_TOKEN_BYTES: usize = 64 << 10;

/// The most of an error response's body kept for the message.
pub const MAX_ERROR_BYTES: usize = 4 << 10;

/// A token's lifetime when the token endpoint does not say (the distribution token spec's
/// default).
const DEFAULT_TOKEN_SECONDS: u64 = 60;

/// Where requests go and how they are authenticated: one repository of a registry.
pub(crate) struct Transport {
    /// The HTTP client every request goes through.
    client: reqwest::Client,
    /// Plain HTTP instead of HTTPS.
    plain_http: bool,
    /// The reference as given, normalised (`host/repo:tag` or `host/repo@digest`).
    pub(crate) reference: Target,
    auth: Credentials,
    /// The bearer token the login obtained, if the registry asked for one.
    bearer: Mutex<Option<Bearer>>,
    /// The token scopes asked for (`repository:<repo>:pull`, `…:pull,push`, and
    /// `repository:<source>:pull` for each repository push may mount from).
    scopes: Mutex<Vec<String>>,
    /// How long a request may take, whole.
    pub(crate) deadlines: Deadlines,
    /// The token endpoint (`host[:port]`) the basic credentials were sent to, when it is not the
    /// registry's host (a realm may be elsewhere, as Docker Hub's is: the user is told).
    credentials_sent_to: Mutex<Option<String>>,
}

/// Total deadlines of requests: a registry that answers one byte at a time cannot keep a
/// request (and the pull or push waiting for it) alive past them; the read timeout alone resets
/// with every byte.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    /// A request that moves little data, whole.
    small: Duration,
    /// Bytes per second a blob transfer is given time for (at least 1).
    min_rate: u64,
}

impl Deadlines {
    /// `small` for little requests; blob transfers at `min_rate` bytes/s (0: 64 KiB/s) on top.
    pub(crate) fn new(small: Duration, min_rate: u64) -> Deadlines {
        Deadlines { small, min_rate: if min_rate == 0 { 64 << 10 } else { min_rate } }
    }

    /// The deadline of a request that moves `bytes` of blob data.
    pub(crate) fn transfer(&self, bytes: u64) -> Duration {
        self.small.saturating_add(Duration::from_secs(bytes / self.min_rate))
    }
}

/// A bearer token and when to trade the credentials for a new one (before it expires).
#[derive(Debug, Clone)]
pub(crate) struct Bearer {
    token: String,
    renew_at: Instant,
}

/// A request that failed.
#[derive(Debug)]
pub(crate) enum RequestError {
    /// It could not be sent or its answer not read (connection, TLS, timeout).
    Http(reqwest::Error),
    /// The registry answered with a status that is not a success (at most
    /// [`MAX_ERROR_BYTES`] of the body kept in `message`).
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

impl Failure {
    /// The error code a request that failed this way gives up with.
    pub(crate) fn code(self) -> RegistryErrorCode {
        match self {
            Failure::Auth => RegistryErrorCode::Auth,
            Failure::NotFound => RegistryErrorCode::NotFound,
            Failure::Transient => RegistryErrorCode::Unreachable,
            Failure::Other => RegistryErrorCode::Error,
        }
    }
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

impl Transport {
    /// A transport for the repository of `reference` through `client`.
    pub(crate) fn new(
        client: reqwest::Client,
        plain_http: bool,
        reference: Target,
        auth: Credentials,
        deadlines: Deadlines,
    ) -> Self {
        Transport {
            client,
            plain_http,
            reference,
            auth,
            bearer: Mutex::new(None),
            scopes: Mutex::new(Vec::new()),
            deadlines,
            credentials_sent_to: Mutex::new(None),
        }
    }

    /// The token endpoint the credentials were sent to, if it is another host than the registry.
    pub(crate) fn credentials_sent_to(&self) -> Option<String> {
        self.credentials_sent_to.lock().ok().and_then(|s| s.clone())
    }

    /// `<scheme>://<registry>`.
    pub(crate) fn origin(&self) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        format!("{scheme}://{}", self.reference.resolve_registry())
    }

    /// `<scheme>://<registry>/v2/<repository>/<rest>`.
    pub(crate) fn url(&self, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.origin(), self.reference.repository())
    }

    /// The token scopes [`Transport::token`] asks for from now on.
    pub(crate) fn set_scopes(&self, scopes: Vec<String>) {
        if let Ok(mut s) = self.scopes.lock() {
            *s = scopes;
        }
    }

    /// Keeps `token` for the requests that follow (`None`: the registry asks for none).
    pub(crate) fn set_bearer(&self, token: Option<Bearer>) {
        if let Ok(mut bearer) = self.bearer.lock() {
            *bearer = token;
        }
    }

    /// Sends `method url` with what `build` adds (headers, a body), authenticated: the bearer
    /// token of the login (traded anew first if it is about to expire), else the basic
    /// credentials, else none. A 401 while holding a token renews it once and sends again (so
    /// `build` may be called twice). Returns the response whatever its status; see [`failed`].
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        build: &(dyn Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder + Sync),
    ) -> Result<reqwest::Response, RequestError> {
        let mut renewed = false;
        loop {
            let held = self.bearer.lock().ok().and_then(|b| b.clone());
            let bearer = match held {
                Some(b) if Instant::now() >= b.renew_at && !renewed => {
                    renewed = true;
                    self.renew().await?
                }
                other => other,
            };
            let had_token = bearer.is_some();
            // The small deadline unless `build` gives the request a transfer's.
            let mut req = build(self.client.request(method.clone(), url).timeout(self.deadlines.small));
            req = match (bearer, &self.auth) {
                (Some(b), _) => req.bearer_auth(b.token),
                (None, Credentials::Basic { username, password }) => req.basic_auth(username, Some(password)),
                (None, Credentials::Anonymous) => req,
            };
            let res = req.send().await?;
            if res.status() == reqwest::StatusCode::UNAUTHORIZED && had_token && !renewed {
                renewed = true;
                self.renew().await?;
                continue;
            }
            return Ok(res);
        }
    }

    /// Trades the credentials for a new token and keeps it.
    async fn renew(&self) -> Result<Option<Bearer>, RequestError> {
        let token = self.token().await?;
        if let Ok(mut bearer) = self.bearer.lock() {
            bearer.clone_from(&token);
        }
        Ok(token)
    }

    /// A token for the transport's scopes ([`Transport::set_scopes`]): `GET /v2/`; if its
    /// challenge is `WWW-Authenticate: Bearer realm=…,service=…`,
    /// `GET <realm>?scope=<scope>…&service=…` with the basic credentials if any, and the answer's
    /// `token` (or `access_token`), read at most [`MAX_TOKEN_BYTES`], kept until shortly before
    /// its `expires_in` (default 60 s) runs out. `None`: the registry asks for no token (basic
    /// credentials, if any, are sent with each request). A refusal of the token endpoint is an
    /// authentication failure.
    pub(crate) async fn token(&self) -> Result<Option<Bearer>, RequestError> {
        let res =
            self.client.get(format!("{}/v2/", self.origin())).timeout(self.deadlines.small).send().await?;
        let challenge = res.headers().get(reqwest::header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok());
        let Some(params) = challenge.and_then(bearer_params) else { return Ok(None) };
        drop(res);
        let param = |k: &str| params.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str());
        let realm = param("realm")
            .ok_or_else(|| RequestError::Protocol("the registry's bearer challenge names no realm".into()))?;
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| RequestError::Protocol(format!("the registry's token realm {realm:?}: {e}")))?;
        check_realm(&url, self.plain_http)?;
        let scopes = self.scopes.lock().map(|s| s.clone()).unwrap_or_default();
        let scopes = if scopes.is_empty() {
            vec![format!("repository:{}:pull", self.reference.repository())]
        } else {
            scopes
        };
        for scope in &scopes {
            url.query_pairs_mut().append_pair("scope", scope);
        }
        if let Some(service) = param("service") {
            url.query_pairs_mut().append_pair("service", service);
        }
        // The realm's `host[:port]` when it is another host than the registry's.
        let registry_host =
            reqwest::Url::parse(&self.origin()).ok().and_then(|u| u.host_str().map(str::to_string));
        let elsewhere =
            url.host_str().filter(|h| Some(*h) != registry_host.as_deref()).map(|h| match url.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            });
        let mut req = self.client.get(url).timeout(self.deadlines.small);
        if let Credentials::Basic { username, password } = &self.auth {
            req = req.basic_auth(username, Some(password));
            if let (Some(host), Ok(mut sent)) = (elsewhere, self.credentials_sent_to.lock()) {
                *sent = Some(host);
            }
        }
        let asked = Instant::now();
        let mut res = req.send().await?;
        let status = res.status();
        let body = read_bounded(&mut res, MAX_TOKEN_BYTES).await?;
        if !status.is_success() {
            let text = body.map(|b| printable(String::from_utf8_lossy(&b).trim())).unwrap_or_default();
            return Err(RequestError::Auth(format!("the token endpoint answered {status}: {text}")));
        }
        let body = body.ok_or_else(|| {
            RequestError::Protocol(format!(
                "the token endpoint's answer is larger than the limit of {MAX_TOKEN_BYTES} bytes; stopped reading"
            ))
        })?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| RequestError::Protocol(format!("the token endpoint's answer is not JSON: {e}")))?;
        let token = v.get("token").or_else(|| v.get("access_token")).and_then(|t| t.as_str());
        let lifetime =
            v.get("expires_in").and_then(serde_json::Value::as_u64).unwrap_or(DEFAULT_TOKEN_SECONDS);
        match token {
            Some(t) if !t.is_empty() => {
                Ok(Some(Bearer { token: t.to_string(), renew_at: asked + renew_after(lifetime) }))
            }
            _ => Err(RequestError::Protocol("the token endpoint's answer holds no token".into())),
        }
    }
}

/// Refuses a token realm that would weaken the connection the user chose: a registry reached
/// over TLS may send its token requests (which carry the basic credentials) to another host, as
/// Docker Hub does, but only over HTTPS; a realm on plain HTTP, or any other scheme, would put the
/// password (and the token that comes back) on the wire in clear. A plain-HTTP registry
/// (`--plain-http`, asked for explicitly) may name either.
fn check_realm(realm: &reqwest::Url, plain_http: bool) -> Result<(), RequestError> {
    match realm.scheme() {
        "https" => Ok(()),
        "http" if plain_http => Ok(()),
        "http" => Err(RequestError::Auth(format!(
            "the registry names the token endpoint {} on plain HTTP: refusing to send credentials or \
             ask for a token over an unencrypted connection (the registry itself is reached over TLS)",
            realm.as_str()
        ))),
        other => Err(RequestError::Protocol(format!(
            "the registry names a token endpoint with the scheme {}: only https (or http with --plain-http)",
            other
        ))),
    }
}

/// The error for a response that is not a success: its status, and the first
/// [`MAX_ERROR_BYTES`] of its body for the message (the rest is not read: the connection is
/// dropped).
pub(crate) async fn failed(mut res: reqwest::Response) -> RequestError {
    let status = res.status();
    let url = res.url().to_string();
    let mut body = Vec::new();
    let mut cut = false;
    while let Ok(Some(chunk)) = res.chunk().await {
        let room = MAX_ERROR_BYTES.saturating_sub(body.len());
        body.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
        if chunk.len() > room {
            cut = true;
            break;
        }
    }
    let mut message = printable(String::from_utf8_lossy(&body).trim());
    if cut {
        message.push_str(" […]");
    }
    RequestError::Status { code: status.as_u16(), url, message }
}

/// Text a registry sent, safe to show on a terminal: control characters (ESC, BEL, CR, …) and
/// the bidirectional overrides that could disguise what follows are written as escapes
/// (`\u{1b}`), as member paths are; everything else is kept as sent.
pub(crate) fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads the body up to `cap` bytes; `None` (and the response dropped, closing the connection)
/// as soon as it holds more.
pub(crate) async fn read_bounded(
    res: &mut reqwest::Response,
    cap: usize,
) -> Result<Option<Vec<u8>>, RequestError> {
    let mut out = Vec::new();
    while let Some(chunk) = res.chunk().await? {
        if out.len().checked_add(chunk.len()).is_none_or(|n| n > cap) {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

/// How long after asking a token of `seconds` lifetime is traded anew: 10 s before it runs
/// out, or halfway for short-lived ones; capped at a day.
fn renew_after(seconds: u64) -> Duration {
    let seconds = seconds.min(86_400);
    let margin = 10u64.min(seconds / 2);
    Duration::from_millis(seconds.saturating_sub(margin).saturating_mul(1000).max(500))
}

/// The parameters of a `Bearer` challenge (`Bearer k="v",k2="v2"`); `None` for another scheme.
fn bearer_params(header: &str) -> Option<Vec<(String, String)>> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut out = Vec::new();
    let mut rest = rest.trim_start();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, tail) = match after.strip_prefix('"') {
            Some(q) => {
                let end = q.find('"')?;
                (q.get(..end)?, q.get(end + 1..)?)
            }
            None => after.split_once(',').map_or((after, ""), |(v, t)| (v, t)),
        };
        out.push((key.trim().to_string(), value.trim().to_string()));
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    Some(out)
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

    #[test]
    fn each_failure_gives_up_with_its_code() {
        assert_eq!(Failure::Auth.code().as_str(), "registry_auth");
        assert_eq!(Failure::NotFound.code().as_str(), "registry_not_found");
        assert_eq!(Failure::Transient.code().as_str(), "registry_unreachable");
        assert_eq!(Failure::Other.code().as_str(), "registry_error");
    }

    #[test]
    fn tokens_are_renewed_before_they_expire() {
        assert_eq!(renew_after(60), Duration::from_secs(50));
        assert_eq!(renew_after(300), Duration::from_secs(290));
        assert_eq!(renew_after(4), Duration::from_secs(2));
        assert_eq!(renew_after(0), Duration::from_millis(500));
        assert_eq!(renew_after(u64::MAX), Duration::from_secs(86_390));
    }

    #[test]
    fn registry_text_reaches_the_terminal_without_control_characters() {
        let shown = printable("denied\u{1b}[2J\u{7}\r\nfake prompt \u{202e}txt.exe \"ok\" é");
        assert!(!shown.chars().any(|c| c.is_control() || c == '\u{202e}'), "{shown:?}");
        assert_eq!(shown, "denied\\u{1b}[2J\\u{7}\\r\\nfake prompt \\u{202e}txt.exe \"ok\" é");
    }

    #[test]
    fn a_tls_registry_may_name_a_token_realm_only_on_https() {
        let url = |s: &str| reqwest::Url::parse(s).expect("url");
        assert!(check_realm(&url("https://auth.example/token"), false).is_ok());
        assert!(matches!(check_realm(&url("http://auth.example/token"), false), Err(RequestError::Auth(_))));
        assert!(matches!(
            check_realm(&url("ftp://auth.example/token"), false),
            Err(RequestError::Protocol(_))
        ));
        assert!(matches!(
            check_realm(&url("ftp://auth.example/token"), true),
            Err(RequestError::Protocol(_))
        ));
        // --plain-http was asked for: the realm may be either.
        assert!(check_realm(&url("http://auth.example/token"), true).is_ok());
        assert!(check_realm(&url("https://auth.example/token"), true).is_ok());
    }

    #[test]
    fn bearer_challenges_are_parsed_and_other_schemes_are_not() {
        let p = bearer_params(
            r#"Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push""#,
        )
        .expect("bearer");
        let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("realm"), Some("https://auth.example/token"));
        assert_eq!(get("service"), Some("reg"));
        assert_eq!(get("scope"), Some("repository:a/b:pull,push"));
        assert_eq!(bearer_params(r#"Basic realm="x""#), None);
        assert_eq!(bearer_params(r#"Bearer realm="unterminated"#), None);
    }
}
