//! The tar record walker alone: same events and verdict in one chunk and in derived chunks;
//! every member's data length equals its declared size.
#![no_main]
use libfuzzer_sys::fuzz_target;
use snapbundle_fuzz::{begin, chunks, walk, WalkEvent};

fuzz_target!(|data: &[u8]| {
    begin(data);
    let whole = walk([data]);
    let chunked = walk(chunks(data));
    assert_eq!(whole, chunked, "chunked walk differs from the single-chunk walk");
    let mut declared = None;
    for ev in &whole.0 {
        match ev {
            WalkEvent::Member { size, .. } => declared = Some(*size),
            WalkEvent::End { len, .. } => assert_eq!(Some(*len), declared.take(), "data length != size"),
        }
    }
});
