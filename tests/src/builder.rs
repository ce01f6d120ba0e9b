//! A byte-level bundle builder for tests.
//!
//! Everything here writes bytes by hand, so a test can produce exactly the hostile input it is
//! named for: tar headers with right or wrong checksums, odd numeric fields and arbitrary type
//! flags ([`Header`]), whole tar streams with GNU long names, PAX records and end-of-archive
//! blocks ([`Tar`]), valid 0.6.2 snapshots with their canonical manifests ([`Snapshot`]), an
//! image cache whose metadata digests are right until a test breaks them ([`ImageCache`]), and
//! zstd containers, from the C library or from hand-made frame headers and blocks.
//!
//! One concept per function; nothing here validates anything, that is the core's job.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use snapbundle_core::cache_meta::{CachedImageMetadata, CachedLayerMetadata, ImageConfig};
use snapbundle_core::manifest::{ImageRef, SnapshotFormat, UpperIntegrity, UpperLayer};
use snapbundle_core::Manifest;

/// Size of a tar record.
pub use snapbundle_core::tar::layout::BLOCK;

// ---------------------------------------------------------------------------------------------
// Tar headers
// ---------------------------------------------------------------------------------------------

/// Entry type flags (byte 156 of a header).
pub mod flag {
    pub use snapbundle_core::tar::layout::{
        CONTIGUOUS, DIRECTORY, GNU_LONG_NAME, GNU_SPARSE, REGULAR, REGULAR_LEGACY,
    };

    /// Hard link.
    pub const HARD_LINK: u8 = b'1';
    /// Symbolic link.
    pub const SYMLINK: u8 = b'2';
    /// Character device.
    pub const CHAR_DEVICE: u8 = b'3';
    /// Block device.
    pub const BLOCK_DEVICE: u8 = b'4';
    /// FIFO.
    pub const FIFO: u8 = b'6';
    /// PAX extended header for the next member.
    pub const PAX: u8 = b'x';
    /// PAX global header.
    pub const PAX_GLOBAL: u8 = b'g';
    /// GNU long link name for the next member.
    pub const GNU_LONG_LINK: u8 = b'K';
    /// GNU dump directory.
    pub const GNU_DUMPDIR: u8 = b'D';
    /// GNU multi-volume continuation.
    pub const GNU_MULTIVOL: u8 = b'M';
    /// GNU obsolete long names.
    pub const GNU_NAMES: u8 = b'N';
    /// GNU volume label.
    pub const GNU_VOLHDR: u8 = b'V';
}

/// Byte ranges of the header fields, as the core reads and writes them.
pub mod field {
    pub use snapbundle_core::tar::layout::{
        CHKSUM, GID, GNAME, LINKNAME, MAGIC, MODE, MTIME, NAME, PREFIX, SIZE, TYPEFLAG, UID, UNAME, VERSION,
    };
}

/// Header dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// GNU: magic `ustar ` version ` \0`, as 0.6.2 export and GNU tar write.
    Gnu,
    /// POSIX ustar: magic `ustar\0` version `00`.
    Ustar,
}

/// One 512-byte tar header under construction. The checksum is computed by [`Header::block`]
/// unless a test overrides it.
#[derive(Debug, Clone)]
pub struct Header {
    block: [u8; BLOCK],
    checksum: Checksum,
}

#[derive(Debug, Clone, Copy)]
enum Checksum {
    Unsigned,
    Signed,
    Value(u64),
}

/// `value` as `width - 1` zero-padded octal digits and a NUL, like tar-rs and GNU tar write.
pub fn octal(value: u64, width: usize) -> Vec<u8> {
    let mut s = format!("{value:0w$o}", w = width - 1).into_bytes();
    s.push(0);
    s
}

/// `value` in GNU base-256 form: first byte `0x80`, the rest big-endian.
pub fn base256(value: u64, width: usize) -> Vec<u8> {
    let mut out = vec![0u8; width];
    out[0] = 0x80;
    let bytes = value.to_be_bytes();
    let n = bytes.len().min(width - 1);
    out[width - n..].copy_from_slice(&bytes[bytes.len() - n..]);
    out
}

/// The unsigned byte sum of a header with the checksum field read as spaces (what tar writes).
pub fn unsigned_checksum(block: &[u8; BLOCK]) -> u64 {
    block.iter().enumerate().map(|(i, &b)| if field::CHKSUM.contains(&i) { 32 } else { u64::from(b) }).sum()
}

/// The legacy signed byte sum (bytes read as `i8`) with the checksum field read as spaces.
pub fn signed_checksum(block: &[u8; BLOCK]) -> i64 {
    block
        .iter()
        .enumerate()
        .map(|(i, &b)| if field::CHKSUM.contains(&i) { 32 } else { i64::from(b as i8) })
        .sum()
}

impl Header {
    /// A header of `format` with `name` (at most 100 bytes), type `type_flag` and `size`;
    /// mode `0100644`, uid/gid 0, mtime 1777636800 (as the 0.6.2 fixtures).
    pub fn new(format: Format, name: &[u8], type_flag: u8, size: u64) -> Header {
        let mut h = Header { block: [0; BLOCK], checksum: Checksum::Unsigned };
        let (magic, version): (&[u8], &[u8]) = match format {
            Format::Gnu => (b"ustar ", b" \0"),
            Format::Ustar => (b"ustar\0", b"00"),
        };
        h.set(field::MAGIC.start, magic);
        h.set(field::VERSION.start, version);
        h.name_field(name)
            .mode(0o100644)
            .field(field::UID, &octal(0, 8))
            .field(field::GID, &octal(0, 8))
            .size(size)
            .mtime(1_777_636_800)
            .type_flag(type_flag)
    }

    /// A GNU regular-file header.
    pub fn file(name: &str, size: u64) -> Header {
        Header::new(Format::Gnu, name.as_bytes(), flag::REGULAR, size)
    }

    /// A GNU directory header (mode `040755`, size 0).
    pub fn dir(name: &str) -> Header {
        Header::new(Format::Gnu, name.as_bytes(), flag::DIRECTORY, 0).mode(0o40755)
    }

    /// A POSIX ustar regular-file header.
    pub fn ustar_file(name: &str, size: u64) -> Header {
        Header::new(Format::Ustar, name.as_bytes(), flag::REGULAR, size)
    }

    fn set(&mut self, at: usize, bytes: &[u8]) {
        self.block[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// Overwrites a whole field with `bytes` (NUL-padded; panics if longer than the field).
    pub fn field(mut self, range: std::ops::Range<usize>, bytes: &[u8]) -> Header {
        assert!(bytes.len() <= range.len(), "{} bytes do not fit a {}-byte field", bytes.len(), range.len());
        self.block[range.clone()].fill(0);
        self.set(range.start, bytes);
        self
    }

    /// Writes raw bytes at `offset`, across field boundaries if need be.
    pub fn raw(mut self, offset: usize, bytes: &[u8]) -> Header {
        self.set(offset, bytes);
        self
    }

    /// The name field, raw: may hold bytes after a NUL, or all 100 bytes with no NUL.
    pub fn name_field(self, name: &[u8]) -> Header {
        self.field(field::NAME, name)
    }

    /// The ustar prefix field (joined to the name with `/` by ustar readers).
    pub fn prefix_field(self, prefix: &[u8]) -> Header {
        self.field(field::PREFIX, prefix)
    }

    /// The link name field.
    pub fn link_name(self, target: &[u8]) -> Header {
        self.field(field::LINKNAME, target)
    }

    /// The user name field.
    pub fn uname(self, name: &[u8]) -> Header {
        self.field(field::UNAME, name)
    }

    /// The entry type flag.
    pub fn type_flag(mut self, t: u8) -> Header {
        self.block[field::TYPEFLAG] = t;
        self
    }

    /// The mode, in octal.
    pub fn mode(self, mode: u64) -> Header {
        self.field(field::MODE, &octal(mode, 8))
    }

    /// The size, as 11 octal digits and a NUL.
    pub fn size(self, size: u64) -> Header {
        self.field(field::SIZE, &octal(size, 12))
    }

    /// The size in GNU base-256 form (legal for any size, needed from 8 GiB up).
    pub fn size_base256(self, size: u64) -> Header {
        self.field(field::SIZE, &base256(size, 12))
    }

    /// The mtime, in octal.
    pub fn mtime(self, mtime: u64) -> Header {
        self.field(field::MTIME, &octal(mtime, 12))
    }

    /// Stores `value` (octal) as the checksum instead of the right one.
    pub fn checksum_value(mut self, value: u64) -> Header {
        self.checksum = Checksum::Value(value);
        self
    }

    /// Stores the legacy signed sum as the checksum (differs from the unsigned one only when a
    /// byte is 0x80 or above).
    pub fn signed_sum(mut self) -> Header {
        self.checksum = Checksum::Signed;
        self
    }

    /// The finished 512 bytes, checksum included.
    pub fn block(&self) -> [u8; BLOCK] {
        let mut b = self.block;
        let sum = match self.checksum {
            Checksum::Unsigned => unsigned_checksum(&b),
            Checksum::Signed => u64::try_from(signed_checksum(&b)).unwrap_or(0),
            Checksum::Value(v) => v,
        };
        // tar writes six octal digits, a NUL and a space.
        let mut text = format!("{sum:06o}").into_bytes();
        text.extend_from_slice(b"\0 ");
        text.truncate(8);
        b[field::CHKSUM].fill(b' ');
        b[field::CHKSUM.start..field::CHKSUM.start + text.len()].copy_from_slice(&text);
        b
    }

    /// The right checksum of this header as it stands.
    pub fn correct_checksum(&self) -> u64 {
        unsigned_checksum(&self.block)
    }
}

// ---------------------------------------------------------------------------------------------
// Tar streams
// ---------------------------------------------------------------------------------------------

/// A tar stream under construction, appended to in archive order.
#[derive(Debug, Clone, Default)]
pub struct Tar {
    bytes: Vec<u8>,
}

/// Zero bytes that pad `len` up to whole records.
pub fn padding(len: usize) -> usize {
    (BLOCK - len % BLOCK) % BLOCK
}

/// One PAX record, `"<len> <key>=<value>\n"`, where `<len>` counts the whole record.
pub fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}").len() + body.len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

impl Tar {
    /// An empty stream.
    pub fn new() -> Tar {
        Tar::default()
    }

    /// Appends one header record.
    pub fn header(mut self, h: &Header) -> Tar {
        self.bytes.extend_from_slice(&h.block());
        self
    }

    /// Appends member data and its zero padding to a whole record.
    pub fn data(mut self, data: &[u8]) -> Tar {
        self.bytes.extend_from_slice(data);
        self.bytes.resize(self.bytes.len() + padding(data.len()), 0);
        self
    }

    /// A header followed by `data` (the header's size is left as the test set it).
    pub fn member(self, h: &Header, data: &[u8]) -> Tar {
        self.header(h).data(data)
    }

    /// A GNU regular file with a short name (at most 100 bytes).
    pub fn file(self, name: &str, data: &[u8]) -> Tar {
        self.member(&Header::file(name, data.len() as u64), data)
    }

    /// A POSIX ustar regular file; names over 100 bytes are split into prefix and name at a `/`.
    pub fn ustar_file(self, name: &str, data: &[u8]) -> Tar {
        let h = if name.len() <= 100 {
            Header::ustar_file(name, data.len() as u64)
        } else {
            let cut = name[..name.len().min(156)].rfind('/').expect("ustar names need a '/' to split");
            Header::ustar_file(&name[cut + 1..], data.len() as u64).prefix_field(&name.as_bytes()[..cut])
        };
        self.member(&h, data)
    }

    /// A GNU directory entry (`name` should end with `/`, as GNU tar writes it).
    pub fn dir(self, name: &str) -> Tar {
        self.header(&Header::dir(name))
    }

    /// A GNU `L` record named `././@LongLink` carrying `payload` verbatim as its data.
    pub fn long_name_raw(self, payload: &[u8]) -> Tar {
        let h =
            Header::new(Format::Gnu, b"././@LongLink", flag::GNU_LONG_NAME, payload.len() as u64).mode(0o644);
        self.member(&h, payload)
    }

    /// A well-formed GNU `L` record for `name`: its bytes and one NUL.
    pub fn long_name(self, name: &str) -> Tar {
        let mut payload = name.as_bytes().to_vec();
        payload.push(0);
        self.long_name_raw(&payload)
    }

    /// A regular file as 0.6.2 (tar-rs) and GNU tar write a name over 100 bytes: an `L` record,
    /// then the member with the first 100 bytes of the name in its own name field.
    pub fn long_file(self, name: &str, data: &[u8]) -> Tar {
        let short = &name.as_bytes()[..name.len().min(100)];
        let h = Header::new(Format::Gnu, short, flag::REGULAR, data.len() as u64);
        self.long_name(name).member(&h, data)
    }

    /// A PAX extended header (`flag::PAX` or `flag::PAX_GLOBAL`) holding `records`.
    pub fn pax(self, type_flag: u8, records: &[(&str, &str)]) -> Tar {
        let body: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        let h = Header::new(Format::Ustar, b"PaxHeaders.0/x", type_flag, body.len() as u64).mode(0o644);
        self.member(&h, &body)
    }

    /// One all-zero record.
    pub fn zero_block(mut self) -> Tar {
        self.bytes.resize(self.bytes.len() + BLOCK, 0);
        self
    }

    /// The end-of-archive marker: two zero records.
    pub fn end(self) -> Tar {
        self.zero_block().zero_block()
    }

    /// Arbitrary bytes (trailing data, a second archive, a cut).
    pub fn raw(mut self, bytes: &[u8]) -> Tar {
        self.bytes.extend_from_slice(bytes);
        self
    }

    /// A snapshot's two members: `manifest.json` first, then the upper (export order).
    pub fn snapshot(self, s: &Snapshot) -> Tar {
        self.file(&s.manifest_path(), &s.manifest_bytes()).file(&s.upper_path(), &s.upper)
    }

    /// A snapshot's upper first and its manifest after it (legal: 0.6.2 accepts any order).
    pub fn snapshot_upper_first(self, s: &Snapshot) -> Tar {
        self.file(&s.upper_path(), &s.upper).file(&s.manifest_path(), &s.manifest_bytes())
    }

    /// Every file of an image cache, in 0.6.2 export order.
    pub fn cache(self, c: &ImageCache) -> Tar {
        c.files().iter().fold(self, |t, (name, data)| t.file(name, data))
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing was appended yet.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The stream.
    pub fn build(self) -> Vec<u8> {
        self.bytes
    }
}

/// One member of a tar stream, as [`read_members`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarMember {
    /// Offset of its header (of the `L` record when there is one).
    pub offset: usize,
    /// Full name (long name resolved).
    pub name: String,
    /// Type flag.
    pub type_flag: u8,
    /// Data.
    pub data: Vec<u8>,
}

/// Reads the members of a well-formed, trusted tar stream (fixtures, builder output): octal
/// sizes, GNU `L` names; stops at the first zero record; a truncated last member keeps the data
/// that is there. Not a validator: panics on nonsense.
pub fn read_members(tar: &[u8]) -> Vec<TarMember> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut long: Option<(usize, String)> = None;
    while pos + BLOCK <= tar.len() && tar[pos..pos + BLOCK].iter().any(|&b| b != 0) {
        let h = &tar[pos..pos + BLOCK];
        let text = std::str::from_utf8(&h[field::SIZE]).expect("size field");
        let size = usize::from_str_radix(text.trim_matches(|c| c == '\0' || c == ' '), 8).expect("octal");
        let data = tar[(pos + BLOCK).min(tar.len())..(pos + BLOCK + size).min(tar.len())].to_vec();
        let type_flag = h[field::TYPEFLAG];
        let raw_name = &h[field::NAME];
        let short =
            String::from_utf8_lossy(&raw_name[..raw_name.iter().position(|&b| b == 0).unwrap_or(100)])
                .into_owned();
        if type_flag == flag::GNU_LONG_NAME {
            let name = String::from_utf8_lossy(data.strip_suffix(&[0]).unwrap_or(&data)).into_owned();
            long = Some((pos, name));
        } else {
            let (offset, name) = long.take().unwrap_or((pos, short));
            out.push(TarMember { offset, name, type_flag, data });
        }
        pos += BLOCK + size + padding(size);
    }
    out
}

/// Header offsets of every record [`read_members`] would visit (long-name records included).
pub fn header_offsets(tar: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + BLOCK <= tar.len() && tar[pos..pos + BLOCK].iter().any(|&b| b != 0) {
        out.push(pos);
        let text = std::str::from_utf8(&tar[pos + field::SIZE.start..pos + field::SIZE.end]).unwrap_or("0");
        let size = usize::from_str_radix(text.trim_matches(|c| c == '\0' || c == ' '), 8).unwrap_or(0);
        pos += BLOCK + size + padding(size);
    }
    out
}

/// Rebuilds a tar stream from members (regular files, GNU headers, long names as needed).
pub fn write_members(members: &[TarMember]) -> Vec<u8> {
    members
        .iter()
        .fold(Tar::new(), |t, m| {
            if m.name.len() > 100 {
                t.long_file(&m.name, &m.data)
            } else {
                let h = Header::new(Format::Gnu, m.name.as_bytes(), m.type_flag, m.data.len() as u64);
                t.member(&h, &m.data)
            }
        })
        .end()
        .build()
}

// ---------------------------------------------------------------------------------------------
// Snapshots and manifests
// ---------------------------------------------------------------------------------------------

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// `msb-sparse-sha256-v1` of `bytes`: SHA-256 over the tag, a NUL, the length (u64 LE) and
/// the content (`docs/format-0.6.2.md` §3.2).
pub fn sparse_digest(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"msb-sparse-sha256-v1\0");
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
    format!("sha256:{}", hex(&h.finalize()))
}

/// The digest of `bytes` by a file plan's `algorithm` name (`sha256` or
/// `msb-sparse-sha256-v1`), `sha256:<hex>`, computed from the definitions above; panics on any
/// other name (a test's plan never has one).
pub fn plan_digest(algorithm: &str, bytes: &[u8]) -> String {
    match algorithm {
        "sha256" => sha256_digest(bytes),
        "msb-sparse-sha256-v1" => sparse_digest(bytes),
        other => panic!("a plan names algorithm {other:?}"),
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Which integrity a manifest records for its upper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    /// `"integrity": null`.
    Null,
    /// Plain `sha256`.
    Sha256,
    /// `msb-sparse-sha256-v1`.
    Sparse,
}

/// A valid 0.6.2 manifest for `upper`: image `docker.io/library/alpine:3.20`, no parent, no
/// labels, `upper.ext4`, `source_sandbox` set, integrity as asked and computed from `upper`.
pub fn manifest_for(upper: &[u8], integrity: Integrity) -> Manifest {
    let integrity = match integrity {
        Integrity::Null => None,
        Integrity::Sha256 => {
            Some(UpperIntegrity { algorithm: "sha256".into(), digest: sha256_digest(upper) })
        }
        Integrity::Sparse => {
            Some(UpperIntegrity { algorithm: "msb-sparse-sha256-v1".into(), digest: sparse_digest(upper) })
        }
    };
    Manifest {
        schema: 1,
        format: SnapshotFormat::Raw,
        fstype: "ext4".into(),
        image: ImageRef {
            reference: "docker.io/library/alpine:3.20".into(),
            manifest_digest: format!("sha256:{}", "0".repeat(63) + "1"),
        },
        parent: None,
        created_at: "2026-05-01T12:00:00.123456789+00:00".into(),
        labels: BTreeMap::new(),
        upper: UpperLayer { file: "upper.ext4".into(), size_bytes: upper.len() as u64, integrity },
        source_sandbox: Some("builder".into()),
    }
}

/// An upper image of `len` bytes: mostly zero (holes), with a few marker bytes derived from
/// `seed` so that different seeds give different digests.
pub fn upper_bytes(len: usize, seed: u8) -> Vec<u8> {
    let mut v = vec![0u8; len];
    for (i, at) in [0, len / 3, len.saturating_sub(1)].into_iter().enumerate() {
        if let Some(b) = v.get_mut(at) {
            *b = seed.wrapping_add(i as u8).max(1);
        }
    }
    v
}

/// A snapshot: its manifest and its upper's bytes. The prefix is the one 0.6.2 export uses
/// (`sha256-<16 hex>` of the manifest digest) unless a test sets another.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The manifest (edit freely; digests of the upper are not recomputed).
    pub manifest: Manifest,
    /// The upper's content.
    pub upper: Vec<u8>,
    /// Archive prefix override.
    pub prefix: Option<String>,
}

impl Snapshot {
    /// A valid snapshot of `upper` with the given integrity.
    pub fn new(upper: Vec<u8>, integrity: Integrity) -> Snapshot {
        Snapshot { manifest: manifest_for(&upper, integrity), upper, prefix: None }
    }

    /// A small valid snapshot (16 KiB sparse upper, `msb-sparse-sha256-v1`).
    pub fn small(seed: u8) -> Snapshot {
        Snapshot::new(upper_bytes(16 << 10, seed), Integrity::Sparse)
    }

    /// Sets the parent digest.
    pub fn parent(mut self, digest: &str) -> Snapshot {
        self.manifest.parent = Some(digest.into());
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Snapshot {
        self.manifest.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the image reference and its pinned manifest digest.
    pub fn image(mut self, reference: &str, manifest_digest: &str) -> Snapshot {
        self.manifest.image =
            ImageRef { reference: reference.into(), manifest_digest: manifest_digest.into() };
        self
    }

    /// Uses `prefix` as the archive directory instead of the digest-derived one.
    pub fn with_prefix(mut self, prefix: &str) -> Snapshot {
        self.prefix = Some(prefix.into());
        self
    }

    /// Canonical manifest bytes (what 0.6.2 writes).
    pub fn manifest_bytes(&self) -> Vec<u8> {
        self.manifest.canonical_bytes()
    }

    /// The snapshot digest.
    pub fn digest(&self) -> String {
        self.manifest.digest()
    }

    /// The archive prefix.
    pub fn prefix(&self) -> String {
        self.prefix.clone().unwrap_or_else(|| Manifest::archive_prefix(&self.digest()))
    }

    /// `<prefix>/manifest.json`.
    pub fn manifest_path(&self) -> String {
        format!("{}/manifest.json", self.prefix())
    }

    /// `<prefix>/<upper.file>`.
    pub fn upper_path(&self) -> String {
        format!("{}/{}", self.prefix(), self.manifest.upper.file)
    }
}

/// A plain tar bundle of `snapshots` in order, ended properly.
pub fn bundle_tar(snapshots: &[Snapshot]) -> Vec<u8> {
    snapshots.iter().fold(Tar::new(), |t, s| t.snapshot(s)).end().build()
}

/// A chain of `n` small snapshots, root first, each the parent of the next.
pub fn chain(n: usize) -> Vec<Snapshot> {
    let mut out: Vec<Snapshot> = Vec::new();
    for i in 0..n {
        let mut s = Snapshot::small(i as u8 + 1);
        if let Some(p) = out.last() {
            s = s.parent(&p.digest());
        }
        out.push(s);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Image cache
// ---------------------------------------------------------------------------------------------

/// An image cache as `export --with-image` writes it: metadata with correct digests, and the
/// fsmeta, VMDK and per-layer EROFS files it pins. Tests break it by editing the fields.
#[derive(Debug, Clone)]
pub struct ImageCache {
    /// The normalized image reference (`docker.io/library/python:3.12`).
    pub reference: String,
    /// The metadata (serialized compactly by [`ImageCache::files`]).
    pub metadata: CachedImageMetadata,
    /// Content of the fsmeta EROFS file.
    pub fsmeta: Vec<u8>,
    /// Content of the VMDK descriptor.
    pub vmdk: Vec<u8>,
    /// Content of each layer's EROFS file, in metadata order.
    pub layers: Vec<Vec<u8>>,
    /// Extra files appended after the expected ones (name, data).
    pub extra: Vec<(String, Vec<u8>)>,
}

impl ImageCache {
    /// A consistent cache for `reference` (already normalized) with `layers` layers.
    pub fn new(reference: &str, layers: usize) -> ImageCache {
        let diff_ids: Vec<String> =
            (0..layers).map(|i| sha256_digest(format!("diff-{i}").as_bytes())).collect();
        let blobs: Vec<String> = (0..layers).map(|i| sha256_digest(format!("blob-{i}").as_bytes())).collect();
        let ids: Vec<String> = diff_ids.iter().map(|d| format!("\"{d}\"")).collect();
        let raw_config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
            ids.join(",")
        );
        let config_digest = sha256_digest(raw_config.as_bytes());
        let layer_json: Vec<String> = blobs
            .iter()
            .map(|b| format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{b}","size":4096}}"#))
            .collect();
        let raw_manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{}]}}"#,
            raw_config.len(),
            layer_json.join(",")
        );
        let metadata = CachedImageMetadata {
            manifest_digest: sha256_digest(raw_manifest.as_bytes()),
            config_digest,
            raw_manifest_json: raw_manifest,
            raw_config_json: raw_config,
            config: ImageConfig::default(),
            layers: blobs
                .iter()
                .zip(&diff_ids)
                .map(|(b, d)| CachedLayerMetadata {
                    digest: b.clone(),
                    media_type: Some("application/vnd.oci.image.layer.v1.tar+gzip".into()),
                    size_bytes: Some(4096),
                    diff_id: d.clone(),
                })
                .collect(),
        };
        ImageCache {
            reference: reference.into(),
            metadata,
            fsmeta: vec![0xe0; 4096],
            vmdk: b"# Disk DescriptorFile\nversion=1\n".to_vec(),
            layers: (0..layers).map(|i| vec![i as u8 + 1; 8192]).collect(),
            extra: Vec::new(),
        }
    }

    /// The pinned image manifest digest (what the snapshot's `image.manifest_digest` must say).
    pub fn manifest_digest(&self) -> String {
        self.metadata.manifest_digest.clone()
    }

    /// `cache/manifests/<sha256(reference)>.json`.
    pub fn metadata_path(&self) -> String {
        format!("cache/manifests/{}.json", hex(&Sha256::digest(self.reference.as_bytes())))
    }

    /// `sha256_<hex>` of the pinned manifest digest, the stem of the fsmeta and VMDK files.
    fn image_stem(&self) -> String {
        self.metadata.manifest_digest.replacen(':', "_", 1)
    }

    /// `cache/fsmeta/<stem>.erofs`.
    pub fn fsmeta_path(&self) -> String {
        format!("cache/fsmeta/{}.erofs", self.image_stem())
    }

    /// `cache/vmdk/<stem>.vmdk`.
    pub fn vmdk_path(&self) -> String {
        format!("cache/vmdk/{}.vmdk", self.image_stem())
    }

    /// `cache/layers/<diff_id stem>.erofs` of layer `i`.
    pub fn layer_path(&self, i: usize) -> String {
        format!("cache/layers/{}.erofs", self.metadata.layers[i].diff_id.replacen(':', "_", 1))
    }

    /// The compact metadata JSON, as 0.6.2 writes it.
    pub fn metadata_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.metadata).expect("metadata serializes")
    }

    /// Every file (member name, content) in export order, then the extras.
    pub fn files(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = vec![
            (self.metadata_path(), self.metadata_bytes()),
            (self.fsmeta_path(), self.fsmeta.clone()),
            (self.vmdk_path(), self.vmdk.clone()),
        ];
        out.extend(self.layers.iter().enumerate().map(|(i, l)| (self.layer_path(i), l.clone())));
        out.extend(self.extra.iter().cloned());
        out
    }

    /// A snapshot pinned to this image.
    pub fn pin(&self, s: Snapshot) -> Snapshot {
        let digest = self.manifest_digest();
        s.image(&self.reference, &digest)
    }
}

// ---------------------------------------------------------------------------------------------
// zstd
// ---------------------------------------------------------------------------------------------

/// The zstd frame magic, little-endian on the wire.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// One zstd frame from the C library at level 3 (what 0.6.2 export writes).
pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(bytes, 3).expect("zstd compress")
}

/// One zstd frame with a content checksum (`Content_Checksum_flag`).
pub fn zstd_with_checksum(bytes: &[u8]) -> Vec<u8> {
    let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).expect("encoder");
    enc.include_checksum(true).expect("checksum flag");
    std::io::Write::write_all(&mut enc, bytes).expect("write");
    enc.finish().expect("finish")
}

/// Several frames, one per `frame_len` bytes of input, concatenated (like `pzstd` output).
pub fn zstd_frames(bytes: &[u8], frame_len: usize) -> Vec<u8> {
    bytes.chunks(frame_len.max(1)).flat_map(zstd).collect()
}

/// All frames of `bytes` decoded with the C library.
pub fn unzstd(bytes: &[u8]) -> Vec<u8> {
    zstd::stream::decode_all(bytes).expect("zstd decode")
}

/// A skippable frame (magic `0x184D2A5n`, `n` = `variant & 0xf`) around `payload`.
pub fn skippable_frame(variant: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x50 | (variant & 0x0f), 0x2a, 0x4d, 0x18];
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// A `Window_Descriptor` byte for `2^log * (1 + mantissa/8)` bytes (`log` 10..=41).
pub fn window_descriptor(log: u8, mantissa: u8) -> u8 {
    assert!((10..=41).contains(&log) && mantissa < 8);
    ((log - 10) << 3) | mantissa
}

/// The window size a `Window_Descriptor` byte declares.
pub fn window_size(descriptor: u8) -> u64 {
    let base = 1u64 << (10 + u64::from(descriptor >> 3));
    base + base / 8 * u64::from(descriptor & 7)
}

/// A frame header: magic, `Frame_Header_Descriptor` byte `fhd`, then `rest` verbatim (window
/// descriptor, dictionary id and frame content size, as the descriptor announces them).
pub fn frame_header(fhd: u8, rest: &[u8]) -> Vec<u8> {
    let mut out = ZSTD_MAGIC.to_vec();
    out.push(fhd);
    out.extend_from_slice(rest);
    out
}

/// A frame header with no content size, checksum or dictionary, and a window of
/// `window_size(descriptor)` bytes.
pub fn frame_header_with_window(descriptor: u8) -> Vec<u8> {
    frame_header(0x00, &[descriptor])
}

/// A frame header (window descriptor `descriptor`) whose 4-byte `Frame_Content_Size` says `fcs`.
pub fn frame_header_with_content_size(descriptor: u8, fcs: u32) -> Vec<u8> {
    let mut rest = vec![descriptor];
    rest.extend_from_slice(&fcs.to_le_bytes());
    frame_header(0x80, &rest)
}

/// A frame header that needs dictionary `dict_id` (4-byte `Dictionary_ID`), 1 MiB window.
pub fn frame_header_with_dictionary(dict_id: u32) -> Vec<u8> {
    let mut rest = vec![window_descriptor(20, 0)];
    rest.extend_from_slice(&dict_id.to_le_bytes());
    frame_header(0x03, &rest)
}

/// A 3-byte block header: `last` flag, block type (0 raw, 1 RLE, 2 compressed, 3 reserved),
/// `size` (content size, or the regenerated size for RLE).
pub fn block_header(last: bool, block_type: u8, size: u32) -> [u8; 3] {
    let v = u32::from(last) | (u32::from(block_type & 3) << 1) | (size << 3);
    [v as u8, (v >> 8) as u8, (v >> 16) as u8]
}

/// A raw block holding `data` (at most 128 KiB).
pub fn raw_block(data: &[u8], last: bool) -> Vec<u8> {
    let mut out = block_header(last, 0, data.len() as u32).to_vec();
    out.extend_from_slice(data);
    out
}

/// An RLE block: `count` copies of `byte` (at most 128 KiB) in 4 bytes.
pub fn rle_block(byte: u8, count: u32, last: bool) -> Vec<u8> {
    let mut out = block_header(last, 1, count).to_vec();
    out.push(byte);
    out
}

/// The largest block content a frame may produce (128 KiB).
pub const MAX_BLOCK: u32 = 128 << 10;

/// The raw blocks of a frame holding `data` uncompressed, each at most `min(window, 128 KiB)`
/// (the format's block maximum), the last one flagged last.
pub fn raw_blocks(window: u64, data: &[u8]) -> Vec<u8> {
    let max = window.min(u64::from(MAX_BLOCK)) as usize;
    if data.is_empty() {
        return raw_block(&[], true);
    }
    let n = data.len().div_ceil(max);
    data.chunks(max).enumerate().flat_map(|(i, c)| raw_block(c, i + 1 == n)).collect()
}

/// A whole frame of raw blocks with window descriptor `descriptor` and no content size.
pub fn raw_frame(descriptor: u8, data: &[u8]) -> Vec<u8> {
    let mut f = frame_header_with_window(descriptor);
    f.extend(raw_blocks(window_size(descriptor), data));
    f
}

/// Bytes of a zero bomb, generated lazily: a frame header with a 128 KiB window, one raw block
/// carrying `prefix` (e.g. a tar header), then `rle_blocks` RLE blocks of 128 KiB zeros each,
/// the last one flagged last. Each RLE block is 4 bytes of input for 128 KiB of output.
pub fn zero_bomb(prefix: &[u8], rle_blocks: u64) -> impl Iterator<Item = Vec<u8>> + '_ {
    let head = std::iter::once({
        let mut h = frame_header_with_window(window_descriptor(17, 0));
        h.extend(raw_block(prefix, rle_blocks == 0));
        h
    });
    head.chain((0..rle_blocks).map(move |i| rle_block(0, MAX_BLOCK, i + 1 == rle_blocks)))
}

// ---------------------------------------------------------------------------------------------
// Fixtures, files, randomness
// ---------------------------------------------------------------------------------------------

/// The directory of the microsandbox 0.6.2 reference bundles.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("microsandbox-0.6.2")
}

/// The bytes of fixture `name` (e.g. `a-single.tar.zst`).
pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every fixture bundle name (not the `.expect.json` sidecars), sorted.
pub fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures directory")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".tar") || n.ends_with(".tar.zst"))
        .collect();
    names.sort();
    names
}

/// Whether the fixture's sidecar says 0.6.2 imported it (`"ok": true`).
pub fn fixture_ok(name: &str) -> bool {
    let sidecar = fixture(&format!("{name}.expect.json"));
    let v: serde_json::Value = serde_json::from_slice(&sidecar).expect("sidecar JSON");
    v["ok"].as_bool().expect("sidecar has ok")
}

/// A fresh empty directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<tmp>/snapbundle-test-<pid>-<tag>-<n>`.
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("snapbundle-test-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tiny deterministic PRNG (xorshift64*), so property tests replay exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (a zero seed is replaced, xorshift needs a non-zero state).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform index in `0..n` (`n > 0`).
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(pax_record("path", "a"), b"9 path=a\n");
        let long = pax_record("k", &"v".repeat(95));
        assert_eq!(long.len(), 102);
        assert!(long.starts_with(b"102 "));
    }

    #[test]
    fn headers_round_trip_through_the_tar_crate() {
        let s = Snapshot::small(1);
        let bytes = bundle_tar(std::slice::from_ref(&s));
        let mut a = tar::Archive::new(&bytes[..]);
        let names: Vec<String> =
            a.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, [s.manifest_path(), s.upper_path()]);
        assert_eq!(read_members(&bytes).len(), 2);
    }

    #[test]
    fn window_descriptor_round_trip() {
        assert_eq!(window_size(window_descriptor(10, 0)), 1024);
        assert_eq!(window_size(window_descriptor(31, 0)), 2 << 30);
        assert_eq!(window_size(window_descriptor(20, 4)), (1 << 20) + (1 << 19));
    }

    #[test]
    fn hand_made_frames_decode_with_the_c_library() {
        let mut f = frame_header_with_window(window_descriptor(17, 0));
        f.extend(raw_block(b"abc", false));
        f.extend(rle_block(b'z', 5, true));
        assert_eq!(unzstd(&f), b"abczzzzz");
    }

    #[test]
    fn base256_encoding() {
        assert_eq!(base256(0x0102, 12), [0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
    }
}
