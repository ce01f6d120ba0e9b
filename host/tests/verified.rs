//! Verification records (`snapbundle::verified`): an upper that snapbundle verified (by import,
//! `verify` or a hashing export) and that is unchanged since is not hashed again by `export`;
//! any change to it, a different inode, a malformed record or `--rehash` means hashing again.
//! Run through the real CLI against real files.

mod support;

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use support::{command, describe, fixture, run_gc, run_import};

/// A home with `bundle` imported; returns the scratch dir, the home and the head's name.
fn imported(bundle: &str) -> (tempfile::TempDir, PathBuf, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("home");
    let fx = fixture(bundle);
    let out = run_import(&fx.path, &home, &[]);
    assert!(out.status.success(), "import failed: {}", describe(&out));
    let head = fx.str_field("head_name");
    (tmp, home, head)
}

fn export(home: &Path, snapshot: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&OsStr> =
        vec![OsStr::new("export"), OsStr::new(snapshot), OsStr::new("-o"), out.as_os_str()];
    args.extend([OsStr::new("--home"), home.as_os_str(), OsStr::new("--json")]);
    args.extend(extra.iter().map(OsStr::new));
    command(args).output().expect("run snapbundle export")
}

/// Exports and returns how the head's upper was checked (`hashed`, `record`, `not-recorded`).
fn export_check(home: &Path, snapshot: &str, out: &Path, extra: &[&str]) -> String {
    let o = export(home, snapshot, out, extra);
    assert!(o.status.success(), "export failed: {}", describe(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("export --json");
    v["export"]["snapshots"][0]["integrity"].as_str().expect("integrity field").to_string()
}

fn records_dir(home: &Path) -> PathBuf {
    home.join("cache/snapbundle/verified")
}

fn record_files(home: &Path) -> Vec<PathBuf> {
    match fs::read_dir(records_dir(home)) {
        Ok(rd) => rd.map(|e| e.expect("entry").path()).collect(),
        Err(_) => Vec::new(),
    }
}

fn upper(home: &Path, head: &str) -> PathBuf {
    home.join("snapshots").join(head).join("upper.ext4")
}

#[test]
fn an_imported_upper_is_trusted_by_export_and_rehash_hashes_it_to_the_same_bytes() {
    for bundle in ["f-integrity-sparse.tar.zst", "f-integrity-sha256.tar.zst"] {
        let (tmp, home, head) = imported(bundle);
        assert_eq!(record_files(&home).len(), 1, "{bundle}: the import recorded its verified upper");
        let trusted = tmp.path().join("trusted.tar.zst");
        let hashed = tmp.path().join("hashed.tar.zst");
        assert_eq!(export_check(&home, &head, &trusted, &[]), "record", "{bundle}");
        assert_eq!(export_check(&home, &head, &hashed, &["--rehash"]), "hashed", "{bundle}");
        assert_eq!(
            fs::read(&trusted).expect("read"),
            fs::read(&hashed).expect("read"),
            "{bundle}: same bundle"
        );
    }
}

#[test]
fn an_upper_without_recorded_integrity_is_reported_as_such_and_gets_no_record() {
    let (tmp, home, head) = imported("f-integrity-null.tar.zst");
    assert!(record_files(&home).is_empty());
    assert_eq!(export_check(&home, &head, &tmp.path().join("a.tar.zst"), &[]), "not-recorded");
    assert!(record_files(&home).is_empty());
}

#[test]
fn a_modified_upper_is_hashed_again_even_with_its_mtime_restored() {
    let (tmp, home, head) = imported("f-integrity-sparse.tar.zst");
    let path = upper(&home, &head);
    let mtime = fs::metadata(&path).expect("stat").modified().expect("mtime");
    // Flip one byte in place, then put the mtime back: only the ctime shows the change.
    let f = File::options().read(true).write(true).open(&path).expect("open");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 4096).expect("read");
    b[0] ^= 0x5a;
    f.write_all_at(&b, 4096).expect("write");
    f.set_modified(mtime).expect("restore mtime");
    drop(f);
    let out = tmp.path().join("a.tar.zst");
    let o = export(&home, &head, &out, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("error JSON");
    assert_eq!(v["error"]["code"], "upper_digest_mismatch", "{v}");
    assert!(!out.exists(), "no bundle written");
    assert!(fs::read_dir(tmp.path())
        .expect("ls")
        .all(|e| { !e.expect("entry").file_name().to_string_lossy().contains("snapbundle-tmp") }));
}

#[test]
fn a_copy_of_the_upper_under_a_new_inode_is_hashed_again_then_recorded() {
    let (tmp, home, head) = imported("f-integrity-sparse.tar.zst");
    let path = upper(&home, &head);
    let copy = path.with_extension("copy");
    fs::copy(&path, &copy).expect("copy");
    fs::rename(&copy, &path).expect("replace");
    assert_eq!(export_check(&home, &head, &tmp.path().join("a.tar.zst"), &[]), "hashed");
    // That export verified the new inode and recorded it (after the racy margin).
    assert_eq!(export_check(&home, &head, &tmp.path().join("b.tar.zst"), &[]), "record");
}

#[test]
fn verify_of_a_snapshot_records_it_for_export() {
    let (tmp, home, head) = imported("f-integrity-sha256.tar.zst");
    fs::remove_dir_all(records_dir(&home)).expect("drop records");
    assert_eq!(export_check(&home, &head, &tmp.path().join("a.tar.zst"), &["--rehash"]), "hashed");
    fs::remove_dir_all(records_dir(&home)).expect("drop records");
    let o = command([OsStr::new("verify"), OsStr::new(&head), OsStr::new("--home"), home.as_os_str()])
        .output()
        .expect("run verify");
    assert!(o.status.success(), "{}", describe(&o));
    assert_eq!(record_files(&home).len(), 1);
    assert_eq!(export_check(&home, &head, &tmp.path().join("b.tar.zst"), &[]), "record");
}

#[test]
fn malformed_or_foreign_records_are_ignored() {
    let (tmp, home, head) = imported("f-integrity-sparse.tar.zst");
    let [record] = record_files(&home).try_into().expect("one record");
    let good = fs::read_to_string(&record).expect("read");
    // A record for another digest (as if the manifest had changed), then garbage.
    let mut v: Value = serde_json::from_str(&good).expect("record JSON");
    v["digest"] = Value::from(format!("sha256:{}", "0".repeat(64)));
    for bad in [v.to_string(), "not json".to_string(), String::new()] {
        fs::write(&record, &bad).expect("write");
        assert_eq!(
            export_check(&home, &head, &tmp.path().join("a.tar.zst"), &["--quiet"]),
            "hashed",
            "{bad}"
        );
        // The hashing export replaced it with a good record again.
        assert_eq!(export_check(&home, &head, &tmp.path().join("b.tar.zst"), &[]), "record", "{bad}");
    }
}

#[test]
fn gc_removes_records_of_uppers_that_are_gone_or_changed() {
    let (_tmp, home, head) = imported("f-integrity-sparse.tar.zst");
    assert_eq!(run_gc(&home)["verification_records_removed"], 0, "a live record stays");
    assert_eq!(record_files(&home).len(), 1);
    fs::write(records_dir(&home).join("7-7.json"), "garbage").expect("write");
    let f = File::options().write(true).open(upper(&home, &head)).expect("open");
    f.write_all_at(b"x", 0).expect("write");
    drop(f);
    assert_eq!(run_gc(&home)["verification_records_removed"], 2);
    assert!(record_files(&home).is_empty());
}

#[test]
fn a_rejected_import_writes_no_record() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("home");
    let out = run_import(&fixture("r-wrong-sparse-digest.tar.zst").path, &home, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(!records_dir(&home).exists(), "no record for an upper that failed its check");
    assert!(!home.join("cache").exists());
}
