//! The whole validator over plain tar input seeded with the microsandbox 0.7.13 `.msb` archives
//! (decompressed) and their GNU long-name (`././@LongLink`) variants: the G3 layout and the
//! walker's long names, both chunkings agreeing.
#![no_main]
use libfuzzer_sys::fuzz_target;
use snapbundle_fuzz::{begin, check_validator};

fuzz_target!(|data: &[u8]| {
    begin(data);
    let _ = check_validator(data);
});
