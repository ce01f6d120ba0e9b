//! Reference fixtures (bundles made and judged by real microsandbox 0.6.2) and the helpers the
//! fixture and oracle tests share: loading a bundle with its `.expect.json`, SHA-256 in hex, feeding
//! a [`Validator`] in chunks, and a [`RecordingSink`] that rebuilds every file from the events.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};
use snapbundle_core::integrity::Hashes;
use snapbundle_core::{Error, Event, Limits, NullSink, Report, Sink, Stop, Validator};

/// Suffix of the verdict file that sits next to each bundle.
pub const EXPECT_SUFFIX: &str = ".expect.json";

/// The directory holding the copied microsandbox 0.6.2 reference bundles.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("microsandbox-0.6.2")
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// One tar member as listed in `bundle_entries` of an `.expect.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleEntry {
    /// Member path as stored in the archive (`cache/<kind>/<file>` for cache files).
    pub path: String,
    /// Tar type flag as a one-character string (`"0"`, `"2"`, `"5"`, ...).
    pub type_flag: String,
    /// Size from the header.
    pub size: u64,
    /// Bytes of data actually present in the archive (less than `size` when truncated).
    pub data_bytes: u64,
    /// SHA-256 (hex) of the data actually present.
    pub data_sha256: String,
    /// Header mtime.
    pub mtime: u64,
}

/// One file real 0.6.2 left under its home after importing the bundle.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ImportedFile {
    /// Path relative to the home: `snapshots/<prefix>/<file>` or `cache/<kind>/<file>`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 (hex).
    pub sha256: String,
    /// Modification time.
    pub mtime: u64,
}

/// The parsed `.expect.json` of a bundle.
#[derive(Debug, Clone)]
pub struct Expect {
    /// Whether real 0.6.2 imports the bundle.
    pub ok: bool,
    /// Bundle file name recorded in the verdict.
    pub bundle: String,
    /// Length of the bundle file.
    pub bundle_bytes: u64,
    /// `zstd` or `none`.
    pub compression: String,
    /// What the bundle exercises.
    pub description: String,
    /// 0.6.2's error text for a rejected bundle.
    pub error_normalized: Option<String>,
    /// Every tar member in archive order.
    pub bundle_entries: Vec<BundleEntry>,
    /// Snapshot digests in archive order (accepted bundles).
    pub snapshot_digests: Vec<String>,
    /// Head digest (accepted bundles).
    pub head_digest: Option<String>,
    /// Head archive prefix (accepted bundles).
    pub head_name: Option<String>,
    /// Head parent digest (accepted bundles; `None` also when the head has no parent).
    pub head_parent_digest: Option<String>,
    /// Head upper size (accepted bundles).
    pub head_size_bytes: Option<u64>,
    /// Files 0.6.2 wrote on import (accepted bundles).
    pub imported_files: Vec<ImportedFile>,
}

fn field<'a>(v: &'a Value, key: &str, ctx: &str) -> &'a Value {
    v.get(key).unwrap_or_else(|| panic!("{ctx}: missing key `{key}`"))
}

fn string(v: &Value, key: &str, ctx: &str) -> String {
    field(v, key, ctx).as_str().unwrap_or_else(|| panic!("{ctx}: `{key}` is not a string")).to_owned()
}

fn opt_string(v: &Value, key: &str, ctx: &str) -> Option<String> {
    match v.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => panic!("{ctx}: `{key}` is neither a string nor null: {other}"),
    }
}

fn number(v: &Value, key: &str, ctx: &str) -> u64 {
    field(v, key, ctx).as_u64().unwrap_or_else(|| panic!("{ctx}: `{key}` is not an unsigned integer"))
}

fn list<'a>(v: &'a Value, key: &str, ctx: &str) -> &'a [Value] {
    match v.get(key) {
        None | Some(Value::Null) => &[],
        Some(Value::Array(a)) => a,
        Some(other) => panic!("{ctx}: `{key}` is not an array: {other}"),
    }
}

impl Expect {
    /// Parses an `.expect.json` document; `ctx` names it in panics.
    pub fn parse(text: &str, ctx: &str) -> Expect {
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{ctx}: bad JSON: {e}"));
        let ok = field(&v, "ok", ctx).as_bool().unwrap_or_else(|| panic!("{ctx}: `ok` is not a bool"));
        let bundle_entries = list(&v, "bundle_entries", ctx)
            .iter()
            .map(|e| BundleEntry {
                path: string(e, "path", ctx),
                type_flag: string(e, "type", ctx),
                size: number(e, "size", ctx),
                data_bytes: number(e, "data_bytes", ctx),
                data_sha256: string(e, "data_sha256", ctx),
                mtime: number(e, "mtime", ctx),
            })
            .collect();
        let imported_files = list(&v, "imported_files", ctx)
            .iter()
            .map(|f| ImportedFile {
                path: string(f, "path", ctx),
                size: number(f, "size", ctx),
                sha256: string(f, "sha256", ctx),
                mtime: number(f, "mtime", ctx),
            })
            .collect();
        let snapshot_digests = list(&v, "snapshot_digests", ctx)
            .iter()
            .map(|d| d.as_str().unwrap_or_else(|| panic!("{ctx}: non-string snapshot digest")).to_owned())
            .collect();
        Expect {
            ok,
            bundle: string(&v, "bundle", ctx),
            bundle_bytes: number(&v, "bundle_bytes", ctx),
            compression: string(&v, "compression", ctx),
            description: string(&v, "description", ctx),
            error_normalized: opt_string(&v, "error_normalized", ctx),
            bundle_entries,
            snapshot_digests,
            head_digest: opt_string(&v, "head_digest", ctx),
            head_name: opt_string(&v, "head_name", ctx),
            head_parent_digest: opt_string(&v, "head_parent_digest", ctx),
            head_size_bytes: v.get("head_size_bytes").and_then(Value::as_u64),
            imported_files,
        }
    }
}

/// A reference bundle with its verdict.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// File name of the bundle, e.g. `r-truncated.tar.zst`.
    pub file_name: String,
    /// The bundle's bytes.
    pub bytes: Vec<u8>,
    /// Its `.expect.json`.
    pub expect: Expect,
}

impl Fixture {
    /// The file name without `.tar` / `.tar.zst`, e.g. `r-truncated`.
    pub fn stem(&self) -> &str {
        let n = self.file_name.as_str();
        n.strip_suffix(".tar.zst").or_else(|| n.strip_suffix(".tar")).unwrap_or(n)
    }

    /// Whether the bundle is zstd-compressed, per its verdict file.
    pub fn is_zstd(&self) -> bool {
        self.expect.compression == "zstd"
    }

    /// The plain tar stream: the bundle itself, or its zstd frames decoded by the `zstd` crate.
    pub fn tar_bytes(&self) -> Vec<u8> {
        if self.is_zstd() {
            zstd::stream::decode_all(self.bytes.as_slice())
                .unwrap_or_else(|e| panic!("{}: zstd crate cannot decode it: {e}", self.file_name))
        } else {
            self.bytes.clone()
        }
    }
}

/// Names of the bundle files in `dir`: every file that is not an `.expect.json` or a README,
/// sorted. Panics if a bundle lacks its verdict file or a verdict file lacks its bundle.
pub fn bundle_names(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut expects = Vec::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())) {
        let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        let name = entry.file_name().into_string().unwrap_or_else(|n| panic!("non-UTF-8 file name {n:?}"));
        if !entry.file_type().map(|t| t.is_file()).unwrap_or(false) || name.eq_ignore_ascii_case("README.md")
        {
            continue;
        }
        match name.strip_suffix(EXPECT_SUFFIX) {
            Some(bundle) => expects.push(bundle.to_owned()),
            None => names.push(name),
        }
    }
    names.sort();
    expects.sort();
    for n in &names {
        assert!(expects.contains(n), "bundle {n} has no {n}{EXPECT_SUFFIX}");
    }
    for e in &expects {
        assert!(names.contains(e), "{e}{EXPECT_SUFFIX} has no bundle {e}");
    }
    names
}

/// Loads one fixture by bundle file name from `dir`.
pub fn load_fixture(dir: &Path, file_name: &str) -> Fixture {
    let path = dir.join(file_name);
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let expect_path = dir.join(format!("{file_name}{EXPECT_SUFFIX}"));
    let text = fs::read_to_string(&expect_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", expect_path.display()));
    let expect = Expect::parse(&text, file_name);
    Fixture { file_name: file_name.to_owned(), bytes, expect }
}

/// Every fixture in [`fixture_dir`], sorted by file name.
pub fn all_fixtures() -> Vec<Fixture> {
    let dir = fixture_dir();
    bundle_names(&dir).iter().map(|n| load_fixture(&dir, n)).collect()
}

/// Runs a fresh validator over `bytes` pushed in chunks of `chunk` bytes (the whole input at once
/// when `chunk` is 0), stopping at the first error as a streaming caller would.
pub fn validate_chunked<S: Sink>(bytes: &[u8], chunk: usize, sink: &mut S) -> Result<Report, Error> {
    let mut v = Validator::new(Limits::default());
    if chunk == 0 {
        v.push(bytes, sink)?;
    } else {
        for piece in bytes.chunks(chunk) {
            v.push(piece, sink)?;
        }
    }
    v.finish()
}

/// [`validate_chunked`] with a [`NullSink`].
pub fn validate_null(bytes: &[u8], chunk: usize) -> Result<Report, Error> {
    validate_chunked(bytes, chunk, &mut NullSink)
}

/// A member announced by the validator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedMember {
    /// Header record index.
    pub index: u32,
    /// Path as stored.
    pub path: String,
    /// Whether the slot is a directory.
    pub is_dir: bool,
    /// Size from the header.
    pub size: u64,
}

/// A file rebuilt from `Data` and `Hole` events, closed by its `FileEnd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedFile {
    /// Header record index of the member.
    pub index: u32,
    /// Path as stored in the archive.
    pub path: String,
    /// Bytes covered by `Data` and `Hole` events.
    pub len: u64,
    /// Of those, bytes covered by `Hole` events.
    pub hole_bytes: u64,
    /// SHA-256 (hex) of the rebuilt content (holes as zero bytes).
    pub sha256: String,
    /// `msb-sparse-sha256-v1` (hex) of the rebuilt content, computed here from its definition.
    pub sparse_sha256: String,
    /// The digests the `Member` event announced.
    pub hashes: Hashes,
    /// `size` of the `FileEnd` event.
    pub end_size: u64,
    /// The `FileEnd` event's SHA-256, hex, if it carried one.
    pub end_sha256: Option<String>,
    /// The `FileEnd` event's `msb-sparse-sha256-v1`, hex, if it carried one.
    pub end_sparse_sha256: Option<String>,
}

impl RecordedFile {
    /// The rebuilt content's digest by a plan's `algorithm` name, `sha256:<hex>`.
    pub fn rebuilt_digest(&self, algorithm: &str) -> Option<String> {
        match algorithm {
            "sha256" => Some(format!("sha256:{}", self.sha256)),
            "msb-sparse-sha256-v1" => Some(format!("sha256:{}", self.sparse_sha256)),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct OpenFile {
    member: RecordedMember,
    next: u64,
    hole_bytes: u64,
    hasher: Sha256,
    sparse: Sha256,
    hashes: Hashes,
}

/// A SHA-256 primed with the `msb-sparse-sha256-v1` prefix for `len` bytes, from its definition.
fn sparse_hasher(len: u64) -> Sha256 {
    let mut h = Sha256::new();
    h.update(b"msb-sparse-sha256-v1\0");
    h.update(len.to_le_bytes());
    h
}

/// A sink that wants data and rebuilds every file from the event stream, checking on the way that
/// the events tile each file in order (no gap, no overlap) and that no `Data` event carries a whole
/// aligned 4 KiB block of zeros (those must come as holes). Violations are collected in `problems`.
#[derive(Debug, Default)]
pub struct RecordingSink {
    /// Every `Member` event, in order.
    pub members: Vec<RecordedMember>,
    /// Every file closed by a `FileEnd` event, in order.
    pub files: Vec<RecordedFile>,
    /// Protocol violations seen.
    pub problems: Vec<String>,
    open: Option<OpenFile>,
}

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

impl RecordingSink {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The member whose data is being received, if any.
    pub fn open_member(&self) -> Option<&RecordedMember> {
        self.open.as_ref().map(|o| &o.member)
    }

    fn at(&mut self, what: &str, offset: u64, len: u64) -> Option<&mut OpenFile> {
        let problem = match self.open.as_ref() {
            None => Some(format!("{what} at {offset} (+{len}) outside any file")),
            Some(o) if o.member.is_dir => Some(format!("{what} inside directory {}", o.member.path)),
            Some(o) if offset != o.next => {
                Some(format!("{what} of {} at offset {offset}, expected {}", o.member.path, o.next))
            }
            Some(o) if offset.checked_add(len).is_none_or(|end| end > o.member.size) => Some(format!(
                "{what} of {} at {offset}+{len} runs past size {}",
                o.member.path, o.member.size
            )),
            Some(_) => None,
        };
        match problem {
            Some(p) => {
                self.problems.push(p);
                None
            }
            None => self.open.as_mut(),
        }
    }
}

impl Sink for RecordingSink {
    fn wants_data(&self) -> bool {
        true
    }

    fn event(&mut self, event: Event<'_>) -> Result<(), Stop> {
        match event {
            Event::Member(m) => {
                if let Some(o) = self.open.take() {
                    if !o.member.is_dir {
                        self.problems.push(format!("{} never got its FileEnd", o.member.path));
                    }
                }
                let member = RecordedMember {
                    index: m.index,
                    path: m.path.to_owned(),
                    is_dir: m.slot.is_dir(),
                    size: m.size,
                };
                self.members.push(member.clone());
                let sparse = sparse_hasher(m.size);
                let (hashes, hasher) = (m.hashes, Sha256::new());
                // Every 0.6.2 file announces its digests; a 0.7 member may announce none.
                let msb = matches!(m.slot, snapbundle_core::names::Slot::Msb { .. });
                if !msb && m.slot.is_dir() != (hashes == Hashes::NONE) {
                    self.problems.push(format!("{}: announces hashes {hashes:?}", m.path));
                }
                self.open = Some(OpenFile { member, next: 0, hole_bytes: 0, hasher, sparse, hashes });
            }
            Event::Data { offset, bytes } => {
                let len = bytes.len() as u64;
                let mut zero_block_at = None;
                if let Some(o) = self.at("data", offset, len) {
                    o.hasher.update(bytes);
                    o.sparse.update(bytes);
                    o.next += len;
                    // Whole 4 KiB blocks, aligned to the file offset, lying inside this slice.
                    let first = offset.next_multiple_of(4096);
                    let mut b = first;
                    while b + 4096 <= offset + len {
                        let start = usize::try_from(b - offset).unwrap_or(usize::MAX);
                        if bytes.get(start..start + 4096).is_some_and(|blk| blk.iter().all(|&x| x == 0)) {
                            zero_block_at = Some((o.member.path.clone(), b));
                            break;
                        }
                        b += 4096;
                    }
                }
                if let Some((path, b)) = zero_block_at {
                    self.problems.push(format!("{path}: zero block at {b} sent as data, not as a hole"));
                }
            }
            Event::Hole { offset, len } => {
                if let Some(o) = self.at("hole", offset, len) {
                    let mut left = len;
                    while left > 0 {
                        let n = left.min(ZEROS.len() as u64);
                        o.hasher.update(&ZEROS[..n as usize]);
                        o.sparse.update(&ZEROS[..n as usize]);
                        left -= n;
                    }
                    o.next += len;
                    o.hole_bytes += len;
                }
            }
            Event::FileEnd { size, digests } => match self.open.take() {
                Some(o) if !o.member.is_dir => {
                    if digests.hashes() != o.hashes {
                        self.problems.push(format!(
                            "{}: FileEnd carries {:?}, the member announced {:?}",
                            o.member.path,
                            digests.hashes(),
                            o.hashes
                        ));
                    }
                    self.files.push(RecordedFile {
                        index: o.member.index,
                        path: o.member.path,
                        len: o.next,
                        hole_bytes: o.hole_bytes,
                        sha256: hex(&o.hasher.finalize()),
                        sparse_sha256: hex(&o.sparse.finalize()),
                        hashes: o.hashes,
                        end_size: size,
                        end_sha256: digests.sha256.map(|d| hex(&d)),
                        end_sparse_sha256: digests.sparse_sha256.map(|d| hex(&d)),
                    })
                }
                other => self.problems.push(format!("FileEnd without an open file (open: {other:?})")),
            },
        }
        Ok(())
    }
}

/// A fresh, uniquely named directory under [`std::env::temp_dir`], removed with everything in it
/// when dropped.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates `<tmp>/snapbundle-<tag>-<pid>-<nanos>-<n>`; fails rather than reuse an existing one.
    pub fn new(tag: &str) -> ScratchDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("snapbundle-{tag}-{}-{nanos}-{n}", std::process::id()));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        ScratchDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
