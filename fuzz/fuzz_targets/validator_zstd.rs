//! The whole validator over zstd input: an input that does not start with a zstd frame magic
//! gets one, so mutations stay inside the zstd gate. Validated with `zstd_limits()` (256 KiB of
//! output at most).
#![no_main]
use libfuzzer_sys::fuzz_target;
use snapbundle_fuzz::{begin, check_validator_with, zstd_limits};

const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

fuzz_target!(|data: &[u8]| {
    begin(data);
    if data.starts_with(&MAGIC) {
        let _ = check_validator_with(data, zstd_limits());
    } else {
        let mut framed = MAGIC.to_vec();
        framed.extend_from_slice(data);
        let _ = check_validator_with(&framed, zstd_limits());
    }
});
