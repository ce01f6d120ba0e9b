//! The requests' common ground, and pull's GETs: our own, so that a hostile registry cannot
//! make snapbundle hold more than it must. Every answer's body is bounded while it is read: the
//! manifest at [`MAX_MANIFEST_BYTES`], a token endpoint's answer at [`MAX_TOKEN_BYTES`], error
//! bodies at [`MAX_ERROR_BYTES`]; success bodies push does not need are never read.
//!
//! Requests follow the distribution spec: the manifest is
//! `GET /v2/<repository>/manifests/<tag|digest>` with `Accept` naming the OCI image manifest;
//! blobs are `GET /v2/<repository>/blobs/<digest>` (with `Range: bytes=<n>-` to resume); push's
//! requests are in `registry::upload`. All are authenticated by `send`: the bearer
//! token of the login (renewed before it expires, and once more on a 401), else the basic
//! credentials, else none. A manifest `Content-Length` over the limit is refused before the
//! body is read; otherwise the body is read chunk by chunk and the connection dropped as soon
//! as it passes the limit. The config blob is bounded by its descriptor's size while it
//! streams ([`MAX_CONFIG_BYTES`](crate::registry::format::MAX_CONFIG_BYTES) at most), blobs go
//! to disk.

use std::time::{Duration, Instant};

use crate::registry::auth::Credentials;
use crate::registry::client::{Bearer, Registry, RequestError};
use crate::registry::format::{self, MAX_MANIFEST_BYTES};

/// The most of a token endpoint's answer read.
pub const MAX_TOKEN_BYTES: usize = 64 << 10;

/// The most of an error response's body kept for the message.
pub const MAX_ERROR_BYTES: usize = 4 << 10;

/// A token's lifetime when the token endpoint does not say (the distribution token spec's
/// default).
const DEFAULT_TOKEN_SECONDS: u64 = 60;

/// `<scheme>://<registry>/v2/<repository>/<rest>`.
pub(crate) fn url(reg: &Registry, rest: &str) -> String {
    let r = &reg.reference;
    format!("{}/v2/{}/{rest}", origin(reg), r.repository())
}

/// `<scheme>://<registry>`.
pub(crate) fn origin(reg: &Registry) -> String {
    let scheme = if reg.plain_http { "http" } else { "https" };
    format!("{scheme}://{}", reg.reference.resolve_registry())
}

/// Sends `method url` with what `build` adds (headers, a body), authenticated: the bearer
/// token of the login (traded anew first if it is about to expire), else the basic
/// credentials, else none. A 401 while holding a token renews it once and sends again (so
/// `build` may be called twice). Returns the response whatever its status; see [`failed`].
pub(crate) async fn send(
    reg: &Registry,
    method: reqwest::Method,
    url: &str,
    build: &(dyn Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder + Sync),
) -> Result<reqwest::Response, RequestError> {
    let mut renewed = false;
    loop {
        let held = reg.bearer.lock().ok().and_then(|b| b.clone());
        let bearer = match held {
            Some(b) if Instant::now() >= b.renew_at && !renewed => {
                renewed = true;
                renew(reg).await?
            }
            other => other,
        };
        let had_token = bearer.is_some();
        let mut req = build(reg.http.request(method.clone(), url));
        req = match (bearer, &reg.auth) {
            (Some(b), _) => req.bearer_auth(b.token),
            (None, Credentials::Basic { username, password }) => req.basic_auth(username, Some(password)),
            (None, Credentials::Anonymous) => req,
        };
        let res = req.send().await?;
        if res.status() == reqwest::StatusCode::UNAUTHORIZED && had_token && !renewed {
            renewed = true;
            renew(reg).await?;
            continue;
        }
        return Ok(res);
    }
}

/// Trades the credentials for a new token and keeps it.
async fn renew(reg: &Registry) -> Result<Option<Bearer>, RequestError> {
    let token = token(reg).await?;
    if let Ok(mut bearer) = reg.bearer.lock() {
        bearer.clone_from(&token);
    }
    Ok(token)
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
    let mut message = String::from_utf8_lossy(&body).trim().to_string();
    if cut {
        message.push_str(" […]");
    }
    RequestError::Status { code: status.as_u16(), url, message }
}

/// A pull-side `GET` of `/v2/<repository>/<rest>` (optionally from byte `from` on, with a
/// range request), authenticated by [`send`]. A response that is not a success is an error
/// whose message keeps at most [`MAX_ERROR_BYTES`] of the body.
pub(crate) async fn get(
    reg: &Registry,
    rest: &str,
    accept: Option<&str>,
    from: u64,
) -> Result<reqwest::Response, RequestError> {
    let url = url(reg, rest);
    let res = send(reg, reqwest::Method::GET, &url, &|mut req| {
        if let Some(accept) = accept {
            req = req.header(reqwest::header::ACCEPT, accept);
        }
        if from > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={from}-"));
        }
        req
    })
    .await?;
    if res.status().is_success() {
        Ok(res)
    } else {
        Err(failed(res).await)
    }
}

/// Fetches the manifest's bytes, at most [`MAX_MANIFEST_BYTES`]; checks them against the
/// `Docker-Content-Digest` header when the registry sends one.
pub(crate) async fn fetch(reg: &Registry) -> Result<Vec<u8>, RequestError> {
    let r = &reg.reference;
    let target = r.digest().or(r.tag()).unwrap_or("latest");
    let mut res = get(reg, &format!("manifests/{target}"), Some(format::OCI_MANIFEST_MEDIA_TYPE), 0).await?;
    let too_large = || {
        RequestError::Protocol(format!(
            "the manifest is larger than the limit of {MAX_MANIFEST_BYTES} bytes (4 MiB); stopped reading"
        ))
    };
    if res.content_length().is_some_and(|n| n > MAX_MANIFEST_BYTES as u64) {
        return Err(too_large());
    }
    let header = res.headers().get("Docker-Content-Digest").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = read_bounded(&mut res, MAX_MANIFEST_BYTES).await?.ok_or_else(too_large)?;
    if let Some(want) = header.filter(|h| h.starts_with("sha256:")) {
        let got = format::sha256_digest(&body);
        if want != got {
            return Err(RequestError::Protocol(format!(
                "the manifest's bytes have digest {got}, the registry's Docker-Content-Digest says {want}"
            )));
        }
    }
    Ok(body)
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

/// A token for the connection's scopes ([`Registry::login`] sets them): `GET /v2/`; if its
/// challenge is `WWW-Authenticate: Bearer realm=…,service=…`,
/// `GET <realm>?scope=<scope>…&service=…` with the basic credentials if any, and the answer's
/// `token` (or `access_token`), read at most [`MAX_TOKEN_BYTES`], kept until shortly before its
/// `expires_in` (default 60 s) runs out. `None`: the registry asks for no token (basic
/// credentials, if any, are sent with each request). A refusal of the token endpoint is an
/// authentication failure.
pub(crate) async fn token(reg: &Registry) -> Result<Option<Bearer>, RequestError> {
    let res = reg.http.get(format!("{}/v2/", origin(reg))).send().await?;
    let challenge = res.headers().get(reqwest::header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok());
    let Some(params) = challenge.and_then(bearer_params) else { return Ok(None) };
    drop(res);
    let param = |k: &str| params.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str());
    let realm = param("realm")
        .ok_or_else(|| RequestError::Protocol("the registry's bearer challenge names no realm".into()))?;
    let mut url = reqwest::Url::parse(realm)
        .map_err(|e| RequestError::Protocol(format!("the registry's token realm {realm:?}: {e}")))?;
    let scopes = reg.scopes.lock().map(|s| s.clone()).unwrap_or_default();
    let scopes = if scopes.is_empty() {
        vec![format!("repository:{}:pull", reg.reference.repository())]
    } else {
        scopes
    };
    for scope in &scopes {
        url.query_pairs_mut().append_pair("scope", scope);
    }
    if let Some(service) = param("service") {
        url.query_pairs_mut().append_pair("service", service);
    }
    let mut req = reg.http.get(url);
    if let Credentials::Basic { username, password } = &reg.auth {
        req = req.basic_auth(username, Some(password));
    }
    let asked = Instant::now();
    let mut res = req.send().await?;
    let status = res.status();
    let body = read_bounded(&mut res, MAX_TOKEN_BYTES).await?;
    if !status.is_success() {
        let text = body.map(|b| String::from_utf8_lossy(&b).trim().to_string()).unwrap_or_default();
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
    let lifetime = v.get("expires_in").and_then(serde_json::Value::as_u64).unwrap_or(DEFAULT_TOKEN_SECONDS);
    match token {
        Some(t) if !t.is_empty() => {
            Ok(Some(Bearer { token: t.to_string(), renew_at: asked + renew_after(lifetime) }))
        }
        _ => Err(RequestError::Protocol("the token endpoint's answer holds no token".into())),
    }
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
    fn tokens_are_renewed_before_they_expire() {
        assert_eq!(renew_after(60), Duration::from_secs(50));
        assert_eq!(renew_after(300), Duration::from_secs(290));
        assert_eq!(renew_after(4), Duration::from_secs(2));
        assert_eq!(renew_after(0), Duration::from_millis(500));
        assert_eq!(renew_after(u64::MAX), Duration::from_secs(86_390));
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
