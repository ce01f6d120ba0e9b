//! `push FILE.msb REF` and `pull REF -o FILE.msb` through a real registry (Debian's
//! `docker-registry`, as in `registry.rs`): every reference archive of real 0.7.13 the core
//! accepts comes back with the identical tar stream, an archive snapbundle wrote comes back
//! byte for byte, a child archive pushed after its parent's sends only its own blobs, a push
//! killed mid-way leaves no tag and its rerun skips what made it, a tampered blob fails the
//! pull naming the member, an invalid archive uploads nothing, and a config whose header
//! records or trailer lie is refused (the in-memory registry of `support::mini_registry` serves
//! the edited config).

mod support;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use snapbundle::home::Home;
use snapbundle::registry::pull::pull;
use snapbundle::registry::push::push_msb;
use snapbundle::registry::{PullOptions, PullTarget, PushOptions};
use snapbundle::HostError;
use snapbundle_tests::builder::{self, Integrity, Snapshot, Tar};
use support::mini_registry::{base64_encode, Mini};
use support::registry::{tamper, TestRegistry, PASSWORD, USER};
use support::{command, describe};

fn home() -> (tempfile::TempDir, Home) {
    let d = tempfile::tempdir().expect("temp home");
    let h = Home::at(d.path());
    (d, h)
}

fn quiet_push() -> PushOptions {
    PushOptions { quiet: true, ..Default::default() }
}

fn quiet_pull() -> PullOptions {
    PullOptions { quiet: true, ..Default::default() }
}

fn code<T: std::fmt::Debug>(r: &Result<T, HostError>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code().to_string(),
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", snapbundle_core::hex::encode(&Sha256::digest(bytes)))
}

/// The tar stream of an archive: decompressed when it is zstd.
fn tar_of(bytes: &[u8]) -> Vec<u8> {
    if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let mut out = Vec::new();
        zstd::stream::read::Decoder::new(bytes).expect("zstd").read_to_end(&mut out).expect("decompress");
        out
    } else {
        bytes.to_vec()
    }
}

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/microsandbox-0.7.13")
}

/// Whether the core accepts the archive at `path` (as `verify` does).
fn core_accepts(path: &Path) -> Result<(), HostError> {
    let mut f = fs::File::open(path).expect("open archive");
    snapbundle::check::verify_stream(
        &mut f,
        "archive",
        snapbundle_core::Limits::DEFAULT,
        &snapbundle::progress::Progress::hidden(),
    )
    .map(|_| ())
}

/// A chain of `n` snapshots, root first, uppers from `upper`.
fn chain(n: usize, upper: impl Fn(usize) -> Vec<u8>) -> Vec<Snapshot> {
    let mut out: Vec<Snapshot> = Vec::new();
    for i in 0..n {
        let mut s = Snapshot::new(upper(i), Integrity::Sparse).label("n", &i.to_string());
        if let Some(p) = out.last() {
            s = s.parent(&p.digest());
        }
        out.push(s);
    }
    out
}

/// `snaps` as a `.msb` archive written by `snapbundle convert --to 0.7` (extra flags in `extra`).
fn converted(dir: &Path, name: &str, snaps: &[Snapshot], extra: &[&str]) -> PathBuf {
    let bundle = dir.join(format!("{name}.tar"));
    fs::write(&bundle, snaps.iter().fold(Tar::new(), |t, s| t.snapshot(s)).end().build()).expect("bundle");
    let out = dir.join(format!("{name}.msb"));
    let mut args =
        vec!["convert".to_string(), bundle.display().to_string(), "-o".into(), out.display().to_string()];
    args.extend(["--to", "0.7", "--quiet"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    let run = command(&args).output().expect("run convert");
    assert!(run.status.success(), "{}", describe(&run));
    out
}

/// Pulls `target` into a new file `name` under `dir`.
fn pull_file(
    reg_conn: &snapbundle::registry::Connection,
    target: &str,
    dir: &Path,
    name: &str,
) -> (Result<snapbundle::registry::PullOutcome, HostError>, PathBuf) {
    let out = dir.join(name);
    let (_h, scratch) = home();
    let r = pull(&scratch, target, reg_conn, &quiet_pull(), PullTarget::File(&out));
    (r, out)
}

#[test]
fn every_reference_archive_the_core_accepts_comes_back_with_its_tar_stream_identical() {
    let reg = TestRegistry::start(false);
    let scratch = tempfile::tempdir().expect("scratch");
    let mut pushed = 0;
    let mut names = Vec::new();
    for e in fs::read_dir(reference_dir()).expect("reference archives") {
        let path = e.expect("entry").path();
        if path.extension().and_then(|x| x.to_str()) == Some("msb") {
            names.push(path);
        }
    }
    names.sort();
    for path in names {
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        let original = fs::read(&path).expect("read archive");
        let target = reg.reference(&format!("ref/{name}:v1"));
        let (_s, src) = home();
        let r = push_msb(&src, &path, &target, &reg.connection(None), &quiet_push());
        if let Err(refused) = core_accepts(&path) {
            // Refused by the core: push refuses it with the same code, before any upload.
            assert_eq!(code(&r), refused.code(), "{name}");
            continue;
        }
        let out = r.unwrap_or_else(|e| panic!("{name}: push: {e}"));
        assert_eq!(out.uploaded + out.skipped + out.mounted, out.blobs.len(), "{name}");
        let (pulled, file) =
            pull_file(&reg.connection(None), &target, scratch.path(), &format!("{name}.msb"));
        let pulled = pulled.unwrap_or_else(|e| panic!("{name}: pull: {e}"));
        let written = fs::read(&file).expect("pulled file");
        assert_eq!(sha256(&tar_of(&written)), sha256(&tar_of(&original)), "{name}: the tar stream differs");
        let bundle = pulled.bundle.expect("bundle");
        assert_eq!(bundle.head, out.head, "{name}");
        let identical = written == original;
        assert_eq!(bundle.same_as_pushed, Some(identical), "{name}");
        if !original.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            // A plain tar comes back as plain tar, byte for byte.
            assert!(identical, "{name}: a plain archive came back different");
        }
        pushed += 1;
    }
    // The oracle's valid cases (and more than a handful): the loop above ran on them.
    assert!(pushed >= 10, "only {pushed} reference archives pushed");
}

#[test]
fn an_archive_snapbundle_wrote_comes_back_byte_for_byte() {
    let reg = TestRegistry::start(true);
    let dir = tempfile::tempdir().expect("dir");
    let snaps = chain(3, |i| builder::upper_bytes(256 << 10, i as u8 + 1));
    for (name, extra) in [("zstd", &[][..]), ("plain", &["--plain-tar"][..])] {
        let archive = converted(dir.path(), name, &snaps, extra);
        let target = reg.reference(&format!("snaps/{name}:v1"));
        let (_s, src) = home();
        push_msb(&src, &archive, &target, &reg.connection(None), &quiet_push())
            .unwrap_or_else(|e| panic!("push: {e}"));
        let (pulled, file) =
            pull_file(&reg.connection(None), &target, dir.path(), &format!("{name}.pulled.msb"));
        let pulled = pulled.unwrap_or_else(|e| panic!("pull: {e}"));
        assert_eq!(fs::read(&file).expect("pulled"), fs::read(&archive).expect("pushed"), "{name}");
        assert_eq!(pulled.bundle.and_then(|b| b.same_as_pushed), Some(true), "{name}");
    }
}

#[test]
fn a_child_archive_pushed_after_its_parent_uploads_only_its_own_blobs() {
    let reg = TestRegistry::start(false);
    let dir = tempfile::tempdir().expect("dir");
    let snaps = chain(2, |i| builder::upper_bytes(512 << 10, i as u8 + 1));
    let parent = converted(dir.path(), "parent", &snaps[..1], &[]);
    let child = converted(dir.path(), "child", &snaps, &[]);
    let (_s, src) = home();
    let first =
        push_msb(&src, &parent, &reg.reference("snaps/web:parent"), &reg.connection(None), &quiet_push())
            .unwrap_or_else(|e| panic!("parent: {e}"));
    let parent_members: Vec<&str> = first.blobs.iter().map(|b| b.member.as_str()).collect();
    let own = |out: &snapbundle::registry::PushOutcome| -> Vec<String> {
        // The child's own members: its snapshot's descriptor, labels and layer, and its
        // `archive.json`; plus the config.
        out.blobs
            .iter()
            .map(|b| b.member.clone())
            .filter(|m| m == "config" || m == "archive.json" || !parent_members.contains(&m.as_str()))
            .collect()
    };
    let sent = |out: &snapbundle::registry::PushOutcome, action| -> Vec<String> {
        out.blobs.iter().filter(|b| b.action == action).map(|b| b.member.clone()).collect()
    };
    use snapbundle::registry::push::BlobAction::{Mounted, Skipped, Uploaded};

    // Into the same repository: the parent's members are there (HEAD), only the child's own
    // blobs are sent.
    let second =
        push_msb(&src, &child, &reg.reference("snaps/web:child"), &reg.connection(None), &quiet_push())
            .unwrap_or_else(|e| panic!("child: {e}"));
    let mine = own(&second);
    assert_eq!(mine.len(), 5, "{second:#?}");
    assert_eq!(sent(&second, Uploaded), mine, "{second:#?}");
    assert_eq!(second.skipped, second.blobs.len() - mine.len(), "{second:#?}");
    assert_eq!(second.skipped, 3, "the parent's descriptor, labels and layer: {second:#?}");

    // Into another repository of the registry: the parent's blobs are mounted, not sent.
    let third =
        push_msb(&src, &child, &reg.reference("snaps/other:child"), &reg.connection(None), &quiet_push())
            .unwrap_or_else(|e| panic!("child elsewhere: {e}"));
    assert_eq!(sent(&third, Uploaded), Vec::<String>::new(), "{third:#?}");
    assert_eq!(sent(&third, Mounted).len() + sent(&third, Skipped).len(), third.blobs.len(), "{third:#?}");
}

#[test]
fn a_push_killed_mid_way_leaves_no_tag_and_the_rerun_skips_what_was_uploaded() {
    let mut reg = TestRegistry::start(false);
    let dir = tempfile::tempdir().expect("dir");
    let snaps = chain(3, |i| support::noise(12 << 20, 2 * i as u64 + 7));
    let archive = converted(dir.path(), "big", &snaps, &[]);
    let target = reg.reference("snaps/big:v1");
    let (src_dir, src) = home();
    let mut args: Vec<String> = vec!["push".into(), archive.display().to_string(), target.clone()];
    args.extend(
        ["--json", "--jobs", "1", "--username", USER, "--password-stdin", "--home"].map(String::from),
    );
    args.push(src_dir.path().display().to_string());
    args.extend(reg.flags());
    let mut child = command(&args).stdin(Stdio::piped()).spawn().expect("start push");
    child.stdin.take().expect("stdin").write_all(format!("{PASSWORD}\n").as_bytes()).expect("password");
    let deadline = Instant::now() + Duration::from_secs(120);
    while reg.blob_uploads() < 2 {
        assert!(Instant::now() < deadline, "no blob uploaded:\n{}", reg.log());
        if child.try_wait().ok().flatten().is_some() {
            let out = child.wait_with_output().expect("push output");
            panic!("the push ended before the registry stopped: {}", describe(&out));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    reg.stop();
    let out = child.wait_with_output().expect("push ends");
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON error");
    assert_eq!(v["error"]["code"], "registry_unreachable", "{v}");

    reg.restart();
    let (missing, file) = pull_file(&reg.connection(None), &target, dir.path(), "nothing.msb");
    assert_eq!(code(&missing), "registry_not_found");
    assert!(!file.exists());
    let uploaded_before = reg.blob_uploads();
    let rerun = push_msb(&src, &archive, &target, &reg.connection(None), &quiet_push())
        .unwrap_or_else(|e| panic!("rerun: {e}"));
    assert!(rerun.skipped >= uploaded_before && uploaded_before >= 2, "{uploaded_before} before: {rerun:#?}");
    assert_eq!(rerun.uploaded + rerun.skipped, rerun.blobs.len());
    let (pulled, file) = pull_file(&reg.connection(None), &target, dir.path(), "big.pulled.msb");
    pulled.unwrap_or_else(|e| panic!("pull: {e}"));
    assert_eq!(fs::read(&file).expect("pulled"), fs::read(&archive).expect("pushed"));
}

#[test]
fn a_tampered_blob_fails_the_pull_naming_the_member_and_nothing_is_written() {
    let reg = TestRegistry::start(false);
    let dir = tempfile::tempdir().expect("dir");
    let archive = reference_dir().join("chain3-with-parents.msb");
    let target = reg.reference("snaps/web:v1");
    let (_s, src) = home();
    let pushed = push_msb(&src, &archive, &target, &reg.connection(None), &quiet_push())
        .unwrap_or_else(|e| panic!("push: {e}"));
    let layer = pushed.blobs.iter().find(|b| b.member.starts_with("layers/")).expect("a layer blob");
    tamper(&reg.blob_file(&layer.digest));
    let (r, file) = pull_file(&reg.connection(None), &target, dir.path(), "web.msb");
    assert_eq!(code(&r), "blob_digest_mismatch");
    let msg = r.expect_err("refused").to_string();
    assert!(msg.contains(&layer.digest) && msg.contains(&layer.member), "{msg}");
    assert!(!file.exists());
    let left: Vec<_> = fs::read_dir(dir.path()).expect("list").collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn an_invalid_archive_is_refused_by_push_before_any_upload() {
    let reg = TestRegistry::start(false);
    let target = reg.reference("snaps/bad:v1");
    let (_s, src) = home();
    let r = push_msb(
        &src,
        &reference_dir().join("neg-tampered-payload.msb"),
        &target,
        &reg.connection(None),
        &quiet_push(),
    );
    assert_eq!(code(&r), "msb_transport_mismatch", "{r:?}");
    assert_eq!(reg.blob_uploads(), 0);
    assert!(!reg.requests().iter().any(|r| r.contains("/blobs/")), "{:?}", reg.requests());
    // And a 0.6.2 bundle is not taken as a file: the CLI says how to push it.
    let dir = tempfile::tempdir().expect("dir");
    let bundle = dir.path().join("b.tar");
    fs::write(&bundle, Tar::new().snapshot(&chain(1, |_| vec![1; 4096])[0]).end().build()).expect("bundle");
    let run = command(["push", bundle.to_str().unwrap_or_default(), target.as_str(), "--json"])
        .output()
        .expect("run");
    assert_eq!(run.status.code(), Some(2), "{}", describe(&run));
    let v: Value = serde_json::from_slice(&run.stdout).expect("JSON error");
    assert_eq!(v["error"]["code"], "usage", "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or_default().contains("import"), "{v}");
}

/// Replaces the config blob the mini registry serves for tag `v1` by `edit` of it.
fn edit_config(mini: &Mini, edit: impl FnOnce(&mut Value)) {
    let mut manifests = mini.manifests.lock().expect("manifests");
    let mut manifest: Value = serde_json::from_slice(&manifests["v1"]).expect("manifest JSON");
    let old = manifest["config"]["digest"].as_str().unwrap_or_default().to_string();
    let mut blobs = mini.blobs.lock().expect("blobs");
    let mut config: Value = serde_json::from_slice(&blobs[&old]).expect("config JSON");
    edit(&mut config);
    let bytes = serde_json::to_vec(&config).expect("config bytes");
    let digest = sha256(&bytes);
    manifest["config"]["digest"] = Value::String(digest.clone());
    manifest["config"]["size"] = Value::from(bytes.len());
    blobs.insert(digest, bytes);
    manifests.insert("v1".into(), serde_json::to_vec(&manifest).expect("manifest bytes"));
}

/// A header record with its size field set to `size` (octal) and its checksum made right.
fn with_size(record: &[u8], size: u64) -> Vec<u8> {
    let mut r = record.to_vec();
    r[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    r[148..156].copy_from_slice(b"        ");
    let sum: u64 = r.iter().map(|&b| u64::from(b)).sum();
    r[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    r
}

fn decode64(text: &str) -> Vec<u8> {
    // The test's own decoder: 4 characters to 3 bytes.
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            _ => 63,
        }
    };
    let mut out = Vec::new();
    for q in text.as_bytes().chunks(4) {
        let pad = q.iter().filter(|&&c| c == b'=').count();
        let n = q.iter().take(4 - pad).fold(0u32, |n, &c| (n << 6) | value(c)) << (6 * pad);
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8][..3 - pad]);
    }
    out
}

/// An edit of a config, as JSON.
type Edit = Box<dyn Fn(&mut Value)>;

#[test]
fn a_config_whose_header_records_or_trailer_lie_is_refused_before_any_blob() {
    let archive = reference_dir().join("single-plain.msb");
    let cases: [(&str, Edit); 4] = [
        (
            "size",
            Box::new(|c| {
                let recs = decode64(c["members"][1]["headers"].as_str().unwrap_or_default());
                let last = recs.len() - 512;
                let mut lied = recs[..last].to_vec();
                lied.extend(with_size(&recs[last..], 1));
                c["members"][1]["headers"] = Value::String(base64_encode(&lied));
            }),
        ),
        (
            "trailer",
            Box::new(|c| {
                let mut t = decode64(c["trailer"].as_str().unwrap_or_default());
                let n = t.len();
                t[n - 1] = 1;
                c["trailer"] = Value::String(base64_encode(&t));
            }),
        ),
        (
            "path",
            Box::new(|c| {
                let other = c["members"][0]["headers"].clone();
                c["members"][1]["headers"] = other;
            }),
        ),
        (
            "records",
            Box::new(|c| {
                let mut recs = decode64(c["members"][0]["headers"].as_str().unwrap_or_default());
                recs.extend([0u8; 512]);
                c["members"][0]["headers"] = Value::String(base64_encode(&recs));
            }),
        ),
    ];
    for (what, edit) in cases {
        let (fake, mini) = Mini::start(Mini::new(None));
        let target = fake.reference("snaps/lies:v1");
        let conn = snapbundle::registry::Connection { plain_http: true, attempts: 1, ..Default::default() };
        let (_s, src) = home();
        push_msb(&src, &archive, &target, &conn, &quiet_push()).unwrap_or_else(|e| panic!("push: {e}"));
        edit_config(&mini, edit);
        let out_dir = tempfile::tempdir().expect("out dir");
        let (_h, scratch) = home();
        let out = out_dir.path().join("x.msb");
        let gets_before = mini.blobs.lock().expect("blobs").len();
        let r = pull(&scratch, &target, &conn, &quiet_pull(), PullTarget::File(&out));
        assert_eq!(code(&r), "invalid_artifact", "{what}: {r:?}");
        let message = r.map(|_| ()).expect_err("refused").to_string();
        let expected = match what {
            "size" => "give another size than its layer",
            "trailer" => "the config's trailer: a byte after the end-of-archive records is not zero",
            "path" => "give another path than its layer",
            _ => "the header records are not exactly one member's",
        };
        assert!(message.contains(expected), "{what}: {message}");
        assert!(!out.exists(), "{what}");
        assert_eq!(mini.blobs.lock().expect("blobs").len(), gets_before);
        // No blob was downloaded: the scratch home's blob cache holds nothing.
        let cached = scratch.cache.join("snapbundle/blobs/sha256");
        let n = fs::read_dir(&cached).map(|d| d.count()).unwrap_or(0);
        assert_eq!(n, 0, "{what}: blobs fetched");
    }
}

/// `pull` into a store of a pushed `.msb` archive goes through `import`, which takes `.msb`
/// archives (converted on the fly): the store is the one `import X.msb` makes.
#[test]
fn pulling_an_archive_into_a_store_imports_it_like_the_file() {
    let reg = TestRegistry::start(false);
    let archive = reference_dir().join("chain3-with-parents.msb");
    let target = reg.reference("snaps/store:v1");
    let (_s, src) = home();
    let pushed = push_msb(&src, &archive, &target, &reg.connection(None), &quiet_push())
        .unwrap_or_else(|e| panic!("push: {e}"));
    let (_p, pulled) = home();
    let out = pull(&pulled, &target, &reg.connection(None), &quiet_pull(), PullTarget::Import { dest: None })
        .unwrap_or_else(|e| panic!("pull: {e}"));
    let (_f, filed) = home();
    let mut f = fs::File::open(&archive).expect("open");
    let imported = snapbundle::import::import(
        &mut f,
        "archive",
        &filed,
        &snapbundle::import::ImportOptions { quiet: true, ..Default::default() },
    )
    .unwrap_or_else(|e| panic!("import: {e}"));
    assert_eq!(out.import.as_ref().map(|i| i.head_digest.clone()), Some(imported.head_digest.clone()));
    assert_eq!(out.blobs, pushed.blobs.len() - 1);
    let store = |root: &Path| -> support::Tree {
        support::content(&support::tree(root))
            .into_iter()
            .filter(|(k, _)| k != "cache" && !k.starts_with("cache/snapbundle"))
            .collect()
    };
    support::assert_tree_eq(&store(&filed.root), &store(&pulled.root), "pulled vs imported");
}
