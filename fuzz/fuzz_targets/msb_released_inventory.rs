//! The G2 inventory parser (`archive.json` of a released 0.6.7 – 0.6.16 archive): parse twice
//! (same result); an accepted inventory is its own canonical serialization (the same bytes plus
//! whitespace are refused) and holds what the parser checks (snapshots strictly sorted with
//! `sha256:` ids and their descriptor paths, the head among them, entries strictly sorted by path
//! bytes, each kind the one its path implies, every entry included, `requires` empty or the
//! transport digest, transport digests present when required). Then the bytes as the
//! `archive.json` of a valid released archive of two snapshots and image files through the whole
//! validator (both chunkings agree): the validator never accepts what the parser rejects, and
//! accepts the archive's own inventory.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use snapbundle_core::generation::g2::inventory::{ReleasedInventory, MAX_INVENTORY_BYTES};
use snapbundle_core::generation::g3::descriptor::is_digest;
use snapbundle_core::generation::g3::inventory::EntryKind;
use snapbundle_core::generation::g3::transport::ARCHIVE_MEMBER_BLAKE3_V1;
use snapbundle_fuzz::msb::{member, replace_member};
use snapbundle_fuzz::{begin, check_validator};
use snapbundle_tests::released::{archive, chain, images};

const INVENTORY: &str = "archive.json";

fn base() -> &'static (Vec<u8>, Vec<u8>) {
    static BASE: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    BASE.get_or_init(|| {
        let tar = archive(&chain(2), &images());
        let inventory = member(&tar, INVENTORY).to_vec();
        (tar, inventory)
    })
}

fn check_accepted(data: &[u8], inv: &ReleasedInventory) {
    assert!(data.len() <= MAX_INVENTORY_BYTES);
    for variant in [[data, b"\n"].concat(), [b" ", data].concat(), [data, b" "].concat()] {
        assert!(ReleasedInventory::parse(&variant).is_err(), "an accepted inventory plus whitespace is accepted too");
    }
    if let Some(name) = &inv.suggested_name {
        assert!(!name.is_empty() && name.len() <= 255 && !name.contains(['/', '\\']), "suggested_name {name:?}");
    }
    assert!(inv.requires.is_empty() || inv.requires == [ARCHIVE_MEMBER_BLAKE3_V1], "requires {:?}", inv.requires);
    for w in inv.snapshots.windows(2) {
        assert!(w[0].snapshot_id < w[1].snapshot_id, "snapshots not strictly sorted");
    }
    for s in &inv.snapshots {
        assert!(is_digest(&s.snapshot_id, "sha256:"), "{}", s.snapshot_id);
        let hex = s.snapshot_id.trim_start_matches("sha256:");
        assert_eq!(s.descriptor, format!("snapshots/{hex}/snapshot.json"));
    }
    assert!(inv.snapshots.iter().any(|s| s.snapshot_id == inv.head), "head not among the snapshots");
    for w in inv.entries.windows(2) {
        assert!(w[0].path.as_bytes() < w[1].path.as_bytes(), "entries not strictly sorted by path bytes");
    }
    let transport = !inv.requires.is_empty();
    for e in &inv.entries {
        assert_eq!(EntryKind::of_path(&e.path), Some(e.kind), "kind of {}", e.path);
        if transport {
            assert!(e.transport_digest.as_deref().is_some_and(|d| is_digest(d, "blake3:")), "{}", e.path);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    begin(data);
    let (tar, original) = base();
    let parsed = ReleasedInventory::parse(data);
    assert_eq!(ReleasedInventory::parse(data), parsed, "parsing is not deterministic");
    match &parsed {
        Ok(inv) => check_accepted(data, inv),
        Err(e) => assert!(!e.code().is_empty() && !e.to_string().is_empty()),
    }
    let r = check_validator(&replace_member(tar, INVENTORY, data));
    if parsed.is_err() {
        assert!(r.is_err(), "the validator accepted an archive.json the parser rejects");
    }
    if data == original.as_slice() {
        r.expect("the released archive with its own archive.json");
    }
});
