//! Old-GNU sparse (`S`) members: the map rules of `docs/format-0.6.2.md` §9.3, each case named after
//! its rule and asserting the exact `Error::code()`, and the positive side: sparse bundles made by
//! our builder and by GNU tar give the same report and digests as the dense bundle of the same
//! snapshot, and other readers (GNU tar, the `tar` crate) read the same bytes.
//!
//! Conventions as in `hostile_rules.rs`: a rejected case is checked as a plain tar and inside a
//! zstd frame, and without its end-of-archive blocks; a case that could make the validator
//! allocate or hash from an untrusted number also asserts the peak memory of the rejection
//! (a per-thread counting allocator) and that no member event was emitted for it.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use snapbundle_core::report::{Area, Report};
use snapbundle_core::{validate, Error, Event, Limits, Sink, Stop, Validator};
use snapbundle_tests::alloc_counter::{peak_during, PerThreadCounter};
use snapbundle_tests::builder::*;
use snapbundle_tests::sparse::*;

// A per-thread allocation counter, to show that a rejection comes before a large allocation.
#[global_allocator]
static ALLOCATOR: PerThreadCounter = PerThreadCounter;

/// What validating a small plain-tar bundle holds at most (hash states, the record, a few
/// names): a rejection that allocated something sized by the archive would pass this.
const SMALL: usize = 256 << 10;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn code(r: &Result<Report, Error>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

/// A 256 KiB + 100 upper with data in blocks 0, 10, 11 and 40 and in its last byte.
fn upper() -> Vec<u8> {
    holed((256 << 10) + 100, &[0, 10, 11, 40], 7)
}

/// A snapshot of `upper` recording `msb-sparse-sha256-v1`.
fn snapshot(upper: Vec<u8>) -> Snapshot {
    Snapshot::new(upper, Integrity::Sparse)
}

/// The snapshot with its upper as GNU tar writes a sparse file.
fn sparse_body(s: &Snapshot) -> Tar {
    Sparse::of(&s.upper_path(), &s.upper).append(Tar::new().file(&s.manifest_path(), &s.manifest_bytes()))
}

/// The manifest, then `upper` as the upper member.
fn with_upper(s: &Snapshot, upper: &Sparse) -> Tar {
    upper.append(Tar::new().file(&s.manifest_path(), &s.manifest_bytes()))
}

/// The snapshot with an upper member carrying exactly these slots and stored bytes.
fn with_slots(s: &Snapshot, slots: Vec<(u64, u64)>) -> Tar {
    let data = stored(&s.upper, &slots);
    with_upper(s, &Sparse::with(&s.upper_path(), s.upper.len() as u64, slots, data))
}

/// A sink that records the members it was told about.
#[derive(Default)]
struct Members(Vec<String>);

impl Sink for Members {
    fn event(&mut self, event: Event<'_>) -> Result<(), Stop> {
        if let Event::Member(m) = event {
            self.0.push(m.path.to_string());
        }
        Ok(())
    }
}

/// Asserts that `body` + end-of-archive is rejected with `want` as plain tar and zstd, and that
/// `body` alone gives `want_cut`; that no event announced `name`; and that the plain rejection
/// held at most `max_alloc` bytes. Returns the plain error.
#[track_caller]
fn rejects_as(body: Tar, want: &str, want_cut: &str, limits: Limits, name: &str, max_alloc: usize) -> Error {
    let cut = body.clone().build();
    let full = body.end().build();
    let (plain, peak) = peak_during(|| validate(&full, limits));
    assert_eq!(code(&plain), want, "plain tar: {plain:?}");
    assert!(peak <= max_alloc, "{want}: the rejection held {peak} bytes (at most {max_alloc})");
    let compressed = validate(&zstd(&full), limits);
    assert_eq!(code(&compressed), want, "zstd: {compressed:?}");
    let without_end = validate(&cut, limits);
    assert_eq!(code(&without_end), want_cut, "without end-of-archive: {without_end:?}");
    let mut v = Validator::new(limits);
    let mut sink = Members::default();
    let r = v.push(&full, &mut sink).and_then(|()| v.finish());
    assert_eq!(code(&r), want);
    assert!(!sink.0.iter().any(|m| m == name), "{name} was announced before its rejection");
    let err = plain.expect_err("checked above");
    let text = err.to_string();
    assert!(text.contains(name), "the error does not name {name}: {text}");
    err
}

/// A map case judged at its header: the same error with or without the end blocks, nothing
/// announced, nothing allocated from it.
#[track_caller]
fn rejects_map(s: &Snapshot, body: Tar, want: &str) -> Error {
    rejects_as(body, want, want, Limits::default(), &s.upper_path(), SMALL)
}

/// Asserts the error's message contains `why`.
#[track_caller]
fn says(err: &Error, why: &str) {
    let text = err.to_string();
    assert!(text.contains(why), "error does not say {why:?}: {text}");
}

/// A sink that rebuilds every file from `Data` and `Hole` events, checking their order and the
/// hole alignment writers rely on.
#[derive(Default)]
struct Rebuild {
    files: Vec<(String, Vec<u8>, u64)>,
    problems: Vec<String>,
}

impl Sink for Rebuild {
    fn event(&mut self, event: Event<'_>) -> Result<(), Stop> {
        match event {
            Event::Member(m) if !m.slot.is_dir() => self.files.push((m.path.to_string(), Vec::new(), 0)),
            Event::Member(_) => {}
            Event::Data { offset, bytes } => {
                let Some((name, buf, _)) = self.files.last_mut() else { return Err(Stop) };
                if offset != buf.len() as u64 {
                    self.problems.push(format!("{name}: data at {offset}, expected {}", buf.len()));
                }
                buf.extend_from_slice(bytes);
            }
            Event::Hole { offset, len } => {
                let Some((name, buf, holes)) = self.files.last_mut() else { return Err(Stop) };
                if offset != buf.len() as u64 || offset % 4096 != 0 {
                    self.problems.push(format!("{name}: hole at {offset}, expected {}", buf.len()));
                }
                buf.resize(buf.len() + len as usize, 0);
                *holes += len;
            }
            Event::FileEnd { size, .. } => {
                let Some((name, buf, _)) = self.files.last_mut() else { return Err(Stop) };
                if size != buf.len() as u64 {
                    self.problems.push(format!("{name}: FileEnd says {size}, rebuilt {}", buf.len()));
                }
            }
        }
        Ok(())
    }
}

/// Validates with a rebuilding sink; returns the report and the rebuilt files.
fn rebuild(bytes: &[u8]) -> (Report, Vec<(String, Vec<u8>, u64)>) {
    let mut v = Validator::new(Limits::default());
    let mut sink = Rebuild::default();
    v.push(bytes, &mut sink).unwrap_or_else(|e| panic!("rejected: {e}"));
    let report = v.finish().unwrap_or_else(|e| panic!("rejected: {e}"));
    assert!(sink.problems.is_empty(), "{:?}", sink.problems);
    (report, sink.files)
}

/// Asserts that two reports describe the same snapshots and the same planned files (names,
/// sizes, digests, mtimes); the stream sizes differ between a sparse and a dense bundle.
#[track_caller]
fn same_plan(sparse: &Report, dense: &Report) {
    assert_eq!(sparse.snapshots, dense.snapshots);
    assert_eq!(sparse.files, dense.files);
    assert_eq!((&sparse.head, &sparse.cache), (&dense.head, &dense.cache));
}

// =============================================================================================
// Accepted sparse members
// =============================================================================================

#[test]
fn sparse_upper_gives_the_same_report_and_digests_as_the_dense_bundle() {
    let s = snapshot(upper());
    let dense = bundle_tar(std::slice::from_ref(&s));
    let sparse = sparse_body(&s).end().build();
    let dense_report = validate(&dense, Limits::default()).expect("dense");
    for bytes in [sparse.clone(), zstd(&sparse)] {
        let report = validate(&bytes, Limits::default()).unwrap_or_else(|e| panic!("rejected: {e}"));
        same_plan(&report, &dense_report);
    }
    // The stored data is the four data blocks and the last partial block: the rest never
    // travelled, and the tar stream is that much shorter.
    let report = validate(&sparse, Limits::default()).expect("valid");
    assert!(report.decompressed_bytes < 10 * 4096, "{}", report.decompressed_bytes);
    assert_eq!(report.files[1].size, s.upper.len() as u64);
}

#[test]
fn sparse_holes_reach_the_sink_as_holes_and_rebuild_the_logical_bytes() {
    let s = snapshot(upper());
    let (_, files) = rebuild(&sparse_body(&s).end().build());
    let (name, bytes, holes) = &files[1];
    assert_eq!(name, &s.upper_path());
    assert!(bytes == &s.upper, "rebuilt upper differs");
    // Everything but the four data blocks and the final partial block came as holes.
    assert_eq!(*holes, s.upper.len() as u64 - 4 * 4096 - 100);
}

#[test]
fn sparse_map_with_extension_blocks_is_accepted() {
    // 60 data segments: 4 in the header, 21 + 21 + 14 (+ the end marker) in three extension
    // blocks.
    let blocks: Vec<usize> = (0..60).map(|i| i * 3 + 1).collect();
    let s = snapshot(holed(200 * 4096, &blocks, 3));
    let sp = Sparse::of(&s.upper_path(), &s.upper);
    assert_eq!(sp.slots.len(), 62, "60 blocks, the last byte's block, the end marker");
    assert_eq!(sp.extension_blocks().len(), 3);
    let bytes = with_upper(&s, &sp).end().build();
    same_plan(
        &validate(&bytes, Limits::default()).expect("valid"),
        &validate(&bundle_tar(std::slice::from_ref(&s)), Limits::default()).expect("dense"),
    );
    let (_, files) = rebuild(&bytes);
    assert!(files[1].1 == s.upper);
}

#[test]
fn all_hole_and_empty_sparse_uppers_are_accepted() {
    for len in [0usize, 4096, 1 << 20] {
        let s = snapshot(vec![0; len]);
        let sparse = sparse_body(&s).end().build();
        let report = validate(&sparse, Limits::default()).unwrap_or_else(|e| panic!("{len}: {e}"));
        same_plan(
            &report,
            &validate(&bundle_tar(std::slice::from_ref(&s)), Limits::default()).expect("dense"),
        );
        let (_, files) = rebuild(&sparse);
        assert_eq!((files[1].1.len(), files[1].2), (len, len as u64));
    }
}

#[test]
fn a_map_that_ends_with_data_needs_no_end_marker() {
    // tar-rs and GNU tar read a map whose last data segment reaches realsize; GNU tar itself
    // always adds the marker.
    let s = snapshot(upper());
    let mut slots = data_segments(&s.upper);
    assert_eq!(slots.last().map(|l| l.0 + l.1), Some(s.upper.len() as u64));
    let report = validate(&with_slots(&s, slots.clone()).end().build(), Limits::default()).expect("valid");
    assert_eq!(report.files[1].size, s.upper.len() as u64);
    // Adjacent segments (touching, not overlapping) are fine too.
    let (o, n) = slots[0];
    slots.splice(0..1, [(o, 2048), (o + 2048, n - 2048)]);
    assert!(validate(&with_slots(&s, slots).end().build(), Limits::default()).is_ok());
}

#[test]
fn base256_realsize_is_legal() {
    // GNU writes base-256 from 8 GiB up; any value may use it.
    let s = snapshot(upper());
    let mut sp = Sparse::of(&s.upper_path(), &s.upper);
    sp.real_size_base256 = true;
    let report = validate(&with_upper(&s, &sp).end().build(), Limits::default()).expect("valid");
    assert_eq!(report.files[1].size, s.upper.len() as u64);
}

#[test]
fn an_extra_snapshot_file_may_be_sparse() {
    let s = snapshot(upper());
    let notes = holed(64 << 10, &[3], 9);
    let name = format!("{}/disk2.img", s.prefix());
    let sparse = Sparse::of(&name, &notes).append(sparse_body(&s)).end().build();
    let dense = bundle_tar(std::slice::from_ref(&s));
    let dense = [&dense[..dense.len() - 1024], &Tar::new().file(&name, &notes).end().build()[..]].concat();
    same_plan(
        &validate(&sparse, Limits::default()).expect("valid"),
        &validate(&dense, Limits::default()).expect("dense"),
    );
}

#[test]
fn a_long_name_may_precede_a_sparse_member() {
    let s = snapshot(upper()).with_prefix(&"p".repeat(120));
    let mut sp = Sparse::of(&s.upper_path(), &s.upper);
    sp.name = s.upper_path()[..100].to_string();
    let bytes =
        sp.append(Tar::new().long_file(&s.manifest_path(), &s.manifest_bytes()).long_name(&s.upper_path()));
    let report = validate(&bytes.end().build(), Limits::default()).expect("valid");
    assert_eq!(report.files[1].path, s.upper_path());
}

// =============================================================================================
// GNU tar and the tar crate
// =============================================================================================

/// Writes `content` to `path` with holes wherever a 4 KiB block is zero.
fn write_sparse_file(path: &Path, content: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(path).expect("create");
    f.set_len(content.len() as u64).expect("set_len");
    for (i, block) in content.chunks(4096).enumerate() {
        if block.iter().any(|&b| b != 0) {
            f.write_all_at(block, (i * 4096) as u64).expect("write");
        }
    }
    f.sync_all().expect("sync");
}

/// Runs GNU tar in `dir`; panics with its stderr on failure.
fn gnu_tar(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("tar").args(args).current_dir(dir).output().expect("GNU tar must be installed");
    assert!(out.status.success(), "tar {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Type flags of the members of a trusted tar stream (octal and base-256 sizes, `S` maps
/// skipped).
fn type_flags(tar: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut a = tar::Archive::new(tar);
    for e in a.entries().expect("entries") {
        out.push(e.expect("entry").header().entry_type().as_byte());
    }
    out
}

#[test]
fn gnu_tar_sparse_bundles_give_the_same_report_as_dense_ones() {
    // Enough data runs for extension blocks, a hole at the end, and a partial last block.
    let blocks: Vec<usize> = (0..40).map(|i| i * 5 + 2).collect();
    let mut content = holed(300 * 4096 + 700, &blocks, 11);
    *content.last_mut().expect("non-empty") = 0;
    let s = snapshot(content);
    let dir = TempDir::new("gnu-sparse");
    let snap = dir.path().join(s.prefix());
    std::fs::create_dir(&snap).expect("mkdir");
    std::fs::write(snap.join("manifest.json"), s.manifest_bytes()).expect("manifest");
    write_sparse_file(&snap.join("upper.ext4"), &s.upper);
    let members = [s.manifest_path(), s.upper_path()];
    let m: Vec<&str> = members.iter().map(String::as_str).collect();
    let dense = gnu_tar(dir.path(), &[&["--format=gnu", "-cf", "-"], &m[..]].concat());
    let dense_report = validate(&dense, Limits::default()).expect("GNU tar's dense bundle");
    for format in ["--format=gnu", "--format=oldgnu"] {
        let sparse = gnu_tar(dir.path(), &[&["--sparse", format, "-cf", "-"], &m[..]].concat());
        assert_eq!(type_flags(&sparse), vec![b'0', b'S'], "{format}: GNU tar wrote no sparse member");
        assert!(sparse.len() < dense.len() / 4, "{format}: {} vs {}", sparse.len(), dense.len());
        let report = validate(&sparse, Limits::default()).unwrap_or_else(|e| panic!("{format}: {e}"));
        same_plan(&report, &dense_report);
        let (_, files) = rebuild(&zstd(&sparse));
        assert!(files[1].1 == s.upper, "{format}: rebuilt upper differs");
    }
}

#[test]
fn gnu_tar_and_the_tar_crate_read_our_builder_sparse_members_identically() {
    let blocks: Vec<usize> = (0..30).map(|i| i * 2).collect();
    let s = snapshot(holed(100 * 4096 + 1, &blocks, 5));
    let bytes = sparse_body(&s).end().build();
    assert!(validate(&bytes, Limits::default()).is_ok());
    // The tar crate.
    let mut a = tar::Archive::new(&bytes[..]);
    let mut seen = Vec::new();
    for e in a.entries().expect("entries") {
        let mut e = e.expect("entry");
        let path = e.path().expect("path").to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("read");
        seen.push((path, data));
    }
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].0, s.upper_path());
    assert!(seen[1].1 == s.upper, "the tar crate reads other bytes");
    // GNU tar, extracting sparse (and listing the logical size).
    let dir = TempDir::new("gnu-read-sparse");
    std::fs::write(dir.path().join("b.tar"), &bytes).expect("write");
    gnu_tar(dir.path(), &["-xf", "b.tar"]);
    let extracted = std::fs::read(dir.path().join(s.upper_path())).expect("extracted upper");
    assert!(extracted == s.upper, "GNU tar extracts other bytes");
    let listing = String::from_utf8(gnu_tar(dir.path(), &["-tvf", "b.tar"])).expect("utf-8");
    let line = listing.lines().find(|l| l.ends_with(&s.upper_path())).expect("upper listed");
    assert!(line.split_whitespace().any(|w| w == s.upper.len().to_string()), "{line}");
}

// =============================================================================================
// Hostile maps (`docs/hostile-inputs.md` §2.5)
// =============================================================================================

#[test]
fn overlapping_segments_are_an_invalid_sparse_map() {
    let s = snapshot(upper());
    let err = rejects_map(
        &s,
        with_slots(&s, vec![(0, 8192), (4096, 4096), (s.upper.len() as u64, 0)]),
        "invalid_sparse_map",
    );
    says(&err, "segments overlap");
}

#[test]
fn unsorted_segments_are_an_invalid_sparse_map() {
    let s = snapshot(upper());
    let err = rejects_map(
        &s,
        with_slots(&s, vec![(40960, 4096), (0, 4096), (s.upper.len() as u64, 0)]),
        "invalid_sparse_map",
    );
    says(&err, "not sorted");
}

#[test]
fn a_segment_past_realsize_is_an_invalid_sparse_map() {
    let s = snapshot(upper());
    let len = s.upper.len() as u64;
    let data = [stored(&s.upper, &[(0, 4096)]), vec![1; 4096]].concat();
    let sp = Sparse::with(&s.upper_path(), len, vec![(0, 4096), (len - 100, 4096)], data);
    let err = rejects_map(&s, with_upper(&s, &sp), "invalid_sparse_map");
    says(&err, "past realsize");
    // The end marker beyond realsize too.
    let err = rejects_map(&s, with_slots(&s, vec![(0, 4096), (len + 1, 0)]), "invalid_sparse_map");
    says(&err, "past realsize");
}

#[test]
fn segment_lengths_must_sum_to_the_stored_size() {
    let s = snapshot(upper());
    // The header stores more than the map places: the extra bytes would be read as the next
    // header by one reader and as data by another.
    let mut more = Sparse::of(&s.upper_path(), &s.upper);
    more.data.extend_from_slice(&[0xaa; 512]);
    more.size = more.data.len() as u64;
    says(&rejects_map(&s, with_upper(&s, &more), "invalid_sparse_map"), "do not sum to the header's size");
    // The map places more than the header stores.
    let mut fewer = Sparse::of(&s.upper_path(), &s.upper);
    fewer.size -= 512;
    fewer.data.truncate(fewer.size as usize);
    says(&rejects_map(&s, with_upper(&s, &fewer), "invalid_sparse_map"), "more bytes than the header's size");
}

#[test]
fn realsize_must_equal_the_manifest_size() {
    let s = snapshot(upper());
    let mut sp = Sparse::of(&s.upper_path(), &s.upper);
    let grown = s.upper.len() as u64 + 4096;
    sp.real_size = grown;
    sp.slots.last_mut().expect("marker").0 = grown;
    // Manifest first: refused at the upper's header, before it is announced.
    let body = with_upper(&s, &sp);
    for bytes in [body.clone().build(), body.clone().end().build(), zstd(&body.end().build())] {
        let mut v = Validator::new(Limits::default());
        let mut sink = Members::default();
        let r = v.push(&bytes, &mut sink).and_then(|()| v.finish());
        assert_eq!(code(&r), "upper_size_mismatch", "{r:?}");
        says(&r.expect_err("checked"), &format!("manifest says {}, file is {grown}", s.upper.len()));
        assert_eq!(sink.0, vec![s.manifest_path()], "the upper was announced");
    }
    // Upper first: refused once the manifest is known, at the end.
    let upper_first = sp.append(Tar::new()).file(&s.manifest_path(), &s.manifest_bytes());
    let r = validate(&upper_first.end().build(), Limits::default());
    assert_eq!(code(&r), "upper_size_mismatch");
}

#[test]
fn endless_extension_chain_stops_at_the_segment_limit() {
    // A header that announces extension blocks forever, each with 21 well-formed segments.
    let s = snapshot(upper());
    let real: u64 = 1 << 32;
    let segment = |i: u64| (i * 8192, 512);
    let head = Sparse::with(&s.upper_path(), real, (0..4).map(segment).collect(), Vec::new());
    let header = head.header().size(1 << 30).raw(INLINE_EXTENDED, &[1]);
    let blocks = (0..200_000u64).map(|b| {
        let mut block = [0u8; BLOCK];
        let slots: Vec<(u64, u64)> = (0..21).map(|i| segment(4 + b * 21 + i)).collect();
        let bytes = slot_bytes(&slots);
        block[..bytes.len()].copy_from_slice(&bytes);
        block[EXTENSION_EXTENDED] = 1;
        block
    });
    for (limits, max_alloc) in
        [(Limits::default(), 3 << 20), (Limits { max_sparse_segments: 100, ..Limits::default() }, SMALL)]
    {
        let mut v = Validator::new(limits);
        let manifest = Tar::new().file(&s.manifest_path(), &s.manifest_bytes()).header(&header).build();
        let started = Instant::now();
        let (r, peak) = peak_during(|| {
            v.push(&manifest, &mut snapbundle_core::NullSink)?;
            for b in blocks.clone() {
                v.push(&b, &mut snapbundle_core::NullSink)?;
            }
            Ok::<(), Error>(())
        });
        let err = r.expect_err("an endless chain must be refused");
        assert_eq!(err.code(), "too_many_sparse_segments", "{err}");
        assert!(err.to_string().contains(&s.upper_path()), "{err}");
        assert!(peak <= max_alloc, "the map held {peak} bytes (at most {max_alloc})");
        assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    }
}

#[test]
fn too_many_segments_are_rejected() {
    let blocks: Vec<usize> = (0..30).map(|i| i * 2).collect();
    let s = snapshot(holed(100 * 4096, &blocks, 1));
    let sp = Sparse::of(&s.upper_path(), &s.upper);
    let n = sp.slots.len() as u32;
    let limits = |max| Limits { max_sparse_segments: max, ..Limits::default() };
    let full = with_upper(&s, &sp).end().build();
    assert!(validate(&full, limits(n)).is_ok(), "exactly at the limit");
    rejects_as(
        with_upper(&s, &sp),
        "too_many_sparse_segments",
        "too_many_sparse_segments",
        limits(n - 1),
        &s.upper_path(),
        SMALL,
    );
    // The limit applies to the header's four slots too.
    rejects_as(
        with_upper(&s, &sp),
        "too_many_sparse_segments",
        "too_many_sparse_segments",
        limits(3),
        &s.upper_path(),
        SMALL,
    );
}

#[test]
fn huge_realsize_without_data_exceeds_the_logical_budget_at_its_header() {
    // 2^62 bytes of holes would take decades to hash: refused at the header, nothing hashed.
    let s = snapshot(upper());
    for real in [1u64 << 62, (1 << 40) + 1] {
        let sp = Sparse::with(&s.upper_path(), real, vec![(real, 0)], Vec::new());
        let started = Instant::now();
        let upper_first = sp.append(Tar::new()).file(&s.manifest_path(), &s.manifest_bytes());
        rejects_as(
            upper_first,
            "logical_budget_exceeded",
            "logical_budget_exceeded",
            Limits::default(),
            &s.upper_path(),
            SMALL,
        );
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    }
    // The ceiling is the decompressed budget, counted over all members' logical sizes.
    let sp = Sparse::of(&s.upper_path(), &s.upper);
    let tight = Limits { max_decompressed_bytes: s.upper.len() as u64, ..Limits::default() };
    rejects_as(
        with_upper(&s, &sp),
        "logical_budget_exceeded",
        "logical_budget_exceeded",
        tight,
        &s.upper_path(),
        SMALL,
    );
}

#[test]
fn sparse_cache_files_and_manifests_are_not_allowed() {
    let s = snapshot(upper());
    // manifest.json as a sparse member (all data, no hole).
    let m = s.manifest_bytes();
    let manifest = Sparse::with(&s.manifest_path(), m.len() as u64, vec![(0, m.len() as u64)], m.clone());
    let body =
        manifest.append(Tar::new()).raw(&Sparse::of(&s.upper_path(), &s.upper).append(Tar::new()).build());
    let err = rejects_as(
        body,
        "sparse_not_allowed",
        "sparse_not_allowed",
        Limits::default(),
        &s.manifest_path(),
        SMALL,
    );
    says(&err, "manifest.json");
    // An image cache artifact.
    let c = ImageCache::new("docker.io/library/python:3.12", 1);
    let s = c.pin(snapshot(upper()));
    let layer = c.layer_path(0);
    let body = c.files().into_iter().fold(sparse_body(&s), |t, (name, data)| {
        if name == layer {
            Sparse::of(&name, &data).append(t)
        } else {
            t.file(&name, &data)
        }
    });
    let err = rejects_as(body, "sparse_not_allowed", "sparse_not_allowed", Limits::default(), &layer, SMALL);
    says(&err, "image cache file");
}

#[test]
fn sparse_entry_named_like_a_directory_is_rejected() {
    let s = snapshot(upper());
    let sp = Sparse::of(&format!("{}/", s.prefix()), &s.upper);
    let body = sp.append(Tar::new().file(&s.manifest_path(), &s.manifest_bytes()));
    rejects_as(body, "unsafe_path", "unsafe_path", Limits::default(), &s.prefix(), SMALL);
    let sp = Sparse::of("toplevel.img", &s.upper);
    rejects_as(
        sp.append(Tar::new()),
        "unexpected_member",
        "unexpected_member",
        Limits::default(),
        "toplevel.img",
        SMALL,
    );
}

#[test]
fn negative_or_malformed_map_numbers_are_rejected() {
    let s = snapshot(upper());
    let sp = Sparse::of(&s.upper_path(), &s.upper);
    let body = |at: usize, bytes: &[u8]| with_upper_edit(&s, &sp, at, bytes);
    rejects_map(&s, body(REAL_SIZE.start, &[0xff; 12]), "size_overflow");
    let mut huge = [0xffu8; 12];
    huge[0] = 0x80;
    rejects_map(&s, body(REAL_SIZE.start, &huge), "size_overflow");
    says(&rejects_map(&s, body(REAL_SIZE.start, b"00000001x00\0"), "bad_numeric_field"), "realsize");
    says(&rejects_map(&s, body(INLINE_MAP.start, b"000000000000"), "bad_numeric_field"), "sparse offset");
    says(
        &rejects_map(&s, body(INLINE_MAP.start + 12, b"0000001 000x"), "bad_numeric_field"),
        "sparse numbytes",
    );
    rejects_map(&s, body(INLINE_MAP.start + 12, &[0xff; 12]), "size_overflow");
}

/// The manifest, then `sp` with `bytes` written over its header at `at`.
fn with_upper_edit(s: &Snapshot, sp: &Sparse, at: usize, bytes: &[u8]) -> Tar {
    let bytes = bytes.to_vec();
    sp.append_with(Tar::new().file(&s.manifest_path(), &s.manifest_bytes()), move |h| h.raw(at, &bytes))
}

#[test]
fn empty_slots_end_the_map_strictly() {
    // GNU tar stops at the first slot whose length starts with NUL; tar-rs skips such a slot and
    // reads on. Whatever they would disagree on is refused.
    let s = snapshot(upper());
    let sp = Sparse::of(&s.upper_path(), &s.upper);
    assert_eq!(sp.slots.len(), 5, "four data segments and the marker");
    let len = s.upper.len() as u64;
    let two = Sparse::with(&s.upper_path(), len, vec![sp.slots[0], (len, 0)], sp.data[..4096].to_vec());
    let slot3 = INLINE_MAP.start + 2 * 24;
    let err = rejects_map(&s, with_upper_edit(&s, &two, slot3, b"000000000001"), "invalid_sparse_map");
    says(&err, "empty slot");
    let err = rejects_map(&s, with_upper_edit(&s, &two, slot3 + 24 + 12 + 3, b"1"), "invalid_sparse_map");
    says(&err, "empty slot");
    let err = rejects_map(&s, with_upper_edit(&s, &two, INLINE_EXTENDED, &[1]), "invalid_sparse_map");
    says(&err, "isextended is set after the map ended");
    let err = rejects_map(&s, with_upper_edit(&s, &sp, INLINE_EXTENDED, &[2]), "invalid_sparse_map");
    says(&err, "neither 0 nor 1");
}

#[test]
fn extension_blocks_are_strict() {
    let blocks: Vec<usize> = (0..10).map(|i| i * 2).collect();
    let s = snapshot(holed(40 * 4096, &blocks, 2));
    let sp = Sparse::of(&s.upper_path(), &s.upper);
    assert_eq!(sp.extension_blocks().len(), 1);
    let manifest = || Tar::new().file(&s.manifest_path(), &s.manifest_bytes());
    let with_ext = |edit: &dyn Fn(&mut [u8; BLOCK])| {
        let mut ext = sp.extension_blocks()[0];
        edit(&mut ext);
        manifest().header(&sp.header()).raw(&ext).data(&sp.data)
    };
    says(&rejects_map(&s, with_ext(&|b| b[EXTENSION_EXTENDED] = 7), "invalid_sparse_map"), "neither 0 nor 1");
    says(&rejects_map(&s, with_ext(&|b| b[511] = 1), "invalid_sparse_map"), "bytes after isextended");
    // An extension block with no segment (GNU never writes one).
    let mut h = Sparse::with(&s.upper_path(), sp.real_size, sp.slots[..4].to_vec(), Vec::new());
    h.size = sp.size;
    let empty_ext = manifest().header(&h.header().raw(INLINE_EXTENDED, &[1])).zero_block().data(&sp.data);
    says(&rejects_map(&s, empty_ext, "invalid_sparse_map"), "holds no segment");
    // Input that ends inside the extension blocks is truncated.
    let cut = manifest().header(&sp.header()).build();
    let r = validate(&cut, Limits::default());
    assert_eq!(code(&r), "truncated", "{r:?}");
    assert!(r.expect_err("checked").to_string().contains("extension block"));
}

#[test]
fn zero_length_segments_only_end_the_map() {
    let s = snapshot(upper());
    let len = s.upper.len() as u64;
    let slots = data_segments(&s.upper);
    let mut middle = slots.clone();
    middle.insert(1, (20000, 0));
    middle.push((len, 0));
    says(
        &rejects_map(&s, with_slots(&s, middle), "invalid_sparse_map"),
        "zero-length segment before realsize",
    );
    let mut after = slots.clone();
    after.push((len, 0));
    after.push((len, 0));
    says(&rejects_map(&s, with_slots(&s, after), "invalid_sparse_map"), "follows the zero-length end marker");
}

#[test]
fn a_map_must_reach_realsize() {
    // A map that stops short of realsize (no end marker): tar-rs refuses it.
    let s = snapshot(upper());
    let slots: Vec<(u64, u64)> = data_segments(&s.upper).into_iter().take(3).collect();
    says(&rejects_map(&s, with_slots(&s, slots), "invalid_sparse_map"), "does not reach realsize");
}

#[test]
fn data_segments_but_the_last_are_whole_records() {
    // tar-rs requires every segment but the last to end on a 512-byte boundary of the stream.
    let s = snapshot(upper());
    let len = s.upper.len() as u64;
    let err = rejects_map(&s, with_slots(&s, vec![(0, 100), (40960, 4096), (len, 0)]), "invalid_sparse_map");
    says(&err, "multiple of 512");
}

#[test]
fn sparse_entries_need_a_gnu_header_and_no_link_name() {
    let s = snapshot(upper());
    let sp = Sparse::of(&s.upper_path(), &s.upper);
    // In a ustar header the map area is the name prefix, so only an empty map gets this far.
    let empty = Sparse::with(&s.upper_path(), 0, Vec::new(), Vec::new());
    let ustar = empty.append_with(Tar::new().file(&s.manifest_path(), &s.manifest_bytes()), |h| {
        h.field(257..263, b"ustar\0").field(263..265, b"00").raw(REAL_SIZE.start, &[0; 12])
    });
    says(&rejects_map(&s, ustar, "invalid_sparse_map"), "needs a GNU header");
    let ustar_map = sp.append_with(Tar::new().file(&s.manifest_path(), &s.manifest_bytes()), |h| {
        h.field(257..263, b"ustar\0").field(263..265, b"00")
    });
    // (That one fails as a ustar header already, before its name is known.)
    assert_eq!(code(&validate(&ustar_map.end().build(), Limits::default())), "bytes_after_nul");
    let link = sp.append_with(Tar::new().file(&s.manifest_path(), &s.manifest_bytes()), |h| {
        h.link_name(b"/etc/passwd")
    });
    rejects_map(&s, link, "link_name_set");
}

#[test]
fn sparse_digests_cover_the_holes() {
    // `docs/hostile-inputs.md` §2.6: one byte flipped in a hole of a sparse upper. In a sparse member the
    // holes are not stored; a map that moves data into a hole, or drops a segment, changes the
    // logical content, and the digest sees it.
    let s = snapshot(upper());
    let len = s.upper.len() as u64;
    let mut shifted = data_segments(&s.upper);
    shifted[1].0 += 4096;
    let data = stored(&s.upper, &data_segments(&s.upper));
    shifted.push((len, 0));
    let moved = with_upper(&s, &Sparse::with(&s.upper_path(), len, shifted, data));
    assert_eq!(code(&validate(&moved.end().build(), Limits::default())), "upper_digest_mismatch");
    let mut flipped = Sparse::of(&s.upper_path(), &s.upper);
    flipped.data[5000] ^= 0x10;
    assert_eq!(
        code(&validate(&with_upper(&s, &flipped).end().build(), Limits::default())),
        "upper_digest_mismatch"
    );
    // Plain sha256 integrity is computed over the logical bytes too.
    let plain = Snapshot::new(upper(), Integrity::Sha256);
    let body = Sparse::of(&plain.upper_path(), &plain.upper)
        .append(Tar::new().file(&plain.manifest_path(), &plain.manifest_bytes()));
    let report = validate(&body.end().build(), Limits::default()).expect("valid");
    assert_eq!(report.files[1].digest, sha256_digest(&plain.upper));
    assert_eq!(report.files[1].algorithm, "sha256");
    assert_eq!(report.files[1].area, Area::Snapshots);
}
