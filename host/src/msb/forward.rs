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

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;

use snapbundle_core::generation::g3::descriptor::Integrity;
use snapbundle_core::generation::translate::{self, Forward, Unrepresentable};
use snapbundle_core::manifest::{Manifest, MANIFEST_FILENAME, SHA256, SPARSE_SHA256_V1};
use snapbundle_core::names::Slot;
use snapbundle_core::{Event, MemberStart, Report, Sink, Stop};

use super::writer::{ImageMember, MsbWriter, Spool};
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

/// A snapshot whose manifest arrived.
struct Known {
    forward: Forward,
    integrity: Option<Integrity>,
}

/// An upper that arrived before its manifest, spooled whole.
struct Waiting {
    spool: Spool,
    meta: EntryMeta,
}

/// The member being received.
enum Current {
    None,
    Manifest { prefix: String, bytes: Vec<u8> },
    Upper { prefix: String, spool: Spool, meta: EntryMeta },
    Image(Box<ImageMember>),
}

/// The sink of a 0.6.2 → 0.7 conversion.
pub struct Forwarder<'p, W: Write> {
    writer: MsbWriter<W>,
    spool_dir: PathBuf,
    current: Current,
    known: BTreeMap<String, Known>,
    waiting: BTreeMap<String, Waiting>,
    /// Original manifest text by snapshot id.
    manifests: BTreeMap<String, String>,
    failure: Option<ForwardFailure>,
    progress: &'p dyn Fn(u64),
    converted: Vec<Converted>,
    /// The first snapshot whose manifest did not parse (the validator must refuse the bundle).
    unreadable: Option<String>,
}

impl<'p, W: Write> Forwarder<'p, W> {
    /// A forwarder writing into `writer`, spooling uppers in `spool_dir`; `progress` sees the
    /// output's tar position.
    pub fn new(writer: MsbWriter<W>, spool_dir: PathBuf, progress: &'p dyn Fn(u64)) -> Self {
        Forwarder {
            writer,
            spool_dir,
            current: Current::None,
            known: BTreeMap::new(),
            waiting: BTreeMap::new(),
            manifests: BTreeMap::new(),
            failure: None,
            progress,
            converted: Vec::new(),
            unreadable: None,
        }
    }

    /// Why it stopped, once.
    pub fn take_failure(&mut self) -> Option<ForwardFailure> {
        self.failure.take()
    }

    /// Ends the archive after a valid `report`: `archive.json` with the head and every
    /// original manifest. Returns the inner writer, the tar bytes written and the snapshots in
    /// archive order.
    pub fn finish(
        self,
        report: &Report,
        suggested_name: Option<&str>,
    ) -> Result<(W, u64, Vec<Converted>), ForwardFailure> {
        let head =
            translate::legacy_snapshot_id(&report.head).ok_or_else(|| ForwardFailure::Unrepresentable {
                snapshot: report.head.clone(),
                reason: "the head digest is not a sha256 digest".into(),
            })?;
        if let Some(prefix) = self.unreadable {
            return Err(ForwardFailure::Unrepresentable {
                snapshot: prefix,
                reason: "its manifest is unreadable".into(),
            });
        }
        if !self.waiting.is_empty() {
            let prefix = self.waiting.keys().next().cloned().unwrap_or_default();
            return Err(ForwardFailure::Unrepresentable {
                snapshot: prefix,
                reason: "an upper without a manifest".into(),
            });
        }
        let manifests =
            serde_json::to_vec(&self.manifests).map_err(|e| ForwardFailure::Io(io::Error::other(e)))?;
        let extensions = [(translate::LEGACY_MANIFESTS, manifests.as_slice())];
        let finished = self.writer.finish(&head, suggested_name, &extensions).map_err(|e| match e {
            super::writer::WriteFailure::Io(e) => ForwardFailure::Io(e),
            super::writer::WriteFailure::Inventory(e) => ForwardFailure::Io(io::Error::other(format!(
                "internal error: the archive's inventory is refused: {e}"
            ))),
        })?;
        Ok((finished.inner, finished.tar_bytes, self.converted))
    }

    /// The writer, for abandoning a failed archive.
    pub fn into_unfinished(self) -> W {
        self.writer.into_inner_unfinished()
    }

    fn fail(&mut self, failure: ForwardFailure) -> Stop {
        self.failure = Some(failure);
        Stop
    }

    fn io(&mut self, e: io::Error) -> Stop {
        self.fail(ForwardFailure::Io(e))
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
            Slot::SnapshotFile { prefix, .. } => match Spool::new_in(&self.spool_dir) {
                Ok(spool) => Current::Upper { prefix: prefix.to_string(), spool, meta },
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
            Current::Upper { spool, .. } => spool.data(offset, bytes)?,
            Current::Image(image) => self.writer.image_data(image, bytes)?,
            Current::None => {}
        }
        Ok(())
    }

    fn hole(&mut self, offset: u64, len: u64) -> io::Result<()> {
        match &mut self.current {
            Current::Manifest { bytes, .. } => {
                let len = usize::try_from(len).map_err(io::Error::other)?;
                bytes.resize(bytes.len().saturating_add(len), 0)
            }
            Current::Upper { spool, .. } => spool.hole(offset, len),
            Current::Image(image) => {
                let zeros = [0u8; 4096];
                let mut left = len;
                while left > 0 {
                    let k = left.min(zeros.len() as u64);
                    let k_bytes = zeros.get(..usize::try_from(k).unwrap_or(0)).unwrap_or(&[]);
                    self.writer.image_data(image, k_bytes)?;
                    left -= k;
                }
            }
            Current::None => {}
        }
        Ok(())
    }

    fn file_end(&mut self) -> Result<(), Stop> {
        match std::mem::replace(&mut self.current, Current::None) {
            Current::Manifest { prefix, bytes } => self.manifest_end(&prefix, bytes),
            Current::Upper { prefix, spool, meta } => {
                if self.known.contains_key(&prefix) {
                    self.write_upper(&prefix, &spool, &meta)
                } else {
                    self.waiting.insert(prefix, Waiting { spool, meta });
                    Ok(())
                }
            }
            Current::Image(image) => self.writer.image_end(*image).map_err(|e| self.io(e)),
            Current::None => Ok(()),
        }
    }

    fn manifest_end(&mut self, prefix: &str, bytes: Vec<u8>) -> Result<(), Stop> {
        let unrepresentable = |snapshot: &str, reason: String| ForwardFailure::Unrepresentable {
            snapshot: snapshot.to_string(),
            reason,
        };
        let Ok(manifest) = Manifest::from_bytes(&bytes) else {
            // The validator refuses it with the reason (when the member ends, after this event).
            self.unreadable.get_or_insert_with(|| prefix.to_string());
            return Ok(());
        };
        let digest = manifest.digest();
        let forward = match translate::forward(&manifest, &digest) {
            Ok(f) => f,
            Err(e) => return Err(self.fail(unrepresentable(&digest, reason(&e)))),
        };
        let integrity = match &manifest.upper.integrity {
            None => None,
            Some(i) if i.algorithm == SHA256 => Some(Integrity::Sha256 { digest: i.digest.clone() }),
            Some(i) if i.algorithm == SPARSE_SHA256_V1 => {
                Some(Integrity::SparseSha256V1 { digest: i.digest.clone() })
            }
            Some(i) => {
                return Err(self.fail(unrepresentable(
                    &digest,
                    format!(
                        "its upper records integrity {:?}, which microsandbox 0.7 does not know",
                        i.algorithm
                    ),
                )))
            }
        };
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => return Err(self.fail(unrepresentable(&digest, "its manifest is not UTF-8".into()))),
        };
        let written =
            self.writer.descriptor(&forward.snapshot_id, &forward.descriptor, &forward.descriptor_digest);
        let written = written.and_then(|()| match &forward.metadata {
            Some(m) => self.writer.metadata(&forward.snapshot_id, m),
            None => Ok(()),
        });
        written.map_err(|e| self.io(e))?;
        (self.progress)(self.writer.position());
        self.manifests.insert(forward.snapshot_id.clone(), text);
        self.converted.push(Converted {
            digest,
            snapshot_id: forward.snapshot_id.clone(),
            descriptor_digest: forward.descriptor_digest.clone(),
            layer: forward.layer_path(),
        });
        self.known.insert(prefix.to_string(), Known { forward, integrity });
        if let Some(w) = self.waiting.remove(prefix) {
            self.write_upper(prefix, &w.spool, &w.meta)?;
        }
        Ok(())
    }

    fn write_upper(&mut self, prefix: &str, spool: &Spool, meta: &EntryMeta) -> Result<(), Stop> {
        let Some(known) = self.known.get(prefix) else { return Ok(()) };
        let path = known.forward.layer_path();
        let owner = known.forward.snapshot_id.clone();
        let integrity = known.integrity.clone();
        let progress = self.progress;
        let r = self.writer.payload(&path, &owner, meta, spool, integrity, &mut |p| progress(p));
        r.map_err(|e| self.io(e))
    }
}

fn reason(e: &Unrepresentable) -> String {
    e.to_string()
}

impl<W: Write> Sink for Forwarder<'_, W> {
    fn event(&mut self, event: Event<'_>) -> Result<(), Stop> {
        match event {
            Event::Member(m) => self.member(&m),
            Event::Data { offset, bytes } => self.data(offset, bytes).map_err(|e| self.io(e)),
            Event::Hole { offset, len } => self.hole(offset, len).map_err(|e| self.io(e)),
            Event::FileEnd { .. } => self.file_end(),
        }
    }
}
