//! [`MsbWriter`]: members of a microsandbox 0.7 `.msb` archive into a tar stream, each with its
//! `msb-archive-member-blake3-v1` transport digest and inventory entry computed as its bytes go
//! out, and `archive.json` ([`Inventory::write`]) last.
//!
//! The encoding is 0.7.13's: generated members (descriptors, metadata, the inventory) as GNU
//! regular entries with mode 0644 and mtime, uid and gid 0; payload and image files with their
//! own metadata; a file with holes as an old-GNU sparse member whose map the core plans
//! ([`crate::sparse::sparse_map`]), written from a [`Spool`] so that holes are neither read nor
//! stored.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use sha2::{Digest as _, Sha256};
use snapbundle_core::generation::g3::descriptor::Integrity;
use snapbundle_core::generation::g3::inventory::{Entry, INVENTORY_PATH};
use snapbundle_core::generation::g3::inventory::{EntryKind, Inventory, InventoryError, Member};
use snapbundle_core::generation::g3::transport::TransportHasher;
use snapbundle_core::hex;

use crate::sparse::{self, Chunk};
use crate::tar_writer::{EntryMeta, TarWriter};

/// Header fields of a member the writer generates (0.7.13: mode 0644, mtime, uid and gid 0).
pub fn generated_meta(size: u64) -> EntryMeta {
    EntryMeta { mode: 0o644, uid: 0, gid: 0, mtime: 0, size }
}

/// A payload's logical content on its way into the archive: its data at their offsets in an
/// anonymous temporary file (holes never written), and the data segments seen.
pub struct Spool {
    file: File,
    segments: Vec<(u64, u64)>,
    len: u64,
}

impl Spool {
    /// An empty spool in a temporary file inside `dir` (on the output's filesystem when the
    /// output is a file; it needs room for the payload's data, not its holes).
    pub fn new_in(dir: &std::path::Path) -> io::Result<Spool> {
        Ok(Spool { file: tempfile::tempfile_in(dir)?, segments: Vec::new(), len: 0 })
    }

    /// A spool holding an existing file of `len` bytes: its data segments are found with
    /// SEEK_DATA/SEEK_HOLE (for writing a file of a store, or a benchmark's input).
    pub fn of_file(file: File, len: u64) -> io::Result<Spool> {
        let segments = sparse::data_segments(&file, len)?;
        Ok(Spool { file, segments, len })
    }

    /// Adds `bytes` of data at `offset`.
    pub fn data(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.file.write_all_at(bytes, offset)?;
        let end = offset.saturating_add(bytes.len() as u64);
        match self.segments.last_mut() {
            Some(last) if last.0.saturating_add(last.1) == offset => last.1 = end - last.0,
            _ => self.segments.push((offset, bytes.len() as u64)),
        }
        self.len = self.len.max(end);
        Ok(())
    }

    /// Adds a hole of `len` bytes at `offset` (nothing is written).
    pub fn hole(&mut self, offset: u64, len: u64) {
        self.len = self.len.max(offset.saturating_add(len));
    }

    /// Calls `f` with the logical content: the data read back, the holes as [`Chunk::Zeros`].
    pub fn read(&self, f: &mut dyn FnMut(Chunk<'_>) -> io::Result<()>) -> io::Result<()> {
        sparse::read_segments(&self.file, &self.segments, self.len, f)
    }

    /// The logical size so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What [`MsbWriter::finish`] wrote.
#[derive(Debug, Clone)]
pub struct Finished<W> {
    /// The inner writer.
    pub inner: W,
    /// The `archive.json` bytes.
    pub inventory: Vec<u8>,
    /// Tar bytes written, end-of-archive records included.
    pub tar_bytes: u64,
}

/// Why a member could not be written.
#[derive(Debug)]
pub enum WriteFailure {
    /// The output (or the spool) failed.
    Io(io::Error),
    /// The inventory the members make is not one the format accepts (a bug of the caller).
    Inventory(InventoryError),
}

impl From<io::Error> for WriteFailure {
    fn from(e: io::Error) -> Self {
        WriteFailure::Io(e)
    }
}

/// Streams the members of a `.msb` archive into `W`.
pub struct MsbWriter<W: Write> {
    tar: TarWriter<W>,
    members: Vec<Member>,
    entries: Vec<Entry>,
    max_sparse_segments: u32,
}

impl<W: Write> MsbWriter<W> {
    /// A writer at the start of an archive; a sparse map gets at most `max_sparse_segments`
    /// slots (the smallest holes are stored as zeros beyond that: the receiver's limit).
    pub fn new(inner: W, max_sparse_segments: u32) -> Self {
        MsbWriter {
            tar: TarWriter::new(inner),
            members: Vec::new(),
            entries: Vec::new(),
            max_sparse_segments,
        }
    }

    /// Tar bytes written so far.
    pub fn position(&self) -> u64 {
        self.tar.position()
    }

    /// Writes a snapshot's canonical `snapshot.json` and lists the snapshot.
    pub fn descriptor(&mut self, snapshot_id: &str, descriptor: &[u8], digest: &str) -> io::Result<()> {
        let path = format!("snapshots/{snapshot_id}/snapshot.json");
        let integrity = Integrity::Sha256 { digest: digest.to_string() };
        self.whole(&path, EntryKind::SnapshotDescriptor, Some(snapshot_id), descriptor, Some(integrity))?;
        self.members.push(Member {
            snapshot_id: snapshot_id.to_string(),
            descriptor_path: path,
            descriptor_digest: digest.to_string(),
        });
        Ok(())
    }

    /// Writes a snapshot's `metadata.json`.
    pub fn metadata(&mut self, snapshot_id: &str, bytes: &[u8]) -> io::Result<()> {
        let path = format!("snapshots/{snapshot_id}/metadata.json");
        let integrity = Some(Integrity::Sha256 { digest: sha256_of(bytes) });
        self.whole(&path, EntryKind::SnapshotMetadata, Some(snapshot_id), bytes, integrity)
    }

    /// Writes a generated member from memory.
    fn whole(
        &mut self,
        path: &str,
        kind: EntryKind,
        owner: Option<&str>,
        bytes: &[u8],
        integrity: Option<Integrity>,
    ) -> io::Result<()> {
        let len = bytes.len() as u64;
        let mut transport = TransportHasher::new(kind.as_str(), path, len, len, &[]);
        transport.update(bytes).map_err(transport_err)?;
        self.tar.append(path, &generated_meta(len), bytes)?;
        let digest = transport.finish().map_err(transport_err)?;
        self.entries.push(Entry::included(
            path.to_string(),
            owner.map(str::to_string),
            kind,
            len,
            len,
            Vec::new(),
            integrity,
            digest,
        ));
        Ok(())
    }

    /// Starts an image file (`images/<kind>/<file>`, no owner) of `meta.size` bytes whose data
    /// the caller streams with [`MsbWriter::image_data`] and closes with [`MsbWriter::image_end`].
    pub fn image_begin(&mut self, path: &str, meta: &EntryMeta) -> io::Result<ImageMember> {
        let kind = if path.starts_with("images/manifests/") {
            EntryKind::ImageMetadata
        } else {
            EntryKind::ImageObject
        };
        self.tar.begin(path, meta)?;
        Ok(ImageMember {
            path: path.to_string(),
            kind,
            size: meta.size,
            transport: TransportHasher::new(kind.as_str(), path, meta.size, meta.size, &[]),
            sha256: Sha256::new(),
        })
    }

    /// Image file data, in order.
    pub fn image_data(&mut self, m: &mut ImageMember, bytes: &[u8]) -> io::Result<()> {
        m.transport.update(bytes).map_err(transport_err)?;
        m.sha256.update(bytes);
        self.tar.data(bytes)
    }

    /// `n` zero bytes of image file data (a hole of the input: image members are dense).
    pub fn image_zeros(&mut self, m: &mut ImageMember, n: u64) -> io::Result<()> {
        let mut left = n;
        while left > 0 {
            let k = left.min(ZEROS.len() as u64);
            self.image_data(m, ZEROS.get(..usize::try_from(k).unwrap_or(0)).unwrap_or(&[]))?;
            left -= k;
        }
        Ok(())
    }

    /// Closes an image file: its inventory entry records its SHA-256.
    pub fn image_end(&mut self, m: ImageMember) -> io::Result<()> {
        self.tar.end()?;
        let digest = m.transport.finish().map_err(transport_err)?;
        let sha = hex::sha256_digest(&m.sha256.finalize().into());
        self.entries.push(Entry::included(
            m.path,
            None,
            m.kind,
            m.size,
            m.size,
            Vec::new(),
            Some(Integrity::Sha256 { digest: sha }),
            digest,
        ));
        Ok(())
    }

    /// Writes a layer payload `path` owned by `owner` from `spool`: a regular member when it has
    /// no hole, else an old-GNU sparse member; `integrity` is the descriptor's for the layer.
    pub fn payload(
        &mut self,
        path: &str,
        owner: &str,
        meta: &EntryMeta,
        spool: &Spool,
        integrity: Option<Integrity>,
    ) -> io::Result<()> {
        let size = meta.size;
        let map = sparse::sparse_map(&spool.segments, size, self.max_sparse_segments);
        let (stored_segments, ranges) = match &map {
            Some(map) => {
                let mut ranges = map.clone();
                ranges.push((size, 0));
                (map.clone(), ranges)
            }
            None => (vec![(0, size)], Vec::new()),
        };
        let encoded = stored_segments.iter().fold(0u64, |a, &(_, n)| a.saturating_add(n));
        let kind = EntryKind::FilePayload;
        let mut transport = TransportHasher::new(kind.as_str(), path, encoded, size, &ranges);
        match &map {
            Some(map) => self.tar.begin_sparse(path, meta, map)?,
            None => self.tar.begin(path, meta)?,
        }
        let tar = &mut self.tar;
        let mut pos = 0u64;
        // The first stored segment that may still overlap what comes.
        let mut next = 0usize;
        let mut write = |chunk: Chunk<'_>| -> io::Result<()> {
            match chunk {
                Chunk::Data(bytes) => {
                    transport.update(bytes).map_err(transport_err)?;
                    tar.data(bytes)?;
                    pos = pos.saturating_add(bytes.len() as u64);
                }
                Chunk::Zeros(n) => {
                    // The part of a spool hole that the map stores as data (a hole too small
                    // for the map, or the map's 512-byte widening).
                    let end = pos.saturating_add(n);
                    while let Some(&(o, l)) = stored_segments.get(next) {
                        let seg_end = o.saturating_add(l);
                        let (s, e) = (o.max(pos), seg_end.min(end));
                        if e > s {
                            put_zeros(tar, &mut transport, e - s)?;
                        }
                        if seg_end > end {
                            break;
                        }
                        next += 1;
                    }
                    pos = end;
                }
            }
            Ok(())
        };
        sparse::read_segments(&spool.file, &spool.segments, size, &mut write)?;
        self.tar.end()?;
        let digest = transport.finish().map_err(transport_err)?;
        self.entries.push(Entry::included(
            path.to_string(),
            Some(owner.to_string()),
            kind,
            encoded,
            size,
            ranges,
            integrity,
            digest,
        ));
        Ok(())
    }

    /// Writes `archive.json` and the end-of-archive records.
    pub fn finish(
        mut self,
        head: &str,
        suggested_name: Option<&str>,
        extensions: &[(&str, &[u8])],
    ) -> Result<Finished<W>, WriteFailure> {
        let inventory = Inventory::write(head, suggested_name, self.members, self.entries, extensions)
            .map_err(WriteFailure::Inventory)?;
        self.tar.append(INVENTORY_PATH, &generated_meta(inventory.len() as u64), &inventory)?;
        let tar_bytes = self.tar.position().saturating_add(crate::tar_writer::END_OF_ARCHIVE.len() as u64);
        let inner = self.tar.finish()?;
        Ok(Finished { inner, inventory, tar_bytes })
    }
}

/// An image file being written.
pub struct ImageMember {
    path: String,
    kind: EntryKind,
    size: u64,
    transport: TransportHasher,
    sha256: Sha256,
}

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Writes `n` zeros of member data, hashed for transport.
fn put_zeros<W: Write>(tar: &mut TarWriter<W>, transport: &mut TransportHasher, n: u64) -> io::Result<()> {
    let mut left = n;
    while left > 0 {
        let k = left.min(ZEROS.len() as u64);
        let z = ZEROS.get(..usize::try_from(k).unwrap_or(0)).unwrap_or(&[]);
        transport.update(z).map_err(transport_err)?;
        tar.data(z)?;
        left -= k;
    }
    Ok(())
}

/// A transport digest fed other than its declared bytes: a bug of the writer.
fn transport_err(e: snapbundle_core::generation::g3::transport::TransportError) -> io::Error {
    io::Error::other(format!("internal error: transport digest: {e}"))
}

fn sha256_of(bytes: &[u8]) -> String {
    hex::sha256_digest(&Sha256::digest(bytes).into())
}
