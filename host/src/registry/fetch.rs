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
//! to disk. Not bounded: the token endpoint's answer, which oci-client reads whole while trading
//! credentials for a bearer token.

use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;

use crate::registry::client::Registry;
use crate::registry::format::{self, MAX_MANIFEST_BYTES};

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
            let token = reg.client.auth(&reg.reference, &reg.auth, RegistryOperation::Pull).await?;
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
