//! `push`: a snapshot (with its parents and image files, as `export` would bundle them) to a
//! registry, one blob per member.
//!
//! The members come from [`crate::export::plan`], so a push refuses exactly what an export
//! refuses and verifies uppers the same way (recorded integrity checked while they are read).
//! Each member becomes a blob: JSON files as they are, everything else as one zstd frame
//! (single-threaded, fixed level and pledged size, so the same file always gives the same blob
//! and the same digest: that is what makes a parent or a shared image layer dedupe). Blobs are
//! prepared (compressed into a private spool directory, hashed) and sent several at a time: a
//! HEAD first (skipped if the repository has it), then a cross-repository mount from
//! `--mount-from`, or from a repository of the same registry this home pushed the blob to or
//! pulled it from ([`crate::registry::seen`]), else an upload
//! (`registry::upload`): small blobs in one request, large ones in
//! [`CHUNK`]-byte chunks. A transient failure is retried with backoff, continuing the upload
//! session from where the registry stands; a push that failed for good leaves a record of its
//! session (`registry::resume`) so that the next one continues it too. The config blob
//! and then the manifest are put last, so a failed push never leaves a tag pointing at missing
//! blobs; running it again skips every blob that made it.

use std::collections::HashSet;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::{stream, StreamExt, TryStreamExt};
use serde::Serialize;
use snapbundle_core::registry_artifact::{
    self as artifact, ArtifactKind, ChainConfig, ConfigMember, ConfigSnapshot, Layer,
};
use snapbundle_core::Limits;

use crate::error::HostError;
use crate::export::{self, ExportOptions, Plan, PlannedMember};
use crate::home::Home;
use crate::progress::Progress;
use crate::registry::client::{Connection, Operation, Registry};
use crate::registry::known::{KnownBlob, KnownBlobs};
use crate::registry::resume::Sessions;
use crate::registry::seen::Seen;
use crate::registry::upload;

mod blob;
mod msb;
mod prepare;

pub use blob::{BlobAction, CHUNK};
use blob::{Mounts, Placed, Sent};
pub use msb::{archive_argument, push_msb};
use prepare::{Data, Prepared};

/// Push settings.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Also push every ancestor (as `export --with-parents`).
    pub with_parents: bool,
    /// Also push the head's image cache files (as `export --with-image`).
    pub with_image: bool,
    /// zstd level of compressed blobs (default 3; another level gives other blobs, which do not
    /// dedupe with those pushed at level 3).
    pub level: i32,
    /// Limits the artifact must stay within (the puller's).
    pub limits: Limits,
    /// A repository of the same registry to mount missing blobs from before uploading them
    /// (tried for every blob, before the repositories this home has seen holding it).
    pub mount_from: Option<String>,
    /// Read, hash and compress every member, ignoring this home's records of verified uppers
    /// (as `export --rehash`) and of the blobs earlier pushes made of unchanged files.
    pub rehash: bool,
    /// Draw no progress.
    pub quiet: bool,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            with_parents: false,
            with_image: false,
            level: export::DEFAULT_LEVEL,
            limits: Limits::DEFAULT,
            mount_from: None,
            rehash: false,
            quiet: false,
        }
    }
}

/// One pushed blob.
#[derive(Debug, Clone, Serialize)]
pub struct PushedBlob {
    /// The member it holds (`config` for the config blob).
    pub member: String,
    /// Its digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// What was done.
    pub action: BlobAction,
    /// Bytes of it the registry took from this push (less than `size` when an earlier push's
    /// upload session was continued).
    pub sent: u64,
    /// Whether the upload continued a session an earlier attempt or push had started.
    pub resumed: bool,
    /// Whether this push read the member's bytes (`false`: an earlier push's record gave its
    /// digest, see [`crate::registry::known`], and the repository had or mounted the blob).
    pub read: bool,
}

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct PushOutcome {
    /// The token endpoint the credentials were sent to, when it is another host than the
    /// registry's (the registry's challenge named it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_sent_to: Option<String>,
    /// The reference pushed to (normalised).
    pub reference: String,
    /// The manifest's digest: pull `REPO@<digest>` for exactly this artifact.
    pub manifest_digest: String,
    /// The head snapshot.
    pub head: String,
    /// The snapshots pushed, root first.
    pub snapshots: Vec<String>,
    /// Every blob (members in bundle order, then the config).
    pub blobs: Vec<PushedBlob>,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs the repository already had.
    pub skipped: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// Bytes of blobs uploaded (the manifest not counted).
    pub bytes_uploaded: u64,
    /// Bytes of blobs the registry took from this push (resumed uploads send only their rest).
    pub bytes_sent: u64,
    /// Uploads that continued an earlier session instead of starting from byte 0.
    pub resumed: usize,
    /// Bytes of all blobs.
    pub bytes_total: u64,
    /// Bytes of all members (uncompressed, holes counted).
    pub member_bytes: u64,
    /// Bytes of members read (and compressed) for this push; members whose blob an earlier
    /// push made and the repository had are not read.
    pub bytes_read: u64,
    /// Requests retried after transient failures.
    pub retries: u64,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// The push target parsed, once `opts.level` is a zstd level (both checked before any work).
fn checked_target(target: &str, opts: &PushOptions) -> Result<crate::registry::reference::Target, HostError> {
    let reference = crate::registry::reference::parse(target, true)?;
    if !zstd::compression_level_range().contains(&opts.level) {
        return Err(HostError::Usage(format!("zstd level {} is out of range", opts.level)));
    }
    Ok(reference)
}

/// Pushes `snapshot_arg` (as `export` resolves it) to `target` (`REGISTRY/REPO:TAG`).
pub fn push(
    home: &Home,
    snapshot_arg: &str,
    target: &str,
    conn: &Connection,
    opts: &PushOptions,
) -> Result<PushOutcome, HostError> {
    let started = Instant::now();
    let reference = checked_target(target, opts)?;
    let eopts = ExportOptions {
        with_parents: opts.with_parents,
        with_image: opts.with_image,
        limits: opts.limits,
        rehash: opts.rehash,
        ..ExportOptions::default()
    };
    let plan = Arc::new(export::plan(home, snapshot_arg, &eopts)?);
    let members = plan.planned_members();
    // Locked while the push runs, so `snapbundle gc` removes it only once the push is gone.
    let spool = crate::registry::spool::Spool::create(home)?;
    let reg = Registry::connect(reference, conn)?;
    // Repositories to mount missing blobs from: `--mount-from`, then those this home has seen
    // holding blobs on this registry (`seen`).
    let target_repo = reg.reference().repository().to_string();
    let mounts = mounts(home, &reg, opts)?;
    let sessions = Sessions::new(home);
    let total: u64 = members.iter().map(|m| m.meta.size).sum();
    let progress = Arc::new(Progress::new("pushing", Some(total), opts.quiet));
    let shared = Shared {
        reg: &reg,
        plan: plan.clone(),
        spool: spool.path().to_path_buf(),
        progress: progress.clone(),
        cancel: Arc::new(AtomicBool::new(false)),
        level: opts.level,
        rehash: opts.rehash,
        mounts: &mounts,
        sessions: &sessions,
        known: KnownBlobs::of(home),
        claimed: Mutex::new(HashSet::new()),
    };
    let result = reg.block_on(async {
        reg.login(Operation::Push, &mounts.sources).await?;
        let sent = stream::iter(members.iter().cloned().enumerate())
            .map(|(index, member)| push_member(&shared, index, member))
            .buffer_unordered(reg.jobs)
            .inspect_err(|_| shared.cancel.store(true, Ordering::Relaxed))
            .inspect_ok(|(p, sent)| progress.line(&sent_line(p, sent)))
            .try_collect::<Vec<_>>()
            .await?;
        finish(&reg, &plan, sent, &mounts, &sessions, &progress).await
    });
    progress.finish();
    let (blobs, manifest_digest) = result?;
    mounts.seen.record(&target_repo, blobs.iter().map(|b| b.digest.as_str()));
    let count = |a: BlobAction| blobs.iter().filter(|b| b.action == a).count();
    Ok(PushOutcome {
        reference: reg.reference().to_string(),
        manifest_digest,
        head: plan.head().to_string(),
        snapshots: plan.snapshots().into_iter().map(|s| s.0).collect(),
        uploaded: count(BlobAction::Uploaded),
        skipped: count(BlobAction::Skipped),
        mounted: count(BlobAction::Mounted),
        bytes_uploaded: blobs.iter().filter(|b| b.action == BlobAction::Uploaded).map(|b| b.size).sum(),
        bytes_sent: blobs.iter().map(|b| b.sent).sum(),
        resumed: blobs.iter().filter(|b| b.resumed).count(),
        bytes_total: blobs.iter().map(|b| b.size).sum(),
        member_bytes: total,
        bytes_read: members.iter().zip(&blobs).filter(|(_, b)| b.read).map(|(m, _)| m.meta.size).sum(),
        blobs,
        retries: reg.retries(),
        seconds: started.elapsed().as_secs_f64(),
        credentials_sent_to: reg.credentials_sent_to(),
    })
}

/// Where `push` may mount missing blobs from: `--mount-from`, then the repositories this home
/// has seen holding blobs on this registry (`seen`).
fn mounts(home: &Home, reg: &Registry, opts: &PushOptions) -> Result<Mounts, HostError> {
    let seen = Seen::load(home, reg.reference().resolve_registry());
    let target_repo = reg.reference().repository().to_string();
    let mut mount_from: Vec<String> = match &opts.mount_from {
        Some(repo) => vec![crate::registry::reference::repository_of(reg.reference().registry(), repo)
            .map_err(|e| HostError::Usage(format!("--mount-from: {e}")))?],
        None => Vec::new(),
    };
    for source in seen.sources(&target_repo) {
        if !mount_from.contains(&source) {
            mount_from.push(source);
        }
    }
    Ok(Mounts { explicit: opts.mount_from.is_some(), sources: mount_from, seen })
}

/// What the push of every member shares.
struct Shared<'a> {
    reg: &'a Registry,
    plan: Arc<Plan>,
    /// The spool directory compressed blobs are written to.
    spool: PathBuf,
    progress: Arc<Progress>,
    /// Set when a member failed: the others stop reading.
    cancel: Arc<AtomicBool>,
    /// zstd level.
    level: i32,
    /// Ignore the records of earlier pushes ([`PushOptions::rehash`]).
    rehash: bool,
    mounts: &'a Mounts,
    sessions: &'a Sessions,
    known: KnownBlobs,
    /// The blob digests a member has claimed to send.
    claimed: Mutex<HashSet<String>>,
}

impl Shared<'_> {
    /// Whether the caller is the first to claim `digest`. Two members with the same bytes
    /// (identical uppers) are one blob: the first to claim its digest sends it, the other counts
    /// as skipped. The manifest is put only after every send has succeeded, so the blob is there
    /// by then.
    fn claim(&self, digest: &str) -> bool {
        self.claimed.lock().map(|mut c| c.insert(digest.to_string())).unwrap_or(true)
    }
}

/// Pushes member `index`: if an earlier push's record gives its digest without reading the
/// file, and the repository has the blob or a mount brings it, that is all; otherwise the member
/// is read into a blob ([`prepare::prepare`], on a blocking thread) and sent (HEAD, mount,
/// upload), or counted as skipped when another member claimed the same blob.
async fn push_member(
    shared: &Shared<'_>,
    index: usize,
    member: PlannedMember,
) -> Result<(Prepared, Sent), HostError> {
    let reg = shared.reg;
    let mut known_upload = None;
    if let Some(k) = (!shared.rehash).then(|| shared.known.lookup(&member, shared.level)).flatten() {
        let layer = known_layer(k, &member);
        let placed = if shared.claim(&layer.digest) {
            blob::place(reg, &layer, shared.mounts, shared.sessions).await?
        } else {
            Placed::Done(Sent::skipped())
        };
        match placed {
            Placed::Done(sent) => {
                shared.progress.inc(member.meta.size);
                return Ok((Prepared { index, layer, data: Data::Unread }, sent));
            }
            Placed::Upload(started) => known_upload = Some((layer.digest, started)),
        }
    }
    let (plan, spool, progress, cancel, known) = (
        shared.plan.clone(),
        shared.spool.clone(),
        shared.progress.clone(),
        shared.cancel.clone(),
        shared.known.clone(),
    );
    let level = shared.level;
    let prepared = tokio::task::spawn_blocking(move || {
        prepare::prepare(&plan, index, &member, &spool, level, &known, &progress, &cancel)
    })
    .await
    .map_err(|e| HostError::io("preparing a blob", io::Error::other(e.to_string())))??;
    let sent = match known_upload {
        // Neither in the repository nor mountable: upload what was prepared.
        Some((digest, started)) if digest == prepared.layer.digest => {
            blob::upload(reg, &prepared, started, shared.sessions, &shared.progress).await?
        }
        _ if shared.claim(&prepared.layer.digest) => {
            blob::send(reg, &prepared, shared.mounts, shared.sessions, &shared.progress).await?
        }
        _ => Sent::skipped(),
    };
    Ok((prepared, sent))
}

/// The progress line of one blob: what happened to it, its member path, digest and size.
fn sent_line(p: &Prepared, sent: &Sent) -> String {
    format!("{:>8} {} {} ({} B)", label(sent.action), p.layer.path, p.layer.digest, p.layer.size)
}

fn label(a: BlobAction) -> &'static str {
    match a {
        BlobAction::Uploaded => "uploaded",
        BlobAction::Skipped => "exists",
        BlobAction::Mounted => "mounted",
    }
}

/// Puts the config blob and then the manifest; returns every blob and the manifest digest.
async fn finish(
    reg: &Registry,
    plan: &Plan,
    mut sent: Vec<(Prepared, Sent)>,
    mounts: &Mounts,
    sessions: &Sessions,
    progress: &Progress,
) -> Result<(Vec<PushedBlob>, String), HostError> {
    sent.sort_by_key(|(p, _)| p.index);
    let layers: Vec<Layer> = sent.iter().map(|(p, _)| p.layer.clone()).collect();
    let config = ChainConfig {
        schema: 1,
        format: artifact::BUNDLE_FORMAT.into(),
        head: plan.head().to_string(),
        snapshots: plan
            .snapshots()
            .into_iter()
            .map(|(digest, prefix)| ConfigSnapshot { digest, prefix })
            .collect(),
        members: layers
            .iter()
            .map(|l| {
                let role = artifact::role(&l.path).ok_or_else(|| {
                    HostError::Usage(format!("{}: not a member of the bundle layout", l.path))
                })?;
                Ok(ConfigMember { path: l.path.clone(), role: role.into() })
            })
            .collect::<Result<_, HostError>>()?,
    };
    let config_bytes =
        serde_json::to_vec(&config).map_err(|e| HostError::io("encoding the config", io::Error::other(e)))?;
    put_artifact(reg, ArtifactKind::Chain, sent, config_bytes, plan.head(), mounts, sessions, progress).await
}

/// Sends the config blob, then puts the manifest of `kind` over the layers of `sent` (in layer
/// order); returns every blob (the config last) and the manifest digest.
#[allow(clippy::too_many_arguments)]
async fn put_artifact(
    reg: &Registry,
    kind: ArtifactKind,
    sent: Vec<(Prepared, Sent)>,
    config_bytes: Vec<u8>,
    head: &str,
    mounts: &Mounts,
    sessions: &Sessions,
    progress: &Progress,
) -> Result<(Vec<PushedBlob>, String), HostError> {
    let layers: Vec<Layer> = sent.iter().map(|(p, _)| p.layer.clone()).collect();
    let config_digest = artifact::sha256_digest(&config_bytes);
    let config_size = config_bytes.len() as u64;
    let config_blob = Prepared {
        index: layers.len(),
        layer: Layer {
            digest: config_digest.clone(),
            size: config_size,
            zstd: false,
            path: "config".into(),
            sha256: Some(config_digest.clone()),
            meta: crate::tar_writer::EntryMeta { mode: 0, uid: 0, gid: 0, mtime: 0, size: config_size },
        },
        data: Data::Bytes(config_bytes.into()),
    };
    let config_sent = blob::send(reg, &config_blob, mounts, sessions, progress).await?;
    let manifest =
        bytes::Bytes::from(artifact::kind_manifest_bytes(kind, &config_digest, config_size, &layers, head));
    let manifest_digest = artifact::sha256_digest(&manifest);
    reg.retry(&format!("putting the manifest to {}", reg.reference()), || {
        upload::put_manifest(&reg.http, manifest.clone(), artifact::OCI_MANIFEST_MEDIA_TYPE)
    })
    .await?;
    let blob = |p: Prepared, s: Sent| PushedBlob {
        member: p.layer.path,
        digest: p.layer.digest,
        size: p.layer.size,
        action: s.action,
        sent: s.bytes,
        resumed: s.resumed,
        read: !matches!(p.data, Data::Unread),
    };
    let mut blobs: Vec<PushedBlob> = sent.into_iter().map(|(p, s)| blob(p, s)).collect();
    blobs.push(blob(config_blob, config_sent));
    Ok((blobs, manifest_digest))
}

/// The layer of `member` made from an earlier push's record.
fn known_layer(k: KnownBlob, member: &PlannedMember) -> Layer {
    Layer {
        digest: k.digest,
        size: k.size,
        zstd: true,
        path: member.name.clone(),
        sha256: Some(k.sha256),
        meta: member.meta,
    }
}
