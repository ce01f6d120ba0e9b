//! Round trips and command-line contracts: export → import → export gives identical bundles;
//! JSON errors; the index is best-effort.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::Value;
use snapbundle::export::{export, ExportOptions, ExportTarget};
use snapbundle::home::Home;
use snapbundle::import::{import, ImportOptions};
use snapbundle::index::IndexOutcome;
use snapbundle::progress::Progress;
use snapbundle_core::report::PlannedFile;
use snapbundle_core::{validate, Limits};
use support::{command, describe, file_sha256, fixtures};

fn import_file(bundle: &Path, home: &Home) -> snapbundle::import::ImportOutcome {
    let mut f = fs::File::open(bundle).expect("open bundle");
    import(&mut f, &bundle.display().to_string(), home, &ImportOptions { quiet: true, ..Default::default() })
        .unwrap_or_else(|e| panic!("{}: import failed: {e}", bundle.display()))
}

fn export_opts(expect: &Value) -> ExportOptions {
    let o = &expect["export"]["opts"];
    ExportOptions {
        with_parents: o["with_parents"].as_bool().unwrap_or(false),
        with_image: o["with_image"].as_bool().unwrap_or(false),
        plain_tar: o["plain_tar"].as_bool().unwrap_or(false),
        ..ExportOptions::default()
    }
}

/// Every regular file under `root`, by relative path, with its SHA-256.
fn store_files(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).expect("under root").display().to_string();
                // Verification records are named by inode: not part of what two stores share.
                if !support::is_record_path(&rel) {
                    out.insert(rel, file_sha256(&p));
                }
            }
        }
    }
    out
}

fn entries(files: &[PlannedFile]) -> Vec<(String, u64, String, String)> {
    files
        .iter()
        .map(|f| (format!("{:?}/{}", f.area, f.path), f.size, f.algorithm.clone(), f.digest.clone()))
        .collect()
}

fn decompressed(bytes: &[u8]) -> Vec<u8> {
    if bytes.starts_with(&snapbundle_core::zstd::MAGIC) {
        zstd::stream::decode_all(bytes).expect("zstd decodes")
    } else {
        bytes.to_vec()
    }
}

#[test]
fn export_import_export_gives_identical_bundles_for_every_exported_fixture() {
    let mut checked = 0;
    for fx in fixtures().into_iter().filter(|f| f.ok() && f.expect["group"] == "export") {
        let work = tempfile::tempdir().expect("tempdir");
        let home_a = Home::at(work.path().join("a"));
        let first = import_file(&fx.path, &home_a);
        let opts = export_opts(&fx.expect);
        let x1 = work.path().join("x1");
        export(&home_a, &first.head_digest, ExportTarget::File(&x1), &opts, &Progress::hidden())
            .unwrap_or_else(|e| panic!("{}: export failed: {e}", fx.name));
        let r0 = validate(&fx.bytes(), Limits::DEFAULT).expect("fixture validates");
        let r1 = validate(&fs::read(&x1).expect("read x1"), Limits::DEFAULT).expect("export validates");
        assert_eq!(
            entries(&r1.files),
            entries(&r0.files),
            "{}: exported entries differ from 0.6.2's",
            fx.name
        );
        assert_eq!(r1.head, r0.head, "{}", fx.name);

        let home_b = Home::at(work.path().join("b"));
        import_file(&x1, &home_b);
        assert_eq!(store_files(&home_b.root), store_files(&home_a.root), "{}: stores differ", fx.name);

        let x2 = work.path().join("x2");
        export(&home_b, &first.head_digest, ExportTarget::File(&x2), &opts, &Progress::hidden())
            .unwrap_or_else(|e| panic!("{}: second export failed: {e}", fx.name));
        let t1 = decompressed(&fs::read(&x1).expect("x1"));
        let t2 = decompressed(&fs::read(&x2).expect("x2"));
        assert!(t1 == t2, "{}: the second export's tar stream differs from the first", fx.name);
        if !opts.plain_tar {
            assert_eq!(
                t1,
                decompressed(&fx.bytes()),
                "{}: tar stream differs from 0.6.2's own export",
                fx.name
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} exported fixtures found");
}

#[test]
fn import_json_reports_an_invalid_bundle_with_its_code() {
    let work = tempfile::tempdir().expect("tempdir");
    let fx = support::fixture("r-dotdot-path.tar.zst");
    let out = command([
        "import".as_ref(),
        fx.path.as_os_str(),
        "--home".as_ref(),
        work.path().as_os_str(),
        "--json".as_ref(),
    ])
    .output()
    .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", describe(&out)));
    assert_eq!(v["ok"], false);
    assert_eq!(v["valid"], false);
    assert_eq!(v["error"]["code"], "unsafe_path");
    assert_eq!(v["error"]["kind"], "tar");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("../../evil.txt"), "{v}");
}

#[test]
fn a_broken_index_does_not_fail_an_import_that_is_in_place() {
    let work = tempfile::tempdir().expect("tempdir");
    let home = Home::at(work.path());
    fs::create_dir_all(work.path().join("db")).expect("mkdir db");
    let db = rusqlite::Connection::open(home.db_path()).expect("create db");
    // A table of that name without the columns 0.6.2 has: every insert fails.
    db.execute("CREATE TABLE snapshot_index (digest TEXT PRIMARY KEY)", []).expect("create table");
    drop(db);
    let fx = support::fixture("a-single.tar.zst");
    let out = import_file(&fx.path, &home);
    assert!(matches!(out.index, IndexOutcome::Failed { .. }), "{:?}", out.index);
    assert!(out.head_path.join("manifest.json").is_file(), "the snapshot is promoted all the same");

    let bin_home = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(bin_home.path().join("db")).expect("mkdir db");
    let db = rusqlite::Connection::open(bin_home.path().join("db/msb.db")).expect("create db");
    db.execute("CREATE TABLE snapshot_index (digest TEXT PRIMARY KEY)", []).expect("create table");
    drop(db);
    let out = support::run_import(&fx.path, bin_home.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("warning: index not updated"),
        "{}",
        describe(&out)
    );
}
