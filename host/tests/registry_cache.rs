//! The pull blob cache shared by pulls running at once in one home, and the push spool
//! directories `snapbundle gc` cleans after killed pushes.
//!
//! The cache's locking is exercised through [`BlobCache`]'s public API where no registry is
//! needed (two holders, one finishing while the other holds). End to end, two pulls into one
//! home of artifacts sharing a blob run at once: a small fake registry (serving what a real
//! `docker-registry` stored) stalls the shared blob half-way for the first pull, the second
//! starts meanwhile, and the blob must be downloaded once and both pulls must succeed.

mod support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use snapbundle::home::Home;
use snapbundle::import::{import, ImportOptions};
use snapbundle::registry::blobs::BlobCache;
use snapbundle::registry::pull::pull;
use snapbundle::registry::push::push;
use snapbundle::registry::spool::{self, Spool};
use snapbundle::registry::{Connection, PullOptions, PullTarget, PushOptions};
use snapbundle_tests::builder::{self, Integrity, Snapshot, Tar};
use support::fake_registry::{Answer, FakeRegistry};
use support::registry::TestRegistry;
use support::{command, content, describe, run_gc, tree, Tree};

/// The tests of this file run one at a time. A `flock` belongs to an open file description, and
/// a process forked to spawn a command (gc, the registry, `sh`) shares every descriptor of the
/// test process until it execs: a test that drops a hold and at once expects its lock gone
/// would see it kept by another test's child for that moment.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn home() -> (tempfile::TempDir, Home) {
    let d = tempfile::tempdir().expect("temp home");
    let h = Home::at(d.path());
    (d, h)
}

/// `n` snapshots, root first, each with its own small upper.
fn chain(n: usize) -> Vec<Snapshot> {
    let mut out: Vec<Snapshot> = Vec::new();
    for i in 0..n {
        let mut s = Snapshot::new(builder::upper_bytes(64 << 10, i as u8 + 1), Integrity::Sparse)
            .label("n", &i.to_string());
        if let Some(p) = out.last() {
            s = s.parent(&p.digest());
        }
        out.push(s);
    }
    out
}

fn bundle(snaps: &[Snapshot]) -> Vec<u8> {
    snaps.iter().fold(Tar::new(), |t, s| t.snapshot(s)).end().build()
}

fn import_bytes(bytes: &[u8], home: &Home) {
    import(&mut &bytes[..], "bundle", home, &ImportOptions { quiet: true, ..Default::default() })
        .unwrap_or_else(|e| panic!("import failed: {e}"));
}

/// The store as two imports can agree on it (no snapbundle cache, no bare `cache`).
fn store(root: &Path) -> Tree {
    content(&tree(root))
        .into_iter()
        .filter(|(k, _)| k != "cache" && !k.starts_with("cache/snapbundle"))
        .collect()
}

/// The pull blob cache's file names.
fn cache_files(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(root.join("cache/snapbundle/blobs/sha256"))
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn digest_of(i: u8) -> String {
    format!("sha256:{}", format!("{i:02x}").repeat(32))
}

/// Puts a blob file named by `digest` into the cache (its bytes do not matter here).
fn put_blob(cache: &BlobCache, digest: &str, bytes: &[u8]) {
    fs::create_dir_all(cache.dir()).expect("cache dir");
    fs::write(cache.path(digest), bytes).expect("write blob");
}

#[test]
fn a_pull_finishing_while_another_holds_the_cache_leaves_the_blobs_and_the_last_one_removes_its_own() {
    let _serial = serial();
    let (d, home) = home();
    let cache = BlobCache::new(&home);
    let first = cache.hold().expect("hold");
    let second = cache.hold().expect("hold");
    let (shared, own) = (digest_of(1), digest_of(2));
    put_blob(&cache, &shared, b"shared");
    put_blob(&cache, &own, b"own");

    // The first finishes while the second still needs the shared blob: nothing removed.
    assert!(!cache.finish(first, [shared.as_str()]), "removed blobs while another pull held the cache");
    assert!(cache.has(&shared, 6), "{:?}", cache_files(d.path()));

    // The second finishes alone: its blobs go, then the empty directories.
    assert!(cache.finish(second, [shared.as_str(), own.as_str()]));
    assert!(!d.path().join("cache/snapbundle").exists(), "{:?}", tree(d.path()));
}

#[test]
fn a_finishing_pull_removes_only_its_own_blobs() {
    let _serial = serial();
    let (d, home) = home();
    let cache = BlobCache::new(&home);
    let hold = cache.hold().expect("hold");
    let (mine, left) = (digest_of(3), digest_of(4));
    put_blob(&cache, &mine, b"mine");
    put_blob(&cache, &left, b"left by a pull that finished beside another");
    assert!(cache.finish(hold, [mine.as_str()]));
    assert_eq!(cache_files(d.path()), vec![left.trim_start_matches("sha256:").to_string()]);
    // `gc` clears what is left once no pull runs.
    let v = run_gc(d.path());
    assert_eq!(v["pull_cache"]["blobs_removed"], 1, "{v}");
    assert_eq!(v["pull_cache"]["in_use"], false, "{v}");
    assert!(!d.path().join("cache/snapbundle").exists(), "{:?}", tree(d.path()));
}

#[test]
fn a_hold_released_by_dropping_it_no_longer_keeps_another_pull_from_removing_its_blobs() {
    let _serial = serial();
    let (_d, home) = home();
    let cache = BlobCache::new(&home);
    let gone = cache.hold().expect("hold");
    let finishing = cache.hold().expect("hold");
    let digest = digest_of(5);
    put_blob(&cache, &digest, b"blob");
    drop(gone);
    assert!(cache.finish(finishing, [digest.as_str()]));
    assert!(!cache.has(&digest, 4));
}

// ---- end to end, through a registry ----

fn header(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

fn plain() -> Connection {
    Connection { plain_http: true, ..Default::default() }
}

fn quiet_pull() -> PullOptions {
    PullOptions { quiet: true, ..Default::default() }
}

/// A registry on plain HTTP serving `snaps/web`'s tags and blobs from what `real` stored; GETs
/// of the blob `stall` send half its bytes, then the rest once the flag is set.
fn served_from(real: &TestRegistry, stall: Option<(String, Arc<AtomicBool>)>) -> FakeRegistry {
    let storage = real.dir.path().join("storage/docker/registry/v2");
    FakeRegistry::start(move |req| {
        let not_found = || Answer::Full(404, vec![], br#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#.to_vec());
        let path = req.path();
        if path == "/v2/" {
            return Answer::Full(200, vec![], b"{}".to_vec());
        }
        let blob = |digest: &str| -> Option<Vec<u8>> {
            let hex = digest.strip_prefix("sha256:")?;
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            fs::read(storage.join("blobs/sha256").join(&hex[..2]).join(hex).join("data")).ok()
        };
        if let Some(tag) = path.strip_prefix("/v2/snaps/web/manifests/") {
            let link = storage.join("repositories/snaps/web/_manifests/tags").join(tag).join("current/link");
            let Some((digest, bytes)) =
                fs::read_to_string(link).ok().and_then(|d| Some((d.trim().to_string(), blob(d.trim())?)))
            else {
                return not_found();
            };
            let h = vec![
                header("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
                header("Docker-Content-Digest", &digest),
            ];
            return Answer::Full(200, h, bytes);
        }
        if let Some(digest) = path.strip_prefix("/v2/snaps/web/blobs/") {
            let headers = vec![header("Docker-Content-Digest", digest)];
            let Some(body) = blob(digest) else { return not_found() };
            return match &stall {
                Some((d, flag)) if d == digest && req.method == "GET" => {
                    let send = body.len() / 2;
                    Answer::Partial { headers, body, send, release: Some(flag.clone()) }
                }
                _ => Answer::Full(200, headers, body),
            };
        }
        not_found()
    })
}

/// The layers (digest, size) of the manifest `real` stores for `snaps/web:<tag>`.
fn layers(real: &TestRegistry, tag: &str) -> Vec<(String, u64)> {
    let storage = real.dir.path().join("storage/docker/registry/v2");
    let link = storage.join("repositories/snaps/web/_manifests/tags").join(tag).join("current/link");
    let digest = fs::read_to_string(link).expect("tag link");
    let hex = digest.trim().strip_prefix("sha256:").expect("sha256 digest").to_string();
    let bytes =
        fs::read(storage.join("blobs/sha256").join(&hex[..2]).join(&hex).join("data")).expect("manifest");
    let v: Value = serde_json::from_slice(&bytes).expect("manifest JSON");
    v["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| (l["digest"].as_str().expect("digest").to_string(), l["size"].as_u64().expect("size")))
        .collect()
}

/// Shared `flock`s held on `dir`, as `/proc/locks` lists them.
fn shared_flocks(dir: &Path) -> usize {
    let ino = fs::metadata(dir).map(|m| m.ino()).unwrap_or(0);
    let locks = fs::read_to_string("/proc/locks").expect("/proc/locks");
    locks
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|t| {
            t.get(1) == Some(&"FLOCK")
                && t.get(3) == Some(&"READ")
                && t.get(5).is_some_and(|id| id.ends_with(&format!(":{ino}")))
        })
        .count()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "waited a minute for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_pulls_into_one_home_sharing_a_blob_download_it_once_and_both_succeed() {
    let _serial = serial();
    let real = TestRegistry::start(false);
    let snaps = chain(3);
    let (v1, v2) = (bundle(&snaps[..2]), bundle(&snaps));
    let (_s, src) = home();
    import_bytes(&v2, &src);
    let opts = PushOptions { with_parents: true, quiet: true, ..Default::default() };
    for (tag, head) in [("v1", snaps[1].digest()), ("v2", snaps[2].digest())] {
        push(&src, &head, &real.reference(&format!("snaps/web:{tag}")), &real.connection(None), &opts)
            .unwrap_or_else(|e| panic!("push {tag}: {e}"));
    }
    // The shared blob to stall: the largest of v1's (an upper), which v2 has too.
    let (l1, l2) = (layers(&real, "v1"), layers(&real, "v2"));
    let (shared, shared_size) = l1.iter().max_by_key(|(_, size)| *size).cloned().expect("layers");
    assert!(l2.iter().any(|(d, _)| *d == shared), "v2 does not share {shared}");
    assert!(shared_size >= 2, "{shared_size}");
    let part = format!("{}.part", shared.trim_start_matches("sha256:"));

    let release = Arc::new(AtomicBool::new(false));
    let fake = served_from(&real, Some((shared.clone(), release.clone())));
    let (dir, pulled) = home();
    let cache_dir = BlobCache::new(&pulled).dir().to_path_buf();

    // 1. The first pull stalls half-way through the shared blob.
    let first = {
        let (home, target) = (pulled.clone(), fake.reference("snaps/web:v1"));
        std::thread::spawn(move || {
            pull(&home, &target, &plain(), &quiet_pull(), PullTarget::Import { dest: None })
        })
    };
    wait_for("the first pull to start the shared blob", || {
        fs::metadata(cache_dir.join(&part)).is_ok_and(|m| m.len() > 0)
    });
    // 2. The second, of the other artifact into the same home (as a bundle file), starts and
    //    holds the cache too.
    let out_dir = tempfile::tempdir().expect("out dir");
    let out_file = out_dir.path().join("v2.tar.zst");
    let second = {
        let (home, target, out) = (pulled.clone(), fake.reference("snaps/web:v2"), out_file.clone());
        std::thread::spawn(move || pull(&home, &target, &plain(), &quiet_pull(), PullTarget::File(&out)))
    };
    wait_for("the second pull to hold the cache", || shared_flocks(&cache_dir) >= 2);
    // 3. The first gets the rest of the blob.
    release.store(true, Ordering::SeqCst);
    let a = first.join().expect("first pull thread").unwrap_or_else(|e| panic!("the first pull: {e}"));
    let b = second.join().expect("second pull thread").unwrap_or_else(|e| panic!("the second pull: {e}"));

    let gets = fake.requests().iter().filter(|r| r.method == "GET" && r.path().ends_with(&shared)).count();
    assert_eq!(gets, 1, "the shared blob was downloaded {gets} times");
    assert!(b.cached >= 1, "the second pull took nothing from the cache: {b:?}");
    assert_eq!(a.import.as_ref().expect("an import").head_digest, snaps[1].digest());
    let (_f, filed) = home();
    import_bytes(&v1, &filed);
    support::assert_tree_eq(&store(&filed.root), &store(&pulled.root), "the first pull vs a file import");
    let bundle = b.bundle.as_ref().expect("a bundle");
    assert_eq!(bundle.head, snaps[2].digest());
    let (_g, from_bundle) = home();
    import_bytes(&fs::read(&out_file).expect("the second pull's bundle"), &from_bundle);
    let (_h, filed2) = home();
    import_bytes(&v2, &filed2);
    support::assert_tree_eq(&store(&filed2.root), &store(&from_bundle.root), "the second pull's bundle");

    // Whichever finished beside the other left its blobs (verified ones only); gc clears them.
    let left = cache_files(dir.path());
    assert!(left.iter().all(|n| !n.ends_with(".part")), "{left:?}");
    let v = run_gc(dir.path());
    assert_eq!(v["pull_cache"]["in_use"], false, "{v}");
    assert_eq!(v["pull_cache"]["blobs_removed"].as_u64(), Some(left.len() as u64), "{v}");
    assert!(!dir.path().join("cache/snapbundle/blobs").exists(), "{:?}", cache_files(dir.path()));
}

#[test]
fn a_pull_finishing_while_the_cache_is_held_keeps_its_verified_blobs_until_gc() {
    let _serial = serial();
    let real = TestRegistry::start(false);
    let snaps = chain(2);
    let (_s, src) = home();
    import_bytes(&bundle(&snaps), &src);
    let opts = PushOptions { with_parents: true, quiet: true, ..Default::default() };
    push(&src, &snaps[1].digest(), &real.reference("snaps/web:v1"), &real.connection(None), &opts)
        .unwrap_or_else(|e| panic!("push: {e}"));
    let (dir, pulled) = home();
    let cache = BlobCache::new(&pulled);
    // Another pull (here: the test) holds the cache.
    let other = cache.hold().expect("hold");
    let out = pull(
        &pulled,
        &real.reference("snaps/web:v1"),
        &real.connection(None),
        &quiet_pull(),
        PullTarget::Import { dest: None },
    )
    .unwrap_or_else(|e| panic!("pull: {e}"));
    assert_eq!(out.import.expect("an import").head_digest, snaps[1].digest());
    let mut want: Vec<String> =
        layers(&real, "v1").iter().map(|(d, _)| d.trim_start_matches("sha256:").to_string()).collect();
    want.sort();
    want.dedup();
    assert_eq!(cache_files(dir.path()), want, "the blobs another pull may need were not all kept");
    for (d, size) in layers(&real, "v1") {
        assert!(cache.has(&d, size), "{d} is not the verified blob");
    }
    // While the other holds it, gc leaves them too; once it is gone, gc clears them.
    let v = run_gc(dir.path());
    assert_eq!(v["pull_cache"]["in_use"], true, "{v}");
    assert_eq!(cache_files(dir.path()), want);
    drop(other);
    let v = run_gc(dir.path());
    assert_eq!(v["pull_cache"]["blobs_removed"].as_u64(), Some(want.len() as u64), "{v}");
    assert!(!dir.path().join("cache/snapbundle/blobs").exists(), "{:?}", cache_files(dir.path()));
}

// ---- push spool directories ----

/// A spool directory as a killed push leaves it: `push-…` with a few files, nobody holding it.
fn abandoned_spool(home: &Home, name: &str) -> (PathBuf, u64) {
    let d = spool::dir(home).join(name);
    fs::create_dir_all(d.join("sub")).expect("spool dir");
    fs::write(d.join("0.zst"), vec![7u8; 1000]).expect("write");
    fs::write(d.join("sub/1.zst"), vec![8u8; 234]).expect("write");
    (d, 1234)
}

#[test]
fn gc_removes_the_spool_of_a_killed_push_and_leaves_a_running_one_and_other_names() {
    let _serial = serial();
    let (d, home) = home();
    let live = Spool::create(&home).expect("spool");
    fs::write(live.path().join("0.zst"), b"being uploaded").expect("write");
    let (dead, dead_bytes) = abandoned_spool(&home, "push-k1lled");
    let tmp = spool::dir(&home);
    fs::create_dir(tmp.join("not-a-push")).expect("mkdir");
    fs::write(tmp.join("push-a-file"), b"not a directory").expect("write");

    let v = run_gc(d.path());
    assert_eq!(v["push_spool"]["dirs_removed"], 1, "{v}");
    assert_eq!(v["push_spool"]["bytes_removed"].as_u64(), Some(dead_bytes), "{v}");
    assert_eq!(v["push_spool"]["in_use"], 1, "{v}");
    assert!(!dead.exists(), "the killed push's spool stayed");
    assert_eq!(fs::read(live.path().join("0.zst")).expect("live spool"), b"being uploaded");
    assert!(tmp.join("not-a-push").is_dir() && tmp.join("push-a-file").is_file(), "{:?}", tree(&tmp));

    // The text form says so too; and a spool removes itself when its push ends.
    abandoned_spool(&home, "push-again");
    let out = command([std::ffi::OsStr::new("gc"), std::ffi::OsStr::new("--home"), d.path().as_os_str()])
        .output()
        .expect("run gc");
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("removed 1 push spool directory (1234 bytes), left 1 of running pushes"), "{text}");
    let live_path = live.path().to_path_buf();
    drop(live);
    assert!(!live_path.exists(), "a dropped spool stayed");
    let v = run_gc(d.path());
    assert_eq!(
        v["push_spool"],
        serde_json::json!({"dirs_removed": 0, "bytes_removed": 0, "in_use": 0}),
        "{v}"
    );
    assert!(tmp.join("not-a-push").is_dir() && tmp.join("push-a-file").is_file(), "{:?}", tree(&tmp));
}

/// A child process killed when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_spool_locked_by_a_process_that_is_then_killed_is_removed_by_gc() {
    let _serial = serial();
    let (d, home) = home();
    let (spooled, bytes) = abandoned_spool(&home, "push-proc3ss");
    // Another process holds the directory's lock, as a running push would: one process (the
    // shell opens it, `flock` locks the open file, `sleep` replaces the shell keeping it open).
    let mut holder = KillOnDrop(
        Command::new("sh")
            .arg("-c")
            .arg("exec 9<\"$1\" && flock 9 && exec sleep 600")
            .arg("sh")
            .arg(&spooled)
            .stdin(Stdio::null())
            .spawn()
            .expect("run sh"),
    );
    wait_for("the other process to take the lock", || {
        let f = fs::File::open(&spooled).expect("open spool");
        rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err()
    });
    let v = run_gc(d.path());
    let counts = (v["push_spool"]["dirs_removed"].as_u64(), v["push_spool"]["in_use"].as_u64());
    assert_eq!(counts, (Some(0), Some(1)), "{v}");
    assert!(spooled.is_dir());
    // Killed: its lock dies with it.
    holder.0.kill().expect("kill the holder");
    holder.0.wait().expect("reap the holder");
    let v = run_gc(d.path());
    assert_eq!(v["push_spool"]["dirs_removed"], 1, "{v}");
    assert_eq!(v["push_spool"]["bytes_removed"].as_u64(), Some(bytes), "{v}");
    assert!(!spooled.exists(), "the killed push's spool stayed");
}
