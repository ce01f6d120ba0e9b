//! One hash per byte per algorithm the format needs (`docs/format-0.6.2.md` §3.2): an upper is
//! hashed only for the digest its manifest records (plain SHA-256 when none), both only when it
//! comes before its manifest; the file plan binds it with that digest.

use std::cell::Cell;

use snapbundle_core::integrity::{Hashes, Sha2, Sha256Backend, Sha256State};
use snapbundle_core::{Event, Limits, Report, Sink, Stop, Validator};
use snapbundle_tests::builder::*;

thread_local! {
    /// Bytes (data and zeros) given to SHA-256 computations on this thread.
    static HASHED: Cell<u64> = const { Cell::new(0) };
}

/// A backend that counts what it hashes and hands it to [`Sha2`].
#[derive(Debug)]
struct Counting;

struct CountingState(Box<dyn Sha256State>);

impl Sha256State for CountingState {
    fn update(&mut self, bytes: &[u8]) {
        HASHED.with(|h| h.set(h.get() + bytes.len() as u64));
        self.0.update(bytes);
    }
    fn update_zeros(&mut self, len: u64) {
        HASHED.with(|h| h.set(h.get() + len));
        self.0.update_zeros(len);
    }
    fn finish(self: Box<Self>) -> [u8; 32] {
        self.0.finish()
    }
}

impl Sha256Backend for Counting {
    fn start(&self) -> Box<dyn Sha256State> {
        Box::new(CountingState(Sha2.start()))
    }
}

/// Records the hashes each file's `Member` event announces.
#[derive(Default)]
struct Announced(Vec<(String, Hashes)>);

impl Sink for Announced {
    fn event(&mut self, event: Event<'_>) -> Result<(), Stop> {
        if let Event::Member(m) = event {
            self.0.push((m.path.to_string(), m.hashes));
        }
        Ok(())
    }
}

/// Validates `bundle` with the counting backend: the report, the announcements and the bytes
/// hashed.
fn run(bundle: &[u8]) -> (Report, Vec<(String, Hashes)>, u64) {
    HASHED.with(|h| h.set(0));
    let mut v = Validator::with_sha256(Limits::default(), &Counting);
    let mut sink = Announced::default();
    v.push(bundle, &mut sink).expect("valid bundle");
    let report = v.finish().expect("valid bundle");
    (report, sink.0, HASHED.with(Cell::get))
}

/// A 64 KiB upper with data and zero blocks.
fn upper() -> Vec<u8> {
    let mut u = vec![0u8; 64 << 10];
    for (i, b) in u.iter_mut().enumerate().take(20_000) {
        *b = (i % 251) as u8 + 1;
    }
    u
}

/// The `msb-sparse-sha256-v1` prefix: tag, NUL, length.
const SPARSE_PREFIX: u64 = 20 + 1 + 8;

#[test]
fn each_file_is_hashed_once_for_the_digest_the_plan_binds() {
    for (integrity, algorithm) in [
        (Integrity::Null, "sha256"),
        (Integrity::Sha256, "sha256"),
        (Integrity::Sparse, "msb-sparse-sha256-v1"),
    ] {
        let s = Snapshot::new(upper(), integrity);
        let manifest = s.manifest_bytes();
        let upper_len = s.upper.len() as u64;
        let prefix = if algorithm == "sha256" { 0 } else { SPARSE_PREFIX };
        let want_digest = plan_digest(algorithm, &s.upper);

        // 0.6.2's order: the manifest first, so the upper's one algorithm is known.
        let bundle =
            Tar::new().file(&s.manifest_path(), &manifest).file(&s.upper_path(), &s.upper).end().build();
        let (report, announced, hashed) = run(&bundle);
        let ctx = format!("{integrity:?}, manifest first");
        assert_eq!(announced[1], (s.upper_path(), Hashes::only(parse(algorithm))), "{ctx}");
        assert_eq!(announced[0].1, Hashes::SHA256, "{ctx}: the manifest");
        assert_eq!(hashed, manifest.len() as u64 + upper_len + prefix, "{ctx}: bytes hashed");
        assert_eq!(
            (report.files[1].algorithm.as_str(), &report.files[1].digest),
            (algorithm, &want_digest),
            "{ctx}"
        );
        assert_eq!(report.files[0].digest, sha256_digest(&manifest), "{ctx}: the manifest's plan digest");

        // The upper first: its algorithm is not known before its data, so both are computed;
        // the plan still binds it with the same digest.
        let bundle =
            Tar::new().file(&s.upper_path(), &s.upper).file(&s.manifest_path(), &manifest).end().build();
        let (report, announced, hashed) = run(&bundle);
        let ctx = format!("{integrity:?}, upper first");
        assert_eq!(announced[0], (s.upper_path(), Hashes::BOTH), "{ctx}");
        assert_eq!(hashed, manifest.len() as u64 + 2 * upper_len + SPARSE_PREFIX, "{ctx}: bytes hashed");
        assert_eq!(
            (report.files[0].algorithm.as_str(), &report.files[0].digest),
            (algorithm, &want_digest),
            "{ctx}"
        );
    }
}

fn parse(algorithm: &str) -> snapbundle_core::integrity::Algorithm {
    snapbundle_core::integrity::Algorithm::parse(algorithm).expect("known algorithm")
}
