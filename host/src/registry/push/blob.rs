//! Getting one prepared blob into the repository, the cheapest way there is: a HEAD (the
//! repository may have it), then a cross-repository mount, then an upload: in one request when
//! it fits in [`CHUNK`], else in chunks through a session that a transient failure, or the next
//! push, continues from where the registry stands.

use serde::Serialize;
use snapbundle_core::registry_artifact::Layer;

use crate::error::HostError;
use crate::progress::{ItemBar, Progress};
use crate::registry::client::{Registry, Stop};
use crate::registry::resume::Sessions;
use crate::registry::seen::Seen;
use crate::registry::upload::{self, Mount, Session};

use super::prepare::Prepared;

/// Bytes per upload request: a blob up to this size goes in one request, a larger one in
/// chunks of it (each held in memory while it is sent).
pub const CHUNK: usize = 8 << 20;

/// What happened to a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobAction {
    /// Sent.
    Uploaded,
    /// The repository had it.
    Skipped,
    /// Mounted from `--mount-from` without sending it.
    Mounted,
}

/// What sending a blob did.
pub(super) struct Sent {
    /// What was done.
    pub(super) action: BlobAction,
    /// Bytes sent.
    pub(super) bytes: u64,
    /// Whether an earlier session was continued.
    pub(super) resumed: bool,
}

impl Sent {
    /// The repository had the blob.
    pub(super) fn skipped() -> Sent {
        Sent { action: BlobAction::Skipped, bytes: 0, resumed: false }
    }
}

/// Where [`place`] left a blob.
pub(super) enum Placed {
    /// In the repository (it was there, or mounted).
    Done(Sent),
    /// To be uploaded, in the session a refused mount started, if any.
    Upload(Option<Session>),
}

/// How messages name a blob.
fn blob_name(reg: &Registry, layer: &Layer) -> String {
    format!("blob {} ({}) to {}", layer.digest, layer.path, reg.repository())
}

/// Where a push may mount blobs from.
pub(super) struct Mounts {
    /// `--mount-from` was given: its repository (first in `sources`) is tried for every blob.
    pub(super) explicit: bool,
    /// Repositories the token asks pull access to: `--mount-from`, then recently seen ones.
    pub(super) sources: Vec<String>,
    /// Which repositories this home has seen holding which blobs.
    pub(super) seen: Seen,
}

impl Mounts {
    /// The repositories to try a mount of `digest` from, in order.
    fn candidates(&self, digest: &str, target: &str) -> Vec<String> {
        let mut out: Vec<String> = self.sources.iter().take(usize::from(self.explicit)).cloned().collect();
        for r in self.seen.holders(digest, target, &self.sources) {
            if !out.contains(&r) {
                out.push(r);
            }
        }
        out
    }
}

/// HEAD, then mount, then upload: whatever gets the blob into the repository cheapest.
pub(super) async fn send(
    reg: &Registry,
    p: &Prepared,
    mounts: &Mounts,
    sessions: &Sessions,
    progress: &Progress,
) -> Result<Sent, HostError> {
    match place(reg, &p.layer, mounts, sessions).await? {
        Placed::Done(sent) => Ok(sent),
        Placed::Upload(started) => upload(reg, p, started, sessions, progress).await,
    }
}

/// HEAD, then mounts: whether the blob is in the repository without sending it.
pub(super) async fn place(
    reg: &Registry,
    layer: &Layer,
    mounts: &Mounts,
    sessions: &Sessions,
) -> Result<Placed, HostError> {
    let digest = layer.digest.as_str();
    let what = blob_name(reg, layer);
    let exists = reg.retry(&format!("checking {what}"), || upload::exists(&reg.http, digest)).await?;
    if exists {
        sessions.remove(&reg.repository(), digest);
        return Ok(Placed::Done(Sent::skipped()));
    }
    for source in mounts.candidates(digest, reg.reference().repository()) {
        match reg
            .retry(&format!("mounting {what} from {source}"), || upload::mount(&reg.http, digest, &source))
            .await?
        {
            Mount::Mounted => {
                sessions.remove(&reg.repository(), digest);
                return Ok(Placed::Done(Sent { action: BlobAction::Mounted, bytes: 0, resumed: false }));
            }
            // The registry started an upload instead: use it.
            Mount::Started(location) => return Ok(Placed::Upload(Some(Session { location, offset: 0 }))),
            Mount::Refused => {}
        }
    }
    Ok(Placed::Upload(None))
}

/// Uploads a prepared blob the repository lacks, with a progress bar of its own.
pub(super) async fn upload(
    reg: &Registry,
    p: &Prepared,
    started: Option<Session>,
    sessions: &Sessions,
    progress: &Progress,
) -> Result<Sent, HostError> {
    let bar = progress.item(&format!("↑ {}", p.layer.path), p.layer.size);
    let (bytes, resumed) = upload_blob(reg, p, started, sessions, &blob_name(reg, &p.layer), &bar).await?;
    Ok(Sent { action: BlobAction::Uploaded, bytes, resumed })
}

/// Uploads `p`: in one request when it fits in [`CHUNK`], else in chunks through a session,
/// continuing `started`, or the session an earlier push recorded, where the registry stands.
/// A transient failure is retried by the rule of [`Registry::retry`], from where the registry
/// stands. Returns the bytes sent and whether an earlier session was continued.
async fn upload_blob(
    reg: &Registry,
    p: &Prepared,
    started: Option<Session>,
    sessions: &Sessions,
    what: &str,
    bar: &ItemBar,
) -> Result<(u64, bool), HostError> {
    let digest = p.layer.digest.as_str();
    let size = p.layer.size;
    let repo = reg.repository();
    let mut session = started;
    if session.is_none() && size > CHUNK as u64 {
        if let Some(location) = sessions.load(&repo, digest) {
            session = upload::status(&reg.http, &location).await.ok().flatten();
        }
    }
    let mut resumed = session.as_ref().is_some_and(|s| s.offset > 0);
    let mut sent = 0u64;
    // The session the last attempt failed in: where it stands is asked before the next one.
    let mut failed_in: Option<String> = None;
    reg.retry(&format!("uploading {what}"), async || {
        if let Some(location) = failed_in.take() {
            // A registry that lost the session gets a new one.
            session = upload::status(&reg.http, &location).await.ok().flatten();
            resumed |= session.as_ref().is_some_and(|s| s.offset > 0);
        }
        // Where this attempt starts: the session we hold, if the registry still holds a
        // prefix of the blob in it, else a new one.
        let mut current = match session.take().filter(|s| s.offset <= size) {
            Some(s) => s,
            None => reg
                .retry(&format!("starting the upload of {what}"), || upload::start(&reg.http))
                .await
                .map_err(Stop::Local)?,
        };
        let result = send_from(reg, p, &mut current, &mut sent, sessions, &repo, bar).await;
        if matches!(result, Err(Stop::Net(_))) {
            failed_in = Some(current.location);
        }
        result
    })
    .await?;
    sessions.remove(&repo, digest);
    Ok((sent, resumed))
}

/// One attempt of [`upload_blob`]: sends `p` from `current.offset` on and closes the session,
/// keeping `current` where the registry stands and adding the bytes sent to `sent`.
async fn send_from(
    reg: &Registry,
    p: &Prepared,
    current: &mut Session,
    sent: &mut u64,
    sessions: &Sessions,
    repo: &str,
    bar: &ItemBar,
) -> Result<(), Stop> {
    let digest = p.layer.digest.as_str();
    let size = p.layer.size;
    if size <= CHUNK as u64 && current.offset == 0 {
        let all = p.read_at(0, size).map_err(Stop::Local)?;
        upload::close(&reg.http, current, digest, all).await?;
        *sent = sent.saturating_add(size);
        return Ok(());
    }
    sessions.save(repo, digest, &current.location);
    bar.set(current.offset);
    while current.offset < size {
        let len = size.saturating_sub(current.offset).min(CHUNK as u64);
        let chunk = p.read_at(current.offset, len).map_err(Stop::Local)?;
        let len = chunk.len() as u64;
        *current = upload::patch(&reg.http, current, chunk).await?;
        *sent = sent.saturating_add(len);
        bar.set(current.offset);
        sessions.save(repo, digest, &current.location);
    }
    upload::close(&reg.http, current, digest, bytes::Bytes::new()).await?;
    Ok(())
}
