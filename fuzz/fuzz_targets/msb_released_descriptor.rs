//! The G2 snapshot descriptor parser (`snapshots/<hex>/snapshot.json` of a released 0.6.7 –
//! 0.6.16 archive): parse twice (same result); an accepted descriptor's digest is a `sha256:`
//! digest. Then the bytes as the root descriptor of a released archive of two snapshots without
//! `archive.json` (which a released archive may omit, so the descriptor reaches every check of
//! the layout: its directory, its upper, the child's parent link) through the whole validator
//! (both chunkings agree): the validator never accepts a descriptor the parser rejects, and
//! accepts the archive's own.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use snapbundle_core::generation::g2::descriptor::ReleasedDescriptor;
use snapbundle_core::generation::g3::descriptor::is_digest;
use snapbundle_fuzz::msb::{member, replace_member};
use snapbundle_fuzz::{begin, check_validator};
use snapbundle_tests::released::{chain, images, members, tar};

struct Base {
    tar: Vec<u8>,
    path: String,
    descriptor: Vec<u8>,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let snaps = chain(2);
        let tar = tar(&members(&snaps, &images()));
        let path = snaps[0].descriptor_path();
        let descriptor = member(&tar, &path).to_vec();
        Base { tar, path, descriptor }
    })
}

fuzz_target!(|data: &[u8]| {
    begin(data);
    let base = base();
    let parsed = ReleasedDescriptor::parse(data);
    assert_eq!(ReleasedDescriptor::parse(data), parsed, "parsing is not deterministic");
    match &parsed {
        Ok(d) => assert!(is_digest(&d.digest, "sha256:"), "{}", d.digest),
        Err(e) => assert!(!e.code().is_empty() && !e.to_string().is_empty()),
    }
    let r = check_validator(&replace_member(&base.tar, &base.path, data));
    if parsed.is_err() {
        assert!(r.is_err(), "the validator accepted a descriptor the parser rejects");
    }
    if data == base.descriptor.as_slice() {
        r.expect("the released archive with its own descriptor");
    }
});
