//! Push and pull through a real registry (Debian's `docker-registry`, started per test on
//! 127.0.0.1 with htpasswd auth; TLS with a self-signed certificate unless a test needs plain
//! HTTP): round trips equal to file imports, deduplication, a registry dying mid-push, a
//! tampered blob, wrong credentials, Docker config credentials, and `pull -o` giving the bundle
//! `export` (and real 0.6.2) writes. A small fake registry (`support::fake_registry`) plays what
//! the real one cannot cheaply: endless manifests, error bodies and token answers, a
//! bearer-token registry, and blob downloads stalled or cut half-way (for `gc`).

mod support;

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use snapbundle::export::{export, ExportOptions, ExportTarget};
use snapbundle::home::Home;
use snapbundle::import::{import, ImportOptions};
use snapbundle::progress::Progress;
use snapbundle::registry::pull::pull;
use snapbundle::registry::push::push;
use snapbundle::registry::{PullOptions, PullTarget, PushOptions};
use snapbundle::HostError;
use snapbundle_tests::builder::{self, ImageCache, Integrity, Snapshot, Tar};
use support::fake_registry::{Answer, FakeRegistry};
use support::mini_registry::{base64_encode, Mini};
use support::registry::{tamper, TestRegistry, PASSWORD, USER};
use support::{command, content, describe, fixture, tree, Tree};

/// A chain of `n` snapshots booting from `image` (when given), root first, uppers from `upper`.
fn chain(
    n: usize,
    image: Option<&ImageCache>,
    upper: impl Fn(usize) -> (Vec<u8>, Integrity),
) -> Vec<Snapshot> {
    let mut out: Vec<Snapshot> = Vec::new();
    for i in 0..n {
        let (bytes, integrity) = upper(i);
        let mut s = Snapshot::new(bytes, integrity).label("n", &i.to_string());
        if let Some(c) = image {
            s = s.image(&c.reference, &c.manifest_digest());
        }
        if let Some(p) = out.last() {
            s = s.parent(&p.digest());
        }
        out.push(s);
    }
    out
}

fn small(i: usize) -> (Vec<u8>, Integrity) {
    (builder::upper_bytes(64 << 10, i as u8 + 1), Integrity::Sparse)
}

fn bundle(snaps: &[Snapshot], image: Option<&ImageCache>) -> Vec<u8> {
    let mut t = snaps.iter().fold(Tar::new(), |t, s| t.snapshot(s));
    if let Some(c) = image {
        t = t.cache(c);
    }
    t.end().build()
}

fn import_bytes(bytes: &[u8], home: &Home) -> snapbundle::import::ImportOutcome {
    import(&mut &bytes[..], "bundle", home, &ImportOptions { quiet: true, ..Default::default() })
        .unwrap_or_else(|e| panic!("import failed: {e}"))
}

fn home() -> (tempfile::TempDir, Home) {
    let d = tempfile::tempdir().expect("temp home");
    let h = Home::at(d.path());
    (d, h)
}

fn quiet_push(with_parents: bool, with_image: bool) -> PushOptions {
    PushOptions { with_parents, with_image, quiet: true, ..Default::default() }
}

fn quiet_pull() -> PullOptions {
    PullOptions { quiet: true, ..Default::default() }
}

/// The store as two imports can agree on it: content, without inode numbers, without
/// snapbundle's own directory in the cache (blob cache, records) and the bare `cache` directory.
fn store(root: &Path) -> Tree {
    content(&tree(root))
        .into_iter()
        .filter(|(k, _)| k != "cache" && !k.starts_with("cache/snapbundle"))
        .collect()
}

fn code(r: &Result<impl std::fmt::Debug, HostError>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code().to_string(),
    }
}

#[test]
fn a_chain_with_its_image_round_trips_through_a_tls_registry_like_a_file_import() {
    let reg = TestRegistry::start(true);
    let image = ImageCache::new("docker.io/library/alpine:3.20", 2);
    let snaps = chain(3, Some(&image), small);
    let tar = bundle(&snaps, Some(&image));
    let (_s, src) = home();
    import_bytes(&tar, &src);
    let head = snaps[2].digest();

    let target = reg.reference("snaps/web:v1");
    let pushed = push(&src, &head, &target, &reg.connection(None), &quiet_push(true, true))
        .unwrap_or_else(|e| panic!("push: {e}"));
    // 3 manifests + 3 uppers + metadata, fsmeta, vmdk and 2 layers, + the config blob.
    assert_eq!((pushed.uploaded, pushed.skipped, pushed.blobs.len()), (12, 0, 12), "{pushed:#?}");
    assert_eq!(reg.blob_uploads(), 12);
    assert_eq!(pushed.head, head);

    let (_p, pulled) = home();
    let out = pull(&pulled, &target, &reg.connection(None), &quiet_pull(), PullTarget::Import { dest: None })
        .unwrap_or_else(|e| panic!("pull: {e}"));
    let imported = out.import.expect("an import");
    assert_eq!(imported.head_digest, head);
    assert_eq!((out.blobs, out.downloaded, out.cached), (11, 11, 0));
    let (_f, filed) = home();
    import_bytes(&tar, &filed);
    support::assert_tree_eq(&store(&filed.root), &store(&pulled.root), "pulled store vs file import");
    // A successful pull leaves no blobs behind.
    let leftovers = |h: &Home| -> Vec<String> {
        tree(&h.root).into_keys().filter(|k| k.starts_with("cache/snapbundle/blobs/sha256/")).collect()
    };
    assert!(leftovers(&pulled).is_empty(), "{:?}", leftovers(&pulled));
    // Pulled again into the same store: a conflict, as for a second import, and no blobs kept
    // (running it again would not help).
    let again =
        pull(&pulled, &target, &reg.connection(None), &quiet_pull(), PullTarget::Import { dest: None });
    assert_eq!(code(&again), "already_exists");
    assert!(leftovers(&pulled).is_empty(), "{:?}", leftovers(&pulled));
    support::assert_tree_eq(&store(&filed.root), &store(&pulled.root), "after the refused second pull");

    // By digest, exactly the same.
    let by_digest = format!("{}@{}", reg.reference("snaps/web"), pushed.manifest_digest);
    let (_d, again) = home();
    pull(&again, &by_digest, &reg.connection(None), &quiet_pull(), PullTarget::Import { dest: None })
        .unwrap_or_else(|e| panic!("pull by digest: {e}"));
    support::assert_tree_eq(&store(&filed.root), &store(&again.root), "pulled by digest vs file import");
}

#[test]
fn a_child_pushed_after_its_parent_uploads_only_its_own_blobs() {
    let reg = TestRegistry::start(false);
    let image = ImageCache::new("docker.io/library/alpine:3.20", 2);
    let snaps = chain(3, Some(&image), small);
    let (_s, src) = home();
    let imported = import_bytes(&bundle(&snaps, Some(&image)), &src);
    let conn = reg.connection(None);

    let parent =
        push(&src, &snaps[1].digest(), &reg.reference("snaps/web:parent"), &conn, &quiet_push(true, true))
            .unwrap_or_else(|e| panic!("push parent: {e}"));
    assert!(parent.blobs.iter().all(|b| b.read), "a first push reads every member: {parent:#?}");
    assert_eq!(parent.bytes_read, parent.member_bytes);
    // 2 manifests + 2 uppers + 5 image files + config.
    assert_eq!((parent.uploaded, parent.skipped), (10, 0));
    let before = reg.blob_uploads();
    assert_eq!(before, 10);

    let child =
        push(&src, &snaps[2].digest(), &reg.reference("snaps/web:child"), &conn, &quiet_push(true, true))
            .unwrap_or_else(|e| panic!("push child: {e}"));
    // Only the child's manifest and upper, and the new config, are sent.
    assert_eq!((child.uploaded, child.skipped), (3, 9), "{child:#?}");
    assert_eq!(reg.blob_uploads() - before, 3, "blob uploads the registry saw");
    let own: Vec<&str> = child
        .blobs
        .iter()
        .filter(|b| b.action == snapbundle::registry::push::BlobAction::Uploaded)
        .map(|b| b.member.as_str())
        .collect();
    assert_eq!(own, vec![snaps[2].manifest_path().as_str(), snaps[2].upper_path().as_str(), "config"]);
    let child_own: u64 = child
        .blobs
        .iter()
        .filter(|b| b.member.starts_with(&snaps[2].prefix()) || b.member == "config")
        .map(|b| b.size)
        .sum();
    assert_eq!(child.bytes_uploaded, child_own);
    // The parents' uppers and the image files were compressed by the first push and have not
    // changed since: the child's push took their digests from its records and did not read
    // them. Only JSON members (held from planning) and the child's own upper were read.
    let unread: Vec<&str> = child.blobs.iter().filter(|b| !b.read).map(|b| b.member.as_str()).collect();
    let expected: Vec<&str> = child
        .blobs
        .iter()
        .filter(|b| {
            !b.member.ends_with(".json") && b.member != "config" && !b.member.starts_with(&snaps[2].prefix())
        })
        .map(|b| b.member.as_str())
        .collect();
    assert_eq!(unread, expected, "{child:#?}");
    assert_eq!(unread.len(), 6, "2 parent uppers and 4 image files: {child:#?}");
    let child_upper = fs::metadata(imported.snapshots[2].join("upper.ext4")).expect("child upper").len();
    assert!(child.bytes_read >= child_upper && child.bytes_read < child_upper + (64 << 10), "{child:#?}");

    // The same snapshot pushed to another repository of the registry: mounted, not uploaded.
    let mopts = PushOptions { mount_from: Some("snaps/web".into()), ..quiet_push(true, true) };
    let mounted = push(&src, &snaps[2].digest(), &reg.reference("other/web:v1"), &conn, &mopts)
        .unwrap_or_else(|e| panic!("push with mount: {e}"));
    assert_eq!((mounted.uploaded, mounted.mounted), (0, 12), "{mounted:#?}");
}

#[test]
fn a_parent_upper_changed_since_its_push_is_read_again_and_its_integrity_stops_the_push() {
    let reg = TestRegistry::start(false);
    let snaps = chain(2, None, small);
    let (_s, src) = home();
    let imported = import_bytes(&bundle(&snaps, None), &src);
    let conn = reg.connection(None);
    push(&src, &snaps[0].digest(), &reg.reference("snaps/web:parent"), &conn, &quiet_push(true, false))
        .unwrap_or_else(|e| panic!("push parent: {e}"));

    // Unchanged but touched: the record no longer vouches, the upper is read again (and its
    // record renewed), and the registry still has its blob.
    let parent_upper = imported.snapshots[0].join("upper.ext4");
    let f = fs::OpenOptions::new().write(true).open(&parent_upper).expect("open parent upper");
    f.set_modified(std::time::SystemTime::now()).expect("touch");
    drop(f);
    let child =
        push(&src, &snaps[1].digest(), &reg.reference("snaps/web:child"), &conn, &quiet_push(true, false))
            .unwrap_or_else(|e| panic!("push child: {e}"));
    let parent_blob = |out: &snapbundle::registry::PushOutcome| {
        out.blobs.iter().find(|b| b.member == snaps[0].upper_path()).cloned().expect("the parent's upper")
    };
    let b = parent_blob(&child);
    assert!(b.read && b.action == snapbundle::registry::push::BlobAction::Skipped, "{b:?}");
    let again =
        push(&src, &snaps[1].digest(), &reg.reference("snaps/web:child2"), &conn, &quiet_push(true, false))
            .unwrap_or_else(|e| panic!("push child again: {e}"));
    assert!(!parent_blob(&again).read, "the renewed record vouches again: {again:#?}");
    // --rehash reads every member, records or not; the blobs are the same and all there.
    let rehash = PushOptions { rehash: true, ..quiet_push(true, false) };
    let reread = push(&src, &snaps[1].digest(), &reg.reference("snaps/web:child3"), &conn, &rehash)
        .unwrap_or_else(|e| panic!("push with rehash: {e}"));
    assert!(reread.blobs.iter().all(|b| b.read), "{reread:#?}");
    assert_eq!((reread.bytes_read, reread.uploaded), (reread.member_bytes, 0), "every blob is there");
    assert_eq!(parent_blob(&reread).digest, parent_blob(&again).digest);

    // One byte changed in place (same size): the record does not vouch for it, the read
    // checks the upper's recorded integrity, and the push stops before any tag is put.
    tamper(&parent_upper);
    let r =
        push(&src, &snaps[1].digest(), &reg.reference("snaps/web:tampered"), &conn, &quiet_push(true, false));
    assert_eq!(code(&r), "upper_digest_mismatch");
    let (_n, nowhere) = home();
    let missing = pull(
        &nowhere,
        &reg.reference("snaps/web:tampered"),
        &conn,
        &quiet_pull(),
        PullTarget::Import { dest: None },
    );
    assert_eq!(code(&missing), "registry_not_found");
}

/// Uppers big enough that a push is still running when the registry is killed (distinct: the
/// noise generator uses `seed | 1`).
fn big(i: usize) -> (Vec<u8>, Integrity) {
    (support::noise(24 << 20, 2 * i as u64 + 7), Integrity::Sha256)
}

#[test]
fn a_registry_stopped_mid_push_leaves_no_tag_and_the_rerun_skips_what_was_uploaded() {
    let mut reg = TestRegistry::start(false);
    let snaps = chain(3, None, big);
    let (src_dir, src) = home();
    import_bytes(&bundle(&snaps, None), &src);
    let target = reg.reference("snaps/big:v1");
    let head = snaps[2].digest();

    let mut args: Vec<String> = vec!["push".into(), head.clone(), target.clone(), "--with-parents".into()];
    args.extend(
        ["--json", "--jobs", "1", "--username", USER, "--password-stdin", "--home"].map(String::from),
    );
    args.push(src_dir.path().display().to_string());
    args.extend(reg.flags());
    let mut child = command(&args).stdin(Stdio::piped()).spawn().expect("start push");
    child.stdin.take().expect("stdin").write_all(format!("{PASSWORD}\n").as_bytes()).expect("password");
    let deadline = Instant::now() + Duration::from_secs(60);
    while reg.blob_uploads() < 2 {
        assert!(Instant::now() < deadline, "no blob uploaded:\n{}", reg.log());
        std::thread::sleep(Duration::from_millis(2));
    }
    reg.stop();
    let out = child.wait_with_output().expect("push ends");
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON error");
    assert_eq!(v["error"]["code"], "registry_unreachable", "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("127.0.0.1") && msg.contains("gave up after"), "{msg}");

    reg.restart();
    // No tag: the manifest was never put.
    let (_n, nowhere) = home();
    let missing =
        pull(&nowhere, &target, &reg.connection(None), &quiet_pull(), PullTarget::Import { dest: None });
    assert_eq!(code(&missing), "registry_not_found");
    assert!(store(&nowhere.root).keys().all(|k| k.starts_with("cache")), "{:?}", store(&nowhere.root));

    let uploaded_before = reg.blob_uploads();
    let rerun = push(&src, &head, &target, &reg.connection(None), &quiet_push(true, false))
        .unwrap_or_else(|e| panic!("rerun: {e}"));
    // Every blob the registry acknowledged before it died is skipped (one it stored without
    // logging in the instant it was killed may be skipped too).
    assert!(rerun.skipped >= uploaded_before && uploaded_before >= 2, "{uploaded_before} before: {rerun:#?}");
    assert_eq!(rerun.uploaded + rerun.skipped, 7);
    let (_p, pulled) = home();
    pull(&pulled, &target, &reg.connection(None), &quiet_pull(), PullTarget::Import { dest: None })
        .unwrap_or_else(|e| panic!("pull: {e}"));
    let (_f, filed) = home();
    import_bytes(&bundle(&snaps, None), &filed);
    support::assert_tree_eq(&store(&filed.root), &store(&pulled.root), "after the rerun");
}

#[test]
fn a_blob_that_does_not_match_its_digest_fails_the_pull_naming_it_and_nothing_is_promoted() {
    let reg = TestRegistry::start(false);
    let snaps = chain(3, None, small);
    let (_s, src) = home();
    import_bytes(&bundle(&snaps, None), &src);
    let target = reg.reference("snaps/web:v1");
    let pushed = push(&src, &snaps[2].digest(), &target, &reg.connection(None), &quiet_push(true, false))
        .unwrap_or_else(|e| panic!("push: {e}"));
    let upper = pushed.blobs.iter().find(|b| b.member == snaps[2].upper_path()).expect("head upper blob");
    let stored = reg.blob_file(&upper.digest);
    tamper(&stored);

    let (_p, pulled) = home();
    let r = pull(&pulled, &target, &reg.connection(None), &quiet_pull(), PullTarget::Import { dest: None });
    assert_eq!(code(&r), "blob_digest_mismatch");
    let e = r.expect_err("error");
    assert_eq!(e.exit_code(), 1);
    let msg = e.to_string();
    assert!(msg.contains(&upper.digest) && msg.contains(&snaps[2].upper_path()), "{msg}");
    // Nothing promoted: no snapshot, no cache file; only verified blobs kept for a resume.
    let left: Vec<String> =
        store(&pulled.root).into_keys().filter(|k| k != "cache" && k != "snapshots").collect();
    assert!(left.is_empty(), "written: {left:?}");
    let kept: Vec<String> = tree(&pulled.root)
        .into_keys()
        .filter(|k| k.starts_with("cache/snapbundle/blobs/sha256/") && !k.ends_with(".part"))
        .collect();
    assert!(!kept.iter().any(|k| k.ends_with(upper.digest.trim_start_matches("sha256:"))), "{kept:?}");

    // Repaired: the pull resumes, fetching again only what it had not verified.
    tamper(&stored);
    let out = pull(&pulled, &target, &reg.connection(None), &quiet_pull(), PullTarget::Import { dest: None })
        .unwrap_or_else(|e| panic!("pull after repair: {e}"));
    // The tampered upper is the last layer: the five before it were verified and kept.
    assert_eq!(out.cached, 5, "{out:#?}");
    assert_eq!(out.downloaded + out.resumed, 1);
    let (_f, filed) = home();
    import_bytes(&bundle(&snaps, None), &filed);
    support::assert_tree_eq(&store(&filed.root), &store(&pulled.root), "after the resumed pull");
}

/// Blobs are not fsynced (the cache only saves downloads): a cached blob a crash left damaged
/// (the right size, zeros inside) fails its re-hash on use, naming it, and is removed, so the
/// next pull downloads it again instead of failing on it for ever.
#[test]
fn a_cached_blob_damaged_on_disk_fails_its_rehash_and_the_next_pull_downloads_it_again() {
    let reg = TestRegistry::start(false);
    let snaps = chain(2, None, small);
    let (_s, src) = home();
    import_bytes(&bundle(&snaps, None), &src);
    let target = reg.reference("snaps/damaged:v1");
    let pushed = push(&src, &snaps[1].digest(), &target, &reg.connection(None), &quiet_push(true, false))
        .unwrap_or_else(|e| panic!("push: {e}"));
    let upper = pushed.blobs.iter().find(|b| b.member == snaps[1].upper_path()).expect("head upper blob");
    let (_p, pulled) = home();
    let out_dir = tempfile::tempdir().expect("temp dir");
    let first = out_dir.path().join("first.tar.zst");
    let keep = PullOptions { keep_blobs: true, ..quiet_pull() };
    pull(&pulled, &target, &reg.connection(None), &keep, PullTarget::File(&first))
        .unwrap_or_else(|e| panic!("first pull: {e}"));
    let cached =
        pulled.cache.join("snapbundle/blobs/sha256").join(upper.digest.trim_start_matches("sha256:"));
    let len = fs::metadata(&cached).expect("the blob is kept").len();
    fs::write(&cached, vec![0u8; len as usize]).expect("damage the cached blob");

    let second = out_dir.path().join("second.tar.zst");
    let r = pull(&pulled, &target, &reg.connection(None), &keep, PullTarget::File(&second));
    assert_eq!(code(&r), "blob_digest_mismatch");
    let msg = r.expect_err("error").to_string();
    assert!(msg.contains(&upper.digest) && msg.contains(&snaps[1].upper_path()), "{msg}");
    assert!(!second.exists(), "nothing written at -o");
    assert!(!cached.exists(), "the damaged blob is removed from the cache");

    let out = pull(&pulled, &target, &reg.connection(None), &keep, PullTarget::File(&second))
        .unwrap_or_else(|e| panic!("the pull after: {e}"));
    assert_eq!(out.downloaded, 1, "only the removed blob is downloaded again: {out:#?}");
    assert!(fs::read(&second).expect("second") == fs::read(&first).expect("first"), "the same bundle");
}

#[test]
fn snapshots_with_identical_uppers_share_one_blob() {
    let reg = TestRegistry::start(false);
    let snaps = chain(3, None, |_| small(0));
    let (_s, src) = home();
    import_bytes(&bundle(&snaps, None), &src);
    let target = reg.reference("snaps/same:v1");
    let pushed = push(&src, &snaps[2].digest(), &target, &reg.connection(None), &quiet_push(true, false))
        .unwrap_or_else(|e| panic!("push: {e}"));
    // 3 manifests + 1 upper + config sent; the 2 other uppers are the same blob.
    assert_eq!((pushed.uploaded, pushed.skipped), (5, 2), "{pushed:#?}");
    assert_eq!(reg.blob_uploads(), 5);
    let (_p, pulled) = home();
    let out = pull(&pulled, &target, &reg.connection(None), &quiet_pull(), PullTarget::Import { dest: None })
        .unwrap_or_else(|e| panic!("pull: {e}"));
    assert_eq!((out.downloaded, out.cached), (4, 2), "{out:#?}");
    let (_f, filed) = home();
    import_bytes(&bundle(&snaps, None), &filed);
    support::assert_tree_eq(&store(&filed.root), &store(&pulled.root), "pulled vs file import");
}

#[test]
fn an_interrupted_download_is_resumed_with_a_range_request() {
    let reg = TestRegistry::start(false);
    let target = reg.reference("snaps/resume:v1");
    let (snaps, upper) = push_noise_upper(&target, &reg.connection(None), 2 << 20, 11);
    // What an interrupted pull leaves: the first part of the blob, not yet verified.
    let (_p, pulled) = home();
    let stored = fs::read(reg.blob_file(&upper)).expect("stored blob");
    let half = stored.len() / 2;
    let hex = upper.trim_start_matches("sha256:");
    fs::write(part_file(&pulled, &upper), &stored[..half]).expect("partial blob");
    let out = pull(&pulled, &target, &reg.connection(None), &quiet_pull(), PullTarget::Import { dest: None })
        .unwrap_or_else(|e| panic!("pull: {e}"));
    assert_eq!((out.resumed, out.downloaded), (1, 1), "{out:#?}");
    let rest = format!("\" 206 {} ", stored.len() - half);
    assert!(
        reg.requests().iter().any(|r| r.contains(hex) && r.contains(&rest)),
        "no range request for the rest: {:?}",
        reg.requests()
    );
    let (_f, filed) = home();
    import_bytes(&bundle(&snaps, None), &filed);
    support::assert_tree_eq(&store(&filed.root), &store(&pulled.root), "after the resumed download");
}

/// A wrong `.part` (what a hostile registry, or a bad disk, can leave for a resume) does not
/// fail the next pull from an honest registry: the resumed blob fails its digest, the download
/// starts over from byte 0 once, and the pull imports what a file import gives.
#[test]
fn a_wrong_partial_blob_is_downloaded_again_instead_of_failing_the_pull() {
    let reg = TestRegistry::start(false);
    let target = reg.reference("snaps/wrong-part:v1");
    let (snaps, upper) = push_noise_upper(&target, &reg.connection(None), 2 << 20, 12);
    let (_p, pulled) = home();
    let stored = fs::read(reg.blob_file(&upper)).expect("stored blob");
    let mut wrong = stored[..stored.len() / 2].to_vec();
    wrong[100] ^= 0xff;
    let hex = upper.trim_start_matches("sha256:");
    fs::write(part_file(&pulled, &upper), &wrong).expect("wrong partial blob");
    let before = reg.requests().len();
    let out = pull(&pulled, &target, &reg.connection(None), &quiet_pull(), PullTarget::Import { dest: None })
        .unwrap_or_else(|e| panic!("pull with a wrong .part: {e}"));
    // Counted as downloaded: what was kept was not used.
    assert_eq!((out.resumed, out.downloaded), (0, 2), "{out:#?}");
    let upper_gets: Vec<_> = reg.requests()[before..]
        .iter()
        .filter(|r| r.contains(hex) && r.starts_with("\"GET "))
        .cloned()
        .collect();
    assert_eq!(upper_gets.len(), 2, "one range request, then the whole blob: {upper_gets:?}");
    let (_f, filed) = home();
    import_bytes(&bundle(&snaps, None), &filed);
    support::assert_tree_eq(&store(&filed.root), &store(&pulled.root), "after the restarted download");
}

fn cli(args: &[&str], stdin: Option<&str>, env: &[(&str, &Path)]) -> std::process::Output {
    let mut c = command(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = c.spawn().expect("run snapbundle");
    if let Some(text) = stdin {
        child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("stdin");
    }
    child.wait_with_output().expect("snapbundle ends")
}

/// A registry reached over TLS that names its token endpoint on plain HTTP never receives the
/// credentials there (nor is a token asked for in clear): the pull stops with an authentication
/// error naming the realm, the realm sees no request, and nothing is written.
#[test]
fn a_tls_registry_cannot_downgrade_the_token_request_to_plain_http() {
    let realm = FakeRegistry::start(|_| Answer::Full(200, Vec::new(), br#"{"token":"t"}"#.to_vec()));
    let realm_url = format!("http://127.0.0.1:{}/token", realm.port);
    let reg = TestRegistry::start_with_token_realm(&realm_url);
    let ca = reg.ca_file().expect("tls").display().to_string();
    let empty_docker = tempfile::tempdir().expect("docker config dir");
    let env = [("DOCKER_CONFIG", empty_docker.path())];
    let (pull_dir, _) = home();
    let pull_home = pull_dir.path().display().to_string();
    let out_file = pull_dir.path().join("out.tar.zst").display().to_string();
    let target = reg.reference("snaps/web:v1");
    for extra in [&["--username", USER, "--password-stdin"][..], &[][..]] {
        let mut args =
            vec!["pull", &target, "--json", "--home", &pull_home, "--ca-file", &ca, "-o", &out_file];
        args.extend(extra);
        let out = cli(&args, (!extra.is_empty()).then_some("bundle-secret\n"), &env);
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        let v: Value = serde_json::from_slice(&out.stdout).expect("JSON error");
        assert_eq!(v["error"]["code"], "registry_auth", "{v}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&realm_url) && stderr.contains("plain HTTP"), "{stderr}");
    }
    assert_eq!(realm.seen.requests.lock().expect("requests").len(), 0, "the plain-HTTP realm was asked");
    assert!(tree(pull_dir.path()).is_empty(), "{:?}", tree(pull_dir.path()));
}

#[test]
fn wrong_credentials_fail_at_once_with_a_clear_error_and_no_retries() {
    let reg = TestRegistry::start(true);
    let snaps = chain(2, None, small);
    let (src_dir, src) = home();
    import_bytes(&bundle(&snaps, None), &src);
    let home_arg = src_dir.path().display().to_string();
    let target = reg.reference("snaps/web:v1");
    let ca = reg.ca_file().expect("tls").display().to_string();
    let empty_docker = tempfile::tempdir().expect("docker config dir");
    let env = [("DOCKER_CONFIG", empty_docker.path())];

    let before = reg.requests().len();
    let head = snaps[1].digest();
    let args = ["push", &head, &target, "--with-parents", "--json", "--home", &home_arg, "--ca-file", &ca];
    let mut with_user = args.to_vec();
    with_user.extend(["--username", USER, "--password-stdin"]);
    let out = cli(&with_user, Some("wrong-password\n"), &env);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON error");
    assert_eq!(v["error"]["code"], "registry_auth", "{v}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("access denied") && stderr.contains("--password-stdin"), "{stderr}");
    let sent = reg.requests().len() - before;
    assert!(sent <= 3, "{sent} requests for a refused login: {:?}", reg.requests());
    assert_eq!(reg.blob_uploads(), 0);

    // No credentials at all: refused the same way.
    let before = reg.requests().len();
    let out = cli(&args, None, &env);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(reg.requests().len() - before <= 3);

    // Pull with wrong credentials: the same clear refusal, nothing written.
    let (pull_dir, _) = home();
    let pull_home = pull_dir.path().display().to_string();
    let out = cli(
        &["pull", &target, "--home", &pull_home, "--ca-file", &ca, "--username", USER, "--password-stdin"],
        Some("nope\n"),
        &env,
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("access denied"), "{}", describe(&out));
    assert!(tree(pull_dir.path()).is_empty(), "{:?}", tree(pull_dir.path()));
}

#[test]
fn credentials_come_from_the_docker_config() {
    let reg = TestRegistry::start(true);
    let snaps = chain(1, None, small);
    let (src_dir, src) = home();
    import_bytes(&bundle(&snaps, None), &src);
    let docker = tempfile::tempdir().expect("docker config dir");
    let auth = base64_encode(format!("{USER}:{PASSWORD}").as_bytes());
    let key = format!("127.0.0.1:{}", reg.port);
    fs::write(docker.path().join("config.json"), format!(r#"{{"auths":{{"{key}":{{"auth":"{auth}"}}}}}}"#))
        .expect("write docker config");
    let ca = reg.ca_file().expect("tls").display().to_string();
    let target = reg.reference("snaps/one:v1");
    let home_arg = src_dir.path().display().to_string();
    let head = snaps[0].digest();
    let out = cli(
        &["push", &head, &target, "--json", "--home", &home_arg, "--ca-file", &ca],
        None,
        &[("DOCKER_CONFIG", docker.path())],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(v["push"]["uploaded"], 3, "{v}");
    assert_eq!(v["push"]["skipped"], 0, "{v}");
    for key in ["bytes_uploaded", "seconds", "manifest_digest"] {
        assert!(!v["push"][key].is_null(), "{key} missing: {v}");
    }

    let (pull_dir, _) = home();
    let pull_home = pull_dir.path().display().to_string();
    let out = cli(
        &["pull", &target, "--json", "--home", &pull_home, "--ca-file", &ca],
        None,
        &[("DOCKER_CONFIG", docker.path())],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(v["pull"]["import"]["head_digest"], head.as_str(), "{v}");
}

#[test]
fn pull_o_writes_the_bundle_export_writes_and_real_0_6_2_wrote() {
    let reg = TestRegistry::start(false);
    let fx = fixture("b-chain3-with-parents.tar.zst");
    let original = zstd::stream::decode_all(&fx.bytes()[..]).expect("fixture decodes");
    let (_s, src) = home();
    import_bytes(&fx.bytes(), &src);
    let head = fx.str_field("head_digest");
    let target = reg.reference("fixtures/b:v1");
    push(&src, &head, &target, &reg.connection(None), &quiet_push(true, false))
        .unwrap_or_else(|e| panic!("push: {e}"));

    let out_dir = tempfile::tempdir().expect("out dir");
    // Plain tar: exactly the bytes real microsandbox 0.6.2 wrote.
    let plain = out_dir.path().join("b.tar");
    let opts = PullOptions { plain_tar: true, ..quiet_pull() };
    let (_h, scratch) = home();
    let pulled = pull(&scratch, &target, &reg.connection(None), &opts, PullTarget::File(&plain))
        .unwrap_or_else(|e| panic!("pull -o: {e}"));
    assert_eq!(pulled.bundle.as_ref().map(|b| b.head.as_str()), Some(head.as_str()));
    assert!(
        fs::read(&plain).expect("pulled tar") == original,
        "pull -o --plain-tar differs from the 0.6.2 tar"
    );
    // zstd: byte for byte what `export` writes for the same snapshots.
    let zst = out_dir.path().join("b.tar.zst");
    pull(&scratch, &target, &reg.connection(None), &quiet_pull(), PullTarget::File(&zst))
        .unwrap_or_else(|e| panic!("pull -o: {e}"));
    let exported = out_dir.path().join("exported.tar.zst");
    let eopts = ExportOptions { with_parents: true, ..Default::default() };
    export(&src, &head, ExportTarget::File(&exported), &eopts, &Progress::hidden())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        fs::read(&zst).expect("pulled") == fs::read(&exported).expect("exported"),
        "pull -o differs from export"
    );
    // And `snapbundle import` takes it, with the reference fixture's verdict.
    let (imp_dir, _) = home();
    let out = support::run_import(&zst, imp_dir.path(), &["--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("import JSON");
    assert_eq!(v["import"]["head_digest"], head.as_str());
    for f in fx.imported_files() {
        let p = imp_dir.path().join(&f.path);
        assert_eq!(support::file_sha256(&p), f.sha256, "{}", f.path);
    }

    // `-o -`: the same bundle on standard output.
    let (o_dir, _) = home();
    let o_home = o_dir.path().display().to_string();
    let out = command([OsStr::new("pull"), OsStr::new(&target), OsStr::new("-o"), OsStr::new("-")])
        .args(["--home", &o_home, "--plain-http", "--username", USER, "--password-stdin", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(format!("{PASSWORD}\n").as_bytes())?;
            c.wait_with_output()
        })
        .expect("pull -o -");
    assert!(out.status.success(), "{}", describe(&out));
    assert!(out.stdout == fs::read(&exported).expect("exported"), "pull -o - differs from export");
}

#[test]
fn pull_o_into_the_snapbundle_cache_it_reads_blobs_from_is_refused_and_nothing_is_written() {
    let (fake, _mini) = Mini::start(Mini::new(None));
    let snaps = chain(1, None, small);
    let (_s, src) = home();
    import_bytes(&bundle(&snaps, None), &src);
    let target = fake.reference("snaps/web:v1");
    push(&src, &snaps[0].digest(), &target, &mini_connection(2), &quiet_push(false, false))
        .unwrap_or_else(|e| panic!("push: {e}"));
    let (dir, scratch) = home();
    let outside = tempfile::tempdir().expect("outside");
    // Through a symbolic link to the home's cache directory.
    std::os::unix::fs::symlink(&scratch.cache, outside.path().join("link")).expect("symlink");
    let asked = fake.requests().len();
    // The blob directory does not exist yet: the pull would create it before writing there.
    for out in [
        scratch.cache.join("snapbundle/blobs/sha256/b.tar.zst"),
        outside.path().join("link/snapbundle/b.tar.zst"),
    ] {
        let r = pull(&scratch, &target, &mini_connection(2), &quiet_pull(), PullTarget::File(&out));
        assert_eq!(code(&r), "usage");
        let message = r.map(|_| ()).expect_err("refused").to_string();
        assert!(message.contains(&out.display().to_string()), "{message}");
    }
    assert_eq!(fake.requests().len(), asked, "nothing fetched");
    let written: Vec<_> = fs::read_dir(dir.path()).expect("home").collect();
    assert!(written.is_empty(), "written: {written:?}");
    // Beside the cache, the same pull writes the bundle.
    let beside = scratch.root.join("b.tar.zst");
    pull(&scratch, &target, &mini_connection(2), &quiet_pull(), PullTarget::File(&beside))
        .unwrap_or_else(|e| panic!("pull -o beside the cache: {e}"));
    assert!(beside.is_file());
}

/// The config blob's `head` is the pusher's word: a config naming another snapshot (here one
/// not in the artifact at all, with an escape in it) does not reach `pull`'s outcome, which
/// reports the head the validation core found in the pulled members, for an import and for `-o`.
#[test]
fn pull_reports_the_verified_head_not_the_one_the_config_names() {
    let (fake, mini) = Mini::start(Mini::new(None));
    let snaps = chain(2, None, small);
    let (_s, src) = home();
    import_bytes(&bundle(&snaps, None), &src);
    let target = fake.reference("snaps/web:v1");
    push(&src, &snaps[1].digest(), &target, &mini_connection(2), &quiet_push(true, false))
        .unwrap_or_else(|e| panic!("push: {e}"));
    // Rewrite the config to name another head, and the tagged manifest to point at it.
    let lie = format!("sha256:{}\u{1b}[2J", "e".repeat(64));
    edit_manifest(&mini, |manifest| {
        let old = manifest["config"]["digest"].as_str().expect("config digest").to_string();
        let mut blobs = mini.blobs.lock().expect("blobs");
        let mut config: Value = serde_json::from_slice(&blobs[&old]).expect("config JSON");
        assert_eq!(config["head"], snaps[1].digest().as_str(), "the pushed config names the head");
        config["head"] = Value::String(lie.clone());
        let bytes = serde_json::to_vec(&config).expect("config bytes");
        let digest = format!(
            "sha256:{}",
            snapbundle_core::hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(&bytes))
        );
        manifest["config"]["digest"] = Value::String(digest.clone());
        manifest["config"]["size"] = Value::from(bytes.len());
        blobs.insert(digest, bytes);
    });
    let (_d, dest) = home();
    let pulled = pull(&dest, &target, &mini_connection(2), &quiet_pull(), PullTarget::Import { dest: None })
        .unwrap_or_else(|e| panic!("pull: {e}"));
    assert_eq!(pulled.head, snaps[1].digest());
    assert_eq!(pulled.import.as_ref().map(|i| i.head_digest.as_str()), Some(snaps[1].digest().as_str()));
    let out = dest.root.join("b.tar.zst");
    let pulled = pull(&dest, &target, &mini_connection(2), &quiet_pull(), PullTarget::File(&out))
        .unwrap_or_else(|e| panic!("pull -o: {e}"));
    assert_eq!(pulled.head, snaps[1].digest());
    assert!(!format!("{pulled:?}").contains(&lie), "the config's head was reported");
}

/// A registry that answers one byte at a time, never slow enough for the read timeout, cannot
/// keep a pull alive: the manifest request runs out of its deadline (here 1 s: `--deadline-secs`),
/// is retried like a dropped connection and the pull gives up with `registry_unreachable`,
/// having read a few bytes of a 4 KiB manifest that would take over an hour to arrive; nothing
/// is written.
#[test]
fn a_registry_trickling_its_answer_runs_into_the_request_deadline() {
    let fake = FakeRegistry::start(|req| {
        if req.path() == "/v2/" {
            return Answer::Full(200, Vec::new(), Vec::new());
        }
        Answer::Trickle { headers: Vec::new(), body: vec![b' '; 4096], every: Duration::from_secs(1) }
    });
    let (dir, scratch) = home();
    let conn = snapbundle::registry::Connection {
        plain_http: true,
        attempts: 2,
        deadline: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let r = pull(
        &scratch,
        &fake.reference("snaps/slow:v1"),
        &conn,
        &quiet_pull(),
        PullTarget::Import { dest: None },
    );
    assert_eq!(code(&r), "registry_unreachable", "{r:?}");
    let message = r.map(|_| ()).expect_err("gave up").to_string();
    assert!(message.contains("gave up after 2 attempts"), "{message}");
    let manifest_requests = fake
        .seen
        .requests
        .lock()
        .expect("requests")
        .iter()
        .filter(|q| q.path().contains("/manifests/"))
        .count();
    assert_eq!(manifest_requests, 2, "one request per attempt");
    assert!(fake.seen.streamed.load(Ordering::SeqCst) < 16, "the deadline did not cut the answer off");
    assert!(tree(dir.path()).is_empty(), "{:?}", tree(dir.path()));
}

/// A zstd layer claiming a blob far larger than its member can compress to (10^15 bytes for a
/// small upper, as a registry that means to fill the disk would) is refused when the manifest is
/// read: no blob is requested and nothing is written to the blob cache.
#[test]
fn a_zstd_blob_larger_than_its_member_can_compress_to_is_refused_before_any_download() {
    let (fake, mini) = Mini::start(Mini::new(None));
    let snaps = chain(1, None, small);
    let (_s, src) = home();
    import_bytes(&bundle(&snaps, None), &src);
    let target = fake.reference("snaps/huge:v1");
    push(&src, &snaps[0].digest(), &target, &mini_connection(2), &quiet_push(false, false))
        .unwrap_or_else(|e| panic!("push: {e}"));
    edit_manifest(&mini, |manifest| {
        let layers = manifest["layers"].as_array_mut().expect("layers");
        let upper = layers
            .iter_mut()
            .find(|l| l["mediaType"].as_str().is_some_and(|m| m.ends_with("+zstd")))
            .expect("a zstd layer");
        upper["size"] = Value::from(1_000_000_000_000_000u64);
    });
    let (dir, scratch) = home();
    let asked = fake.requests().len();
    let r = pull(&scratch, &target, &mini_connection(2), &quiet_pull(), PullTarget::Import { dest: None });
    assert_eq!(code(&r), "invalid_artifact", "{r:?}");
    let message = r.map(|_| ()).expect_err("refused").to_string();
    assert!(message.contains("1000000000000000"), "{message}");
    // (pull's probe of the registry asks for the all-zero digest: not a blob of the artifact)
    let blob_gets = fake.requests()[asked..]
        .iter()
        .filter(|q| q.path().contains("/blobs/sha256:") && !q.path().ends_with(&"0".repeat(64)))
        .count();
    assert_eq!(blob_gets, 0, "a blob was requested");
    assert!(tree(dir.path()).is_empty(), "{:?}", tree(dir.path()));
}

/// Ctrl-C (SIGINT) or SIGTERM during `pull -o FILE` ends the pull with status 128 + the signal
/// and leaves no temporary file beside FILE (the registry here stalls in the middle of the upper's
/// blob, so the pull is surely inside its write when the signal comes).
#[test]
fn an_interrupted_pull_to_a_file_leaves_no_temporary_file() {
    let (fake, mini) = Mini::start(Mini::new(None));
    let target = fake.reference("snaps/int:v1");
    let (_snaps, upper) = push_noise_upper(&target, &mini_connection(2), 1 << 20, 13);
    stall_halfway(&mini, &upper);
    for (signal, status) in [("INT", 130), ("TERM", 143)] {
        let out_dir = tempfile::tempdir().expect("output dir");
        let (_h, scratch) = home();
        let out = out_dir.path().join("pulled.tar.zst");
        let home_arg = scratch.root.display().to_string();
        let (child, temp) = start_pull_to_file(&target, &home_arg, &out);
        let killed = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        let done = child.wait_with_output().expect("pull ends");
        assert_eq!(done.status.code(), Some(status), "SIG{signal}: {}", describe(&done));
        assert!(!temp.exists(), "SIG{signal} left {}", temp.display());
        let left: Vec<_> = fs::read_dir(out_dir.path()).expect("list").collect();
        assert!(left.is_empty(), "SIG{signal} left {left:?}");
    }
}

/// Once the import has failed (here on a manifest that is not JSON, the artifact's first
/// member), the downloads still in flight are dropped: the pull does not wait for the upper's
/// blob, which the registry stalls halfway for good (the request deadline, 10 minutes here, would
/// end it otherwise). The failure is the import's, and nothing is promoted.
#[test]
fn a_failed_import_cancels_the_downloads_in_flight() {
    let (fake, mini) = Mini::start(Mini::new(None));
    let target = fake.reference("snaps/cancel:v1");
    let (_snaps, upper) = push_noise_upper(&target, &mini_connection(2), 1 << 20, 14);
    // The manifest member becomes bytes that are not JSON (its layer consistent with them).
    let bad = b"{ not json".to_vec();
    let bad_digest =
        format!("sha256:{}", snapbundle_core::hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(&bad)));
    edit_manifest(&mini, |manifest| {
        let first = &mut manifest["layers"][0];
        assert!(first["annotations"]["dev.snapbundle.member.path"]
            .as_str()
            .is_some_and(|p| p.ends_with("manifest.json")));
        first["digest"] = Value::String(bad_digest.clone());
        first["size"] = Value::from(bad.len());
        first["annotations"]["dev.snapbundle.member.sha256"] = Value::String(bad_digest.clone());
        first["annotations"]["dev.snapbundle.member.size"] = Value::String(bad.len().to_string());
    });
    mini.blobs.lock().expect("blobs").insert(bad_digest, bad);
    stall_halfway(&mini, &upper);
    let (dir, scratch) = home();
    let conn = snapbundle::registry::Connection {
        deadline: Some(Duration::from_secs(600)),
        jobs: 2,
        ..mini_connection(1)
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = pull(&scratch, &target, &conn, &quiet_pull(), PullTarget::Import { dest: None });
        let _ = done_tx.send(r.map(|_| ()).map_err(|e| (e.code().to_string(), e.to_string())));
    });
    // Liveness, not speed: the pull ends in well under a second once cancelled, and only after
    // the 600 s deadline if the slow download is waited for.
    let r = done_rx.recv_timeout(Duration::from_secs(120)).expect("the pull waited for the stalled download");
    let (code, message) = r.expect_err("the import fails");
    assert_eq!(code, "manifest_parse", "{message}");
    assert!(tree(&dir.path().join("snapshots")).is_empty(), "something was promoted");
}

/// `pull -o FILE` without `--home` or `$MSB_HOME` writes the bundle and creates no
/// `~/.microsandbox` (its blob cache goes to snapbundle's cache directory, and it records no
/// `seen` repositories); with `--home` it uses that home's cache, still recording nothing.
#[test]
fn pull_to_a_file_without_a_home_touches_no_store() {
    let (fake, _mini) = Mini::start(Mini::new(None));
    let snaps = chain(1, None, small);
    let (_s, src) = home();
    import_bytes(&bundle(&snaps, None), &src);
    let target = fake.reference("snaps/file:v1");
    push(&src, &snaps[0].digest(), &target, &mini_connection(2), &quiet_push(false, false))
        .unwrap_or_else(|e| panic!("push: {e}"));
    let user = tempfile::tempdir().expect("a user's home directory");
    let out = user.path().join("web.tar.zst");
    let done = command(["pull", &target, "--plain-http", "-q", "-o"])
        .arg(&out)
        .env("HOME", user.path())
        .env_remove("XDG_CACHE_HOME")
        .env_remove("SNAPBUNDLE_CACHE_DIR")
        .output()
        .expect("pull -o");
    assert!(done.status.success(), "{}", describe(&done));
    assert!(out.is_file());
    assert!(!user.path().join(".microsandbox").exists(), "pull -o created a microsandbox home");
    let left: Vec<String> = tree(user.path()).keys().filter(|k| !k.starts_with(".cache")).cloned().collect();
    assert_eq!(left, vec!["web.tar.zst".to_string()], "{left:?}");
    // With a home named, its cache serves the pull, and no `seen` record is left.
    let (dir, _) = home();
    let out2 = user.path().join("web2.tar.zst");
    let done = command(["pull", &target, "--plain-http", "-q", "--home"])
        .arg(dir.path())
        .arg("-o")
        .arg(&out2)
        .output()
        .expect("pull -o --home");
    assert!(done.status.success(), "{}", describe(&done));
    assert!(out2.is_file());
    assert!(!dir.path().join("cache/snapbundle/seen").exists(), "pull -o recorded seen repositories");
}

/// One snapshot whose upper is `size` bytes of noise (`seed`), imported into a scratch home and
/// pushed to `target`; the chain and the upper's blob digest.
fn push_noise_upper(
    target: &str,
    conn: &snapbundle::registry::Connection,
    size: usize,
    seed: u64,
) -> (Vec<Snapshot>, String) {
    let snaps = chain(1, None, |_| (support::noise(size, seed), Integrity::Sha256));
    let (_s, src) = home();
    import_bytes(&bundle(&snaps, None), &src);
    let pushed = push(&src, &snaps[0].digest(), target, conn, &quiet_push(false, false))
        .unwrap_or_else(|e| panic!("push: {e}"));
    let upper = pushed.blobs.iter().find(|b| b.member == snaps[0].upper_path()).expect("upper blob");
    (snaps, upper.digest.clone())
}

/// Where a pull into `home` keeps the partial download of blob `digest` (its directory made).
fn part_file(home: &Home, digest: &str) -> std::path::PathBuf {
    let blobs = home.cache.join("snapbundle/blobs/sha256");
    fs::create_dir_all(&blobs).expect("blob cache");
    blobs.join(format!("{}.part", digest.trim_start_matches("sha256:")))
}

/// Starts `snapbundle pull TARGET --home HOME -o OUT` and waits (30 s at most) until its
/// temporary file beside OUT exists; the process and that file.
// The child is returned to the caller, who waits for it (or killed and waited for here).
#[allow(clippy::zombie_processes)]
fn start_pull_to_file(target: &str, home: &str, out: &Path) -> (std::process::Child, std::path::PathBuf) {
    let mut child = command(["pull", target, "--plain-http", "-q", "--home", home, "-o"])
        .arg(out)
        .spawn()
        .expect("start pull");
    let dir = out.parent().expect("output directory");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = fs::read_dir(dir)
            .expect("list")
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().ends_with(".snapbundle-tmp"));
        if let Some(e) = found {
            return (child, e.path());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the pull never started writing");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Edits, as JSON, the manifest `mini` serves for the tag `v1` (what a hostile registry serves).
fn edit_manifest(mini: &Mini, edit: impl FnOnce(&mut Value)) {
    let mut manifests = mini.manifests.lock().expect("manifests");
    let mut manifest: Value = serde_json::from_slice(&manifests["v1"]).expect("manifest JSON");
    edit(&mut manifest);
    manifests.insert("v1".into(), serde_json::to_vec(&manifest).expect("manifest bytes"));
}

/// Makes `mini` answer every GET of blob `digest` with its first half, then stall for good.
fn stall_halfway(mini: &Mini, digest: &str) {
    let stored = mini.blobs.lock().expect("blobs")[digest].clone();
    let (digest, never) = (digest.to_string(), Arc::new(AtomicBool::new(false)));
    mini.set_fault(move |req| {
        (req.method == "GET" && req.path().ends_with(&digest)).then(|| Answer::Partial {
            headers: Vec::new(),
            body: stored.clone(),
            send: stored.len() / 2,
            release: Some(never.clone()),
        })
    });
}

/// When the registry's challenge names a token endpoint on another host than the registry's,
/// the credentials go there (as Docker Hub needs) and the outcome says where, in JSON and text;
/// a token endpoint on the registry's own host is not mentioned. (The registry is reached here
/// as `localhost`, its token endpoint is named as `127.0.0.1`.)
#[test]
fn credentials_sent_to_another_host_are_reported() {
    let (fake, _mini) = Mini::start(Mini::new(Some("tok-elsewhere")));
    let snaps = chain(1, None, small);
    let (_s, src) = home();
    import_bytes(&bundle(&snaps, None), &src);
    let same = fake.reference("snaps/auth:v1");
    let pushed = push(&src, &snaps[0].digest(), &same, &mini_connection(2), &quiet_push(false, false))
        .unwrap_or_else(|e| panic!("push: {e}"));
    assert_eq!(pushed.credentials_sent_to, None);
    let elsewhere = format!("localhost:{}/snaps/auth:v1", fake.port);
    let (_d, dest) = home();
    let pulled =
        pull(&dest, &elsewhere, &mini_connection(2), &quiet_pull(), PullTarget::Import { dest: None })
            .unwrap_or_else(|e| panic!("pull: {e}"));
    let realm = format!("127.0.0.1:{}", fake.port);
    assert_eq!(pulled.credentials_sent_to.as_deref(), Some(realm.as_str()));
    let text = snapbundle::render::pull(&pulled, None);
    assert!(
        text.contains(&format!("credentials sent to the registry's token endpoint at {realm}")),
        "{text}"
    );
    let json = serde_json::to_value(&pulled).expect("JSON");
    assert_eq!(json["credentials_sent_to"], realm.as_str());
}

/// The blob cache has a quota: a pull whose downloads would make it hold more than
/// `max_cache_bytes` (`--blob-cache-max-gib`) is refused before any blob is fetched, saying what
/// it needs; nothing is written. Within the quota the same pull goes through.
#[test]
fn a_pull_over_the_blob_cache_quota_is_refused_before_any_download() {
    let (fake, _mini) = Mini::start(Mini::new(None));
    let target = fake.reference("snaps/quota:v1");
    let (_snaps, _upper) = push_noise_upper(&target, &mini_connection(2), 1 << 20, 15);
    let (dir, scratch) = home();
    let asked = fake.requests().len();
    let tight = PullOptions { max_cache_bytes: Some(64 << 10), ..quiet_pull() };
    let r = pull(&scratch, &target, &mini_connection(2), &tight, PullTarget::Import { dest: None });
    assert_eq!(code(&r), "io", "{r:?}");
    let message = r.map(|_| ()).expect_err("refused").to_string();
    assert!(message.contains("over its quota of 65536 bytes"), "{message}");
    let blob_gets = fake.requests()[asked..]
        .iter()
        .filter(|q| q.path().contains("/blobs/sha256:") && !q.path().ends_with(&"0".repeat(64)))
        .filter(|q| q.method == "GET")
        .count();
    assert_eq!(blob_gets, 1, "only the config blob is fetched (the layers' sizes come from the manifest)");
    assert!(tree(dir.path()).is_empty(), "{:?}", tree(dir.path()));
    let roomy = PullOptions { max_cache_bytes: Some(64 << 20), ..quiet_pull() };
    pull(&scratch, &target, &mini_connection(2), &roomy, PullTarget::Import { dest: None })
        .unwrap_or_else(|e| panic!("pull within the quota: {e}"));
}

/// A `pull -o FILE` killed outright (SIGKILL: no handler runs) leaves its temporary file beside
/// FILE; `snapbundle gc` on the same home finds it through the home's output journal and removes
/// it (a running pull's is left alone), and says so in `--json`.
#[test]
fn gc_removes_the_temporary_output_of_a_killed_pull() {
    let (fake, mini) = Mini::start(Mini::new(None));
    let target = fake.reference("snaps/killed:v1");
    let (_snaps, upper) = push_noise_upper(&target, &mini_connection(2), 1 << 20, 16);
    stall_halfway(&mini, &upper);
    let out_dir = tempfile::tempdir().expect("output dir");
    let (_h, scratch) = home();
    let home_arg = scratch.root.display().to_string();
    let out = out_dir.path().join("pulled.tar.zst");
    let (mut child, temp) = start_pull_to_file(&target, &home_arg, &out);
    let gc = |what: &str| {
        let done = command(["gc", "--json", "--home", &home_arg]).output().expect("gc");
        assert!(done.status.success(), "{what}: {}", describe(&done));
        let v: Value = serde_json::from_slice(&done.stdout).expect("gc JSON");
        v["output_temporaries_removed"].as_u64().expect("count")
    };
    assert_eq!(gc("while the pull runs"), 0);
    assert!(temp.exists(), "gc removed a running pull's file");
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(temp.exists(), "nothing removes it without gc");
    assert_eq!(gc("after the kill"), 1);
    assert!(!temp.exists(), "gc left {}", temp.display());
    let left: Vec<_> = fs::read_dir(out_dir.path()).expect("list").collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(gc("again"), 0);
}

/// Text a registry controls reaches the terminal without its control characters: an error body
/// and a token endpoint's refusal carrying ESC, BEL and CR come out as escapes, through the CLI.
#[test]
fn registry_text_with_terminal_escapes_is_shown_escaped() {
    let fake = FakeRegistry::start(|req| {
        if req.path() == "/token" {
            return Answer::Full(403, Vec::new(), b"denied\x1b]0;pwned\x07\r".to_vec());
        }
        if req.path() == "/v2/" && req.header("authorization").is_none() {
            let host = req.header("host").unwrap_or("127.0.0.1");
            let challenge = format!(r#"Bearer realm="http://{host}/token",service="fake""#);
            return Answer::Full(401, vec![header("WWW-Authenticate", &challenge)], Vec::new());
        }
        Answer::Full(400, Vec::new(), b"bad\x1b[2J\x07request".to_vec())
    });
    let empty_docker = tempfile::tempdir().expect("docker config dir");
    let env = [("DOCKER_CONFIG", empty_docker.path())];
    let (dir, _) = home();
    let home_arg = dir.path().display().to_string();
    let target = fake.reference("snaps/esc:v1");
    let args = ["pull", &target, "--plain-http", "--home", &home_arg, "-u", USER, "--password-stdin"];
    let out = cli(&args, Some("pw\n"), &env);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains('\x1b') && !stderr.contains('\x07'), "raw control characters: {stderr:?}");
    assert!(stderr.contains("denied\\u{1b}]0;pwned\\u{7}"), "{stderr:?}");
    // Anonymous: no token is asked for; the manifest request's error body is shown.
    let fake_anon = FakeRegistry::start(|req| {
        if req.path().contains("/manifests/") {
            return Answer::Full(400, Vec::new(), b"bad\x1b[2J\x07request".to_vec());
        }
        Answer::Full(404, Vec::new(), Vec::new())
    });
    let target = fake_anon.reference("snaps/esc:v1");
    let out = cli(&["pull", &target, "--plain-http", "--home", &home_arg], None, &env);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains('\x1b') && !stderr.contains('\x07'), "raw control characters: {stderr:?}");
    assert!(stderr.contains("bad\\u{1b}[2J\\u{7}request"), "{stderr:?}");
    assert!(store(dir.path()).is_empty(), "{:?}", store(dir.path()));
}

/// Tar header annotations a registry sets out of range (a uid of 2^63+1234, a mode of
/// 4294967295) are refused when the manifest is read, naming the annotation and its range,
/// instead of being truncated into the headers `pull -o --plain-tar` writes.
#[test]
fn out_of_range_tar_annotations_are_refused_naming_them() {
    for (key, value) in
        [("dev.snapbundle.tar.uid", "9223372036854777042"), ("dev.snapbundle.tar.mode", "4294967295")]
    {
        let (fake, mini) = Mini::start(Mini::new(None));
        let snaps = chain(1, None, small);
        let (_s, src) = home();
        import_bytes(&bundle(&snaps, None), &src);
        let target = fake.reference("snaps/range:v1");
        push(&src, &snaps[0].digest(), &target, &mini_connection(2), &quiet_push(false, false))
            .unwrap_or_else(|e| panic!("push: {e}"));
        edit_manifest(&mini, |manifest| {
            manifest["layers"][0]["annotations"][key] = Value::String(value.into());
        });
        let out_dir = tempfile::tempdir().expect("out dir");
        let out = out_dir.path().join("b.tar");
        let (_h, scratch) = home();
        let opts = PullOptions { plain_tar: true, ..quiet_pull() };
        let r = pull(&scratch, &target, &mini_connection(2), &opts, PullTarget::File(&out));
        assert_eq!(code(&r), "invalid_artifact", "{r:?}");
        let message = r.map(|_| ()).expect_err("refused").to_string();
        assert!(
            message.contains(key) && message.contains("out of range") && message.contains(value),
            "{message}"
        );
        let left: Vec<_> = fs::read_dir(out_dir.path()).expect("list").collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

fn header(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

fn plain(credentials: snapbundle::registry::Credentials) -> snapbundle::registry::Connection {
    snapbundle::registry::Connection { plain_http: true, credentials, ..Default::default() }
}

/// Pulls `reference` into `h` expecting a failure: the result and the error's message.
fn failed_pull(
    h: &Home,
    reference: &str,
    conn: &snapbundle::registry::Connection,
) -> (Result<snapbundle::registry::PullOutcome, HostError>, String) {
    let r = pull(h, reference, conn, &quiet_pull(), PullTarget::Import { dest: None });
    let message = match &r {
        Err(e) => e.to_string(),
        Ok(o) => panic!("pulled {reference}: {o:?}"),
    };
    (r, message)
}

#[test]
fn a_registry_serving_an_endless_manifest_is_cut_off_at_the_limit_and_nothing_is_written() {
    // Once without a length (the body ends when the connection does), once declaring 1 GiB.
    for declared in [false, true] {
        let prefix = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"x":""#;
        let fake = FakeRegistry::start(move |req| match (req.method.as_str(), req.path()) {
            ("GET", "/v2/") => Answer::Full(200, vec![], b"{}".to_vec()),
            (_, p) if p.contains("/manifests/") => Answer::Endless {
                status: 200,
                headers: vec![header("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
                prefix: prefix.to_vec(),
                total: 1 << 30,
                declare_length: declared,
            },
            _ => Answer::Full(
                404,
                vec![],
                br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}"#.to_vec(),
            ),
        });
        let (dir, h) = home();
        let started = Instant::now();
        let (r, message) = failed_pull(&h, &fake.reference("snaps/web:v1"), &plain(Default::default()));
        assert_eq!(code(&r), "registry_error", "{message}");
        assert!(message.contains("larger than the limit of 4194304 bytes"), "{message}");
        // Not even the blob cache (which `tree` leaves out).
        let written: Vec<_> = fs::read_dir(dir.path()).expect("home").collect();
        assert!(written.is_empty(), "written: {written:?}");
        // The client hung up: the server's writes fail long before the whole answer is out.
        let streamed = fake.wait_hung_up();
        // 4 MiB read at most, plus what loopback socket buffers held when the client hung up.
        assert!(streamed < 32 << 20, "the server wrote {streamed} bytes (declared length: {declared})");
        let manifest_gets = fake.requests().iter().filter(|q| q.path().contains("/manifests/")).count();
        assert_eq!(manifest_gets, 1, "a refused manifest is not fetched again");
        eprintln!(
            "declared length {declared}: server wrote {} KiB before the hang-up, pull failed in {:?}",
            streamed >> 10,
            started.elapsed()
        );
    }
}

/// A registry that wants bearer tokens: `/v2/…` without `Authorization: Bearer <TOKEN>` is
/// answered 401 with a `WWW-Authenticate: Bearer realm=…,service=…,scope=…` challenge; the
/// token endpoint `/token` hands out the token for the test's basic credentials only. What it
/// serves (manifests by tag, blobs) it reads from the storage of `real` (a distribution
/// registry something was pushed to).
const TOKEN: &str = "fake-bearer-token-7";

fn bearer_registry(real: &TestRegistry) -> FakeRegistry {
    served_from(real, true, None)
}

/// How [`served_from`] misbehaves for one blob.
#[derive(Clone)]
enum Trouble {
    /// Half the bytes, then the connection closes.
    Cut(String),
    /// Half the bytes, the rest when the flag is set.
    Stall(String, Arc<AtomicBool>),
    /// 400 with an endless error body.
    EndlessError(String),
}

fn served_from(real: &TestRegistry, bearer: bool, trouble: Option<Trouble>) -> FakeRegistry {
    let storage = real.dir.path().join("storage/docker/registry/v2");
    let basic = format!("Basic {}", base64_encode(format!("{USER}:{PASSWORD}").as_bytes()));
    let blob = move |digest: &str| -> Option<Vec<u8>> {
        let hex = digest.strip_prefix("sha256:")?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        fs::read(storage.join("blobs/sha256").join(&hex[..2]).join(hex).join("data")).ok()
    };
    let tags = real.dir.path().join("storage/docker/registry/v2/repositories");
    FakeRegistry::start(move |req| {
        let host = req.header("host").unwrap_or("127.0.0.1");
        let auth = req.header("authorization").unwrap_or("");
        let unauthorized = |challenge: bool| {
            let mut h = vec![header("Content-Type", "application/json")];
            if challenge {
                h.push(header(
                    "WWW-Authenticate",
                    &format!(r#"Bearer realm="http://{host}/token",service="fake-registry",scope="repository:snaps/web:pull""#),
                ));
            }
            Answer::Full(
                401,
                h,
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.to_vec(),
            )
        };
        let path = req.path();
        if path == "/token" {
            let scoped = req.target.contains("scope=repository%3Asnaps%2Fweb%3Apull")
                || req.target.contains("scope=repository:snaps/web:pull");
            if auth == basic && scoped && req.target.contains("service=fake-registry") {
                let body = format!(r#"{{"token":"{TOKEN}","access_token":"{TOKEN}","expires_in":300}}"#);
                return Answer::Full(
                    200,
                    vec![header("Content-Type", "application/json")],
                    body.into_bytes(),
                );
            }
            return unauthorized(false);
        }
        if bearer && auth != format!("Bearer {TOKEN}") {
            return unauthorized(true);
        }
        let not_found = || {
            Answer::Full(404, vec![], br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}"#.to_vec())
        };
        if path == "/v2/" {
            return Answer::Full(200, vec![], b"{}".to_vec());
        }
        if let Some(tag) = path.strip_prefix("/v2/snaps/web/manifests/") {
            let link = tags.join("snaps/web/_manifests/tags").join(tag).join("current/link");
            let Some((digest, bytes)) =
                fs::read_to_string(link).ok().and_then(|d| Some((d.clone(), blob(d.trim())?)))
            else {
                return not_found();
            };
            let h = vec![
                header("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
                header("Docker-Content-Digest", digest.trim()),
            ];
            return Answer::Full(200, h, bytes);
        }
        if let Some(digest) = path.strip_prefix("/v2/snaps/web/blobs/") {
            let headers = vec![header("Docker-Content-Digest", digest)];
            let Some(body) = blob(digest) else { return not_found() };
            let send = body.len() / 2;
            return match &trouble {
                Some(Trouble::Cut(d)) if d == digest && req.method == "GET" => {
                    Answer::Partial { headers, body, send, release: None }
                }
                Some(Trouble::Stall(d, flag)) if d == digest && req.method == "GET" => {
                    Answer::Partial { headers, body, send, release: Some(flag.clone()) }
                }
                Some(Trouble::EndlessError(d)) if d == digest && req.method == "GET" => Answer::Endless {
                    status: 400,
                    headers: vec![header("Content-Type", "application/json")],
                    prefix: br#"{"errors":[{"code":"BLOB_UNKNOWN","message":""#.to_vec(),
                    total: 1 << 30,
                    declare_length: false,
                },
                _ => Answer::Full(200, headers, body),
            };
        }
        not_found()
    })
}

#[test]
fn bearer_tokens_from_the_token_endpoint_authenticate_a_pull_and_wrong_credentials_fail_clearly() {
    let real = TestRegistry::start(true);
    let snaps = chain(2, None, small);
    let tar = bundle(&snaps, None);
    let (_s, src) = home();
    import_bytes(&tar, &src);
    let head = snaps[1].digest();
    push(&src, &head, &real.reference("snaps/web:v1"), &real.connection(None), &quiet_push(true, false))
        .unwrap_or_else(|e| panic!("push to the real registry: {e}"));
    let fake = bearer_registry(&real);
    let target = fake.reference("snaps/web:v1");
    let (_f, filed) = home();
    import_bytes(&tar, &filed);

    // The library, with basic credentials traded for the token.
    let creds = snapbundle::registry::Credentials::Basic { username: USER.into(), password: PASSWORD.into() };
    let (_p, pulled) = home();
    let out = pull(&pulled, &target, &plain(creds), &quiet_pull(), PullTarget::Import { dest: None })
        .unwrap_or_else(|e| panic!("pull with a bearer token: {e}"));
    assert_eq!(out.import.expect("an import").head_digest, head);
    support::assert_tree_eq(&store(&filed.root), &store(&pulled.root), "bearer pull vs file import");
    let requests = fake.requests();
    let token_requests = requests.iter().filter(|q| q.path() == "/token").count();
    assert_eq!(token_requests, 1, "{requests:#?}");
    let bearer = format!("Bearer {TOKEN}");
    let manifest = requests.iter().find(|q| q.path().contains("/manifests/")).expect("a manifest request");
    assert_eq!(manifest.header("authorization"), Some(bearer.as_str()));
    assert_eq!(manifest.header("accept"), Some("application/vnd.oci.image.manifest.v1+json"));
    let blob_gets = requests.iter().filter(|q| q.method == "GET" && q.path().contains("/blobs/"));
    assert!(blob_gets.clone().count() >= 4, "{requests:#?}");
    assert!(blob_gets.clone().all(|q| q.header("authorization") == Some(bearer.as_str())), "{requests:#?}");

    // The command line: --username with --password-stdin, then the Docker configuration.
    let empty_docker = tempfile::tempdir().expect("docker config dir");
    let (cli_dir, _) = home();
    let cli_home = cli_dir.path().display().to_string();
    let out = cli(
        &[
            "pull",
            &target,
            "--json",
            "--home",
            &cli_home,
            "--plain-http",
            "--username",
            USER,
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
        &[("DOCKER_CONFIG", empty_docker.path())],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(v["pull"]["import"]["head_digest"], head.as_str(), "{v}");

    let docker = tempfile::tempdir().expect("docker config dir");
    let auth = base64_encode(format!("{USER}:{PASSWORD}").as_bytes());
    let key = format!("127.0.0.1:{}", fake.port);
    fs::write(docker.path().join("config.json"), format!(r#"{{"auths":{{"{key}":{{"auth":"{auth}"}}}}}}"#))
        .expect("write docker config");
    let (cfg_dir, _) = home();
    let cfg_home = cfg_dir.path().display().to_string();
    let out = cli(
        &["pull", &target, "--json", "--home", &cfg_home, "--plain-http"],
        None,
        &[("DOCKER_CONFIG", docker.path())],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(v["pull"]["import"]["head_digest"], head.as_str(), "{v}");

    // Wrong password: the token endpoint refuses; a clear error, at once, nothing written.
    let before = fake.requests().len();
    let (bad_dir, _) = home();
    let bad_home = bad_dir.path().display().to_string();
    let out = cli(
        &[
            "pull",
            &target,
            "--json",
            "--home",
            &bad_home,
            "--plain-http",
            "--username",
            USER,
            "--password-stdin",
        ],
        Some("wrong-password\n"),
        &[("DOCKER_CONFIG", empty_docker.path())],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON error");
    assert_eq!(v["error"]["code"], "registry_auth", "{v}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("access denied") && stderr.contains("--password-stdin"), "{stderr}");
    let sent = fake.requests().len() - before;
    assert!(sent <= 3, "{sent} requests for a refused login: {:#?}", fake.requests());
    assert!(tree(bad_dir.path()).is_empty(), "{:?}", tree(bad_dir.path()));
}

/// The pull blob cache's files: name to size.
fn cache_files(root: &Path) -> std::collections::BTreeMap<String, u64> {
    let dir = root.join("cache/snapbundle/blobs/sha256");
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().map_or(0, |m| m.len())))
                .collect()
        })
        .unwrap_or_default()
}

fn gc_json(root: &Path) -> Value {
    support::run_gc(root)["pull_cache"].clone()
}

#[test]
fn gc_leaves_a_running_pull_alone_and_empties_the_blob_cache_a_failed_pull_left() {
    let real = TestRegistry::start(true);
    let snaps = chain(2, None, small);
    let tar = bundle(&snaps, None);
    let (_s, src) = home();
    import_bytes(&tar, &src);
    let head = snaps[1].digest();
    let pushed =
        push(&src, &head, &real.reference("snaps/web:v1"), &real.connection(None), &quiet_push(true, false))
            .unwrap_or_else(|e| panic!("push: {e}"));
    // The blob to misbehave with: the largest (an upper).
    let big = pushed.blobs.iter().filter(|b| b.member != "config").max_by_key(|b| b.size).expect("blobs");
    assert!(big.size >= 2, "{big:?}");
    let (big_digest, big_size) = (big.digest.clone(), big.size);
    let part_name = format!("{}.part", big_digest.trim_start_matches("sha256:"));
    let (_f, filed) = home();
    import_bytes(&tar, &filed);

    // 1. A pull in progress (stalled half-way through one blob): gc leaves its files alone.
    let release = Arc::new(AtomicBool::new(false));
    let fake = served_from(&real, false, Some(Trouble::Stall(big_digest.clone(), release.clone())));
    let (pull_dir, pulled) = home();
    let target = fake.reference("snaps/web:v1");
    let running = {
        let (pulled, target) = (pulled.clone(), target.clone());
        std::thread::spawn(move || {
            pull(
                &pulled,
                &target,
                &plain(Default::default()),
                &quiet_pull(),
                PullTarget::Import { dest: None },
            )
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while cache_files(pull_dir.path()).get(&part_name).is_none_or(|n| *n == 0) {
        assert!(Instant::now() < deadline, "the pull never started the stalled blob");
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = cache_files(pull_dir.path());
    let v = gc_json(pull_dir.path());
    assert_eq!(v["in_use"], true, "{v}");
    assert_eq!((v["blobs_removed"].as_u64(), v["parts_removed"].as_u64()), (Some(0), Some(0)), "{v}");
    let text = support::command([OsStr::new("gc"), OsStr::new("--home"), pull_dir.path().as_os_str()])
        .output()
        .expect("gc");
    assert!(String::from_utf8_lossy(&text.stdout).contains("a pull is running"), "{}", describe(&text));
    let after = cache_files(pull_dir.path());
    // (The running pull may have finished another blob meanwhile: `<hex>.part` became `<hex>`.)
    let kept =
        |k: &String| after.contains_key(k) || k.strip_suffix(".part").is_some_and(|h| after.contains_key(h));
    assert!(before.keys().all(kept), "gc removed files of a running pull: {before:?} -> {after:?}");
    release.store(true, Ordering::SeqCst);
    let out = running.join().expect("pull thread").unwrap_or_else(|e| panic!("the stalled pull: {e}"));
    assert_eq!(out.import.expect("an import").head_digest, head);
    support::assert_tree_eq(&store(&filed.root), &store(&pulled.root), "the pull gc left alone");

    // 2. A pull whose connection is cut in the middle of a blob fails and keeps what it got
    //    (verified blobs and the partial one, for a resume); gc removes them all and counts them.
    let cut = served_from(&real, false, Some(Trouble::Cut(big_digest.clone())));
    let (dir, failed) = home();
    let r = pull(
        &failed,
        &cut.reference("snaps/web:v1"),
        &plain(Default::default()),
        &PullOptions { quiet: true, ..Default::default() },
        PullTarget::Import { dest: None },
    );
    assert_eq!(code(&r), "registry_unreachable");
    let left = cache_files(dir.path());
    let parts = left.keys().filter(|k| k.ends_with(".part")).count();
    let blobs = left.len() - parts;
    assert_eq!(left.get(&part_name), Some(&(big_size / 2)), "{left:?}");
    // (Other downloads in flight when the cut one failed may have left theirs too.)
    assert!(parts >= 1, "{left:?}");
    assert!(blobs >= 1, "{left:?}");
    let bytes: u64 = left.values().sum();
    let v = gc_json(dir.path());
    assert_eq!(v["in_use"], false, "{v}");
    assert_eq!(v["blobs_removed"].as_u64(), Some(blobs as u64), "{v}");
    assert_eq!(v["parts_removed"].as_u64(), Some(parts as u64), "{v}");
    assert_eq!(v["bytes_removed"].as_u64(), Some(bytes), "{v}");
    assert!(!dir.path().join("cache/snapbundle/blobs").exists(), "the empty cache directories stay");
    assert!(store(dir.path()).is_empty(), "{:?}", store(dir.path()));

    // Nothing left: gc says so in its text.
    let text = support::command([OsStr::new("gc"), OsStr::new("--home"), dir.path().as_os_str()])
        .output()
        .expect("gc");
    assert!(text.status.success(), "{}", describe(&text));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("removed 0 pulled blobs and 0 partial downloads"), "{stdout}");
}

#[test]
fn an_endless_error_body_for_a_blob_is_cut_off_and_the_pull_fails_naming_the_blob() {
    let real = TestRegistry::start(true);
    let snaps = chain(1, None, small);
    let (_s, src) = home();
    import_bytes(&bundle(&snaps, None), &src);
    let head = snaps[0].digest();
    let pushed =
        push(&src, &head, &real.reference("snaps/web:v1"), &real.connection(None), &quiet_push(false, false))
            .unwrap_or_else(|e| panic!("push: {e}"));
    let blob = pushed.blobs.iter().find(|b| b.member != "config").expect("a layer").digest.clone();
    let fake = served_from(&real, false, Some(Trouble::EndlessError(blob.clone())));
    let (dir, h) = home();
    let (r, message) = failed_pull(&h, &fake.reference("snaps/web:v1"), &plain(Default::default()));
    assert_eq!(code(&r), "registry_error", "{message}");
    assert!(message.contains(&blob) && message.contains("400"), "{message}");
    // The client hung up: the server's writes fail long before the whole answer is out.
    let streamed = fake.wait_hung_up();
    assert!(streamed < 32 << 20, "the server wrote {streamed} bytes of error body");
    assert!(store(dir.path()).is_empty(), "{:?}", store(dir.path()));
}

#[test]
fn an_endless_token_endpoint_answer_is_cut_off_at_the_limit() {
    let fake = FakeRegistry::start(|req| {
        if req.path() == "/token" {
            return Answer::Endless {
                status: 200,
                headers: vec![header("Content-Type", "application/json")],
                prefix: br#"{"token":""#.to_vec(),
                total: 1 << 30,
                declare_length: false,
            };
        }
        let host = req.header("host").unwrap_or("127.0.0.1");
        let challenge = format!(r#"Bearer realm="http://{host}/token",service="fake-registry""#);
        Answer::Full(401, vec![header("WWW-Authenticate", &challenge)], b"{}".to_vec())
    });
    let (dir, h) = home();
    let creds = snapbundle::registry::Credentials::Basic { username: USER.into(), password: PASSWORD.into() };
    let (r, message) = failed_pull(&h, &fake.reference("snaps/web:v1"), &plain(creds));
    assert_eq!(code(&r), "registry_error", "{message}");
    assert!(message.contains("larger than the limit of 65536 bytes"), "{message}");
    // The client hung up: the server's writes fail long before the whole answer is out.
    let streamed = fake.wait_hung_up();
    assert!(streamed < 32 << 20, "the server wrote {streamed} bytes of token answer");
    let tokens = fake.requests().iter().filter(|q| q.path() == "/token").count();
    assert_eq!(tokens, 1, "a refused token answer is not fetched again");
    let written: Vec<_> = fs::read_dir(dir.path()).expect("home").collect();
    assert!(written.is_empty(), "written: {written:?}");
}

fn mini_connection(attempts: u32) -> snapbundle::registry::Connection {
    snapbundle::registry::Connection {
        plain_http: true,
        credentials: snapbundle::registry::Credentials::Basic {
            username: USER.into(),
            password: PASSWORD.into(),
        },
        jobs: 1,
        attempts,
        ..Default::default()
    }
}

/// Pulls `target` from the mini registry into a fresh home and checks the store equals a
/// file import of `snaps`.
fn assert_pulls_like_a_file_import(
    target: &str,
    conn: &snapbundle::registry::Connection,
    snaps: &[Snapshot],
) {
    let (_p, pulled) = home();
    pull(&pulled, target, conn, &quiet_pull(), PullTarget::Import { dest: None })
        .unwrap_or_else(|e| panic!("pull: {e}"));
    let (_f, filed) = home();
    import_bytes(&bundle(snaps, None), &filed);
    support::assert_tree_eq(&store(&filed.root), &store(&pulled.root), "pulled from the mini registry");
}

#[test]
fn a_push_trades_credentials_for_a_push_scoped_bearer_token_and_sends_it_with_every_request() {
    let (fake, mini) = Mini::start(Mini::new(Some("tok-push")));
    let snaps = chain(2, None, small);
    let (_s, src) = home();
    import_bytes(&bundle(&snaps, None), &src);
    let target = fake.reference("snaps/web:v1");
    let pushed = push(&src, &snaps[1].digest(), &target, &mini_connection(4), &quiet_push(true, false))
        .unwrap_or_else(|e| panic!("push: {e}"));
    assert_eq!(pushed.uploaded, 5, "{pushed:#?}");
    assert_eq!(
        mini.scopes.lock().expect("scopes").first().map(String::as_str),
        Some("repository:snaps/web:pull,push")
    );
    assert_eq!(mini.issued.load(Ordering::SeqCst), 1, "one token for the whole push");
    let requests = fake.requests();
    let repo_requests: Vec<_> = requests.iter().filter(|r| r.path().starts_with("/v2/snaps/web/")).collect();
    assert!(repo_requests.iter().any(|r| r.method == "PUT" && r.path() == "/v2/snaps/web/manifests/v1"));
    assert!(
        repo_requests.iter().all(|r| r.header("authorization") == Some("Bearer tok-push-0")),
        "a request without the token: {repo_requests:#?}"
    );
    assert_pulls_like_a_file_import(&target, &mini_connection(4), &snaps);

    // The wrong password: the token endpoint refuses, the push stops at once, nothing is put.
    let (fake2, _mini2) = Mini::start(Mini::new(Some("tok-push")));
    let mut conn = mini_connection(4);
    conn.credentials =
        snapbundle::registry::Credentials::Basic { username: USER.into(), password: "wrong".into() };
    let r = push(&src, &snaps[1].digest(), &fake2.reference("snaps/web:v1"), &conn, &quiet_push(true, false));
    assert_eq!(code(&r), "registry_auth");
    assert!(fake2.requests().len() <= 3, "{:#?}", fake2.requests());
    assert!(!fake2.requests().iter().any(|r| r.method != "GET"), "{:#?}", fake2.requests());
}

#[test]
fn a_push_reads_at_most_a_bounded_part_of_an_endless_answer_and_makes_no_tag() {
    let (fake, mini) = Mini::start(Mini::new(None));
    mini.set_fault(|req| {
        (req.method == "POST").then(|| Answer::Endless {
            status: 400,
            headers: vec![("Content-Type".into(), "application/json".into())],
            prefix: b"{\"errors\":[{\"code\":\"BLOB_UPLOAD_INVALID\",\"message\":\"".to_vec(),
            total: 1 << 30,
            declare_length: false,
        })
    });
    let snaps = chain(1, None, small);
    let (_s, src) = home();
    import_bytes(&bundle(&snaps, None), &src);
    let r = push(
        &src,
        &snaps[0].digest(),
        &fake.reference("snaps/web:v1"),
        &mini_connection(4),
        &quiet_push(true, false),
    );
    assert_eq!(code(&r), "registry_error");
    let msg = r.expect_err("error").to_string();
    assert!(
        msg.contains("BLOB_UPLOAD_INVALID") && msg.len() < 8 << 10,
        "{} bytes: {}",
        msg.len(),
        &msg[..200.min(msg.len())]
    );
    let streamed = fake.wait_hung_up();
    assert!(streamed < 32 << 20, "the server wrote {streamed} bytes of error body");
    assert!(mini.manifests.lock().expect("manifests").is_empty(), "a tag was made");
    assert!(!fake.requests().iter().any(|r| r.method == "PUT"));
    // The push's spool is gone with it.
    let spool = src.cache.join("snapbundle").join("tmp");
    let left: Vec<_> =
        fs::read_dir(&spool).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// An upper whose blob takes several upload chunks.
fn chunky(i: usize) -> (Vec<u8>, Integrity) {
    (support::noise(snapbundle::registry::push::CHUNK * 2 + (1 << 20), 3 * i as u64 + 11), Integrity::Sha256)
}

/// Makes `PATCH` number `n` (from 0) to `mini` answer 503 when `fails(n)`.
fn failing_patches(mini: &Mini, fails: impl Fn(usize) -> bool + Send + Sync + 'static) {
    let count = std::sync::atomic::AtomicUsize::new(0);
    mini.set_fault(move |req| {
        (req.method == "PATCH" && fails(count.fetch_add(1, Ordering::SeqCst)))
            .then(|| Answer::Full(503, Vec::new(), b"busy".to_vec()))
    });
}

/// A home holding one snapshot with a [`chunky`] upper.
fn chunky_home() -> (Vec<Snapshot>, tempfile::TempDir, Home) {
    let snaps = chain(1, None, chunky);
    let (dir, home) = home();
    import_bytes(&bundle(&snaps, None), &home);
    (snaps, dir, home)
}

#[test]
fn an_upload_failing_mid_blob_continues_from_where_the_registry_stands() {
    let (fake, mini) = Mini::start(Mini::new(None));
    // The second chunk of the upload fails once, after the registry kept the first.
    failing_patches(&mini, |n| n == 1);
    let (snaps, _s, src) = chunky_home();
    let target = fake.reference("snaps/big:v1");
    let pushed = push(&src, &snaps[0].digest(), &target, &mini_connection(4), &quiet_push(true, false))
        .unwrap_or_else(|e| panic!("push: {e}"));
    let upper = pushed.blobs.iter().find(|b| b.member == snaps[0].upper_path()).expect("upper blob");
    assert!(upper.resumed && upper.size > 2 * snapbundle::registry::push::CHUNK as u64, "{upper:#?}");
    // Every byte taken once: the chunk before the failure was not sent again.
    assert_eq!(upper.sent, upper.size, "{upper:#?}");
    assert_eq!(pushed.retries, 1);
    let requests = fake.requests();
    let posts = requests.iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 3, "one session per blob (manifest, upper, config), none restarted: {requests:#?}");
    assert!(
        requests.iter().any(|r| r.method == "GET" && r.path().contains("/blobs/uploads/")),
        "no status asked"
    );
    mini.clear_fault();
    assert_pulls_like_a_file_import(&target, &mini_connection(4), &snaps);
}

#[test]
fn a_push_that_failed_mid_blob_is_continued_by_the_next_push() {
    let (fake, mini) = Mini::start(Mini::new(None));
    // Every chunk after the first fails: the push gives up with one chunk in the registry.
    failing_patches(&mini, |n| n >= 1);
    let (snaps, _s, src) = chunky_home();
    let target = fake.reference("snaps/big:v1");
    let failed = push(&src, &snaps[0].digest(), &target, &mini_connection(2), &quiet_push(true, false));
    assert_eq!(code(&failed), "registry_unreachable");
    assert!(mini.manifests.lock().expect("manifests").is_empty(), "a tag was made");
    let records = src.cache.join("snapbundle").join("uploads");
    assert_eq!(fs::read_dir(&records).map(|d| d.count()).unwrap_or(0), 1, "no session recorded");

    mini.clear_fault();
    let before = fake.requests().len();
    let pushed = push(&src, &snaps[0].digest(), &target, &mini_connection(2), &quiet_push(true, false))
        .unwrap_or_else(|e| panic!("rerun: {e}"));
    let upper = pushed.blobs.iter().find(|b| b.member == snaps[0].upper_path()).expect("upper blob");
    let chunk = snapbundle::registry::push::CHUNK as u64;
    assert!(upper.resumed, "{upper:#?}");
    assert_eq!(upper.sent, upper.size - chunk, "only the rest was sent: {upper:#?}");
    assert_eq!(pushed.resumed, 1);
    let rerun: Vec<_> = fake.requests().into_iter().skip(before).collect();
    let first_patch = rerun.iter().find(|r| r.method == "PATCH").expect("a PATCH");
    assert_eq!(first_patch.header("content-range"), Some(format!("{chunk}-{}", 2 * chunk - 1).as_str()));
    assert!(!records.exists(), "the record outlived the upload");
    assert_pulls_like_a_file_import(&target, &mini_connection(2), &snaps);
}

#[test]
fn a_file_whose_blob_an_earlier_push_made_is_read_and_uploaded_where_the_registry_lacks_it() {
    let (fake, _mini) = Mini::start(Mini::new(None));
    let snaps = chain(2, None, small);
    let (_s, src) = home();
    import_bytes(&bundle(&snaps, None), &src);
    let first = push(
        &src,
        &snaps[1].digest(),
        &fake.reference("snaps/web:v1"),
        &mini_connection(2),
        &quiet_push(true, false),
    )
    .unwrap_or_else(|e| panic!("first push: {e}"));
    let records = src.cache.join("snapbundle").join("pushed");
    assert_eq!(fs::read_dir(&records).map(|d| d.count()).unwrap_or(0), 2, "a record per upper");

    // Another registry (no mount source: the home saw nothing there): the records give the
    // digests, HEAD finds nothing, so every file is read and every blob uploaded.
    let (fake2, _mini2) = Mini::start(Mini::new(None));
    let target = fake2.reference("snaps/web:v1");
    let second = push(&src, &snaps[1].digest(), &target, &mini_connection(2), &quiet_push(true, false))
        .unwrap_or_else(|e| panic!("second push: {e}"));
    assert_eq!((second.uploaded, second.skipped, second.mounted), (first.uploaded, 0, 0), "{second:#?}");
    assert!(second.blobs.iter().all(|b| b.read), "{second:#?}");
    assert_eq!(second.bytes_read, second.member_bytes);
    let digests =
        |o: &snapbundle::registry::PushOutcome| o.blobs.iter().map(|b| b.digest.clone()).collect::<Vec<_>>();
    assert_eq!(digests(&second), digests(&first), "the same blobs");
    assert_pulls_like_a_file_import(&target, &mini_connection(2), &snaps);
}

#[test]
fn a_push_to_another_repository_mounts_the_blobs_this_home_pushed_or_pulled_there() {
    let reg = TestRegistry::start(false);
    let snaps = chain(2, None, small);
    let (_s, src) = home();
    import_bytes(&bundle(&snaps, None), &src);
    let conn = reg.connection(None);
    let parent =
        push(&src, &snaps[0].digest(), &reg.reference("snaps/a:v1"), &conn, &quiet_push(false, false))
            .unwrap_or_else(|e| panic!("push parent: {e}"));
    assert_eq!((parent.uploaded, parent.mounted), (3, 0), "{parent:#?}");

    // The child with its parent into another repository: the parent's two blobs are mounted
    // from snaps/a (no --mount-from), the child's own two and the config uploaded.
    let child = push(&src, &snaps[1].digest(), &reg.reference("snaps/b:v1"), &conn, &quiet_push(true, false))
        .unwrap_or_else(|e| panic!("push child: {e}"));
    assert_eq!((child.mounted, child.uploaded, child.skipped), (2, 3, 0), "{child:#?}");
    let parent_digests: Vec<&str> =
        parent.blobs.iter().filter(|b| b.member != "config").map(|b| b.digest.as_str()).collect();
    for b in child.blobs.iter().filter(|b| b.action == snapbundle::registry::push::BlobAction::Mounted) {
        assert!(
            parent_digests.contains(&b.digest.as_str()),
            "mounted a blob the parent did not push: {b:#?}"
        );
    }
    assert_eq!(child.bytes_sent, child.bytes_uploaded);

    // A home that pulled the chain from snaps/b pushes it to snaps/c: every member is mounted.
    let (_p, pulled) = home();
    pull(&pulled, &reg.reference("snaps/b:v1"), &conn, &quiet_pull(), PullTarget::Import { dest: None })
        .unwrap_or_else(|e| panic!("pull: {e}"));
    let again =
        push(&pulled, &snaps[1].digest(), &reg.reference("snaps/c:v1"), &conn, &quiet_push(true, false))
            .unwrap_or_else(|e| panic!("push from the pulled home: {e}"));
    assert_eq!((again.mounted, again.uploaded, again.skipped), (5, 0, 0), "members and config: {again:#?}");
    assert_eq!(again.bytes_sent, 0);
    let (_q, copy) = home();
    pull(&copy, &reg.reference("snaps/c:v1"), &conn, &quiet_pull(), PullTarget::Import { dest: None })
        .unwrap_or_else(|e| panic!("pull from snaps/c: {e}"));
    let (_f, filed) = home();
    import_bytes(&bundle(&snaps, None), &filed);
    support::assert_tree_eq(&store(&filed.root), &store(&copy.root), "pulled from snaps/c");
}

/// Makes every `PATCH` to `mini` take `delay`.
fn slow_patches(mini: &Mini, delay: Duration) {
    mini.set_fault(move |req| {
        if req.method == "PATCH" {
            std::thread::sleep(delay);
        }
        None
    });
}

/// Runs the shell command `cmd` with a terminal as its standard error (`script`, util-linux)
/// and returns what it drew.
fn on_a_terminal(cmd: &str, log: &Path) -> String {
    let out = std::process::Command::new("script")
        .args(["-q", "-e", "-c", cmd])
        .arg(log)
        .env("COLUMNS", "160")
        .env_remove("MSB_HOME")
        .stdin(Stdio::null())
        .output()
        .expect("run script (util-linux)");
    assert!(out.status.success(), "{}", describe(&out));
    let drawn = String::from_utf8_lossy(&fs::read(log).expect("terminal log")).to_string();
    if std::env::var_os("SHOW_TERMINAL").is_some() {
        eprintln!("{drawn}");
    }
    drawn
}

#[test]
fn on_a_terminal_a_pull_draws_a_bar_per_blob_in_flight_under_the_overall_bar() {
    let (fake, mini) = Mini::start(Mini::new(None));
    let (snaps, _s, src) = chunky_home();
    let target = fake.reference("snaps/big:v1");
    push(&src, &snaps[0].digest(), &target, &mini_connection(4), &quiet_push(true, false))
        .unwrap_or_else(|e| panic!("push: {e}"));
    // Slow blob answers, so the bars are drawn while the blobs are in flight.
    mini.set_fault(|req| {
        if req.method == "GET" && req.path().contains("/blobs/sha256:") {
            std::thread::sleep(Duration::from_millis(400));
        }
        None
    });
    let (_d, dst) = home();
    let cmd =
        format!("{} pull {target} --plain-http --home {}", support::bin().display(), dst.root.display());
    let log = tempfile::NamedTempFile::new().expect("log file");
    let drawn = on_a_terminal(&cmd, log.path());
    let upper = snaps[0].upper_path();
    assert!(drawn.contains("pulling ["), "no overall bar: {drawn}");
    assert!(drawn.contains(&format!("↓ {upper}")), "no bar for the upper in flight: {drawn}");
    let (_f, filed) = home();
    import_bytes(&bundle(&snaps, None), &filed);
    support::assert_tree_eq(&store(&filed.root), &store(&dst.root), "pulled on a terminal");
}

#[test]
fn on_a_terminal_a_push_draws_a_bar_per_blob_in_flight_under_the_overall_bar() {
    let (fake, mini) = Mini::start(Mini::new(None));
    // Slow chunks, so the bars are drawn while the upper is in flight.
    slow_patches(&mini, Duration::from_millis(400));
    let (snaps, src_dir, src) = chunky_home();
    let cmd = format!(
        "{} push {} {} --plain-http --home {}",
        support::bin().display(),
        snaps[0].digest(),
        fake.reference("snaps/big:v1"),
        src.root.display()
    );
    let drawn = on_a_terminal(&cmd, &src_dir.path().join("terminal.log"));
    let upper = snaps[0].upper_path();
    assert!(drawn.contains("pushing ["), "no overall bar: {drawn}");
    assert!(drawn.contains(&format!("↑ {upper}")), "no bar for the upper in flight: {drawn}");
    assert!(drawn.contains(&format!("uploaded {upper}")), "no line for the finished upper: {drawn}");
    assert_eq!(mini.manifests.lock().expect("manifests").len(), 2, "tag and digest");
}

#[test]
fn a_push_outliving_its_token_trades_for_a_new_one_before_it_expires() {
    let mut m = Mini::new(Some("short"));
    m.token_seconds = 2;
    let (fake, mini) = Mini::start(m);
    // Slow chunks: the upper's upload outlives the first token (renewed after 1 s).
    slow_patches(&mini, Duration::from_millis(1000));
    let (snaps, _s, src) = chunky_home();
    let target = fake.reference("snaps/big:v1");
    let started = Instant::now();
    let pushed = push(&src, &snaps[0].digest(), &target, &mini_connection(4), &quiet_push(true, false))
        .unwrap_or_else(|e| panic!("push: {e}"));
    assert!(started.elapsed() > Duration::from_secs(2), "the push did not outlive its first token");
    assert!(mini.issued.load(Ordering::SeqCst) >= 2, "no new token: {pushed:#?}");
    assert_eq!(mini.expired.load(Ordering::SeqCst), 0, "a request went out with an expired token");
    assert_eq!(pushed.retries, 0);
    let tokens: std::collections::BTreeSet<String> = fake
        .requests()
        .iter()
        .filter_map(|r| r.header("authorization").map(str::to_string))
        .filter(|a| a.starts_with("Bearer "))
        .collect();
    assert!(tokens.len() >= 2, "{tokens:?}");
}
