//! `snapbundle export` against real microsandbox 0.6.2 output.
//!
//! Each fixture bundle is taken apart into a fresh home (snapshot directories named after their
//! archive prefix, cache files under `cache/`, mode, mtime and owner as in the headers); exporting
//! the same snapshots again must give the same tar stream, byte for byte, as 0.6.2 wrote.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};
use snapbundle::export::{self, ExportOptions, ExportOutcome, ExportTarget};
use snapbundle::home::Home;
use snapbundle::progress::Progress;
use snapbundle::{sparse, HostError};
use snapbundle_core::integrity::{Algorithm, IntegrityHasher};
use snapbundle_core::manifest::{ImageRef, Manifest, SnapshotFormat, UpperIntegrity, UpperLayer};
use snapbundle_core::Limits;

const MTIME: u64 = 1_777_636_800;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/microsandbox-0.6.2").join(name)
}

fn expect(bundle: &str) -> Value {
    let text = fs::read_to_string(fixture(&format!("{bundle}.expect.json"))).expect("expect.json");
    serde_json::from_str(&text).expect("expect.json parses")
}

/// The tar stream of a bundle (zstd or plain).
fn tar_bytes(bundle: &[u8]) -> Vec<u8> {
    if bundle.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::decode_all(bundle).expect("zstd decodes")
    } else {
        bundle.to_vec()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    let mut h = IntegrityHasher::new(Algorithm::Sha256, bytes.len() as u64);
    h.update(bytes);
    h.finish().trim_start_matches("sha256:").to_string()
}

/// One member of a tar stream, read with the `tar` crate.
struct TarMember {
    path: String,
    kind: u8,
    gnu: bool,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    data: Vec<u8>,
}

fn members(tar: &[u8]) -> Vec<TarMember> {
    let mut archive = tar::Archive::new(tar);
    let mut out = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let path = String::from_utf8(entry.path_bytes().into_owned()).expect("utf-8 name");
        let h = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("data");
        out.push(TarMember {
            path,
            kind: h.entry_type().as_byte(),
            gnu: h.as_gnu().is_some(),
            mode: h.mode().expect("mode"),
            uid: h.uid().expect("uid"),
            gid: h.gid().expect("gid"),
            mtime: h.mtime().expect("mtime"),
            data,
        });
    }
    out
}

/// The `bundle_entries` of an `.expect.json`, rebuilt from a tar stream.
fn entry_list(tar: &[u8]) -> Value {
    Value::Array(
        members(tar)
            .into_iter()
            .map(|m| {
                json!({
                    "data_bytes": m.data.len(),
                    "data_sha256": sha256_hex(&m.data),
                    "gid": m.gid,
                    "header_format": if m.gnu { "gnu" } else { "ustar" },
                    "mode": format!("{:o}", m.mode),
                    "mtime": m.mtime,
                    "path": m.path,
                    "size": m.data.len(),
                    "type": (m.kind as char).to_string(),
                    "uid": m.uid,
                })
            })
            .collect(),
    )
}

/// Writes `content` into `path` sparsely: only non-zero 4 KiB blocks are written.
fn write_sparse(path: &Path, content: &[u8]) {
    let f = File::create(path).expect("create");
    f.set_len(content.len() as u64).expect("set_len");
    for (i, block) in content.chunks(4096).enumerate() {
        if block.iter().any(|&b| b != 0) {
            f.write_all_at(block, (i * 4096) as u64).expect("write");
        }
    }
}

/// Gives a file the metadata 0.6.2's fixtures were made with (or `mode`/`mtime` given).
fn stamp(path: &Path, mode: u32, mtime: u64) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777)).expect("chmod");
    std::os::unix::fs::chown(path, Some(0), Some(0)).expect("chown (tests run as root)");
    let f = File::options().write(true).open(path).expect("open");
    f.set_modified(UNIX_EPOCH + Duration::from_secs(mtime)).expect("set mtime");
}

struct Fx {
    _tmp: tempfile::TempDir,
    home: Home,
    out: PathBuf,
}

fn fresh() -> Fx {
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = Home::at(tmp.path().join("home"));
    fs::create_dir_all(&home.snapshots).expect("mkdir");
    let out = tmp.path().join("out");
    Fx { _tmp: tmp, home, out }
}

/// Unpacks a fixture bundle into a fresh home, keeping mode, owner and mtime.
fn replicate(bundle: &str) -> (Fx, Vec<u8>) {
    let fx = fresh();
    let tar = tar_bytes(&fs::read(fixture(bundle)).expect("fixture"));
    for m in members(&tar) {
        let dest = match m.path.strip_prefix("cache/") {
            Some(rest) => fx.home.cache.join(rest),
            None => fx.home.snapshots.join(&m.path),
        };
        fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        write_sparse(&dest, &m.data);
        stamp(&dest, m.mode, m.mtime);
    }
    (fx, tar)
}

fn opts() -> ExportOptions {
    ExportOptions::default()
}

fn run(fx: &Fx, arg: &str, name: &str, o: &ExportOptions) -> Result<ExportOutcome, HostError> {
    let target = fx.out.join(name);
    export::export(&fx.home, arg, ExportTarget::File(&target), o, &Progress::hidden())
}

fn run_to_vec(fx: &Fx, arg: &str, o: &ExportOptions) -> (Result<ExportOutcome, HostError>, Vec<u8>) {
    let mut buf = Vec::new();
    let r = export::export(&fx.home, arg, ExportTarget::Writer(&mut buf), o, &Progress::hidden());
    (r, buf)
}

/// Index of the first differing 512-byte record, for readable failures.
fn assert_same_tar(ours: &[u8], theirs: &[u8]) {
    if ours == theirs {
        return;
    }
    let first = ours.iter().zip(theirs).position(|(a, b)| a != b).unwrap_or(ours.len().min(theirs.len()));
    let rec = first / 512 * 512;
    let show =
        |b: &[u8]| String::from_utf8_lossy(b.get(rec..rec + 512).unwrap_or(&[])).escape_debug().to_string();
    panic!(
        "tar streams differ: lengths {} vs {}, first difference at byte {first} (record at {rec})\nours:   {}\ntheirs: {}",
        ours.len(),
        theirs.len(),
        show(ours),
        show(theirs)
    );
}

fn is_single_frame_with_checksum(bundle: &[u8]) -> bool {
    // Frame header descriptor: bit 2 is the content checksum flag.
    bundle.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) && bundle.get(4).is_some_and(|d| d & 0x04 != 0)
}

#[test]
fn plain_tar_is_byte_identical_to_fixture_a_single() {
    let (fx, fixture_tar) = replicate("a-single.tar");
    let e = expect("a-single.tar");
    let head = e["head_name"].as_str().expect("head_name");
    let o = ExportOptions { plain_tar: true, ..opts() };
    let outcome = run(&fx, head, "a.tar", &o).expect("export");
    let ours = fs::read(fx.out.join("a.tar")).expect("output");
    // Every header block first, for a precise message, then the whole stream.
    for offset in [0usize, 1024] {
        assert_eq!(
            ours.get(offset..offset + 512),
            fixture_tar.get(offset..offset + 512),
            "header at {offset}"
        );
    }
    assert_eq!(&ours[0x64..0x6c], b"0100644\0");
    assert_eq!(&ours[0x94..0x9c], b"0015015\0");
    assert_same_tar(&ours, &fixture_tar);
    assert_eq!(outcome.tar_bytes, fixture_tar.len() as u64);
    assert_eq!(outcome.bytes_written, ours.len() as u64);
    assert!(!outcome.compressed);
    assert_eq!(outcome.path.as_deref(), Some(fx.out.join("a.tar").as_path()));
    assert_eq!(outcome.head, e["head_digest"].as_str().expect("digest"));
    assert_eq!(outcome.snapshots.len(), 1);
    assert_eq!(outcome.snapshots[0].prefix, head);
    assert_eq!(entry_list(&ours), e["bundle_entries"]);
}

#[test]
fn zstd_export_matches_fixture_a_single() {
    let (fx, fixture_tar) = replicate("a-single.tar");
    let e = expect("a-single.tar.zst");
    // Resolve by digest prefix this time.
    let outcome = run(&fx, "sha256:b79751d0", "a.tar.zst", &opts()).expect("export");
    let ours = fs::read(fx.out.join("a.tar.zst")).expect("output");
    assert!(is_single_frame_with_checksum(&ours));
    assert!(outcome.compressed);
    assert_eq!(outcome.bytes_written, ours.len() as u64);
    assert_same_tar(&tar_bytes(&ours), &fixture_tar);
    assert_eq!(entry_list(&tar_bytes(&ours)), e["bundle_entries"]);
    let report = snapbundle_core::validate(&ours, Limits::default()).expect("our validator accepts it");
    assert_eq!(report.zstd_frames, 1);
    assert_eq!(report.head, e["head_digest"].as_str().expect("digest"));
    assert_eq!(report.head_prefix, e["head_name"].as_str().expect("name"));
}

#[test]
fn chain_with_parents_matches_fixture_b_root_first() {
    let (fx, fixture_tar) = replicate("b-chain3-with-parents.tar.zst");
    let e = expect("b-chain3-with-parents.tar.zst");
    let head = e["head_name"].as_str().expect("head_name");
    let o = ExportOptions { with_parents: true, threads: 2, ..opts() };
    let outcome = run(&fx, head, "b.tar.zst", &o).expect("export");
    let ours = fs::read(fx.out.join("b.tar.zst")).expect("output");
    assert!(is_single_frame_with_checksum(&ours));
    assert_same_tar(&tar_bytes(&ours), &fixture_tar);
    assert_eq!(entry_list(&tar_bytes(&ours)), e["bundle_entries"]);
    let digests: Vec<&str> = outcome.snapshots.iter().map(|s| s.digest.as_str()).collect();
    let want: Vec<&str> =
        e["snapshot_digests"].as_array().expect("digests").iter().filter_map(Value::as_str).collect();
    assert_eq!(digests, want, "root first, head last");
    assert_eq!(outcome.head, e["head_digest"].as_str().expect("head"));

    let report = snapbundle_core::validate(&ours, Limits::default()).expect("valid");
    let got: Vec<&str> = report.snapshots.iter().map(|s| s.digest.as_str()).collect();
    assert_eq!(got, want);
    assert_eq!(report.head, outcome.head);
    let files: Vec<&str> = report.files.iter().map(|f| f.path.as_str()).collect();
    let want_files: Vec<&str> =
        e["bundle_entries"].as_array().expect("entries").iter().filter_map(|x| x["path"].as_str()).collect();
    assert_eq!(files, want_files);

    // Without --with-parents only the head goes out, even though it has a parent.
    let outcome = run(&fx, head, "head-only.tar.zst", &opts()).expect("export");
    assert_eq!(outcome.snapshots.len(), 1);
    let ours = fs::read(fx.out.join("head-only.tar.zst")).expect("output");
    let report = snapbundle_core::validate(&ours, Limits::default()).expect("valid");
    assert_eq!(report.snapshots.len(), 1);
    assert_eq!(report.head, e["head_digest"].as_str().expect("head"));
}

#[test]
fn with_image_matches_fixture_d() {
    let (fx, fixture_tar) = replicate("d-with-image-2layers.tar.zst");
    let e = expect("d-with-image-2layers.tar.zst");
    let head = e["head_name"].as_str().expect("head_name");
    let o = ExportOptions { with_image: true, ..opts() };
    let outcome = run(&fx, head, "d.tar.zst", &o).expect("export");
    let ours = fs::read(fx.out.join("d.tar.zst")).expect("output");
    assert_same_tar(&tar_bytes(&ours), &fixture_tar);
    assert_eq!(entry_list(&tar_bytes(&ours)), e["bundle_entries"]);
    let want_cache: Vec<String> = e["bundle_entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|x| x["path"].as_str()?.strip_prefix("cache/").map(str::to_owned))
        .collect();
    assert_eq!(outcome.cache_files, want_cache);
    let report = snapbundle_core::validate(&ours, Limits::default()).expect("valid");
    assert_eq!(report.cache.as_ref().map(|c| c.files.clone()), Some(want_cache));
}

#[test]
fn missing_parent_fails_before_any_output() {
    let (fx, _) = replicate("b-chain3-with-parents.tar.zst");
    let e = expect("b-chain3-with-parents.tar.zst");
    let root = e["snapshot_digests"][0].as_str().expect("root");
    fs::remove_dir_all(fx.home.snapshots.join(Manifest::archive_prefix(root))).expect("rm root");
    let head = e["head_name"].as_str().expect("head");
    let o = ExportOptions { with_parents: true, ..opts() };
    let target = fx.out.join("nested/dir/b.tar.zst");
    let err = export::export(&fx.home, head, ExportTarget::File(&target), &o, &Progress::hidden())
        .expect_err("must fail");
    assert!(matches!(err, HostError::NotFound(_)), "{err}");
    assert!(err.to_string().contains(root), "{err}");
    assert!(!fx.out.exists(), "no output, not even its directory");
    let (r, buf) = run_to_vec(&fx, head, &o);
    assert!(r.is_err());
    assert!(buf.is_empty(), "nothing streamed");
}

#[test]
fn missing_or_unusual_image_files_fail_before_any_output() {
    let (fx, _) = replicate("d-with-image-2layers.tar.zst");
    let e = expect("d-with-image-2layers.tar.zst");
    let head = e["head_name"].as_str().expect("head");
    let o = ExportOptions { with_image: true, ..opts() };
    let layer = fx
        .home
        .cache
        .join("layers/sha256_282df5f2f0cf60d6663a925eef8323c63fdf1889f6bcfbef6cf44474007d116c.erofs");
    let saved = fx.home.cache.join("saved.erofs");
    fs::rename(&layer, &saved).expect("move layer away");
    let err = run(&fx, head, "d.tar.zst", &o).expect_err("must fail");
    assert!(err.to_string().contains(&*layer.to_string_lossy()), "{err}");
    assert!(!fx.out.exists());
    let (r, buf) = run_to_vec(&fx, head, &o);
    assert!(r.is_err() && buf.is_empty());

    // A symlink to the real file is refused too (0.6.2 would follow it).
    std::os::unix::fs::symlink(&saved, &layer).expect("symlink");
    let err = run(&fx, head, "d.tar.zst", &o).expect_err("must fail");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    fs::remove_file(&layer).expect("rm symlink");

    // An EROFS file that import would call not materialized.
    fs::write(&layer, b"short").expect("write");
    let err = run(&fx, head, "d.tar.zst", &o).expect_err("must fail");
    assert_eq!(err.code(), "cache_artifact_not_materialized", "{err}");
    fs::rename(&saved, &layer).expect("restore");

    // Metadata missing.
    let meta =
        fx.home.cache.join("manifests/9f39de2cc07aeb65b0c8d87b811d86acce5f86cd7b201b9e906d875b03aa70ff.json");
    let bytes = fs::read(&meta).expect("metadata");
    fs::remove_file(&meta).expect("rm");
    let err = run(&fx, head, "d.tar.zst", &o).expect_err("must fail");
    assert!(err.to_string().contains("image metadata missing"), "{err}");

    // Metadata pinning another image.
    let other = String::from_utf8(bytes.clone()).expect("utf-8").replacen("sha256:ef72", "sha256:ef73", 1);
    fs::write(&meta, other).expect("write");
    let err = run(&fx, head, "d.tar.zst", &o).expect_err("must fail");
    assert_eq!(err.code(), "cache_metadata_digest_mismatch", "{err}");
    assert!(!fx.out.exists());

    fs::write(&meta, bytes).expect("restore");
    run(&fx, head, "d.tar.zst", &o).expect("works again");
}

fn corrupt_upper(fx: &Fx, prefix: &str) {
    let upper = fx.home.snapshots.join(prefix).join("upper.ext4");
    let f = File::options().read(true).write(true).open(upper).expect("open");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 1024).expect("read");
    b[0] ^= 0x01;
    f.write_all_at(&b, 1024).expect("write");
}

#[test]
fn integrity_mismatch_leaves_no_file() {
    let (fx, _) = replicate("a-single.tar");
    let head = "sha256-b79751d05790b96e";
    corrupt_upper(&fx, head);
    for plain_tar in [false, true] {
        let o = ExportOptions { plain_tar, ..opts() };
        let target = fx.out.join("deep/a.tar.zst");
        let err = export::export(&fx.home, head, ExportTarget::File(&target), &o, &Progress::hidden())
            .expect_err("must fail");
        assert_eq!(err.code(), "upper_digest_mismatch", "{err}");
        assert!(!fx.out.exists(), "no file, no temporary file, no created directory");

        // An existing directory keeps only what it had.
        fs::create_dir_all(&fx.out).expect("mkdir");
        let err = run(&fx, head, "a.tar.zst", &o).expect_err("must fail");
        assert_eq!(err.code(), "upper_digest_mismatch");
        assert_eq!(fs::read_dir(&fx.out).expect("ls").count(), 0, "no temporary file left");
        fs::remove_dir(&fx.out).expect("rmdir");
    }
}

#[test]
fn streamed_export_withholds_end_of_archive_on_failure() {
    let (fx, fixture_tar) = replicate("a-single.tar");
    let head = "sha256-b79751d05790b96e";
    corrupt_upper(&fx, head);
    let plan = export::plan(&fx.home, head, &ExportOptions { plain_tar: true, ..opts() }).expect("plan");
    assert_eq!(plan.tar_bytes(), fixture_tar.len() as u64);

    let (r, buf) = run_to_vec(&fx, head, &ExportOptions { plain_tar: true, ..opts() });
    assert_eq!(r.expect_err("must fail").code(), "upper_digest_mismatch");
    assert_eq!(buf.len() as u64, plan.tar_bytes() - 1024, "everything but the end-of-archive records");
    let err = snapbundle_core::validate(&buf, Limits::default()).expect_err("truncated");
    assert_eq!(err.code(), "missing_end_of_archive", "{err}");

    let (r, buf) = run_to_vec(&fx, head, &opts());
    assert!(r.is_err());
    assert!(zstd::decode_all(&buf[..]).is_err(), "the zstd frame is not ended");
    assert!(snapbundle_core::validate(&buf, Limits::default()).is_err());
}

#[test]
fn subdirectories_symlinks_and_bad_names_are_refused() {
    let (fx, _) = replicate("a-single.tar");
    let head = "sha256-b79751d05790b96e";
    let dir = fx.home.snapshots.join(head);

    fs::create_dir(dir.join("sub")).expect("mkdir");
    let err = run(&fx, head, "x.tar.zst", &opts()).expect_err("must fail");
    assert!(err.to_string().contains("sub") && err.to_string().contains("directory"), "{err}");
    fs::remove_dir(dir.join("sub")).expect("rmdir");

    std::os::unix::fs::symlink("upper.ext4", dir.join("link")).expect("symlink");
    let err = run(&fx, head, "x.tar.zst", &opts()).expect_err("must fail");
    assert!(err.to_string().contains("link") && err.to_string().contains("symbolic link"), "{err}");
    fs::remove_file(dir.join("link")).expect("rm");

    for bad in ["a:b", "CON", "trailing.", "Upper.ext4"] {
        fs::write(dir.join(bad), b"x").expect("write");
        let err = run(&fx, head, "x.tar.zst", &opts()).expect_err(bad);
        assert!(err.to_string().contains(bad), "{bad}: {err}");
        fs::remove_file(dir.join(bad)).expect("rm");
    }
    assert!(!fx.out.exists());

    // Extra regular files are exported after manifest.json, sorted by name.
    fs::write(dir.join("notes.txt"), b"hello").expect("write");
    fs::write(dir.join("a-first"), b"1").expect("write");
    let outcome = run(&fx, head, "x.tar", &ExportOptions { plain_tar: true, ..opts() }).expect("export");
    let tar = fs::read(fx.out.join("x.tar")).expect("output");
    let names: Vec<String> = members(&tar).into_iter().map(|m| m.path).collect();
    assert_eq!(
        names,
        [
            format!("{head}/manifest.json"),
            format!("{head}/a-first"),
            format!("{head}/notes.txt"),
            format!("{head}/upper.ext4")
        ]
    );
    assert_eq!(outcome.tar_bytes, tar.len() as u64);
    snapbundle_core::validate(&tar, Limits::default()).expect("valid");
}

#[test]
fn long_member_names_use_gnu_long_link_like_tar_rs() {
    let (fx, _) = replicate("a-single.tar");
    let head = "sha256-b79751d05790b96e";
    let dir = fx.home.snapshots.join(head);
    let long = format!("{}.txt", "n".repeat(120));
    fs::write(dir.join(&long), b"long name data").expect("write");
    stamp(&dir.join(&long), 0o100640, MTIME + 5);
    run(&fx, head, "long.tar", &ExportOptions { plain_tar: true, ..opts() }).expect("export");
    let ours = fs::read(fx.out.join("long.tar")).expect("output");
    snapbundle_core::validate(&ours, Limits::default()).expect("our validator accepts it");
    let names: Vec<String> = members(&ours).into_iter().map(|m| m.path).collect();
    assert_eq!(names[1], format!("{head}/{long}"));

    // What tar-rs (the header code 0.6.2's astral-tokio-tar shares) writes for the same file.
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Complete);
    b.sparse(false);
    b.append_path_with_name(dir.join(&long), format!("{head}/{long}")).expect("tar-rs");
    let theirs = b.into_inner().expect("tar-rs finish");
    // Our second member starts after the manifest (one header + 1 data record).
    let start = 1024;
    assert_eq!(&ours[start..start + theirs.len() - 1024], &theirs[..theirs.len() - 1024]);
}

fn thread_rchar() -> u64 {
    let text = fs::read_to_string("/proc/thread-self/io").expect("/proc/thread-self/io");
    text.lines().find_map(|l| l.strip_prefix("rchar: ")).and_then(|v| v.trim().parse().ok()).expect("rchar")
}

fn write_manifest(
    dir: &Path,
    upper_size: u64,
    integrity: Option<UpperIntegrity>,
    parent: Option<String>,
) -> Manifest {
    let m = Manifest {
        schema: 1,
        format: SnapshotFormat::Raw,
        fstype: "ext4".into(),
        image: ImageRef {
            reference: "docker.io/library/alpine:3.20".into(),
            manifest_digest: format!("sha256:{}", "0".repeat(63) + "1"),
        },
        parent,
        created_at: "2026-05-01T12:00:00+00:00".into(),
        labels: BTreeMap::new(),
        upper: UpperLayer { file: "upper.ext4".into(), size_bytes: upper_size, integrity },
        source_sandbox: None,
    };
    fs::write(dir.join("manifest.json"), m.canonical_bytes()).expect("manifest");
    m
}

#[test]
fn sparse_upper_reads_only_data_segments() {
    let fx = fresh();
    let dir = fx.home.snapshots.join("sparse");
    fs::create_dir(&dir).expect("mkdir");
    let size: u64 = 64 << 20;
    let upper = dir.join("upper.ext4");
    let f = File::create(&upper).expect("create");
    f.set_len(size).expect("set_len");
    let mut logical = vec![0u8; size as usize];
    for (i, offset) in [0u64, 5 << 20, 31 << 20, (64 << 20) - (256 << 10)].into_iter().enumerate() {
        let data: Vec<u8> = (0..256u32 << 10).map(|j| (j as u8) ^ (i as u8 * 37 + 1)).collect();
        f.write_all_at(&data, offset).expect("write");
        logical[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
    }
    f.sync_all().expect("sync");
    let segments = sparse::data_segments(&f, size).expect("segments");
    let allocated: u64 = segments.iter().map(|s| s.1).sum();
    assert!(allocated <= 2 << 20, "the test file must be sparse on this filesystem: {segments:?}");
    drop(f);
    let mut h = IntegrityHasher::new(Algorithm::SparseSha256V1, size);
    h.update(&logical);
    let sparse_digest = h.finish();
    write_manifest(
        &dir,
        size,
        Some(UpperIntegrity { algorithm: "msb-sparse-sha256-v1".into(), digest: sparse_digest }),
        None,
    );

    let before = thread_rchar();
    let outcome = run(&fx, "sparse", "s.tar.zst", &opts()).expect("export");
    let read = thread_rchar() - before;
    // 1 MiB of data plus the manifest: the 63 MiB of holes are never read.
    assert!(read < (1 << 20) + (64 << 10), "export read {read} bytes for 1 MiB of data in a 64 MiB upper");

    let bundle = fs::read(fx.out.join("s.tar.zst")).expect("output");
    assert!(bundle.len() < 2 << 20, "holes compress away: {} bytes", bundle.len());
    let tar = tar_bytes(&bundle);
    assert_eq!(tar.len() as u64, outcome.tar_bytes);
    let ms = members(&tar);
    assert_eq!(ms.len(), 2);
    assert!(ms[1].data == logical, "the upper's logical bytes");
    snapbundle_core::validate(&bundle, Limits::default()).expect("valid");
}

fn gnu_tar(args: &[&str]) -> (bool, String) {
    match Command::new("tar").args(args).output() {
        Ok(o) => (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        ),
        Err(e) => (false, e.to_string()),
    }
}

#[test]
fn gnu_tar_lists_and_extracts_identical_bytes() {
    let (fx, _) = replicate("b-chain3-with-parents.tar.zst");
    let e = expect("b-chain3-with-parents.tar.zst");
    let head = e["head_name"].as_str().expect("head");
    let dir = fx.home.snapshots.join(head);
    let long = format!("{}.log", "x".repeat(110));
    fs::write(dir.join(&long), b"gnu long name").expect("write");
    let o = ExportOptions { with_parents: true, ..opts() };
    run(&fx, head, "b.tar", &ExportOptions { plain_tar: true, ..o.clone() }).expect("export plain");
    run(&fx, head, "b.tar.zst", &o).expect("export zstd");

    for (file, extra) in [("b.tar", None), ("b.tar.zst", Some("--zstd"))] {
        let path = fx.out.join(file);
        let path = path.to_str().expect("utf-8 path");
        let mut list = vec!["-tvf", path];
        list.extend(extra);
        let (ok, listing) = gnu_tar(&list);
        assert!(ok, "tar -tvf {file}: {listing}");
        for x in e["bundle_entries"].as_array().expect("entries") {
            let p = x["path"].as_str().expect("path");
            assert!(listing.contains(p), "{p} missing from:\n{listing}");
        }
        assert!(listing.contains(&long), "{listing}");
        assert!(listing.contains("0/0"), "{listing}");

        let dest = fx.out.join(format!("x-{file}"));
        fs::create_dir(&dest).expect("mkdir");
        let dest_s = dest.to_str().expect("utf-8 path");
        let mut x = vec!["-xf", path, "-C", dest_s];
        x.extend(extra);
        let (ok, msg) = gnu_tar(&x);
        assert!(ok, "tar -xf {file}: {msg}");
        for digest in e["snapshot_digests"].as_array().expect("digests").iter().filter_map(Value::as_str) {
            let prefix = Manifest::archive_prefix(digest);
            for entry in fs::read_dir(fx.home.snapshots.join(&prefix)).expect("ls") {
                let entry = entry.expect("entry");
                let original = fs::read(entry.path()).expect("read");
                let extracted = fs::read(dest.join(&prefix).join(entry.file_name())).expect("extracted");
                assert!(original == extracted, "{prefix}/{:?}", entry.file_name());
            }
        }
    }
}

#[test]
fn output_never_replaces_a_source_file() {
    let (fx, _) = replicate("a-single.tar");
    let head = "sha256-b79751d05790b96e";
    let upper = fx.home.snapshots.join(head).join("upper.ext4");
    let err = export::export(&fx.home, head, ExportTarget::File(&upper), &opts(), &Progress::hidden())
        .expect_err("must refuse");
    assert!(err.to_string().contains("refusing"), "{err}");
    let inside = fx.home.snapshots.join(head).join("bundle.tar.zst");
    let err = export::export(&fx.home, head, ExportTarget::File(&inside), &opts(), &Progress::hidden())
        .expect_err("must refuse");
    assert!(err.to_string().contains("inside the snapshot directory"), "{err}");
    assert!(!inside.exists());
}

#[test]
fn bad_level_and_unknown_snapshot_are_usage_errors() {
    let (fx, _) = replicate("a-single.tar");
    let o = ExportOptions { level: 99, ..opts() };
    assert_eq!(run(&fx, "sha256-b79751d05790b96e", "x", &o).expect_err("level").code(), "usage");
    assert_eq!(run(&fx, "nope", "x", &opts()).expect_err("missing").code(), "not_found");
    assert!(!fx.out.exists());
}

#[test]
fn bundles_over_the_importers_limits_are_refused_up_front() {
    let (fx, fixture_tar) = replicate("b-chain3-with-parents.tar.zst");
    let head = "sha256-d04c4f19cad63ec5";
    let base = ExportOptions { with_parents: true, ..opts() };
    let plan = export::plan(&fx.home, head, &base).expect("plan");
    assert_eq!(plan.tar_bytes(), fixture_tar.len() as u64);
    assert_eq!(plan.entries(), 6);
    assert_eq!(plan.snapshots().len(), 3);
    assert_eq!(plan.member_names()[0], "sha256-7b62aeae602b2f20/manifest.json");

    let cases = [
        (Limits { max_entries: 5, ..Limits::default() }, "too_many_entries"),
        (Limits { max_snapshots: 2, ..Limits::default() }, "too_many_snapshots"),
        (Limits { max_decompressed_bytes: plan.tar_bytes() - 1025, ..Limits::default() }, "budget_exceeded"),
        (Limits { max_json_total: 1000, ..Limits::default() }, "json_total_too_large"),
        (Limits { max_path_len: 30, ..Limits::default() }, "path_too_long"),
    ];
    for (limits, code) in cases {
        let o = ExportOptions { limits, ..base.clone() };
        let (r, buf) = run_to_vec(&fx, head, &o);
        assert_eq!(r.expect_err(code).code(), code);
        assert!(buf.is_empty());
    }
    // Exactly at the budget is fine.
    let o = ExportOptions {
        limits: Limits { max_decompressed_bytes: plan.tar_bytes() - 1024, ..Limits::default() },
        ..base
    };
    let (r, buf) = run_to_vec(&fx, head, &o);
    assert_eq!(r.expect("export").bytes_written, buf.len() as u64);
}

/// Every path under `root` (files, directories, links), for "nothing was written" checks.
fn paths_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if fs::symlink_metadata(&path).expect("lstat").is_dir() {
                todo.push(path.clone());
            }
            out.push(path);
        }
    }
    out.sort();
    out
}

/// `snapbundle export HEAD -o <out>/x.tar.zst --home <home> --json`.
fn cli_export(fx: &Fx, head: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_snapbundle"))
        .args(["export", head, "-o"])
        .arg(fx.out.join("x.tar.zst"))
        .arg("--home")
        .arg(&fx.home.root)
        .args(["--json", "--quiet"])
        .env_remove("MSB_HOME")
        .output()
        .expect("run snapbundle")
}

#[test]
fn store_faults_exit_1_as_invalid_and_write_nothing() {
    let (fx, _) = replicate("a-single.tar");
    let head = "sha256-b79751d05790b96e";
    let dir = fx.home.snapshots.join(head);
    fs::create_dir_all(&fx.out).expect("mkdir out");
    let root = fx.home.root.parent().expect("tmp root").to_path_buf();

    // A symbolic link where the upper belongs (the store's snapshot is invalid, as 0.6.2's
    // `open_snapshot` says), and a symbolic link beside it (a snapshot directory holds only
    // regular files): both faults of the stored data, not of the arguments.
    let saved = root.join("upper.saved");
    fs::rename(dir.join("upper.ext4"), &saved).expect("move upper");
    std::os::unix::fs::symlink(&saved, dir.join("upper.ext4")).expect("symlink upper");
    let symlink_upper = paths_under(&root);
    let out = cli_export(&fx, head);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "symlink upper: {stderr}");
    assert!(stderr.contains("upper.ext4") && stderr.contains("not a regular file"), "{stderr}");
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON error");
    assert_eq!(json["valid"], json!(false), "{json}");
    assert_eq!(paths_under(&root), symlink_upper, "nothing written for a symlink upper");
    fs::remove_file(dir.join("upper.ext4")).expect("rm symlink");
    fs::rename(&saved, dir.join("upper.ext4")).expect("restore upper");

    std::os::unix::fs::symlink("upper.ext4", dir.join("link")).expect("symlink");
    let symlink_beside = paths_under(&root);
    let out = cli_export(&fx, head);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "symlink in the snapshot directory: {stderr}");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON error");
    assert_eq!(json["error"]["code"], json!("invalid_snapshot"), "{json}");
    assert_eq!(json["error"]["kind"], json!("store"), "{json}");
    assert_eq!(json["valid"], json!(false), "{json}");
    assert_eq!(paths_under(&root), symlink_beside, "nothing written for a symlink beside the upper");
    fs::remove_file(dir.join("link")).expect("rm symlink");

    // The same export with the store intact succeeds: the faults above were the only cause.
    let out = cli_export(&fx, head);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(fx.out.join("x.tar.zst").is_file());
}
