//! `pull`: a pushed chain back into a store (or into a bundle file), through the same pipeline
//! as `import`.
//!
//! The manifest and config are fetched and checked by the core
//! ([`parse_manifest`](artifact::parse_manifest), [`parse_config`](artifact::parse_config)); then
//! three things run at once:
//!
//! 1. a downloader fetches the blobs into the blob cache ([`BlobCache`]), several at a time,
//!    hashing each as it arrives, and hands them on in layer order;
//! 2. a rebuilder turns each blob, as soon as it is there, back into its tar member (header from
//!    the annotations, bytes decompressed, hashed again: blob digest and member sha256), so the
//!    layers become exactly the plain 0.6.2 tar stream `export --plain-tar` writes;
//! 3. that stream goes through a pipe into [`crate::import::import`] (validation core,
//!    staging, promotion: nothing duplicated), or with `-o` through the validation core into a
//!    bundle compressed exactly as `export` compresses.
//!
//! The end-of-archive records are written only after every blob has been verified, so a blob
//! that does not match its digest leaves the importer with a truncated stream: nothing is
//! promoted, and the error names the blob. Verified blobs stay in the cache when the transfer
//! fails, so running it again fetches only what is missing (a partial blob is resumed with a
//! range request); once the transfer completed they are removed (unless asked to keep them, or
//! another pull into the same home is running: see [`blobs`](mod@blobs)), whether the import
//! took the stream or refused it.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::{self, Either};
use futures_util::{stream, StreamExt};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use snapbundle_core::registry_artifact::{self as artifact, ArtifactKind, Layer, MsbPlan, StreamHasher};
use snapbundle_core::Limits;

use crate::compress::{compressor, Compression, Counting};
use crate::error::{shown, HostError, RegistryErrorCode};
use crate::home::Home;
use crate::import::{ImportOptions, ImportOutcome};
use crate::progress::Progress;
use crate::publish::{parent_of, publish_new_output};
use crate::registry::blobs::{self, BlobCache, Fetched, HashingReader};
use crate::registry::client::{Connection, Operation, Registry};
use crate::registry::fetch;
use crate::registry::http::RequestError;
use crate::tar_writer::TarWriter;

/// Pull settings.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Validator limits (also bound the manifest before anything is fetched).
    pub limits: Limits,
    /// Keep the downloaded blobs in the cache after a successful pull.
    pub keep_blobs: bool,
    /// With a bundle target: write a plain tar instead of zstd.
    pub plain_tar: bool,
    /// Draw no progress.
    pub quiet: bool,
    /// The most the blob cache may hold with this pull's downloads (`None`: no cap of its own;
    /// the filesystem's free space is checked either way).
    pub max_cache_bytes: Option<u64>,
}

/// Where a pull goes.
pub enum PullTarget<'a> {
    /// Into the store of the home (snapshots into this directory if given, as `import --dest`).
    Import {
        /// Snapshots directory (default `<home>/snapshots`).
        dest: Option<PathBuf>,
    },
    /// A bundle file, written under a temporary name and renamed into place on success.
    File(&'a Path),
    /// A bundle on standard output.
    Stdout,
}

/// A bundle written by a pull.
#[derive(Debug, Clone, Serialize)]
pub struct PulledBundle {
    /// The file, for a file target.
    pub path: Option<PathBuf>,
    /// Bytes written.
    pub bytes_written: u64,
    /// Bytes of the tar stream.
    pub tar_bytes: u64,
    /// The head snapshot, as the validation core found it.
    pub head: String,
    /// For a pushed `.msb` archive: whether the file written is byte for byte the file that was
    /// pushed (always so for a file snapbundle compressed; the tar stream inside is identical
    /// in every case, `docs/registry-format.md`). `None` for a chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_as_pushed: Option<bool>,
}

/// What a pull did.
#[derive(Debug, Clone, Serialize)]
pub struct PullOutcome {
    /// The reference pulled (normalised).
    pub reference: String,
    /// The manifest's digest.
    pub manifest_digest: String,
    /// The head snapshot as the validation core found it in the pulled members (the config's
    /// `head` is the pusher's word and is never reported: a hostile config may name anything).
    pub head: String,
    /// Blobs of the artifact (members).
    pub blobs: usize,
    /// Blobs downloaded whole.
    pub downloaded: usize,
    /// Blobs whose interrupted download was resumed.
    pub resumed: usize,
    /// Blobs already in the cache: from an interrupted pull, or shared with an earlier layer.
    pub cached: usize,
    /// Bytes received for blobs.
    pub bytes_downloaded: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// The import, for a store target.
    pub import: Option<ImportOutcome>,
    /// The token endpoint the credentials were sent to, when it is another host than the
    /// registry's (the registry's challenge named it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_sent_to: Option<String>,
    /// The bundle, for `-o`.
    pub bundle: Option<PulledBundle>,
}

/// Pulls `source` (`REGISTRY/REPO:TAG` or `REGISTRY/REPO@sha256:…`) into `target`.
pub fn pull(
    home: &Home,
    source: &str,
    conn: &Connection,
    opts: &PullOptions,
    target: PullTarget<'_>,
) -> Result<PullOutcome, HostError> {
    let started = Instant::now();
    if let PullTarget::File(path) = &target {
        refuse_input(home, path)?;
    }
    let reference = crate::registry::reference::parse(source, false)?;
    let reg = Registry::connect(reference, conn)?;
    let (manifest_digest, parsed, msb) = reg.block_on(fetch_metadata(&reg, &opts.limits))?;
    let (layers, config_digest) = (parsed.layers, parsed.config_digest);
    let shape = match &msb {
        Some(plan) => Shape::Msb(Box::new(plan.clone())),
        None => Shape::Chain { tar_bytes: artifact::tar_len(&layers).unwrap_or(u64::MAX) },
    };
    let cache = BlobCache::new(home);
    let to_fetch: u64 = layers
        .iter()
        .filter(|l| !cache.has(&l.digest, l.size))
        .fold(0u64, |sum, l| sum.saturating_add(l.size));
    cache.check_room(to_fetch, opts.max_cache_bytes)?;
    // Held until the blobs are removed, so `snapbundle gc` leaves them alone meanwhile.
    let hold = cache
        .hold()
        .map_err(|e| HostError::io(format!("locking the blob cache {}", shown(cache.dir())), e))?;
    let progress = Arc::new(Progress::new("pulling", Some(to_fetch), opts.quiet));
    let name = reg.reference().to_string();

    // 1. The downloader: blobs in layer order on a channel, several in flight, until done, a
    //    failure, or `cancel` (the consumer is finished: nothing more will be read).
    let (tx, rx) = mpsc::channel::<Result<Fetched, HostError>>();
    let cancel = Arc::new(tokio::sync::Notify::new());
    let downloader = {
        let (layers, cache, progress) = (layers.clone(), cache.clone(), progress.clone());
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            // Authenticated already (fetch_metadata): the client keeps the token.
            reg.block_on(async {
                // A blob two layers share (identical files) is fetched once, for the first; the
                // later one is handed over after it, in order, so it is in the cache by then.
                let fetched = layers.iter().enumerate().map(|(i, l)| {
                    let first = layers.iter().position(|o| o.digest == l.digest).unwrap_or(i);
                    (first == i).then_some(l)
                });
                let (reg, cache, progress) = (&reg, &cache, &progress);
                let mut fetched = stream::iter(fetched)
                    .map(|l| async move {
                        match l {
                            Some(l) => cache.fetch(reg, l, progress).await,
                            None => Ok(Fetched::Cached),
                        }
                    })
                    .buffered(reg.jobs);
                let mut cancelled = std::pin::pin!(cancel.notified());
                loop {
                    // Dropping `fetched` drops the downloads in flight (their `.part` files stay
                    // for a resume).
                    let r = match future::select(cancelled.as_mut(), fetched.next()).await {
                        Either::Left(_) | Either::Right((None, _)) => return,
                        Either::Right((Some(r), _)) => r,
                    };
                    let failed = r.is_err();
                    if tx.send(r).is_err() || failed {
                        return;
                    }
                }
            });
            reg
        })
    };
    // 2. The rebuilder: the plain tar stream into a pipe.
    let (pipe_reader, pipe_writer) = crate::piped::pipe()?;
    let rebuilder = {
        let (layers, cache, name) = (layers.clone(), cache.clone(), name.clone());
        std::thread::spawn(move || match msb {
            Some(plan) => rebuild_msb(&layers, &plan, &cache, &rx, pipe_writer, &name),
            None => rebuild(&layers, &cache, &rx, pipe_writer, &name),
        })
    };
    // 3. The consumer: import, or a bundle.
    let mut reader = pipe_reader;
    let importing = matches!(target, PullTarget::Import { .. });
    let consumed = consume(&mut reader, &name, home, opts, target, &shape);
    // Whatever the consumer's verdict, no more blob is needed: an import that failed does not
    // wait for slow downloads (after a success there are none left).
    cancel.notify_one();
    drop(reader);
    progress.finish();
    let rebuilt = rebuilder
        .join()
        .map_err(|_| HostError::io("rebuilding", io::Error::other("the rebuild thread panicked")))?;
    let reg = downloader
        .join()
        .map_err(|_| HostError::io("downloading", io::Error::other("the download thread panicked")))?;
    let fetched = match rebuilt {
        Ok(f) => f,
        // The registry or the cache failed us: that is the error, not the importer's view of a
        // stream that stopped short.
        Err(Some(e)) => return Err(e),
        Err(None) => Vec::new(),
    };
    // The transfer did not fail (what came was checked): whether the import took the stream or
    // refused it (a conflict, an invalid chain), running the pull again would not need the blobs.
    // Only if no other pull holds the cache (it may need the same blobs): `gc` clears them then.
    if !opts.keep_blobs {
        cache.finish(hold, layers.iter().map(|l| l.digest.as_str()));
    }
    // Its blobs are in the source repository: a push from this home to another one may mount
    // them (a pull to a file put nothing in the home, so there is nothing to record).
    if importing {
        crate::registry::seen::Seen::load(home, reg.reference().resolve_registry()).record(
            reg.reference().repository(),
            layers.iter().map(|l| l.digest.as_str()).chain([config_digest.as_str()]),
        );
    }
    let (import, bundle) = consumed?;
    let head = match (&import, &bundle) {
        (Some(i), _) => i.head_digest.clone(),
        (None, Some(b)) => b.head.clone(),
        (None, None) => String::new(),
    };
    let count = |k: Fetched| fetched.iter().filter(|f| **f == k).count();
    let bytes_downloaded =
        layers.iter().zip(&fetched).filter(|(_, f)| **f != Fetched::Cached).map(|(l, _)| l.size).sum();
    Ok(PullOutcome {
        reference: reg.reference().to_string(),
        manifest_digest,
        head,
        blobs: layers.len(),
        downloaded: count(Fetched::Downloaded),
        resumed: count(Fetched::Resumed),
        cached: count(Fetched::Cached),
        bytes_downloaded,
        seconds: started.elapsed().as_secs_f64(),
        import,
        bundle,
        credentials_sent_to: reg.credentials_sent_to(),
    })
}

/// The manifest's digest (checked when pulling by digest) and its layers; the config blob is
/// fetched and checked against them. Of a chain's config nothing is used further (its `head`
/// is the pusher's word: the head reported is the one validated); a `.msb` archive's gives
/// the header records the tar stream is rebuilt with (checked by the core against the layers).
async fn fetch_metadata(
    reg: &Registry,
    limits: &Limits,
) -> Result<(String, artifact::Parsed, Option<MsbPlan>), HostError> {
    reg.login(Operation::Pull, &[]).await?;
    let what = format!("fetching the manifest of {}", reg.reference());
    // Our own GET, which stops reading at the manifest limit (oci-client's reads it whole).
    let bytes = reg.retry(&what, || fetch::fetch(&reg.http)).await?;
    let digest = artifact::sha256_digest(&bytes);
    if let Some(want) = reg.reference().digest() {
        if want != digest {
            return Err(HostError::Registry {
                code: RegistryErrorCode::BlobDigestMismatch,
                message: format!("the manifest served for {} has digest {digest}", reg.reference()),
            });
        }
    }
    let invalid = |e: artifact::ArtifactError| HostError::Registry {
        code: RegistryErrorCode::InvalidArtifact,
        message: format!("{}: {e}", reg.reference()),
    };
    let parsed = artifact::parse_manifest(&bytes, limits).map_err(invalid)?;
    let config_bytes = fetch_small(reg, &parsed.config_digest, parsed.config_size).await?;
    let msb = match parsed.kind {
        ArtifactKind::Chain => {
            artifact::parse_config(&config_bytes, &parsed).map_err(invalid)?;
            None
        }
        ArtifactKind::Msb => {
            Some(artifact::parse_msb_config(&config_bytes, &parsed, limits).map_err(invalid)?)
        }
    };
    Ok((digest, parsed, msb))
}

/// A small blob (the config), at most `size` bytes, checked against its digest.
async fn fetch_small(reg: &Registry, digest: &str, size: u64) -> Result<Vec<u8>, HostError> {
    let what = format!("fetching blob {digest} (config) from {}", reg.repository());
    let bytes = reg
        .retry(&what, || async move {
            let mut s = fetch::get(&reg.http, &format!("blobs/{digest}"), None, 0, size).await?;
            let mut out = Vec::new();
            while let Some(chunk) = s.chunk().await? {
                if (out.len() as u64).saturating_add(chunk.len() as u64) > size {
                    return Err(RequestError::Protocol(format!(
                        "the config blob is larger than its {size} bytes"
                    )));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(out)
        })
        .await?;
    let got = artifact::sha256_digest(&bytes);
    if got != digest {
        return Err(HostError::Registry {
            code: RegistryErrorCode::BlobDigestMismatch,
            message: format!("blob {digest} (config) from {}: its bytes have digest {got}", reg.repository()),
        });
    }
    Ok(bytes)
}

/// Rebuilds the plain tar stream from the cached blobs as the downloader hands them over.
/// `Err(None)`: the consumer stopped reading (its own error is the one to report).
fn rebuild(
    layers: &[Layer],
    cache: &BlobCache,
    rx: &mpsc::Receiver<Result<Fetched, HostError>>,
    out: io::PipeWriter,
    repo: &str,
) -> Result<Vec<Fetched>, Option<HostError>> {
    let mut tar = TarWriter::new(BufWriter::with_capacity(1 << 20, out));
    let mut fetched = Vec::with_capacity(layers.len());
    for layer in layers {
        let f = next_blob(rx)?;
        fetched.push(f);
        tar.begin(&layer.path, &layer.meta).map_err(gone)?;
        copy_blob(layer, cache, f, repo, &mut |chunk| tar.data(chunk))?;
        tar.end().map_err(gone)?;
        // Each member reaches the validator whole as soon as its blob is in: a member it
        // refuses stops the pull without waiting for the next blob.
        tar.flush().map_err(gone)?;
    }
    let mut out = tar.finish().map_err(gone)?;
    out.flush().map_err(gone)?;
    Ok(fetched)
}

/// Rebuilds a pushed `.msb` archive's tar stream: per layer its header records from the config,
/// its stored bytes, zeros to the next record; then the trailer, written only once the stream
/// has the config's length (so a stream that is not the one described ends short and the
/// consumer fails: nothing is published). The bytes themselves are the validation core's to
/// judge, as the consumer passes them through it.
fn rebuild_msb(
    layers: &[Layer],
    plan: &MsbPlan,
    cache: &BlobCache,
    rx: &mpsc::Receiver<Result<Fetched, HostError>>,
    out: io::PipeWriter,
    repo: &str,
) -> Result<Vec<Fetched>, Option<HostError>> {
    let mut w = BufWriter::with_capacity(1 << 20, out);
    let mut len = 0u64;
    let mut fetched = Vec::with_capacity(layers.len());
    for (layer, records) in layers.iter().zip(&plan.headers) {
        let f = next_blob(rx)?;
        fetched.push(f);
        let mut put = |bytes: &[u8]| -> io::Result<()> {
            len = len.saturating_add(bytes.len() as u64);
            w.write_all(bytes)
        };
        put(records).map_err(gone)?;
        copy_blob(layer, cache, f, repo, &mut put)?;
        let pad = usize::try_from(layer.meta.size % 512).map_or(0, |r| (512 - r) % 512);
        put([0u8; 512].get(..pad).unwrap_or(&[])).map_err(gone)?;
        w.flush().map_err(gone)?;
    }
    let trailer = vec![0u8; usize::try_from(plan.trailer).unwrap_or(0)];
    len = len.saturating_add(trailer.len() as u64);
    if len != plan.config.tar.size {
        return Err(Some(HostError::Registry {
            code: RegistryErrorCode::InvalidArtifact,
            message: format!(
                "{repo}: the rebuilt tar stream has {len} bytes, not the config's {}; nothing was written",
                plan.config.tar.size
            ),
        }));
    }
    w.write_all(&trailer).map_err(gone)?;
    w.flush().map_err(gone)?;
    Ok(fetched)
}

/// The consumer stopped reading: its own error is the pull's.
fn gone(_: io::Error) -> Option<HostError> {
    None
}

/// The next blob the downloader hands over; `Err(None)` when it was cancelled (the consumer
/// stopped reading: its error is the pull's) or panicked (its join says so).
fn next_blob(rx: &mpsc::Receiver<Result<Fetched, HostError>>) -> Result<Fetched, Option<HostError>> {
    match rx.recv() {
        Ok(Ok(f)) => Ok(f),
        Ok(Err(e)) => Err(Some(e)),
        Err(_) => Err(None),
    }
}

/// Passes a cached blob's member bytes (decompressed for a zstd layer) to `out`, checking them
/// on the way: the blob's size, its digest when it was in the cache before this pull (`how`
/// is [`Fetched::Cached`]; one this pull downloaded was hashed as it was written: see
/// [`blobs`]), the member's size, and its sha256 where the layer records one (a chain's).
fn copy_blob(
    layer: &Layer,
    cache: &BlobCache,
    how: Fetched,
    repo: &str,
    out: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<(), Option<HostError>> {
    let file = blobs::open(cache, &layer.digest).map_err(Some)?;
    let hasher = (how == Fetched::Cached).then(Sha256::new);
    let mut blob = HashingReader { inner: BufReader::with_capacity(1 << 20, file), hasher, count: 0 };
    let mut member = layer.sha256.as_ref().map(|_| Sha256::new());
    let mut remaining = layer.meta.size;
    let mut buf = vec![0u8; 1 << 20];
    let invalid = |why: String| {
        Some(HostError::Registry {
            code: RegistryErrorCode::InvalidArtifact,
            message: format!(
                "blob {} ({}) from {repo}: {why}; nothing was imported",
                layer.digest, layer.path
            ),
        })
    };
    let read_err = |e: io::Error| invalid(format!("cannot be read: {e}"));
    let pumped = {
        let mut pump = |src: &mut dyn Read| -> Result<(), Option<HostError>> {
            loop {
                let n = src.read(&mut buf).map_err(read_err)?;
                if n == 0 {
                    return Ok(());
                }
                let chunk = buf.get(..n).unwrap_or(&[]);
                if n as u64 > remaining {
                    return Err(invalid(format!("holds more than its {} bytes", layer.meta.size)));
                }
                remaining -= n as u64;
                if let Some(m) = member.as_mut() {
                    m.update(chunk);
                }
                out(chunk).map_err(gone)?;
            }
        };
        if layer.zstd {
            zstd::stream::read::Decoder::new(&mut blob).map_err(read_err).and_then(|dec| {
                let mut dec = dec.single_frame();
                pump(&mut dec)?;
                // Whatever follows the frame must still be read, so the digest covers it all.
                let mut rest = dec.finish();
                io::copy(&mut rest, &mut io::sink()).map(drop).map_err(read_err)
            })
        } else {
            pump(&mut blob)
        }
    };
    match pumped {
        // The consumer stopped: the blob was not read to its end, so its digest says nothing.
        Err(None) => return Err(None),
        // A blob its member cannot be read from may itself be damaged: its digest says which.
        Err(Some(_)) => {
            let _ = io::copy(&mut blob, &mut io::sink());
        }
        Ok(()) => {}
    }
    let got = blob.hasher.take().map(|h| format!("sha256:{}", snapbundle_core::hex::encode(&h.finalize())));
    if blob.count != layer.size || got.as_ref().is_some_and(|g| *g != layer.digest) {
        // Changed on disk since it was verified (a crash, a disk error, a hand): the cached copy
        // goes, so the next pull downloads the blob again instead of failing on it again.
        let _ = std::fs::remove_file(cache.path(&layer.digest));
        return Err(Some(match got {
            Some(got) => blobs::mismatch(layer, &got, &repo.to_string()),
            None => HostError::Registry {
                code: RegistryErrorCode::BlobDigestMismatch,
                message: format!(
                    "blob {} ({}) from {repo}: its cached file holds {} bytes, not {}; nothing was imported",
                    layer.digest, layer.path, blob.count, layer.size
                ),
            },
        }));
    }
    // The blob is the one named: a reading error is its content's.
    pumped?;
    if remaining != 0 {
        return Err(invalid(format!("holds {} bytes, not {}", layer.meta.size - remaining, layer.meta.size)));
    }
    if let (Some(member), Some(want)) = (member, &layer.sha256) {
        let sum = format!("sha256:{}", snapbundle_core::hex::encode(&member.finalize()));
        if sum != *want {
            return Err(invalid(format!("its member has digest {sum}, the manifest says {want}")));
        }
    }
    Ok(())
}

/// What the rebuilt stream is, for writing it to a file.
enum Shape {
    /// A 0.6.2 bundle of `tar_bytes`.
    Chain { tar_bytes: u64 },
    /// A pushed `.msb` archive.
    Msb(Box<MsbPlan>),
}

/// Feeds the rebuilt stream to the import, or through the validator into a bundle.
fn consume(
    reader: &mut io::PipeReader,
    name: &str,
    home: &Home,
    opts: &PullOptions,
    target: PullTarget<'_>,
    shape: &Shape,
) -> Result<(Option<ImportOutcome>, Option<PulledBundle>), HostError> {
    match target {
        PullTarget::Import { dest } => {
            let home = home.clone().with_snapshots_dir(dest);
            let iopts = ImportOptions { limits: opts.limits, quiet: true, ..ImportOptions::default() };
            let out = crate::import::import(reader, name, &home, &iopts)?;
            Ok((Some(out), None))
        }
        PullTarget::File(path) => {
            let journal = crate::publish::OutputJournal::of(home);
            Ok((None, Some(write_file(reader, name, opts, path, &journal, shape)?)))
        }
        PullTarget::Stdout => {
            let (written, tar_bytes, head, same_as_pushed) =
                write_bundle(reader, name, opts, io::stdout().lock(), shape)?;
            Ok((
                None,
                Some(PulledBundle { path: None, bytes_written: written, tar_bytes, head, same_as_pushed }),
            ))
        }
    }
}

fn write_file(
    reader: &mut io::PipeReader,
    name: &str,
    opts: &PullOptions,
    path: &Path,
    journal: &crate::publish::OutputJournal,
    shape: &Shape,
) -> Result<PulledBundle, HostError> {
    let (written, tar_bytes, head, same_as_pushed) =
        publish_new_output(path, 0o600, Some(journal), |file| write_bundle(reader, name, opts, file, shape))?;
    Ok(PulledBundle {
        path: Some(path.to_path_buf()),
        bytes_written: written,
        tar_bytes,
        head,
        same_as_pushed,
    })
}

/// Refuses a `pull -o` path inside the snapbundle cache of `home` (`<home>/cache/snapbundle`),
/// where the pull reads its blobs from: checked before anything is fetched, so nothing is
/// written. The path's directory need not exist yet (the pull may create it there).
fn refuse_input(home: &Home, path: &Path) -> Result<(), HostError> {
    let cache = resolved(&home.cache.join("snapbundle"));
    if resolved(&parent_of(path)).starts_with(&cache) {
        return Err(HostError::Usage(format!(
            "refusing to write {} inside {}, the cache the pull reads its blobs from",
            shown(path),
            shown(&cache)
        )));
    }
    Ok(())
}

/// `path` made absolute with its symbolic links resolved, also where it does not exist (yet):
/// the deepest existing ancestor is canonicalised, a dangling link followed, the missing
/// components below appended.
fn resolved(path: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut cur = path.to_path_buf();
    // Bounded, like the kernel's link resolution.
    for _ in 0..64 {
        if let Ok(mut base) = cur.canonicalize() {
            base.extend(missing.iter().rev());
            return base;
        }
        if let Ok(target) = std::fs::read_link(&cur) {
            cur = cur.parent().map_or_else(|| target.clone(), |p| p.join(&target));
            continue;
        }
        match (cur.file_name(), cur.parent()) {
            (Some(name), Some(parent)) => {
                missing.push(name.to_os_string());
                cur = if parent.as_os_str().is_empty() { PathBuf::from(".") } else { parent.to_path_buf() };
            }
            _ => break,
        }
    }
    path.to_path_buf()
}

/// Validates the stream while compressing it into `out`: a chain exactly as `export` would, a
/// `.msb` archive exactly as snapbundle's `.msb` writer does (`convert --to 0.7`, `export
/// --format msb`: no content size in the frame header), plain when it was pushed plain.
/// Returns the bytes written, the tar stream's length, the head, and for a `.msb` archive
/// whether the bytes written are the pushed file's.
fn write_bundle<W: Write>(
    reader: &mut io::PipeReader,
    name: &str,
    opts: &PullOptions,
    out: W,
    shape: &Shape,
) -> Result<(u64, u64, String, Option<bool>), HostError> {
    let (tar_bytes, plain, pledged) = match shape {
        Shape::Chain { tar_bytes } => (*tar_bytes, opts.plain_tar, Some(*tar_bytes)),
        Shape::Msb(plan) => {
            (plan.tar_len, opts.plain_tar || plan.config.container == artifact::msb::CONTAINER_TAR, None)
        }
    };
    let how = Compression { plain, ..Compression::default() };
    // Only a `.msb` archive's config records the pushed file's digest to compare with.
    let hasher = matches!(shape, Shape::Msb(_)).then(StreamHasher::new);
    let hashed = HashingWriter { inner: BufWriter::with_capacity(1 << 20, out), hasher };
    let counting = Counting { inner: hashed, count: 0 };
    let sink = compressor(counting, how, pledged).map_err(|e| HostError::io("setting up zstd", e))?;
    let mut tee = Tee { inner: reader, out: sink, error: None };
    let report = crate::check::verify_stream(&mut tee, name, opts.limits, &Progress::hidden());
    if let Some(e) = tee.error.take() {
        return Err(HostError::io(format!("writing {name}"), e));
    }
    let report = report?;
    let ctx = || format!("writing the bundle of {name}");
    io::copy(&mut tee.inner, &mut tee.out).map_err(|e| HostError::io(ctx(), e))?;
    let counting = tee.out.finish().map_err(|e| HostError::io(ctx(), e))?;
    let Counting { inner, count } = counting;
    let HashingWriter { inner, hasher } = inner;
    let mut w = inner.into_inner().map_err(|e| HostError::io(ctx(), e.into_error()))?;
    w.flush().map_err(|e| HostError::io(ctx(), e))?;
    let same_as_pushed = match (shape, hasher) {
        // The digest counts the bytes it hashed: those the file was given.
        (Shape::Msb(plan), Some(h)) => Some(h.digest() == plan.config.archive),
        _ => None,
    };
    Ok((count, tar_bytes, report.head, same_as_pushed))
}

/// Digests what passes through it, when it has a hasher.
struct HashingWriter<W> {
    inner: W,
    hasher: Option<StreamHasher>,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(buf.get(..n).unwrap_or(&[]));
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Passes what it reads on to `out` (the bundle being written); remembers a write error.
struct Tee<'a, W: Write> {
    inner: &'a mut io::PipeReader,
    out: W,
    error: Option<io::Error>,
}

impl<W: Write> Read for Tee<'_, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Err(e) = self.out.write_all(buf.get(..n).unwrap_or(&[])) {
            self.error = Some(e);
            return Err(io::Error::other("the output failed"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snapbundle_core::tar::write::EntryMeta;

    /// A raw layer of `bytes`, and its blob written into a fresh home's cache as `stored`.
    fn cached(bytes: &[u8], stored: &[u8]) -> (tempfile::TempDir, BlobCache, Layer) {
        let d = tempfile::tempdir().expect("temp home");
        let cache = BlobCache::new(&Home::at(d.path()));
        std::fs::create_dir_all(cache.dir()).expect("cache dir");
        let digest = artifact::sha256_digest(bytes);
        std::fs::write(cache.path(&digest), stored).expect("blob");
        let size = bytes.len() as u64;
        let meta = EntryMeta { mode: 0o100644, uid: 0, gid: 0, mtime: 0, size };
        let layer = Layer { digest, size, zstd: false, path: "m.json".into(), sha256: None, meta };
        (d, cache, layer)
    }

    fn copied(cache: &BlobCache, layer: &Layer, how: Fetched) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        copy_blob(layer, cache, how, "r/x", &mut |c| {
            out.extend_from_slice(c);
            Ok(())
        })
        .map(|()| out)
        .map_err(|e| e.map_or_else(|| "consumer stopped".into(), |e| e.to_string()))
    }

    #[test]
    fn a_blob_from_an_earlier_pull_is_hashed_again_and_removed_when_it_changed() {
        let (_d, cache, layer) = cached(b"{\"a\":1}", b"{\"a\":2}");
        let err = copied(&cache, &layer, Fetched::Cached).expect_err("a changed blob passed");
        assert!(err.contains("its bytes have digest sha256:"), "{err}");
        assert!(!cache.path(&layer.digest).exists(), "the damaged blob stayed in the cache");
        let (_d, cache, layer) = cached(b"{\"a\":1}", b"{\"a\":1}");
        assert_eq!(copied(&cache, &layer, Fetched::Cached).as_deref(), Ok(&b"{\"a\":1}"[..]));
    }

    #[test]
    fn a_blob_this_pull_downloaded_is_counted_not_hashed_again() {
        // Same length, other bytes: only a second SHA-256 pass would see it, and the download
        // hashed these pages moments before (the validation core judges the content next).
        let (_d, cache, layer) = cached(b"{\"a\":1}", b"{\"a\":2}");
        for how in [Fetched::Downloaded, Fetched::Resumed] {
            assert_eq!(copied(&cache, &layer, how).as_deref(), Ok(&b"{\"a\":2}"[..]), "{how:?}");
        }
        // A length that changed is caught, and the file removed.
        let (_d, cache, layer) = cached(b"{\"a\":1}", b"{\"a\":12}");
        let err = copied(&cache, &layer, Fetched::Downloaded).expect_err("a longer blob passed");
        assert!(err.contains("its cached file holds 8 bytes, not 7"), "{err}");
        assert!(!cache.path(&layer.digest).exists(), "the changed blob stayed in the cache");
    }
}
