//! Helpers shared by the host integration tests: the reference fixtures with their verdicts, a
//! whole-tree snapshot (paths, types, sizes, content hashes) to prove "nothing written", the
//! built binary, and a tiny GNU tar writer for bundles the fixture set does not have.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod fake_registry;
pub mod mini_registry;
pub mod registry;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use serde_json::Value;
use snapbundle_core::integrity::{Algorithm, IntegrityHasher};
use snapbundle_core::manifest::Manifest;

/// The reference bundles, the repository's copy of what real microsandbox 0.6.2 wrote.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/microsandbox-0.6.2")
}

/// One reference bundle and its `.expect.json`.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// File name, e.g. `b-chain3-with-parents.tar.zst`.
    pub name: String,
    /// Full path of the bundle.
    pub path: PathBuf,
    /// The parsed verdict.
    pub expect: Value,
}

impl Fixture {
    /// Whether real 0.6.2 imports it.
    pub fn ok(&self) -> bool {
        self.expect["ok"].as_bool().expect("`ok` is a bool")
    }

    /// `r-truncated` for `r-truncated.tar.zst`.
    pub fn stem(&self) -> &str {
        let n = self.name.as_str();
        n.strip_suffix(".tar.zst").or_else(|| n.strip_suffix(".tar")).unwrap_or(n)
    }

    /// The bundle's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        fs::read(&self.path).expect("read fixture")
    }

    /// `imported_files` as `(path relative to home, size, sha256, mtime, blocks)`.
    pub fn imported_files(&self) -> Vec<ExpectedFile> {
        self.expect["imported_files"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| ExpectedFile {
                        path: f["path"].as_str().expect("path").to_string(),
                        size: f["size"].as_u64().expect("size"),
                        sha256: f["sha256"].as_str().expect("sha256").to_string(),
                        mtime: f["mtime"].as_i64().expect("mtime"),
                        blocks: f["blocks"].as_u64().expect("blocks"),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A string field of the verdict.
    pub fn str_field(&self, key: &str) -> String {
        self.expect[key].as_str().unwrap_or_else(|| panic!("{}: `{key}` missing", self.name)).to_string()
    }
}

/// One entry of `imported_files`.
#[derive(Debug, Clone)]
pub struct ExpectedFile {
    /// Relative to the home.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex SHA-256.
    pub sha256: String,
    /// mtime in seconds.
    pub mtime: i64,
    /// 512-byte blocks 0.6.2 allocated.
    pub blocks: u64,
}

/// Every fixture that has an `.expect.json`, sorted by name.
pub fn fixtures() -> Vec<Fixture> {
    let dir = fixture_dir();
    let mut out = Vec::new();
    for e in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let name = e.expect("dir entry").file_name().to_string_lossy().into_owned();
        if let Some(bundle) = name.strip_suffix(".expect.json") {
            out.push(fixture(bundle));
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The fixture named `name` (the bundle's file name).
pub fn fixture(name: &str) -> Fixture {
    let path = fixture_dir().join(name);
    let text = fs::read_to_string(fixture_dir().join(format!("{name}.expect.json")))
        .unwrap_or_else(|e| panic!("{name}.expect.json: {e}"));
    let expect: Value = serde_json::from_str(&text).expect("expect.json parses");
    Fixture { name: name.to_string(), path, expect }
}

/// Hashes already computed, keyed by (dev, ino, size, mtime, ctime, algorithm): SHA-256 is slow
/// in debug builds and the same files are snapshotted many times. A file whose content changes
/// gets a new ctime, and a new file a new (inode, ctime), so a stale entry is never reused.
type MemoKey = (u64, u64, u64, i64, i64, i64, i64, String);
static MEMO: Mutex<BTreeMap<MemoKey, String>> = Mutex::new(BTreeMap::new());

/// Lowercase hex SHA-256 of a file's content.
pub fn file_sha256(path: &Path) -> String {
    let d = file_digest(path, "sha256");
    d.strip_prefix("sha256:").unwrap_or(&d).to_string()
}

/// A file's digest by a file plan's `algorithm` name, `sha256:<hex>` (what a plan row says).
pub fn file_digest(path: &Path, algorithm: &str) -> String {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let m = f.metadata().expect("metadata");
    let key = (
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        algorithm.to_string(),
    );
    if let Some(h) = MEMO.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return h.clone();
    }
    let algo = Algorithm::parse(algorithm).unwrap_or_else(|| panic!("plan algorithm {algorithm:?}"));
    let mut h = IntegrityHasher::new(algo, m.len());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let digest = h.finish();
    MEMO.lock().unwrap_or_else(|e| e.into_inner()).insert(key, digest.clone());
    digest
}

/// Number of 4 KiB blocks of a file that hold a non-zero byte.
pub fn nonzero_blocks(path: &Path) -> u64 {
    let data = fs::read(path).expect("read");
    data.chunks(4096).filter(|c| c.iter().any(|&b| b != 0)).count() as u64
}

/// One node of a directory tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory (its mtime is left out: creating and removing a stage inside changes it).
    Dir {
        /// Permission bits.
        mode: u32,
        /// Inode.
        ino: u64,
    },
    /// A regular file.
    File {
        /// Size.
        size: u64,
        /// Content hash.
        sha256: String,
        /// mtime seconds and nanoseconds.
        mtime: (i64, i64),
        /// Permission bits.
        mode: u32,
        /// Inode (0 in a content view).
        ino: u64,
    },
    /// A symbolic link.
    Symlink {
        /// Its target.
        target: PathBuf,
    },
    /// Anything else (file type bits).
    Other(u32),
}

/// A tree: path relative to its root (with `/`) to node. The root itself is not in it.
pub type Tree = BTreeMap<String, Node>;

/// Walks `root` without following symlinks, leaving out verification records
/// ([`is_record_path`]). A missing root is an empty tree.
pub fn tree(root: &Path) -> Tree {
    let mut out = Tree::new();
    if fs::symlink_metadata(root).is_ok() {
        walk(root, "", &mut out);
    }
    out
}

fn walk(dir: &Path, rel: &str, out: &mut Tree) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let r = if rel.is_empty() {
            name.to_string_lossy().into_owned()
        } else {
            format!("{rel}/{}", name.to_string_lossy())
        };
        if is_record_path(&r) || r.ends_with("/cache/snapbundle") {
            continue;
        }
        let m = fs::symlink_metadata(&path).expect("lstat");
        let ft = m.file_type();
        if ft.is_symlink() {
            out.insert(r, Node::Symlink { target: fs::read_link(&path).expect("readlink") });
        } else if ft.is_dir() {
            out.insert(r.clone(), Node::Dir { mode: m.mode() & 0o7777, ino: m.ino() });
            walk(&path, &r, out);
        } else if ft.is_file() {
            out.insert(
                r,
                Node::File {
                    size: m.len(),
                    sha256: file_sha256(&path),
                    mtime: (m.mtime(), m.mtime_nsec()),
                    mode: m.mode() & 0o7777,
                    ino: m.ino(),
                },
            );
        } else {
            out.insert(r, Node::Other(m.mode() & 0o170000));
        }
    }
}

/// The tree without inode numbers: what two separate imports can agree on.
pub fn content(t: &Tree) -> Tree {
    t.iter()
        .map(|(k, v)| {
            let v = match v.clone() {
                Node::File { size, sha256, mtime, mode, .. } => {
                    Node::File { size, sha256, mtime, mode, ino: 0 }
                }
                Node::Dir { mode, .. } => Node::Dir { mode, ino: 0 },
                other => other,
            };
            (k.clone(), v)
        })
        .collect()
}

/// Entries of `after` that are not in `before`.
pub fn added(before: &Tree, after: &Tree) -> Tree {
    after.iter().filter(|(k, _)| !before.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Whether a relative path is (inside) an import stage: `.snapbundle-import-*` directly in a
/// snapshots directory, or `cache/tmp/snapbundle-import-*`.
pub fn is_stage_path(rel: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    parts.iter().any(|p| p.starts_with(".snapbundle-import-"))
        || parts
            .windows(3)
            .any(|w| w[0] == "cache" && w[1] == "tmp" && w[2].starts_with("snapbundle-import-"))
}

/// Whether a relative path is (inside) the verification records (`cache/snapbundle`, see
/// `snapbundle::verified`): snapbundle's own bookkeeping, written only after a promotion, named
/// by inode numbers, never read by microsandbox. [`tree`] leaves it out; `tests/verified.rs`
/// checks it.
pub fn is_record_path(rel: &str) -> bool {
    rel == "cache/snapbundle" || rel.starts_with("cache/snapbundle/")
}

/// The tree without any stage.
pub fn without_stages(t: &Tree) -> Tree {
    t.iter().filter(|(k, _)| !is_stage_path(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Asserts that no stage is left anywhere under `root`.
pub fn assert_no_stage(root: &Path, ctx: &str) {
    let stages: Vec<String> = tree(root).into_keys().filter(|k| is_stage_path(k)).collect();
    assert!(stages.is_empty(), "{ctx}: stages left under {}: {stages:?}", root.display());
}

/// Asserts two trees are equal, listing every difference.
pub fn assert_tree_eq(expected: &Tree, actual: &Tree, ctx: &str) {
    if expected == actual {
        return;
    }
    let mut diff = String::new();
    for (k, v) in expected {
        match actual.get(k) {
            None => diff.push_str(&format!("  missing  {k}: {v:?}\n")),
            Some(a) if a != v => diff.push_str(&format!("  changed  {k}:\n    want {v:?}\n    got  {a:?}\n")),
            _ => {}
        }
    }
    for (k, v) in actual {
        if !expected.contains_key(k) {
            diff.push_str(&format!("  extra    {k}: {v:?}\n"));
        }
    }
    panic!("{ctx}: trees differ:\n{diff}");
}

/// The built `snapbundle` binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_snapbundle"))
}

/// A `snapbundle` command with a clean environment for the test hook and the home.
pub fn command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = Command::new(bin());
    c.args(args).env_remove(snapbundle::crash::ENV).env_remove("MSB_HOME");
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// Runs `snapbundle import <bundle> --home <home> [extra...]`.
pub fn run_import(bundle: &Path, home: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&OsStr> = vec![OsStr::new("import"), bundle.as_os_str()];
    args.extend([OsStr::new("--home"), home.as_os_str(), OsStr::new("--quiet")]);
    args.extend(extra.iter().map(OsStr::new));
    command(args).output().expect("run snapbundle")
}

/// Runs `snapbundle gc --home <home> --json` and returns its JSON.
pub fn run_gc(home: &Path) -> Value {
    let out = command([OsStr::new("gc"), OsStr::new("--home"), home.as_os_str(), OsStr::new("--json")])
        .output()
        .expect("run snapbundle gc");
    assert!(out.status.success(), "gc failed: {}", describe(&out));
    serde_json::from_slice(&out.stdout).expect("gc prints JSON")
}

/// Status, stdout and stderr for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Writes GNU tar members (the header shape 0.6.2 export writes).
#[derive(Debug, Default)]
pub struct TarWriter {
    /// The archive so far.
    pub bytes: Vec<u8>,
}

impl TarWriter {
    /// Appends a regular file.
    pub fn file(&mut self, name: &str, data: &[u8], mtime: u64) {
        let mut h = [0u8; 512];
        assert!(name.len() <= 100, "name too long for this writer");
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0100644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[136..148].copy_from_slice(format!("{mtime:011o}\0").as_bytes());
        h[148..156].copy_from_slice(b"        ");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar ");
        h[263..265].copy_from_slice(b" \0");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        self.bytes.extend_from_slice(&h);
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.resize(self.bytes.len() + pad, 0);
    }

    /// Appends the two zero blocks that end the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.resize(self.bytes.len() + 1024, 0);
        self.bytes
    }
}

/// A canonical 0.6.2 manifest for an upper of `size` bytes (integrity not recorded), with its
/// digest and archive prefix.
pub fn manifest(size: u64, source: &str) -> (Vec<u8>, String, String) {
    let json = format!(
        "{{\"schema\":1,\"format\":\"raw\",\"fstype\":\"ext4\",\"image\":{{\"ref\":\"docker.io/library/alpine:3.20\",\
         \"manifest_digest\":\"sha256:{:064x}\"}},\"parent\":null,\"created_at\":\"2026-05-01T12:00:00+00:00\",\
         \"labels\":{{}},\"upper\":{{\"file\":\"upper.ext4\",\"size_bytes\":{size},\"integrity\":null}},\
         \"source_sandbox\":\"{source}\"}}",
        1
    );
    let m = Manifest::from_bytes(json.as_bytes()).expect("test manifest is valid");
    assert_eq!(m.canonical_bytes(), json.as_bytes(), "test manifest is canonical");
    let digest = m.digest();
    let prefix = Manifest::archive_prefix(&digest);
    (json.into_bytes(), digest, prefix)
}

/// `len` bytes of deterministic, incompressible, nowhere-zero-block data.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
