//! The whole validator over plain tar input (whatever the bytes are; seeds are plain tars).
#![no_main]
use libfuzzer_sys::fuzz_target;
use snapbundle_fuzz::{begin, check_validator};

fuzz_target!(|data: &[u8]| {
    begin(data);
    let _ = check_validator(data);
});
