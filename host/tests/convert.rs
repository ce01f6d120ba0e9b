//! `snapbundle convert --to 0.7` on the 0.6.2 reference bundles and on built ones: the `.msb`
//! archive holds what microsandbox 0.7.13 makes of the bundle (ids from the 0.6.2 digests, the
//! descriptors, labels, image files, the uppers' bytes with their holes as sparse members, every
//! original manifest in the inventory) and passes `verify`; a rejected or unrepresentable input
//! writes nothing. (The same archives loaded by the real 0.7.13 `Snapshot::load`:
//! `convert_oracle.rs`.)

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;

use serde_json::Value;
use snapbundle_core::generation::translate;
use snapbundle_core::manifest::{Manifest, SnapshotFormat};
use snapbundle_tests::builder::{bundle_tar, chain, Snapshot};
use snapbundle_tests::fixtures::ScratchDir;
use support::{command, describe, fixtures, tree};

/// One member of a converted archive, read with the `tar` crate.
struct Member {
    /// `S` (old-GNU sparse) or `0`.
    sparse: bool,
    /// The logical content.
    content: Vec<u8>,
}

/// The regular and sparse members of a tar archive (zstd or plain) by path, with their logical
/// content.
fn read_archive(path: &Path) -> BTreeMap<String, Member> {
    let raw = fs::read(path).expect("read archive");
    let tar = if raw.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::decode_all(&raw[..]).expect("zstd")
    } else {
        raw
    };
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(&tar[..]);
    for e in a.entries().expect("entries") {
        let mut e = e.expect("entry");
        let kind = e.header().entry_type();
        if !kind.is_file() && !kind.is_gnu_sparse() {
            continue;
        }
        let name = e.path().expect("path").to_string_lossy().trim_start_matches("./").to_string();
        let mut content = Vec::new();
        e.read_to_end(&mut content).expect("member data");
        out.insert(name, Member { sparse: kind.is_gnu_sparse(), content });
    }
    out
}

/// The members of a 0.6.2 bundle by path.
fn read_bundle(path: &Path) -> BTreeMap<String, Vec<u8>> {
    read_archive(path).into_iter().map(|(k, m)| (k, m.content)).collect()
}

fn convert(input: &Path, output: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "convert",
        input.to_str().expect("utf-8"),
        "-o",
        output.to_str().expect("utf-8"),
        "--json",
        "-q",
    ];
    args.extend_from_slice(extra);
    command(args).output().expect("run snapbundle")
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Checks a converted archive against the 0.6.2 bundle it came from.
fn check_converted(bundle: &Path, msb: &Path, ctx: &str) {
    let input = read_bundle(bundle);
    let members = read_archive(msb);
    let inventory: Value =
        serde_json::from_slice(&members.get("archive.json").expect("archive.json").content)
            .expect("inventory JSON");
    let carried = &inventory["extensions"][translate::LEGACY_MANIFESTS];
    let mut manifests = 0;
    for (path, bytes) in &input {
        if let Some(prefix) = path.strip_suffix("/manifest.json") {
            manifests += 1;
            let m = Manifest::from_bytes(bytes).expect("manifest");
            let f = translate::forward(&m, &m.digest()).expect("representable");
            let d = members
                .get(&f.descriptor_path())
                .unwrap_or_else(|| panic!("{ctx}: no {}", f.descriptor_path()));
            assert_eq!(d.content, f.descriptor, "{ctx}: descriptor bytes");
            assert_eq!(
                carried[&f.snapshot_id].as_str().map(str::as_bytes),
                Some(&bytes[..]),
                "{ctx}: original manifest"
            );
            let upper = &input[&format!("{prefix}/{}", m.upper.file)];
            let layer =
                members.get(&f.layer_path()).unwrap_or_else(|| panic!("{ctx}: no {}", f.layer_path()));
            assert_eq!(layer.content.len(), upper.len(), "{ctx}: layer size");
            assert!(layer.content == *upper, "{ctx}: layer bytes differ from the upper");
            let has_hole = upper.chunks(4096).any(|c| c.iter().all(|&b| b == 0));
            assert_eq!(
                layer.sparse, has_hole,
                "{ctx}: a layer is sparse exactly when its upper has a 4 KiB hole"
            );
            match &f.metadata {
                Some(meta) => {
                    assert_eq!(members.get(&f.metadata_path()).map(|m| &m.content), Some(meta), "{ctx}")
                }
                None => assert!(!members.contains_key(&f.metadata_path()), "{ctx}: metadata without labels"),
            }
        } else if let Some(rest) = path.strip_prefix("cache/") {
            let image =
                members.get(&format!("images/{rest}")).unwrap_or_else(|| panic!("{ctx}: no images/{rest}"));
            assert_eq!(&image.content, bytes, "{ctx}: image file {rest}");
        }
    }
    assert!(manifests > 0, "{ctx}: the bundle has snapshots");
    assert_eq!(
        carried.as_object().map(|o| o.len()),
        Some(manifests),
        "{ctx}: one carried manifest per snapshot"
    );
    let verify = command(["verify", "--json", "-q", msb.to_str().expect("utf-8")]).output().expect("run");
    assert!(verify.status.success(), "{ctx}: the converted archive verifies\n{}", describe(&verify));
    let report = json(&verify)["report"].clone();
    assert_eq!(report["generation"], "0.7", "{ctx}");
}

#[test]
fn every_valid_reference_bundle_converts_to_what_0_7_13_derives() {
    let scratch = ScratchDir::new("convert-fixtures");
    let mut converted = 0;
    for fx in fixtures().into_iter().filter(|f| f.ok()) {
        let out = scratch.path().join(format!("{}.msb", fx.stem()));
        let run = convert(&fx.path, &out, &[]);
        assert!(run.status.success(), "{}: {}", fx.name, describe(&run));
        let v = json(&run);
        let snaps = v["convert"]["snapshots"].as_array().expect("snapshots");
        for s in snaps {
            let digest = s["digest"].as_str().expect("digest");
            assert_eq!(
                s["snapshot_id"].as_str(),
                translate::legacy_snapshot_id(digest).as_deref(),
                "{}",
                fx.name
            );
        }
        assert_eq!(v["convert"]["head"], snaps.last().expect("a snapshot")["snapshot_id"], "{}", fx.name);
        check_converted(&fx.path, &out, &fx.name);
        converted += 1;
    }
    assert!(converted >= 9, "only {converted} valid reference bundles");
}

#[test]
fn a_rejected_bundle_writes_nothing_and_fails_as_verify_does() {
    let scratch = ScratchDir::new("convert-rejected");
    let mut rejected = 0;
    for fx in fixtures().into_iter().filter(|f| !f.ok()) {
        let before = tree(scratch.path());
        let out = scratch.path().join("out").join("x.msb");
        let run = convert(&fx.path, &out, &[]);
        let verify =
            command(["verify", "--json", "-q", fx.path.to_str().expect("utf-8")]).output().expect("run");
        assert_eq!(run.status.code(), verify.status.code(), "{}: {}", fx.name, describe(&run));
        assert_eq!(json(&run)["error"]["code"], json(&verify)["error"]["code"], "{}", fx.name);
        assert_eq!(tree(scratch.path()), before, "{}: nothing written (not even the directory)", fx.name);
        rejected += 1;
    }
    assert!(rejected >= 5, "only {rejected} rejected reference bundles");
}

#[test]
fn a_chain_keeps_its_parent_links_and_stdout_gives_the_same_bytes() {
    let scratch = ScratchDir::new("convert-chain");
    let mut snaps: Vec<Snapshot> = Vec::new();
    for seed in 1..=3 {
        let mut s = Snapshot::small(seed).label("stage", "x");
        if let Some(p) = snaps.last() {
            s = s.parent(&p.digest());
        }
        snaps.push(s);
    }
    let bundle = scratch.path().join("chain.tar");
    fs::write(&bundle, bundle_tar(&snaps)).expect("write bundle");
    let out = scratch.path().join("chain.msb");
    let run = convert(&bundle, &out, &["--name", "web"]);
    assert!(run.status.success(), "{}", describe(&run));
    check_converted(&bundle, &out, "chain");
    let members = read_archive(&out);
    for pair in snaps.windows(2) {
        let child = translate::forward(&pair[1].manifest, &pair[1].digest()).expect("forward");
        let d: Value =
            serde_json::from_slice(&members[&child.descriptor_path()].content).expect("descriptor");
        assert_eq!(d["parent"].as_str(), translate::legacy_snapshot_id(&pair[0].digest()).as_deref());
    }
    let inventory: Value = serde_json::from_slice(&members["archive.json"].content).expect("inventory");
    assert_eq!(inventory["suggested_name"], "web");
    assert_eq!(inventory["head"].as_str(), translate::legacy_snapshot_id(&snaps[2].digest()).as_deref());
    let piped = command(["convert", bundle.to_str().expect("utf-8"), "-o", "-", "--name", "web"])
        .output()
        .expect("run");
    assert!(piped.status.success(), "{}", describe(&piped));
    assert!(piped.stdout == fs::read(&out).expect("read"), "-o - writes the same bytes as -o FILE");
}

#[test]
fn an_unrepresentable_snapshot_is_named_and_nothing_is_written() {
    let scratch = ScratchDir::new("convert-qcow2");
    let mut s = chain(2);
    s[1].manifest.format = SnapshotFormat::Qcow2;
    let bundle = scratch.path().join("qcow2.tar");
    fs::write(&bundle, bundle_tar(&s)).expect("write bundle");
    let verify = command(["verify", "-q", bundle.to_str().expect("utf-8")]).output().expect("run");
    assert!(verify.status.success(), "a qcow2 upper is a valid 0.6.2 bundle\n{}", describe(&verify));
    let before = tree(scratch.path());
    let run = convert(&bundle, &scratch.path().join("qcow2.msb"), &[]);
    assert_eq!(run.status.code(), Some(1), "{}", describe(&run));
    let v = json(&run);
    assert_eq!(v["error"]["code"], "not_representable");
    let msg = v["error"]["message"].as_str().expect("message");
    assert!(
        msg.contains(&s[1].digest()) && msg.contains("qcow2"),
        "names the snapshot and the reason: {msg}"
    );
    assert_eq!(tree(scratch.path()), before, "nothing written");
}

#[test]
fn a_0_7_archive_is_refused_as_a_usage_error() {
    let scratch = ScratchDir::new("convert-msb");
    let input = support::fixture_dir().join("../microsandbox-0.7.13/labels.msb");
    let before = tree(scratch.path());
    let run = convert(&input, &scratch.path().join("x.msb"), &[]);
    assert_eq!(run.status.code(), Some(2), "{}", describe(&run));
    let msg = json(&run)["error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains("already a microsandbox 0.7 archive"), "{msg}");
    assert_eq!(tree(scratch.path()), before, "nothing written");
}

#[test]
fn export_format_msb_writes_what_convert_makes_of_the_exported_bundle() {
    let scratch = ScratchDir::new("export-msb");
    let home = scratch.path().join("home");
    for (fixture, head, extra) in [
        ("b-chain3-with-parents.tar.zst", "sha256:d04c4f19", &["--with-parents"][..]),
        ("d-with-image-2layers.tar.zst", "sha256:c2736092", &["--with-image"][..]),
        ("f-integrity-sparse.tar.zst", "sha256:c3864a0d", &[][..]),
    ] {
        let imported = support::run_import(&support::fixture_dir().join(fixture), &home, &[]);
        assert!(imported.status.success(), "{fixture}: {}", describe(&imported));
        let h = home.to_str().expect("utf-8");
        let bundle = scratch.path().join("exported.tar.zst");
        let direct = scratch.path().join("exported.msb");
        let converted = scratch.path().join("converted.msb");
        let mut args = vec!["export", head, "--home", h, "-q", "-o", bundle.to_str().expect("utf-8")];
        args.extend_from_slice(extra);
        let run = command(&args).output().expect("run");
        assert!(run.status.success(), "{fixture}: {}", describe(&run));
        let run = convert(&bundle, &converted, &[]);
        assert!(run.status.success(), "{fixture}: {}", describe(&run));
        let mut args = vec![
            "export",
            head,
            "--home",
            h,
            "--format",
            "msb",
            "--json",
            "-o",
            direct.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        let run = command(&args).output().expect("run");
        assert!(run.status.success(), "{fixture}: {}", describe(&run));
        assert_eq!(
            json(&run)["export"]["snapshots"],
            json(&convert(&bundle, &converted, &[]))["convert"]["snapshots"]
        );
        assert!(
            fs::read(&direct).expect("read") == fs::read(&converted).expect("read"),
            "{fixture}: the same bytes"
        );
        check_converted(&bundle, &direct, fixture);
    }
}

/// The store `bundle` imports into a fresh home under `scratch` (`tag`), without the index and
/// verification records.
fn imported_store(bundle: &Path, scratch: &Path, tag: &str) -> Vec<(String, support::Node)> {
    let home = scratch.join(format!("home-{tag}"));
    let run = support::run_import(bundle, &home, &[]);
    assert!(run.status.success(), "{tag}: {}", describe(&run));
    support::content(&tree(&home)).into_iter().filter(|(k, _)| !k.starts_with("db")).collect()
}

#[test]
fn a_0_6_2_bundle_through_0_7_and_back_gives_the_original_store() {
    let scratch = ScratchDir::new("roundtrip-062");
    for fx in fixtures().into_iter().filter(|f| f.ok()) {
        let msb = scratch.path().join(format!("{}.msb", fx.name));
        let back = scratch.path().join(format!("{}.back.tar.zst", fx.name));
        let run = convert(&fx.path, &msb, &[]);
        assert!(run.status.success(), "{}: {}", fx.name, describe(&run));
        let run = convert(&msb, &back, &["--to", "0.6.2"]);
        assert!(run.status.success(), "{}: back: {}", fx.name, describe(&run));
        let back_members = read_bundle(&back);
        for (path, bytes) in read_bundle(&fx.path) {
            if path.ends_with("/manifest.json") || path.starts_with("cache/") {
                assert_eq!(back_members.get(&path), Some(&bytes), "{}: {path} byte for byte", fx.name);
            }
        }
        assert!(
            !back_members.keys().any(|k| k.ends_with(translate::CARRIED_DESCRIPTOR)),
            "{}: the original manifests were carried: no 0.7 descriptor needs carrying",
            fx.name
        );
        let original = imported_store(&fx.path, scratch.path(), &format!("{}-a", fx.name));
        let round = imported_store(&back, scratch.path(), &format!("{}-b", fx.name));
        assert_eq!(round, original, "{}: the same store files", fx.name);
    }
}

/// `(snapshot_id, descriptor_digest)` of every snapshot of a `.msb` archive, by `verify --json`.
fn msb_snapshots(path: &Path) -> Vec<(String, String)> {
    let out = command(["verify", "--json", "-q", path.to_str().expect("utf-8")]).output().expect("run");
    assert!(out.status.success(), "{}: {}", path.display(), describe(&out));
    let v = json(&out);
    let mut s: Vec<(String, String)> = v["report"]["msb"]["snapshots"]
        .as_array()
        .expect("msb snapshots")
        .iter()
        .map(|s| {
            (
                s["snapshot_id"].as_str().unwrap_or("").into(),
                s["descriptor_digest"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    s.sort();
    s
}

#[test]
fn a_0_7_archive_through_0_6_2_and_back_keeps_its_snapshots_or_is_refused_with_the_reason() {
    let scratch = ScratchDir::new("roundtrip-07");
    let dir = support::fixture_dir().join("../microsandbox-0.7.13");
    let refused = [
        ("stack-child-full", "layer chain"),
        ("chain3-head-only", "parent"),
        ("dependent-since", "dependent"),
    ];
    let mut kept = 0;
    for name in [
        "single-zstd",
        "single-plain",
        "labels",
        "sparse-upper",
        "merkle-blake3",
        "with-image",
        "chain3-with-parents",
        "stack-base",
    ]
    .into_iter()
    .chain(refused.iter().map(|r| r.0))
    {
        let input = dir.join(format!("{name}.msb"));
        let bundle = scratch.path().join(format!("{name}.tar.zst"));
        let before = tree(scratch.path());
        let run = convert(&input, &bundle, &["--to", "0.6.2"]);
        if let Some((_, why)) = refused.iter().find(|r| r.0 == name) {
            assert_eq!(run.status.code(), Some(1), "{name}: {}", describe(&run));
            let e = &json(&run)["error"];
            assert_eq!(e["code"], "not_representable", "{name}");
            assert!(e["message"].as_str().unwrap_or("").contains(why), "{name}: {e}");
            assert_eq!(tree(scratch.path()), before, "{name}: nothing written");
            continue;
        }
        assert!(run.status.success(), "{name}: {}", describe(&run));
        let verify = command(["verify", "-q", bundle.to_str().expect("utf-8")]).output().expect("run");
        assert!(verify.status.success(), "{name}: the 0.6.2 bundle verifies\n{}", describe(&verify));
        let again = scratch.path().join(format!("{name}.again.msb"));
        let run = convert(&bundle, &again, &[]);
        assert!(run.status.success(), "{name}: {}", describe(&run));
        assert_eq!(
            msb_snapshots(&again),
            msb_snapshots(&input),
            "{name}: the same ids and descriptor digests"
        );
        // Without the carried descriptors, the bundle is exactly the 0.6.2 layout and the way
        // back derives the ids from the 0.6.2 digests, as 0.7.13's own migration does.
        let plain = scratch.path().join(format!("{name}.plain.tar.zst"));
        let run = convert(&input, &plain, &["--to", "0.6.2", "--no-carry"]);
        assert!(run.status.success(), "{name}: {}", describe(&run));
        assert!(!read_bundle(&plain).keys().any(|k| k.ends_with(translate::CARRIED_DESCRIPTOR)), "{name}");
        let derived = scratch.path().join(format!("{name}.derived.msb"));
        assert!(convert(&plain, &derived, &[]).status.success(), "{name}");
        assert_ne!(msb_snapshots(&derived), msb_snapshots(&input), "{name}: derived ids differ");
        kept += 1;
    }
    assert_eq!(kept, 8);
}

#[test]
fn a_tampered_carried_descriptor_is_not_used() {
    // A carried descriptor whose Merkle root does not hold for the upper: the ids are derived.
    let scratch = ScratchDir::new("carried-tampered");
    let input = support::fixture_dir().join("../microsandbox-0.7.13/merkle-blake3.msb");
    let bundle = scratch.path().join("b.tar");
    assert!(convert(&input, &bundle, &["--to", "0.6.2", "--plain-tar"]).status.success());
    let mut members = read_bundle(&bundle);
    let (path, bytes) =
        members.iter_mut().find(|(k, _)| k.ends_with(translate::CARRIED_DESCRIPTOR)).expect("carried");
    let text = String::from_utf8(bytes.clone()).expect("utf-8");
    let root = text.split("\"root\":\"blake3:").nth(1).expect("a Merkle root")[..64].to_string();
    let flipped: String = root.chars().rev().collect();
    *bytes = text.replace(&root, &flipped).into_bytes();
    let path = path.clone();
    let mut t = support::TarWriter::default();
    for (name, data) in &members {
        t.file(name, data, 1_777_636_800);
    }
    let tampered = scratch.path().join("tampered.tar");
    fs::write(&tampered, t.finish()).expect("write");
    assert!(members.contains_key(&path));
    let out = scratch.path().join("out.msb");
    let run = convert(&tampered, &out, &[]);
    assert!(run.status.success(), "{}", describe(&run));
    let ids = msb_snapshots(&out);
    assert_ne!(ids, msb_snapshots(&input), "the tampered descriptor was not used");
}
