//! `convert --to 0.7` judged by the real microsandbox 0.7.13 (`tests/oracle-0713`, its own
//! `Snapshot::load`): for every 0.6.2 reference bundle and a few built ones, 0.7.13 loads the
//! converted `.msb` archive into the same snapshots as it makes of the 0.6.2 bundle itself: the
//! same verdict (and error text, for the bundles it refuses), head, snapshot ids, descriptor
//! digests, parents, labels, installed descriptor, metadata and group files, the same layer bytes
//! (the 0.6.2 load keeps the upper under its 0.6.2 name, the `.msb` load as
//! `layers/<layer_id>.raw`) and the same image cache files.
//!
//! Ignored by a plain `cargo test`: `scripts/oracle-0713.sh` builds the oracle and runs these
//! (CI does, as a step of `scripts/test.sh`).

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use snapbundle_tests::builder::{bundle_tar, Integrity, Snapshot};
use snapbundle_tests::fixtures::ScratchDir;
use support::{command, describe, fixtures};

fn oracle() -> PathBuf {
    let path = std::env::var_os("SNAPBUNDLE_ORACLE_0713")
        .map(PathBuf::from)
        .expect("SNAPBUNDLE_ORACLE_0713 names the oracle binary: run scripts/oracle-0713.sh");
    assert!(path.is_file(), "{}: no oracle binary (scripts/oracle-0713.sh builds it)", path.display());
    path
}

/// What the real 0.7.13 load made of `archive`, loaded into a fresh home at `home` (always the
/// same path, so that files naming the home compare equal), group `g`.
fn load(archive: &Path, home: &Path) -> Value {
    let _ = fs::remove_dir_all(home);
    fs::create_dir_all(home).expect("home");
    let out = Command::new(oracle())
        .arg("load")
        .arg(archive)
        .arg("g")
        .env("MSB_HOME", home)
        .output()
        .expect("run oracle");
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("oracle output for {}: {e}\n{}", archive.display(), describe(&out)));
    v
}

/// An error text with the load's random staging names and the home masked.
fn masked(error: &str, home: &Path) -> String {
    let text = error.replace(&home.display().to_string(), "<HOME>");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("snapshot-import-") {
        let (head, tail) = rest.split_at(at + "snapshot-import-".len());
        out.push_str(head);
        out.push_str("<RANDOM>");
        rest = tail.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    }
    out.push_str(rest);
    out
}

/// The installed files by path (sha256 and size), with each snapshot's layer under one name
/// (`<snap>/LAYER`) and the 0.6.2 load's `.manifest.json.legacy` backup set aside.
fn files(v: &Value) -> (BTreeMap<String, (String, u64)>, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut backups = Vec::new();
    for f in v["files"].as_array().expect("files") {
        let path = f["path"].as_str().expect("path");
        let entry = (f["sha256"].as_str().expect("sha256").to_string(), f["size"].as_u64().expect("size"));
        let parts: Vec<&str> = path.split('/').collect();
        let key = match parts.as_slice() {
            ["snapshots", g, snap, "upper.ext4"] | ["snapshots", g, snap, "layers", _] => {
                format!("snapshots/{g}/{snap}/LAYER")
            }
            [.., ".manifest.json.legacy"] => {
                backups.push(entry.0);
                continue;
            }
            _ => path.to_string(),
        };
        assert!(out.insert(key, entry).is_none(), "two layers in one snapshot: {path}");
    }
    (out, backups)
}

fn snapshots(v: &Value) -> Vec<Value> {
    let mut s = v["snapshots"].as_array().expect("snapshots").clone();
    s.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    s
}

/// Converts `bundle`, loads both with 0.7.13 and compares; returns whether 0.7.13 loads them.
fn judge(bundle: &Path, scratch: &Path, ctx: &str) -> bool {
    let msb = scratch.join("converted.msb");
    let _ = fs::remove_file(&msb);
    let run = command(["convert", bundle.to_str().expect("utf-8"), "-o", msb.to_str().expect("utf-8"), "-q"])
        .output()
        .expect("run snapbundle");
    assert!(run.status.success(), "{ctx}: convert\n{}", describe(&run));
    let home = scratch.join("home");
    let legacy = load(bundle, &home);
    let converted = load(&msb, &home);
    if legacy["error"].as_str().is_some_and(|e| e.contains("legacy_parent_missing")) {
        // 0.7.13 refuses a 0.6.2 bundle without the parents of its snapshots (even when they
        // are in the store), but loads a `.msb` archive without them, as its own `save`
        // without --with-parents writes them. The converted archive loads, into the snapshots
        // 0.7.13 makes of them when it loads the whole chain.
        assert_eq!(converted["ok"], true, "{ctx}: a head-only .msb archive loads alone\n{converted}");
        let chain = load(&support::fixture_dir().join("b-chain3-with-parents.tar.zst"), &home);
        for s in snapshots(&converted) {
            assert!(snapshots(&chain).contains(&s), "{ctx}: {} as in the whole chain", s["id"]);
        }
        return true;
    }
    let ok = legacy["ok"] == true;
    assert_eq!(converted["ok"], legacy["ok"], "{ctx}: the same verdict\n0.6.2: {legacy}\n.msb: {converted}");
    if !ok {
        let (a, b) = (legacy["error"].as_str().unwrap_or(""), converted["error"].as_str().unwrap_or(""));
        assert_eq!(masked(b, &home), masked(a, &home), "{ctx}: the same refusal");
        return false;
    }
    assert_eq!(converted["head"], legacy["head"], "{ctx}: head");
    assert_eq!(converted["head_digest"], legacy["head_digest"], "{ctx}: head descriptor digest");
    assert_eq!(snapshots(&converted), snapshots(&legacy), "{ctx}: ids, digests, labels, descriptors");
    let (legacy_files, backups) = files(&legacy);
    let (converted_files, none) = files(&converted);
    assert_eq!(converted_files, legacy_files, "{ctx}: installed files");
    assert!(none.is_empty(), "{ctx}");
    assert_eq!(backups.len(), snapshots(&legacy).len(), "{ctx}: one manifest backup per snapshot");
    true
}

#[test]
#[ignore = "needs the 0.7.13 oracle: scripts/oracle-0713.sh"]
fn real_0_7_13_loads_every_converted_reference_bundle_as_it_loads_the_bundle() {
    let scratch = ScratchDir::new("oracle-fixtures");
    let (mut loaded, mut refused) = (0, 0);
    for fx in fixtures().into_iter().filter(|f| f.ok()) {
        if judge(&fx.path, scratch.path(), &fx.name) {
            loaded += 1;
        } else {
            refused += 1;
        }
    }
    println!("0.7.13 loaded {loaded} converted reference bundles as it loads the bundles, refused {refused} both ways");
    assert!(loaded >= 7, "only {loaded} loaded");
}

#[test]
#[ignore = "needs the 0.7.13 oracle: scripts/oracle-0713.sh"]
fn real_0_7_13_loads_built_chains_with_labels_holes_and_every_integrity() {
    let scratch = ScratchDir::new("oracle-built");
    let mut upper = vec![0u8; 3 << 20];
    upper[5000] = 1;
    upper[(2 << 20) + 7] = 2;
    let mut snaps: Vec<Snapshot> = Vec::new();
    for (i, integrity) in [Integrity::Null, Integrity::Sha256, Integrity::Sparse].into_iter().enumerate() {
        let mut u = upper.clone();
        u[100] = i as u8 + 1;
        let mut s = Snapshot::new(u, integrity).label("i", &i.to_string()).label("é", "ü \"q\"");
        if let Some(p) = snaps.last() {
            s = s.parent(&p.digest());
        }
        snaps.push(s);
    }
    let bundle = scratch.path().join("built.tar");
    fs::write(&bundle, bundle_tar(&snaps)).expect("write");
    assert!(judge(&bundle, scratch.path(), "built chain"), "0.7.13 loads the built chain");
}

#[test]
#[ignore = "needs the 0.7.13 oracle: scripts/oracle-0713.sh"]
fn real_0_7_13_loads_what_convert_to_0_6_2_writes_without_carried_descriptors() {
    // 0.7.13 reads 0.6.2 bundles: a converted one it loads into the snapshots it gives the
    // bundle's `convert --to 0.7` (ids from the 0.6.2 digests). With the carried descriptors
    // (the default) it refuses the extra file, as it refuses any.
    let scratch = ScratchDir::new("oracle-back");
    let dir = support::fixture_dir().join("../microsandbox-0.7.13");
    let home = scratch.path().join("home");
    for name in
        ["single-zstd", "labels", "sparse-upper", "merkle-blake3", "with-image", "chain3-with-parents"]
    {
        let input = dir.join(format!("{name}.msb"));
        let plain = scratch.path().join(format!("{name}.tar.zst"));
        let run = command([
            "convert",
            input.to_str().expect("utf-8"),
            "--to",
            "0.6.2",
            "--no-carry",
            "-q",
            "-o",
            plain.to_str().expect("utf-8"),
        ])
        .output()
        .expect("run");
        assert!(run.status.success(), "{name}: {}", describe(&run));
        assert!(
            judge(&plain, scratch.path(), name),
            "{name}: 0.7.13 loads the converted bundle as its conversion"
        );
        let carried = scratch.path().join(format!("{name}.carried.tar.zst"));
        let run = command([
            "convert",
            input.to_str().expect("utf-8"),
            "--to",
            "0.6.2",
            "-q",
            "-o",
            carried.to_str().expect("utf-8"),
        ])
        .output()
        .expect("run");
        assert!(run.status.success(), "{name}: {}", describe(&run));
        let v = load(&carried, &home);
        assert_eq!(v["ok"], false, "{name}: {v}");
        assert!(v["error"].as_str().unwrap_or("").contains("unsupported path"), "{name}: {v}");
    }
}
