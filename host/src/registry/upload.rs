//! Push's requests, as the distribution spec describes them, each sent through
//! [`Transport::send`] (authenticated, bearer token renewed) and none reading more of an answer
//! than [`MAX_ERROR_BYTES`](crate::registry::http::MAX_ERROR_BYTES) of an error body:
//!
//! - `HEAD /v2/<repo>/blobs/<digest>`: does the repository have the blob ([`exists`]);
//! - `POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<other>`: mount it from another
//!   repository of the registry ([`mount`]; a `202` instead of `201` starts an upload);
//! - `POST /v2/<repo>/blobs/uploads/`: start an upload session ([`start`]);
//! - `PATCH <location>` with `Content-Range: <first>-<last>`: one chunk ([`patch`]);
//! - `GET <location>`: how much of the upload the registry holds ([`status`]), to resume;
//! - `PUT <location>?digest=<digest>`: close it, optionally with the last bytes ([`close`]);
//! - `PUT /v2/<repo>/manifests/<tag>` ([`put_manifest`]).
//!
//! Upload locations come from the registry; one on another origin (scheme, host, port) is
//! refused, so credentials never go to a host the user did not name.

use reqwest::{Method, StatusCode};

use crate::registry::http::{failed, RequestError, Transport};

/// What a mount request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mount {
    /// The blob is now in the repository.
    Mounted,
    /// The registry started an upload session instead (at this location).
    Started(String),
    /// The registry refused (the source does not have it, or no access to it).
    Refused,
}

/// An upload session: where to send the next chunk, and how many bytes the registry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    /// The absolute URL of the session (changes with every answer).
    pub(crate) location: String,
    /// Bytes the registry has received.
    pub(crate) offset: u64,
}

fn protocol(msg: String) -> RequestError {
    RequestError::Protocol(msg)
}

/// The answer's `Location`, made absolute against the registry, and refused if it leaves the
/// registry's origin.
fn location(http: &Transport, res: &reqwest::Response) -> Result<String, RequestError> {
    let raw = res
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| protocol(format!("{} {}: the answer has no Location", res.status(), res.url())))?;
    let base = reqwest::Url::parse(&http.origin())
        .map_err(|e| protocol(format!("the registry address {}: {e}", http.origin())))?;
    let url = base.join(raw).map_err(|e| protocol(format!("the upload location {raw:?}: {e}")))?;
    if url.origin() != base.origin() {
        return Err(protocol(format!(
            "the registry sent an upload location on another host ({raw:?}); refused, so that credentials stay with {}",
            http.origin()
        )));
    }
    Ok(url.to_string())
}

/// The end of a `Range: 0-<last>` (or `bytes=0-<last>`) header: bytes held, `last + 1`.
fn held(res: &reqwest::Response) -> Option<u64> {
    let v = res.headers().get(reqwest::header::RANGE)?.to_str().ok()?;
    let v = v.trim().trim_start_matches("bytes=");
    let (first, last) = v.split_once('-')?;
    if first.trim() != "0" {
        return None;
    }
    last.trim().parse::<u64>().ok()?.checked_add(1)
}

/// `location` with `key=value` added to its query.
fn with_query(location: &str, key: &str, value: &str) -> Result<String, RequestError> {
    let mut url = reqwest::Url::parse(location)
        .map_err(|e| protocol(format!("the upload location {location:?}: {e}")))?;
    url.query_pairs_mut().append_pair(key, value);
    Ok(url.to_string())
}

/// Whether the repository has blob `digest`: `HEAD`, 200 yes, 404 no.
pub(crate) async fn exists(http: &Transport, digest: &str) -> Result<bool, RequestError> {
    let url = http.url(&format!("blobs/{digest}"));
    let res = http.send(Method::HEAD, &url, &|r| r).await?;
    match res.status() {
        s if s.is_success() => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        _ => Err(failed(res).await),
    }
}

/// Asks the registry to mount `digest` from repository `from` (same registry).
pub(crate) async fn mount(http: &Transport, digest: &str, from: &str) -> Result<Mount, RequestError> {
    let mut url = reqwest::Url::parse(&http.url("blobs/uploads/"))
        .map_err(|e| protocol(format!("the upload address: {e}")))?;
    url.query_pairs_mut().append_pair("mount", digest).append_pair("from", from);
    let res =
        http.send(Method::POST, url.as_str(), &|r| r.header(reqwest::header::CONTENT_LENGTH, "0")).await?;
    match res.status() {
        StatusCode::CREATED => Ok(Mount::Mounted),
        StatusCode::ACCEPTED => Ok(Mount::Started(location(http, &res)?)),
        s if s == StatusCode::UNAUTHORIZED || s == StatusCode::FORBIDDEN || s.is_server_error() => {
            Err(failed(res).await)
        }
        _ => Ok(Mount::Refused),
    }
}

/// Starts an upload session.
pub(crate) async fn start(http: &Transport) -> Result<Session, RequestError> {
    let url = http.url("blobs/uploads/");
    let res = http.send(Method::POST, &url, &|r| r.header(reqwest::header::CONTENT_LENGTH, "0")).await?;
    if res.status() != StatusCode::ACCEPTED {
        return Err(failed(res).await);
    }
    Ok(Session { location: location(http, &res)?, offset: 0 })
}

/// Where the session at `location` stands: `None` if the registry no longer knows it (or
/// does not say), so the upload has to start over.
pub(crate) async fn status(http: &Transport, location: &str) -> Result<Option<Session>, RequestError> {
    let res = http.send(Method::GET, location, &|r| r).await?;
    match res.status() {
        StatusCode::NO_CONTENT | StatusCode::OK => {
            // `0-0` is what distribution says for an empty session as well as for one byte:
            // read as empty (a wrong guess costs a refused chunk and a new session).
            let offset = match res.headers().get(reqwest::header::RANGE) {
                None => 0,
                Some(_) => match held(&res) {
                    Some(1) => 0,
                    Some(n) => n,
                    None => return Ok(None),
                },
            };
            let location = match res.headers().get(reqwest::header::LOCATION) {
                Some(_) => self::location(http, &res)?,
                None => location.to_string(),
            };
            Ok(Some(Session { location, offset }))
        }
        s if s == StatusCode::UNAUTHORIZED || s == StatusCode::FORBIDDEN || s.is_server_error() => {
            Err(failed(res).await)
        }
        _ => Ok(None),
    }
}

/// Sends `chunk` as the bytes from `session.offset` on; the registry must then hold exactly
/// up to its end. Returns the session after it.
pub(crate) async fn patch(
    http: &Transport,
    session: &Session,
    chunk: bytes::Bytes,
) -> Result<Session, RequestError> {
    let len = chunk.len() as u64;
    let end = session.offset.checked_add(len).ok_or_else(|| protocol("the blob is too large".into()))?;
    let range = format!("{}-{}", session.offset, end.saturating_sub(1));
    let res = http
        .send(Method::PATCH, &session.location, &|r| {
            r.timeout(http.deadlines.transfer(len))
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .header(reqwest::header::CONTENT_RANGE, range.as_str())
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(chunk.clone())
        })
        .await?;
    if res.status() != StatusCode::ACCEPTED {
        return Err(failed(res).await);
    }
    if let Some(n) = held(&res).filter(|n| *n != end) {
        return Err(protocol(format!(
            "after bytes {range} the registry says it holds {n} bytes of the upload"
        )));
    }
    Ok(Session { location: location(http, &res)?, offset: end })
}

/// Closes the session as blob `digest`, sending `last` (the bytes after `session.offset`, if
/// any; a whole small blob in one request after [`start`]) with it.
pub(crate) async fn close(
    http: &Transport,
    session: &Session,
    digest: &str,
    last: bytes::Bytes,
) -> Result<(), RequestError> {
    let url = with_query(&session.location, "digest", digest)?;
    let len = last.len() as u64;
    let res = http
        .send(Method::PUT, &url, &|r| {
            r.timeout(http.deadlines.transfer(len))
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(last.clone())
        })
        .await?;
    if res.status() != StatusCode::CREATED {
        return Err(failed(res).await);
    }
    Ok(())
}

/// Puts `manifest` (of `media_type`) under the reference's tag (or digest).
pub(crate) async fn put_manifest(
    http: &Transport,
    manifest: bytes::Bytes,
    media_type: &str,
) -> Result<(), RequestError> {
    let r = &http.reference;
    let target = r.digest().or(r.tag()).unwrap_or("latest");
    let url = http.url(&format!("manifests/{target}"));
    let res = http
        .send(Method::PUT, &url, &|r| {
            r.header(reqwest::header::CONTENT_TYPE, media_type)
                .header(reqwest::header::CONTENT_LENGTH, manifest.len())
                .body(manifest.clone())
        })
        .await?;
    if res.status() != StatusCode::CREATED {
        return Err(failed(res).await);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_is_added_to_a_location_with_or_without_a_query() {
        let a = with_query("http://r:5000/v2/a/blobs/uploads/u?_state=x%3D", "digest", "sha256:00");
        assert_eq!(
            a.ok().as_deref(),
            Some("http://r:5000/v2/a/blobs/uploads/u?_state=x%3D&digest=sha256%3A00")
        );
        let b = with_query("http://r:5000/v2/a/blobs/uploads/u", "digest", "sha256:00");
        assert_eq!(b.ok().as_deref(), Some("http://r:5000/v2/a/blobs/uploads/u?digest=sha256%3A00"));
    }
}
