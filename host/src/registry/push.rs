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

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures_util::{stream, StreamExt, TryStreamExt};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use snapbundle_core::Limits;

use crate::error::{shown, HostError};
use crate::export::{self, ExportOptions, Plan, PlannedMember};
use crate::home::Home;
use crate::progress::{ItemBar, Progress};
use crate::registry::client::{Backoff, Connection, Operation, Registry, RequestError};
use crate::registry::format::{self, ChainConfig, ConfigMember, ConfigSnapshot, Layer};
use crate::registry::known::{KnownBlob, KnownBlobs};
use crate::registry::resume::Sessions;
use crate::registry::seen::Seen;
use crate::registry::upload::{self, Mount, Session};
use crate::sparse::Chunk;
use crate::verified::FileState;

/// Bytes per upload request: a blob up to this size goes in one request, a larger one in
/// chunks of it (each held in memory while it is sent).
pub const CHUNK: usize = 8 << 20;

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

/// A member ready to send.
struct Prepared {
    index: usize,
    layer: Layer,
    data: Data,
}

enum Data {
    Bytes(bytes::Bytes),
    Spooled(PathBuf),
    /// Not read: the digest came from a [`KnownBlob`] and the repository had the blob.
    Unread,
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
    let reference = crate::registry::reference::parse(target, true)?;
    if !zstd::compression_level_range().contains(&opts.level) {
        return Err(HostError::Usage(format!("zstd level {} is out of range", opts.level)));
    }
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
    let seen = Seen::load(home, reg.reference.resolve_registry());
    let target_repo = reg.reference.repository().to_string();
    let mut mount_from: Vec<String> = match &opts.mount_from {
        Some(repo) => vec![crate::registry::reference::repository_of(reg.reference.registry(), repo)
            .map_err(|e| HostError::Usage(format!("--mount-from: {e}")))?],
        None => Vec::new(),
    };
    for source in seen.sources(&target_repo) {
        if !mount_from.contains(&source) {
            mount_from.push(source);
        }
    }
    let mounts = Mounts { explicit: opts.mount_from.is_some(), sources: mount_from, seen };
    let sessions = Sessions::new(home);
    let known = KnownBlobs::of(home);
    let total: u64 = members.iter().map(|m| m.meta.size).sum();
    let progress = Arc::new(Progress::new("pushing", Some(total), opts.quiet));
    let cancel = Arc::new(AtomicBool::new(false));
    let claimed = std::sync::Mutex::new(std::collections::HashSet::new());
    let result = reg.block_on(async {
        reg.login(Operation::Push, &mounts.sources).await?;
        let sent = stream::iter(members.iter().cloned().enumerate())
            .map(|(index, member)| {
                let (plan, spool, progress, cancel) =
                    (plan.clone(), spool.path().to_path_buf(), progress.clone(), cancel.clone());
                let (level, rehash) = (opts.level, opts.rehash);
                let reg = &reg;
                let (mounts, sessions, known) = (&mounts, &sessions, &known);
                // Two members with the same bytes (identical uppers) are one blob: the first to
                // claim its digest sends it, the other counts as skipped. The manifest is put
                // only after every send has succeeded, so the blob is there by then.
                let claim =
                    |digest: &str| claimed.lock().map(|mut c| c.insert(digest.to_string())).unwrap_or(true);
                let shown_progress = progress.clone();
                async move {
                    // An earlier push's record gives the digest without reading the file: if
                    // the repository has the blob, or a mount brings it, that is all.
                    let mut known_upload = None;
                    if let Some(k) = (!rehash).then(|| known.lookup(&member, level)).flatten() {
                        let layer = known_layer(k, &member);
                        let placed = if claim(&layer.digest) {
                            place(reg, &layer, mounts, sessions).await?
                        } else {
                            Placed::Done(Sent::skipped())
                        };
                        match placed {
                            Placed::Done(sent) => {
                                shown_progress.inc(member.meta.size);
                                return Ok((Prepared { index, layer, data: Data::Unread }, sent));
                            }
                            Placed::Upload(started) => known_upload = Some((layer.digest, started)),
                        }
                    }
                    let records = known.clone();
                    let prepared = tokio::task::spawn_blocking(move || {
                        prepare(&plan, index, &member, &spool, level, &records, &progress, &cancel)
                    })
                    .await
                    .map_err(|e| HostError::io("preparing a blob", io::Error::other(e.to_string())))??;
                    let sent = match known_upload {
                        // Neither in the repository nor mountable: upload what was prepared.
                        Some((digest, started)) if digest == prepared.layer.digest => {
                            upload(reg, &prepared, started, sessions, &shown_progress).await?
                        }
                        _ if claim(&prepared.layer.digest) => {
                            send(reg, &prepared, mounts, sessions, &shown_progress).await?
                        }
                        _ => Sent::skipped(),
                    };
                    Ok::<_, HostError>((prepared, sent))
                }
            })
            .buffer_unordered(reg.jobs)
            .inspect_err(|_| cancel.store(true, Ordering::Relaxed))
            .inspect_ok(|(p, sent)| {
                progress.line(&format!(
                    "{:>8} {} {} ({} B)",
                    label(sent.action),
                    p.layer.path,
                    p.layer.digest,
                    p.layer.size
                ))
            })
            .try_collect::<Vec<_>>()
            .await?;
        finish(&reg, &plan, sent, &mounts, &sessions, &progress).await
    });
    progress.finish();
    let (blobs, manifest_digest) = result?;
    mounts.seen.record(&target_repo, blobs.iter().map(|b| b.digest.as_str()));
    let count = |a: BlobAction| blobs.iter().filter(|b| b.action == a).count();
    Ok(PushOutcome {
        reference: reg.reference.to_string(),
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
    })
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
        format: format::BUNDLE_FORMAT.into(),
        head: plan.head().to_string(),
        snapshots: plan
            .snapshots()
            .into_iter()
            .map(|(digest, prefix)| ConfigSnapshot { digest, prefix })
            .collect(),
        members: layers
            .iter()
            .map(|l| ConfigMember { path: l.path.clone(), role: format::role(&l.path).into() })
            .collect(),
    };
    let config_bytes =
        serde_json::to_vec(&config).map_err(|e| HostError::io("encoding the config", io::Error::other(e)))?;
    let config_digest = format::sha256_digest(&config_bytes);
    let config_size = config_bytes.len() as u64;
    let config_blob = Prepared {
        index: layers.len(),
        layer: Layer {
            digest: config_digest.clone(),
            size: config_size,
            zstd: false,
            path: "config".into(),
            sha256: config_digest.clone(),
            meta: crate::tar_writer::EntryMeta { mode: 0, uid: 0, gid: 0, mtime: 0, size: config_size },
        },
        data: Data::Bytes(config_bytes.into()),
    };
    let config_sent = send(reg, &config_blob, mounts, sessions, progress).await?;
    let manifest =
        bytes::Bytes::from(format::manifest_bytes(&config_digest, config_size, &layers, plan.head()));
    let manifest_digest = format::sha256_digest(&manifest);
    reg.retry(&format!("putting the manifest to {}", reg.reference), || {
        upload::put_manifest(reg, manifest.clone(), format::OCI_MANIFEST_MEDIA_TYPE)
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

/// What sending a blob did.
struct Sent {
    action: BlobAction,
    /// Bytes sent.
    bytes: u64,
    /// Whether an earlier session was continued.
    resumed: bool,
}

impl Sent {
    /// The repository had the blob.
    fn skipped() -> Sent {
        Sent { action: BlobAction::Skipped, bytes: 0, resumed: false }
    }
}

/// Where [`place`] left a blob.
enum Placed {
    /// In the repository (it was there, or mounted).
    Done(Sent),
    /// To be uploaded, in the session a refused mount started, if any.
    Upload(Option<Session>),
}

/// The layer of `member` made from an earlier push's record.
fn known_layer(k: KnownBlob, member: &PlannedMember) -> Layer {
    Layer {
        digest: k.digest,
        size: k.size,
        zstd: true,
        path: member.name.clone(),
        sha256: k.sha256,
        meta: member.meta,
    }
}

/// How messages name a blob.
fn blob_name(reg: &Registry, layer: &Layer) -> String {
    format!("blob {} ({}) to {}", layer.digest, layer.path, reg.repository())
}

/// Where a push may mount blobs from.
struct Mounts {
    /// `--mount-from` was given: its repository (first in `sources`) is tried for every blob.
    explicit: bool,
    /// Repositories the token asks pull access to: `--mount-from`, then recently seen ones.
    sources: Vec<String>,
    /// Which repositories this home has seen holding which blobs.
    seen: Seen,
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
async fn send(
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
async fn place(
    reg: &Registry,
    layer: &Layer,
    mounts: &Mounts,
    sessions: &Sessions,
) -> Result<Placed, HostError> {
    let digest = layer.digest.as_str();
    let what = blob_name(reg, layer);
    let exists = reg.retry(&format!("checking {what}"), || upload::exists(reg, digest)).await?;
    if exists {
        sessions.remove(&reg.repository(), digest);
        return Ok(Placed::Done(Sent::skipped()));
    }
    for source in mounts.candidates(digest, reg.reference.repository()) {
        match reg
            .retry(&format!("mounting {what} from {source}"), || upload::mount(reg, digest, &source))
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
async fn upload(
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

/// Why an upload attempt stopped.
enum Stop {
    /// The request failed (maybe transiently).
    Net(RequestError),
    /// Reading the blob failed: not the registry's doing, not retried.
    Local(HostError),
}

impl From<RequestError> for Stop {
    fn from(e: RequestError) -> Self {
        Stop::Net(e)
    }
}

/// Uploads `p`: in one request when it fits in [`CHUNK`], else in chunks through a session,
/// continuing `started`, or the session an earlier push recorded, where the registry stands.
/// A transient failure is retried with backoff from where the registry stands. Returns the
/// bytes sent and whether an earlier session was continued.
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
            session = upload::status(reg, &location).await.ok().flatten();
        }
    }
    let mut resumed = session.as_ref().is_some_and(|s| s.offset > 0);
    let mut sent = 0u64;
    let mut backoff = Backoff::new();
    loop {
        // Where this attempt starts: the session we hold, if the registry still holds a
        // prefix of the blob in it, else a new one.
        let mut current = match session.take().filter(|s| s.offset <= size) {
            Some(s) => s,
            None => reg.retry(&format!("starting the upload of {what}"), || upload::start(reg)).await?,
        };
        let result: Result<(), Stop> = async {
            if size <= CHUNK as u64 && current.offset == 0 {
                let all = read_at(p, 0, size)?;
                upload::close(reg, &current, digest, all).await?;
                sent = sent.saturating_add(size);
                return Ok(());
            }
            sessions.save(&repo, digest, &current.location);
            bar.set(current.offset);
            while current.offset < size {
                let chunk =
                    read_at(p, current.offset, size.saturating_sub(current.offset).min(CHUNK as u64))?;
                let len = chunk.len() as u64;
                current = upload::patch(reg, &current, chunk).await?;
                sent = sent.saturating_add(len);
                bar.set(current.offset);
                sessions.save(&repo, digest, &current.location);
            }
            upload::close(reg, &current, digest, bytes::Bytes::new()).await?;
            Ok(())
        }
        .await;
        let e = match result {
            Ok(()) => {
                sessions.remove(&repo, digest);
                return Ok((sent, resumed));
            }
            Err(Stop::Local(e)) => return Err(e),
            Err(Stop::Net(e)) => e,
        };
        backoff.wait(reg, &format!("uploading {what}"), &e).await?;
        // Ask where the session stands; a registry that lost it gets a new one.
        session = upload::status(reg, &current.location).await.ok().flatten();
        resumed |= session.as_ref().is_some_and(|s| s.offset > 0);
    }
}

/// Bytes `[offset, offset + len)` of a prepared blob.
fn read_at(p: &Prepared, offset: u64, len: u64) -> Result<bytes::Bytes, Stop> {
    let range = || {
        let start = usize::try_from(offset).ok()?;
        Some(start..start.checked_add(usize::try_from(len).ok()?)?)
    };
    match &p.data {
        Data::Bytes(b) => {
            range().and_then(|r| b.get(r)).map(bytes::Bytes::copy_from_slice).ok_or_else(|| {
                Stop::Local(HostError::io("reading a blob", io::Error::other("range outside the blob")))
            })
        }
        Data::Unread => {
            Err(Stop::Local(HostError::io("reading a blob", io::Error::other("the blob was not read"))))
        }
        Data::Spooled(path) => {
            let ctx = || format!("reading {}", shown(path));
            let n = usize::try_from(len)
                .map_err(|_| Stop::Local(HostError::io(ctx(), io::Error::other("chunk too large"))))?;
            let mut buf = vec![0u8; n];
            File::open(path)
                .and_then(|f| f.read_exact_at(&mut buf, offset))
                .map_err(|e| Stop::Local(HostError::io(ctx(), e)))?;
            Ok(bytes::Bytes::from(buf))
        }
    }
}

/// A writer that hashes and counts what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or(&[]));
        self.count = self.count.saturating_add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Reads member `index` (`member`, with export's checks) into a blob: in memory as is, or
/// compressed into the spool directory, noting in `known` which blob the file made; hashes
/// both forms.
#[allow(clippy::too_many_arguments)]
fn prepare(
    plan: &Plan,
    index: usize,
    member: &PlannedMember,
    spool: &Path,
    level: i32,
    known: &KnownBlobs,
    progress: &Progress,
    cancel: &AtomicBool,
) -> Result<Prepared, HostError> {
    let mut member_hash = Sha256::new();
    let cancelled = || io::Error::other("the push failed elsewhere");
    if !format::compress_member(&member.name) {
        let mut bytes = Vec::new();
        plan.read_member(index, &mut |chunk| {
            match chunk {
                Chunk::Data(b) => bytes.extend_from_slice(b),
                Chunk::Zeros(n) => {
                    bytes.resize(bytes.len().saturating_add(usize::try_from(n).unwrap_or(usize::MAX)), 0)
                }
            }
            Ok(())
        })?;
        progress.inc(bytes.len() as u64);
        let digest = format::sha256_digest(&bytes);
        let layer = Layer {
            digest: digest.clone(),
            size: bytes.len() as u64,
            zstd: false,
            path: member.name.clone(),
            sha256: digest,
            meta: member.meta,
        };
        return Ok(Prepared { index, layer, data: Data::Bytes(bytes.into()) });
    }
    let path = spool.join(format!("{index}.zst"));
    let ctx = || format!("writing {}", shown(&path));
    let file = File::create(&path).map_err(|e| HostError::io(ctx(), e))?;
    let sink =
        HashingWriter { inner: BufWriter::with_capacity(1 << 20, file), hasher: Sha256::new(), count: 0 };
    let setup = || -> io::Result<_> {
        let mut enc = zstd::stream::write::Encoder::new(sink, level)?;
        enc.set_pledged_src_size(Some(member.meta.size))?;
        Ok(enc)
    };
    let mut enc = setup().map_err(|e| HostError::io("setting up zstd", e))?;
    // The file's state as the read begins, for the known-blob record.
    let before = FileState::at(&member.source);
    let mut write_error = None;
    let read = plan.read_member(index, &mut |chunk| {
        if cancel.load(Ordering::Relaxed) {
            return Err(cancelled());
        }
        let r = match chunk {
            Chunk::Data(b) => {
                member_hash.update(b);
                progress.inc(b.len() as u64);
                enc.write_all(b)
            }
            Chunk::Zeros(mut n) => {
                progress.inc(n);
                let mut r = Ok(());
                while n > 0 && r.is_ok() {
                    let k = usize::try_from(n.min(ZEROS.len() as u64)).unwrap_or(ZEROS.len());
                    let z = ZEROS.get(..k).unwrap_or(&[]);
                    member_hash.update(z);
                    r = enc.write_all(z);
                    n -= k as u64;
                }
                r
            }
        };
        r.map_err(|e| {
            write_error = Some(e);
            io::Error::other("the spool write failed")
        })
    });
    if let Some(e) = write_error {
        return Err(HostError::io(ctx(), e));
    }
    read?;
    let sink = enc.finish().map_err(|e| HostError::io(ctx(), e))?;
    let HashingWriter { inner, hasher, count } = sink;
    let file = inner.into_inner().map_err(|e| HostError::io(ctx(), e.into_error()))?;
    file.sync_all().map_err(|e| HostError::io(ctx(), e))?;
    let layer = Layer {
        digest: format!("sha256:{}", snapbundle_core::hex::encode(&hasher.finalize())),
        size: count,
        zstd: true,
        path: member.name.clone(),
        sha256: format!("sha256:{}", snapbundle_core::hex::encode(&member_hash.finalize())),
        meta: member.meta,
    };
    if let Some(before) = before {
        // Best effort: without a record the next push reads the file again.
        let _ = known.record(member, &before, level, &layer);
    }
    Ok(Prepared { index, layer, data: Data::Spooled(path) })
}
