//! Pull's GETs, sent through the registry's HTTP transport (`registry::http`: authenticated,
//! bearer token renewed), so that a hostile registry cannot make snapbundle hold more than it
//! must: the manifest is read at most [`MAX_MANIFEST_BYTES`], error bodies at 4 KiB.
//!
//! Requests follow the distribution spec: the manifest is
//! `GET /v2/<repository>/manifests/<tag|digest>` with `Accept` naming the OCI image manifest;
//! blobs are `GET /v2/<repository>/blobs/<digest>` (with `Range: bytes=<n>-` to resume); push's
//! requests are in `registry::upload`. A manifest `Content-Length` over the limit is refused
//! before the body is read; otherwise the body is read chunk by chunk and the connection dropped
//! as soon as it passes the limit. The config blob is bounded by its descriptor's size while it
//! streams ([`MAX_CONFIG_BYTES`](snapbundle_core::registry_artifact::MAX_CONFIG_BYTES) at most),
//! blobs go to disk.

use snapbundle_core::registry_artifact::{self as artifact, MAX_MANIFEST_BYTES};

use crate::registry::http::{failed, read_bounded, RequestError, Transport};

/// A pull-side `GET` of `/v2/<repository>/<rest>` (optionally from byte `from` on, with a
/// range request), authenticated by [`Transport::send`], given the time to move `bytes` of blob
/// data (0: a small request's deadline). A response that is not a success is an
/// error whose message keeps at most [`MAX_ERROR_BYTES`](super::http::MAX_ERROR_BYTES) of the
/// body.
pub(crate) async fn get(
    http: &Transport,
    rest: &str,
    accept: Option<&str>,
    from: u64,
    bytes: u64,
) -> Result<reqwest::Response, RequestError> {
    let url = http.url(rest);
    let deadline = http.deadlines.transfer(bytes);
    let res = http
        .send(reqwest::Method::GET, &url, &|mut req| {
            req = req.timeout(deadline);
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
pub(crate) async fn fetch(http: &Transport) -> Result<Vec<u8>, RequestError> {
    let r = &http.reference;
    let target = r.digest().or(r.tag()).unwrap_or("latest");
    let mut res =
        get(http, &format!("manifests/{target}"), Some(artifact::OCI_MANIFEST_MEDIA_TYPE), 0, 0).await?;
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
        let got = artifact::sha256_digest(&body);
        if want != got {
            return Err(RequestError::Protocol(format!(
                "the manifest's bytes have digest {got}, the registry's Docker-Content-Digest says {want}"
            )));
        }
    }
    Ok(body)
}
