//! Random byte mutations of the reference bundles and of builder-made bundles, at the zstd layer
//! and at the tar layer (mutated, then re-compressed or fed as plain tar):
//! - the validator never panics (a panic fails the test; the input is saved for replay);
//! - memory stays bounded: a counting global allocator tracks the peak bytes held during each
//!   validation, which must stay under a bound derived from the [`Limits`];
//! - what the validator accepts, others read the same way: libzstd decodes it to the same number
//!   of tar bytes, and the tar crate reads the same members with the same contents.
//!
//! The PRNG is seeded; `SNAPBUNDLE_MUTATION_SCALE=<n>` multiplies the number of cases.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use snapbundle_core::report::Area;
use snapbundle_core::{validate, Error, Limits, Report};
use snapbundle_tests::builder::*;

// ---------------------------------------------------------------------------------------------
// Counting allocator
// ---------------------------------------------------------------------------------------------

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = CURRENT.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(n: usize) {
    CURRENT.fetch_sub(n, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator; only counters change.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size > layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The tests of this binary run one at a time, so that one's allocations do not count as
/// another's peak.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `f`; returns its result and the peak bytes held above what was held before.
fn measured<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

/// What a validation may hold at most under `l`: the zstd window (ruzstd reserves it whole) and
/// two 128 KiB blocks; every manifest and metadata file buffered at once; per entry the
/// bookkeeping (its path a few times over: duplicate set, prefix table, planned file, plus
/// fixed-size records); the pending long name; and 4 MiB for everything of fixed size (hash
/// states, FSE/Huffman tables, the tar record, the error value).
fn memory_bound(l: &Limits) -> usize {
    let per_entry = 3 * l.max_path_len as u64 + 512;
    let total = l.max_window_size
        + 2 * u64::from(MAX_BLOCK)
        + l.max_json_total
        + u64::from(l.max_entries) * per_entry
        + u64::from(l.max_path_len)
        + (4 << 20);
    total as usize
}

/// Tighter limits than the defaults (8 MiB window, 2 MiB of JSON, 1 000 entries), under which
/// the bound is about 17 MiB instead of about 200 MiB.
fn tight() -> Limits {
    Limits {
        max_window_size: 8 << 20,
        max_json_total: 2 << 20,
        max_manifest_size: 64 << 10,
        max_metadata_size: 1 << 20,
        max_entries: 1000,
        max_path_len: 512,
        ..Limits::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------------------------

fn scale() -> usize {
    std::env::var("SNAPBUNDLE_MUTATION_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1)
}

/// A position: half the time inside one of the `hot` ranges (headers, JSON, frame headers),
/// otherwise anywhere in `0..len`.
fn position(rng: &mut Rng, len: usize, hot: &[Range<usize>]) -> usize {
    if len == 0 {
        return 0;
    }
    if !hot.is_empty() && rng.percent(50) {
        let r = &hot[rng.index(hot.len())];
        let (start, end) = (r.start.min(len - 1), r.end.min(len).max(r.start.min(len - 1) + 1));
        return start + rng.index(end - start);
    }
    rng.index(len)
}

/// Applies one to three random edits: flip a bit, set a byte (to a random or a tar-significant
/// value), insert, delete or duplicate a few bytes, zero a run, or truncate.
fn mutate(rng: &mut Rng, input: &[u8], hot: &[Range<usize>]) -> (Vec<u8>, Vec<String>) {
    let mut b = input.to_vec();
    let mut log = Vec::new();
    for _ in 0..1 + rng.index(3) {
        let at = position(rng, b.len(), hot);
        match rng.below(100) {
            0..=29 if !b.is_empty() => {
                let bit = 1u8 << rng.below(8);
                b[at] ^= bit;
                log.push(format!("flip {at} ^{bit:#04x}"));
            }
            30..=54 if !b.is_empty() => {
                let v = match rng.below(4) {
                    0 => *[0u8, b' ', b'/', b'.', b'7', b'8', 0x80, 0xff, b'L', b'x', b'2', b'5']
                        .get(rng.index(12))
                        .unwrap_or(&0),
                    _ => rng.byte(),
                };
                b[at] = v;
                log.push(format!("set {at} = {v:#04x}"));
            }
            55..=64 => {
                let n = 1 + rng.index(16);
                let bytes: Vec<u8> = (0..n).map(|_| if rng.percent(50) { 0 } else { rng.byte() }).collect();
                b.splice(at..at, bytes);
                log.push(format!("insert {n} at {at}"));
            }
            65..=74 if !b.is_empty() => {
                let span = if rng.percent(20) { 1024 } else { 16 };
                let n = (1 + rng.index(span)).min(b.len() - at);
                b.drain(at..at + n);
                log.push(format!("delete {n} at {at}"));
            }
            75..=82 if !b.is_empty() => {
                let n = (1 + rng.index(600)).min(b.len() - at);
                let copy = b[at..at + n].to_vec();
                let to = position(rng, b.len(), hot);
                b.splice(to..to, copy);
                log.push(format!("duplicate {n} from {at} to {to}"));
            }
            83..=92 if !b.is_empty() => {
                let n = (1 + rng.index(512)).min(b.len() - at);
                b[at..at + n].fill(0);
                log.push(format!("zero {n} at {at}"));
            }
            _ => {
                b.truncate(at);
                log.push(format!("truncate at {at}"));
            }
        }
    }
    (b, log)
}

/// Hot ranges of a tar stream: every header record, the start of every JSON member, and the end
/// of the archive.
fn tar_hot(tar: &[u8]) -> Vec<Range<usize>> {
    let mut hot: Vec<Range<usize>> = header_offsets(tar).into_iter().map(|o| o..o + BLOCK).collect();
    for m in read_members(tar) {
        if m.name.ends_with(".json") {
            let start = header_offsets(tar).into_iter().find(|&o| o >= m.offset).unwrap_or(m.offset) + BLOCK;
            hot.push(start..start + m.data.len().min(2048));
        }
    }
    hot.push(tar.len().saturating_sub(2048)..tar.len());
    hot
}

// ---------------------------------------------------------------------------------------------
// Oracles
// ---------------------------------------------------------------------------------------------

/// Statistics of one run.
#[derive(Default)]
struct Stats {
    cases: usize,
    accepted: usize,
    codes: BTreeMap<&'static str, usize>,
    worst_peak: usize,
    worst_case: String,
    /// Accepted by the core, refused by libzstd (the ruzstd leniency, see
    /// `accepted_compressed_bundles_are_readable_by_libzstd`).
    libzstd_refuses: Vec<String>,
}

impl Stats {
    fn print(&self, what: &str, bound: usize) {
        println!(
            "{what}: {} cases, {} accepted, worst peak {:.1} MiB (bound {:.1} MiB) at {}",
            self.cases,
            self.accepted,
            self.worst_peak as f64 / (1 << 20) as f64,
            bound as f64 / (1 << 20) as f64,
            self.worst_case
        );
        println!("  verdicts: {:?}", self.codes);
        if !self.libzstd_refuses.is_empty() {
            println!(
                "  accepted but refused by libzstd: {} (first: {})",
                self.libzstd_refuses.len(),
                self.libzstd_refuses[0]
            );
        }
    }
}

/// Validates one mutated input: no panic, bounded memory, and, when accepted, the same reading
/// as libzstd and the tar crate.
fn check_case(stats: &mut Stats, label: &str, bytes: &[u8], limits: Limits) {
    let bound = memory_bound(&limits);
    let (outcome, peak) = measured(|| catch_unwind(AssertUnwindSafe(|| validate(bytes, limits))));
    let result = match outcome {
        Ok(r) => r,
        Err(_) => {
            let path =
                std::env::temp_dir().join(format!("snapbundle-mutation-panic-{}.bin", std::process::id()));
            let _ = std::fs::write(&path, bytes);
            panic!("validator panicked on {label}; input saved to {}", path.display());
        }
    };
    assert!(peak <= bound, "{label}: peak {peak} bytes exceeds the bound {bound} for {limits:?}");
    if peak > stats.worst_peak {
        stats.worst_peak = peak;
        stats.worst_case = label.to_string();
    }
    stats.cases += 1;
    *stats.codes.entry(result.as_ref().map(|_| "ok").unwrap_or_else(Error::code)).or_default() += 1;
    if let Ok(report) = &result {
        stats.accepted += 1;
        others_read_the_same(stats, label, bytes, report);
    }
}

/// Whether `bytes` start with a zstd frame or a skippable frame.
fn is_zstd(bytes: &[u8]) -> bool {
    bytes.starts_with(&ZSTD_MAGIC)
        || (bytes.len() >= 4 && bytes[0] & 0xf0 == 0x50 && bytes[1..4] == [0x2a, 0x4d, 0x18])
}

/// The tar stream as the core's own zstd gate decodes it.
fn gate_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut gate = snapbundle_core::zstd::ZstdGate::new(Limits::default().max_window_size);
    let pushed = gate.push(bytes, &mut |b: &[u8]| {
        out.extend_from_slice(b);
        Ok(())
    });
    assert!(pushed.and_then(|()| gate.finish()).is_ok(), "the gate refuses what the validator accepted");
    out
}

/// An accepted bundle decodes with libzstd to the same tar bytes the validator read (or libzstd
/// refuses it, which is recorded), and the tar crate finds the same regular files with the same
/// contents.
fn others_read_the_same(stats: &mut Stats, label: &str, bytes: &[u8], report: &Report) {
    let tar = if is_zstd(bytes) {
        let ours = gate_decode(bytes);
        assert_eq!(ours.len() as u64, report.decompressed_bytes, "{label}: gate and validator disagree");
        match zstd::stream::decode_all(bytes) {
            Ok(theirs) => assert!(theirs == ours, "{label}: libzstd and the core decode different bytes"),
            Err(_) => stats.libzstd_refuses.push(label.to_string()),
        }
        ours
    } else {
        bytes.to_vec()
    };
    let mut archive = tar::Archive::new(&tar[..]);
    let mut seen = Vec::new();
    for entry in archive.entries().unwrap_or_else(|e| panic!("{label}: tar crate: {e}")) {
        let mut entry = entry.unwrap_or_else(|e| panic!("{label}: tar crate: {e}"));
        if entry.header().entry_type().is_dir() {
            continue;
        }
        let path = String::from_utf8(entry.path_bytes().into_owned()).expect("UTF-8 path");
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data)
            .unwrap_or_else(|e| panic!("{label}: tar crate: {e}"));
        seen.push((path, data));
    }
    let planned: Vec<(String, String)> = report
        .files
        .iter()
        .map(|f| match f.area {
            Area::Snapshots => (f.path.clone(), f.digest.clone()),
            Area::Cache => (format!("cache/{}", f.path), f.digest.clone()),
        })
        .collect();
    // The tar crate's bytes, hashed by each file's plan algorithm (in archive order, as planned).
    let seen: Vec<(String, String)> = seen
        .into_iter()
        .enumerate()
        .map(|(i, (path, data))| {
            let algorithm = report.files.get(i).map_or("sha256", |f| f.algorithm.as_str());
            (path, plan_digest(algorithm, &data))
        })
        .collect();
    assert_eq!(seen, planned, "{label}: the tar crate reads other members or bytes");
}

/// The reference bundles: name and bytes.
fn fixtures() -> Vec<(String, Vec<u8>)> {
    fixture_names().into_iter().map(|n| (n.clone(), fixture(&n))).collect()
}

/// Small valid bundles from the builder (fast to validate, so many cases per second).
fn builder_tars() -> Vec<(String, Vec<u8>)> {
    let c = ImageCache::new("docker.io/library/python:3.12", 2);
    let long = Snapshot::small(5).with_prefix(&"p".repeat(99));
    vec![
        ("builder single".into(), bundle_tar(&[Snapshot::small(1)])),
        ("builder chain".into(), bundle_tar(&chain(3))),
        ("builder cache".into(), Tar::new().snapshot(&c.pin(Snapshot::small(4))).cache(&c).end().build()),
        (
            "builder long names".into(),
            Tar::new()
                .dir(&format!("{}/", long.prefix()))
                .long_file(&long.manifest_path(), &long.manifest_bytes())
                .long_file(&long.upper_path(), &long.upper)
                .end()
                .build(),
        ),
        ("builder ustar upper-first".into(), {
            let s = Snapshot::new(upper_bytes(20_000, 9), Integrity::Null);
            Tar::new()
                .ustar_file(&s.upper_path(), &s.upper)
                .ustar_file(&s.manifest_path(), &s.manifest_bytes())
                .end()
                .build()
        }),
    ]
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn memory_bound_of_the_default_limits_is_under_256_mib() {
    // The bound the mutation tests assert is derived from the Limits; for the defaults it stays
    // below 256 MiB, for the tight limits below 24 MiB.
    assert!(memory_bound(&Limits::default()) < 256 << 20, "{}", memory_bound(&Limits::default()));
    assert!(memory_bound(&tight()) < 24 << 20, "{}", memory_bound(&tight()));
}

/// Mutates every reference bundle and the builder bundles at the zstd layer under `limits`.
fn compressed_corpus_run(limits: Limits, seed: u64) -> Stats {
    let mut rng = Rng::new(seed);
    let mut stats = Stats::default();
    let mut inputs = fixtures();
    inputs.extend(builder_tars().into_iter().map(|(n, t)| (format!("{n}.zst"), zstd_with_checksum(&t))));
    for (name, bytes) in &inputs {
        let hot = [0..32, bytes.len().saturating_sub(64)..bytes.len()];
        for case in 0..90 * scale() {
            let (m, log) = mutate(&mut rng, bytes, &hot);
            check_case(&mut stats, &format!("{name} #{case} {log:?}"), &m, limits);
        }
    }
    stats
}

#[test]
fn mutated_compressed_bundles_never_panic_and_stay_bounded() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for (limits, seed) in [(Limits::default(), 0x2d57_0001), (tight(), 0x2d57_0002)] {
        let stats = compressed_corpus_run(limits, seed);
        stats.print("zstd layer", memory_bound(&limits));
        assert!(stats.cases >= 2000 && stats.accepted > 0, "the corpus must exercise both verdicts");
    }
}

#[test]
fn accepted_compressed_bundles_are_readable_by_libzstd() {
    // Whatever the validator accepts must be readable by GNU tar, which decodes with libzstd.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The reproducer: one byte of a Huffman-compressed literals block of a reference bundle
    // (integrity null, so no digest catches the changed content).
    let mut bytes = fixture("f-integrity-null.tar.zst");
    bytes[475] = 0xa2;
    let mut stats = Stats::default();
    check_case(&mut stats, "f-integrity-null.tar.zst with byte 475 = 0xa2", &bytes, Limits::default());
    assert!(
        stats.libzstd_refuses.is_empty(),
        "accepted but refused by libzstd: {:#?}",
        stats.libzstd_refuses
    );
    for (limits, seed) in [(Limits::default(), 0x2d57_0001), (tight(), 0x2d57_0002)] {
        let stats = compressed_corpus_run(limits, seed);
        assert!(
            stats.libzstd_refuses.is_empty(),
            "accepted but refused by libzstd: {:#?}",
            stats.libzstd_refuses
        );
    }
}

#[test]
fn mutated_tar_layer_never_panics_and_stays_bounded() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = Rng::new(0x7a2_0002);
    let mut tars: Vec<(String, Vec<u8>)> = fixtures()
        .into_iter()
        .map(|(n, b)| if b.starts_with(&ZSTD_MAGIC) { (n, unzstd(&b)) } else { (n, b) })
        .collect();
    tars.extend(builder_tars());
    for limits in [Limits::default(), tight()] {
        let mut stats = Stats::default();
        for (name, tar) in &tars {
            let hot = tar_hot(tar);
            // Big tars cost more per case: fewer cases, all aimed at the hot ranges.
            let cases = if tar.len() > 4 << 20 { 25 } else { 90 } * scale();
            for case in 0..cases {
                let (m, log) = mutate(&mut rng, tar, &hot);
                let plain = case % 3 == 0;
                let bytes = if plain { m } else { zstd::bulk::compress(&m, 1).expect("compress") };
                let label =
                    format!("{name} #{case} {} {log:?}", if plain { "plain" } else { "re-compressed" });
                check_case(&mut stats, &label, &bytes, limits);
            }
        }
        stats.print("tar layer", memory_bound(&limits));
        // Re-compressed by libzstd itself: here the core and libzstd must never disagree.
        assert!(stats.libzstd_refuses.is_empty(), "{:?}", stats.libzstd_refuses);
        assert!(stats.cases >= 2000 && stats.accepted > 0, "the corpus must exercise both verdicts");
    }
}

#[test]
fn mutated_frame_headers_never_allocate_beyond_the_window_cap() {
    // Every Window_Descriptor value and every Frame_Header_Descriptor value in front of a small
    // valid bundle: whatever the frame declares, memory stays under the bound of the limits.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tar = bundle_tar(&[Snapshot::small(1)]);
    for limits in [Limits::default(), tight()] {
        let mut stats = Stats::default();
        for wd in 0..=255u8 {
            check_case(&mut stats, &format!("window descriptor {wd:#04x}"), &raw_frame(wd, &tar), limits);
        }
        // ruzstd reserves the declared window when it resets for a second frame.
        for wd in 0..=255u8 {
            let bytes = [zstd(&tar[..4096]), raw_frame(wd, &tar[4096..])].concat();
            check_case(&mut stats, &format!("second frame, window descriptor {wd:#04x}"), &bytes, limits);
        }
        for fhd in 0..=255u8 {
            let mut f = frame_header(fhd, &[window_descriptor(20, 0), 0, 0, 0, 0, 0, 0, 0, 0]);
            f.extend(raw_blocks(1 << 20, &tar));
            check_case(&mut stats, &format!("frame header descriptor {fhd:#04x}"), &f, limits);
        }
        stats.print("frame headers", memory_bound(&limits));
        assert!(stats.libzstd_refuses.is_empty(), "{:?}", stats.libzstd_refuses);
    }
}
