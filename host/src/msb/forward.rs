//! 0.6.2 bundle → 0.7 `.msb` archive, in the validator's one pass: [`Forwarder`] is the sink that
//! turns the events of a validated 0.6.2 bundle into the members of the archive 0.7.13 would hold
//! after loading that bundle (ids and descriptors from
//! [`snapbundle_core::generation::translate::forward`]).
//!
//! Per snapshot, in bundle order (parents first): `snapshot.json`, `metadata.json` when it has
//! labels, and its upper as `layers/<layer_id>.raw` (spooled so that its holes become an old-GNU
//! sparse map, see [`super::writer::Spool`]); each `cache/<kind>/<file>` as
//! `images/<kind>/<file>`; then `archive.json`, whose `snapbundle.v062-manifests` extension
//! carries every original manifest so that the way back restores them byte for byte.
//!
//! A snapshot directory written by `convert --to 0.6.2` may carry its original 0.7 descriptor
//! ([`translate::CARRIED_DESCRIPTOR`], before the upper): used instead of the derived one when
//! it describes exactly that snapshot and its Merkle-BLAKE3 root (if it records one) holds for
//! the upper, so that 0.7 → 0.6.2 → 0.7 gives back the same ids and descriptor digests. Other
//! extra files of a snapshot directory have no place in a 0.7 archive: they are left out and
//! listed.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;

use snapbundle_core::generation::g3::descriptor::Integrity;
use snapbundle_core::generation::translate;
use snapbundle_core::manifest::{Manifest, MANIFEST_FILENAME, SHA256, SPARSE_SHA256_V1};
use snapbundle_core::names::Slot;
use snapbundle_core::{Event, MemberStart, Report, Sink, Stop};

use super::writer::{ImageMember, MsbWriter, Spool};
use crate::sparse::Chunk;
use crate::tar_writer::EntryMeta;

/// Why the forwarder stopped the validation.
#[derive(Debug)]
pub enum ForwardFailure {
    /// A snapshot 0.7 cannot represent.
    Unrepresentable {
        /// The snapshot's 0.6.2 digest (or its archive prefix when the manifest is unreadable).
        snapshot: String,
        /// Why.
        reason: String,
    },
    /// Writing the output or the spool failed.
    Io(io::Error),
    /// The input is of the generation asked for already (what it is and what to do).
    WrongGeneration(&'static str),
}

/// One snapshot as converted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Converted {
    /// Its 0.6.2 digest.
    pub digest: String,
    /// Its 0.7 snapshot id.
    pub snapshot_id: String,
    /// Its 0.7 descriptor digest.
    pub descriptor_digest: String,
    /// Its layer's member path.
    pub layer: String,
}

/// A manifest that arrived.
struct ManifestIn {
    manifest: Manifest,
    digest: String,
    text: String,
}

/// A snapshot directory being received.
#[derive(Default)]
struct Pending {
    manifest: Option<ManifestIn>,
    carried: Option<Vec<u8>>,
    /// Files that ended before the manifest named the upper: (name, spool, header fields).
    files: Vec<(String, Spool, EntryMeta)>,
}

/// The member being received.
enum Current {
    None,
    Manifest { prefix: String, bytes: Vec<u8> },
    Carried { prefix: String, bytes: Vec<u8> },
    File { prefix: String, name: String, spool: Spool, meta: EntryMeta },
    Image(Box<ImageMember>),
}

/// Largest carried descriptor read (a 0.7 descriptor's own bound).
const MAX_CARRIED: usize = snapbundle_core::generation::g3::descriptor::MAX_DESCRIPTOR_BYTES;

/// The sink of a 0.6.2 → 0.7 conversion.
pub struct Forwarder<W: Write> {
    writer: MsbWriter<W>,
    spool_dir: PathBuf,
    current: Current,
    pending: BTreeMap<String, Pending>,
    /// The 0.7 id each converted snapshot got, by 0.6.2 digest.
    assigned: BTreeMap<String, String>,
    /// Snapshot directories already written (a later file of one is left out).
    settled: std::collections::BTreeSet<String>,
    /// Original manifest text by snapshot id.
    manifests: BTreeMap<String, String>,
    failure: Option<ForwardFailure>,
    converted: Vec<Converted>,
    /// Files of snapshot directories the archive leaves out.
    dropped: Vec<String>,
    /// The first snapshot whose manifest did not parse (the validator must refuse the bundle).
    unreadable: Option<String>,
    /// The first snapshot 0.7 cannot hold: once noted, nothing more is written.
    unrepresentable: Option<ForwardFailure>,
}

impl<W: Write> Forwarder<W> {
    /// A forwarder writing into `writer`, spooling uppers in `spool_dir`.
    pub fn new(writer: MsbWriter<W>, spool_dir: PathBuf) -> Self {
        Forwarder {
            writer,
            spool_dir,
            current: Current::None,
            pending: BTreeMap::new(),
            assigned: BTreeMap::new(),
            settled: std::collections::BTreeSet::new(),
            manifests: BTreeMap::new(),
            failure: None,
            converted: Vec::new(),
            dropped: Vec::new(),
            unreadable: None,
            unrepresentable: None,
        }
    }

    /// Why it stopped, once.
    pub fn take_failure(&mut self) -> Option<ForwardFailure> {
        self.failure.take()
    }

    /// Ends the archive after a valid `report`: `archive.json` with the head and every
    /// original manifest. Returns the inner writer, the tar bytes written, the snapshots in
    /// archive order and the files left out.
    #[allow(clippy::type_complexity)]
    pub fn finish(
        self,
        report: &Report,
        suggested_name: Option<&str>,
    ) -> Result<(W, u64, Vec<Converted>, Vec<String>), ForwardFailure> {
        if let Some(f) = self.unrepresentable {
            return Err(f);
        }
        if let Some(prefix) = self.unreadable {
            return Err(ForwardFailure::Unrepresentable {
                snapshot: prefix,
                reason: "its manifest is unreadable".into(),
            });
        }
        if let Some(prefix) = self.pending.keys().next() {
            return Err(ForwardFailure::Unrepresentable {
                snapshot: prefix.clone(),
                reason: "a snapshot directory without its manifest or upper".into(),
            });
        }
        let head =
            self.assigned.get(&report.head).cloned().ok_or_else(|| ForwardFailure::Unrepresentable {
                snapshot: report.head.clone(),
                reason: "the head was not converted".into(),
            })?;
        let manifests =
            serde_json::to_vec(&self.manifests).map_err(|e| ForwardFailure::Io(io::Error::other(e)))?;
        let extensions = [(translate::LEGACY_MANIFESTS, manifests.as_slice())];
        let finished = self.writer.finish(&head, suggested_name, &extensions).map_err(|e| match e {
            super::writer::WriteFailure::Io(e) => ForwardFailure::Io(e),
            super::writer::WriteFailure::Inventory(e) => ForwardFailure::Io(io::Error::other(format!(
                "internal error: the archive's inventory is refused: {e}"
            ))),
        })?;
        Ok((finished.inner, finished.tar_bytes, self.converted, self.dropped))
    }

    fn fail(&mut self, failure: ForwardFailure) -> Stop {
        self.failure = Some(failure);
        Stop
    }

    fn io(&mut self, e: io::Error) -> Stop {
        self.fail(ForwardFailure::Io(e))
    }

    /// Notes a snapshot 0.7 cannot hold, reported by [`Forwarder::finish`] once the bundle is
    /// known valid (an invalid one gets its own error); nothing more is written.
    fn defer(&mut self, failure: ForwardFailure) -> Result<(), Stop> {
        self.unrepresentable.get_or_insert(failure);
        Ok(())
    }

    fn member(&mut self, m: &MemberStart<'_>) -> Result<(), Stop> {
        let meta = EntryMeta {
            mode: u32::try_from(m.mode).unwrap_or(0o644),
            uid: 0,
            gid: 0,
            mtime: m.mtime,
            size: m.size,
        };
        self.current = match m.slot {
            Slot::SnapshotFile { prefix, file } if file == MANIFEST_FILENAME => {
                Current::Manifest { prefix: prefix.to_string(), bytes: Vec::new() }
            }
            Slot::SnapshotFile { prefix, file } if file == translate::CARRIED_DESCRIPTOR => {
                Current::Carried { prefix: prefix.to_string(), bytes: Vec::new() }
            }
            Slot::SnapshotFile { prefix, file } => match Spool::new_in(&self.spool_dir) {
                Ok(spool) => {
                    Current::File { prefix: prefix.to_string(), name: file.to_string(), spool, meta }
                }
                Err(e) => return Err(self.io(e)),
            },
            Slot::CacheFile { kind, file } => {
                let path = format!("images/{}/{file}", kind.as_str());
                match self.writer.image_begin(&path, &meta) {
                    Ok(image) => Current::Image(Box::new(image)),
                    Err(e) => return Err(self.io(e)),
                }
            }
            Slot::SnapshotDir { .. } | Slot::CacheRoot | Slot::CacheDir { .. } => Current::None,
            Slot::Msb { .. } => {
                return Err(self.fail(ForwardFailure::WrongGeneration(
                    "is already a microsandbox 0.7 archive (.msb); convert --to 0.7 takes a 0.6.2 bundle",
                )))
            }
        };
        Ok(())
    }

    fn data(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        match &mut self.current {
            Current::Manifest { bytes: b, .. } => b.extend_from_slice(bytes),
            Current::Carried { bytes: b, .. } => {
                if b.len().saturating_add(bytes.len()) <= MAX_CARRIED {
                    b.extend_from_slice(bytes);
                }
            }
            Current::File { spool, .. } => spool.data(offset, bytes)?,
            Current::Image(image) => self.writer.image_data(image, bytes)?,
            Current::None => {}
        }
        Ok(())
    }

    fn hole(&mut self, offset: u64, len: u64) -> io::Result<()> {
        match &mut self.current {
            Current::Manifest { bytes, .. } | Current::Carried { bytes, .. } => {
                let len = usize::try_from(len).map_err(io::Error::other)?;
                if bytes.len().saturating_add(len) <= MAX_CARRIED {
                    bytes.resize(bytes.len().saturating_add(len), 0);
                }
            }
            Current::File { spool, .. } => spool.hole(offset, len),
            Current::Image(image) => self.writer.image_zeros(image, len)?,
            Current::None => {}
        }
        Ok(())
    }

    fn file_end(&mut self) -> Result<(), Stop> {
        match std::mem::replace(&mut self.current, Current::None) {
            Current::Manifest { prefix, bytes } => {
                let Ok(manifest) = Manifest::from_bytes(&bytes) else {
                    // The validator refuses it with the reason (when the member ends, after
                    // this event).
                    self.unreadable.get_or_insert(prefix);
                    return Ok(());
                };
                let text = String::from_utf8(bytes).unwrap_or_default();
                let digest = manifest.digest();
                self.pending.entry(prefix.clone()).or_default().manifest =
                    Some(ManifestIn { manifest, digest, text });
                self.settle(&prefix)
            }
            Current::Carried { prefix, bytes } => {
                if self.settled.contains(&prefix) {
                    self.dropped.push(format!("{prefix}/{}", translate::CARRIED_DESCRIPTOR));
                } else {
                    self.pending.entry(prefix).or_default().carried = Some(bytes);
                }
                Ok(())
            }
            Current::File { prefix, name, spool, meta } => {
                if self.settled.contains(&prefix) {
                    // A file after its snapshot was written: 0.7 has no place for it.
                    self.dropped.push(format!("{prefix}/{name}"));
                    return Ok(());
                }
                self.pending.entry(prefix.clone()).or_default().files.push((name, spool, meta));
                self.settle(&prefix)
            }
            Current::Image(image) => self.writer.image_end(*image).map_err(|e| self.io(e)),
            Current::None => Ok(()),
        }
    }

    /// Writes the snapshot of `prefix` once its manifest and its upper are in.
    fn settle(&mut self, prefix: &str) -> Result<(), Stop> {
        if self.unrepresentable.is_some() {
            self.pending.remove(prefix);
            return Ok(());
        }
        let ready = self.pending.get(prefix).is_some_and(|p| {
            p.manifest.as_ref().is_some_and(|m| p.files.iter().any(|(n, _, _)| *n == m.manifest.upper.file))
        });
        if !ready {
            return Ok(());
        }
        let Some(mut p) = self.pending.remove(prefix) else { return Ok(()) };
        let Some(m) = p.manifest.take() else { return Ok(()) };
        self.settled.insert(prefix.to_string());
        if self.assigned.contains_key(&m.digest) {
            // The same snapshot in a second directory: one snapshot in 0.7.
            self.dropped.push(format!("{prefix}/ (the same snapshot {} again)", m.digest));
            return Ok(());
        }
        let mut upper = None;
        for (name, spool, meta) in p.files.drain(..) {
            if name == m.manifest.upper.file && upper.is_none() {
                upper = Some((spool, meta));
            } else {
                self.dropped.push(format!("{prefix}/{name}"));
            }
        }
        let Some((spool, meta)) = upper else { return Ok(()) };
        let unrep = |reason: String| ForwardFailure::Unrepresentable { snapshot: m.digest.clone(), reason };
        let integrity = match &m.manifest.upper.integrity {
            None => None,
            Some(i) if i.algorithm == SHA256 => Some(Integrity::Sha256 { digest: i.digest.clone() }),
            Some(i) if i.algorithm == SPARSE_SHA256_V1 => {
                Some(Integrity::SparseSha256V1 { digest: i.digest.clone() })
            }
            Some(i) => {
                let reason = format!(
                    "its upper records integrity {:?}, which microsandbox 0.7 does not know",
                    i.algorithm
                );
                return self.defer(unrep(reason));
            }
        };
        let parent_id = m.manifest.parent.as_ref().and_then(|d| self.assigned.get(d)).cloned();
        let carried = p
            .carried
            .as_deref()
            .and_then(|c| translate::carried_forward(c, &m.manifest, parent_id.as_deref()));
        let carried = match carried {
            Some((f, d)) => match merkle_holds(&d, &spool) {
                Ok(true) => Some((f, layer_integrity(&d))),
                Ok(false) => None,
                Err(e) => return Err(self.io(e)),
            },
            None => None,
        };
        let (forward, integrity) = match carried {
            Some(x) => x,
            None => match translate::forward_with_parent(&m.manifest, &m.digest, parent_id.as_deref()) {
                Ok(f) => (f, integrity),
                Err(e) => return self.defer(unrep(e.to_string())),
            },
        };
        let written =
            self.writer.descriptor(&forward.snapshot_id, &forward.descriptor, &forward.descriptor_digest);
        let written = written.and_then(|()| match &forward.metadata {
            Some(md) => self.writer.metadata(&forward.snapshot_id, md),
            None => Ok(()),
        });
        written.map_err(|e| self.io(e))?;
        let path = forward.layer_path();
        let r = self.writer.payload(&path, &forward.snapshot_id, &meta, &spool, integrity);
        r.map_err(|e| self.io(e))?;
        self.manifests.insert(forward.snapshot_id.clone(), m.text);
        self.assigned.insert(m.digest.clone(), forward.snapshot_id.clone());
        self.converted.push(Converted {
            digest: m.digest,
            snapshot_id: forward.snapshot_id.clone(),
            descriptor_digest: forward.descriptor_digest.clone(),
            layer: path,
        });
        Ok(())
    }
}

/// The recorded integrity of a descriptor's (single) layer.
fn layer_integrity(d: &snapbundle_core::generation::g3::descriptor::Descriptor) -> Option<Integrity> {
    match &d.state {
        snapbundle_core::generation::g3::descriptor::State::File(f) => {
            f.layers.first().and_then(|l| l.integrity.clone())
        }
        _ => None,
    }
}

/// Whether a descriptor's Merkle-BLAKE3 root, if it records one, is that of the spooled upper
/// (read back: the 0.6.2 bundle proved its other digest only).
fn merkle_holds(
    d: &snapbundle_core::generation::g3::descriptor::Descriptor,
    spool: &Spool,
) -> io::Result<bool> {
    let Some(Integrity::FileMerkleBlake3V1 { root, .. }) = layer_integrity(d) else { return Ok(true) };
    let mut merkle = snapbundle_core::merkle::FileMerkle::new();
    spool.read(&mut |c| {
        let r = match c {
            Chunk::Data(b) => merkle.update(b),
            Chunk::Zeros(n) => merkle.update_zeros(n),
        };
        r.map_err(|_| io::Error::other("the upper is too large for a Merkle tree"))
    })?;
    Ok(merkle.finish().digest() == root)
}

impl<W: Write> Sink for Forwarder<W> {
    fn event(&mut self, event: Event<'_>) -> Result<(), Stop> {
        match event {
            Event::Member(m) => self.member(&m),
            Event::Data { offset, bytes } => self.data(offset, bytes).map_err(|e| self.io(e)),
            Event::Hole { offset, len } => self.hole(offset, len).map_err(|e| self.io(e)),
            Event::FileEnd { .. } => self.file_end(),
        }
    }
}
