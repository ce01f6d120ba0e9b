//! The G3 (microsandbox 0.7 `.msb`) building blocks against the real 0.7.13 reference archives in
//! `fixtures/microsandbox-0.7.13/`: every archive's members are read with the `tar` crate (zstd
//! archives decompressed first, sparse members at their logical content with their sparse map),
//! then the descriptor parser, the inventory parser, the transport digest and the
//! `msb-file-merkle-blake3-v1` hasher must agree with what the real save recorded; mutations of
//! real descriptors and inventories must be refused with the right code.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;
use snapbundle_core::generation::g3::descriptor::{Descriptor, Integrity, State};
use snapbundle_core::generation::g3::inventory::{Inventory, INVENTORY_PATH};
use snapbundle_core::generation::g3::transport::TransportHasher;
use snapbundle_core::merkle::FileMerkle;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("microsandbox-0.7.13")
}

/// One tar member as stored.
struct Member {
    /// The bytes the archive stores for it (a sparse member's data runs, concatenated).
    stored: Vec<u8>,
    /// The logical content (holes as zeros).
    logical: Vec<u8>,
    /// The old-GNU sparse map, terminator included; empty for a regular member.
    ranges: Vec<(u64, u64)>,
}

struct Archive {
    name: String,
    expect: Value,
    members: BTreeMap<String, Member>,
}

fn decompressed(bytes: Vec<u8>) -> Vec<u8> {
    if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::decode_all(&bytes[..]).expect("zstd")
    } else {
        bytes
    }
}

/// The sparse map of the `S` member whose header is at `header_pos`: four inline slots, then
/// extension blocks of 21 while `isextended` is set.
fn sparse_map(tar: &[u8], header: &tar::Header, header_pos: u64) -> Vec<(u64, u64)> {
    let gnu = header.as_gnu().expect("a sparse member has a GNU header");
    let mut ranges = Vec::new();
    let mut take = |slots: &[tar::GnuSparseHeader]| {
        for s in slots.iter().filter(|s| !s.is_empty()) {
            ranges.push((s.offset().unwrap(), s.length().unwrap()));
        }
    };
    take(&gnu.sparse);
    let mut extended = gnu.is_extended();
    let mut at = header_pos as usize + 512;
    while extended {
        let mut ext = tar::GnuExtSparseHeader::new();
        ext.as_mut_bytes().copy_from_slice(&tar[at..at + 512]);
        take(ext.sparse());
        extended = ext.is_extended();
        at += 512;
    }
    ranges
}

fn read_archive(name: &str) -> Archive {
    let path = fixture_dir().join(format!("{name}.msb"));
    let tar_bytes = decompressed(std::fs::read(&path).unwrap());
    let expect: Value =
        serde_json::from_slice(&std::fs::read(fixture_dir().join(format!("{name}.expect.json"))).unwrap())
            .unwrap();
    let mut members = BTreeMap::new();
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_str().unwrap().to_string();
        let sparse = entry.header().entry_type() == tar::EntryType::GNUSparse;
        let ranges = if sparse {
            sparse_map(&tar_bytes, entry.header(), entry.raw_header_position())
        } else {
            Vec::new()
        };
        let mut logical = Vec::new();
        entry.read_to_end(&mut logical).unwrap();
        let stored = if sparse {
            ranges.iter().flat_map(|&(o, l)| logical[o as usize..(o + l) as usize].to_vec()).collect()
        } else {
            logical.clone()
        };
        members.insert(path, Member { stored, logical, ranges });
    }
    Archive { name: name.to_string(), expect, members }
}

/// Every reference archive the `tar` crate can read (all but the truncated one).
fn archives() -> Vec<Archive> {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(".msb").map(str::to_string))
        .filter(|n| n != "neg-truncated")
        .collect();
    names.sort();
    assert_eq!(names.len(), 15, "{names:?}");
    names.iter().map(|n| read_archive(n)).collect()
}

fn loads(a: &Archive) -> bool {
    a.expect["ok"].as_bool().unwrap()
}

fn inventory_bytes(a: &Archive) -> &[u8] {
    &a.members[INVENTORY_PATH].logical
}

fn descriptors(a: &Archive) -> impl Iterator<Item = (&String, &Member)> {
    a.members.iter().filter(|(p, _)| p.starts_with("snapshots/") && p.ends_with("/snapshot.json"))
}

// ---------------------------------------------------------------------------------------------
// Descriptors
// ---------------------------------------------------------------------------------------------

#[test]
fn every_descriptor_parses_round_trips_and_has_the_inventorys_digest() {
    let mut seen = 0;
    for a in archives() {
        let recorded: BTreeMap<String, String> = a.expect["archive_json"]["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["descriptor_path"].as_str().unwrap().into(),
                    m["descriptor_digest"].as_str().unwrap().into(),
                )
            })
            .collect();
        for (path, m) in descriptors(&a) {
            let d = Descriptor::parse(&m.logical).unwrap_or_else(|e| panic!("{} {path}: {e}", a.name));
            assert_eq!(d.canonical_bytes(), &m.logical[..], "{} {path}: canonical bytes", a.name);
            assert_eq!(Some(&d.digest()), recorded.get(path), "{} {path}: digest", a.name);
            assert_eq!(path, &format!("snapshots/{}/snapshot.json", d.snapshot_id));
            seen += 1;
        }
    }
    assert_eq!(seen, 17, "descriptors in the 15 readable archives");
}

/// The first descriptor of `single-plain`, as text.
fn real_descriptor() -> String {
    let a = read_archive("single-plain");
    let (_, m) = descriptors(&a).next().unwrap();
    String::from_utf8(m.logical.clone()).unwrap()
}

fn descriptor_code(json: &str) -> &'static str {
    Descriptor::parse(json.as_bytes()).map(|_| "ok").unwrap_or_else(|e| e.code())
}

#[test]
fn descriptor_mutations_are_refused_with_their_code() {
    let real = real_descriptor();
    assert_eq!(descriptor_code(&real), "ok");
    let original = Descriptor::parse(real.as_bytes()).unwrap();

    // One field changed: still a descriptor, but another digest.
    let changed = real.replace("\"filesystem\":\"ext4\"", "\"filesystem\":\"xfs\"");
    assert_ne!(changed, real);
    assert_ne!(Descriptor::parse(changed.as_bytes()).unwrap().digest(), original.digest());
    // One field changed to a value the rules refuse.
    assert_eq!(descriptor_code(&real.replacen("\"snap_", "\"snap_X", 1)), "descriptor_bad_id");
    assert_eq!(
        descriptor_code(&real.replace("\"scope\":\"file\"", "\"scope\":\"checkpoint\"")),
        "descriptor_scope"
    );
    // A duplicate key, at the top and inside a map.
    assert_eq!(descriptor_code(&real.replacen('{', "{\"scope\":\"file\",", 1)), "descriptor_duplicate_key");
    assert_eq!(
        descriptor_code(&real.replace("\"extensions\":{}", "\"extensions\":{\"a\":{},\"a\":{}}")),
        "descriptor_duplicate_key"
    );
    // An unknown field, at the top and nested.
    assert_eq!(descriptor_code(&real.replacen('{', "{\"comment\":\"x\",", 1)), "descriptor_unknown_field");
    assert_eq!(
        descriptor_code(&real.replace("\"file_kind\":\"regular\"", "\"file_kind\":\"regular\",\"mode\":1")),
        "descriptor_unknown_field"
    );
    // Key order changed and whitespace added: the same descriptor, the same canonical bytes.
    let value: serde_json::Value = serde_json::from_str(&real).unwrap();
    let mut reordered = String::from("{");
    let obj = value.as_object().unwrap();
    for (i, (k, v)) in obj.iter().rev().enumerate() {
        if i > 0 {
            reordered.push_str(",\n  ");
        }
        reordered.push_str(&format!("{}: {}", serde_json::to_string(k).unwrap(), v));
    }
    reordered.push('}');
    assert_ne!(reordered, real);
    let d = Descriptor::parse(reordered.as_bytes()).unwrap();
    assert_eq!(d.canonical_bytes(), real.as_bytes());
    assert_eq!(d.digest(), original.digest());
    // Extensions nested 64 deep are accepted, 65 refused.
    let nest = |depth: usize| {
        real.replace(
            "\"extensions\":{}",
            &format!("\"extensions\":{{\"x\":{}true{}}}", "[".repeat(depth), "]".repeat(depth)),
        )
    };
    assert_eq!(descriptor_code(&nest(64)), "ok");
    assert_eq!(descriptor_code(&nest(65)), "descriptor_extension_too_deep");
}

// ---------------------------------------------------------------------------------------------
// Inventories
// ---------------------------------------------------------------------------------------------

#[test]
fn every_inventory_of_a_loaded_archive_parses_and_the_noncanonical_one_is_refused() {
    let mut parsed = 0;
    for a in archives() {
        let result = Inventory::parse(inventory_bytes(&a));
        if a.name == "neg-archive-json-noncanonical" {
            assert_eq!(result.unwrap_err().code(), "inventory_not_canonical");
            // The same value, compact, is accepted: only the bytes were wrong.
            let value: Value = serde_json::from_slice(inventory_bytes(&a)).unwrap();
            assert!(serde_json::to_vec(&value).unwrap() != inventory_bytes(&a));
            continue;
        }
        if !loads(&a) {
            // Missing, extra or tampered members: the inventory itself is intact.
            result.unwrap_or_else(|e| panic!("{}: {e}", a.name));
            continue;
        }
        let inv = result.unwrap_or_else(|e| panic!("{}: {e}", a.name));
        let recorded = &a.expect["archive_json"];
        assert_eq!(inv.head, recorded["head"].as_str().unwrap(), "{}", a.name);
        assert_eq!(inv.entries.len(), recorded["entries"].as_array().unwrap().len(), "{}", a.name);
        assert_eq!(inv.members.len(), recorded["members"].as_array().unwrap().len(), "{}", a.name);
        for (e, r) in inv.entries.iter().zip(recorded["entries"].as_array().unwrap()) {
            assert_eq!(e.path, r["path"].as_str().unwrap());
            assert_eq!(e.kind.as_str(), r["kind"].as_str().unwrap());
        }
        parsed += 1;
    }
    assert_eq!(parsed, 11, "the 11 archives 0.7.13 loads");
}

#[test]
fn every_included_entry_has_the_transport_digest_the_hasher_computes() {
    let mut checked = 0;
    let mut sparse = 0;
    for a in archives().iter().filter(|a| a.name != "neg-archive-json-noncanonical") {
        let inv = Inventory::parse(inventory_bytes(a)).unwrap();
        for e in inv.entries.iter().filter(|e| e.included) {
            let Some(m) = a.members.get(&e.path) else {
                assert_eq!(a.name, "neg-member-missing", "{} lacks {}", a.name, e.path);
                continue;
            };
            assert_eq!(e.encoded_size, m.stored.len() as u64, "{} {}", a.name, e.path);
            assert_eq!(e.apparent_size, m.logical.len() as u64, "{} {}", a.name, e.path);
            assert_eq!(e.sparse_ranges, m.ranges, "{} {}", a.name, e.path);
            let mut h =
                TransportHasher::new(e.kind.as_str(), &e.path, e.encoded_size, e.apparent_size, &m.ranges);
            for chunk in m.stored.chunks(4096) {
                h.update(chunk).unwrap();
            }
            let got = h.finish().unwrap();
            let want = e.transport_digest.as_deref().unwrap();
            if a.name == "neg-tampered-payload" && e.path.starts_with("layers/") {
                assert_ne!(got, want, "the flipped byte changes the digest");
            } else {
                assert_eq!(got, want, "{} {}", a.name, e.path);
            }
            checked += 1;
            if !m.ranges.is_empty() {
                sparse += 1;
            }
        }
    }
    assert_eq!(checked, 37, "included entries present in the tar");
    assert!(sparse >= 2, "{sparse} sparse entries");
}

/// `chain3-with-parents`' inventory, as text.
fn real_inventory() -> String {
    let a = read_archive("chain3-with-parents");
    String::from_utf8(inventory_bytes(&a).to_vec()).unwrap()
}

fn inventory_code(json: &str) -> &'static str {
    Inventory::parse(json.as_bytes()).map(|_| "ok").unwrap_or_else(|e| e.code())
}

#[test]
fn inventory_mutations_are_refused_with_their_code() {
    let real = real_inventory();
    assert_eq!(inventory_code(&real), "ok");
    // One field changed.
    assert_eq!(
        inventory_code(&real.replace(
            "\"head\":\"snap_ca2472f3748fe23fcf85123261a75c73\"",
            "\"head\":\"snap_00000000000000000000000000000000\""
        )),
        "inventory_head"
    );
    assert_eq!(
        inventory_code(&real.replacen("\"kind\":\"file-payload\"", "\"kind\":\"image-object\"", 1)),
        "inventory_kind"
    );
    assert_eq!(
        inventory_code(&real.replace("\"completeness\":\"boot-complete\"", "\"completeness\":\"partial\"")),
        "inventory_completeness"
    );
    assert_eq!(
        inventory_code(&real.replace(
            "\"requires\":[\"msb-archive-member-blake3-v1\"]",
            "\"requires\":[\"msb-archive-member-blake3-v1\",\"x\"]"
        )),
        "inventory_requires"
    );
    assert_eq!(inventory_code(&real.replacen("\"sha256:e675", "\"sha256:E675", 1)), "inventory_member");
    // An entry that claims to be omitted in a complete archive.
    assert_eq!(
        inventory_code(&real.replacen("\"included\":true", "\"included\":false", 1)),
        "inventory_dependencies"
    );
    // A duplicate key (the compact serialization would drop it).
    assert_eq!(
        inventory_code(&real.replacen("{\"schema\"", "{\"head\":\"x\",\"schema\"", 1)),
        "inventory_duplicate_key"
    );
    // An unknown field, at the top and in an entry.
    assert_eq!(
        inventory_code(&real.replace(",\"requires\"", ",\"comment\":1,\"requires\"")),
        "inventory_unknown_field"
    );
    assert_eq!(
        inventory_code(&real.replacen("\"included\":true", "\"included\":true,\"mode\":420", 1)),
        "inventory_unknown_field"
    );
    // Key order changed: the same value, no longer the canonical bytes.
    let swapped = real.replacen(
        "\"schema\":\"microsandbox.snapshot-archive/1\",\"head\":\"snap_ca2472f3748fe23fcf85123261a75c73\"",
        "\"head\":\"snap_ca2472f3748fe23fcf85123261a75c73\",\"schema\":\"microsandbox.snapshot-archive/1\"",
        1,
    );
    assert_ne!(swapped, real);
    assert_eq!(inventory_code(&swapped), "inventory_not_canonical");
    assert_eq!(inventory_code(&format!("{real}\n")), "inventory_not_canonical");
    // Extensions are written back in byte order: out of order is not canonical.
    let ext = |e: &str| real.replace("\"extensions\":{}", &format!("\"extensions\":{e}"));
    assert_eq!(inventory_code(&ext("{\"a\":1,\"b\":[2]}")), "ok");
    assert_eq!(inventory_code(&ext("{\"b\":1,\"a\":2}")), "inventory_not_canonical");
    // Nesting past serde_json's 128 levels is not JSON this parser accepts.
    assert_eq!(
        inventory_code(&ext(&format!("{{\"a\":{}0{}}}", "[".repeat(200), "]".repeat(200)))),
        "inventory_parse"
    );
    // The released (0.6.7 – 0.6.16) schema is recognised and refused here.
    assert_eq!(inventory_code("{\"schema\":1}"), "inventory_released_schema");
}

// ---------------------------------------------------------------------------------------------
// msb-file-merkle-blake3-v1
// ---------------------------------------------------------------------------------------------

/// Feeds `m`'s logical content as data runs and holes: a sparse member by its map, a dense one
/// with every all-zero 4 KiB block as a hole.
fn merkle_as_data_and_holes(m: &Member) -> FileMerkle {
    let mut merkle = FileMerkle::new();
    if m.ranges.is_empty() {
        for block in m.logical.chunks(4096) {
            if block.iter().all(|&b| b == 0) {
                merkle.update_zeros(block.len() as u64).unwrap();
            } else {
                merkle.update(block).unwrap();
            }
        }
    } else {
        let mut at = 0u64;
        for &(off, len) in &m.ranges {
            merkle.update_zeros(off - at).unwrap();
            merkle.update(&m.logical[off as usize..(off + len) as usize]).unwrap();
            at = off + len;
        }
        merkle.update_zeros(m.logical.len() as u64 - at).unwrap();
    }
    merkle
}

#[test]
fn every_merkle_integrity_equals_the_root_over_the_layer() {
    let mut checked: BTreeMap<String, usize> = BTreeMap::new();
    for a in archives().iter().filter(|a| loads(a)) {
        for (path, m) in descriptors(a) {
            let d = Descriptor::parse(&m.logical).unwrap();
            let State::File(file) = &d.state else { panic!("{} {path}: file state", a.name) };
            for layer in &file.layers {
                let Some(Integrity::FileMerkleBlake3V1 { root, logical_size, .. }) = &layer.integrity else {
                    continue;
                };
                let layer_path = format!("layers/{}.{}", layer.layer_id, layer.format.as_str());
                let Some(member) = a.members.get(&layer_path) else {
                    // A dependent archive omits its base's layers.
                    assert_eq!(a.name, "dependent-since", "{} lacks {layer_path}", a.name);
                    continue;
                };
                let mut dense = FileMerkle::new();
                dense.update(&member.logical).unwrap();
                let dense = dense.finish();
                assert_eq!(dense.digest(), *root, "{} {layer_path}", a.name);
                assert_eq!(dense.logical_size, *logical_size, "{} {layer_path}", a.name);
                let holey = merkle_as_data_and_holes(member).finish();
                assert_eq!(holey, dense, "{} {layer_path}: as data + holes", a.name);
                *checked.entry(a.name.clone()).or_default() += 1;
            }
        }
    }
    for name in ["merkle-blake3", "stack-base", "stack-child-full"] {
        assert!(checked.get(name).copied().unwrap_or(0) >= 1, "{name}: {checked:?}");
    }
}
