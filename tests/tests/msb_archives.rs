//! Whole-archive G3 (microsandbox 0.7 `.msb`) validation through `snapbundle_core::validate` and
//! the push-driven `Validator`, against the real 0.7.13 reference archives in
//! `fixtures/microsandbox-0.7.13/` (each `<case>.expect.json` records what the real
//! `Snapshot::load` did) and mutations of them.

use std::path::{Path, PathBuf};

use serde_json::Value;
use snapbundle_core::generation::g3::transport::TransportHasher;
use snapbundle_core::report::{Generation, LayerIntegrity};
use snapbundle_core::{validate, Limits, Report};
use snapbundle_tests::builder::{read_members, unsigned_checksum, write_members, Header, Tar, TarMember};
use snapbundle_tests::msb::{validate_chunked, XorShift};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("microsandbox-0.7.13")
}

fn names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(".msb").map(str::to_string))
        .collect();
    names.sort();
    assert_eq!(names.len(), 16, "{names:?}");
    names
}

fn archive(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join(format!("{name}.msb"))).unwrap()
}

fn expect(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture_dir().join(format!("{name}.expect.json"))).unwrap())
        .unwrap()
}

/// The decompressed tar stream of a fixture.
fn tar_of(name: &str) -> Vec<u8> {
    let bytes = archive(name);
    if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::decode_all(&bytes[..]).unwrap()
    } else {
        bytes
    }
}

/// The code we give each archive 0.7.13 refuses, and why it is that one.
fn rejected_code(name: &str) -> &'static str {
    match name {
        // 0.7.13: "archive member transport integrity mismatch": the same check, the same verdict.
        "neg-tampered-payload" => "msb_transport_mismatch",
        // 0.7.13: "archive inventory is not canonical".
        "neg-archive-json-noncanonical" => "inventory_not_canonical",
        // 0.7.13: "inventoried entry is missing: layers/…".
        "neg-member-missing" => "msb_member_missing",
        // 0.7.13: "archive contains a non-inventoried file".
        "neg-extra-member" => "msb_member_not_inventoried",
        // 0.7.13: "archive truncated mid-entry"; the shared tar walker names where it ends.
        "neg-truncated" => "truncated",
        other => panic!("no expected code for {other}"),
    }
}

fn check_accepted(name: &str, e: &Value, report: &Report) {
    assert_eq!(report.generation, Generation::G3, "{name}");
    let msb = report.msb.as_ref().expect("a G3 report has an msb section");
    let inv = &e["archive_json"];
    assert_eq!(msb.head, e["head"].as_str().unwrap(), "{name}: head");
    assert_eq!(report.head_prefix, msb.head, "{name}: head_prefix is the head id");
    assert_eq!(report.head, e["head_digest"].as_str().unwrap(), "{name}: head descriptor digest");
    assert_eq!(msb.completeness, inv["completeness"].as_str().unwrap(), "{name}");
    assert_eq!(msb.suggested_name.as_deref(), inv["suggested_name"].as_str(), "{name}");
    assert!(report.snapshots.is_empty() && report.files.is_empty() && report.cache.is_none(), "{name}");
    // Snapshot ids and descriptor digests: the inventory's members, which 0.7.13 installed.
    let mut want: Vec<(String, String)> = inv["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["snapshot_id"].as_str().unwrap().into(), m["descriptor_digest"].as_str().unwrap().into()))
        .collect();
    let mut got: Vec<(String, String)> =
        msb.snapshots.iter().map(|s| (s.snapshot_id.clone(), s.descriptor_digest.clone())).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "{name}: snapshots");
    assert_eq!(msb.snapshots.iter().filter(|s| s.is_head).count(), 1, "{name}: one head");
    for s in e["snapshots"].as_array().into_iter().flatten() {
        let Some(id) = s["snapshot_id"].as_str().or_else(|| s["id"].as_str()) else { continue };
        if let Some(parent) = s.get("parent").and_then(Value::as_str) {
            let mine = msb.snapshots.iter().find(|m| m.snapshot_id == id);
            if let Some(m) = mine {
                assert_eq!(m.parent.as_deref(), Some(parent), "{name}: parent of {id}");
            }
        }
    }
    // Every included layer with a recorded integrity was recomputed.
    for l in &msb.layers {
        match (&l.integrity, l.included) {
            (LayerIntegrity::Verified { .. } | LayerIntegrity::NotRecorded, true) => {}
            (LayerIntegrity::NotIncluded { .. }, false) => {}
            other => panic!("{name}: {} {other:?}", l.path),
        }
    }
    let payloads = inv["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "file-payload").count();
    assert_eq!(msb.layers.len(), payloads, "{name}: layers");
}

#[test]
fn every_reference_archive_gets_the_verdict_of_0_7_13() {
    let mut accepted = 0;
    for name in names() {
        let e = expect(&name);
        let bytes = archive(&name);
        let whole = validate(&bytes, Limits::default());
        match (e["ok"].as_bool().unwrap(), &whole) {
            (true, Ok(report)) => {
                check_accepted(&name, &e, report);
                accepted += 1;
            }
            (false, Err(err)) => {
                assert_eq!(err.code(), rejected_code(&name), "{name}: {err}");
                assert!(!err.to_string().is_empty());
            }
            (ok, r) => panic!("{name}: 0.7.13 ok={ok}, we say {r:?}"),
        }
        // Any chunking gives the same answer.
        for seed in [1u64, 0x9e37_79b9_7f4a_7c15, 42] {
            let chunked = validate_chunked(&bytes, seed);
            match (&whole, chunked) {
                (Ok(a), Ok(b)) => assert_eq!(*a, b, "{name} seed {seed}"),
                (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "{name} seed {seed}"),
                (a, b) => panic!("{name} seed {seed}: {a:?} vs {b:?}"),
            }
        }
    }
    assert_eq!(accepted, 11);
}

#[test]
fn reports_carry_what_the_archives_hold() {
    let report = |name: &str| validate(&archive(name), Limits::default()).unwrap().msb.unwrap();
    let labels = report("labels");
    let head = labels.snapshots.iter().find(|s| s.is_head).unwrap();
    assert_eq!(head.labels.get("owner").map(String::as_str), Some("oracle"));
    assert_eq!(head.labels.get("stage").map(String::as_str), Some("deps"));

    let sparse = report("sparse-upper");
    assert!(sparse.layers[0].sparse && sparse.layers[0].apparent_size == 8 << 20);

    let merkle = report("merkle-blake3");
    assert!(matches!(
        &merkle.layers[0].integrity,
        LayerIntegrity::Verified { algorithm, .. } if algorithm == "msb-file-merkle-blake3-v1"
    ));

    let stack = report("stack-child-full");
    let head = stack.snapshots.iter().find(|s| s.is_head).unwrap();
    assert_eq!(head.layers.len(), 2);
    assert_eq!(head.disk_format, "qcow2");
    assert!(stack.layers.iter().all(|l| matches!(l.integrity, LayerIntegrity::Verified { .. })));

    let dependent = report("dependent-since");
    assert_eq!(dependent.completeness, "dependent");
    assert_eq!(dependent.dependencies, ["layers/layer_416e805a69afa006f1c9ca2eea0fab33.raw"]);

    let chain = report("chain3-with-parents");
    assert_eq!(chain.snapshots.len(), 3);
    assert_eq!(chain.snapshots.iter().filter(|s| s.parent_in_archive).count(), 2);
    let alone = report("chain3-head-only");
    assert!(alone.snapshots[0].parent.is_some() && !alone.snapshots[0].parent_in_archive);

    let image = report("with-image");
    assert_eq!(image.images.len(), 4);
    assert!(image.images.iter().any(|f| f.kind == "image-metadata"));
}

#[test]
fn the_report_serialises_with_the_generation() {
    let g3 = serde_json::to_value(validate(&archive("labels"), Limits::default()).unwrap()).unwrap();
    assert_eq!(g3["generation"], "0.7");
    assert_eq!(g3["msb"]["snapshots"][0]["labels"]["owner"], "oracle");
    let back: Report = serde_json::from_value(g3).unwrap();
    assert_eq!(back.generation, Generation::G3);
}

// ---------------------------------------------------------------------------------------------
// Mutations of real archives
// ---------------------------------------------------------------------------------------------

fn code(tar: &[u8]) -> &'static str {
    match validate(tar, Limits::default()) {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

fn members(name: &str) -> Vec<TarMember> {
    read_members(&tar_of(name))
}

fn position(ms: &[TarMember], prefix: &str) -> usize {
    ms.iter().position(|m| m.name.starts_with(prefix)).unwrap()
}

/// Replaces the inventory's transport digest of `path` by the one of `data` (same length, so the
/// inventory stays canonical).
fn retransport(ms: &mut [TarMember], path: &str, data: &[u8]) {
    let inv_at = position(ms, "archive.json");
    let inv: Value = serde_json::from_slice(&ms[inv_at].data).unwrap();
    let entry = inv["entries"].as_array().unwrap().iter().find(|e| e["path"] == path).unwrap();
    let old = entry["transport_integrity"]["digest"].as_str().unwrap().to_string();
    let kind = entry["kind"].as_str().unwrap();
    let mut h = TransportHasher::new(kind, path, data.len() as u64, data.len() as u64, &[]);
    h.update(data).unwrap();
    let new = h.finish().unwrap();
    let text = String::from_utf8(ms[inv_at].data.clone()).unwrap().replace(&old, &new);
    ms[inv_at].data = text.into_bytes();
}

#[test]
fn the_rewritten_reference_archive_is_still_valid() {
    // The mutations below rewrite members with the test builder; unmutated, that is accepted.
    for name in ["single-plain", "merkle-blake3", "labels"] {
        assert_eq!(code(&write_members(&members(name))), "ok", "{name}");
    }
}

#[test]
fn a_flipped_payload_byte_is_refused() {
    // The transport digest catches it first, as in 0.7.13.
    let mut ms = members("single-plain");
    let at = position(&ms, "layers/");
    ms[at].data[100] ^= 1;
    assert_eq!(code(&write_members(&ms)), "msb_transport_mismatch");

    // With the transport digest recomputed for the new bytes, the recorded payload integrity
    // still catches it: stricter than 0.7.13, which does not recompute it on load.
    let mut ms = members("merkle-blake3");
    let at = position(&ms, "layers/");
    ms[at].data[100] ^= 1;
    let (path, data) = (ms[at].name.clone(), ms[at].data.clone());
    retransport(&mut ms, &path, &data);
    assert_eq!(code(&write_members(&ms)), "msb_payload_integrity_mismatch");
}

#[test]
fn a_dropped_member_is_refused() {
    for prefix in ["layers/", "snapshots/snap_1f11c805d6c1f07632b5507a0f6ee2ff/metadata.json"] {
        let mut ms = members("labels");
        ms.remove(position(&ms, prefix));
        assert_eq!(code(&write_members(&ms)), "msb_member_missing", "{prefix}");
    }
    let mut ms = members("labels");
    ms.remove(position(&ms, "archive.json"));
    assert_eq!(code(&write_members(&ms)), "msb_no_inventory");
}

#[test]
fn an_unlisted_member_is_refused() {
    let mut ms = members("single-plain");
    let at = position(&ms, "archive.json");
    ms.insert(
        at,
        TarMember { offset: 0, name: "images/vmdk/extra.vmdk".into(), type_flag: b'0', data: vec![1; 6] },
    );
    assert_eq!(code(&write_members(&ms)), "msb_member_not_inventoried");
}

#[test]
fn a_noncanonical_inventory_is_refused() {
    let mut ms = members("single-plain");
    let at = position(&ms, "archive.json");
    ms[at].data.push(b'\n');
    assert_eq!(code(&write_members(&ms)), "inventory_not_canonical");
}

#[test]
fn an_inventory_that_is_not_last_is_refused() {
    let mut ms = members("single-plain");
    let inv = ms.remove(position(&ms, "archive.json"));
    let at = position(&ms, "layers/");
    ms.insert(at, inv);
    assert_eq!(code(&write_members(&ms)), "msb_inventory_not_last");
}

#[test]
fn a_g1_member_in_a_g3_archive_is_refused() {
    let mut ms = members("single-plain");
    let at = position(&ms, "layers/");
    ms.insert(
        at,
        TarMember {
            offset: 0,
            name: "sha256-0123456789abcdef/manifest.json".into(),
            type_flag: b'0',
            data: b"{}".to_vec(),
        },
    );
    assert_eq!(code(&write_members(&ms)), "unexpected_member");
    // A G1 cache member: 0.7.13 derives an image kind for its transport digest, but places only
    // `images/<kind>/<file>` (`inventory_entry_target`), so it is refused at its header.
    let mut ms = members("single-plain");
    let at = position(&ms, "layers/");
    ms.insert(
        at,
        TarMember { offset: 0, name: "cache/vmdk/a.vmdk".into(), type_flag: b'0', data: vec![0; 4] },
    );
    assert_eq!(code(&write_members(&ms)), "unexpected_member");
}

#[test]
fn a_descriptor_that_differs_from_the_inventory_is_refused() {
    // One byte of the descriptor changed (the digest changes), sizes kept, transport recomputed.
    let mut ms = members("single-plain");
    let at = position(&ms, "snapshots/");
    let text = String::from_utf8(ms[at].data.clone()).unwrap().replace("\"ext4\"", "\"xfs4\"");
    ms[at].data = text.into_bytes();
    let (path, data) = (ms[at].name.clone(), ms[at].data.clone());
    retransport(&mut ms, &path, &data);
    // The inventory's sha256 of the descriptor entry is checked first (0.7.13's order).
    assert_eq!(code(&write_members(&ms)), "msb_sha256_mismatch");
}

#[test]
fn a_writing_sink_gets_every_member_of_a_valid_archive_as_events() {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    for name in
        ["single-zstd", "sparse-upper", "labels", "with-image", "chain3-with-parents", "merkle-blake3"]
    {
        let bytes = archive(name);
        let mut sink = snapbundle_tests::fixtures::RecordingSink::new();
        for chunk in [1usize, 4096, 1 << 20] {
            sink = snapbundle_tests::fixtures::RecordingSink::new();
            let r = snapbundle_tests::fixtures::validate_chunked(&bytes, chunk, &mut sink);
            assert!(r.is_ok(), "{name}: {r:?}");
            assert!(sink.problems.is_empty(), "{name} by {chunk}: {:?}", sink.problems);
        }
        let tar = tar_of(name);
        let mut a = tar::Archive::new(&tar[..]);
        let mut want = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut content = Vec::new();
            e.read_to_end(&mut content).unwrap();
            want.push((path, content.len() as u64, hex(&Sha256::digest(&content))));
        }
        let got: Vec<(String, u64, String)> =
            sink.files.iter().map(|f| (f.path.clone(), f.end_size, f.sha256.clone())).collect();
        assert_eq!(got, want, "{name}: every member, in order, with its logical content");
        if name == "sparse-upper" {
            assert!(sink.files.iter().any(|f| f.hole_bytes > 0), "the sparse layer's holes come as holes");
        }
    }
}

#[test]
fn a_rejected_archive_ends_with_the_error_after_its_events() {
    // Events stream as members pass; the verdict comes at the end (a writer discards what it
    // staged): every member's events came, then the archive is refused.
    let mut sink = snapbundle_tests::fixtures::RecordingSink::new();
    let err = snapbundle_tests::fixtures::validate_chunked(&archive("neg-tampered-payload"), 4096, &mut sink);
    assert_eq!(err.map(|_| ()).unwrap_err().code(), "msb_transport_mismatch");
    assert!(sink.files.iter().any(|f| f.path.starts_with("layers/")), "the payload's events came first");
    assert!(
        sink.files.last().is_some_and(|f| f.path == "archive.json"),
        "the inventory parses by itself; the mismatch is found when the archive is concluded"
    );
}

#[test]
fn a_second_zstd_frame_is_refused() {
    // 0.7.13 decodes only the first frame: the tar it would read is not the one validated.
    let tar = tar_of("single-plain");
    let (a, b) = tar.split_at(4096);
    let mut two = zstd::stream::encode_all(a, 3).unwrap();
    two.extend(zstd::stream::encode_all(b, 3).unwrap());
    assert_eq!(code(&two), "msb_zstd_frames");
    assert_eq!(code(&zstd::stream::encode_all(&tar[..], 3).unwrap()), "ok");
}

#[test]
fn hostile_shapes_are_refused_at_their_member() {
    // A directory entry: 0.7 writes none.
    let mut ms = members("single-plain");
    let at = position(&ms, "layers/");
    ms.insert(at, TarMember { offset: 0, name: "layers/".into(), type_flag: b'5', data: Vec::new() });
    assert_eq!(code(&write_members(&ms)), "unexpected_member");
    // A descriptor under another snapshot's directory.
    let mut ms = members("single-plain");
    let at = position(&ms, "snapshots/");
    ms[at].name = "snapshots/snap_00000000000000000000000000000000/snapshot.json".into();
    assert_eq!(code(&write_members(&ms)), "msb_descriptor_path");
    // Another file in a snapshot directory.
    let mut ms = members("single-plain");
    let at = position(&ms, "layers/");
    let name = ms[0].name.replace("snapshot.json", "notes.txt");
    ms.insert(at, TarMember { offset: 0, name, type_flag: b'0', data: b"x".to_vec() });
    assert_eq!(code(&write_members(&ms)), "unexpected_member");
    // A checkpoint member of no snapshot of the archive.
    let mut ms = members("single-plain");
    let at = position(&ms, "layers/");
    let name = "checkpoints/c/checkpoint.json".to_string();
    ms.insert(at, TarMember { offset: 0, name, type_flag: b'0', data: b"{}".to_vec() });
    assert_eq!(code(&write_members(&ms)), "msb_closure_binding");
    // A checkpoint member of a file-scope snapshot.
    let mut ms = members("single-plain");
    let at = position(&ms, "layers/");
    let snap = ms[0].name.split('/').nth(1).unwrap().to_string();
    let name = format!("checkpoints/{snap}/checkpoint.json");
    ms.insert(at, TarMember { offset: 0, name, type_flag: b'0', data: b"{}".to_vec() });
    assert_eq!(code(&write_members(&ms)), "msb_closure_binding");
    // A path component the portable-name rules refuse.
    let mut ms = members("single-plain");
    let at = position(&ms, "layers/");
    ms.insert(at, TarMember { offset: 0, name: "images/vmdk/a:b".into(), type_flag: b'0', data: vec![0; 4] });
    assert_eq!(code(&write_members(&ms)), "unsafe_path");
}

// ---------------------------------------------------------------------------------------------
// Archives re-sealed after an edit: the inventory rewritten to list the members as they are, so
// only the rule under test is broken
// ---------------------------------------------------------------------------------------------

use snapbundle_core::generation::g3::descriptor::{Descriptor, Integrity, State};
use snapbundle_core::generation::g3::inventory::EntryKind;

fn integrity_json(i: &Option<Integrity>) -> String {
    match i {
        None => "null".into(),
        Some(Integrity::Sha256 { digest }) => format!("{{\"algorithm\":\"sha256\",\"digest\":\"{digest}\"}}"),
        Some(Integrity::SparseSha256V1 { digest }) => {
            format!("{{\"algorithm\":\"msb-sparse-sha256-v1\",\"digest\":\"{digest}\"}}")
        }
        Some(Integrity::FileMerkleBlake3V1 { root, logical_size, leaf_size }) => format!(
            "{{\"algorithm\":\"msb-file-merkle-blake3-v1\",\"root\":\"{root}\",\"logical_size\":{logical_size},\"leaf_size\":{leaf_size}}}"
        ),
    }
}

/// Overrides of one entry when sealing.
#[derive(Default)]
struct Tweak {
    /// Path → owner_snapshot.
    owner: Vec<(String, String)>,
    /// Path → integrity JSON.
    integrity: Vec<(String, String)>,
}

/// Replaces (or appends) `archive.json` by the canonical inventory of the other members (dense
/// members only), with `head` as head.
fn seal(ms: &mut Vec<TarMember>, head: &str, tweak: &Tweak) {
    ms.retain(|m| m.name != "archive.json");
    let descriptors: Vec<Descriptor> = ms
        .iter()
        .filter(|m| m.name.ends_with("/snapshot.json"))
        .map(|m| Descriptor::parse(&m.data).unwrap())
        .collect();
    let mut members: Vec<&Descriptor> = descriptors.iter().collect();
    members.sort_by(|a, b| a.snapshot_id.cmp(&b.snapshot_id));
    let members: Vec<String> = members
        .iter()
        .map(|d| {
            format!(
                "{{\"snapshot_id\":\"{}\",\"descriptor_path\":\"snapshots/{}/snapshot.json\",\"descriptor_digest\":\"{}\"}}",
                d.snapshot_id,
                d.snapshot_id,
                d.digest()
            )
        })
        .collect();
    let mut sorted: Vec<&TarMember> = ms.iter().collect();
    sorted.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let mut entries = Vec::new();
    for m in sorted {
        let kind = EntryKind::of_path(&m.name).unwrap();
        let layer = descriptors.iter().find_map(|d| {
            let State::File(f) = &d.state else { return None };
            f.layers
                .iter()
                .find(|l| format!("layers/{}.{}", l.layer_id, l.format.as_str()) == m.name)
                .map(|l| (d.snapshot_id.clone(), l.integrity.clone()))
        });
        let (owner, integrity) = match kind {
            EntryKind::FilePayload => {
                let (o, i) = layer.unwrap_or((head.to_string(), None));
                (format!("\"{o}\""), integrity_json(&i))
            }
            EntryKind::ImageMetadata | EntryKind::ImageObject => {
                ("null".to_string(), integrity_json(&Some(Integrity::Sha256 { digest: sha256_of(&m.data) })))
            }
            _ => {
                let id = m.name.split('/').nth(1).unwrap();
                (format!("\"{id}\""), integrity_json(&Some(Integrity::Sha256 { digest: sha256_of(&m.data) })))
            }
        };
        let owner =
            tweak.owner.iter().find(|(p, _)| *p == m.name).map(|(_, o)| format!("\"{o}\"")).unwrap_or(owner);
        let integrity =
            tweak.integrity.iter().find(|(p, _)| *p == m.name).map(|(_, i)| i.clone()).unwrap_or(integrity);
        let len = m.data.len() as u64;
        let mut t = TransportHasher::new(kind.as_str(), &m.name, len, len, &[]);
        t.update(&m.data).unwrap();
        entries.push(format!(
            "{{\"path\":\"{}\",\"owner_snapshot\":{owner},\"kind\":\"{}\",\"included\":true,\"encoded_size\":{len},\"apparent_size\":{len},\"sparse_ranges\":[],\"integrity\":{integrity},\"transport_integrity\":{{\"algorithm\":\"msb-archive-member-blake3-v1\",\"digest\":\"{}\"}}}}",
            m.name,
            kind.as_str(),
            t.finish().unwrap()
        ));
    }
    let inventory = format!(
        "{{\"schema\":\"microsandbox.snapshot-archive/1\",\"head\":\"{head}\",\"completeness\":\"boot-complete\",\"members\":[{}],\"entries\":[{}],\"limits\":{{\"entry_count\":{},\"encoded_bytes\":0,\"apparent_bytes\":0}},\"extensions\":{{}},\"requires\":[\"msb-archive-member-blake3-v1\"]}}",
        members.join(","),
        entries.join(","),
        entries.len()
    );
    ms.push(TarMember {
        offset: 0,
        name: "archive.json".into(),
        type_flag: b'0',
        data: inventory.into_bytes(),
    });
}

fn sha256_of(bytes: &[u8]) -> String {
    snapbundle_tests::builder::sha256_digest(bytes)
}

const C0: &str = "snap_e8c793ef327ce986b153611af7514833";
const C2: &str = "snap_ca2472f3748fe23fcf85123261a75c73";

/// `chain3-with-parents`' members with the descriptor of `id` edited by `edit` (then
/// canonicalised).
fn chain_with(id: &str, edit: impl Fn(String) -> String) -> Vec<TarMember> {
    let mut ms = members("chain3-with-parents");
    let at = position(&ms, &format!("snapshots/{id}/snapshot.json"));
    let text = edit(String::from_utf8(ms[at].data.clone()).unwrap());
    ms[at].data = Descriptor::parse(text.as_bytes()).unwrap().canonical_bytes().to_vec();
    ms
}

#[test]
fn a_sealed_archive_is_valid() {
    // (Not the archives with sparse members: the sealer writes dense ones.)
    for name in ["chain3-with-parents", "labels", "with-image", "merkle-blake3"] {
        let mut ms = members(name);
        let head = expect(name)["head"].as_str().unwrap().to_string();
        seal(&mut ms, &head, &Tweak::default());
        assert_eq!(code(&write_members(&ms)), "ok", "{name}");
    }
}

#[test]
fn a_parent_cycle_is_refused() {
    // c0 was the root; its parent becomes c2: c0 → c2 → c1 → c0.
    let mut ms = chain_with(C0, |t| t.replace("\"parent\":null", &format!("\"parent\":\"{C2}\"")));
    seal(&mut ms, C2, &Tweak::default());
    assert_eq!(code(&write_members(&ms)), "msb_parent_cycle");
}

#[test]
fn layers_and_payloads_must_match() {
    // A payload no descriptor lists.
    let mut ms = members("chain3-with-parents");
    let at = position(&ms, "archive.json");
    let name = "layers/layer_00000000000000000000000000000001.raw".to_string();
    ms.insert(at, TarMember { offset: 0, name, type_flag: b'0', data: vec![7; 512] });
    seal(&mut ms, C2, &Tweak::default());
    assert_eq!(code(&write_members(&ms)), "msb_layer_binding");

    // A descriptor layer without a payload entry.
    let mut ms = members("chain3-with-parents");
    ms.remove(position(&ms, "layers/layer_555c876eeb93dc7ccb4656d8f09d923f.raw"));
    seal(&mut ms, C2, &Tweak::default());
    assert_eq!(code(&write_members(&ms)), "msb_layer_binding");

    // A payload entry owned by a snapshot whose descriptor does not list it.
    let mut ms = members("chain3-with-parents");
    let tweak = Tweak {
        owner: vec![("layers/layer_555c876eeb93dc7ccb4656d8f09d923f.raw".into(), C0.into())],
        ..Tweak::default()
    };
    seal(&mut ms, C2, &tweak);
    assert_eq!(code(&write_members(&ms)), "msb_layer_binding");

    // A payload entry whose integrity is not its descriptor layer's (here: none recorded there).
    let mut ms = members("chain3-with-parents");
    let path = "layers/layer_555c876eeb93dc7ccb4656d8f09d923f.raw";
    let digest = sha256_of(&ms[position(&ms, path)].data);
    let tweak = Tweak {
        integrity: vec![(path.into(), integrity_json(&Some(Integrity::Sha256 { digest })))],
        ..Tweak::default()
    };
    seal(&mut ms, C2, &tweak);
    assert_eq!(code(&write_members(&ms)), "msb_layer_binding");
}

#[test]
fn a_recorded_sha256_layer_integrity_is_recomputed() {
    // c2's layer records `sha256` or `msb-sparse-sha256-v1`: right is accepted, wrong refused
    // (0.7.13 would load it).
    let ms = members("chain3-with-parents");
    let layer = &ms[position(&ms, "layers/layer_555c876eeb93dc7ccb4656d8f09d923f.raw")].data;
    let with = |algorithm: &str, digest: &str| {
        let mut ms = chain_with(C2, |t| {
            t.replace(
                "\"file_kind\":\"regular\",\"integrity\":null",
                &format!(
                    "\"file_kind\":\"regular\",\"integrity\":{{\"algorithm\":\"{algorithm}\",\"digest\":\"{digest}\"}}"
                ),
            )
        });
        seal(&mut ms, C2, &Tweak::default());
        code(&write_members(&ms))
    };
    let wrong = format!("sha256:{}", "0".repeat(64));
    assert_eq!(with("sha256", &sha256_of(layer)), "ok");
    assert_eq!(with("sha256", &wrong), "msb_payload_integrity_mismatch");
    assert_eq!(with("msb-sparse-sha256-v1", &snapbundle_tests::builder::sparse_digest(layer)), "ok");
    assert_eq!(with("msb-sparse-sha256-v1", &sha256_of(layer)), "msb_payload_integrity_mismatch");
}

#[test]
fn a_payload_before_its_descriptor_is_still_checked() {
    // 0.7 writes each descriptor before its layers; the order is not a rule. The payload is then
    // hashed for every algorithm and its integrity still checked.
    let sha = |ms: &[TarMember], p: &str| sha256_of(&ms[position(ms, p)].data);
    let path = "layers/layer_555c876eeb93dc7ccb4656d8f09d923f.raw";
    for (good, want) in [(true, "ok"), (false, "msb_payload_integrity_mismatch")] {
        let mut ms = chain_with(C2, |t| t);
        let digest = if good { sha(&ms, path) } else { format!("sha256:{}", "0".repeat(64)) };
        let at = position(&ms, &format!("snapshots/{C2}/snapshot.json"));
        let text = String::from_utf8(ms[at].data.clone()).unwrap().replace(
            "\"file_kind\":\"regular\",\"integrity\":null",
            &format!("\"file_kind\":\"regular\",\"integrity\":{{\"algorithm\":\"sha256\",\"digest\":\"{digest}\"}}"),
        );
        ms[at].data = Descriptor::parse(text.as_bytes()).unwrap().canonical_bytes().to_vec();
        let layer = ms.remove(position(&ms, path));
        ms.insert(1, layer);
        seal(&mut ms, C2, &Tweak::default());
        assert_eq!(code(&write_members(&ms)), want);
    }
}

#[test]
fn metadata_must_belong_to_a_snapshot_of_the_archive() {
    let mut ms = members("labels");
    let at = position(&ms, "snapshots/snap_1f11c805d6c1f07632b5507a0f6ee2ff/metadata.json");
    let mut extra = ms[at].clone();
    extra.name = "snapshots/snap_00000000000000000000000000000000/metadata.json".into();
    ms.insert(at + 1, extra);
    seal(&mut ms, "snap_1f11c805d6c1f07632b5507a0f6ee2ff", &Tweak::default());
    assert_eq!(code(&write_members(&ms)), "msb_metadata");
    // Malformed labels are refused at the member.
    let mut ms = members("labels");
    let at = position(&ms, "snapshots/snap_1f11c805d6c1f07632b5507a0f6ee2ff/metadata.json");
    ms[at].data = br#"{"schema":"microsandbox.snapshot-metadata/1","labels":{"a":1}}"#.to_vec();
    assert_eq!(code(&write_members(&ms)), "msb_metadata");
}

#[test]
fn random_damage_never_panics_and_every_chunking_agrees() {
    // Byte flips, overwrites and truncations of every plain reference archive: each gives a verdict
    // (never a panic) and the same one whole and chunked.
    let mut rng = XorShift(0x5eed);
    let mut refused = 0;
    for name in names() {
        let tar = tar_of(&name);
        for _ in 0..40 {
            let mut bytes = tar.clone();
            match rng.next_u64() % 3 {
                0 => {
                    let at = (rng.next_u64() % bytes.len() as u64) as usize;
                    bytes[at] ^= 1 << (rng.next_u64() % 8);
                }
                1 => {
                    let at = (rng.next_u64() % bytes.len() as u64) as usize;
                    let end = (at + 1 + (rng.next_u64() % 64) as usize).min(bytes.len());
                    bytes[at..end].fill(rng.next_u64() as u8);
                }
                _ => bytes.truncate((rng.next_u64() % bytes.len() as u64) as usize),
            }
            let whole = validate(&bytes, Limits::default());
            let chunked = validate_chunked(&bytes, rng.next_u64());
            match (&whole, &chunked) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{name}"),
                (Err(a), Err(b)) => {
                    assert_eq!(a.code(), b.code(), "{name}");
                    refused += 1;
                }
                _ => panic!("{name}: {whole:?} vs {chunked:?}"),
            }
        }
    }
    assert!(refused > 300, "{refused}");
}

/// `name`'s tar with `archive.json` replaced by `edit` of it, every other member byte for byte
/// (sparse members included).
fn with_inventory(name: &str, edit: impl Fn(String) -> String) -> Vec<u8> {
    let tar = tar_of(name);
    let ms = read_members(&tar);
    let inv = &ms[position(&ms, "archive.json")];
    let text = edit(String::from_utf8(inv.data.clone()).unwrap());
    snapbundle_tests::builder::Tar::new()
        .raw(&tar[..inv.offset])
        .file("archive.json", text.as_bytes())
        .end()
        .build()
}

#[test]
fn sparse_members_must_match_their_entry() {
    assert_eq!(code(&with_inventory("sparse-upper", |t| t)), "ok");
    // The map without GNU's end marker: another map (and another transport digest).
    assert_eq!(
        code(&with_inventory("sparse-upper", |t| t.replace(",[8388608,0]", ""))),
        "msb_sparse_map_mismatch"
    );
    assert_eq!(
        code(&with_inventory("sparse-upper", |t| t
            .replace("\"apparent_size\":8388608", "\"apparent_size\":8388609"))),
        "msb_size_mismatch"
    );
    assert_eq!(
        code(&with_inventory("sparse-upper", |t| t
            .replace("\"encoded_size\":20480", "\"encoded_size\":20481"))),
        "msb_size_mismatch"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `labels`' tar stream with its first member's name given as a GNU long name, the header's own
/// name field cut to its first `keep` bytes (0.7.13's all-NUL `uid`/`gid` left as they are).
fn first_member_long_named(keep: usize) -> Vec<u8> {
    let tar = tar_of("labels");
    let (first, rest) = tar.split_at(512);
    let name_len = first[..100].iter().position(|&b| b == 0).unwrap_or(100);
    let name = std::str::from_utf8(&first[..name_len]).unwrap();
    let mut header: [u8; 512] = first.try_into().unwrap();
    header[keep..100].fill(0);
    let sum = unsigned_checksum(&header);
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = Tar::new().long_name(name).build();
    out.extend_from_slice(&header);
    out.extend_from_slice(rest);
    out
}

#[test]
fn unset_ids_are_judged_on_the_long_name_of_the_member() {
    // The generation is chosen on the resolved long name; whether 0.7.13's all-NUL uid/gid
    // may stand is decided on that same name, however short the header's own name field is.
    for keep in [9, 48, 100] {
        assert_eq!(code(&first_member_long_named(keep)), "ok", "name field cut to {keep} bytes");
    }
    // A 0.6.2 member's long name does not open a later generation: its ids must be set.
    let name = "sha256-0123456789abcdef/manifest.json";
    let h = Header::file(&name[..9], 2).raw(108, &[0; 8]);
    let tar = Tar::new().long_name(name).member(&h, b"{}").end().build();
    assert_eq!(code(&tar), "bad_numeric_field");
}
