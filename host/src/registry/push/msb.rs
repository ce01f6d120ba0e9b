//! `push FILE.msb REF`: a microsandbox 0.7 `.msb` archive pushed as it is (no store involved),
//! one blob per tar member (the core's `registry_artifact::msb` form).
//!
//! The archive is read once: the core validates it ([`crate::check::run_tapped`], as `verify`
//! does) and hands over its tar stream as it walks it, which the core's
//! [`Splitter`] cuts into each member's header records and stored bytes; every member becomes a
//! blob in the push's spool directory (small JSON members as they are, the rest as one zstd
//! frame with the chain form's settings, so a parent's members give the same blobs in every
//! archive). Nothing is sent before the whole archive has passed: an invalid archive uploads
//! nothing. Then the blobs go out exactly as a chain's do (HEAD, mounts, resumable uploads,
//! `seen` records), the config blob and the manifest last.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::{stream, StreamExt, TryStreamExt};
use sha2::{Digest as _, Sha256};
use snapbundle_core::registry_artifact::split::{Piece, SplitError, Splitter};
use snapbundle_core::registry_artifact::{
    self as artifact, ArtifactKind, Layer, MsbConfig, MsbMember, StreamDigest, StreamHasher, StreamSize,
    MSB_FORMAT,
};
use snapbundle_core::report::{Container, Generation};
use snapbundle_core::{Limits, NullSink, Report};

use super::blob::{self, Sent};
use super::prepare::{blob_encoder, Data, HashingWriter, Prepared};
use super::{mounts, put_artifact, BlobAction, PushOptions, PushOutcome};
use crate::error::{shown, HostError};
use crate::home::Home;
use crate::progress::Progress;
use crate::registry::client::{Connection, Operation, Registry};
use crate::registry::resume::Sessions;
use crate::tar_writer::EntryMeta;

/// Pushes the `.msb` archive at `path` to `target` (`REGISTRY/REPO:TAG`).
pub fn push_msb(
    home: &Home,
    path: &Path,
    target: &str,
    conn: &Connection,
    opts: &PushOptions,
) -> Result<PushOutcome, HostError> {
    let started = Instant::now();
    let reference = super::checked_target(target, opts)?;
    // Locked while the push runs, so `snapbundle gc` removes it only once the push is gone.
    let spool = crate::registry::spool::Spool::create(home)?;
    // The client is set up (TLS roots loaded: tens of milliseconds) while the archive is
    // checked; it sends nothing until the archive has passed.
    let (split, reg) = std::thread::scope(|s| {
        let connecting = s.spawn(|| Registry::connect(reference, conn));
        let split = split(path, spool.path(), opts.level, opts.limits, opts.quiet);
        (split, connecting.join())
    });
    let split = split?;
    let reg = reg.unwrap_or_else(|_| {
        Err(HostError::io("setting up the registry client", io::Error::other("its thread panicked")))
    })?;
    let msb = split.report.msb.as_ref();
    let config = MsbConfig {
        schema: 1,
        format: MSB_FORMAT.into(),
        head: msb.map(|m| m.head.clone()).unwrap_or_default(),
        container: match split.report.container {
            Container::Zstd => artifact::msb::CONTAINER_ZSTD,
            Container::Tar => artifact::msb::CONTAINER_TAR,
        }
        .into(),
        archive: split.archive.clone(),
        tar: StreamSize { size: split.tar },
        members: split.members,
        trailer: artifact::base64_encode(&vec![0u8; usize::try_from(split.trailer).unwrap_or(0)]),
    };
    let config_bytes =
        serde_json::to_vec(&config).map_err(|e| HostError::io("encoding the config", io::Error::other(e)))?;
    if config_bytes.len() as u64 > ArtifactKind::Msb.max_config_bytes() {
        return Err(HostError::Usage(format!(
            "{}: its header records need a config of {} bytes, more than the {} a pull accepts",
            shown(path),
            config_bytes.len(),
            ArtifactKind::Msb.max_config_bytes()
        )));
    }
    let head = split.report.head.clone();
    let snapshots: Vec<String> =
        msb.map(|m| m.snapshots.iter().map(|s| s.snapshot_id.clone()).collect()).unwrap_or_default();
    let member_bytes: u64 = split.prepared.iter().map(|p| p.layer.meta.size).sum();
    let blob_bytes: u64 = split.prepared.iter().map(|p| p.layer.size).sum();

    let target_repo = reg.reference().repository().to_string();
    let mounts = mounts(home, &reg, opts)?;
    let sessions = Sessions::new(home);
    let progress = Arc::new(Progress::new("pushing", Some(blob_bytes), opts.quiet));
    let claimed = Mutex::new(HashSet::new());
    let claim = |digest: &str| claimed.lock().map(|mut c| c.insert(digest.to_string())).unwrap_or(true);
    let result = reg.block_on(async {
        reg.login(Operation::Push, &mounts.sources).await?;
        let (reg, mounts, sessions, progress, claim) = (&reg, &mounts, &sessions, &progress, &claim);
        let mut sent = stream::iter(split.prepared)
            .map(|p| async move {
                // Two members with the same bytes are one blob: the first sends it.
                let sent = if claim(&p.layer.digest) {
                    blob::send(reg, &p, mounts, sessions, progress).await?
                } else {
                    Sent::skipped()
                };
                progress.inc(p.layer.size);
                Ok::<_, HostError>((p, sent))
            })
            .buffer_unordered(reg.jobs)
            .inspect_ok(|(p, sent)| progress.line(&super::sent_line(p, sent)))
            .try_collect::<Vec<_>>()
            .await?;
        sent.sort_by_key(|(p, _)| p.index);
        put_artifact(reg, ArtifactKind::Msb, sent, config_bytes, &head, mounts, sessions, progress).await
    });
    progress.finish();
    let (blobs, manifest_digest) = result?;
    mounts.seen.record(&target_repo, blobs.iter().map(|b| b.digest.as_str()));
    let count = |a: BlobAction| blobs.iter().filter(|b| b.action == a).count();
    Ok(PushOutcome {
        reference: reg.reference().to_string(),
        manifest_digest,
        head,
        snapshots,
        uploaded: count(BlobAction::Uploaded),
        skipped: count(BlobAction::Skipped),
        mounted: count(BlobAction::Mounted),
        bytes_uploaded: blobs.iter().filter(|b| b.action == BlobAction::Uploaded).map(|b| b.size).sum(),
        bytes_sent: blobs.iter().map(|b| b.sent).sum(),
        resumed: blobs.iter().filter(|b| b.resumed).count(),
        bytes_total: blobs.iter().map(|b| b.size).sum(),
        member_bytes,
        bytes_read: split.archive.size,
        blobs,
        retries: reg.retries(),
        seconds: started.elapsed().as_secs_f64(),
        credentials_sent_to: reg.credentials_sent_to(),
    })
}

/// An archive validated and split into blobs.
struct Split {
    report: Report,
    prepared: Vec<Prepared>,
    members: Vec<MsbMember>,
    trailer: u64,
    archive: StreamDigest,
    /// The tar stream's length.
    tar: u64,
}

/// A member's blob being written.
enum Body {
    Raw(Vec<u8>),
    Zstd(Box<zstd::stream::write::Encoder<'static, HashingWriter<BufWriter<File>>>>, PathBuf),
}

/// The member being split.
struct Building {
    path: String,
    stored: u64,
    body: Body,
}

/// Turns the splitter's pieces into blobs in `spool`.
struct Blobs<'a> {
    /// The archive, for messages.
    name: String,
    spool: &'a Path,
    level: i32,
    records: Vec<u8>,
    current: Option<Building>,
    prepared: Vec<Prepared>,
    members: Vec<MsbMember>,
}

impl Blobs<'_> {
    fn piece(&mut self, piece: Piece<'_>) -> Result<(), HostError> {
        match piece {
            Piece::Record(rec) => self.records.extend_from_slice(rec),
            Piece::Begin(m) => {
                let path = snapbundle_core::registry_artifact::split::name_text(&m)
                    .ok_or_else(|| HostError::Usage("a member name is not UTF-8".into()))?;
                // A `.msb` archive starts with a snapshot's member (the core selects the
                // generation there): anything else is not split any further.
                if self.prepared.is_empty() && !path.starts_with("snapshots/") {
                    return Err(not_msb(&self.name));
                }
                let body = if artifact::store_raw(&path, m.sparse, m.stored) {
                    Body::Raw(Vec::new())
                } else {
                    let file = self.spool.join(format!("{}.zst", self.prepared.len()));
                    let ctx = || format!("writing {}", shown(&file));
                    let out = File::create(&file).map_err(|e| HostError::io(ctx(), e))?;
                    let sink = HashingWriter {
                        inner: BufWriter::with_capacity(1 << 20, out),
                        hasher: Sha256::new(),
                        count: 0,
                    };
                    let enc =
                        blob_encoder(sink, self.level, m.stored).map_err(|e| HostError::io(ctx(), e))?;
                    Body::Zstd(Box::new(enc), file)
                };
                self.current = Some(Building { path, stored: m.stored, body });
            }
            Piece::Data(bytes) => {
                if let Some(b) = self.current.as_mut() {
                    match &mut b.body {
                        Body::Raw(v) => v.extend_from_slice(bytes),
                        Body::Zstd(enc, file) => enc
                            .write_all(bytes)
                            .map_err(|e| HostError::io(format!("writing {}", shown(file)), e))?,
                    }
                }
            }
            Piece::End => {
                let Some(b) = self.current.take() else { return Ok(()) };
                let meta = EntryMeta { mode: 0, uid: 0, gid: 0, mtime: 0, size: b.stored };
                let (digest, size, zstd, data) = match b.body {
                    Body::Raw(v) => {
                        (artifact::sha256_digest(&v), v.len() as u64, false, Data::Bytes(v.into()))
                    }
                    Body::Zstd(enc, file) => {
                        let ctx = || format!("writing {}", shown(&file));
                        let HashingWriter { inner, hasher, count } =
                            enc.finish().map_err(|e| HostError::io(ctx(), e))?;
                        inner.into_inner().map_err(|e| HostError::io(ctx(), e.into_error()))?;
                        let digest = format!("sha256:{}", snapbundle_core::hex::encode(&hasher.finalize()));
                        (digest, count, true, Data::Spooled(file))
                    }
                };
                let layer = Layer { digest, size, zstd, path: b.path.clone(), sha256: None, meta };
                self.members.push(MsbMember {
                    path: b.path,
                    headers: artifact::base64_encode(&std::mem::take(&mut self.records)),
                });
                self.prepared.push(Prepared { index: self.prepared.len(), layer, data });
            }
        }
        Ok(())
    }
}

fn not_msb(name: &str) -> HostError {
    HostError::Usage(format!(
        "{name} is not a microsandbox 0.7 .msb archive (push FILE takes one; push a 0.6.2 bundle by importing it first and pushing its snapshot)"
    ))
}

/// Validates the archive at `path` and splits it into blobs in `spool` in the same pass.
fn split(path: &Path, spool: &Path, level: i32, limits: Limits, quiet: bool) -> Result<Split, HostError> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| HostError::io(format!("opening {}", shown(path)), e))?;
    let len = file.metadata().ok().map(|m| m.len());
    let mut reader =
        ArchiveReader { inner: BufReader::with_capacity(1 << 20, file), hasher: StreamHasher::new() };
    let progress = Progress::new("checking", len, quiet);
    // The validator runs here; the tar stream it walks goes, copied, to a worker thread that
    // hashes it, splits it and compresses the members, so both run at once.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(16);
    let mut tap_failed = false;
    let (report, worked) = std::thread::scope(|s| {
        let worker = s.spawn(|| split_stream(rx, &name, spool, level, limits));
        let report = crate::check::run_tapped(
            &mut reader,
            &name,
            limits,
            &mut NullSink,
            &progress,
            &mut |_| HostError::Usage("validation stopped".into()),
            &mut |bytes| {
                tx.send(bytes.to_vec()).map_err(|_| {
                    tap_failed = true;
                    HostError::Usage("the split stopped".into())
                })
            },
        );
        drop(tx);
        let worked = worker.join().unwrap_or_else(|_| {
            Err(HostError::io("splitting", io::Error::other("the split thread panicked")))
        });
        (report, worked)
    });
    progress.finish();
    let report = match report {
        // The worker stopped first: its error is the push's.
        Err(_) if tap_failed => return Err(worked.err().unwrap_or_else(|| not_msb(&name))),
        r => r?,
    };
    if report.generation != Generation::G3 {
        return Err(not_msb(&name));
    }
    let (blobs, trailer, tar) = worked?;
    let archive = reader.hasher.digest();
    Ok(Split { report, prepared: blobs.prepared, members: blobs.members, trailer, archive, tar })
}

/// Reads the archive file, digesting it for the config's `archive`.
struct ArchiveReader<R> {
    inner: R,
    hasher: StreamHasher,
}

impl<R: Read> Read for ArchiveReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or(&[]));
        Ok(n)
    }
}

/// The worker of [`split`]: splits the tar stream it receives into members ([`Splitter`]) and
/// writes their blobs into `spool`; returns them, the trailer's length and the tar stream's
/// length.
fn split_stream<'a>(
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    name: &str,
    spool: &'a Path,
    level: i32,
    limits: Limits,
) -> Result<(Blobs<'a>, u64, u64), HostError> {
    let refused = |why: SplitError| HostError::Usage(format!("{name}: cannot be pushed as it is: {why}"));
    let max_trailer = limits.max_trailing_zeros.saturating_add(1024);
    let mut splitter = Splitter::new(limits.max_path_len as usize, max_trailer);
    let mut blobs = Blobs {
        name: name.to_string(),
        spool,
        level,
        records: Vec::new(),
        current: None,
        prepared: Vec::new(),
        members: Vec::new(),
    };
    let mut tar_len = 0u64;
    for bytes in rx {
        tar_len = tar_len.saturating_add(bytes.len() as u64);
        let mut failed = None;
        let r = splitter.push(&bytes, &mut |piece| {
            blobs.piece(piece).map_err(|e| {
                failed = Some(e);
                SplitError::Truncated
            })
        });
        match (failed, r) {
            (Some(e), _) => return Err(e),
            (None, Err(why)) => return Err(refused(why)),
            (None, Ok(())) => {}
        }
    }
    let trailer = splitter.finish().map_err(refused)?;
    Ok((blobs, trailer, tar_len))
}

/// What `push` does with its first argument: `Some(path)` for an existing file holding a `.msb`
/// archive (pushed as it is, [`push_msb`]), `None` for anything that is not a file (a snapshot
/// of the store, as `export` resolves it); an error for a file the core finds to be of another
/// generation (a 0.6.2 bundle is imported first and its snapshot pushed) and for `-` (standard input is not
/// supported: the archive is read once to validate and split it, then its blobs are sent).
pub fn archive_argument(arg: &str, limits: Limits) -> Result<Option<PathBuf>, HostError> {
    if arg == "-" {
        return Err(HostError::Usage(
            "push does not read standard input: give a .msb file, or a snapshot of the store".into(),
        ));
    }
    let path = Path::new(arg);
    if !path.is_file() {
        return Ok(None);
    }
    let file = File::open(path).map_err(|e| HostError::io(format!("opening {}", shown(path)), e))?;
    let peeked = crate::input::peek_generation(file, limits)
        .map_err(|e| HostError::io(format!("reading {}", shown(path)), e))?;
    match peeked.generation {
        Some(Generation::G3) => Ok(Some(path.to_path_buf())),
        Some(Generation::G1) => Err(HostError::Usage(format!(
            "{} is a microsandbox 0.6.2 bundle: push takes a .msb archive as it is, or a snapshot of the store (`snapbundle import {}` first, then push the snapshot)",
            shown(path),
            shown(path)
        ))),
        Some(Generation::G2) => Err(HostError::Usage(format!(
            "{} is a released microsandbox 0.6.7 - 0.6.16 archive, which push does not take (only .msb archives, or snapshots of the store)",
            shown(path)
        ))),
        // Not known within what peeking reads (a zstd archive's first member may come out of
        // the decoder only past its window): the push's own validation decides, and refuses
        // anything but a `.msb` archive at its first member.
        None => Ok(Some(path.to_path_buf())),
    }
}
