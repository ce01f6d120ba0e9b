//! Checkpoint-scope snapshots and their members (`checkpoints/<snap_id>/…`), owned volumes and
//! memory dependencies, on archives built by `snapbundle_tests::msb` from a reading of 0.7.13's
//! writer (no real 0.7.13 checkpoint archive exists: capturing one needs a running VM).

use serde_json::json;
use snapbundle_core::{validate, Limits, Report};
use snapbundle_tests::msb::{
    checkpoint_archive, file_snapshot, file_snapshot_with_owned_disk, find, mount_id, object_id, object_path,
    seal, validate_chunked, Closure, Member, CHECKPOINT_ID, FILE_SNAP, GUEST, SNAP,
};

fn run(bytes: &[u8]) -> Result<Report, snapbundle_core::Error> {
    validate(bytes, Limits::default())
}

fn code(bytes: &[u8]) -> String {
    match run(bytes) {
        Ok(_) => "ok".into(),
        Err(e) => e.code().to_string(),
    }
}

fn sealed(ms: &[Member]) -> Vec<u8> {
    seal(ms, SNAP, None)
}

#[test]
fn a_checkpoint_archive_is_valid_and_reported() {
    let r = run(&checkpoint_archive()).unwrap();
    let m = r.msb.unwrap();
    assert_eq!(m.snapshots.len(), 1);
    assert_eq!(m.snapshots[0].scope, "checkpoint");
    assert_eq!(m.snapshots[0].owned_volumes, 1);
    let c = &m.checkpoints[0];
    assert_eq!((c.snapshot_id.as_str(), c.checkpoint_id.as_str()), (SNAP, CHECKPOINT_ID));
    assert_eq!(c.checkpoint_root, object_id(&Closure::default().root()));
    // Execution state, memory extent, device state, memory manifest, disk generation.
    assert_eq!((c.objects, c.disk_layers, c.owned_payloads, c.not_included), (5, 1, 2, 0));
    // checkpoint.json, 5 objects, 1 layer, 2 owned payloads: each with a verified digest.
    assert_eq!(m.closure.len(), 9);
    assert!(m.closure.iter().all(|x| x.included && x.verified.is_some()), "{:?}", m.closure);
    let layer = m.closure.iter().find(|x| x.kind == "checkpoint-disk-layer").unwrap();
    assert!(layer.verified.as_deref().unwrap().starts_with("blake3:"));
}

#[test]
fn an_object_whose_content_is_not_its_name_is_refused() {
    let mut ms = Closure::default().members();
    let c = Closure::default();
    find(&mut ms, &object_path(SNAP, &object_id(&c.execution))).data[0] ^= 1;
    assert_eq!(code(&sealed(&ms)), "msb_content_digest_mismatch");
}

#[test]
fn a_member_owned_by_another_snapshot_is_refused() {
    let mut ms = Closure::default().members();
    ms.extend(file_snapshot(&[1; 4096], 4096));
    find(&mut ms, &format!("checkpoints/{SNAP}/layers/base.raw")).owner = Some(FILE_SNAP.into());
    assert_eq!(code(&sealed(&ms)), "msb_closure_binding");
}

#[test]
fn a_checkpoint_member_of_a_file_scope_snapshot_is_refused() {
    let mut ms = file_snapshot(&[1; 4096], 4096);
    let c = Closure::default();
    ms.push(Member {
        path: format!("checkpoints/{FILE_SNAP}/checkpoint.json"),
        data: c.root(),
        owner: Some(FILE_SNAP.into()),
        kind: "checkpoint-root".into(),
        integrity: "null".into(),
        included: true,
    });
    assert_eq!(code(&seal(&ms, FILE_SNAP, None)), "msb_closure_binding");
}

#[test]
fn a_kind_that_is_not_the_paths_is_refused() {
    let mut ms = Closure::default().members();
    find(&mut ms, &format!("checkpoints/{SNAP}/layers/base.raw")).kind = "owned-disk-layer".into();
    assert_eq!(code(&sealed(&ms)), "inventory_kind");
}

#[test]
fn a_referenced_member_without_an_entry_is_refused() {
    let mut ms = Closure::default().members();
    let device = object_path(SNAP, &object_id(&Closure::default().device));
    ms.retain(|m| m.path != device);
    assert_eq!(code(&sealed(&ms)), "msb_closure_member_missing");
}

#[test]
fn an_unreferenced_member_is_refused() {
    let mut ms = Closure::default().members();
    let extra = b"an object nothing names".to_vec();
    let at = ms.iter().position(|m| m.path.contains("/objects/")).unwrap();
    ms.insert(
        at,
        Member {
            path: object_path(SNAP, &object_id(&extra)),
            data: extra,
            owner: Some(SNAP.into()),
            kind: "checkpoint-object".into(),
            integrity: "null".into(),
            included: true,
        },
    );
    // The descriptor stays first; the closure in path order, as 0.7.13 writes it.
    ms[1..].sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(code(&sealed(&ms)), "msb_closure_member_unreferenced");
}

#[test]
fn a_checkpoint_json_that_is_not_the_descriptors_root_is_refused() {
    // A valid checkpoint.json, but not the one the descriptor's checkpoint_root names.
    let mut ms = Closure::default().members();
    let root = String::from_utf8(Closure::default().root()).unwrap();
    let edited = root.replace("\"full-snapshot\"", "\"park\"");
    find(&mut ms, &format!("checkpoints/{SNAP}/checkpoint.json")).data = edited.into_bytes();
    assert_eq!(code(&sealed(&ms)), "msb_content_digest_mismatch");
}

#[test]
fn owned_payloads_and_disk_layers_are_bound_to_their_digests() {
    let owned = format!("checkpoints/{SNAP}/owned/{}/directory.bin", mount_id(GUEST));
    let mut ms = Closure::default().members();
    find(&mut ms, &owned).data[0] ^= 1;
    assert_eq!(code(&sealed(&ms)), "msb_content_digest_mismatch");
    let mut ms = Closure::default().members();
    find(&mut ms, &format!("checkpoints/{SNAP}/layers/base.raw")).data[0] ^= 1;
    assert_eq!(code(&sealed(&ms)), "msb_content_digest_mismatch");
    let mut ms = Closure::default().members();
    find(&mut ms, &format!("checkpoints/{SNAP}/layers/base.raw")).data.push(0);
    assert_eq!(code(&sealed(&ms)), "msb_closure_binding");
}

#[test]
fn the_descriptor_and_checkpoint_owned_volumes_must_agree() {
    // The descriptor's owned volumes edited (still valid): it no longer equals checkpoint.json's.
    let c = Closure::default();
    let mut ms = c.members();
    let text = String::from_utf8(c.descriptor()).unwrap().replace("\"private\"", "\"mirror\"");
    let d = find(&mut ms, &format!("snapshots/{SNAP}/snapshot.json"));
    d.data = text.into_bytes();
    d.integrity = format!("{{\"algorithm\":\"sha256\",\"digest\":\"{}\"}}", object_id(&d.data));
    assert_eq!(code(&sealed(&ms)), "msb_closure_binding");
}

#[test]
fn a_checkpoint_member_before_its_root_is_refused() {
    let mut ms = Closure::default().members();
    let root = ms.iter().position(|m| m.path.ends_with("checkpoint.json")).unwrap();
    let moved = ms.remove(root);
    ms.push(moved);
    assert_eq!(code(&sealed(&ms)), "msb_closure_binding");
}

#[test]
fn a_memory_dependency_is_accepted_and_listed() {
    let c = Closure::default();
    let mut ms = c.members();
    let id = object_id(&c.memory_bytes);
    find(&mut ms, &object_path(SNAP, &id)).included = false;
    let deps = json!({"disks": [], "memory": [id]});
    let m = run(&seal(&ms, SNAP, Some(deps))).unwrap().msb.unwrap();
    assert_eq!(m.completeness, "dependent");
    assert_eq!(m.dependencies, [object_path(SNAP, &object_id(&c.memory_bytes))]);
    assert_eq!(m.checkpoints[0].not_included, 1);
    // Declared as a memory dependency but the object is included: refused.
    let ms = c.members();
    assert_eq!(
        code(&seal(&ms, SNAP, Some(json!({"disks": [], "memory": [object_id(&c.memory_bytes)]})))),
        "inventory_dependencies"
    );
    // A memory dependency list that is not sorted.
    let mut ms = c.members();
    let (a, b) = (object_id(&c.memory_bytes), object_id(&c.execution));
    for id in [&a, &b] {
        find(&mut ms, &object_path(SNAP, id)).included = false;
    }
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    assert_eq!(
        code(&seal(&ms, SNAP, Some(json!({"disks": [], "memory": [hi, lo]})))),
        "inventory_dependencies"
    );
}

#[test]
fn a_layer_whose_size_is_not_its_virtual_size_is_refused() {
    assert_eq!(code(&seal(&file_snapshot(&[1; 4096], 4096), FILE_SNAP, None)), "ok");
    assert_eq!(code(&seal(&file_snapshot(&[1; 4096], 8192), FILE_SNAP, None)), "msb_virtual_size");
}

#[test]
fn any_chunking_gives_the_same_verdict() {
    let c = Closure::default();
    let mut bad = c.members();
    find(&mut bad, &object_path(SNAP, &object_id(&c.device))).data[0] ^= 1;
    for bytes in [checkpoint_archive(), sealed(&bad)] {
        let whole = run(&bytes);
        for seed in [1u64, 0x9e37_79b9_7f4a_7c15, 42] {
            match (&whole, validate_chunked(&bytes, seed)) {
                (Ok(a), Ok(b)) => assert_eq!(*a, b, "seed {seed}"),
                (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "seed {seed}"),
                (a, b) => panic!("seed {seed}: {a:?} vs {b:?}"),
            }
        }
    }
}

/// The `disks` entry of a dependencies extension for `path` with `identity`.
fn disk_dependency(path: &str, kind: &str, layer: serde_json::Value) -> serde_json::Value {
    json!({"disks": [{"path": path, "identity": {"kind": kind, "layer": layer}}], "memory": []})
}

#[test]
fn a_file_snapshots_disk_dependency_must_be_its_layer_exactly_as_recorded() {
    let id = "layer_f0000000000000000000000000000001";
    let path = format!("layers/{id}.raw");
    let layer = |virtual_size: u64| {
        json!({"layer_id": id, "format": "raw", "virtual_size": virtual_size, "backing": null,
               "payload": {"file_kind": "regular", "integrity": null}})
    };
    let mut ms = file_snapshot(&[1; 4096], 4096);
    find(&mut ms, &path).included = false;
    let r = run(&seal(&ms, FILE_SNAP, Some(disk_dependency(&path, "file", layer(4096))))).unwrap();
    assert_eq!(r.msb.unwrap().dependencies, std::slice::from_ref(&path));
    // The identity records another virtual size than the head's descriptor does.
    assert_eq!(
        code(&seal(&ms, FILE_SNAP, Some(disk_dependency(&path, "file", layer(8192))))),
        "msb_dependency_identity"
    );
    // A checkpoint layer's identity for a file snapshot's layer.
    let checkpoint_layer = json!({"layer_id": "base", "format": "raw", "virtual_size": 4096, "file_size": 4096,
                                  "predecessor": null, "integrity_root": null});
    assert_eq!(
        code(&seal(&ms, FILE_SNAP, Some(disk_dependency(&path, "checkpoint", checkpoint_layer)))),
        "msb_dependency_identity"
    );
}

#[test]
fn a_checkpoints_disk_dependency_must_be_its_root_disk_layer_exactly_as_recorded() {
    let c = Closure::default();
    let path = format!("checkpoints/{SNAP}/layers/base.raw");
    let recorded: serde_json::Value = serde_json::from_slice(&c.disk_manifest()).unwrap();
    let layer = recorded["layers"][0].clone();
    let mut ms = c.members();
    find(&mut ms, &path).included = false;
    let r = run(&seal(&ms, SNAP, Some(disk_dependency(&path, "checkpoint", layer.clone())))).unwrap();
    assert_eq!(r.msb.unwrap().dependencies, std::slice::from_ref(&path));
    let mut other = layer;
    other["file_size"] = json!(other["file_size"].as_u64().unwrap() + 4096);
    assert_eq!(
        code(&seal(&ms, SNAP, Some(disk_dependency(&path, "checkpoint", other)))),
        "msb_dependency_identity"
    );
}

#[test]
fn a_memory_dependency_must_be_a_memory_payload_object_not_checkpoint_metadata() {
    let c = Closure::default();
    // The execution state is named by checkpoint.json, not by a memory extent: it stays included.
    let id = object_id(&c.execution);
    let mut ms = c.members();
    find(&mut ms, &object_path(SNAP, &id)).included = false;
    assert_eq!(code(&seal(&ms, SNAP, Some(json!({"disks": [], "memory": [id]})))), "msb_dependency_identity");
}

#[test]
fn image_files_are_only_those_of_the_cache_kinds_0_7_13_places() {
    let image = |path: &str, kind: &str| {
        let data = b"{}".to_vec();
        Member {
            path: path.into(),
            integrity: format!("{{\"algorithm\":\"sha256\",\"digest\":\"{}\"}}", object_id(&data)),
            data,
            owner: None,
            kind: kind.into(),
            included: true,
        }
    };
    for (path, kind, want) in [
        ("images/manifests/a.json", "image-metadata", "ok"),
        ("images/vmdk/a.vmdk", "image-object", "ok"),
        ("images/layers/a.erofs", "image-object", "ok"),
        ("images/other/a.bin", "image-object", "unexpected_member"),
        ("images/layers/a.json", "image-object", "unexpected_member"),
        ("cache/manifests/a.json", "image-metadata", "unexpected_member"),
    ] {
        let mut ms = file_snapshot(&[1; 4096], 4096);
        ms.push(image(path, kind));
        assert_eq!(code(&seal(&ms, FILE_SNAP, None)), want, "{path}");
    }
}

#[test]
fn an_owned_disk_volume_of_a_file_snapshot_is_bound_to_its_layer() {
    let disk: Vec<u8> = (0..1u32 << 20).map(|i| if i < 8192 { (i % 253) as u8 } else { 0 }).collect();
    let n = disk.len() as u64;
    let path = format!("snapshots/{FILE_SNAP}/layers/data.raw");
    let r = run(&seal(&file_snapshot_with_owned_disk(&disk, n), FILE_SNAP, None)).unwrap();
    let m = r.msb.unwrap();
    assert_eq!(m.snapshots[0].owned_volumes, 1);
    let member = m.closure.iter().find(|c| c.path == path).expect("the owned disk layer is in the closure");
    assert_eq!(member.kind, "owned-disk-layer");
    // Its recorded file size, then its integrity root, must hold.
    assert_eq!(
        code(&seal(&file_snapshot_with_owned_disk(&disk, n + 1), FILE_SNAP, None)),
        "msb_closure_binding"
    );
    let mut ms = file_snapshot_with_owned_disk(&disk, n);
    find(&mut ms, &path).data[0] ^= 1;
    assert_eq!(code(&seal(&ms, FILE_SNAP, None)), "msb_content_digest_mismatch");
    // Left out of the archive without being a declared dependency.
    let mut ms = file_snapshot_with_owned_disk(&disk, n);
    ms.retain(|m| m.path != path);
    assert_eq!(code(&seal(&ms, FILE_SNAP, None)), "msb_closure_member_missing");
}

/// The dependencies extension of one owned payload at `path` with `identity`.
fn owned_dependency(path: &str, identity: serde_json::Value) -> serde_json::Value {
    json!({"disks": [], "memory": [], "owned": [{"path": path, "identity": identity}]})
}

/// A 1 MiB owned disk image whose first 8 KiB hold `seed`'s bytes.
fn owned_disk(seed: u32) -> Vec<u8> {
    (0..1u32 << 20).map(|i| if i < 8192 { ((i + seed) % 253) as u8 } else { 0 }).collect()
}

#[test]
fn an_owned_disk_dependency_must_be_the_heads_owned_layer_exactly_as_recorded() {
    let disk = owned_disk(0);
    let n = disk.len() as u64;
    let path = format!("snapshots/{FILE_SNAP}/layers/data.raw");
    let mut ms = file_snapshot_with_owned_disk(&disk, n);
    find(&mut ms, &path).included = false;
    let root = snapbundle_tests::msb::checkpoint_file_root(&disk);
    let identity = |bytes: u64| json!({"kind": "disk", "integrity_root": root, "bytes": bytes});
    let r = run(&seal(&ms, FILE_SNAP, Some(owned_dependency(&path, identity(1 << 20))))).unwrap();
    assert_eq!(r.msb.unwrap().dependencies, std::slice::from_ref(&path));
    // Another virtual size, another root, a directory identity: not the head's owned layer.
    for wrong in [
        identity((1 << 20) + 4096),
        json!({"kind": "disk", "integrity_root": snapbundle_tests::msb::checkpoint_file_root(&owned_disk(1)), "bytes": 1 << 20}),
        json!({"kind": "directory", "digest": "0".repeat(64), "bytes": 1 << 20}),
    ] {
        let e = run(&seal(&ms, FILE_SNAP, Some(owned_dependency(&path, wrong.clone())))).unwrap_err();
        assert_eq!(e.code(), "msb_dependency_identity", "{wrong}");
        assert!(e.to_string().contains(&path), "{e}");
    }
}

#[test]
fn an_owned_directory_dependency_must_be_one_of_the_volumes_files_never_its_namespace() {
    let c = Closure::default();
    let owned = format!("checkpoints/{SNAP}/owned/{}", mount_id(GUEST));
    let hex = |b: &[u8]| object_id(b).trim_start_matches("sha256:").to_string();
    let file = format!("{owned}/files/{}", hex(&c.file));
    let mut ms = c.members();
    find(&mut ms, &file).included = false;
    let identity = json!({"kind": "directory", "digest": hex(&c.file), "bytes": c.file.len()});
    let r = run(&seal(&ms, SNAP, Some(owned_dependency(&file, identity)))).unwrap();
    assert_eq!(r.msb.unwrap().dependencies, std::slice::from_ref(&file));
    let wrong = json!({"kind": "directory", "digest": hex(&c.file), "bytes": c.file.len() + 1});
    assert_eq!(code(&seal(&ms, SNAP, Some(owned_dependency(&file, wrong)))), "msb_dependency_identity");
    // The namespace file is an owned payload entry, but never a dependency (0.7.13 keeps it).
    let namespace = format!("{owned}/directory.bin");
    let mut ms = c.members();
    find(&mut ms, &namespace).included = false;
    let identity = json!({"kind": "directory", "digest": hex(&c.directory), "bytes": c.directory.len()});
    assert_eq!(
        code(&seal(&ms, SNAP, Some(owned_dependency(&namespace, identity)))),
        "msb_dependency_identity"
    );
}

/// [`file_snapshot_with_owned_disk`] whose owned disk has a second layer on top of `data`: the
/// qcow2 overlay `data2` (`second`, a qcow2 header stating 1 MiB).
fn two_layer_owned_disk(first: &[u8], second: &[u8]) -> Vec<Member> {
    let mut ms = file_snapshot_with_owned_disk(first, first.len() as u64);
    let d = &mut ms[0];
    let mut descriptor: serde_json::Value = serde_json::from_slice(&d.data).unwrap();
    let generation = &mut descriptor["extensions"]["microsandbox.owned-volumes"][0]["data"]["generation"];
    let mut top = generation["layers"][0].clone();
    top["layer_id"] = json!("data2");
    top["format"] = json!("qcow2");
    top["predecessor"] = json!("data");
    top["file_size"] = json!(second.len());
    top["integrity_root"] = json!(snapbundle_tests::msb::checkpoint_file_root(second));
    generation["layers"].as_array_mut().unwrap().push(top);
    generation["head"] = json!("data2");
    d.data = snapbundle_tests::msb::canonical(&descriptor).into_bytes();
    d.integrity = format!("{{\"algorithm\":\"sha256\",\"digest\":\"{}\"}}", object_id(&d.data));
    ms.push(Member::closure(format!("snapshots/{FILE_SNAP}/layers/data2.qcow2"), second.to_vec(), FILE_SNAP));
    ms
}

#[test]
fn an_owned_disk_omits_only_an_oldest_first_run_of_its_layers() {
    let first = owned_disk(0);
    // A qcow2 overlay: magic, version 3, the virtual size at bytes 24..32 (big-endian).
    let mut second = vec![0u8; 64 << 10];
    second[..8].copy_from_slice(b"QFI\xfb\0\0\0\x03");
    second[24..32].copy_from_slice(&(1u64 << 20).to_be_bytes());
    let complete = run(&seal(&two_layer_owned_disk(&first, &second), FILE_SNAP, None));
    assert!(complete.is_ok(), "{complete:?}");
    let dependency = |name: &str, disk: &[u8]| {
        let file = if name == "data" { "data.raw" } else { "data2.qcow2" };
        json!({"path": format!("snapshots/{FILE_SNAP}/layers/{file}"),
               "identity": {"kind": "disk", "bytes": 1 << 20,
                            "integrity_root": snapbundle_tests::msb::checkpoint_file_root(disk)}})
    };
    let omitting = |names: &[&str]| {
        let mut ms = two_layer_owned_disk(&first, &second);
        let mut owned = Vec::new();
        for name in names {
            let file = if *name == "data" { "data.raw" } else { "data2.qcow2" };
            find(&mut ms, &format!("snapshots/{FILE_SNAP}/layers/{file}")).included = false;
            owned.push(dependency(name, if *name == "data" { &first } else { &second }));
        }
        seal(&ms, FILE_SNAP, Some(json!({"disks": [], "memory": [], "owned": owned})))
    };
    assert_eq!(code(&omitting(&["data"])), "ok", "the oldest layer alone");
    assert_eq!(code(&omitting(&["data", "data2"])), "ok", "both");
    let e = run(&omitting(&["data2"])).unwrap_err();
    assert_eq!(e.code(), "msb_dependency_identity");
    assert!(e.to_string().contains("data2.qcow2"), "{e}");
}
