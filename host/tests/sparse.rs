//! `export --sparse`: files with holes become old-GNU sparse members, written as GNU tar and tar-rs
//! write them; the bundles import with their holes kept and the same bytes and digests as the
//! dense path; GNU tar and the `tar` crate read them; round trips are byte-identical.

mod support;

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use snapbundle::export::{self, ExportOptions, ExportTarget};
use snapbundle::home::Home;
use snapbundle::import::{import, ImportOptions};
use snapbundle::progress::Progress;
use snapbundle::{sparse, store, HostError};
use snapbundle_core::integrity::{Algorithm, IntegrityHasher};
use snapbundle_core::manifest::{ImageRef, Manifest, SnapshotFormat, UpperIntegrity, UpperLayer};
use snapbundle_core::report::IntegrityStatus;
use snapbundle_core::{validate, Limits, Report};
use support::{command, describe};

const MTIME: u64 = 1_777_636_800;
const MIB: u64 = 1 << 20;

/// Non-zero pseudo-random bytes (no zero 4 KiB block, so an import keeps them as data).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x as u8) | 1
        })
        .collect()
}

/// A store with one snapshot whose upper has holes.
struct Source {
    _tmp: tempfile::TempDir,
    home: Home,
    /// Snapshot directory.
    dir: PathBuf,
    digest: String,
    /// The upper's logical bytes.
    upper: Vec<u8>,
    out: PathBuf,
}

impl Source {
    fn upper_path(&self) -> PathBuf {
        self.dir.join("upper.ext4")
    }

    /// The upper's member name in a bundle.
    fn member(&self) -> String {
        format!("{}/upper.ext4", Manifest::archive_prefix(&self.digest))
    }
}

/// Writes a sparse file of `len` bytes with `runs` of data; returns its logical bytes.
fn write_sparse(path: &Path, len: u64, runs: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let f = File::create(path).expect("create");
    f.set_len(len).expect("set_len");
    let mut logical = vec![0u8; len as usize];
    for (offset, data) in runs {
        f.write_all_at(data, *offset).expect("write");
        logical[*offset as usize..*offset as usize + data.len()].copy_from_slice(data);
    }
    f.sync_all().expect("sync");
    f.set_modified(UNIX_EPOCH + Duration::from_secs(MTIME)).expect("mtime");
    logical
}

/// `len` bytes; data runs of 16 KiB every 1.5 MiB or so (42 of them: the map needs two extension
/// blocks), and, with `ends_with_data`, a 100-byte run at the very end.
fn runs(len: u64, ends_with_data: bool) -> Vec<(u64, Vec<u8>)> {
    let mut out: Vec<(u64, Vec<u8>)> =
        (0..42u64).map(|i| (i * 1_536 * 1024 + (i % 3) * 4096, noise(16 << 10, i + 1))).collect();
    out.retain(|(o, d)| o + d.len() as u64 <= len.saturating_sub(4096));
    if ends_with_data {
        out.push((len - 100, noise(100, 99)));
    }
    out
}

fn sparse_digest(logical: &[u8]) -> String {
    let mut h = IntegrityHasher::new(Algorithm::SparseSha256V1, logical.len() as u64);
    h.update(logical);
    h.finish()
}

/// A store holding one snapshot named `name`: `manifest.json` and an upper of `len` bytes with
/// `runs`, recording `msb-sparse-sha256-v1` when `integrity`.
fn source_with(len: u64, runs: &[(u64, Vec<u8>)], integrity: bool) -> Source {
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = Home::at(tmp.path().join("home"));
    let dir = home.snapshots.join("snap");
    fs::create_dir_all(&dir).expect("mkdir");
    let upper = write_sparse(&dir.join("upper.ext4"), len, runs);
    let integrity = integrity
        .then(|| UpperIntegrity { algorithm: "msb-sparse-sha256-v1".into(), digest: sparse_digest(&upper) });
    let m = Manifest {
        schema: 1,
        format: SnapshotFormat::Raw,
        fstype: "ext4".into(),
        image: ImageRef {
            reference: "docker.io/library/alpine:3.20".into(),
            manifest_digest: format!("sha256:{}", "0".repeat(63) + "1"),
        },
        parent: None,
        created_at: "2026-05-01T12:00:00+00:00".into(),
        labels: Default::default(),
        upper: UpperLayer { file: "upper.ext4".into(), size_bytes: len, integrity },
        source_sandbox: Some("sparse-test".into()),
    };
    fs::write(dir.join("manifest.json"), m.canonical_bytes()).expect("manifest");
    File::options()
        .write(true)
        .open(dir.join("manifest.json"))
        .and_then(|f| f.set_modified(UNIX_EPOCH + Duration::from_secs(MTIME)))
        .expect("mtime");
    let out = tmp.path().join("out");
    Source { _tmp: tmp, home, dir, digest: m.digest(), upper, out }
}

/// The standard source: a 64 MiB upper with 42 data runs and 100 bytes at its end.
fn source() -> Source {
    source_with(64 * MIB, &runs(64 * MIB, true), true)
}

fn sparse_opts() -> ExportOptions {
    ExportOptions { sparse: true, ..ExportOptions::default() }
}

/// Exports the source's snapshot (by digest) into memory.
fn export_bytes(home: &Home, digest: &str, opts: &ExportOptions) -> Vec<u8> {
    let mut buf = Vec::new();
    export::export(home, digest, ExportTarget::Writer(&mut buf), opts, &Progress::hidden())
        .unwrap_or_else(|e| panic!("export failed: {e}"));
    buf
}

fn tar_of(bundle: &[u8]) -> Vec<u8> {
    zstd::decode_all(bundle).expect("zstd decodes")
}

/// `(name, type flag, data)` of every member, read with the `tar` crate.
fn tar_crate_members(tar: &[u8]) -> Vec<(String, u8, Vec<u8>)> {
    let mut a = tar::Archive::new(tar);
    let mut out = Vec::new();
    for e in a.entries().expect("entries") {
        let mut e = e.expect("entry");
        let name = String::from_utf8(e.path_bytes().into_owned()).expect("utf-8");
        let kind = e.header().entry_type().as_byte();
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("read");
        out.push((name, kind, data));
    }
    out
}

/// Bytes allocated to a file.
fn allocated(path: &Path) -> u64 {
    fs::metadata(path).expect("metadata").blocks() * 512
}

fn import_bytes(bundle: &[u8], home: &Home) -> snapbundle::import::ImportOutcome {
    import(&mut &bundle[..], "bundle", home, &ImportOptions { quiet: true, ..Default::default() })
        .unwrap_or_else(|e| panic!("import failed: {e}"))
}

/// Asserts the reports describe the same snapshots and planned files.
#[track_caller]
fn same_plan(a: &Report, b: &Report) {
    assert_eq!(a.snapshots, b.snapshots);
    assert_eq!(a.files, b.files);
    assert_eq!(a.head, b.head);
}

#[test]
fn sparse_export_writes_files_with_holes_as_s_members() {
    let src = source();
    // An extra dense file: it stays a regular member.
    fs::write(src.dir.join("notes.txt"), b"dense").expect("notes");
    let bundle = export_bytes(&src.home, &src.digest, &sparse_opts());
    let members = tar_crate_members(&tar_of(&bundle));
    let kinds: Vec<(String, u8)> =
        members.iter().map(|m| (m.0.rsplit('/').next().unwrap_or("").into(), m.1)).collect();
    assert_eq!(
        kinds,
        vec![("manifest.json".into(), b'0'), ("notes.txt".into(), b'0'), ("upper.ext4".into(), b'S')]
    );
    assert!(members[2].2 == src.upper, "the tar crate reads the logical bytes");
    // The validator gives the same report as for the dense export of the same snapshot.
    let dense = export_bytes(&src.home, &src.digest, &ExportOptions::default());
    same_plan(
        &validate(&bundle, Limits::default()).expect("sparse"),
        &validate(&dense, Limits::default()).expect("dense"),
    );
}

#[test]
fn sparse_export_reads_stores_and_compresses_only_the_data() {
    let src = source();
    let data: u64 = runs(64 * MIB, true).iter().map(|r| r.1.len() as u64).sum();
    let outcome = export::export(
        &src.home,
        &src.digest,
        ExportTarget::File(&src.out.join("s.tar")),
        &ExportOptions { plain_tar: true, ..sparse_opts() },
        &Progress::hidden(),
    )
    .expect("export");
    // Data (widened to whole 4 KiB blocks by the filesystem), headers, 2 extension blocks.
    let tar = fs::read(src.out.join("s.tar")).expect("bundle");
    assert_eq!(tar.len() as u64, outcome.tar_bytes);
    assert!(
        outcome.tar_bytes < data + 42 * 4096 + 16 * 512,
        "{} tar bytes for {data} of data",
        outcome.tar_bytes
    );
    let dense =
        export_bytes(&src.home, &src.digest, &ExportOptions { plain_tar: true, ..Default::default() });
    assert!(dense.len() as u64 > 64 * MIB);
}

#[test]
fn sparse_members_are_byte_identical_to_tar_rs_sparse_builder() {
    // tar-rs (the header code 0.6.2 shares) writes GNU sparse entries like GNU tar when asked.
    for (len, ends_with_data) in [(64 * MIB, true), (64 * MIB, false), (5 * MIB, false)] {
        let src = source_with(len, &runs(len, ends_with_data), true);
        let ours = tar_of(&export_bytes(&src.home, &src.digest, &sparse_opts()));
        let mut b = tar::Builder::new(Vec::new());
        b.mode(tar::HeaderMode::Complete);
        b.sparse(true);
        b.append_path_with_name(src.upper_path(), src.member()).expect("tar-rs");
        let theirs = b.into_inner().expect("tar-rs finish");
        // Our upper starts after the manifest (one header and one data record).
        let member = &theirs[..theirs.len() - 1024];
        assert_eq!(theirs[156], b'S', "tar-rs wrote a sparse member");
        assert!(&ours[1024..1024 + member.len()] == member, "{len} {ends_with_data}: the members differ");
        assert_eq!(ours.len(), 1024 + member.len() + 1024);
    }
}

#[test]
fn sparse_map_is_the_one_gnu_tar_writes() {
    let src = source();
    let ours = tar_of(&export_bytes(&src.home, &src.digest, &sparse_opts()));
    let out = Command::new("tar")
        .args(["--sparse", "--format=gnu", "-cf", "-", "upper.ext4"])
        .current_dir(&src.dir)
        .output()
        .expect("GNU tar must be installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let gnu = out.stdout;
    let (o, g) = (&ours[1024..], &gnu[..]);
    assert_eq!((o[156], g[156]), (b'S', b'S'));
    assert_eq!(&o[124..136], &g[124..136], "size (stored bytes)");
    assert_eq!(&o[386..495], &g[386..495], "map slots, isextended, realsize");
    // Extension blocks and the stored data follow, identical up to the padding.
    let stored: u64 = sparse::data_segments(&File::open(src.upper_path()).expect("open"), 64 * MIB)
        .expect("segments")
        .iter()
        .map(|s| s.1)
        .sum();
    let body = 2 * 512 + stored as usize;
    assert!(o[512..512 + body] == g[512..512 + body], "extension blocks or data differ");
}

#[test]
fn gnu_tar_extracts_our_sparse_bundle_to_identical_bytes_and_lists_it() {
    let src = source();
    let tar = tar_of(&export_bytes(&src.home, &src.digest, &sparse_opts()));
    let x = tempfile::tempdir().expect("tempdir");
    let gnu = |args: &[&str]| {
        let mut child = Command::new("tar")
            .args(args)
            .current_dir(x.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("GNU tar must be installed");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = tar.clone();
        let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
        let out = child.wait_with_output().expect("tar");
        writer.join().expect("writer").expect("write to tar");
        assert!(out.status.success(), "tar {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8")
    };
    gnu(&["-xf", "-"]);
    let extracted = x.path().join(src.member());
    assert!(fs::read(&extracted).expect("extracted upper") == src.upper, "GNU tar extracts other bytes");
    assert!(
        allocated(&extracted) < 4 * MIB,
        "GNU tar kept the holes: {} bytes allocated",
        allocated(&extracted)
    );
    let listing = gnu(&["-tvf", "-"]);
    let line = listing.lines().find(|l| l.ends_with(&src.member())).expect("upper listed");
    assert!(line.split_whitespace().any(|w| w == (64 * MIB).to_string()), "logical size listed: {line}");
}

#[test]
fn sparse_export_imports_with_holes_and_the_same_bytes_and_digests_as_dense() {
    let src = source();
    let work = tempfile::tempdir().expect("tempdir");
    let sparse_home = Home::at(work.path().join("sparse"));
    let dense_home = Home::at(work.path().join("dense"));
    let s = import_bytes(&export_bytes(&src.home, &src.digest, &sparse_opts()), &sparse_home);
    let d = import_bytes(&export_bytes(&src.home, &src.digest, &ExportOptions::default()), &dense_home);
    same_plan(&s.report, &d.report);
    assert_eq!(s.head_digest, src.digest);
    let (su, du) = (s.head_path.join("upper.ext4"), d.head_path.join("upper.ext4"));
    assert!(fs::read(&su).expect("sparse import") == src.upper, "imported bytes differ");
    assert!(fs::read(&du).expect("dense import") == src.upper);
    // The holes are holes: about the data is allocated, as on the dense path.
    let data: u64 = runs(64 * MIB, true).iter().map(|r| r.1.len() as u64).sum();
    assert!(
        allocated(&su) <= data + 43 * 4096 + 64 * 1024,
        "{} bytes allocated for {data} of data",
        allocated(&su)
    );
    assert_eq!(allocated(&su), allocated(&du));
    for home in [&sparse_home, &dense_home] {
        let snap = store::resolve(home, &src.digest).expect("stored");
        assert!(matches!(store::verify(&snap, None).expect("verify"), IntegrityStatus::Verified { .. }));
    }
}

#[test]
fn sparse_round_trip_is_byte_identical() {
    for src in
        [source(), source_with(64 * MIB, &runs(64 * MIB, false), false), source_with(8 * MIB, &[], true)]
    {
        let work = tempfile::tempdir().expect("tempdir");
        let x1 = export_bytes(&src.home, &src.digest, &sparse_opts());
        let home_b = Home::at(work.path().join("b"));
        import_bytes(&x1, &home_b);
        let x2 = export_bytes(&home_b, &src.digest, &sparse_opts());
        assert!(tar_of(&x1) == tar_of(&x2), "the second sparse export differs from the first");
        assert!(x1 == x2, "same tar, same zstd frame");
    }
}

#[test]
fn all_hole_upper_is_one_end_marker() {
    let src = source_with(8 * MIB, &[], true);
    let tar = tar_of(&export_bytes(&src.home, &src.digest, &sparse_opts()));
    let upper = &tar[1024..1536];
    assert_eq!(upper[156], b'S');
    assert_eq!(&upper[124..136], b"00000000000\0", "nothing stored");
    assert_eq!(&upper[386..410], b"00040000000\x0000000000000\0", "one zero-length slot at realsize");
    assert_eq!(tar.len(), 1024 + 512 + 1024);
    let r = validate(&tar, Limits::default()).expect("valid");
    assert_eq!(r.files[1].size, 8 * MIB);
}

#[test]
fn without_sparse_the_export_has_no_sparse_member() {
    // The 0.6.2 layout: byte identity with 0.6.2's own bundles is proved in export.rs.
    let src = source();
    let tar = tar_of(&export_bytes(&src.home, &src.digest, &ExportOptions::default()));
    let members = tar_crate_members(&tar);
    assert!(members.iter().all(|m| m.1 == b'0'), "{:?}", members.iter().map(|m| m.1).collect::<Vec<_>>());
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Complete);
    b.sparse(false);
    b.append_path_with_name(src.upper_path(), src.member()).expect("tar-rs");
    let theirs = b.into_inner().expect("tar-rs");
    assert!(tar[1024..] == theirs[..], "the dense upper is what tar-rs writes without sparse");
}

#[test]
fn a_fragmented_file_is_coalesced_to_the_importers_segment_limit() {
    let src = source();
    let limits = Limits { max_sparse_segments: 10, ..Limits::default() };
    let opts = ExportOptions { limits, ..sparse_opts() };
    let bundle = export_bytes(&src.home, &src.digest, &opts);
    let report = validate(&bundle, limits).expect("valid under the same limits");
    let tar = tar_of(&bundle);
    assert_eq!(tar[1024 + 156], b'S');
    assert_eq!(tar[1024 + 482], 1, "4 slots in the header, the rest in one extension block");
    assert_eq!(tar_crate_members(&tar)[1].2, src.upper);
    assert_eq!(report.files[1].size, 64 * MIB);
}

#[test]
fn data_written_into_a_hole_after_planning_fails_the_export() {
    let src = source();
    let plan = export::plan(&src.home, &src.digest, &sparse_opts()).expect("plan");
    let f = File::options().write(true).open(src.upper_path()).expect("open");
    f.write_all_at(b"late", 40 * MIB + 12345).expect("write into a hole");
    drop(f);
    let mut buf = Vec::new();
    let r = plan.write(ExportTarget::Writer(&mut buf), &Progress::hidden());
    let e = r.expect_err("the map no longer covers the data");
    assert!(matches!(e, HostError::Io { .. }), "{e}");
    assert!(e.to_string().contains("changed while the export was running"), "{e}");
}

#[test]
fn sparse_export_without_integrity_never_reads_a_hole() {
    let src = source_with(64 * MIB, &runs(64 * MIB, true), false);
    let bundle = export_bytes(&src.home, &src.digest, &sparse_opts());
    let r = validate(&bundle, Limits::default()).expect("valid");
    assert_eq!(r.snapshots[0].integrity, IntegrityStatus::NotRecorded);
    assert!(bundle.len() < 2 * MIB as usize, "{} bytes", bundle.len());
}

#[test]
fn help_says_that_0_6_2_cannot_read_sparse_bundles() {
    let out = command(["export", "--help"]).output().expect("run");
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(text.contains("--sparse"), "{text}");
    assert!(text.contains("microsandbox 0.6.2 cannot read sparse bundles"), "{text}");
}

#[test]
fn the_cli_writes_sparse_bundles_with_the_flag() {
    let src = source();
    let out_path = src.out.join("cli.tar.zst");
    fs::create_dir_all(&src.out).expect("mkdir");
    let args = [
        OsStr::new("export"),
        OsStr::new(&src.digest),
        OsStr::new("-o"),
        out_path.as_os_str(),
        OsStr::new("--sparse"),
        OsStr::new("-q"),
        OsStr::new("--home"),
        src.home.root.as_os_str(),
    ];
    let out = command(args).output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let tar = tar_of(&fs::read(&out_path).expect("bundle"));
    assert_eq!(tar[1024 + 156], b'S');
}
