//! Replays every input under `tests/regressions/`: inputs the fuzzers (`fuzz/`) found or kept
//! because they reach a corner of the validator. Each `<name>` has a `<name>.expect` holding `ok`
//! or the expected error code. Every input must give that verdict, must not panic, and must give
//! the same report or error whether it is pushed whole or in chunks of 1, 7, 512 and 4 096 bytes.

use std::fs;
use std::path::Path;

use snapbundle_core::{Error, Limits, NullSink, Report, Validator};

fn run(bytes: &[u8], chunk: usize) -> Result<Report, Error> {
    let mut v = Validator::new(Limits::default());
    if chunk == 0 {
        v.push(bytes, &mut NullSink)?;
    } else {
        for c in bytes.chunks(chunk) {
            v.push(c, &mut NullSink)?;
        }
    }
    v.finish()
}

#[test]
fn every_regression_input_keeps_its_verdict() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .expect("tests/regressions")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.ends_with(".expect") && !n.ends_with(".md"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no regression inputs in {}", dir.display());
    for name in &names {
        let bytes = fs::read(dir.join(name)).expect("read input");
        let expect = fs::read_to_string(dir.join(format!("{name}.expect")))
            .unwrap_or_else(|e| panic!("{name}: missing {name}.expect: {e}"));
        let whole = std::panic::catch_unwind(|| run(&bytes, 0))
            .unwrap_or_else(|_| panic!("{name}: the validator panicked"));
        let got = match &whole {
            Ok(_) => "ok",
            Err(e) => e.code(),
        };
        assert_eq!(got, expect.trim(), "{name}: verdict changed ({whole:?})");
        for chunk in [1, 7, 512, 4096] {
            assert_eq!(run(&bytes, chunk), whole, "{name}: chunks of {chunk} bytes give another result");
        }
    }
    println!("{} regression inputs replayed", names.len());
}
