//! The hostile-input corpus (`tests/corpus/`), end to end through the command line.
//!
//! The corpus is generated once per run (see `tests/corpus/generator.rs`), the other readers'
//! behaviour is recorded in each sidecar, and the committed `tests/corpus/README.md` must match
//! the generated one. Then every case runs through `snapbundle verify --json` and `snapbundle
//! import --json` into a fresh home inside a fresh scratch directory, and for each case:
//! - the verdict and the error code are the expected ones, for verify and for import (a 0.7
//!   `.msb` archive, [`Setup::Converted`], is judged by verify and imported through its 0.6.2
//!   conversion, or refused with verify's code, or as `not_representable`);
//! - no panic (exit status 0, 1 or 3 and no "panicked" on standard error);
//! - on rejection the whole scratch tree (home, store, cache, anything beside them) is exactly
//!   what it was before: not a file created, changed or left behind, no stage;
//! - on acceptance only the snapshot directories, the cache files and the index were added, and
//!   nothing that existed before changed;
//! - the peak RSS of the `snapbundle` process, measured by `/usr/bin/time` (a tiny parent, so the
//!   high-water mark Linux carries from the forking parent into the child is time's own, not this
//!   test's), stays within [`RSS_BOUND_KIB`].
//!
//! A summary line gives the passed cases per group.

mod support;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{json, Value};
use snapbundle_tests::corpus::{self, Case, Setup};
use snapbundle_tests::fixtures::ScratchDir;
use support::{added, bin, is_stage_path, tree, Tree};

/// Peak RSS bound for one `snapbundle` process: the default zstd window cap (128 MiB) and JSON
/// cap (32 MiB) the limits allow, plus 64 MiB for the program itself.
const RSS_BOUND_KIB: u64 = (128 + 32 + 64) * 1024;

fn generated() -> &'static (Vec<Case>, Vec<Value>) {
    static CORPUS: OnceLock<(Vec<Case>, Vec<Value>)> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let t0 = std::time::Instant::now();
        let cases = corpus::generate(&corpus::corpus_dir());
        println!("corpus: {} cases generated in {:.1} s", cases.len(), t0.elapsed().as_secs_f64());
        let scratch = ScratchDir::new("corpus-readers");
        let sidecars = cases
            .iter()
            .map(|c| {
                let t = std::time::Instant::now();
                let gnu = corpus::gnu_tar_view(c, &scratch.path().join("gnu"));
                let (list_ok, listed, list_note) = corpus::gnu_tar_list(c);
                let krate = corpus::tar_crate_view(c);
                let readers = json!({
                    "gnu_tar": gnu.to_json(),
                    "gnu_tar_list": { "ok": list_ok, "lines": listed, "note": list_note },
                    "tar_crate": krate.to_json(),
                });
                let v = corpus::write_sidecar(c, &readers);
                slow(c, "other readers", t);
                v
            })
            .collect();
        (cases, sidecars)
    })
}

/// Reports a step that took more than 2 s (CI time is watched).
fn slow(case: &Case, what: &str, since: std::time::Instant) {
    let secs = since.elapsed().as_secs_f64();
    if secs > 2.0 {
        println!("corpus: {}: {what} took {secs:.1} s", case.id());
    }
}

#[test]
fn corpus_generate() {
    let (cases, sidecars) = generated();
    assert!(cases.len() >= 90, "only {} cases", cases.len());
    let text = corpus::readme(sidecars);
    let path = corpus::readme_path();
    if std::env::var_os("SNAPBUNDLE_BLESS").is_some() {
        fs::write(&path, &text).expect("write README");
    }
    let committed = fs::read_to_string(&path).unwrap_or_default();
    if committed != text {
        let generated = corpus::corpus_dir().join("README.generated.md");
        fs::write(&generated, &text).expect("write generated README");
        panic!(
            "tests/corpus/README.md differs from the generated listing ({}): a verdict, a case or another \
             reader's behaviour changed. Review, then run SNAPBUNDLE_BLESS=1 cargo test -p snapbundle --test corpus",
            generated.display()
        );
    }
}

/// A finished `snapbundle` run.
struct Run {
    status: i32,
    json: Value,
    stderr: String,
    rss_kib: u64,
}

/// Runs `snapbundle <args>` under `/usr/bin/time` and reads its peak RSS.
fn snapbundle(args: &[&OsStr], scratch: &Path) -> Run {
    let rss_file = scratch.join("rss");
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(bin())
        .args(args)
        .env_remove(snapbundle::crash::ENV)
        .env_remove("MSB_HOME")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run /usr/bin/time (package `time`): {e}"));
    let rss_kib = fs::read_to_string(&rss_file)
        .ok()
        .and_then(|s| s.lines().last().and_then(|l| l.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no RSS figure from /usr/bin/time"));
    let _ = fs::remove_file(&rss_file);
    Run {
        status: out.status.code().unwrap_or(-1),
        json: serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        rss_kib,
    }
}

/// The error code of a run, or "ok".
fn outcome(r: &Run) -> String {
    if r.status == 0 && r.json["ok"] == true {
        "ok".into()
    } else {
        r.json["error"]["code"].as_str().unwrap_or("<no JSON error>").to_string()
    }
}

/// Checks one case; returns a failure description, or None when it passed.
fn check_case(case: &Case, peak: &mut u64) -> Result<(), String> {
    let scratch = ScratchDir::new("corpus");
    let root = scratch.path().join("world");
    let home = root.join("home");
    let outside = root.join("outside");
    fs::create_dir_all(&outside).map_err(|e| e.to_string())?;
    fs::write(outside.join("keep.txt"), b"outside the home").map_err(|e| e.to_string())?;
    let bundle = case.path.as_os_str();
    let ctx = case.id();
    let mut fail = Vec::new();

    // verify
    let v = snapbundle(
        &[OsStr::new("verify"), bundle, OsStr::new("--json"), OsStr::new("--quiet")],
        scratch.path(),
    );
    *peak = (*peak).max(v.rss_kib);
    let want_verify = match case.setup {
        Setup::Fresh | Setup::NotImportable | Setup::Converted => case.expect.unwrap_or("ok"),
        _ => "ok",
    };
    let got = outcome(&v);
    if got != want_verify {
        fail.push(format!("verify: expected {want_verify}, got {got} ({})", v.stderr.trim()));
    }
    let report = v.json["report"].clone();

    // The store before the import, as the case's setup asks.
    let import = |home: &Path| {
        snapbundle(
            &[
                OsStr::new("import"),
                bundle,
                OsStr::new("--home"),
                home.as_os_str(),
                OsStr::new("--json"),
                OsStr::new("--quiet"),
            ],
            scratch.path(),
        )
    };
    match case.setup {
        Setup::Fresh | Setup::NotImportable | Setup::Converted => {}
        Setup::PreImported => {
            let first = import(&home);
            if outcome(&first) != "ok" {
                fail.push(format!("setup import failed: {}", first.stderr.trim()));
            }
        }
        Setup::SymlinkAtPrefix => {
            let prefix = report["head_prefix"].as_str().unwrap_or("missing");
            fs::create_dir_all(home.join("snapshots")).map_err(|e| e.to_string())?;
            std::os::unix::fs::symlink("../../outside", home.join("snapshots").join(prefix))
                .map_err(|e| e.to_string())?;
        }
        Setup::CacheConflict => {
            let rel = report["cache"]["files"][0].as_str().unwrap_or("manifests/missing.json");
            let target = home.join("cache").join(rel);
            fs::create_dir_all(target.parent().unwrap_or(&home)).map_err(|e| e.to_string())?;
            fs::write(&target, b"{\"other\":\"bytes\"}").map_err(|e| e.to_string())?;
        }
    }
    let before: Tree = tree(&root);
    let imp = import(&home);
    *peak = (*peak).max(imp.rss_kib);
    let after: Tree = tree(&root);
    let want_import = match case.setup {
        Setup::NotImportable => "usage",
        Setup::Converted => case.expect.or(case.import_expect).unwrap_or("ok"),
        _ => case.expect.unwrap_or("ok"),
    };
    let got = outcome(&imp);
    if got != want_import {
        fail.push(format!("import: expected {want_import}, got {got} ({})", imp.stderr.trim()));
    }
    for r in [&v, &imp] {
        if r.stderr.contains("panicked") || ![0, 1, 2, 3].contains(&r.status) {
            fail.push(format!("abnormal exit {}: {}", r.status, r.stderr.trim()));
        }
        if r.rss_kib > RSS_BOUND_KIB {
            fail.push(format!("peak RSS {} KiB over the {RSS_BOUND_KIB} KiB bound", r.rss_kib));
        }
    }
    // convert (to the other generation) into a file outside the home: a rejected case gives
    // verify's code and writes nothing; a valid one writes just that file, or is refused as
    // not representable, writing nothing.
    let msb = matches!(case.setup, Setup::Converted | Setup::NotImportable);
    let converted = outside.join("converted");
    let conv_before = tree(&root);
    let conv = snapbundle(
        &[
            OsStr::new("convert"),
            bundle,
            OsStr::new("-o"),
            converted.as_os_str(),
            OsStr::new("--to"),
            OsStr::new(if msb { "0.6.2" } else { "0.7" }),
            OsStr::new("--json"),
            OsStr::new("--quiet"),
        ],
        scratch.path(),
    );
    *peak = (*peak).max(conv.rss_kib);
    let got_conv = outcome(&conv);
    let want_conv = match case.setup {
        // A released archive: judged by verify, converted by nothing yet (like its import).
        Setup::NotImportable => Some("usage"),
        Setup::Fresh | Setup::Converted => case.expect.or(case.convert_expect),
        _ => case.convert_expect,
    };
    match want_conv {
        Some(code) if got_conv != code => {
            fail.push(format!("convert: expected {code}, got {got_conv} ({})", conv.stderr.trim()))
        }
        None if got_conv != "ok" => {
            fail.push(format!("convert: expected ok, got {got_conv} ({})", conv.stderr.trim()))
        }
        _ => {}
    }
    let conv_after = tree(&root);
    let conv_added: Vec<&String> = conv_after.keys().filter(|k| !conv_before.contains_key(*k)).collect();
    let conv_changed = conv_before.iter().any(|(k, n)| conv_after.get(k) != Some(n));
    let allowed: &[&str] = if got_conv == "ok" { &["outside/converted"] } else { &[] };
    if conv_changed || conv_added.iter().any(|k| !allowed.contains(&k.as_str())) {
        fail.push(format!("convert ({got_conv}) changed the tree: added {conv_added:?}"));
    }
    let _ = fs::remove_file(&converted);
    for r in [&conv] {
        if r.stderr.contains("panicked") || ![0, 1, 2, 3].contains(&r.status) {
            fail.push(format!("convert: abnormal exit {}: {}", r.status, r.stderr.trim()));
        }
    }

    let stages: Vec<&String> = after.keys().filter(|k| is_stage_path(k)).collect();
    if !stages.is_empty() {
        fail.push(format!("stages left: {stages:?}"));
    }
    if got == "ok" {
        // Only the snapshots, the cache files and the index were added; nothing else changed.
        for (k, node) in &before {
            if after.get(k) != Some(node) {
                fail.push(format!("{k} changed or vanished during a successful import"));
            }
        }
        let prefixes: Vec<String> = imp.json["import"]["report"]["snapshots"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["prefix"].as_str().map(String::from)).collect())
            .unwrap_or_default();
        for k in added(&before, &after).keys() {
            let allowed = k == "home"
                || k == "home/snapshots"
                || k.starts_with("home/cache")
                || k.starts_with("home/db")
                || prefixes.iter().any(|p| {
                    k == &format!("home/snapshots/{p}") || k.starts_with(&format!("home/snapshots/{p}/"))
                });
            if !allowed {
                fail.push(format!("unexpected path created by the import: {k}"));
            }
        }
    } else if before != after {
        let added: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
        let changed: Vec<&String> = before.keys().filter(|k| after.get(*k) != before.get(*k)).collect();
        fail.push(format!(
            "rejected import changed the tree: added {added:?}, changed or removed {changed:?}"
        ));
    }
    if fail.is_empty() {
        Ok(())
    } else {
        Err(format!("{ctx}:\n    {}", fail.join("\n    ")))
    }
}

#[test]
fn corpus_verdicts_through_verify_and_import() {
    let (cases, _) = generated();
    let mut per_group: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut peak = 0;
    for case in cases {
        let t = std::time::Instant::now();
        let r = check_case(case, &mut peak);
        slow(case, "verify and import", t);
        let e = per_group.entry(case.group).or_default();
        e.1 += 1;
        match r {
            Ok(()) => e.0 += 1,
            Err(f) => failures.push(f),
        }
    }
    let summary: Vec<String> = per_group.iter().map(|(g, (p, n))| format!("{g} {p}/{n}")).collect();
    let passed: usize = per_group.values().map(|v| v.0).sum();
    println!(
        "corpus: {passed}/{} cases passed ({}); highest peak RSS {} KiB (bound {RSS_BOUND_KIB} KiB)",
        cases.len(),
        summary.join(", "),
        peak
    );
    assert!(failures.is_empty(), "{} corpus cases failed:\n  {}", failures.len(), failures.join("\n  "));
}
