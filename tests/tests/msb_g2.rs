//! Released (G2, microsandbox 0.6.7 – 0.6.16) archives through `snapbundle_core::validate` and
//! the streaming validator: what 0.7.13 loads is accepted with a report of what it holds, what
//! it refuses (and what this validator refuses beyond it) is refused with its code, the same for
//! every chunking. The archives come from `snapbundle_tests::released` (built from 0.7.13's
//! reading of the format; no 0.6.x binary is here to write reference archives).

use snapbundle_core::report::{Generation, LayerIntegrity};
use snapbundle_core::{validate, Error, Limits, Report, Validator};
use snapbundle_tests::builder::{sha256_digest, zstd};
use snapbundle_tests::released::{
    archive, chain, images, members, sealed, tar, Inventory, Member, Snapshot, UpperIntegrity,
};

fn code(bytes: &[u8]) -> &'static str {
    match validate(bytes, Limits::default()) {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

fn chunked(bytes: &[u8], chunk: usize) -> Result<Report, Error> {
    let mut v = Validator::new(Limits::default());
    for c in bytes.chunks(chunk) {
        v.push(c, &mut snapbundle_core::NullSink)?;
    }
    v.finish()
}

/// An archive of `snapshots` whose inventory `edit` changes before it is written.
fn with_inventory(snapshots: &[Snapshot], edit: impl FnOnce(&mut Inventory, &[Member])) -> Vec<u8> {
    let ms = members(snapshots, &images());
    let mut inv = Inventory::for_members(&ms, &snapshots.last().unwrap().digest(), true);
    edit(&mut inv, &ms);
    sealed(&ms, &inv)
}

/// An archive whose member list `edit` changes, re-sealed with a truthful inventory.
fn with_members(snapshots: &[Snapshot], edit: impl FnOnce(&mut Vec<Member>)) -> Vec<u8> {
    let mut ms = members(snapshots, &images());
    edit(&mut ms);
    sealed(&ms, &Inventory::for_members(&ms, &snapshots.last().unwrap().digest(), true))
}

#[test]
fn a_chain_with_images_is_valid_and_reported() {
    let snaps = chain(3);
    let bytes = archive(&snaps, &images());
    let report = validate(&bytes, Limits::default()).unwrap();
    assert_eq!(report.generation, Generation::G2);
    assert!(report.msb.is_none() && report.snapshots.is_empty());
    let head = &snaps[2];
    assert_eq!(
        (report.head.as_str(), report.head_prefix.as_str()),
        (head.digest().as_str(), head.snapshot_id().as_str())
    );
    let r = report.released.as_ref().unwrap();
    assert!(r.inventory);
    assert_eq!(r.head, head.digest());
    assert_eq!(r.with_parents, Some(true));
    assert_eq!(r.requires, ["msb-archive-member-blake3-v1"]);
    assert_eq!(r.snapshots.len(), 3);
    for (s, want) in r.snapshots.iter().zip(&snaps) {
        assert_eq!(s.digest, want.digest());
        assert_eq!(s.snapshot_id, want.snapshot_id());
        assert_eq!(s.parent, want.parent);
        assert_eq!(s.parent_in_archive, want.parent.is_some());
        assert_eq!(s.is_head, s.digest == head.digest());
        assert_eq!(s.upper_path, want.upper_path());
        assert_eq!(s.size_bytes, want.upper.len() as u64);
        assert_eq!(s.sparse, want.sparse);
        assert_eq!(s.labels, want.labels);
    }
    let algorithms: Vec<Option<&str>> = r
        .snapshots
        .iter()
        .map(|s| match &s.integrity {
            LayerIntegrity::Verified { algorithm, .. } => Some(algorithm.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(algorithms, [Some("sha256"), Some("msb-sparse-sha256-v1"), None]);
    assert!(r.snapshots[1].encoded_size < r.snapshots[1].size_bytes, "the sparse upper stores less");
    assert_eq!(r.images.len(), 2);
    assert_eq!(r.images[1].sha256, sha256_digest(br#"{"image":"alpine"}"#));
    // JSON round trip with the generation name.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["generation"], "0.6.7");
    assert_eq!(serde_json::from_value::<Report>(json).unwrap(), report);
}

#[test]
fn every_chunking_and_zstd_give_the_same_verdict() {
    let bytes = archive(&chain(2), &images());
    let whole = validate(&bytes, Limits::default()).unwrap();
    for chunk in [1, 7, 511, 512, 4096, 100_000] {
        assert_eq!(chunked(&bytes, chunk).unwrap(), whole, "chunk {chunk}");
    }
    let z = zstd(&bytes);
    let zr = validate(&z, Limits::default()).unwrap();
    assert_eq!(zr.released, whole.released);
    let bad = with_inventory(&chain(2), |inv, _| inv.head = chain(2)[0].digest());
    for chunk in [1, 13, 512] {
        assert_eq!(chunked(&bad, chunk).unwrap_err().code(), "msb_g2_head", "chunk {chunk}");
    }
}

#[test]
fn without_an_inventory_or_transport_digests_it_is_still_what_0_7_13_loads() {
    // 0.7.13's own released-archive test writes no archive.json, the head first, the parent after.
    let snaps = chain(2);
    let mut ms = members(&[snaps[1].clone(), snaps[0].clone()], &[]);
    let r = validate(&tar(&ms), Limits::default()).unwrap().released.unwrap();
    assert!(!r.inventory && r.with_parents.is_none());
    assert_eq!(r.head, snaps[1].digest());
    // Inventory without transport digests (requires []).
    let inv = Inventory::for_members(&ms, &snaps[1].digest(), false);
    assert!(inv.requires.is_empty());
    assert_eq!(code(&sealed(&ms, &inv)), "ok");
    // The upper may come first, and directory records 0.7.13 accepts may follow.
    ms.swap(0, 1);
    ms.insert(1, Member::dir("snapshots/"));
    ms.insert(2, Member::dir(&format!("files/{}/", snaps[1].hex())));
    assert_eq!(code(&tar(&ms)), "ok");
    // Nor does 0.7.13 need the descriptor's name for the upper: the one it names must be there.
    let mut s = Snapshot::new(5);
    s.upper_file = "disk.ext4".into();
    let mut ms = members(&[s.clone()], &[]);
    assert_eq!(code(&tar(&ms)), "ok");
    ms[1].path = format!("files/{}/upper.ext4", s.hex());
    assert_eq!(code(&tar(&ms)), "msb_g2_upper_binding");
}

/// One edit of a sealed inventory.
type InventoryEdit = dyn Fn(&mut Inventory, &[Member]);

#[test]
fn inventory_lies_are_refused() {
    let s = chain(2);
    let cases: Vec<(&str, Box<InventoryEdit>)> = vec![
        ("msb_g2_inventory_schema", Box::new(|i, _| i.schema = "2".into())),
        ("msb_g2_inventory_schema", Box::new(|i, _| i.artifact = "snapshot".into())),
        ("msb_g2_inventory_completeness", Box::new(|i, _| i.completeness = "dependent".into())),
        ("msb_g2_inventory_protection", Box::new(|i, _| i.protection = "[{}]".into())),
        (
            "msb_g2_inventory_requires",
            Box::new(|i, _| i.requires.push("msb-snapshot-dependencies-v1".into())),
        ),
        ("msb_g2_inventory_suggested_name", Box::new(|i, _| i.suggested_name = Some("a/b".into()))),
        ("msb_g2_inventory_head", Box::new(|i, _| i.head = format!("sha256:{}", "f".repeat(64)))),
        ("msb_g2_inventory_snapshot", Box::new(|i, _| i.snapshots.reverse())),
        ("msb_g2_inventory_entry_order", Box::new(|i, _| i.entries.swap(0, 1))),
        ("msb_g2_inventory_kind", Box::new(|i, _| i.entries[0].kind = "image-object".into())),
        ("msb_g2_inventory_transport", Box::new(|i, _| i.entries[0].transport = None)),
        (
            "msb_g2_inventory_binding",
            Box::new(|i, _| i.entries.iter_mut().for_each(|e| e.included = e.kind != "image-object")),
        ),
        (
            "msb_g2_inventory_binding",
            Box::new(|i, _| {
                let e = i.entries.iter_mut().find(|e| e.kind == "snapshot-descriptor").unwrap();
                e.integrity = format!(r#"{{"algorithm":"sha256","digest":"sha256:{}"}}"#, "0".repeat(64));
            }),
        ),
        (
            "msb_g2_inventory_binding",
            Box::new(|i, _| {
                let e = i.entries.iter_mut().find(|e| e.kind == "file-payload").unwrap();
                e.owner = None;
            }),
        ),
        (
            "msb_size_mismatch",
            Box::new(|i, _| i.entries.iter_mut().find(|e| e.kind == "file-payload").unwrap().apparent += 1),
        ),
        (
            "msb_transport_mismatch",
            Box::new(|i, _| {
                let e = i.entries.iter_mut().find(|e| e.kind == "image-object").unwrap();
                e.transport = Some(format!("blake3:{}", "0".repeat(64)));
            }),
        ),
        (
            "msb_sha256_mismatch",
            Box::new(|i, _| {
                let e = i.entries.iter_mut().find(|e| e.kind == "image-object").unwrap();
                e.integrity = format!(r#"{{"algorithm":"sha256","digest":"sha256:{}"}}"#, "0".repeat(64));
            }),
        ),
        (
            "msb_member_missing",
            Box::new(|i, _| {
                let mut e = i.entries.iter().find(|e| e.kind == "image-metadata").unwrap().clone();
                e.path = "images/manifests/zzz.json".into();
                i.entries.push(e);
                i.entries.sort_by(|a, b| a.path.cmp(&b.path));
            }),
        ),
        (
            "msb_member_not_inventoried",
            Box::new(|i, _| {
                i.entries.retain(|e| e.kind != "image-metadata");
            }),
        ),
        ("msb_g2_head", Box::new(|i, _| i.head = chain(2)[0].digest())),
    ];
    for (want, edit) in cases {
        assert_eq!(code(&with_inventory(&s, |i, m| edit(i, m))), want);
    }
}

#[test]
fn a_noncanonical_inventory_is_refused() {
    let ms = members(&chain(1), &[]);
    let inv = Inventory::for_members(&ms, &chain(1)[0].digest(), true);
    let text = inv.to_json();
    for bad in [
        format!("{text}\n"),
        text.replacen(",\"artifact\"", ", \"artifact\"", 1),
        text.replace(",\"suggested_name\":\"web\"", ""),
        text.replace(
            "\"with_parents\":false,\"with_image\":false",
            "\"with_image\":false,\"with_parents\":false",
        ),
    ] {
        let mut all = ms.clone();
        all.push(Member::file("archive.json", bad.as_bytes()));
        assert_eq!(code(&tar(&all)), "msb_g2_inventory_not_canonical");
    }
}

#[test]
fn member_lies_are_refused() {
    let s = chain(2);
    // A flipped upper byte: its sha256 integrity catches it (0.7.13 checks only the transport).
    let flip = |ms: &mut Vec<Member>| ms[1].data[100] ^= 1;
    assert_eq!(code(&with_members(&s, flip)), "msb_payload_integrity_mismatch");
    let ms = members(&s, &images());
    let mut inv = Inventory::for_members(&ms, &s[1].digest(), true);
    let mut flipped = ms.clone();
    flipped[1].data[100] ^= 1;
    assert_eq!(code(&sealed(&flipped, &inv)), "msb_transport_mismatch");
    inv.requires.clear();
    inv.entries.iter_mut().for_each(|e| e.transport = None);
    assert_eq!(code(&sealed(&flipped, &inv)), "msb_payload_integrity_mismatch");
    // An upper no descriptor names, a raw upper of another size, a missing upper.
    let extra =
        |ms: &mut Vec<Member>| ms.push(Member::file(&format!("files/{}/extra", chain(2)[0].hex()), b"x"));
    assert_eq!(code(&with_members(&s, extra)), "msb_g2_upper_binding");
    let short = |ms: &mut Vec<Member>| {
        ms[1].data.pop();
    };
    assert_eq!(code(&with_members(&s, short)), "msb_g2_upper_binding");
    let mut t = s.clone();
    t[1].integrity = UpperIntegrity::Null;
    assert_eq!(
        code(&with_members(&t, |ms| {
            ms[3].data.pop();
        })),
        "msb_g2_upper_binding"
    );
    assert_eq!(
        code(&with_members(&s, |ms| {
            ms.remove(3);
        })),
        "msb_g2_upper_binding"
    );
    // A descriptor under another digest's directory.
    let moved = |ms: &mut Vec<Member>| ms[0].path = format!("snapshots/{}/snapshot.json", "b".repeat(64));
    assert_eq!(code(&with_members(&s, moved)), "msb_g2_descriptor_directory");
}

#[test]
fn parents_and_heads_follow_0_7_13() {
    // Two unrelated snapshots: two heads.
    let two = [Snapshot::new(1), Snapshot::new(2)];
    let ms = members(&two, &[]);
    assert_eq!(code(&tar(&ms)), "msb_g2_head");
    // A parent outside the archive is fine (absent), given as a digest or a 0.7 id.
    let mut s = Snapshot::new(3);
    s.parent = Some(format!("sha256:{}", "c".repeat(64)));
    let r = validate(&tar(&members(&[s.clone()], &[])), Limits::default()).unwrap().released.unwrap();
    assert!(!r.snapshots[0].parent_in_archive);
    let mut c = chain(2);
    c[1].parent = Some(c[0].snapshot_id());
    let r = validate(&archive(&c, &[]), Limits::default()).unwrap().released.unwrap();
    assert!(r.snapshots[1].parent_in_archive && r.snapshots[1].is_head);
}

#[test]
fn descriptor_rules_are_checked_at_their_member() {
    let broken = |edit: fn(String) -> String| {
        let mut s = Snapshot::new(4);
        s.edit = Some(edit);
        code(&tar(&members(&[s], &[])))
    };
    assert_eq!(broken(|t| t.replace("\"schema\":1", "\"schema\":2")), "msb_g2_descriptor_schema");
    assert_eq!(
        broken(|t| t.replace("\"extensions\":{}", "\"extensions\":{\"x\":1}")),
        "msb_g2_descriptor_extensions"
    );
    assert_eq!(
        broken(|t| t.replace("\"scope\":\"disk\"", "\"scope\":\"resumable\"")),
        "msb_g2_descriptor_scope"
    );
    assert_eq!(
        broken(|t| t.replace("\"labels\":{}", "\"labels\":{},\"x\":1")),
        "msb_g2_descriptor_unknown_field"
    );
    assert_eq!(broken(|t| t.replace("2026-05-01T12:00:00Z", "noon")), "msb_g2_descriptor_timestamp");
    let state = |t: String| {
        let start = t.find("\"state\":").unwrap();
        let end = t[start..].find("}}").unwrap() + start + 2;
        format!(
            "{}\"state\":{{\"kind\":\"checkpoint\",\"checkpoint_id\":\"c\",\"manifest\":\"m\"}}{}",
            &t[..start],
            &t[end..]
        )
    };
    assert_eq!(broken(state), "msb_g2_checkpoint");
    // Whitespace is allowed (no canonical form) and changes the identity.
    assert_eq!(broken(|t| t.replace(",", ", ")), "ok");
}

#[test]
fn members_of_other_generations_and_stray_paths_are_refused() {
    let s = chain(1);
    let add = |m: Member| with_members(&s, move |ms| ms.push(m));
    assert_eq!(code(&add(Member::file("web/manifest.json", b"{}"))), "msb_g2_foreign_member");
    assert_eq!(
        code(&add(Member::file(&format!("layers/layer_{}.raw", "0".repeat(32)), b"x"))),
        "msb_g2_foreign_member"
    );
    assert_eq!(
        code(&add(Member::file(&format!("snapshots/snap_{}/snapshot.json", "0".repeat(32)), b"{}"))),
        "msb_g2_foreign_member"
    );
    assert_eq!(
        code(&add(Member::file(&format!("snapshots/{}/metadata.json", s[0].hex()), b"{}"))),
        "msb_g2_unexpected_path"
    );
    assert_eq!(code(&add(Member::file("images/other/x.bin", b"x"))), "msb_g2_unexpected_path");
    assert_eq!(code(&add(Member::dir("layers/"))), "msb_g2_unexpected_path");
    // A released archive with no descriptor at all.
    assert_eq!(code(&tar(&[Member::file(&s[0].upper_path(), &s[0].upper)])), "msb_g2_no_snapshot");
    // A G1 bundle stays G1 and a G3 archive G3 (detection by the first member only).
    let g1 = snapbundle_tests::builder::bundle_tar(&[snapbundle_tests::builder::Snapshot::small(1)]);
    assert_eq!(validate(&g1, Limits::default()).unwrap().generation, Generation::G1);
}

#[test]
fn a_writer_and_a_second_zstd_frame_are_refused() {
    struct Writer;
    impl snapbundle_core::Sink for Writer {
        fn event(&mut self, _: snapbundle_core::Event<'_>) -> Result<(), snapbundle_core::Stop> {
            Ok(())
        }
        fn wants_data(&self) -> bool {
            true
        }
    }
    let bytes = archive(&chain(1), &[]);
    let mut v = Validator::new(Limits::default());
    assert_eq!(v.push(&bytes, &mut Writer).unwrap_err().code(), "msb_unsupported");
    let two = [zstd(&bytes[..1024]), zstd(&bytes[1024..])].concat();
    assert_eq!(code(&two), "msb_zstd_frames");
}
