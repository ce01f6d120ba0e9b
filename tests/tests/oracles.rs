//! Differential tests: every bundle the core accepts must read the same with other tar readers.
//!
//! `docs/hostile-inputs.md` §3: whatever the validator accepts, GNU tar must read the same way, with
//! the same bytes. For each accepted reference bundle and each accepted case of the hostile-input
//! corpus (`tests/corpus/`), the tar stream (decoded by the `zstd` crate, i.e. libzstd, when
//! compressed) is read by the `tar` crate, by `tar_no_std` (when small enough to hold twice in
//! memory) and by GNU tar, and each must see the same members in the same order with the same
//! sizes and the same data as our report. (What other readers do with the *rejected* corpus cases
//! is recorded in the corpus sidecars and README, see `host/tests/corpus.rs`.)

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use snapbundle_core::report::{Area, Generation};
use snapbundle_core::{Limits, Report};
use snapbundle_tests::builder::plan_digest;
use snapbundle_tests::corpus;
use snapbundle_tests::fixtures::{all_fixtures, ScratchDir};

/// The reference set has 11 bundles that 0.6.2 imports; fewer means the directory is broken.
const MIN_ACCEPTED: usize = 11;
/// The corpus has at least this many cases that must be accepted (positive controls and more).
const MIN_CORPUS_ACCEPTED: usize = 20;
/// `tar_no_std` needs the whole stream in memory: only streams up to this size are given to it.
const TAR_NO_STD_MAX: usize = 16 << 20;

/// One regular member: archive path, size, digest of its data by its plan algorithm.
type Member = (String, u64, String);

/// An accepted bundle: where it comes from, its tar stream and our report.
struct Accepted {
    file_name: String,
    plain: bool,
    tar: Vec<u8>,
    report: Report,
}

/// The accepted fixtures and corpus cases, each with our report (computed once per process).
fn accepted() -> &'static [Accepted] {
    static ALL: OnceLock<Vec<Accepted>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut out: Vec<Accepted> = all_fixtures()
            .into_iter()
            .filter(|f| f.expect.ok)
            .map(|f| {
                let report = snapbundle_core::validate(&f.bytes, Limits::default())
                    .unwrap_or_else(|e| panic!("{}: 0.6.2 imports it but we reject it: {e}", f.file_name));
                Accepted { plain: !f.is_zstd(), tar: f.tar_bytes(), file_name: f.file_name, report }
            })
            .collect();
        assert!(
            out.len() >= MIN_ACCEPTED,
            "only {} accepted fixtures, expected at least {MIN_ACCEPTED}",
            out.len()
        );
        let fixtures = out.len();
        // The corpus, generated apart from the corpus test's copy so that the two never race.
        let dir = corpus::corpus_dir().with_file_name("corpus-oracles");
        for case in corpus::generate(&dir).into_iter().filter(|c| c.expect.is_none()) {
            let bytes = fs::read(&case.path).expect("read corpus case");
            let report = snapbundle_core::validate(&bytes, Limits::default())
                .unwrap_or_else(|e| panic!("{}: the corpus says accept, the core says {e}", case.id()));
            // A 0.7 `.msb` archive has no file plan (nothing writes one yet): the oracles here
            // compare plans. Its members are read with the tar crate in msb_blocks.rs.
            if report.generation != Generation::G1 {
                continue;
            }
            // The zstd CLI decodes the corpus (the cases that libzstd's own tool produced included).
            let tar = if case.is_zstd() {
                let out = Command::new("zstd")
                    .args(["-dcq"])
                    .arg(&case.path)
                    .output()
                    .unwrap_or_else(|e| panic!("cannot run the zstd CLI: {e}"));
                assert!(out.status.success(), "{}: the zstd CLI cannot decode it", case.id());
                out.stdout
            } else {
                bytes
            };
            out.push(Accepted { file_name: case.id(), plain: !case.is_zstd(), tar, report });
        }
        let _ = fs::remove_dir_all(&dir);
        assert!(
            out.len() - fixtures >= MIN_CORPUS_ACCEPTED,
            "only {} accepted corpus cases, expected at least {MIN_CORPUS_ACCEPTED}",
            out.len() - fixtures
        );
        out
    })
}

/// `data`'s digest by the algorithm `rep` plans for the member at archive path `path` (`sha256`
/// for a path it does not plan), computed from the definitions in the builder.
fn as_planned(rep: &Report, path: &str, data: &[u8]) -> String {
    let planned = rep.files.iter().find(|p| match p.area {
        Area::Snapshots => p.path == path,
        Area::Cache => path.strip_prefix("cache/") == Some(p.path.as_str()),
    });
    plan_digest(planned.map_or("sha256", |p| p.algorithm.as_str()), data)
}

/// Our view: the report's files with archive paths, in archive order.
fn our_members(rep: &Report) -> Vec<Member> {
    rep.files
        .iter()
        .map(|p| {
            let path = match p.area {
                Area::Snapshots => p.path.clone(),
                Area::Cache => format!("cache/{}", p.path),
            };
            (path, p.size, p.digest.clone())
        })
        .collect()
}

/// The decoded tar stream, checked against the size our validator reports.
fn tar_stream(f: &Accepted) -> &[u8] {
    assert_eq!(
        f.report.decompressed_bytes,
        f.tar.len() as u64,
        "{}: our tar stream length differs from the zstd crate's",
        f.file_name
    );
    &f.tar
}

/// Whether the tar crate sees an old-GNU sparse (`S`) member in `tar`.
fn has_sparse_member(tar: &[u8]) -> bool {
    let mut archive = tar::Archive::new(tar);
    let Ok(entries) = archive.entries() else { return false };
    entries.flatten().any(|e| e.header().entry_type().is_gnu_sparse())
}

#[test]
fn tar_crate_reads_the_same_members() {
    for f in accepted() {
        let (tar, rep) = (tar_stream(f), &f.report);
        let mut archive = tar::Archive::new(tar);
        let mut theirs: Vec<Member> = Vec::new();
        let mut mtimes = Vec::new();
        let entries = archive.entries().unwrap_or_else(|e| panic!("{}: tar crate: {e}", f.file_name));
        for entry in entries {
            let mut entry = entry.unwrap_or_else(|e| panic!("{}: tar crate: {e}", f.file_name));
            let path = String::from_utf8(entry.path_bytes().into_owned())
                .unwrap_or_else(|e| panic!("{}: tar crate gives a non-UTF-8 path: {e}", f.file_name));
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                continue;
            }
            assert!(
                kind.is_file() || kind.is_gnu_sparse(),
                "{}: tar crate sees {path} as {kind:?}, we accepted it",
                f.file_name
            );
            // The logical size: for an old-GNU sparse member, `realsize` (holes read as zeros).
            let size = entry.size();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap_or_else(|e| panic!("{}: {path}: read: {e}", f.file_name));
            assert_eq!(
                data.len() as u64,
                size,
                "{}: {path}: tar crate read fewer bytes than the size",
                f.file_name
            );
            mtimes.push(
                entry.header().mtime().unwrap_or_else(|e| panic!("{}: {path}: mtime: {e}", f.file_name)),
            );
            let digest = as_planned(rep, &path, &data);
            theirs.push((path, size, digest));
        }
        assert_eq!(our_members(rep), theirs, "{}: tar crate disagrees with our report", f.file_name);
        let our_mtimes: Vec<u64> = rep.files.iter().map(|p| p.mtime).collect();
        assert_eq!(our_mtimes, mtimes, "{}: mtimes differ from the tar crate's", f.file_name);
        println!("{}: tar crate agrees on {} members", f.file_name, theirs.len());
    }
}

#[test]
fn tar_no_std_reads_the_same_regular_files() {
    let (mut plain, mut read, mut sparse) = (0, 0, 0);
    for f in accepted() {
        // The plain-tar bundles as they are; the zstd ones after decoding, for good measure.
        let (tar, rep) = (tar_stream(f), &f.report);
        if tar.len() > TAR_NO_STD_MAX {
            println!(
                "{}: {} bytes of tar, too large for tar_no_std's in-memory reader",
                f.file_name,
                tar.len()
            );
            continue;
        }
        if has_sparse_member(tar) {
            println!("{}: old-GNU sparse members, which tar_no_std does not read", f.file_name);
            sparse += 1;
            continue;
        }
        read += 1;
        let archive = tar_no_std::TarArchiveRef::new(tar)
            .unwrap_or_else(|e| panic!("{}: tar_no_std rejects what we accepted: {e:?}", f.file_name));
        let theirs: Vec<Member> = archive
            .entries()
            .map(|e| {
                let name = e.filename();
                let name =
                    name.as_str().unwrap_or_else(|err| panic!("{}: non-UTF-8 name: {err}", f.file_name));
                (name.to_owned(), e.size() as u64, as_planned(rep, name, e.data()))
            })
            .collect();
        assert_eq!(our_members(rep), theirs, "{}: tar_no_std disagrees with our report", f.file_name);
        if f.plain {
            plain += 1;
        }
        println!("{}: tar_no_std agrees on {} regular files", f.file_name, theirs.len());
    }
    assert!(plain >= 5, "only {plain} plain-tar bundles were read as they are");
    assert!(read + sparse >= accepted().len() - 4, "tar_no_std skipped too many bundles ({read} read)");
}

/// Runs GNU tar with `stdin` as its input; panics with a clear message when it is missing.
fn gnu_tar(args: &[&str], stdin: &[u8]) -> Output {
    let spawn = |args: &[&str]| {
        Command::new("tar")
            .args(args)
            .env("LC_ALL", "C")
            .env("TZ", "UTC")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `tar`: {e}. The oracle tests need GNU tar on PATH (apt-get install tar)")
            })
    };
    static CHECKED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    CHECKED.get_or_init(|| {
        let version = spawn(&["--version"]).wait_with_output().expect("tar --version");
        let banner = String::from_utf8_lossy(&version.stdout);
        assert!(
            banner.contains("GNU tar"),
            "`tar` on PATH is not GNU tar (`tar --version` says {:?}); the oracle tests need GNU tar",
            banner.lines().next().unwrap_or("")
        );
    });
    let mut child = spawn(args);
    let mut input = child.stdin.take().expect("tar stdin");
    let out = std::thread::scope(|s| {
        s.spawn(move || {
            // tar may stop reading early on error; its exit status tells.
            let _ = input.write_all(stdin);
        });
        child.wait_with_output().expect("wait for tar")
    });
    assert!(
        out.status.success(),
        "tar {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Splits a `tar -tv` line into its five leading fields and the name.
fn listing_fields(line: &str) -> Option<([&str; 5], &str)> {
    let mut rest = line;
    let mut fields = [""; 5];
    for field in &mut fields {
        rest = rest.trim_start_matches(' ');
        let end = rest.find(' ')?;
        *field = &rest[..end];
        rest = &rest[end..];
    }
    Some((fields, rest.strip_prefix(' ')?))
}

#[test]
fn gnu_tar_lists_the_same_members() {
    for f in accepted() {
        let (tar, rep) = (tar_stream(f), &f.report);
        let out = gnu_tar(&["--numeric-owner", "--full-time", "--quoting-style=literal", "-tvf", "-"], tar);
        let listing = String::from_utf8(out.stdout).expect("UTF-8 listing");
        let mut theirs = Vec::new();
        for line in listing.lines() {
            let (fields, name) =
                listing_fields(line).unwrap_or_else(|| panic!("{}: odd line {line:?}", f.file_name));
            let [mode, _owner, size, _date, _time] = fields;
            if mode.starts_with('d') {
                continue;
            }
            assert!(
                mode.starts_with('-'),
                "{}: GNU tar lists {name} as {mode}, not a regular file",
                f.file_name
            );
            let size: u64 = size.parse().unwrap_or_else(|e| panic!("{}: size {size:?}: {e}", f.file_name));
            theirs.push((name.to_owned(), size));
        }
        let ours: Vec<(String, u64)> = our_members(rep).into_iter().map(|(p, s, _)| (p, s)).collect();
        assert_eq!(ours, theirs, "{}: GNU tar lists different members", f.file_name);
        println!("{}: GNU tar lists the same {} members", f.file_name, theirs.len());
    }
}

/// Every non-directory under `root`, as `/`-joined relative path → (size, digest as `rep` plans
/// it, mtime).
fn walk(rep: &Report, root: &Path, rel: &str, out: &mut BTreeMap<String, (u64, String, u64)>) {
    let dir = root.join(rel);
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().into_string().expect("UTF-8 name");
        let path = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        let meta = fs::symlink_metadata(entry.path()).expect("metadata");
        if meta.is_dir() {
            walk(rep, root, &path, out);
            continue;
        }
        assert!(meta.is_file(), "GNU tar created {path}, which is not a regular file");
        let bytes = fs::read(entry.path()).expect("read extracted file");
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let digest = as_planned(rep, &path, &bytes);
        out.insert(path, (meta.len(), digest, mtime));
    }
}

#[test]
fn gnu_tar_extracts_the_same_bytes() {
    for f in accepted() {
        let (tar, rep) = (tar_stream(f), &f.report);
        let scratch = ScratchDir::new("oracle");
        let dest = scratch.path().to_str().expect("UTF-8 temp dir");
        gnu_tar(&["--no-same-owner", "-xf", "-", "-C", dest], tar);
        let mut theirs = BTreeMap::new();
        walk(rep, scratch.path(), "", &mut theirs);
        let ours: BTreeMap<String, (u64, String, u64)> = our_members(rep)
            .into_iter()
            .zip(&rep.files)
            .map(|((path, size, sha), p)| (path, (size, sha, p.mtime)))
            .collect();
        assert_eq!(ours.len(), rep.files.len(), "{}: our report names a path twice", f.file_name);
        assert_eq!(ours, theirs, "{}: GNU tar extracted different files", f.file_name);
        println!("{}: GNU tar extracted the same {} files", f.file_name, theirs.len());
    }
}
