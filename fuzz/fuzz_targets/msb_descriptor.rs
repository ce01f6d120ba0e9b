//! The G3 snapshot descriptor parser (`snapshots/<id>/snapshot.json` of a microsandbox 0.7
//! `.msb`): parse twice (same result); an accepted descriptor's canonical bytes parse to the same
//! descriptor (canonical bytes included: canonicalisation is idempotent) and the same digest.
//! Then the bytes as the descriptor of the real `labels.msb` through the whole validator (both
//! chunkings agree), with `archive.json` rebound to them when they parse (descriptor digest,
//! sizes, transport digest), so an input that keeps the snapshot id and the layer gets past the
//! bindings to the layout checks. The validator accepts only descriptors the parser accepts, and
//! only in their canonical bytes (the inventory binds the file's SHA-256 to the descriptor digest).
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use snapbundle_core::generation::g3::descriptor::{is_digest, Descriptor};
use snapbundle_core::generation::g3::inventory::INVENTORY_PATH;
use snapbundle_core::generation::g3::transport::TransportHasher;
use snapbundle_fuzz::msb::{member, replace_all, replace_member, LABELS};
use snapbundle_fuzz::{begin, check_validator};

const DESCRIPTOR: &str = "snapshots/snap_1f11c805d6c1f07632b5507a0f6ee2ff/snapshot.json";

struct Base {
    descriptor: Vec<u8>,
    inventory: Vec<u8>,
    digest: String,
    transport: String,
}

fn transport(data: &[u8]) -> String {
    let n = data.len() as u64;
    let mut t = TransportHasher::new("snapshot-descriptor", DESCRIPTOR, n, n, &[]);
    t.update(data).expect("declared size");
    t.finish().expect("declared size")
}

fn sizes(n: usize) -> String {
    format!("\"encoded_size\":{n},\"apparent_size\":{n},")
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let descriptor = member(LABELS, DESCRIPTOR).to_vec();
        let inventory = member(LABELS, INVENTORY_PATH).to_vec();
        let digest = Descriptor::parse(&descriptor).expect("the fixture's descriptor").digest();
        let transport = transport(&descriptor);
        // Every string the rebinding replaces is where it is expected, and only there.
        assert_eq!(replace_all(&inventory, digest.as_bytes(), b"").1, 2);
        assert_eq!(replace_all(&inventory, transport.as_bytes(), b"").1, 1);
        assert_eq!(replace_all(&inventory, sizes(descriptor.len()).as_bytes(), b"").1, 1);
        Base { descriptor, inventory, digest, transport }
    })
}

fuzz_target!(|data: &[u8]| {
    begin(data);
    let base = base();
    let parsed = Descriptor::parse(data);
    assert_eq!(Descriptor::parse(data), parsed, "parsing is not deterministic");
    let mut tar = replace_member(LABELS, DESCRIPTOR, data);
    match &parsed {
        Ok(d) => {
            let digest = d.digest();
            assert!(is_digest(&digest, "sha256:"));
            let again = Descriptor::parse(d.canonical_bytes()).expect("canonical bytes of a parsed descriptor parse");
            assert_eq!(&again, d, "the canonical round trip changed the descriptor");
            assert_eq!(again.digest(), digest);
            // Rebind archive.json to these bytes.
            let inv = replace_all(&base.inventory, base.digest.as_bytes(), digest.as_bytes()).0;
            let inv = replace_all(&inv, base.transport.as_bytes(), transport(data).as_bytes()).0;
            let inv = replace_all(&inv, sizes(base.descriptor.len()).as_bytes(), sizes(data.len()).as_bytes()).0;
            tar = replace_member(&tar, INVENTORY_PATH, &inv);
        }
        Err(e) => assert!(!e.code().is_empty() && !e.to_string().is_empty()),
    }
    let r = check_validator(&tar);
    if r.is_ok() {
        let d = parsed.as_ref().expect("the validator accepted a descriptor the parser rejects");
        assert_eq!(d.canonical_bytes(), data, "the validator accepted a non-canonical descriptor");
    }
    if data == base.descriptor {
        r.expect("labels.msb with its own descriptor");
    }
});
