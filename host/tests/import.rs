//! `snapbundle import` against a real store on disk: the reference bundles, hostile stores,
//! crashes at every phase, a full disk, racing importers, the microsandbox index, `--dest` and
//! standard input.
//!
//! "Nothing written" is always checked the same way: the whole scratch tree (every path, its type,
//! size, content hash, mtime, mode and inode; directory mtimes excepted, since a stage is created
//! and removed inside the snapshots directory) is snapshotted before and compared after.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, MetadataExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::Value;
use snapbundle::error::HostError;
use snapbundle::home::Home;
use snapbundle::import::{import, ImportOptions, ImportOutcome};
use snapbundle::index::IndexOutcome;
use support::{
    added, assert_no_stage, assert_tree_eq, command, content, describe, fixture, fixtures, is_stage_path,
    manifest, noise, nonzero_blocks, run_gc, run_import, tree, without_stages, Fixture, Node, TarWriter,
    Tree,
};

/// Three snapshots, root first, head last; no cache files.
const CHAIN: &str = "b-chain3-with-parents.tar.zst";
/// One snapshot with five image cache files.
const IMAGE: &str = "d-with-image-2layers.tar.zst";
/// The snapshot every baseline home already holds.
const BASE: &str = "e-labels.tar.zst";
/// An unrelated bundle, imported as the "next run" that recovers a crashed one.
const OTHER: &str = "i-source-set.tar.zst";
/// What `GlobalCache::new` creates under `<home>/cache`.
const CACHE_DIRS: [&str; 5] = ["manifests", "layers", "fsmeta", "vmdk", "tmp"];

/// Each rejected reference bundle with the error kind and code our spec calls for (the same table
/// as `tests/tests/fixtures.rs`, which checks the locations).
const REJECTIONS: &[(&str, &str, &str)] = &[
    ("r-absolute-path", "tar", "unsafe_path"),
    ("r-cache-metadata-digest-mismatch", "cache", "cache_metadata_digest_mismatch"),
    ("r-cache-unexpected-kind", "tar", "unexpected_member"),
    ("r-dot-slash-paths", "tar", "unsafe_path"),
    ("r-dotdot-path", "tar", "unsafe_path"),
    ("r-empty-archive", "bundle", "no_snapshot_manifest"),
    ("r-manifest-schema-2", "manifest", "manifest_schema"),
    ("r-manifest-unknown-field", "manifest", "manifest_parse"),
    ("r-symlink-entry", "tar", "unsupported_entry_type"),
    ("r-truncated", "tar", "truncated"),
    ("r-upper-size-mismatch", "snapshot", "upper_size_mismatch"),
    ("r-wrong-sparse-digest", "snapshot", "upper_digest_mismatch"),
];

/// Imports `bundle` with the library into the home at `root` (snapshots in `dest` if given).
fn lib_import(bundle: &Path, root: &Path, dest: Option<&Path>) -> Result<ImportOutcome, HostError> {
    let home = Home::at(root).with_snapshots_dir(dest.map(Path::to_path_buf));
    let mut f = fs::File::open(bundle).expect("open bundle");
    import(&mut f, &bundle.display().to_string(), &home, &ImportOptions { quiet: true, ..Default::default() })
}

/// A home as microsandbox leaves it: the cache directories `GlobalCache::new` creates, one
/// imported snapshot, and a layer of some other image in the cache.
fn make_baseline(root: &Path) {
    for d in CACHE_DIRS {
        fs::create_dir_all(root.join("cache").join(d)).expect("mkdir cache");
    }
    lib_import(&fixture(BASE).path, root, None).expect("baseline import");
    let other_layer = root.join("cache/layers").join(format!("sha256_{}.erofs", "e".repeat(64)));
    fs::write(other_layer, noise(4096, 7)).expect("write other layer");
}

/// The baseline plus the image bundle: a snapshot and a full image cache.
fn make_baseline_with_cache(root: &Path) {
    make_baseline(root);
    lib_import(&fixture(IMAGE).path, root, None).expect("image import");
}

/// What a clean import of `bundle` adds to a baseline home (inode-free view).
fn reference_additions(bundle: &str) -> Tree {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("home");
    make_baseline(&root);
    let before = tree(&root);
    lib_import(&fixture(bundle).path, &root, None).expect("clean import");
    let after = tree(&root);
    assert_tree_eq(&before, &restrict(&after, &before), "clean import keeps the baseline");
    content(&added(&before, &after))
}

/// `t` limited to the keys of `keys`.
fn restrict(t: &Tree, keys: &Tree) -> Tree {
    t.iter().filter(|(k, _)| keys.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Asserts the home holds its baseline untouched plus exactly `expected_additions`, and no stage.
fn assert_home_is(root: &Path, before: &Tree, expected_additions: &Tree, ctx: &str) {
    assert_no_stage(root, ctx);
    let now = tree(root);
    assert_tree_eq(before, &restrict(&now, before), &format!("{ctx}: existing content"));
    assert_tree_eq(expected_additions, &content(&added(before, &now)), &format!("{ctx}: additions"));
}

fn union(a: &Tree, b: &Tree) -> Tree {
    a.iter().chain(b.iter()).map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", describe(out)))
}

// ------------------------------------------------------------------------------------------------
// 1. Positive fixtures
// ------------------------------------------------------------------------------------------------

/// Checks a fresh home after importing `fx`: exactly the `imported_files` (path, size, sha256,
/// mtime), no symlinks or other files, and as directories only the parents of those files plus
/// `cache/tmp` when the bundle has cache files (the cache stage lived there; microsandbox's own
/// `GlobalCache::new` creates it too). Uppers keep their holes.
fn assert_home_holds_exactly(root: &Path, fx: &Fixture, ctx: &str) {
    let t = tree(root);
    let expected = fx.imported_files();
    assert!(!expected.is_empty(), "{ctx}: the fixture lists imported files");
    let mut want_dirs = BTreeSet::new();
    for f in &expected {
        let mut p = Path::new(&f.path).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            want_dirs.insert(d.to_str().expect("utf-8").to_string());
            p = d.parent();
        }
    }
    if expected.iter().any(|f| f.path.starts_with("cache/")) {
        want_dirs.insert("cache/tmp".to_string());
    }
    // The verification records (left out of `tree`) live in `cache/snapbundle`: an upper with
    // recorded integrity gets one, so `cache` exists even without image files.
    let recorded = expected.iter().filter(|f| f.path.ends_with("/manifest.json")).any(|f| {
        let m: serde_json::Value =
            serde_json::from_slice(&fs::read(root.join(&f.path)).expect("manifest")).expect("manifest JSON");
        !m["upper"]["integrity"].is_null()
    });
    if recorded {
        want_dirs.insert("cache".to_string());
    }
    let dirs: BTreeSet<String> =
        t.iter().filter(|(_, n)| matches!(n, Node::Dir { .. })).map(|(k, _)| k.clone()).collect();
    assert_eq!(dirs, want_dirs, "{ctx}: directories in the home");
    let others: Vec<&String> = t
        .iter()
        .filter(|(_, n)| !matches!(n, Node::Dir { .. } | Node::File { .. }))
        .map(|(k, _)| k)
        .collect();
    assert!(others.is_empty(), "{ctx}: non-regular entries {others:?}");
    let files: BTreeSet<&String> =
        t.iter().filter(|(_, n)| matches!(n, Node::File { .. })).map(|(k, _)| k).collect();
    let want_files: BTreeSet<&String> = expected.iter().map(|f| &f.path).collect();
    assert_eq!(files, want_files, "{ctx}: files in the home");
    for f in &expected {
        let Some(Node::File { size, sha256, mtime, .. }) = t.get(&f.path) else { unreachable!() };
        assert_eq!(*size, f.size, "{ctx}: size of {}", f.path);
        assert_eq!(sha256, &f.sha256, "{ctx}: sha256 of {}", f.path);
        assert_eq!(*mtime, (f.mtime, 0), "{ctx}: mtime of {}", f.path);
        let is_upper = f.path.starts_with("snapshots/") && !f.path.ends_with("/manifest.json");
        if is_upper {
            let path = root.join(&f.path);
            let nz = nonzero_blocks(&path);
            // Each non-zero 4 KiB block is 8 sectors; 10 % and 32 KiB of slack for extent blocks.
            let bound = nz * 8 * 11 / 10 + 64;
            let blocks = fs::metadata(&path).expect("stat upper").blocks();
            assert!(
                blocks <= bound,
                "{ctx}: {} allocates {blocks} blocks, data needs at most {bound}",
                f.path
            );
            assert!(
                bound * 4 <= f.blocks,
                "{ctx}: {}: our bound {bound} is not far below 0.6.2's dense {} blocks",
                f.path,
                f.blocks
            );
        }
    }
}

#[test]
fn every_positive_fixture_imports_exactly_its_files_sparse_via_library_and_binary() {
    let positives: Vec<Fixture> = fixtures().into_iter().filter(Fixture::ok).collect();
    assert!(positives.len() >= 11, "expected the 11 accepted reference bundles, found {}", positives.len());
    for fx in &positives {
        let tmp = tempfile::tempdir().expect("tempdir");
        // Library.
        let root = tmp.path().join("lib-home");
        let out = lib_import(&fx.path, &root, None).unwrap_or_else(|e| panic!("{}: {e}", fx.name));
        assert_eq!(out.head_digest, fx.str_field("head_digest"), "{}: head digest", fx.name);
        assert_eq!(out.head_name, fx.str_field("head_name"), "{}: head name", fx.name);
        assert_eq!(out.head_path, root.join("snapshots").join(fx.str_field("head_name")));
        let digests: Vec<&str> = out.report.snapshots.iter().map(|s| s.digest.as_str()).collect();
        let want: Vec<&str> = fx.expect["snapshot_digests"]
            .as_array()
            .expect("digests")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(digests, want, "{}: snapshots in archive order", fx.name);
        let cache_files: BTreeSet<String> = fx
            .imported_files()
            .into_iter()
            .filter_map(|f| f.path.strip_prefix("cache/").map(str::to_string))
            .collect();
        assert_eq!(out.cache_installed.iter().cloned().collect::<BTreeSet<_>>(), cache_files, "{}", fx.name);
        assert!(out.cache_reused.is_empty(), "{}: nothing to reuse in a fresh home", fx.name);
        assert!(matches!(out.index, IndexOutcome::Absent { .. }), "{}: no index in a fresh home", fx.name);
        assert_home_holds_exactly(&root, fx, &format!("{} (library)", fx.name));

        // Binary.
        let root = tmp.path().join("bin-home");
        let out = run_import(&fx.path, &root, &["--json"]);
        assert_eq!(out.status.code(), Some(0), "{}: {}", fx.name, describe(&out));
        let v = stdout_json(&out);
        assert_eq!(v["ok"], true, "{}", fx.name);
        assert_eq!(v["import"]["head_digest"], fx.str_field("head_digest"), "{}", fx.name);
        assert_home_holds_exactly(&root, fx, &format!("{} (binary)", fx.name));
    }
}

// ------------------------------------------------------------------------------------------------
// 2. Negative fixtures
// ------------------------------------------------------------------------------------------------

#[test]
fn every_negative_fixture_is_rejected_with_its_code_and_leaves_the_home_byte_for_byte() {
    let negatives: Vec<Fixture> = fixtures().into_iter().filter(|f| !f.ok()).collect();
    assert!(negatives.len() >= REJECTIONS.len(), "expected {} rejected bundles", REJECTIONS.len());
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("home");
    make_baseline_with_cache(&root);
    let before = tree(&root);
    assert!(before.keys().any(|k| k.starts_with("cache/layers/")), "the baseline has a cache");
    for fx in &negatives {
        let (_, kind, code) = *REJECTIONS
            .iter()
            .find(|r| r.0 == fx.stem())
            .unwrap_or_else(|| panic!("{}: rejected bundle missing from REJECTIONS", fx.name));
        match lib_import(&fx.path, &root, None) {
            Err(HostError::Invalid(e)) => {
                assert_eq!((e.kind(), e.code()), (kind, code), "{}: {e}", fx.name);
            }
            Err(e) => panic!("{}: wrong error class: {e:?}", fx.name),
            Ok(_) => panic!("{}: imported", fx.name),
        }
        assert_no_stage(&root, &fx.name);
        assert_tree_eq(&before, &tree(&root), &format!("{} (library)", fx.name));

        let out = run_import(&fx.path, &root, &[]);
        assert_eq!(out.status.code(), Some(1), "{}: {}", fx.name, describe(&out));
        assert!(stderr(&out).starts_with("snapbundle: invalid bundle: "), "{}: {}", fx.name, describe(&out));
        assert_no_stage(&root, &fx.name);
        assert_tree_eq(&before, &tree(&root), &format!("{} (binary)", fx.name));

        // Into a home that does not exist yet: not even the home directory is left behind.
        let missing = tmp.path().join("missing-home");
        assert!(lib_import(&fx.path, &missing, None).is_err(), "{}", fx.name);
        assert!(fs::symlink_metadata(&missing).is_err(), "{}: created {}", fx.name, missing.display());
    }
}

// ------------------------------------------------------------------------------------------------
// 3. Hostile stores
// ------------------------------------------------------------------------------------------------

fn chain_prefixes() -> (String, String) {
    let fx = fixture(CHAIN);
    let root = fx.expect["snapshot_digests"][0].as_str().expect("root digest");
    let hex = root.strip_prefix("sha256:").expect("sha256 digest");
    let root_prefix = format!("sha256-{}", &hex[..16]);
    (root_prefix, fx.str_field("head_name"))
}

#[test]
fn dangling_symlink_at_a_snapshot_target_is_a_conflict_and_nothing_is_written_through_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("home");
    make_baseline(&root);
    let (_, head) = chain_prefixes();
    let nowhere = tmp.path().join("nowhere");
    symlink(&nowhere, root.join("snapshots").join(&head)).expect("symlink");
    let before = tree(&root);

    match lib_import(&fixture(CHAIN).path, &root, None) {
        Err(e @ HostError::Conflict(_)) => {
            assert!(e.to_string().contains("snapshot already exists"), "{e}");
            assert!(e.to_string().contains(&head), "{e}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_tree_eq(&before, &tree(&root), "library");
    assert!(fs::symlink_metadata(&nowhere).is_err(), "something was created through the symlink");

    let out = run_import(&fixture(CHAIN).path, &root, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(stderr(&out).contains("snapshot already exists"), "{}", describe(&out));
    assert_no_stage(&root, "binary");
    assert_tree_eq(&before, &tree(&root), "binary");
    assert!(fs::symlink_metadata(&nowhere).is_err(), "something was created through the symlink");
}

#[test]
fn symlink_to_an_outside_directory_at_a_snapshot_target_is_a_conflict_and_the_outside_is_untouched() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("home");
    make_baseline(&root);
    let (root_prefix, _) = chain_prefixes();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).expect("mkdir");
    fs::write(outside.join("keep.txt"), b"keep").expect("write");
    // The root of the chain is the first snapshot promoted: the check must cover it, not only the head.
    symlink(&outside, root.join("snapshots").join(&root_prefix)).expect("symlink");
    let before = tree(&root);
    let outside_before = tree(&outside);

    let out = run_import(&fixture(CHAIN).path, &root, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(
        stderr(&out).contains(&format!(
            "snapshot already exists: {}",
            root.join("snapshots").join(&root_prefix).display()
        )),
        "{}",
        describe(&out)
    );
    assert_no_stage(&root, "binary");
    assert_tree_eq(&before, &tree(&root), "home");
    assert_tree_eq(&outside_before, &tree(&outside), "outside directory");
}

#[test]
fn reimporting_the_same_bundle_says_snapshot_already_exists_and_changes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("home");
    make_baseline_with_cache(&root);
    let before = tree(&root);
    match lib_import(&fixture(IMAGE).path, &root, None) {
        Err(e @ HostError::Conflict(_)) => assert!(e.to_string().contains("snapshot already exists"), "{e}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_no_stage(&root, "library");
    assert_tree_eq(&before, &tree(&root), "library");
    let out = run_import(&fixture(IMAGE).path, &root, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(stderr(&out).contains("snapshot already exists"), "{}", describe(&out));
    assert_no_stage(&root, "binary");
    assert_tree_eq(&before, &tree(&root), "binary");
}

/// The image bundle's layer files, relative to the cache.
fn image_layers() -> (String, String) {
    let files = fixture(IMAGE).imported_files();
    let mut layers =
        files.iter().filter_map(|f| f.path.strip_prefix("cache/")).filter(|p| p.starts_with("layers/"));
    (layers.next().expect("layer").to_string(), layers.next().expect("layer").to_string())
}

#[test]
fn cache_file_with_different_bytes_is_a_conflict_raised_before_anything_is_promoted() {
    let (layer, _) = image_layers();
    for same_size in [true, false] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("home");
        make_baseline(&root);
        let size = fixture(IMAGE)
            .imported_files()
            .iter()
            .find(|f| f.path == format!("cache/{layer}"))
            .expect("layer")
            .size;
        let bytes = noise(if same_size { size as usize } else { 4096 }, 11);
        fs::write(root.join("cache").join(&layer), bytes).expect("write conflicting layer");
        let before = tree(&root);
        match lib_import(&fixture(IMAGE).path, &root, None) {
            Err(e @ HostError::Conflict(_)) => {
                assert!(e.to_string().contains("cache target already exists with different content"), "{e}");
                assert!(e.to_string().contains(&layer), "{e}");
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_no_stage(&root, "conflict");
        // No snapshot directory and no other cache file: nothing was promoted.
        assert_tree_eq(&before, &tree(&root), "conflicting cache file");
        let out = run_import(&fixture(IMAGE).path, &root, &[]);
        assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
        assert_tree_eq(&before, &tree(&root), "conflicting cache file (binary)");
    }
}

#[test]
fn identical_cache_file_is_reused_not_rewritten() {
    let (layer, _) = image_layers();
    let tmp = tempfile::tempdir().expect("tempdir");
    // The real bytes, from a clean import elsewhere.
    let donor = tmp.path().join("donor");
    lib_import(&fixture(IMAGE).path, &donor, None).expect("donor import");
    let root = tmp.path().join("home");
    make_baseline(&root);
    let target = root.join("cache").join(&layer);
    fs::copy(donor.join("cache").join(&layer), &target).expect("copy layer");
    let old = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    fs::File::options().write(true).open(&target).and_then(|f| f.set_modified(old)).expect("set mtime");
    let before = tree(target.parent().expect("parent"));
    let meta = fs::metadata(&target).expect("stat");

    let out = lib_import(&fixture(IMAGE).path, &root, None).expect("import");
    assert_eq!(out.cache_reused, vec![layer.clone()]);
    assert!(!out.cache_installed.contains(&layer), "{:?}", out.cache_installed);
    assert_eq!(out.cache_installed.len(), 4, "{:?}", out.cache_installed);
    let after = fs::metadata(&target).expect("stat");
    assert_eq!((after.ino(), after.dev()), (meta.ino(), meta.dev()), "the reused file was replaced");
    assert_eq!(after.modified().expect("mtime"), old, "the reused file was rewritten");
    let layer_name = Path::new(&layer).file_name().and_then(OsStr::to_str).expect("name");
    assert_eq!(tree(target.parent().expect("parent")).get(layer_name), before.get(layer_name));
    // Everything else is as a clean import leaves it.
    for f in fixture(IMAGE).imported_files() {
        let m = fs::metadata(root.join(&f.path)).expect("imported file");
        assert_eq!(m.len(), f.size, "{}", f.path);
        assert_eq!(support::file_sha256(&root.join(&f.path)), f.sha256, "{}", f.path);
    }
    assert_no_stage(&root, "reuse");
}

#[test]
fn cache_kind_symlink_to_elsewhere_is_a_conflict_and_nothing_is_written_through_it() {
    // `cache/layers` pointing outside the home, and pointing to another directory of the cache.
    for inside in [false, true] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("home");
        make_baseline(&root);
        let elsewhere = if inside { root.join("cache/elsewhere") } else { tmp.path().join("elsewhere") };
        fs::create_dir(&elsewhere).expect("mkdir");
        fs::write(elsewhere.join("keep.txt"), b"keep").expect("write");
        fs::remove_dir_all(root.join("cache/layers")).expect("rm layers");
        let link_target = if inside { PathBuf::from("elsewhere") } else { elsewhere.clone() };
        symlink(&link_target, root.join("cache/layers")).expect("symlink");
        let before = tree(&root);
        let elsewhere_before = tree(&elsewhere);
        let ctx = if inside { "symlink inside the cache" } else { "symlink outside the home" };

        match lib_import(&fixture(IMAGE).path, &root, None) {
            Err(e @ HostError::Conflict(_)) => {
                assert!(e.to_string().contains("refusing to write through it"), "{ctx}: {e}");
                assert!(e.to_string().contains("cache/layers"), "{ctx}: {e}");
            }
            other => panic!("{ctx}: expected a conflict, got {other:?}"),
        }
        assert_no_stage(&root, ctx);
        assert_tree_eq(&before, &tree(&root), ctx);
        assert_tree_eq(&elsewhere_before, &tree(&elsewhere), ctx);

        let out = run_import(&fixture(IMAGE).path, &root, &[]);
        assert_eq!(out.status.code(), Some(3), "{ctx}: {}", describe(&out));
        assert_tree_eq(&before, &tree(&root), ctx);
        assert_tree_eq(&elsewhere_before, &tree(&elsewhere), ctx);
    }
}

// ------------------------------------------------------------------------------------------------
// 4. Crashes
// ------------------------------------------------------------------------------------------------

const CRASH_POINTS: [&str; 5] = ["decode", "staged", "journal", "promote-1", "promoted"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NextRun {
    /// `snapbundle gc`.
    Gc,
    /// An import of another bundle (which recovers first), then the crashed bundle again.
    Import,
}

fn stage_names(root: &Path) -> Vec<String> {
    match fs::read_dir(root.join("snapshots")) {
        Ok(rd) => rd
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".snapbundle-import-"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn crash_and_recover(bundle: &str, next: NextRun) {
    let fx = fixture(bundle);
    let reference = reference_additions(bundle);
    let other_reference = reference_additions(OTHER);
    let head_dir = format!("snapshots/{}", fx.str_field("head_name"));
    let has_cache = reference.keys().any(|k| k.starts_with("cache/"));
    for point in CRASH_POINTS {
        let ctx = format!("{bundle} killed at {point}, recovered by {next:?}");
        let committed = matches!(point, "journal" | "promote-1" | "promoted");
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("home");
        make_baseline(&root);
        let before = tree(&root);

        let mut cmd =
            command([OsStr::new("import"), fx.path.as_os_str(), OsStr::new("--home"), root.as_os_str()]);
        let out = cmd.arg("--quiet").env(snapbundle::crash::ENV, point).output().expect("run");
        assert_eq!(out.status.signal(), Some(9), "{ctx}: not killed by SIGKILL: {}", describe(&out));

        // Right after the crash.
        let stages = stage_names(&root);
        assert_eq!(stages.len(), 1, "{ctx}: one stage left by the dead import: {stages:?}");
        let stage = &stages[0];
        let journal = root.join("snapshots").join(stage).join("journal.json");
        assert_eq!(journal.is_file(), committed, "{ctx}: journal present iff committed");
        if has_cache && point != "decode" {
            let token = &stage[".snapbundle-import-".len()..];
            assert!(
                root.join("cache/tmp").join(format!("snapbundle-import-{token}")).is_dir(),
                "{ctx}: cache stage"
            );
        }
        let mid = tree(&root);
        let visible = without_stages(&mid);
        assert_tree_eq(
            &before,
            &restrict(&visible, &before),
            &format!("{ctx}: existing content after the crash"),
        );
        let shown = content(&added(&before, &visible));
        match point {
            "decode" | "staged" | "journal" => {
                assert_tree_eq(&Tree::new(), &shown, &format!("{ctx}: nothing visible"))
            }
            "promoted" => assert_tree_eq(&reference, &shown, &format!("{ctx}: all promoted")),
            _ => {
                // One rename done: one complete item of the bundle (a snapshot directory with all
                // its files, or one cache file; the baseline already has every cache/<kind>),
                // never the head, never the image metadata before its files.
                assert!(!shown.is_empty(), "{ctx}: the first rename is visible");
                for (k, v) in &shown {
                    assert_eq!(reference.get(k), Some(v), "{ctx}: {k} differs from a clean import");
                }
                let tops: BTreeSet<String> = shown
                    .keys()
                    .map(|k| {
                        if k.starts_with("snapshots/") {
                            k.splitn(3, '/').take(2).collect::<Vec<_>>().join("/")
                        } else {
                            k.clone()
                        }
                    })
                    .collect();
                assert_eq!(tops.len(), 1, "{ctx}: exactly one item promoted: {tops:?}");
                let top = tops.iter().next().expect("one");
                assert!(top != &head_dir, "{ctx}: the head went first");
                assert!(!top.starts_with("cache/manifests/"), "{ctx}: image metadata went before its files");
                for (k, v) in reference.iter().filter(|(k, _)| k.starts_with(top.as_str())) {
                    assert_eq!(shown.get(k), Some(v), "{ctx}: {top} promoted incomplete ({k})");
                }
            }
        }

        // The next run.
        let expected_rec = if committed {
            serde_json::json!({ "rolled_forward": [stage], "removed": [], "running": [] })
        } else {
            serde_json::json!({ "rolled_forward": [], "removed": [stage], "running": [] })
        };
        let bundle_part = if committed { reference.clone() } else { Tree::new() };
        match next {
            NextRun::Gc => {
                let v = run_gc(&root);
                assert_eq!(v["gc"], expected_rec, "{ctx}: gc report");
                assert_home_is(&root, &before, &bundle_part, &format!("{ctx}: after gc"));
            }
            NextRun::Import => {
                let out = run_import(&fixture(OTHER).path, &root, &["--json"]);
                assert_eq!(out.status.code(), Some(0), "{ctx}: {}", describe(&out));
                assert_eq!(stdout_json(&out)["import"]["recovered"], expected_rec, "{ctx}: recovery report");
                let want = union(&bundle_part, &other_reference);
                assert_home_is(&root, &before, &want, &format!("{ctx}: after the next import"));
                // And the crashed bundle itself once more.
                let out = run_import(&fx.path, &root, &[]);
                if committed {
                    assert_eq!(out.status.code(), Some(3), "{ctx}: {}", describe(&out));
                    assert!(stderr(&out).contains("snapshot already exists"), "{ctx}: {}", describe(&out));
                } else {
                    assert_eq!(out.status.code(), Some(0), "{ctx}: {}", describe(&out));
                }
                let want = union(&reference, &other_reference);
                assert_home_is(&root, &before, &want, &format!("{ctx}: after importing it again"));
            }
        }
    }
}

#[test]
fn chain_killed_at_every_phase_is_none_or_all_after_gc() {
    crash_and_recover(CHAIN, NextRun::Gc);
}

#[test]
fn chain_killed_at_every_phase_is_none_or_all_after_the_next_import() {
    crash_and_recover(CHAIN, NextRun::Import);
}

#[test]
fn image_bundle_killed_at_every_phase_is_none_or_all_after_gc() {
    crash_and_recover(IMAGE, NextRun::Gc);
}

#[test]
fn image_bundle_killed_at_every_phase_is_none_or_all_after_the_next_import() {
    crash_and_recover(IMAGE, NextRun::Import);
}

/// `chattr +i` on a directory, undone when dropped (also when the test fails).
struct Immutable(PathBuf);

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn failure_between_two_renames_keeps_the_committed_stage_and_gc_completes_the_bundle() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("home");
    make_baseline(&root);
    let before = tree(&root);
    // An immutable cache/layers: the fsmeta and vmdk renames succeed, the first layer's fails
    // (EPERM, even for root), after the journal was committed.
    let layers = root.join("cache/layers");
    let out = Command::new("chattr").arg("+i").arg(&layers).output();
    if !out.as_ref().map(|o| o.status.success()).unwrap_or(false) {
        eprintln!("SKIP failure-between-renames test: chattr +i does not work here: {out:?}");
        return;
    }
    let guard = Immutable(layers);

    let out = run_import(&fixture(IMAGE).path, &root, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.contains("promoting layers/") && err.contains("Operation not permitted"), "{err}");
    assert!(err.contains("the import is committed"), "{err}");
    // What is visible is a prefix of the journal; the rest is still staged, with the journal.
    let stages = stage_names(&root);
    assert_eq!(stages.len(), 1, "the committed stage is kept: {stages:?}");
    assert!(root.join("snapshots").join(&stages[0]).join("journal.json").is_file());
    let reference = reference_additions(IMAGE);
    let shown = content(&added(&before, &without_stages(&tree(&root))));
    let shown_files: BTreeSet<&str> =
        shown.iter().filter(|(_, n)| matches!(n, Node::File { .. })).map(|(k, _)| k.as_str()).collect();
    assert_eq!(shown_files.len(), 2, "fsmeta and vmdk were promoted: {shown_files:?}");
    assert!(shown_files.iter().all(|k| k.starts_with("cache/fsmeta/") || k.starts_with("cache/vmdk/")));
    for (k, v) in &shown {
        assert_eq!(reference.get(k), Some(v), "{k} differs from a clean import");
    }

    // While the cause persists, recovery reports it and changes nothing.
    let gc = command([OsStr::new("gc"), OsStr::new("--home"), root.as_os_str()]).output().expect("gc");
    assert_eq!(gc.status.code(), Some(2), "{}", describe(&gc));
    drop(guard);
    let v = run_gc(&root);
    assert_eq!(v["gc"]["rolled_forward"], serde_json::json!([stages[0]]), "{v}");
    assert_home_is(&root, &before, &reference, "after gc");
}

fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn spawn_stdin_import(root: &Path, extra: &[&OsStr]) -> std::process::Child {
    let mut args = vec![OsStr::new("import"), OsStr::new("-"), OsStr::new("--home"), root.as_os_str()];
    args.extend_from_slice(extra);
    args.push(OsStr::new("--quiet"));
    command(args).stdin(Stdio::piped()).spawn().expect("spawn import")
}

#[test]
fn gc_never_touches_the_stage_of_a_live_import() {
    // A chain arriving on a pipe: half of it written, the importer blocked reading the rest.
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("home");
    make_baseline(&root);
    let before = tree(&root);
    let bytes = fixture(CHAIN).bytes();
    let mut child = spawn_stdin_import(&root, &[]);
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&bytes[..bytes.len() / 2]).expect("write half");
    stdin.flush().expect("flush");
    let stage = wait_for("the stage", || stage_names(&root).into_iter().next());
    let v = run_gc(&root);
    assert_eq!(v["gc"]["running"], serde_json::json!([stage]), "gc report: {v}");
    assert_eq!(v["gc"]["removed"], serde_json::json!([]), "gc report: {v}");
    assert!(root.join("snapshots").join(&stage).is_dir(), "gc removed a live stage");
    stdin.write_all(&bytes[bytes.len() / 2..]).expect("write rest");
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_home_is(&root, &before, &reference_additions(CHAIN), "live chain import");

    // An image bundle as plain tar into another snapshots directory, stopped just before the
    // end-of-archive blocks: its cache stage under <home>/cache/tmp has no snapshot stage next to
    // it, so gc of the home must find it locked.
    let root = tmp.path().join("home2");
    make_baseline(&root);
    let dest = tmp.path().join("dest");
    let before = tree(&root);
    let tar = zstd::stream::decode_all(fixture(IMAGE).bytes().as_slice()).expect("decode fixture");
    let (body, end) = tar.split_at(tar.len() - 1024);
    assert!(end.iter().all(|&b| b == 0), "the tar ends with two zero blocks");
    let mut child = spawn_stdin_import(&root, &[OsStr::new("--dest"), dest.as_os_str()]);
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(body).expect("write body");
    stdin.flush().expect("flush");
    let cache_stage = wait_for("the cache stage", || {
        let rd = fs::read_dir(root.join("cache/tmp")).ok()?;
        let names: Vec<String> =
            rd.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
        names.into_iter().find(|n| n.starts_with("snapbundle-import-"))
    });
    // All five cache members staged (the importer is now only waiting for the end of the archive).
    wait_for("the staged cache files", || {
        let n = tree(&root.join("cache/tmp").join(&cache_stage))
            .values()
            .filter(|n| matches!(n, Node::File { .. }))
            .count();
        (n == 5).then_some(())
    });
    let v = run_gc(&root);
    assert_eq!(v["gc"]["running"], serde_json::json!([format!("cache/tmp/{cache_stage}")]), "gc report: {v}");
    assert!(root.join("cache/tmp").join(&cache_stage).is_dir(), "gc removed a live cache stage");
    stdin.write_all(end).expect("write end");
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_no_stage(&root, "home2");
    assert_no_stage(&dest, "dest");
    let want_cache: Tree =
        reference_additions(IMAGE).into_iter().filter(|(k, _)| k.starts_with("cache/")).collect();
    assert_home_is(&root, &before, &want_cache, "cache of the --dest import");
}

/// Runs `snapbundle import` under strace with every `flock` delayed by 200 ms (which widens each
/// window between creating a stage and locking it), while `gc` runs in a loop on the same home.
/// `None` when strace cannot run here.
fn import_slowed_under_gc(root: &Path, bundle: &Path, extra: &[&OsStr]) -> Option<(Output, usize)> {
    let probe = Command::new("strace").args(["-o", "/dev/null", "true"]).output();
    if !probe.as_ref().map(|o| o.status.success()).unwrap_or(false) {
        eprintln!("SKIP gc race test: strace cannot run here: {probe:?}");
        return None;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gc_loop = {
        let stop = stop.clone();
        let root = root.to_path_buf();
        std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let out =
                    command([OsStr::new("gc"), OsStr::new("--home"), root.as_os_str()]).output().expect("gc");
                assert!(out.status.success(), "gc failed: {}", describe(&out));
                runs += 1;
            }
            runs
        })
    };
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-o", "/dev/null", "-e", "trace=flock", "-e", "inject=flock:delay_enter=200000"])
        .arg(support::bin())
        .args([
            OsStr::new("import"),
            bundle.as_os_str(),
            OsStr::new("--home"),
            root.as_os_str(),
            OsStr::new("-q"),
        ])
        .args(extra)
        .env_remove(snapbundle::crash::ENV)
        .env_remove("MSB_HOME");
    let out = cmd.output().expect("run strace");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let runs = gc_loop.join().expect("gc loop");
    Some((out, runs))
}

#[test]
fn gc_racing_a_starting_import_never_removes_its_fresh_stages() {
    // The snapshot stage.
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("home");
    make_baseline(&root);
    let before = tree(&root);
    let Some((out, runs)) = import_slowed_under_gc(&root, &fixture(OTHER).path, &[]) else { return };
    assert_eq!(out.status.code(), Some(0), "import raced by gc: {}", describe(&out));
    assert!(runs > 1, "gc ran {runs} times during the import");
    assert_home_is(&root, &before, &reference_additions(OTHER), "snapshot stage race");

    // The cache stage of an import into another snapshots directory, which gc of the home sweeps.
    let root = tmp.path().join("home2");
    make_baseline(&root);
    let dest = tmp.path().join("dest");
    let before = tree(&root);
    let extra = [OsStr::new("--dest"), dest.as_os_str()];
    let Some((out, runs)) = import_slowed_under_gc(&root, &fixture(IMAGE).path, &extra) else { return };
    assert_eq!(out.status.code(), Some(0), "--dest import raced by gc: {}", describe(&out));
    assert!(runs > 1, "gc ran {runs} times during the import");
    let want_cache: Tree =
        reference_additions(IMAGE).into_iter().filter(|(k, _)| k.starts_with("cache/")).collect();
    assert_home_is(&root, &before, &want_cache, "cache stage race");
    assert_no_stage(&dest, "dest");
}

// ------------------------------------------------------------------------------------------------
// 5. Disk full
// ------------------------------------------------------------------------------------------------

/// A tmpfs mounted for the test, unmounted when dropped (also when the test fails).
struct TmpfsMount(PathBuf);

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.0).status().map(|s| s.success()).unwrap_or(false);
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[test]
fn disk_full_while_staging_is_a_clear_no_space_error_and_leaves_the_store_unchanged() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).expect("mkdir");
    let out = Command::new("mount").args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"]).arg(&mnt).output();
    let out = match out {
        Ok(o) => o,
        Err(e) => panic!("cannot run mount: {e}"),
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        if err.contains("permission denied")
            || err.contains("operation not permitted")
            || err.contains("must be superuser")
        {
            eprintln!("SKIP disk_full test: cannot mount a tmpfs here: {}", err.trim());
            return;
        }
        panic!("mount failed: {}", describe(&out));
    }
    let _guard = TmpfsMount(mnt.clone());

    // A bundle whose upper is 3 MiB of data with no zero block: more than the 2 MiB filesystem.
    let upper = noise(3 << 20, 5);
    let (mbytes, _, prefix) = manifest(upper.len() as u64, "disk-full");
    let mut w = TarWriter::default();
    w.file(&format!("{prefix}/manifest.json"), &mbytes, 1_777_636_800);
    w.file(&format!("{prefix}/upper.ext4"), &upper, 1_777_636_800);
    let bundle = tmp.path().join("big.tar.zst");
    fs::write(&bundle, zstd::stream::encode_all(w.finish().as_slice(), 1).expect("zstd"))
        .expect("write bundle");

    let root = mnt.join("home");
    make_baseline(&root);
    let before = tree(&root);
    match lib_import(&bundle, &root, None) {
        Err(e @ HostError::Io { .. }) => {
            let HostError::Io { source, .. } = &e else { unreachable!() };
            assert_eq!(source.raw_os_error(), Some(28), "ENOSPC: {e}");
            let msg = e.to_string();
            assert!(msg.contains("No space left on device"), "{msg}");
            assert!(msg.contains(&format!("{prefix}/upper.ext4")), "{msg}");
        }
        other => panic!("expected a no-space I/O error, got {other:?}"),
    }
    assert_no_stage(&root, "disk full (library)");
    assert_tree_eq(&before, &tree(&root), "disk full (library)");

    let out = run_import(&bundle, &root, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(stderr(&out).contains("No space left on device"), "{}", describe(&out));
    assert_no_stage(&root, "disk full (binary)");
    assert_tree_eq(&before, &tree(&root), "disk full (binary)");

    // The space of the stage was given back: a small bundle still fits.
    lib_import(&fixture(OTHER).path, &root, None).expect("small import after disk full");
}

// ------------------------------------------------------------------------------------------------
// 6. Concurrency
// ------------------------------------------------------------------------------------------------

#[test]
fn eight_racing_imports_of_one_bundle_exactly_one_wins_the_rest_already_exists() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("home");
    make_baseline(&root);
    let before = tree(&root);
    let fx = fixture(CHAIN);
    let children: Vec<_> = (0..8)
        .map(|_| {
            command([
                OsStr::new("import"),
                fx.path.as_os_str(),
                OsStr::new("--home"),
                root.as_os_str(),
                OsStr::new("--quiet"),
            ])
            .spawn()
            .expect("spawn")
        })
        .collect();
    let outs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().expect("wait")).collect();
    let winners = outs.iter().filter(|o| o.status.code() == Some(0)).count();
    let all: String = outs.iter().map(describe).collect::<Vec<_>>().join("\n");
    assert_eq!(winners, 1, "exactly one import succeeds:\n{all}");
    for o in outs.iter().filter(|o| o.status.code() != Some(0)) {
        assert_eq!(o.status.code(), Some(3), "losers exit 3:\n{}", describe(o));
        assert!(stderr(o).contains("snapshot already exists"), "{}", describe(o));
    }
    assert_home_is(&root, &before, &reference_additions(CHAIN), "after the race");
}

// ------------------------------------------------------------------------------------------------
// 7. The microsandbox index
// ------------------------------------------------------------------------------------------------

/// The `snapshot_index` table of microsandbox-db 0.6.2 (`docs/format-0.6.2.md` §4).
const INDEX_SCHEMA: &str = "
CREATE TABLE snapshot_index (
    digest TEXT NOT NULL PRIMARY KEY,
    name TEXT NULL,
    parent_digest TEXT NULL,
    image_ref TEXT NOT NULL,
    image_manifest_digest TEXT NOT NULL,
    format TEXT NOT NULL,
    fstype TEXT NOT NULL,
    artifact_path TEXT NOT NULL,
    size_bytes BIGINT NULL,
    created_at DATETIME NOT NULL,
    indexed_at DATETIME NOT NULL,
    child_count INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX idx_snapshot_index_name ON snapshot_index (name) WHERE name IS NOT NULL;
CREATE INDEX idx_snapshot_index_parent ON snapshot_index (parent_digest);
CREATE INDEX idx_snapshot_index_image ON snapshot_index (image_manifest_digest);
";

#[test]
fn index_rows_match_0_6_2_with_child_counts_and_no_db_means_nothing_created() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("home");
    fs::create_dir_all(root.join("db")).expect("mkdir db");
    let db = root.join("db/msb.db");
    let conn = rusqlite::Connection::open(&db).expect("open db");
    conn.execute_batch(INDEX_SCHEMA).expect("schema");
    // A row of some other snapshot, which must survive.
    conn.execute(
        "INSERT INTO snapshot_index VALUES ('sha256:ffff', 'other', NULL, 'docker.io/library/busybox:latest', \
         'sha256:01', 'raw', 'ext4', '/elsewhere/other', 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00', 0)",
        [],
    )
    .expect("insert");

    let fx = fixture(CHAIN);
    let out = lib_import(&fx.path, &root, None).expect("import");
    assert_eq!(out.index, IndexOutcome::Updated { rows: 3 });

    let snaps = root.join("snapshots");
    let mut stmt = conn
        .prepare(
            "SELECT digest, name, parent_digest, image_ref, size_bytes, artifact_path, child_count, \
             image_manifest_digest, format, fstype, created_at FROM snapshot_index ORDER BY digest",
        )
        .expect("prepare");
    type Row = (
        String,
        Option<String>,
        Option<String>,
        String,
        Option<i64>,
        String,
        i64,
        String,
        String,
        String,
        String,
    );
    let rows: Vec<Row> = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
            ))
        })
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    let mut want: BTreeMap<String, Value> = fx.expect["index_rows"]
        .as_array()
        .expect("index_rows")
        .iter()
        .map(|r| (r["digest"].as_str().expect("digest").to_string(), r.clone()))
        .collect();
    assert_eq!(want.len(), 3);
    let other = rows.iter().find(|r| r.0 == "sha256:ffff").expect("the unrelated row survives");
    assert_eq!((other.1.as_deref(), other.6), (Some("other"), 0));
    assert_eq!(rows.len(), 4, "three imported rows and the unrelated one");
    for row in rows.iter().filter(|r| r.0 != "sha256:ffff") {
        let w = want.remove(&row.0).unwrap_or_else(|| panic!("unexpected row {}", row.0));
        assert_eq!(row.1.as_deref(), w["name"].as_str(), "name of {}", row.0);
        assert_eq!(row.2.as_deref(), w["parent_digest"].as_str(), "parent of {}", row.0);
        assert_eq!(row.3, w["image_ref"].as_str().expect("image_ref"), "image_ref of {}", row.0);
        assert_eq!(row.4, w["size_bytes"].as_i64(), "size_bytes of {}", row.0);
        let rel = Path::new(&row.5)
            .strip_prefix(&snaps)
            .unwrap_or_else(|_| panic!("path {} outside the store", row.5));
        assert_eq!(rel.to_str(), w["path_rel"].as_str(), "artifact_path of {}", row.0);
        let is_parent = rows.iter().any(|r| r.2.as_deref() == Some(row.0.as_str()));
        assert_eq!(row.6, i64::from(is_parent), "child_count of {}", row.0);
        // The rest comes from the manifest on disk.
        let m: Value =
            serde_json::from_slice(&fs::read(Path::new(&row.5).join("manifest.json")).expect("manifest"))
                .expect("manifest JSON");
        assert_eq!(row.7, m["image"]["manifest_digest"].as_str().expect("image digest"));
        assert_eq!((row.8.as_str(), row.9.as_str()), ("raw", "ext4"));
        let created = chrono::DateTime::parse_from_rfc3339(m["created_at"].as_str().expect("created_at"))
            .expect("rfc3339")
            .with_timezone(&chrono::Utc)
            .naive_utc()
            .format("%F %T%.f")
            .to_string();
        assert_eq!(row.10, created, "created_at of {} as naive UTC", row.0);
    }
    assert!(want.is_empty(), "rows missing: {:?}", want.keys());
    let head_row =
        rows.iter().find(|r| Some(r.0.as_str()) == fx.expect["head_digest"].as_str()).expect("head row");
    assert_eq!(head_row.6, 0, "the head has no children");

    // Without a database nothing is created under <home>/db, with or without the directory.
    for with_dir in [false, true] {
        let root = tmp.path().join(format!("nodb-{with_dir}"));
        if with_dir {
            fs::create_dir_all(root.join("db")).expect("mkdir");
        }
        let out = lib_import(&fx.path, &root, None).expect("import");
        assert!(matches!(out.index, IndexOutcome::Absent { .. }), "{:?}", out.index);
        if with_dir {
            assert!(tree(&root.join("db")).is_empty(), "something was created in db/");
        } else {
            assert!(fs::symlink_metadata(root.join("db")).is_err(), "db/ was created");
        }
    }
}

// ------------------------------------------------------------------------------------------------
// 8. --dest
// ------------------------------------------------------------------------------------------------

#[test]
fn dest_puts_snapshots_in_the_given_dir_and_the_cache_under_the_home() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("home");
    let dest = tmp.path().join("elsewhere/snaps");
    let fx = fixture(IMAGE);
    let out = run_import(&fx.path, &root, &["--json", "--dest", dest.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let v = stdout_json(&out);
    assert_eq!(v["import"]["head_path"], dest.join(fx.str_field("head_name")).to_str().expect("utf-8"));

    let mut want_dest = BTreeSet::new();
    let mut want_home = BTreeSet::new();
    for f in fx.imported_files() {
        match f.path.strip_prefix("snapshots/") {
            Some(rel) => {
                assert_eq!(support::file_sha256(&dest.join(rel)), f.sha256, "{rel}");
                want_dest.insert(rel.to_string());
                want_dest.insert(Path::new(rel).parent().and_then(Path::to_str).expect("parent").to_string());
            }
            None => {
                assert_eq!(support::file_sha256(&root.join(&f.path)), f.sha256, "{}", f.path);
                want_home.insert(f.path.clone());
                want_home
                    .insert(Path::new(&f.path).parent().and_then(Path::to_str).expect("parent").to_string());
            }
        }
    }
    want_home.insert("cache".into());
    want_home.insert("cache/tmp".into());
    assert_eq!(tree(&dest).into_keys().collect::<BTreeSet<_>>(), want_dest, "the snapshots directory");
    assert_eq!(tree(&root).into_keys().collect::<BTreeSet<_>>(), want_home, "the home (no snapshots/)");
}

// ------------------------------------------------------------------------------------------------
// 9. Standard input
// ------------------------------------------------------------------------------------------------

#[test]
fn import_from_stdin_gives_the_same_store_as_from_a_file() {
    for name in [CHAIN, IMAGE] {
        let fx = fixture(name);
        let tmp = tempfile::tempdir().expect("tempdir");
        let from_file = tmp.path().join("file-home");
        let out = run_import(&fx.path, &from_file, &[]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", describe(&out));

        let from_pipe = tmp.path().join("pipe-home");
        let mut child = spawn_stdin_import(&from_pipe, &[OsStr::new("--json")]);
        let mut stdin = child.stdin.take().expect("stdin");
        let bytes = fx.bytes();
        let writer = std::thread::spawn(move || {
            // Small writes, so the importer really reads a stream.
            for chunk in bytes.chunks(333) {
                stdin.write_all(chunk).expect("write");
            }
        });
        let out = child.wait_with_output().expect("wait");
        writer.join().expect("writer");
        assert_eq!(out.status.code(), Some(0), "{name}: {}", describe(&out));
        let v = stdout_json(&out);
        assert_eq!(v["bundle"], "<stdin>");
        assert_eq!(v["import"]["head_digest"], fx.str_field("head_digest"));
        assert_tree_eq(&content(&tree(&from_file)), &content(&tree(&from_pipe)), name);
        assert!(!tree(&from_pipe).keys().any(|k| is_stage_path(k)));
    }
}
