//! Regressions for the two decoder fixes in `vendor/ruzstd` (see its PATCHES.md): corrupt zstd
//! blocks that libzstd refuses must be refused by the core too, never decoded into other bytes.

use std::fs;

use snapbundle_core::{validate, Limits};
use snapbundle_tests::fixtures::fixture_dir;

fn mutated(name: &str, at: usize, f: impl FnOnce(u8) -> u8) -> Vec<u8> {
    let mut bytes = fs::read(fixture_dir().join(name)).expect("read fixture");
    let b = bytes.get_mut(at).expect("offset inside the fixture");
    *b = f(*b);
    bytes
}

fn assert_both_refuse(bytes: &[u8], what: &str) {
    assert!(
        zstd::stream::decode_all(bytes).is_err(),
        "{what}: libzstd must refuse it (else the case is moot)"
    );
    let err = validate(bytes, Limits::DEFAULT).expect_err(what);
    assert_eq!(err.code(), "zstd_corrupt", "{what}: {err}");
}

#[test]
fn single_stream_huffman_literals_must_end_their_bitstream_exactly() {
    // Found by tests/tests/mutation.rs: integrity is null in this bundle, so no digest would
    // notice the changed upper bytes the unpatched decoder produced.
    let bytes = mutated("f-integrity-null.tar.zst", 475, |_| 0xa2);
    assert_both_refuse(&bytes, "f-integrity-null.tar.zst byte 475 = 0xa2");
}

#[test]
fn reserved_symbol_compression_mode_bits_are_corrupt() {
    let bytes = mutated("c-child-only.tar.zst", 528, |b| b ^ 0x01);
    assert_both_refuse(&bytes, "c-child-only.tar.zst byte 528 ^ 0x01");
}
