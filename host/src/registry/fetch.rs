//! Pull's GETs (manifest, config blob, blobs), our own so that a hostile registry cannot make
//! pull hold more than it must: the manifest is bounded at [`MAX_MANIFEST_BYTES`] while it is
//! read (oci-client's `pull_manifest_raw` reads the whole body first), error bodies at
//! [`MAX_ERROR_BYTES`] (oci-client reads a failed blob request's body whole).
//!
//! The manifest request is the one the distribution spec describes and oci-client sends:
//! `GET /v2/<repository>/manifests/<tag|digest>` with `Accept` naming the OCI image manifest;
//! blobs are `GET /v2/<repository>/blobs/<digest>` (with `Range: bytes=<n>-` to resume). All are
//! authenticated as oci-client authenticates (the bearer token the login obtained, else the
//! basic credentials, else none). A manifest `Content-Length` over the limit is refused before
//! the body is read; otherwise the body is read chunk by chunk and the connection dropped as
//! soon as it passes the limit. The config blob is bounded by its descriptor's size while it
//! streams ([`MAX_CONFIG_BYTES`](crate::registry::format::MAX_CONFIG_BYTES) at most), blobs go
//! to disk. The bearer token pull needs is fetched here too ([`token`]), its answer bounded at
//! [`MAX_TOKEN_BYTES`] (oci-client reads it whole; push still goes through oci-client's).

use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;

use crate::registry::client::Registry;
use crate::registry::format::{self, MAX_MANIFEST_BYTES};

/// The most of a token endpoint's answer read.
pub const MAX_TOKEN_BYTES: usize = 64 << 10;

/// The most of an error response's body kept for the message.
pub const MAX_ERROR_BYTES: usize = 4 << 10;

/// `<scheme>://<registry>/v2/<repository>/<rest>`, as oci-client builds its URLs.
fn url(reg: &Registry, rest: &str) -> String {
    let r = &reg.reference;
    let scheme = if reg.plain_http { "http" } else { "https" };
    format!("{scheme}://{}/v2/{}/{rest}", r.resolve_registry(), r.repository())
}

/// A pull-side `GET` of `/v2/<repository>/<rest>` (optionally from byte `from` on, with a
/// range request), authenticated as oci-client authenticates: the bearer token of the login,
/// else the basic credentials, else none. A 401 with a token renews it once (through
/// oci-client, as its own requests do when theirs expires). A response that is not a success is
/// an error whose message keeps at most [`MAX_ERROR_BYTES`] of the body.
pub(crate) async fn get(
    reg: &Registry,
    rest: &str,
    accept: Option<&str>,
    from: u64,
) -> Result<reqwest::Response, OciDistributionError> {
    let url = url(reg, rest);
    let mut renewed = false;
    loop {
        let mut req = reg.http.get(&url);
        if let Some(accept) = accept {
            req = req.header(reqwest::header::ACCEPT, accept);
        }
        if from > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={from}-"));
        }
        let bearer = reg.bearer.lock().ok().and_then(|b| b.clone());
        let had_token = bearer.is_some();
        req = match (bearer, &reg.auth) {
            (Some(token), _) => req.bearer_auth(token),
            (None, RegistryAuth::Basic(user, password)) => req.basic_auth(user, Some(password)),
            (None, RegistryAuth::Bearer(token)) => req.bearer_auth(token),
            (None, _) => req,
        };
        let mut res = req.send().await?;
        let status = res.status();
        if status.is_success() {
            return Ok(res);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED && had_token && !renewed {
            renewed = true;
            let token = token(reg).await?;
            if let Ok(mut bearer) = reg.bearer.lock() {
                *bearer = token;
            }
            continue;
        }
        let body = read_bounded(&mut res, MAX_ERROR_BYTES).await.ok().flatten().unwrap_or_default();
        let message = String::from_utf8_lossy(&body).trim().to_string();
        return Err(OciDistributionError::ServerError { code: status.as_u16(), url, message });
    }
}

/// Fetches the manifest's bytes, at most [`MAX_MANIFEST_BYTES`]; checks them against the
/// `Docker-Content-Digest` header when the registry sends one.
pub(crate) async fn fetch(reg: &Registry) -> Result<Vec<u8>, OciDistributionError> {
    let r = &reg.reference;
    let target = r.digest().or(r.tag()).unwrap_or("latest");
    let mut res = get(reg, &format!("manifests/{target}"), Some(format::OCI_MANIFEST_MEDIA_TYPE), 0).await?;
    let too_large = || {
        OciDistributionError::GenericError(Some(format!(
            "the manifest is larger than the limit of {MAX_MANIFEST_BYTES} bytes (4 MiB); stopped reading"
        )))
    };
    if res.content_length().is_some_and(|n| n > MAX_MANIFEST_BYTES as u64) {
        return Err(too_large());
    }
    let header = res.headers().get("Docker-Content-Digest").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = read_bounded(&mut res, MAX_MANIFEST_BYTES).await?.ok_or_else(too_large)?;
    if let Some(want) = header.filter(|h| h.starts_with("sha256:")) {
        let got = format::sha256_digest(&body);
        if want != got {
            return Err(OciDistributionError::GenericError(Some(format!(
                "the manifest's bytes have digest {got}, the registry's Docker-Content-Digest says {want}"
            ))));
        }
    }
    Ok(body)
}

/// Reads the body up to `cap` bytes; `None` (and the response dropped, closing the connection)
/// as soon as it holds more.
pub(crate) async fn read_bounded(
    res: &mut reqwest::Response,
    cap: usize,
) -> Result<Option<Vec<u8>>, OciDistributionError> {
    let mut out = Vec::new();
    while let Some(chunk) = res.chunk().await? {
        if out.len().checked_add(chunk.len()).is_none_or(|n| n > cap) {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

/// A pull token, as oci-client would get one: `GET /v2/`; if its challenge is
/// `WWW-Authenticate: Bearer realm=…,service=…`, `GET <realm>?scope=repository:<repo>:pull&service=…`
/// with the basic credentials if any, and the answer's `token` (or `access_token`), read at most
/// [`MAX_TOKEN_BYTES`]. `None`: the registry asks for no token (basic credentials, if any, are
/// sent with each request). A refusal of the token endpoint is an authentication failure.
pub async fn token(reg: &Registry) -> Result<Option<String>, OciDistributionError> {
    let r = &reg.reference;
    let scheme = if reg.plain_http { "http" } else { "https" };
    let res = reg.http.get(format!("{scheme}://{}/v2/", r.resolve_registry())).send().await?;
    let challenge = res.headers().get(reqwest::header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok());
    let Some(params) = challenge.and_then(bearer_params) else { return Ok(None) };
    drop(res);
    let param = |k: &str| params.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str());
    let realm = param("realm").ok_or_else(|| {
        OciDistributionError::GenericError(Some("the registry's bearer challenge names no realm".into()))
    })?;
    let mut url = reqwest::Url::parse(realm).map_err(|e| {
        OciDistributionError::GenericError(Some(format!("the registry's token realm {realm:?}: {e}")))
    })?;
    url.query_pairs_mut().append_pair("scope", &format!("repository:{}:pull", r.repository()));
    if let Some(service) = param("service") {
        url.query_pairs_mut().append_pair("service", service);
    }
    let mut req = reg.http.get(url);
    if let RegistryAuth::Basic(user, password) = &reg.auth {
        req = req.basic_auth(user, Some(password));
    }
    let mut res = req.send().await?;
    let status = res.status();
    let body = read_bounded(&mut res, MAX_TOKEN_BYTES).await?;
    if !status.is_success() {
        let text = body.map(|b| String::from_utf8_lossy(&b).trim().to_string()).unwrap_or_default();
        return Err(OciDistributionError::AuthenticationFailure(format!(
            "the token endpoint answered {status}: {text}"
        )));
    }
    let body = body.ok_or_else(|| {
        OciDistributionError::GenericError(Some(format!(
            "the token endpoint's answer is larger than the limit of {MAX_TOKEN_BYTES} bytes; stopped reading"
        )))
    })?;
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| OciDistributionError::RegistryTokenDecodeError(e.to_string()))?;
    let token = v.get("token").or_else(|| v.get("access_token")).and_then(|t| t.as_str());
    match token {
        Some(t) if !t.is_empty() => Ok(Some(t.to_string())),
        _ => Err(OciDistributionError::RegistryTokenDecodeError("no token in the answer".into())),
    }
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
