//! The G3 inventory parser (`archive.json` of a microsandbox 0.7 `.msb`): parse twice (same
//! result); an accepted inventory satisfies what `Inventory::parse` guarantees (its bytes are its
//! canonical serialization, so a trailing newline or a leading space is refused; members strictly
//! sorted, well formed, the head among them; entries strictly sorted by path bytes, each kind the
//! one its path implies; `requires` sorted; the completeness, descriptor, image and transport
//! bindings). Then the bytes as the `archive.json` of the real `labels.msb` through the whole
//! validator (both chunkings agree); the validator never accepts what the parser rejects.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use snapbundle_core::generation::g3::descriptor::{is_digest, is_id, Integrity};
use snapbundle_core::generation::g3::inventory::{
    Completeness, EntryKind, Inventory, DEPENDENCIES_V1, INVENTORY_PATH, MAX_INVENTORY_BYTES,
};
use snapbundle_core::generation::g3::transport::ARCHIVE_MEMBER_BLAKE3_V1;
use snapbundle_fuzz::msb::{member, replace_member, LABELS};
use snapbundle_fuzz::{begin, check_validator};

fn original() -> &'static [u8] {
    static ORIGINAL: OnceLock<Vec<u8>> = OnceLock::new();
    ORIGINAL.get_or_init(|| member(LABELS, INVENTORY_PATH).to_vec())
}

fn check_accepted(data: &[u8], inv: &Inventory) {
    assert!(data.len() <= MAX_INVENTORY_BYTES);
    // Canonical: exactly one serialization is accepted.
    for variant in [[data, b"\n"].concat(), [b" ", data].concat(), [data, b" "].concat()] {
        assert!(Inventory::parse(&variant).is_err(), "an accepted inventory plus whitespace is accepted too");
    }
    if let Some(name) = &inv.suggested_name {
        assert!(!name.is_empty() && name.len() <= 255 && !name.contains(['/', '\\']), "suggested_name {name:?}");
    }
    for w in inv.requires.windows(2) {
        assert!(w[0] < w[1], "requires not strictly sorted");
    }
    for w in inv.members.windows(2) {
        assert!(w[0].snapshot_id < w[1].snapshot_id, "members not strictly sorted");
    }
    for m in &inv.members {
        assert!(is_id(&m.snapshot_id, "snap_"));
        assert!(is_digest(&m.descriptor_digest, "sha256:"));
        assert_eq!(m.descriptor_path, format!("snapshots/{}/snapshot.json", m.snapshot_id));
    }
    assert!(inv.members.iter().any(|m| m.snapshot_id == inv.head), "head not among the members");
    for w in inv.entries.windows(2) {
        assert!(w[0].path.as_bytes() < w[1].path.as_bytes(), "entries not strictly sorted by path bytes");
    }
    let transport = inv.requires.iter().any(|r| r == ARCHIVE_MEMBER_BLAKE3_V1);
    let mut descriptors = 0;
    for e in &inv.entries {
        assert_eq!(EntryKind::of_path(&e.path), Some(e.kind), "kind of {}", e.path);
        assert_eq!(EntryKind::parse(e.kind.as_str()), Some(e.kind));
        if !e.included {
            // Only declared disk dependencies of the head may be omitted.
            assert_eq!(inv.completeness, Completeness::Dependent, "a complete archive omits {}", e.path);
            assert!(matches!(e.kind, EntryKind::FilePayload | EntryKind::CheckpointDiskLayer));
            assert_eq!(e.owner_snapshot.as_deref(), Some(inv.head.as_str()));
            assert!(e.encoded_size == 0 && e.sparse_ranges.is_empty() && e.transport_digest.is_none());
            continue;
        }
        if transport {
            assert!(e.transport_digest.as_deref().is_some_and(|d| is_digest(d, "blake3:")), "{}", e.path);
        }
        match e.kind {
            EntryKind::SnapshotDescriptor => {
                descriptors += 1;
                let owner = e.owner_snapshot.as_deref().expect("a descriptor entry has an owner");
                let m = inv.members.iter().find(|m| m.snapshot_id == owner).expect("owner is a member");
                assert_eq!(m.descriptor_path, e.path);
                assert_eq!(e.integrity, Some(Integrity::Sha256 { digest: m.descriptor_digest.clone() }));
            }
            EntryKind::ImageMetadata | EntryKind::ImageObject => {
                assert!(e.owner_snapshot.is_none());
                assert!(matches!(e.integrity, Some(Integrity::Sha256 { .. })));
            }
            _ => {}
        }
    }
    assert_eq!(descriptors, inv.members.len(), "members and descriptor entries differ");
    if inv.completeness == Completeness::Dependent {
        assert!(inv.requires.iter().any(|r| r == DEPENDENCIES_V1));
        assert!(inv.entries.iter().any(|e| !e.included), "a dependent archive omits nothing");
    }
}

fuzz_target!(|data: &[u8]| {
    begin(data);
    let parsed = Inventory::parse(data);
    assert_eq!(Inventory::parse(data), parsed, "parsing is not deterministic");
    if let Ok(inv) = &parsed {
        check_accepted(data, inv);
    } else if let Err(e) = &parsed {
        assert!(!e.code().is_empty() && !e.to_string().is_empty());
    }
    let tar = replace_member(LABELS, INVENTORY_PATH, data);
    let r = check_validator(&tar);
    if parsed.is_err() {
        assert!(r.is_err(), "the validator accepted an archive.json the parser rejects");
    }
    if data == original() {
        r.expect("labels.msb with its own archive.json");
    }
});
