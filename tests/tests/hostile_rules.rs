//! One test per rule of `docs/hostile-inputs.md` that the validation core judges, each named after its
//! rule, building its input byte by byte and asserting the exact `Error::code()`.
//!
//! Conventions:
//! - tar-level cases are checked as a plain tar *and* inside a zstd frame: the container must not
//!   change the verdict;
//! - every rejected tar case is also checked without its end-of-archive blocks. A rule judged
//!   while the stream goes by ([`Judged::WhileStreaming`]) gives the same error; a rule judged at
//!   the end of the bundle ([`Judged::AtTheEnd`]) gives `missing_end_of_archive` instead, because
//!   the core rejects a clean end of input without the two zero blocks before it concludes
//!   anything (0.6.2 tolerates it; we do not, so a bundle cut exactly between two members cannot
//!   pass as a shorter bundle);
//! - every accepted bundle is also extracted with GNU tar, which must see the same files with the
//!   same bytes (accepted ⊆ what GNU tar reads).

use std::path::Path;
use std::process::Command;

use snapbundle_core::report::{Area, Container, Role};
use snapbundle_core::{validate, Error, Event, Limits, NullSink, Report, Sink, Stop, Validator};
use snapbundle_tests::alloc_counter::{peak_during, PerThreadCounter};
use snapbundle_tests::builder::*;

// A per-thread allocation counter, to show that a rejection comes before a large allocation.
#[global_allocator]
static ALLOCATOR: PerThreadCounter = PerThreadCounter;

const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// When the rule is judged: while the bytes stream by, or once the whole bundle was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Judged {
    WhileStreaming,
    AtTheEnd,
}

fn code(r: &Result<Report, Error>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

fn check(bytes: &[u8]) -> Result<Report, Error> {
    validate(bytes, Limits::default())
}

/// Asserts that `body` followed by the end-of-archive blocks is rejected with `want` (as a plain
/// tar and zstd-compressed), and that `body` alone is rejected as `judged` says. Returns the
/// plain tar's error.
#[track_caller]
fn rejects(body: Tar, want: &str, judged: Judged) -> Error {
    rejects_with(body, want, judged, Limits::default())
}

#[track_caller]
fn rejects_with(body: Tar, want: &str, judged: Judged, limits: Limits) -> Error {
    let cut = body.clone().build();
    let full = body.end().build();
    let plain = validate(&full, limits);
    assert_eq!(code(&plain), want, "plain tar: {plain:?}");
    let compressed = validate(&zstd(&full), limits);
    assert_eq!(code(&compressed), want, "zstd: {compressed:?}");
    let without_end = validate(&cut, limits);
    let want_cut = match judged {
        Judged::WhileStreaming => want,
        Judged::AtTheEnd => "missing_end_of_archive",
    };
    assert_eq!(code(&without_end), want_cut, "without end-of-archive: {without_end:?}");
    plain.expect_err("checked above")
}

/// Asserts that exactly `bytes` are rejected with `want`.
#[track_caller]
fn rejects_bytes(bytes: &[u8], want: &str) -> Error {
    let r = check(bytes);
    assert_eq!(code(&r), want, "{r:?}");
    r.expect_err("checked above")
}

/// Asserts that the error text names `what` (an entry, a field, a number).
#[track_caller]
fn names(err: &Error, what: &str) {
    let text = err.to_string();
    assert!(text.contains(what), "error does not name {what:?}: {text}");
}

/// Asserts that `body` + end-of-archive is accepted, plain and compressed, that GNU tar reads the
/// same files with the same bytes, and that `body` without the end-of-archive is not accepted.
#[track_caller]
fn accepts(body: Tar) -> Report {
    let cut = body.clone().build();
    let full = body.end().build();
    let report = accepts_bytes(&full);
    let compressed = check(&zstd(&full)).unwrap_or_else(|e| panic!("zstd form rejected: {e}"));
    assert_eq!(compressed.container, Container::Zstd);
    assert_eq!((&compressed.snapshots, &compressed.files), (&report.snapshots, &report.files));
    assert_eq!(code(&check(&cut)), "missing_end_of_archive");
    report
}

/// Asserts that a plain tar is accepted and that GNU tar extracts exactly the planned files.
#[track_caller]
fn accepts_bytes(tar: &[u8]) -> Report {
    let report = check(tar).unwrap_or_else(|e| panic!("rejected: {e}"));
    gnu_tar_reads_the_same(tar, &report);
    report
}

/// Extracts `tar` with GNU tar and compares every regular file with the report's plan.
#[track_caller]
fn gnu_tar_reads_the_same(tar: &[u8], report: &Report) {
    let dir = TempDir::new("gnu-read");
    let archive = dir.path().join("bundle.tar");
    std::fs::write(&archive, tar).expect("write archive");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let status = Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&out).status();
    assert!(
        status.expect("GNU tar must be installed").success(),
        "GNU tar could not read an accepted bundle"
    );
    let mut extracted = Vec::new();
    list_files(&out, &out, &mut extracted);
    extracted.sort();
    let mut planned: Vec<(String, String)> = report
        .files
        .iter()
        .map(|f| {
            let path = match f.area {
                Area::Snapshots => f.path.clone(),
                Area::Cache => format!("cache/{}", f.path),
            };
            (path, f.digest.clone())
        })
        .collect();
    planned.sort();
    // GNU tar's bytes, hashed by each file's plan algorithm.
    let extracted: Vec<(String, String)> = extracted
        .into_iter()
        .map(|(path, bytes)| {
            let algorithm = report
                .files
                .iter()
                .find(|f| match f.area {
                    Area::Snapshots => f.path == path,
                    Area::Cache => format!("cache/{}", f.path) == path,
                })
                .map_or("sha256", |f| f.algorithm.as_str());
            (path, plan_digest(algorithm, &bytes))
        })
        .collect();
    assert_eq!(extracted, planned, "GNU tar reads other files or other bytes than the validator planned");
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let e = e.expect("entry");
        let ty = e.file_type().expect("file type");
        if ty.is_dir() {
            list_files(root, &e.path(), out);
        } else {
            assert!(ty.is_file(), "GNU tar extracted a non-regular file {:?}", e.path());
            let rel = e.path().strip_prefix(root).expect("under root").to_string_lossy().into_owned();
            let bytes = std::fs::read(e.path()).expect("read");
            out.push((rel, bytes));
        }
    }
}

/// A snapshot's members with its manifest bytes replaced by `json`.
fn with_manifest_json(s: &Snapshot, json: &str) -> Tar {
    Tar::new().file(&s.manifest_path(), json.as_bytes()).file(&s.upper_path(), &s.upper)
}

/// The canonical manifest JSON of `s` as a string.
fn json_of(s: &Snapshot) -> String {
    String::from_utf8(s.manifest_bytes()).expect("UTF-8")
}

/// A sink that records the paths of the members it was told about.
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

/// Validates with a recording sink; returns the result and the members announced.
fn members_announced(bytes: &[u8]) -> (Result<Report, Error>, Vec<String>) {
    let mut v = Validator::new(Limits::default());
    let mut sink = Members::default();
    let r = v.push(bytes, &mut sink).and_then(|()| v.finish());
    (r, sink.0)
}

/// Pushes `pieces` in chunks of about `chunk` bytes until the validator fails; returns the
/// error and the validator (to read its counters). Panics if the input runs out first.
fn push_until_error(
    limits: Limits,
    pieces: impl Iterator<Item = Vec<u8>>,
    chunk: usize,
) -> (Error, Validator) {
    let mut v = Validator::new(limits);
    let mut buf = Vec::with_capacity(chunk + 1024);
    for piece in pieces {
        buf.extend_from_slice(&piece);
        if buf.len() >= chunk {
            if let Err(e) = v.push(&buf, &mut NullSink) {
                return (e, v);
            }
            buf.clear();
        }
    }
    if let Err(e) = v.push(&buf, &mut NullSink) {
        return (e, v);
    }
    panic!("the input ran out before the validator rejected it");
}

fn small_bundle() -> Vec<u8> {
    bundle_tar(&[Snapshot::small(1)])
}

// =============================================================================================
// Container and zstd
// =============================================================================================

#[test]
fn unknown_leading_bytes_are_an_unknown_container() {
    let mut text = b"This is not a bundle, it is a letter. ".repeat(40);
    text.truncate(1500);
    rejects_bytes(&text, "unknown_container");
    // Shorter than a zstd magic, or one tar record that is not a tar header.
    rejects_bytes(b"ab", "unknown_container");
    let mut record = Header::file("snap/manifest.json", 0).block();
    record[257..263].copy_from_slice(b"XXXXXX");
    rejects_bytes(&record, "unknown_container");
    // zstd content that is not tar: the tar layer reports the header format.
    rejects_bytes(&zstd(&text), "header_format");
}

#[test]
fn empty_input_is_not_a_bundle() {
    rejects_bytes(b"", "empty_input");
}

#[test]
fn other_compressors_are_unsupported_containers() {
    for (what, magic) in [
        ("gzip", &[0x1f, 0x8b, 0x08, 0x00][..]),
        ("xz", &[0xfd, b'7', b'z', b'X', b'Z', 0][..]),
        ("bzip2", &b"BZh91AY&SY"[..]),
        ("lz4", &[0x04, 0x22, 0x4d, 0x18][..]),
    ] {
        let mut bytes = magic.to_vec();
        bytes.resize(600, 0);
        let err = rejects_bytes(&bytes, "unsupported_container");
        names(&err, what);
    }
}

#[test]
fn window_larger_than_cap_is_rejected_before_allocating() {
    // A frame header alone (6 bytes) asking for a 2 GiB window: the push that completes the
    // header fails, and this thread allocates almost nothing on the way.
    let header = frame_header_with_window(window_descriptor(31, 0));
    let (r, peak) = peak_during(|| Validator::new(Limits::default()).push(&header, &mut NullSink));
    let err = r.expect_err("a 2 GiB window must be refused");
    assert_eq!(err.code(), "zstd_window_too_large");
    names(&err, &(2u64 << 30).to_string());
    assert!(peak < MIB, "{peak} bytes allocated before refusing the window");

    // Single-segment frames use Frame_Content_Size as the window: 1 TiB.
    let single = frame_header(0xe0, &(1u64 << 40).to_le_bytes());
    let (r, peak) = peak_during(|| Validator::new(Limits::default()).push(&single, &mut NullSink));
    assert_eq!(r.map_err(|e| e.code()), Err("zstd_window_too_large"));
    assert!(peak < MIB, "{peak} bytes allocated before refusing the window");

    // A second frame is where the decoder reserves the window it accepts: 128 MiB (the cap)
    // shows up in the peak, 2 GiB is refused before anything is reserved.
    let first = zstd(&small_bundle()[..4096]);
    let at_cap =
        [first.clone(), frame_header_with_window(window_descriptor(27, 0)), raw_block(b"", false)].concat();
    let (r, peak) = peak_during(|| Validator::new(Limits::default()).push(&at_cap, &mut NullSink));
    assert!(r.is_ok(), "{r:?}");
    assert!(peak >= 128 * MIB, "the accepted window was reserved: {peak}");
    let over = [first, frame_header_with_window(window_descriptor(31, 0))].concat();
    let (r, peak) = peak_during(|| Validator::new(Limits::default()).push(&over, &mut NullSink));
    assert_eq!(r.map_err(|e| e.code()), Err("zstd_window_too_large"));
    assert!(peak < MIB, "{peak} bytes allocated before refusing the window");

    // libzstd with --long=28 declares a 256 MiB window, above the default 128 MiB cap.
    let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).expect("encoder");
    enc.window_log(28).expect("window log");
    enc.long_distance_matching(true).expect("ldm");
    std::io::Write::write_all(&mut enc, &small_bundle()).expect("write");
    rejects_bytes(&enc.finish().expect("finish"), "zstd_window_too_large");

    // The cap is a Limits field: the reference bundle's 2 MiB window against a 1 MiB cap.
    let limits = Limits { max_window_size: 1 << 20, ..Limits::default() };
    assert_eq!(code(&validate(&fixture("a-single.tar.zst"), limits)), "zstd_window_too_large");

    // A window exactly at the cap is fine; one step above it is not.
    let frame = raw_frame(window_descriptor(16, 0), &small_bundle());
    assert_eq!(code(&validate(&frame, Limits { max_window_size: 64 << 10, ..Limits::default() })), "ok");
    assert_eq!(
        code(&validate(&frame, Limits { max_window_size: (64 << 10) - 1, ..Limits::default() })),
        "zstd_window_too_large"
    );
}

#[test]
fn frame_content_size_is_never_trusted_for_sizing() {
    // Frame_Content_Size says 1 KiB; the frame carries a tar header that honestly declares a
    // 2 TiB member and then RLE zero blocks. The budget check on the member header fires; the
    // 1 KiB claim sized nothing.
    let member = Header::file("snap/upper.ext4", 0).size_base256(2 << 40).block();
    let mut head = frame_header_with_content_size(window_descriptor(20, 0), 1024);
    head.extend(raw_block(&member, false));
    let rle = (0..1u64 << 24).map(|_| rle_block(0, MAX_BLOCK, false));
    let ((err, v), peak) =
        peak_during(|| push_until_error(Limits::default(), std::iter::once(head).chain(rle), 4096));
    assert_eq!(err.code(), "budget_exceeded");
    assert!(v.decompressed_bytes() <= 512, "{} bytes decoded", v.decompressed_bytes());
    assert!(peak < 4 * MIB, "{peak} bytes allocated");

    // A claim of 2^40 bytes on a small valid bundle is not used to size a buffer either, and
    // since libzstd (hence GNU tar and 0.6.2) refuses a frame whose content disagrees with its
    // Frame_Content_Size, the core refuses it too.
    let tar = small_bundle();
    let mut huge = frame_header(0xc0, &[window_descriptor(20, 0)]);
    huge.extend_from_slice(&(1u64 << 40).to_le_bytes());
    huge.extend(raw_blocks(1 << 20, &tar));
    assert!(zstd::stream::decode_all(&huge[..]).is_err(), "libzstd refuses the lie");
    let (r, peak) = peak_during(|| check(&huge));
    let err = r.expect_err("content size lie accepted");
    assert_eq!(err.code(), "zstd_corrupt");
    names(&err, "frame content size mismatch");
    assert!(peak < 8 * MIB, "{peak} bytes allocated");

    // Says 1 KiB on the same bundle: refused too. Says exactly the size: accepted.
    let mut small = frame_header_with_content_size(window_descriptor(20, 0), 1024);
    small.extend(raw_blocks(1 << 20, &tar));
    rejects_bytes(&small, "zstd_corrupt");
    let mut exact = frame_header_with_content_size(window_descriptor(20, 0), tar.len() as u32);
    exact.extend(raw_blocks(1 << 20, &tar));
    assert_eq!(code(&check(&exact)), "ok");
}

#[test]
fn zero_bomb_exceeds_budget_quickly() {
    // 2^25 RLE blocks of 128 KiB zeros: 4 TiB out of 128 MiB of input, behind a member header
    // that declares those 4 TiB. Rejected at the header: the first 4 KiB of input, 512 bytes out.
    let member = Header::file("snap/upper.ext4", 0).size_base256(4 << 40).block();
    let (err, v) = push_until_error(Limits::default(), zero_bomb(&member, 1 << 25), 4096);
    assert_eq!(err.code(), "budget_exceeded");
    names(&err, "snap/upper.ext4");
    assert!(v.compressed_bytes() <= 8192, "{} compressed bytes consumed", v.compressed_bytes());
    assert!(v.decompressed_bytes() <= 512, "{} bytes decoded", v.decompressed_bytes());

    // The ceiling is a Limits field: the same bomb declaring only 1 GiB against a 64 MiB budget.
    let member = Header::file("snap/upper.ext4", 0).size_base256(1 << 30).block();
    let limits = Limits { max_decompressed_bytes: 64 << 20, ..Limits::default() };
    let (err, v) = push_until_error(limits, zero_bomb(&member, 1 << 13), 4096);
    assert_eq!(err.code(), "budget_exceeded");
    assert!(v.compressed_bytes() <= 8192, "{} compressed bytes consumed", v.compressed_bytes());
}

#[test]
fn zero_bomb_of_bare_zeros_stops_at_the_trailing_zero_cap() {
    // No header at all: the zeros are an end-of-archive marker and then padding, which is
    // capped (1 MiB by default), so the bomb stops after ~1 MiB of output and ~40 bytes of input
    // per MiB.
    let (err, v) = push_until_error(Limits::default(), zero_bomb(&[], 1 << 25), 64);
    assert_eq!(err.code(), "trailing_zeros_too_long");
    assert!(v.decompressed_bytes() <= (1 << 20) + 1024 + (128 << 10), "{}", v.decompressed_bytes());
    assert!(v.compressed_bytes() <= 4096, "{} compressed bytes consumed", v.compressed_bytes());
}

#[test]
fn decompressed_budget_covers_the_whole_stream() {
    // Three members of 3 MiB each, all zeros from RLE blocks, against an 8 MiB budget: each one
    // fits alone, the third does not fit with the first two.
    let limits = Limits { max_decompressed_bytes: 8 << 20, ..Limits::default() };
    let mut frame = frame_header_with_window(window_descriptor(17, 0));
    for i in 0..3 {
        let h = Header::file(&format!("snap/f{i}"), 3 << 20).block();
        frame.extend(raw_block(&h, false));
        for _ in 0..24 {
            frame.extend(rle_block(0, MAX_BLOCK, false));
        }
    }
    frame.extend(rle_block(0, 1024, true));
    let err = validate(&frame, limits).expect_err("over budget");
    assert_eq!(err.code(), "budget_exceeded");
    names(&err, "snap/f2");
}

#[test]
fn content_checksum_mismatch_is_a_checksum_error() {
    let mut bytes = zstd_with_checksum(&small_bundle());
    assert_eq!(code(&check(&bytes)), "ok", "the intact frame is fine");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    rejects_bytes(&bytes, "zstd_checksum");
}

#[test]
fn truncated_zstd_is_an_unexpected_end_of_input() {
    let bytes = zstd(&small_bundle());
    // Inside a block, inside the frame header, right after the magic.
    for cut in [bytes.len() / 2, bytes.len() - 1, 6, 4] {
        rejects_bytes(&bytes[..cut], "zstd_truncated");
    }
    // Exactly between two blocks of a frame (the last block never came).
    let frame = raw_frame(window_descriptor(10, 0), &small_bundle());
    let first_block_end = 6 + 3 + 1024;
    rejects_bytes(&frame[..first_block_end], "zstd_truncated");
}

#[test]
fn garbage_after_the_last_frame_is_trailing_data() {
    let good = zstd(&small_bundle());
    for garbage in [&b"garbage!"[..], &[0, 0, 0, 0][..], &b"\x28\xb5\x2f\xfc more"[..]] {
        let err = rejects_bytes(&[&good[..], garbage].concat(), "trailing_data");
        assert_eq!(err.kind(), "container");
    }
    // A second tar appended after the frame, uncompressed.
    rejects_bytes(&[good.clone(), small_bundle()].concat(), "trailing_data");
    // Fewer bytes than a frame magic after the last frame: the input ends inside what would be
    // the next frame's magic.
    rejects_bytes(&[&good[..], &[0x28, 0xb5][..]].concat(), "zstd_truncated");
}

#[test]
fn frame_that_needs_a_dictionary_is_unsupported() {
    let mut f = frame_header_with_dictionary(0x1234_5678);
    f.extend(raw_blocks(1 << 20, &small_bundle()));
    let err = rejects_bytes(&f, "zstd_dictionary");
    names(&err, &0x1234_5678u32.to_string());
    // One-byte dictionary id field.
    let mut f = frame_header(0x01, &[window_descriptor(20, 0), 7]);
    f.extend(raw_blocks(1 << 20, &small_bundle()));
    rejects_bytes(&f, "zstd_dictionary");
}

#[test]
fn reserved_zstd_bits_and_block_types_are_rejected() {
    let mut f = frame_header(0x08, &[window_descriptor(20, 0)]);
    f.extend(raw_blocks(1 << 20, &small_bundle()));
    rejects_bytes(&f, "zstd_reserved");
    let mut f = frame_header_with_window(window_descriptor(20, 0));
    f.extend(block_header(true, 3, 10));
    f.extend([0u8; 10]);
    rejects_bytes(&f, "zstd_reserved");
}

#[test]
fn oversized_zstd_block_is_rejected() {
    let mut f = frame_header_with_window(window_descriptor(20, 0));
    f.extend(block_header(true, 0, MAX_BLOCK + 1));
    rejects_bytes(&f, "zstd_block_too_large");
    let mut f = frame_header_with_window(window_descriptor(20, 0));
    f.extend(rle_block(0, MAX_BLOCK + 1, true));
    rejects_bytes(&f, "zstd_block_too_large");
}

// =============================================================================================
// Tar framing
// =============================================================================================

#[test]
fn header_checksum_mismatch_is_rejected() {
    let s = Snapshot::small(1);
    let h = Header::file(&s.manifest_path(), s.manifest_bytes().len() as u64);
    let wrong = h.correct_checksum() + 1;
    let err = rejects(
        Tar::new()
            .member(&h.clone().checksum_value(wrong), &s.manifest_bytes())
            .file(&s.upper_path(), &s.upper),
        "header_checksum",
        Judged::WhileStreaming,
    );
    names(&err, &wrong.to_string());
    names(&err, &h.correct_checksum().to_string());
    // A checksum field that is not octal is a bad numeric field.
    let mut block = h.block();
    block[148..156].copy_from_slice(b"12z456\0 ");
    let err = rejects(
        Tar::new().raw(&block).data(&s.manifest_bytes()),
        "bad_numeric_field",
        Judged::WhileStreaming,
    );
    names(&err, "chksum");
}

#[test]
fn signed_legacy_checksum_is_not_accepted() {
    // Documented decision: only the unsigned sum counts. A header with bytes >= 0x80 (here in
    // the user name) has different signed and unsigned sums.
    let s = Snapshot::small(1);
    let h = Header::file(&s.manifest_path(), s.manifest_bytes().len() as u64).uname(b"\xff\xfe\xfd");
    assert_ne!(signed_checksum(&h.block()), unsigned_checksum(&h.block()) as i64);
    rejects(
        Tar::new().member(&h.clone().signed_sum(), &s.manifest_bytes()).file(&s.upper_path(), &s.upper),
        "header_checksum",
        Judged::WhileStreaming,
    );
    // The same header with the unsigned sum is fine.
    accepts(Tar::new().member(&h, &s.manifest_bytes()).file(&s.upper_path(), &s.upper));
}

#[test]
fn end_of_input_inside_a_header_or_entry_is_truncated() {
    let s = Snapshot::small(1);
    let full = bundle_tar(std::slice::from_ref(&s));
    let upper_header = header_offsets(&full)[1];
    let manifest_len = s.manifest_bytes().len();
    let cases = [
        (100, "a header record", None),
        (upper_header + 300, "a header record", None),
        (BLOCK + 10, "member data", Some(s.manifest_path())),
        (upper_header + BLOCK + 5000, "member data", Some(s.upper_path())),
        (BLOCK + manifest_len + 1, "member padding", Some(s.manifest_path())),
    ];
    for (cut, inside, entry) in cases {
        for bytes in [full[..cut].to_vec(), zstd(&full[..cut])] {
            let err = rejects_bytes(&bytes, "truncated");
            names(&err, inside);
            if let Some(entry) = &entry {
                names(&err, entry);
            }
        }
    }
}

#[test]
fn clean_end_without_end_of_archive_is_rejected() {
    // Documented decision: 0.6.2 tolerates a tar that simply stops after its last member; the
    // core does not, so a bundle cut exactly between two members cannot pass as a shorter one.
    let s = Snapshot::small(1);
    let body = Tar::new().snapshot(&s).build();
    let err = rejects_bytes(&body, "missing_end_of_archive");
    names(&err, &body.len().to_string());
    rejects_bytes(&zstd(&body), "missing_end_of_archive");
    rejects_bytes(&zstd_frames(&body, 4096), "missing_end_of_archive");
    // One zero block is not an end-of-archive marker either.
    rejects_bytes(&Tar::new().snapshot(&s).zero_block().build(), "missing_end_of_archive");
    // After a directory entry or an empty file (nothing pending at all).
    rejects_bytes(&Tar::new().snapshot(&s).dir("other/").build(), "missing_end_of_archive");
    rejects_bytes(
        &Tar::new().snapshot(&s).file(&format!("{}/empty", s.prefix()), b"").build(),
        "missing_end_of_archive",
    );
    // The same bundle ended properly is fine.
    accepts(Tar::new().snapshot(&s));
}

#[test]
fn trailing_data_after_end_of_archive_is_rejected() {
    let good = small_bundle();
    let err = rejects_bytes(&[&good[..], b"x"].concat(), "trailing_data");
    assert_eq!(err.kind(), "tar");
    names(&err, &good.len().to_string());
    // A second archive appended after the first.
    rejects_bytes(&[good.clone(), bundle_tar(&[Snapshot::small(2)])].concat(), "trailing_data");
    rejects_bytes(&zstd(&[good.clone(), bundle_tar(&[Snapshot::small(2)])].concat()), "trailing_data");
    // Non-zero bytes after some zero padding.
    rejects_bytes(&[&good[..], &[0u8; 9000][..], b"\x01"].concat(), "trailing_data");
    // Zero padding to a 10240-byte record, as GNU tar writes, is fine ...
    let mut padded = good.clone();
    padded.resize(good.len().div_ceil(10240) * 10240 + 10240, 0);
    accepts_bytes(&padded);
    // ... up to a bound.
    rejects_bytes(&[&good[..], &vec![0u8; (1 << 20) + 1][..]].concat(), "trailing_zeros_too_long");
}

#[test]
fn lone_zero_block_is_rejected() {
    let s = Snapshot::small(1);
    let body =
        Tar::new().file(&s.manifest_path(), &s.manifest_bytes()).zero_block().file(&s.upper_path(), &s.upper);
    let err = rejects(body, "lone_zero_block", Judged::WhileStreaming);
    names(&err, "entry #1");
}

#[test]
fn base256_size_near_2_63_overflows() {
    for size in [1u64 << 63, u64::MAX, (1 << 63) + 511] {
        let h = Header::file("snap/upper.ext4", 0).size_base256(size);
        let err = rejects(Tar::new().header(&h), "size_overflow", Judged::WhileStreaming);
        names(&err, "entry #0 at byte 0");
    }
    // Eleven value bytes beyond 64 bits.
    let h = Header::file("snap/upper.ext4", 0).field(field::SIZE, &[0x80, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    rejects(Tar::new().header(&h), "size_overflow", Judged::WhileStreaming);
    // Negative base-256 (first byte 0xff).
    let h = Header::file("snap/upper.ext4", 0).field(field::SIZE, &[0xff; 12]);
    rejects(Tar::new().header(&h), "size_overflow", Judged::WhileStreaming);
}

#[test]
fn base256_size_whose_padding_would_pass_the_limit_is_rejected() {
    // 2^63 - 1 is a legal size whose padded length (2^63) still fits 64 bits: no overflow, but
    // far beyond any budget, and refused before a byte of data is read.
    let h = Header::file("snap/upper.ext4", 0).size_base256(i64::MAX as u64);
    rejects(Tar::new().header(&h), "budget_exceeded", Judged::WhileStreaming);
    // Even with the budget lifted to the maximum, the walker only waits for data, it does not
    // size anything from the number.
    let limits = Limits { max_decompressed_bytes: u64::MAX, ..Limits::default() };
    let bytes = Tar::new().header(&h).end().build();
    let (r, peak) = peak_during(|| validate(&bytes, limits));
    assert_eq!(code(&r), "truncated");
    assert!(peak < MIB, "{peak}");
}

#[test]
fn base256_size_is_legal() {
    // GNU writes base-256 for sizes of 8 GiB and more; any size may use it.
    let s = Snapshot::small(1);
    let h = Header::file(&s.upper_path(), 0).size_base256(s.upper.len() as u64);
    accepts(Tar::new().file(&s.manifest_path(), &s.manifest_bytes()).member(&h, &s.upper));
}

#[test]
fn bad_numeric_fields_are_rejected() {
    let s = Snapshot::small(1);
    let len = s.manifest_bytes().len() as u64;
    let digits_without_terminator = |n: usize| vec![b'7'; n];
    let cases: Vec<(&str, std::ops::Range<usize>, Vec<u8>)> = vec![
        ("size", field::SIZE, format!("{len:010o}x\0").into_bytes()),
        ("size", field::SIZE, format!("{len:012o}").into_bytes()),
        ("size", field::SIZE, vec![0; 12]),
        ("size", field::SIZE, b"1 2\0".to_vec()),
        ("size", field::SIZE, b"-1\0".to_vec()),
        ("mode", field::MODE, b"000644x\0".to_vec()),
        ("mode", field::MODE, digits_without_terminator(8)),
        ("uid", field::UID, b"00009\0".to_vec()),
        ("gid", field::GID, b"abc\0".to_vec()),
        ("mtime", field::MTIME, digits_without_terminator(12)),
        ("mtime", field::MTIME, b"1777636800\0\0".to_vec()),
    ];
    for (name, range, bytes) in cases {
        let h = Header::file(&s.manifest_path(), len).field(range, &bytes);
        let err = rejects(
            Tar::new().member(&h, &s.manifest_bytes()).file(&s.upper_path(), &s.upper),
            "bad_numeric_field",
            Judged::WhileStreaming,
        );
        names(&err, &format!("'{name}'"));
    }
}

#[test]
fn numeric_fields_with_leading_spaces_are_a_documented_leniency() {
    // Octal digits may be preceded by spaces and closed by spaces or NULs (old tars write this;
    // GNU tar and tar-rs read it).
    let s = Snapshot::small(1);
    let len = s.manifest_bytes().len() as u64;
    let h = Header::file(&s.manifest_path(), len)
        .field(field::SIZE, format!("{len:>10o} \0").as_bytes())
        .field(field::MODE, format!("{:>7o} ", 0o644).as_bytes())
        .field(field::MTIME, format!("{:>11o} ", 1_777_636_800).as_bytes());
    accepts(Tar::new().member(&h, &s.manifest_bytes()).file(&s.upper_path(), &s.upper));
}

#[test]
fn directory_with_data_is_rejected() {
    let h = Header::dir("snap/").size(512);
    rejects(Tar::new().member(&h, &[b'x'; 512]), "directory_with_data", Judged::WhileStreaming);
}

// =============================================================================================
// Extension headers
// =============================================================================================

#[test]
fn pax_size_smuggle_is_rejected() {
    // TARmageddon: the PAX record says size=0 while the ustar header says otherwise, and the
    // "data" is a nested archive a lenient reader would walk into. Nothing may be interpreted.
    let s = Snapshot::small(1);
    let inner = bundle_tar(&[Snapshot::small(9)]);
    let h = Header::ustar_file(&s.upper_path(), inner.len() as u64);
    let body = Tar::new()
        .file(&s.manifest_path(), &s.manifest_bytes())
        .pax(flag::PAX, &[("size", "0")])
        .member(&h, &inner);
    let err = rejects(body.clone(), "pax_header", Judged::WhileStreaming);
    names(&err, "PAX");
    let (_, announced) = members_announced(&body.end().build());
    assert_eq!(announced, [s.manifest_path()], "no member after the PAX record was announced");
    // The other direction: size larger than the header's.
    rejects(
        Tar::new().pax(flag::PAX, &[("size", "99999")]).file(&s.manifest_path(), &s.manifest_bytes()),
        "pax_header",
        Judged::WhileStreaming,
    );
    // Even a PAX record that agrees with its header is refused: bundles never carry PAX.
    let n = s.manifest_bytes().len().to_string();
    rejects(
        Tar::new().pax(flag::PAX, &[("size", &n)]).file(&s.manifest_path(), &s.manifest_bytes()),
        "pax_header",
        Judged::WhileStreaming,
    );
}

#[test]
fn pax_global_header_is_rejected() {
    let s = Snapshot::small(1);
    rejects(
        Tar::new().pax(flag::PAX_GLOBAL, &[("comment", "hi")]).snapshot(&s),
        "pax_header",
        Judged::WhileStreaming,
    );
}

#[test]
fn pax_path_with_gnu_long_name_is_rejected() {
    let s = Snapshot::small(1);
    let long = format!("{}/{}", "p".repeat(110), "manifest.json");
    let h = Header::file(&long[..100], s.manifest_bytes().len() as u64);
    // L, then x, then the member.
    rejects(
        Tar::new()
            .long_name(&long)
            .pax(flag::PAX, &[("path", "evil/manifest.json")])
            .member(&h, &s.manifest_bytes()),
        "pax_header",
        Judged::WhileStreaming,
    );
    // x, then L, then the member.
    rejects(
        Tar::new()
            .pax(flag::PAX, &[("path", "evil/manifest.json")])
            .long_name(&long)
            .member(&h, &s.manifest_bytes()),
        "pax_header",
        Judged::WhileStreaming,
    );
}

#[test]
fn gnu_long_link_is_rejected() {
    let s = Snapshot::small(1);
    let k = Header::new(Format::Gnu, b"././@LongLink", flag::GNU_LONG_LINK, 10);
    let err = rejects(
        Tar::new().member(&k, b"target\0\0\0\0").snapshot(&s),
        "unsupported_entry_type",
        Judged::WhileStreaming,
    );
    names(&err, "GNU long link name");
}

#[test]
fn long_name_must_be_strict() {
    let s = Snapshot::small(1).with_prefix(&"p".repeat(120));
    let name = s.manifest_path();
    let m = s.manifest_bytes();
    let member = Header::file(&name[..100], m.len() as u64);
    let rest = |t: Tar| t.member(&member, &m).long_file(&s.upper_path(), &s.upper);

    // The strict form is accepted.
    accepts(rest(Tar::new().long_name(&name)));

    // Unterminated, a NUL inside, empty.
    for payload in [name.as_bytes().to_vec(), format!("{name}\0x\0").into_bytes(), b"\0".to_vec(), Vec::new()]
    {
        rejects(rest(Tar::new().long_name_raw(&payload)), "bad_long_name", Judged::WhileStreaming);
    }
    // Repeated.
    rejects(rest(Tar::new().long_name(&name).long_name(&name)), "bad_long_name", Judged::WhileStreaming);
    // Followed by the end of the archive, or by the end of input.
    rejects_bytes(&Tar::new().snapshot(&Snapshot::small(2)).long_name(&name).end().build(), "bad_long_name");
    rejects_bytes(&Tar::new().snapshot(&Snapshot::small(2)).long_name(&name).build(), "bad_long_name");
    // Not named ././@LongLink.
    let odd = Header::new(Format::Gnu, b"LongLink", flag::GNU_LONG_NAME, name.len() as u64 + 1);
    rejects(
        rest(Tar::new().member(&odd, format!("{name}\0").as_bytes())),
        "bad_long_name",
        Judged::WhileStreaming,
    );
    // The member it names does not start with the same bytes (a differential between readers
    // that use the long name and readers that ignore it).
    let other = Header::file("q/manifest.json", m.len() as u64);
    rejects(
        Tar::new().long_name(&name).member(&other, &m).long_file(&s.upper_path(), &s.upper),
        "bad_long_name",
        Judged::WhileStreaming,
    );
    // Followed by something that is not a regular file or directory.
    let link = Header::file(&name[..100], 0).type_flag(flag::SYMLINK).link_name(b"/etc/passwd");
    rejects(Tar::new().long_name(&name).header(&link), "unsupported_entry_type", Judged::WhileStreaming);
    // Carrying a link name itself.
    let with_link = Header::new(Format::Gnu, b"././@LongLink", flag::GNU_LONG_NAME, name.len() as u64 + 1)
        .link_name(b"x");
    rejects(
        rest(Tar::new().member(&with_link, format!("{name}\0").as_bytes())),
        "link_name_set",
        Judged::WhileStreaming,
    );
}

#[test]
fn oversized_long_name_is_rejected_before_it_is_read() {
    // 1 MiB of name: refused at the L header, against max_path_len, before its data is buffered.
    let payload = vec![b'a'; 1 << 20];
    let body = Tar::new().long_name_raw(&payload).file("a/b", b"");
    let bytes = body.clone().end().build();
    let (r, peak) = peak_during(|| check(&bytes));
    assert_eq!(code(&r), "path_too_long");
    assert!(peak < 64 << 10, "{peak} bytes allocated for a refused long name");
    rejects(body, "path_too_long", Judged::WhileStreaming);
    // Just over the bound (1024 bytes plus its NUL) fails; at the bound the grammar decides.
    let limits = Limits::default();
    let over = format!("{}/{}", "d".repeat(200), "f".repeat(limits.max_path_len as usize - 200));
    rejects(Tar::new().long_name(&over).file(&over[..100], b""), "path_too_long", Judged::WhileStreaming);
}

// =============================================================================================
// Entry types and names
// =============================================================================================

/// Rejects a member of type `t` named `<prefix>/upper.ext4` after a valid manifest, and checks
/// that no member event was emitted for it (so a writer creates nothing, not even a directory).
#[track_caller]
fn rejects_type(t: u8, link: &[u8]) -> Error {
    let s = Snapshot::small(1);
    let h = Header::file(&s.upper_path(), 0).type_flag(t).link_name(link);
    let err = rejects(Tar::new().header(&h).snapshot(&s), "unsupported_entry_type", Judged::WhileStreaming);
    names(&err, &s.upper_path());
    let (_, announced) = members_announced(&Tar::new().header(&h).snapshot(&s).end().build());
    assert!(announced.is_empty(), "announced {announced:?}");
    err
}

#[test]
fn symlink_entries_are_rejected() {
    let err = rejects_type(flag::SYMLINK, b"../../../../etc/passwd");
    names(&err, "symlink");
}

#[test]
fn hard_link_entries_are_rejected() {
    let err = rejects_type(flag::HARD_LINK, b"sha256-0/manifest.json");
    names(&err, "hard link");
}

#[test]
fn device_entries_are_rejected() {
    names(&rejects_type(flag::CHAR_DEVICE, b""), "character device");
    names(&rejects_type(flag::BLOCK_DEVICE, b""), "block device");
}

#[test]
fn fifo_entries_are_rejected() {
    names(&rejects_type(flag::FIFO, b""), "FIFO");
}

#[test]
fn gnu_dump_multivolume_names_and_volume_entries_are_rejected() {
    // Old-GNU sparse `S` entries are accepted with a strictly checked map: tests/tests/sparse.rs.
    for t in [flag::GNU_DUMPDIR, flag::GNU_MULTIVOL, flag::GNU_NAMES, flag::GNU_VOLHDR] {
        rejects_type(t, b"");
    }
}

#[test]
fn every_other_type_flag_is_rejected() {
    let s = Snapshot::small(1);
    for t in 0..=255u8 {
        // Regular, directory, long name, and old-GNU sparse (its own rules: tests/tests/sparse.rs).
        if matches!(t, 0 | b'0' | b'7' | b'5' | b'L' | b'S') {
            continue;
        }
        let want = if matches!(t, b'x' | b'g') { "pax_header" } else { "unsupported_entry_type" };
        let h = Header::file(&s.upper_path(), 0).type_flag(t);
        let r = check(&Tar::new().header(&h).snapshot(&s).end().build());
        assert_eq!(code(&r), want, "type flag {t:#04x}");
    }
}

#[test]
fn legacy_regular_and_contiguous_type_flags_are_regular_files() {
    let s = Snapshot::small(1);
    for t in [flag::REGULAR_LEGACY, flag::CONTIGUOUS] {
        let h = Header::file(&s.upper_path(), s.upper.len() as u64).type_flag(t);
        let r = check(
            &Tar::new().file(&s.manifest_path(), &s.manifest_bytes()).member(&h, &s.upper).end().build(),
        );
        assert_eq!(code(&r), "ok", "type flag {t:#04x}");
    }
}

#[test]
fn link_name_on_a_regular_file_is_rejected() {
    let s = Snapshot::small(1);
    let h = Header::file(&s.upper_path(), s.upper.len() as u64).link_name(b"/etc/shadow");
    rejects(
        Tar::new().file(&s.manifest_path(), &s.manifest_bytes()).member(&h, &s.upper),
        "link_name_set",
        Judged::WhileStreaming,
    );
}

/// A regular member named `name` (raw bytes) in front of a valid snapshot.
fn named(name: &[u8]) -> Tar {
    Tar::new().header(&Header::new(Format::Gnu, name, flag::REGULAR, 0)).snapshot(&Snapshot::small(1))
}

/// A directory member named `name` in front of a valid snapshot.
fn named_dir(name: &[u8]) -> Tar {
    Tar::new().header(&Header::new(Format::Gnu, name, flag::DIRECTORY, 0)).snapshot(&Snapshot::small(1))
}

#[track_caller]
fn rejects_name(name: &str, want: &str) {
    let err = rejects(named(name.as_bytes()), want, Judged::WhileStreaming);
    if !name.is_empty() {
        names(&err, &name.escape_debug().to_string());
    }
}

#[test]
fn absolute_names_are_unsafe() {
    for name in ["/x/manifest.json", "//x/manifest.json", "/x", "C:\\x", "C:/x", "\\\\?\\x", "\\x\\y"] {
        rejects_name(name, "unsafe_path");
    }
    rejects(named_dir(b"/"), "unsafe_path", Judged::WhileStreaming);
}

#[test]
fn dotdot_anywhere_is_unsafe() {
    for name in ["../x", "x/..", "x/../y", "..", "../../evil.txt"] {
        rejects_name(name, "unsafe_path");
    }
    rejects(named_dir(b"../"), "unsafe_path", Judged::WhileStreaming);
    // In the ustar prefix field: the joined name is what counts.
    for (prefix, name) in
        [(&b".."[..], &b"x"[..]), (b"x/..", b"y"), (b"x", b"../y"), (b"..", b"manifest.json")]
    {
        let h = Header::new(Format::Ustar, name, flag::REGULAR, 0).prefix_field(prefix);
        rejects(Tar::new().header(&h).snapshot(&Snapshot::small(1)), "unsafe_path", Judged::WhileStreaming);
    }
}

#[test]
fn backslash_anywhere_is_unsafe() {
    for name in ["a\\b/c", "a/b\\c", "a/\\", "sha256-x\\..\\..\\evil/manifest.json"] {
        rejects_name(name, "unsafe_path");
    }
}

#[test]
fn empty_dot_and_slash_names_are_unsafe() {
    for name in ["", ".", "./x", "./x/manifest.json", "x/./y", "//////", "a//b", "x/manifest.json/"] {
        rejects_name(name, "unsafe_path");
    }
    for name in [&b"."[..], b"./", b"//////", b"x//", b""] {
        rejects(named_dir(name), "unsafe_path", Judged::WhileStreaming);
    }
}

#[test]
fn non_utf8_names_are_rejected() {
    rejects(named(b"snap/\xff\xfe"), "non_utf8_name", Judged::WhileStreaming);
    rejects(named(b"sn\xc3\x28p/x"), "non_utf8_name", Judged::WhileStreaming);
    // Through a long name too.
    let mut long = vec![b'p'; 120];
    long.extend_from_slice(b"/\xffx\0");
    let h = Header::new(Format::Gnu, &long[..100], flag::REGULAR, 0);
    rejects(Tar::new().long_name_raw(&long).header(&h), "non_utf8_name", Judged::WhileStreaming);
}

#[test]
fn names_with_bytes_after_nul_are_rejected() {
    // "Trim at NUL" readers would see snap/manifest.json; others the whole field.
    let err = rejects(named(b"snap/manifest.json\0../../evil"), "bytes_after_nul", Judged::WhileStreaming);
    names(&err, "'name'");
    let h = Header::file("snap/x", 0).link_name(b"\0hidden");
    let err = rejects(Tar::new().header(&h), "bytes_after_nul", Judged::WhileStreaming);
    names(&err, "'linkname'");
    let h = Header::ustar_file("x", 0).prefix_field(b"snap\0evil");
    let err = rejects(Tar::new().header(&h), "bytes_after_nul", Judged::WhileStreaming);
    names(&err, "'prefix'");
}

#[test]
fn duplicate_paths_are_rejected() {
    let s = Snapshot::small(1);
    let dup = Tar::new().snapshot(&s).file(&s.upper_path(), &s.upper);
    let err = rejects(dup, "duplicate_entry", Judged::WhileStreaming);
    names(&err, &s.upper_path());
    names(&err, "entry #2");
    // Paths that differ only in ASCII case collide on case-insensitive filesystems.
    let upper_case = s.upper_path().to_uppercase();
    rejects(Tar::new().snapshot(&s).file(&upper_case, &s.upper), "duplicate_entry", Judged::WhileStreaming);
    // A directory twice, with and without its trailing slash.
    rejects(Tar::new().dir("snap/").dir("snap"), "duplicate_entry", Judged::WhileStreaming);
    rejects(Tar::new().dir("cache/").dir("cache/"), "duplicate_entry", Judged::WhileStreaming);
    // The same manifest under two prefixes is not a duplicate path.
    let twin = s.clone().with_prefix("twin");
    accepts(Tar::new().snapshot(&s).snapshot(&twin));
}

#[test]
fn windows_hostile_names_are_unsafe() {
    for name in [
        "CON/manifest.json",
        "snap/NUL.txt",
        "snap/nul",
        "snap/com1",
        "snap/LPT9.log",
        "snap/aux.tar.gz",
        "snap/upper.",
        "snap/upper ",
        "snap./x",
        "a:b/manifest.json",
        "snap/a:stream",
        "snap/a<b",
        "snap/a>b",
        "snap/a|b",
        "snap/a?b",
        "snap/a*b",
        "snap/a\"b",
        "snap/tab\there",
        "snap/new\nline",
    ] {
        rejects_name(name, "unsafe_path");
    }
}

#[test]
fn names_outside_the_grammar_are_unexpected_members() {
    for name in [
        "a/b/c",
        "cache/layers/x.so",
        "cache/tmp/x",
        "cache/blobs/sha256_0.tar.gz",
        "toplevel",
        "cache",
        ".hidden/x",
    ] {
        rejects_name(name, "unexpected_member");
    }
    for name in [&b"snap/sub/"[..], b"cache/layers/x/", b"cache/tmp/"] {
        rejects(named_dir(name), "unexpected_member", Judged::WhileStreaming);
    }
}

#[test]
fn too_many_entries_is_rejected_with_bounded_memory() {
    // A million empty directories, generated lazily: refused at entry 10 001 (the default bound)
    // having read about 5 MiB, holding a few MiB at most.
    let dirs = (0..1_000_000u32).map(|i| Header::dir(&format!("d{i:07}/")).block().to_vec());
    let ((err, v), peak) = peak_during(|| push_until_error(Limits::default(), dirs, 64 << 10));
    assert_eq!(err.code(), "too_many_entries");
    names(&err, "entry #10000");
    assert!(v.decompressed_bytes() <= 10_001 * BLOCK as u64 + (64 << 10), "{}", v.decompressed_bytes());
    assert!(peak < 16 * MIB, "{peak} bytes held for 10 000 entries");
    // The bound is a Limits field.
    let limits = Limits { max_entries: 3, ..Limits::default() };
    rejects_with(
        Tar::new().snapshot(&Snapshot::small(1)).snapshot(&Snapshot::small(2)),
        "too_many_entries",
        Judged::WhileStreaming,
        limits,
    );
}

#[test]
fn names_over_the_bound_are_rejected() {
    // Over max_path_len through a long name (see also oversized_long_name_is_rejected_before_it_is_read),
    // and a single component over 255 bytes.
    let limits = Limits { max_path_len: 200, ..Limits::default() };
    let name = format!("{}/{}", "d".repeat(150), "f".repeat(60));
    rejects_with(
        Tar::new().long_name(&name).file(&name[..100], b""),
        "path_too_long",
        Judged::WhileStreaming,
        limits,
    );
    let name = format!("snap/{}", "f".repeat(256));
    rejects(Tar::new().long_name(&name).file(&name[..100], b""), "unsafe_path", Judged::WhileStreaming);
}

// =============================================================================================
// Manifest and chain
// =============================================================================================

#[test]
fn manifest_with_unknown_field_is_invalid() {
    let s = Snapshot::small(1);
    let json = json_of(&s);
    for edited in [
        json.replacen('{', "{\"comment\":1,", 1),
        json.replace("\"upper\":{", "\"upper\":{\"sha256\":\"x\","),
        json.replace("\"image\":{", "\"image\":{\"tag\":\"x\","),
    ] {
        let err = rejects(with_manifest_json(&s, &edited), "manifest_parse", Judged::WhileStreaming);
        names(&err, &s.prefix());
    }
}

#[test]
fn manifest_missing_required_key_is_invalid() {
    let s = Snapshot::small(1).parent(&format!("sha256:{}", "a".repeat(64)));
    let m = serde_json::to_value(&s.manifest).expect("value");
    // parent, integrity and source_sandbox must be present even when null; the rest always.
    let paths: [&[&str]; 13] = [
        &["schema"],
        &["format"],
        &["fstype"],
        &["image"],
        &["image", "ref"],
        &["image", "manifest_digest"],
        &["parent"],
        &["created_at"],
        &["labels"],
        &["upper", "file"],
        &["upper", "size_bytes"],
        &["upper", "integrity"],
        &["source_sandbox"],
    ];
    for path in paths {
        let mut v = m.clone();
        let (last, parents) = path.split_last().expect("non-empty");
        let obj = parents.iter().fold(&mut v, |v, k| &mut v[*k]);
        obj.as_object_mut().expect("object").remove(*last);
        let err = rejects(with_manifest_json(&s, &v.to_string()), "manifest_parse", Judged::WhileStreaming);
        names(&err, &format!("missing field `{last}`"));
    }
    // Present but null is fine for the three nullable keys.
    let mut v = m.clone();
    v["parent"] = serde_json::Value::Null;
    v["source_sandbox"] = serde_json::Value::Null;
    v["upper"]["integrity"] = serde_json::Value::Null;
    accepts(with_manifest_json(&s, &v.to_string()));
}

#[test]
fn manifest_schema_other_than_1_is_invalid() {
    let s = Snapshot::small(1);
    for schema in ["2", "0", "4294967295"] {
        let json = json_of(&s).replace("\"schema\":1", &format!("\"schema\":{schema}"));
        let err = rejects(with_manifest_json(&s, &json), "manifest_schema", Judged::WhileStreaming);
        names(&err, &format!("unsupported schema version {schema}"));
    }
    for schema in ["\"1\"", "1.0", "-1", "4294967296"] {
        let json = json_of(&s).replace("\"schema\":1", &format!("\"schema\":{schema}"));
        rejects(with_manifest_json(&s, &json), "manifest_parse", Judged::WhileStreaming);
    }
}

#[test]
fn manifest_duplicate_keys_are_invalid() {
    let s = Snapshot::small(1);
    let json = json_of(&s);
    for edited in [
        json.replacen('{', "{\"schema\":1,", 1),
        json.replace("\"parent\":null", "\"parent\":null,\"parent\":null"),
        json.replace("\"upper\":{", "\"upper\":{\"file\":\"upper.ext4\","),
    ] {
        let err = rejects(with_manifest_json(&s, &edited), "manifest_parse", Judged::WhileStreaming);
        names(&err, "duplicate field");
    }
}

#[test]
fn manifest_upper_file_must_be_a_single_relative_name() {
    for (file, want) in [
        ("../x", "manifest_bad_upper_file"),
        ("a/b", "manifest_bad_upper_file"),
        ("/abs", "manifest_bad_upper_file"),
        ("manifest.json", "manifest_bad_upper_file"),
        (".", "manifest_bad_upper_file"),
        ("CON", "manifest_bad_upper_file"),
        ("a\\\\b", "manifest_bad_upper_file"),
        ("", "manifest_empty_field"),
    ] {
        let s = Snapshot::small(1);
        let json = json_of(&s).replace("\"file\":\"upper.ext4\"", &format!("\"file\":\"{file}\""));
        rejects(with_manifest_json(&s, &json), want, Judged::WhileStreaming);
    }
}

#[test]
fn manifest_must_be_valid_json_of_bounded_size() {
    let s = Snapshot::small(1);
    rejects(with_manifest_json(&s, "{\"schema\":1"), "manifest_parse", Judged::WhileStreaming);
    rejects(with_manifest_json(&s, &format!("{}x", json_of(&s))), "manifest_parse", Judged::WhileStreaming);
    // Refused at its header when larger than max_manifest_size.
    let limits = Limits { max_manifest_size: 100, ..Limits::default() };
    let err = rejects_with(Tar::new().snapshot(&s), "manifest_too_large", Judged::WhileStreaming, limits);
    names(&err, &s.manifest_path());
}

#[test]
fn upper_missing_is_rejected() {
    let s = Snapshot::small(1);
    let err =
        rejects(Tar::new().file(&s.manifest_path(), &s.manifest_bytes()), "missing_upper", Judged::AtTheEnd);
    names(&err, "upper.ext4");
    // An upper under another name does not count.
    let body = Tar::new()
        .file(&s.manifest_path(), &s.manifest_bytes())
        .file(&format!("{}/upper.img", s.prefix()), &s.upper);
    rejects(body, "missing_upper", Judged::AtTheEnd);
}

#[test]
fn upper_that_is_not_a_regular_file_is_rejected() {
    let s = Snapshot::small(1);
    let as_dir = Header::dir(&format!("{}/", s.upper_path()));
    rejects(
        Tar::new().file(&s.manifest_path(), &s.manifest_bytes()).header(&as_dir),
        "unexpected_member",
        Judged::WhileStreaming,
    );
    let as_link = Header::file(&s.upper_path(), 0).type_flag(flag::SYMLINK).link_name(b"/dev/sda");
    rejects(
        Tar::new().file(&s.manifest_path(), &s.manifest_bytes()).header(&as_link),
        "unsupported_entry_type",
        Judged::WhileStreaming,
    );
}

#[test]
fn upper_size_mismatch_is_rejected() {
    let s = Snapshot::small(1);
    let mut bigger = s.upper.clone();
    bigger.push(0);
    // Manifest first: refused at the upper's header, before its data.
    let body = Tar::new().file(&s.manifest_path(), &s.manifest_bytes()).file(&s.upper_path(), &bigger);
    let err = rejects(body, "upper_size_mismatch", Judged::WhileStreaming);
    names(&err, &format!("manifest says {}, file is {}", s.upper.len(), bigger.len()));
    // Upper first: refused once the manifest is known, at the end.
    let body = Tar::new().file(&s.upper_path(), &bigger).file(&s.manifest_path(), &s.manifest_bytes());
    rejects(body, "upper_size_mismatch", Judged::AtTheEnd);
}

#[test]
fn upper_digest_mismatch_is_rejected() {
    // A 4 MiB upper that is mostly holes; one byte flipped inside a hole region.
    for integrity in [Integrity::Sha256, Integrity::Sparse] {
        let s = Snapshot::new(upper_bytes(4 << 20, 3), integrity);
        let mut flipped = s.upper.clone();
        flipped[(2 << 20) + 5] ^= 0x01;
        for body in [
            Tar::new().file(&s.manifest_path(), &s.manifest_bytes()).file(&s.upper_path(), &flipped),
            Tar::new().file(&s.upper_path(), &flipped).file(&s.manifest_path(), &s.manifest_bytes()),
        ] {
            let err = rejects(body, "upper_digest_mismatch", Judged::AtTheEnd);
            let recorded = s.manifest.upper.integrity.as_ref().map(|i| i.digest.clone()).unwrap_or_default();
            names(&err, &recorded);
        }
    }
}

#[test]
fn flipped_byte_in_a_1_gib_upper_is_a_digest_mismatch() {
    // The case as the rules state it: a 1 GiB upper (all zeros, streamed, never held in memory)
    // with one byte flipped in a hole region, for both algorithms.
    const LEN: u64 = 1 << 30;
    let zeros = vec![0u8; 1 << 20];
    let digest_of_zeros = |sparse: bool| {
        let mut h = <sha2::Sha256 as sha2::Digest>::new();
        if sparse {
            sha2::Digest::update(&mut h, b"msb-sparse-sha256-v1\0");
            sha2::Digest::update(&mut h, LEN.to_le_bytes());
        }
        for _ in 0..LEN >> 20 {
            sha2::Digest::update(&mut h, &zeros);
        }
        format!("sha256:{}", hex(&sha2::Digest::finalize(h)))
    };
    for (algorithm, sparse) in [("sha256", false), ("msb-sparse-sha256-v1", true)] {
        let mut s = Snapshot::new(Vec::new(), Integrity::Null);
        s.manifest.upper.size_bytes = LEN;
        s.manifest.upper.integrity = Some(snapbundle_core::manifest::UpperIntegrity {
            algorithm: algorithm.into(),
            digest: digest_of_zeros(sparse),
        });
        let head = Tar::new()
            .file(&s.manifest_path(), &s.manifest_bytes())
            .header(&Header::file(&s.upper_path(), LEN))
            .build();
        let mut flipped = zeros.clone();
        flipped[12345] = 1;
        let body = (0..LEN >> 20).map(|i| if i == 700 { flipped.clone() } else { zeros.clone() });
        let pieces = std::iter::once(head).chain(body).chain(std::iter::once(vec![0u8; 1024]));
        let mut v = Validator::new(Limits::default());
        let (r, peak) = peak_during(|| {
            for p in pieces {
                v.push(&p, &mut NullSink)?;
            }
            v.finish()
        });
        assert_eq!(code(&r), "upper_digest_mismatch", "{algorithm}");
        assert!(peak < 16 * MIB, "{peak} bytes held while streaming a 1 GiB upper");
    }
}

#[test]
fn unsupported_integrity_algorithm_is_rejected() {
    for algorithm in ["sha512", "SHA256", "blake3", "msb-sparse-sha256-v2"] {
        let mut s = Snapshot::small(1);
        if let Some(i) = s.manifest.upper.integrity.as_mut() {
            i.algorithm = algorithm.into();
        }
        let err = rejects(Tar::new().snapshot(&s), "unsupported_integrity_algorithm", Judged::AtTheEnd);
        names(&err, algorithm);
    }
}

#[test]
fn bundle_with_no_manifest_is_rejected() {
    let s = Snapshot::small(1);
    // Empty archive, directories only, an upper only, cache entries only.
    rejects_bytes(&Tar::new().end().build(), "no_snapshot_manifest");
    rejects(Tar::new().dir(&format!("{}/", s.prefix())), "no_snapshot_manifest", Judged::AtTheEnd);
    rejects(Tar::new().file(&s.upper_path(), &s.upper), "no_snapshot_manifest", Judged::AtTheEnd);
    let c = ImageCache::new("docker.io/library/python:3.12", 1);
    rejects(Tar::new().dir("cache/").cache(&c), "no_snapshot_manifest", Judged::AtTheEnd);
    // One good snapshot and a snapshot directory without a manifest.
    let body = Tar::new().snapshot(&s).file("orphan/upper.ext4", &s.upper);
    let err = rejects(body, "snapshot_without_manifest", Judged::AtTheEnd);
    names(&err, "orphan");
}

#[test]
fn snapshot_count_and_json_total_are_bounded() {
    let chain = chain(3);
    let body = chain.iter().fold(Tar::new(), |t, s| t.snapshot(s));
    let limits = Limits { max_snapshots: 2, ..Limits::default() };
    rejects_with(body.clone(), "too_many_snapshots", Judged::WhileStreaming, limits);
    let manifest_len = chain[0].manifest_bytes().len() as u64;
    let limits = Limits { max_json_total: manifest_len * 2, ..Limits::default() };
    rejects_with(body, "json_total_too_large", Judged::WhileStreaming, limits);
}

// ---------------------------------------------------------------------------------------------
// Image cache
// ---------------------------------------------------------------------------------------------

const PYTHON: &str = "docker.io/library/python:3.12";

/// A snapshot pinned to `c` followed by the files of `c`.
fn with_cache(c: &ImageCache) -> Tar {
    Tar::new().snapshot(&c.pin(Snapshot::small(1))).cache(c)
}

#[test]
fn consistent_image_cache_is_accepted() {
    let c = ImageCache::new(PYTHON, 2);
    let report = accepts(with_cache(&c));
    let cache = report.cache.expect("cache report");
    assert_eq!(cache.image_ref, PYTHON);
    assert_eq!(cache.layers, 2);
    assert_eq!(cache.files.len(), 5);
    // With the cache directory entries GNU tar writes, and the image named in short form.
    let s = Snapshot::small(1).image("python:3.12", &c.manifest_digest());
    let dirs = ["cache/", "cache/manifests/", "cache/fsmeta/", "cache/vmdk/", "cache/layers/"];
    accepts(dirs.iter().fold(Tar::new().snapshot(&s), |t, d| t.dir(d)).cache(&c));
}

#[test]
fn cache_metadata_digest_must_match_the_image_digest() {
    let c = ImageCache::new(PYTHON, 2);
    let s = Snapshot::small(1).image(PYTHON, &format!("sha256:{}", "ab".repeat(32)));
    let err = rejects(Tar::new().snapshot(&s).cache(&c), "cache_metadata_digest_mismatch", Judged::AtTheEnd);
    names(&err, &c.manifest_digest());
}

#[test]
fn cache_raw_manifest_must_hash_to_its_digest() {
    let mut c = ImageCache::new(PYTHON, 2);
    let pinned = c.pin(Snapshot::small(1));
    c.metadata.raw_manifest_json.push(' ');
    rejects(Tar::new().snapshot(&pinned).cache(&c), "cache_raw_manifest_digest_mismatch", Judged::AtTheEnd);
}

#[test]
fn cache_raw_config_must_hash_to_its_digest() {
    let mut c = ImageCache::new(PYTHON, 2);
    c.metadata.raw_config_json = c.metadata.raw_config_json.replace("amd64", "arm64");
    rejects(with_cache(&c), "cache_config_digest_mismatch", Judged::AtTheEnd);
}

#[test]
fn unexpected_cache_file_is_rejected() {
    for extra in [
        "cache/layers/sha256_0000.erofs",
        "cache/vmdk/other.vmdk",
        "cache/manifests/other.json",
        "cache/fsmeta/x.erofs",
    ] {
        let mut c = ImageCache::new(PYTHON, 2);
        c.extra.push((extra.into(), vec![0; 4096]));
        let err = rejects(with_cache(&c), "cache_unexpected_artifact", Judged::AtTheEnd);
        names(&err, extra.trim_start_matches("cache/"));
    }
}

#[test]
fn missing_expected_cache_file_is_rejected() {
    let c = ImageCache::new(PYTHON, 2);
    for missing in [c.fsmeta_path(), c.vmdk_path(), c.layer_path(0), c.layer_path(1)] {
        let files: Vec<(String, Vec<u8>)> = c.files().into_iter().filter(|(n, _)| *n != missing).collect();
        let body =
            files.iter().fold(Tar::new().snapshot(&c.pin(Snapshot::small(1))), |t, (n, d)| t.file(n, d));
        let err = rejects(body, "cache_missing_artifact", Judged::AtTheEnd);
        names(&err, missing.trim_start_matches("cache/"));
    }
    // Without the metadata (or with metadata that does not parse) nothing else can be checked.
    let files: Vec<(String, Vec<u8>)> = c.files().into_iter().skip(1).collect();
    let body = files.iter().fold(Tar::new().snapshot(&c.pin(Snapshot::small(1))), |t, (n, d)| t.file(n, d));
    rejects(body, "cache_metadata_missing", Judged::AtTheEnd);
    let mut files = c.files();
    files[0].1 = b"{\"manifest_digest\":1}".to_vec();
    let body = files.iter().fold(Tar::new().snapshot(&c.pin(Snapshot::small(1))), |t, (n, d)| t.file(n, d));
    rejects(body, "cache_metadata_missing", Judged::AtTheEnd);
}

#[test]
fn erofs_size_must_be_a_nonzero_multiple_of_4096() {
    for size in [0usize, 1, 4095, 4097, 12287] {
        let mut c = ImageCache::new(PYTHON, 2);
        c.fsmeta = vec![1; size];
        let err = rejects(with_cache(&c), "cache_artifact_not_materialized", Judged::AtTheEnd);
        names(&err, &c.fsmeta_path()["cache/".len()..]);
        let mut c = ImageCache::new(PYTHON, 2);
        c.layers[1] = vec![1; size];
        rejects(with_cache(&c), "cache_artifact_not_materialized", Judged::AtTheEnd);
    }
    // The VMDK and the metadata may have any size, even 0.
    let mut c = ImageCache::new(PYTHON, 2);
    c.vmdk.clear();
    accepts(with_cache(&c));
}

/// An edit of a metadata JSON document.
type JsonEdit<'a> = &'a dyn Fn(&mut serde_json::Value);

#[test]
fn image_cache_rules_hold_on_the_real_0_6_2_bundle() {
    // The d-with-image fixture, decompressed and rebuilt member by member; its metadata is what
    // real 0.6.2 wrote.
    let tar = unzstd(&fixture("d-with-image-2layers.tar.zst"));
    let members = read_members(&tar);
    assert_eq!(code(&check(&write_members(&members))), "ok", "rebuilt fixture must stay valid");
    let meta_at =
        members.iter().position(|m| m.name.starts_with("cache/manifests/")).expect("metadata member");
    let edit_meta = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut ms = members.clone();
        let mut v: serde_json::Value = serde_json::from_slice(&ms[meta_at].data).expect("metadata JSON");
        f(&mut v);
        ms[meta_at].data = serde_json::to_vec(&v).expect("serialize");
        write_members(&ms)
    };
    let cases: [(&str, JsonEdit<'_>); 3] = [
        ("cache_metadata_digest_mismatch", &|v| {
            v["manifest_digest"] = format!("sha256:{}", "ab".repeat(32)).into()
        }),
        ("cache_raw_manifest_digest_mismatch", &|v| {
            v["raw_manifest_json"] = format!("{} ", v["raw_manifest_json"].as_str().unwrap_or("")).into()
        }),
        ("cache_config_digest_mismatch", &|v| v["raw_config_json"] = "{}".into()),
    ];
    for (want, edit) in cases {
        rejects_bytes(&edit_meta(edit), want);
    }
    // An unexpected file, a missing layer, an unaligned layer.
    let mut extra = members.clone();
    extra.push(TarMember {
        offset: 0,
        name: "cache/layers/sha256_00.erofs".into(),
        type_flag: b'0',
        data: vec![0; 4096],
    });
    rejects_bytes(&write_members(&extra), "cache_unexpected_artifact");
    let mut missing = members.clone();
    missing.pop();
    rejects_bytes(&write_members(&missing), "cache_missing_artifact");
    let mut unaligned = members.clone();
    if let Some(last) = unaligned.last_mut() {
        last.data.pop();
    }
    rejects_bytes(&write_members(&unaligned), "cache_artifact_not_materialized");
}

// =============================================================================================
// Positive controls
// =============================================================================================

#[test]
fn reference_bundles_keep_their_0_6_2_verdicts() {
    // Strictness where we differ from 0.6.2 does not touch these bundles; the reject cases
    // carry the codes of the rules above.
    let expected_codes = [
        ("r-absolute-path.tar.zst", "unsafe_path"),
        ("r-cache-metadata-digest-mismatch.tar.zst", "cache_metadata_digest_mismatch"),
        ("r-cache-unexpected-kind.tar.zst", "unexpected_member"),
        ("r-dot-slash-paths.tar.zst", "unsafe_path"),
        ("r-dotdot-path.tar.zst", "unsafe_path"),
        ("r-empty-archive.tar.zst", "no_snapshot_manifest"),
        ("r-manifest-schema-2.tar.zst", "manifest_schema"),
        ("r-manifest-unknown-field.tar.zst", "manifest_parse"),
        ("r-symlink-entry.tar.zst", "unsupported_entry_type"),
        ("r-truncated.tar.zst", "truncated"),
        ("r-upper-size-mismatch.tar.zst", "upper_size_mismatch"),
        ("r-wrong-sparse-digest.tar.zst", "upper_digest_mismatch"),
    ];
    let names = fixture_names();
    assert!(names.len() >= 20, "fixtures missing: {names:?}");
    for name in names {
        let r = check(&fixture(&name));
        if fixture_ok(&name) {
            assert_eq!(code(&r), "ok", "{name}: {r:?}");
        } else {
            let want = expected_codes.iter().find(|(n, _)| *n == name).map(|(_, c)| *c);
            assert_eq!(Some(code(&r)), want, "{name}");
        }
    }
}

#[test]
fn plain_tar_is_accepted() {
    let r = accepts(Tar::new().snapshot(&Snapshot::small(1)));
    assert_eq!(r.container, Container::Tar);
    assert_eq!(r.zstd_frames, 0);
    let r = check(&fixture("a-single.tar")).expect("a-single.tar");
    assert_eq!(r.container, Container::Tar);
}

#[test]
fn multi_frame_zstd_is_accepted() {
    let tar = bundle_tar(&chain(2));
    for frame_len in [512, 1000, 4096, 20_000] {
        let r = check(&zstd_frames(&tar, frame_len)).unwrap_or_else(|e| panic!("{frame_len}: {e}"));
        assert_eq!(r.zstd_frames as usize, tar.len().div_ceil(frame_len));
        assert_eq!(r.decompressed_bytes, tar.len() as u64);
    }
}

#[test]
fn skippable_frames_are_accepted_anywhere_between_frames() {
    let tar = small_bundle();
    let z = zstd(&tar);
    let half = tar.len() / 2;
    for bytes in [
        [skippable_frame(0, b"metadata"), z.clone()].concat(),
        [skippable_frame(0xf, b""), z.clone(), skippable_frame(3, &[0xff; 100])].concat(),
        [zstd(&tar[..half]), skippable_frame(7, b"between"), zstd(&tar[half..])].concat(),
    ] {
        let r = check(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.container, Container::Zstd);
    }
    // A skippable frame with nothing else is not a bundle.
    assert!(check(&skippable_frame(0, b"x")).is_err());
}

#[test]
fn zstd_with_content_checksum_is_accepted() {
    let r = check(&zstd_with_checksum(&bundle_tar(&chain(2)))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.snapshots.len(), 2);
}

#[test]
fn gnu_long_name_over_100_bytes_is_accepted() {
    // Written by hand as tar-rs does it, and by the tar crate itself.
    let s = Snapshot::small(1).with_prefix(&"p".repeat(150));
    assert!(s.upper_path().len() > 100);
    let r = accepts(
        Tar::new().long_file(&s.manifest_path(), &s.manifest_bytes()).long_file(&s.upper_path(), &s.upper),
    );
    assert_eq!(r.head_prefix, s.prefix());
    assert!(!r.snapshots[0].prefix_matches_digest);

    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [(s.manifest_path(), s.manifest_bytes()), (s.upper_path(), s.upper.clone())] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o100644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_777_636_800);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, &name, &data[..]).expect("append");
    }
    let bytes = b.into_inner().expect("finish");
    assert_eq!(accepts_bytes(&bytes).head_prefix, s.prefix());
}

#[test]
fn ustar_prefix_field_is_joined_to_the_name() {
    let s = Snapshot::small(1).with_prefix(&"u".repeat(120));
    let r = accepts(
        Tar::new().ustar_file(&s.manifest_path(), &s.manifest_bytes()).ustar_file(&s.upper_path(), &s.upper),
    );
    assert_eq!(r.head_prefix, s.prefix());
}

#[test]
fn manifest_after_upper_is_accepted() {
    for integrity in [Integrity::Sparse, Integrity::Sha256, Integrity::Null] {
        let s = Snapshot::new(upper_bytes(64 << 10, 5), integrity);
        let r = accepts(Tar::new().snapshot_upper_first(&s));
        assert_eq!(r.head, s.digest());
    }
}

#[test]
fn child_only_bundle_is_accepted() {
    let chain = chain(2);
    let r = accepts(Tar::new().snapshot(&chain[1]));
    let head = r.head_snapshot().expect("head");
    assert_eq!(head.digest, chain[1].digest());
    assert_eq!(head.parent.as_deref(), Some(chain[0].digest().as_str()));
    assert!(!head.parent_in_bundle);
}

#[test]
fn chain_with_parents_selects_the_last_non_parent_as_head() {
    let chain = chain(3);
    let r = accepts(chain.iter().fold(Tar::new(), |t, s| t.snapshot(s)));
    assert_eq!(r.head, chain[2].digest());
    assert_eq!(r.snapshots.iter().filter(|s| s.parent_in_bundle).count(), 2);
    // Order does not decide when parents are known: the child is the head even if first.
    let r = accepts(chain.iter().rev().fold(Tar::new(), |t, s| t.snapshot(s)));
    assert_eq!(r.head, chain[2].digest());
}

#[test]
fn extra_files_and_directory_entries_are_accepted() {
    // 0.6.2 keeps extra files in a snapshot directory; GNU tar writes directory entries.
    let s = Snapshot::small(1).label("owner", "tests");
    let body = Tar::new()
        .dir(&format!("{}/", s.prefix()))
        .snapshot(&s)
        .file(&format!("{}/notes.txt", s.prefix()), b"hi\n");
    let r = accepts(body);
    assert_eq!(r.files.iter().filter(|f| f.role == Role::Extra).count(), 1);
    assert_eq!(r.snapshots[0].labels.get("owner").map(String::as_str), Some("tests"));
}

/// Writes `files` (relative path, bytes) under `root`.
fn write_layout(root: &Path, files: &[(String, Vec<u8>)]) {
    for (rel, data) in files {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, data).expect("write");
    }
}

/// Runs GNU tar with `args` in `dir` and returns the archive it wrote to `out`.
fn gnu_tar(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = dir.join("out.tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&out)
        .args(args)
        .current_dir(dir.join("layout"))
        .status()
        .expect("GNU tar must be installed");
    assert!(status.success(), "tar {args:?} failed");
    std::fs::read(&out).expect("read archive")
}

#[test]
fn gnu_tar_made_bundle_is_accepted() {
    let dir = TempDir::new("gnu-made");
    let chain = chain(2);
    let c = ImageCache::new(PYTHON, 2);
    // The head (last in archive order) is pinned to the cached image and has a 99-byte prefix,
    // so its file names need a ././@LongLink (GNU) or the prefix field (ustar).
    let head = c.pin(Snapshot::small(7).parent(&chain[1].digest())).with_prefix(&"l".repeat(99));
    let mut files = Vec::new();
    for s in chain.iter().chain([&head]) {
        files.push((s.manifest_path(), s.manifest_bytes()));
        files.push((s.upper_path(), s.upper.clone()));
    }
    files.extend(c.files());
    write_layout(&dir.path().join("layout"), &files);
    let mut tops: Vec<String> = chain.iter().chain([&head]).map(Snapshot::prefix).collect();
    tops.push("cache".into());
    let tops: Vec<&str> = tops.iter().map(String::as_str).collect();

    // GNU format: directory entries, ././@LongLink records, record padding to 10240 bytes. The
    // same with --format=ustar (prefix field), --format=oldgnu, and through --zstd.
    for format in ["--format=gnu", "--format=ustar", "--format=oldgnu"] {
        let mut args = vec![format];
        args.extend(&tops);
        let tar = gnu_tar(dir.path(), &args);
        assert_eq!(tar.len() % 10240, 0, "GNU tar pads to its record size");
        let r = accepts_bytes(&tar);
        assert_eq!(r.snapshots.len(), 3, "{format}");
        assert_eq!(r.head, head.digest(), "{format}");
        assert!(r.cache.is_some(), "{format}");
        let r = check(&zstd(&tar)).unwrap_or_else(|e| panic!("{format} + zstd: {e}"));
        assert_eq!(r.snapshots.len(), 3);
    }
    let mut args = vec!["--zstd"];
    args.extend(&tops);
    let r = check(&gnu_tar(dir.path(), &args)).unwrap_or_else(|e| panic!("tar --zstd: {e}"));
    assert_eq!(r.container, Container::Zstd);
}

#[test]
fn gnu_tar_with_dot_slash_prefix_is_rejected() {
    // `tar -C dir .` writes `./` and `./<prefix>/...`: 0.6.2 rejects these, so do we.
    let dir = TempDir::new("gnu-dot");
    let s = Snapshot::small(1);
    write_layout(
        &dir.path().join("layout"),
        &[(s.manifest_path(), s.manifest_bytes()), (s.upper_path(), s.upper.clone())],
    );
    rejects_bytes(&gnu_tar(dir.path(), &["."]), "unsafe_path");
}

#[test]
fn gnu_tar_posix_format_is_rejected_for_its_pax_headers() {
    // --format=posix writes PAX `x` records (here forced by a long name) which bundles never carry.
    let dir = TempDir::new("gnu-posix");
    let s = Snapshot::small(1).with_prefix(&"x".repeat(160));
    write_layout(
        &dir.path().join("layout"),
        &[(s.manifest_path(), s.manifest_bytes()), (s.upper_path(), s.upper.clone())],
    );
    rejects_bytes(&gnu_tar(dir.path(), &["--format=posix", &s.prefix()]), "pax_header");
}
