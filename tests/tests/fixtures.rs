//! The microsandbox 0.6.2 reference bundles against the core validator.
//!
//! Every bundle in `tests/fixtures/microsandbox-0.6.2/` is found by listing the directory, so a new
//! fixture is picked up without touching this file. Accepted bundles must give the same snapshots,
//! head and file list as real 0.6.2; rejected ones must fail with the error the table below names
//! (the right reason per our spec, not merely some error). Every verdict must be the same for every
//! chunking of the input and with a sink that wants data, and the data events must rebuild each
//! file byte for byte.

use snapbundle_core::report::{Area, Container, IntegrityStatus, Role};
use snapbundle_core::{Error, Report};
use snapbundle_tests::fixtures::{
    all_fixtures, validate_chunked, validate_null, Fixture, RecordedFile, RecordingSink,
};

/// At least the 23 bundles shipped with the reference set; an empty or half-copied directory fails.
const MIN_FIXTURES: usize = 23;

/// The chunk sizes every fixture is also fed in (besides the whole buffer at once).
const CHUNKS: [usize; 5] = [1, 7, 512, 4096, 65536];

/// Where a rejection must point.
#[derive(Debug, Clone, Copy)]
enum At {
    /// The tar member with this header index and name.
    Member(u32, &'static str),
    /// The snapshot with this archive prefix.
    Prefix(&'static str),
    /// The bundle as a whole or the image cache (no location).
    Nowhere,
}

/// Each rejected fixture with the layer, the error code and the location our spec calls for.
const REJECTIONS: &[(&str, &str, &str, At)] = &[
    // `docs/hostile-inputs.md` §2.4: an absolute name is an unsafe path;
    // 0.6.2: "archive contains unsafe path".
    ("r-absolute-path", "tar", "unsafe_path", At::Member(0, "/sha256-871b1eb5f43ec07e/manifest.json")),
    // 0.6.2 validate_cached_metadata: "snapshot image metadata digest mismatch".
    ("r-cache-metadata-digest-mismatch", "cache", "cache_metadata_digest_mismatch", At::Nowhere),
    // `docs/hostile-inputs.md` §2.4: a name outside the layout (`cache/tmp/x`) is an unexpected member;
    // 0.6.2: "archive contains unsupported cache path". Rejected at its header, index 7.
    ("r-cache-unexpected-kind", "tar", "unexpected_member", At::Member(7, "cache/blobs/sha256_0000.tar.gz")),
    // `docs/hostile-inputs.md` §2.4: `./x` is an unsafe path (0.6.2 refuses the `./` prefix too).
    ("r-dot-slash-paths", "tar", "unsafe_path", At::Member(0, "./sha256-871b1eb5f43ec07e/manifest.json")),
    // `docs/hostile-inputs.md` §2.4: `..` anywhere is an unsafe path; the two valid members before
    // it do not help.
    ("r-dotdot-path", "tar", "unsafe_path", At::Member(2, "sha256-871b1eb5f43ec07e/../../evil.txt")),
    // 0.6.2: "archive contained no snapshot manifest" (also covers empty archives).
    ("r-empty-archive", "bundle", "no_snapshot_manifest", At::Nowhere),
    // 0.6.2 validate(): "unsupported schema version 2 (expected 1)".
    ("r-manifest-schema-2", "manifest", "manifest_schema", At::Prefix("sha256-871b1eb5f43ec07e")),
    // 0.6.2: deny_unknown_fields → "parse failed: unknown field `comment`".
    ("r-manifest-unknown-field", "manifest", "manifest_parse", At::Prefix("sha256-871b1eb5f43ec07e")),
    // `docs/hostile-inputs.md` §2.4: a symlink is refused; 0.6.2: "unsupported entry type".
    ("r-symlink-entry", "tar", "unsupported_entry_type", At::Member(1, "sha256-871b1eb5f43ec07e/upper.ext4")),
    // `docs/hostile-inputs.md` §2.2: input ending inside a member is truncated. The zstd frame itself is
    // complete (the tar inside was cut), so this is a tar truncation, not zstd_truncated.
    ("r-truncated", "tar", "truncated", At::Member(1, "sha256-871b1eb5f43ec07e/upper.ext4")),
    // 0.6.2 open_snapshot: "upper size mismatch: manifest says 65537, file is 65536".
    ("r-upper-size-mismatch", "snapshot", "upper_size_mismatch", At::Prefix("sha256-871b1eb5f43ec07e")),
    // 0.6.2 verify: "upper digest mismatch" (msb-sparse-sha256-v1 with one hex digit changed).
    ("r-wrong-sparse-digest", "snapshot", "upper_digest_mismatch", At::Prefix("sha256-871b1eb5f43ec07e")),
];

/// Codes decided from a member's header alone: such a member must never be announced to the sink.
const HEADER_CODES: &[&str] = &[
    "unsafe_path",
    "unexpected_member",
    "unsupported_entry_type",
    "non_utf8_name",
    "duplicate_entry",
    "pax_header",
    "bad_long_name",
    "link_name_set",
    "directory_with_data",
];

fn rejection(stem: &str) -> Option<(&'static str, &'static str, At)> {
    REJECTIONS.iter().find(|r| r.0 == stem).map(|r| (r.1, r.2, r.3))
}

/// Collects mismatches so one run reports all of them, fixture by fixture.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn eq<T: PartialEq + std::fmt::Debug>(&mut self, ctx: &str, what: &str, got: T, want: T) {
        if got != want {
            self.0.push(format!("{ctx}: {what}: got {got:?}, want {want:?}"));
        }
    }

    fn check(&mut self, ctx: &str, cond: bool, what: impl FnOnce() -> String) {
        if !cond {
            self.0.push(format!("{ctx}: {}", what()));
        }
    }

    fn finish(self, test: &str) {
        assert!(self.0.is_empty(), "{test}: {} failure(s):\n  {}", self.0.len(), self.0.join("\n  "));
    }
}

fn fixtures() -> Vec<Fixture> {
    let all = all_fixtures();
    assert!(
        all.len() >= MIN_FIXTURES,
        "expected at least {MIN_FIXTURES} reference bundles, found {}",
        all.len()
    );
    all
}

/// The archive path of a report file: `<prefix>/<file>`, or `cache/<kind>/<file>`.
fn archive_path(area: Area, path: &str) -> String {
    match area {
        Area::Snapshots => path.to_owned(),
        Area::Cache => format!("cache/{path}"),
    }
}

/// The path relative to the microsandbox home that 0.6.2 import writes a report file to.
fn home_path(area: Area, path: &str) -> String {
    match area {
        Area::Snapshots => format!("snapshots/{path}"),
        Area::Cache => format!("cache/{path}"),
    }
}

fn describe(r: &Result<Report, Error>) -> String {
    match r {
        Ok(rep) => format!("accepted, head {} ({} files)", rep.head_prefix, rep.files.len()),
        Err(e) => format!("rejected [{}/{}] {e}", e.kind(), e.code()),
    }
}

#[test]
fn fixture_directory_is_complete_and_consistent() {
    let all = fixtures();
    let mut fail = Failures::default();
    for f in &all {
        let ctx = f.file_name.as_str();
        fail.eq(ctx, "`bundle` in expect.json", f.expect.bundle.as_str(), ctx);
        fail.eq(ctx, "`bundle_bytes` vs file length", f.expect.bundle_bytes, f.bytes.len() as u64);
        let zstd_magic = f.bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
        fail.eq(ctx, "zstd magic vs `compression`", zstd_magic, f.is_zstd());
        if f.expect.ok {
            fail.check(ctx, !f.expect.snapshot_digests.is_empty(), || "accepted without snapshots".into());
            fail.check(ctx, !f.expect.bundle_entries.is_empty(), || "accepted without entries".into());
            fail.check(ctx, rejection(f.stem()).is_none(), || "accepted but in the rejection table".into());
        } else {
            fail.check(ctx, rejection(f.stem()).is_some(), || {
                "rejected by 0.6.2 but missing from the REJECTIONS table".into()
            });
        }
        println!("{ctx}: {} bytes, ok={}, {}", f.bytes.len(), f.expect.ok, f.expect.description);
    }
    for (stem, ..) in REJECTIONS {
        fail.check(stem, all.iter().any(|f| f.stem() == *stem && !f.expect.ok), || {
            "in the REJECTIONS table but no rejected fixture has that name".into()
        });
    }
    fail.finish("fixture_directory_is_complete_and_consistent");
}

fn check_accepted(fail: &mut Failures, f: &Fixture, rep: &Report) {
    let ctx = f.file_name.as_str();
    let e = &f.expect;
    let digests: Vec<&str> = rep.snapshots.iter().map(|s| s.digest.as_str()).collect();
    fail.eq(
        ctx,
        "snapshot digests in archive order",
        digests,
        e.snapshot_digests.iter().map(String::as_str).collect(),
    );
    fail.eq(ctx, "head digest", Some(rep.head.as_str()), e.head_digest.as_deref());
    fail.eq(ctx, "head prefix", Some(rep.head_prefix.as_str()), e.head_name.as_deref());
    let heads: Vec<_> = rep.snapshots.iter().filter(|s| s.is_head).collect();
    fail.eq(ctx, "number of snapshots marked head", heads.len(), 1);
    match rep.head_snapshot() {
        None => fail.0.push(format!("{ctx}: report has no head snapshot")),
        Some(h) => {
            fail.eq(ctx, "head snapshot digest", h.digest.as_str(), rep.head.as_str());
            fail.eq(ctx, "head snapshot prefix", h.prefix.as_str(), rep.head_prefix.as_str());
            fail.eq(ctx, "head parent", h.parent.as_deref(), e.head_parent_digest.as_deref());
            fail.eq(ctx, "head size_bytes", Some(h.size_bytes), e.head_size_bytes);
        }
    }
    for s in &rep.snapshots {
        // 0.6.2 export names each directory after its digest; all reference bundles come from export.
        fail.check(ctx, s.prefix_matches_digest, || {
            format!("prefix {} does not match {}", s.prefix, s.digest)
        });
        let parent_here = s.parent.as_ref().is_some_and(|p| digests_contains(rep, p));
        fail.eq(ctx, "parent_in_bundle", s.parent_in_bundle, parent_here);
    }
    let want_container = if f.is_zstd() { Container::Zstd } else { Container::Tar };
    fail.eq(ctx, "container", rep.container, want_container);
    fail.eq(ctx, "compressed_bytes", rep.compressed_bytes, f.bytes.len() as u64);
    if !f.is_zstd() {
        fail.eq(ctx, "decompressed_bytes of a plain tar", rep.decompressed_bytes, f.bytes.len() as u64);
    }

    // The file list: bundle_entries (regular members) in archive order; a `cache/<kind>/<file>`
    // member is `<kind>/<file>` in the cache area, anything else `<prefix>/<file>` in the snapshots.
    // Each file's plan digest: the recorded `msb-sparse-sha256-v1` digest for an upper whose
    // manifest records it, else the entry's SHA-256 as 0.6.2 reported it.
    let plan_digest = |area: Area, path: &str, data_sha256: &str| -> (String, String) {
        let sparse = rep.snapshots.iter().find_map(|s| match &s.integrity {
            IntegrityStatus::Verified { algorithm, digest }
                if area == Area::Snapshots
                    && algorithm == "msb-sparse-sha256-v1"
                    && path == format!("{}/{}", s.prefix, s.upper_file) =>
            {
                Some((algorithm.clone(), digest.clone()))
            }
            _ => None,
        });
        sparse.unwrap_or_else(|| ("sha256".into(), format!("sha256:{data_sha256}")))
    };
    let got: Vec<(Area, &str, u64, (String, String))> = rep
        .files
        .iter()
        .map(|p| (p.area, p.path.as_str(), p.size, (p.algorithm.clone(), p.digest.clone())))
        .collect();
    let want: Vec<(Area, &str, u64, (String, String))> = e
        .bundle_entries
        .iter()
        .filter(|b| b.type_flag != "5")
        .map(|b| match b.path.strip_prefix("cache/") {
            Some(rest) => (Area::Cache, rest, b.size, plan_digest(Area::Cache, rest, &b.data_sha256)),
            None => (
                Area::Snapshots,
                b.path.as_str(),
                b.size,
                plan_digest(Area::Snapshots, &b.path, &b.data_sha256),
            ),
        })
        .collect();
    fail.eq(ctx, "files (area, path, size, algorithm and digest) in archive order", got, want);
    for p in &rep.files {
        let entry = e.bundle_entries.iter().find(|b| b.path == archive_path(p.area, &p.path));
        fail.eq(ctx, &format!("mtime of {}", p.path), Some(p.mtime), entry.map(|b| b.mtime));
        let want_role = match p.area {
            Area::Cache if p.path.starts_with("manifests/") => Role::CacheMetadata,
            Area::Cache => Role::CacheArtifact,
            Area::Snapshots if p.path.ends_with("/manifest.json") => Role::Manifest,
            Area::Snapshots => {
                let is_upper =
                    rep.snapshots.iter().any(|s| p.path == format!("{}/{}", s.prefix, s.upper_file));
                if is_upper {
                    Role::Upper
                } else {
                    Role::Extra
                }
            }
        };
        fail.eq(ctx, &format!("role of {}", p.path), p.role, want_role);
    }
    let indices: Vec<u32> = rep.files.iter().map(|p| p.index).collect();
    fail.check(ctx, indices.windows(2).all(|w| w[0] < w[1]), || {
        format!("indices not increasing: {indices:?}")
    });
    fail.eq(ctx, "tar header count", rep.entries as usize, e.bundle_entries.len());

    // What real 0.6.2 left under its home after import: same paths, sizes, sha256 and mtimes.
    let mut imported: Vec<(String, u64, String, u64)> =
        rep.files.iter().map(|p| (home_path(p.area, &p.path), p.size, p.digest.clone(), p.mtime)).collect();
    imported.sort();
    let mut want_imported: Vec<(String, u64, String, u64)> = e
        .imported_files
        .iter()
        .map(|i| {
            let planned = rep.files.iter().find(|p| home_path(p.area, &p.path) == i.path);
            let (_, digest) = match planned {
                Some(p) => plan_digest(p.area, &p.path, &i.sha256),
                None => ("sha256".into(), format!("sha256:{}", i.sha256)),
            };
            (i.path.clone(), i.size, digest, i.mtime)
        })
        .collect();
    want_imported.sort();
    fail.eq(ctx, "files 0.6.2 import wrote (sorted)", imported, want_imported);

    // The cache report lists exactly the cache files of the bundle.
    let cache_files: Vec<&str> =
        rep.files.iter().filter(|p| p.area == Area::Cache).map(|p| p.path.as_str()).collect();
    match &rep.cache {
        None => fail.check(ctx, cache_files.is_empty(), || "cache files but no cache report".into()),
        Some(c) => {
            let mut listed: Vec<&str> = c.files.iter().map(String::as_str).collect();
            listed.sort_unstable();
            let mut present = cache_files.clone();
            present.sort_unstable();
            fail.eq(ctx, "cache report files", listed, present);
            let head_image = rep.head_snapshot().map(|h| h.image_manifest_digest.as_str());
            fail.eq(ctx, "cache manifest digest", Some(c.manifest_digest.as_str()), head_image);
        }
    }
}

fn digests_contains(rep: &Report, digest: &str) -> bool {
    rep.snapshots.iter().any(|s| s.digest == digest)
}

fn check_rejected(fail: &mut Failures, f: &Fixture, err: &Error) {
    let ctx = f.file_name.as_str();
    let Some((kind, code, at)) = rejection(f.stem()) else {
        fail.0.push(format!("{ctx}: rejected ({err}) but has no entry in REJECTIONS"));
        return;
    };
    fail.eq(ctx, "error code", err.code(), code);
    fail.eq(ctx, "error kind", err.kind(), kind);
    match (at, err) {
        (At::Member(index, name), Error::Tar { at, .. }) => {
            fail.eq(ctx, "failing entry index", at.index, Some(index));
            fail.eq(ctx, "failing entry name", at.name.as_deref(), Some(name));
        }
        (At::Prefix(prefix), Error::Manifest { prefix: p, .. } | Error::Snapshot { prefix: p, .. }) => {
            fail.eq(ctx, "failing snapshot prefix", p.as_str(), prefix);
        }
        (At::Nowhere, Error::Bundle(_) | Error::Cache(_)) => {}
        (at, err) => fail.0.push(format!("{ctx}: error {err:?} does not carry the location {at:?}")),
    }
    // Past the tar layer our detail texts are 0.6.2's own (its wording, its computed values: sizes,
    // the sparse digest of the upper, the cache digests), so 0.6.2's message must end with ours.
    let detail = match err {
        Error::Manifest { error, .. } => Some(error.to_string()),
        Error::Snapshot { error, .. } => Some(error.to_string()),
        Error::Cache(error) => Some(error.to_string()),
        Error::Bundle(error) => Some(error.to_string()),
        _ => None,
    };
    if let Some(detail) = detail {
        let theirs = f.expect.error_normalized.as_deref().unwrap_or("");
        fail.check(ctx, theirs.ends_with(&detail), || format!("0.6.2 said {theirs:?}, we say {detail:?}"));
    }
    fail.check(ctx, !err.to_string().is_empty(), || "empty error message".into());
}

#[test]
fn verdicts_match_microsandbox_0_6_2() {
    let mut fail = Failures::default();
    for f in fixtures() {
        let r = snapbundle_core::validate(&f.bytes, snapbundle_core::Limits::default());
        println!("{}: {}", f.file_name, describe(&r));
        match (&r, f.expect.ok) {
            (Ok(rep), true) => check_accepted(&mut fail, &f, rep),
            (Err(e), false) => check_rejected(&mut fail, &f, e),
            (Ok(_), false) => fail.0.push(format!(
                "{}: accepted, but 0.6.2 rejects it: {:?}",
                f.file_name, f.expect.error_normalized
            )),
            (Err(e), true) => {
                fail.0.push(format!("{}: rejected [{}] {e}, but 0.6.2 imports it", f.file_name, e.code()))
            }
        }
    }
    fail.finish("verdicts_match_microsandbox_0_6_2");
}

/// Checks the files rebuilt from the events against the bundle entries (and, for an accepted
/// bundle, the report).
fn check_recorded(
    fail: &mut Failures,
    ctx: &str,
    f: &Fixture,
    sink: &RecordingSink,
    r: &Result<Report, Error>,
) {
    for p in &sink.problems {
        fail.0.push(format!("{ctx}: event stream: {p}"));
    }
    for rf in &sink.files {
        let RecordedFile {
            path,
            len,
            sha256,
            sparse_sha256,
            hashes,
            end_size,
            end_sha256,
            end_sparse_sha256,
            ..
        } = rf;
        fail.eq(ctx, &format!("{path}: bytes rebuilt vs FileEnd size"), *len, *end_size);
        let want_plain = hashes.sha256.then(|| sha256.clone());
        fail.eq(ctx, &format!("{path}: sha256 rebuilt vs FileEnd sha256"), &want_plain, end_sha256);
        let want_sparse = hashes.sparse_sha256.then(|| sparse_sha256.clone());
        fail.eq(ctx, &format!("{path}: sparse digest rebuilt vs FileEnd"), &want_sparse, end_sparse_sha256);
        match f.expect.bundle_entries.iter().find(|b| &b.path == path) {
            None => fail.0.push(format!("{ctx}: {path} rebuilt but not a bundle entry")),
            Some(b) => {
                fail.eq(ctx, &format!("{path}: rebuilt size vs bundle entry"), *len, b.data_bytes);
                fail.eq(
                    ctx,
                    &format!("{path}: rebuilt sha256 vs data_sha256"),
                    sha256.as_str(),
                    b.data_sha256.as_str(),
                );
            }
        }
    }
    match r {
        Ok(rep) => {
            let rebuilt: Vec<(u32, &str, u64, Option<String>)> = sink
                .files
                .iter()
                .zip(&rep.files)
                .map(|(x, p)| (x.index, x.path.as_str(), x.len, x.rebuilt_digest(&p.algorithm)))
                .collect();
            let archive: Vec<String> = rep.files.iter().map(|p| archive_path(p.area, &p.path)).collect();
            let reported: Vec<(u32, &str, u64, Option<String>)> = rep
                .files
                .iter()
                .zip(&archive)
                .map(|(p, a)| (p.index, a.as_str(), p.size, Some(p.digest.clone())))
                .collect();
            fail.eq(ctx, "files rebuilt vs report (count)", sink.files.len(), rep.files.len());
            fail.eq(ctx, "files rebuilt from events vs report", rebuilt, reported);
            fail.check(ctx, sink.open_member().is_none_or(|m| m.is_dir), || "a file was left open".into());
        }
        Err(err) => {
            if let Error::Tar { at, .. } = err {
                if HEADER_CODES.contains(&err.code()) {
                    let announced = sink.members.iter().any(|m| Some(m.index) == at.index);
                    fail.check(ctx, !announced, || format!("rejected member {at} was announced to the sink"));
                }
                if err.code() == "truncated" {
                    let closed = sink.files.iter().any(|x| Some(x.index) == at.index);
                    fail.check(ctx, !closed, || format!("truncated member {at} got a FileEnd"));
                }
            }
        }
    }
}

/// Feeds every fixture in `chunk`-byte pieces (0: all at once) with a `NullSink` and with a
/// `RecordingSink`; both must give exactly the whole-buffer result, and the events must rebuild
/// every file.
fn check_chunking(chunk: usize) {
    let mut fail = Failures::default();
    for f in fixtures() {
        let ctx = format!("{} (chunk {chunk})", f.file_name);
        let whole = validate_null(&f.bytes, 0);
        let null = validate_null(&f.bytes, chunk);
        fail.eq(&ctx, "NullSink result vs whole buffer", &null, &whole);
        let mut sink = RecordingSink::new();
        let recorded = validate_chunked(&f.bytes, chunk, &mut sink);
        fail.eq(&ctx, "RecordingSink result vs whole buffer", &recorded, &whole);
        check_recorded(&mut fail, &ctx, &f, &sink, &recorded);
        let holes: u64 = sink.files.iter().map(|x| x.hole_bytes).sum();
        let bytes: u64 = sink.files.iter().map(|x| x.len).sum();
        println!(
            "{ctx}: {}; {} files rebuilt, {bytes} bytes of which {holes} in holes",
            describe(&recorded),
            sink.files.len()
        );
    }
    fail.finish(&format!("chunk size {chunk}"));
}

#[test]
fn events_rebuild_files_whole_buffer() {
    check_chunking(0);
}

#[test]
fn same_result_fed_1_byte_at_a_time() {
    check_chunking(CHUNKS[0]);
}

#[test]
fn same_result_in_7_byte_chunks() {
    check_chunking(CHUNKS[1]);
}

#[test]
fn same_result_in_512_byte_chunks() {
    check_chunking(CHUNKS[2]);
}

#[test]
fn same_result_in_4096_byte_chunks() {
    check_chunking(CHUNKS[3]);
}

#[test]
fn same_result_in_65536_byte_chunks() {
    check_chunking(CHUNKS[4]);
}

/// The sparse uppers really are sent mostly as holes: a writer that follows the events keeps them
/// sparse. (`a-single` has an 8 MiB upper that compresses to 1.5 KiB.)
#[test]
fn sparse_upper_arrives_as_holes() {
    let f = fixtures().into_iter().find(|f| f.file_name == "a-single.tar.zst").expect("a-single.tar.zst");
    let mut sink = RecordingSink::new();
    let rep = validate_chunked(&f.bytes, 4096, &mut sink).expect("a-single.tar.zst is valid");
    let upper = rep.files.iter().find(|p| p.role == Role::Upper).expect("an upper");
    let rebuilt = sink.files.iter().find(|x| x.index == upper.index).expect("upper rebuilt");
    println!("{}: {} of {} bytes in holes", upper.path, rebuilt.hole_bytes, rebuilt.len);
    assert!(sink.problems.is_empty(), "{:?}", sink.problems);
    assert!(
        rebuilt.hole_bytes >= rebuilt.len / 2,
        "only {} of {} bytes of the sparse upper came as holes",
        rebuilt.hole_bytes,
        rebuilt.len
    );
}
