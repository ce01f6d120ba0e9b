//! Property: the verdict does not depend on how the input is chunked.
//!
//! For valid and invalid bundles (builder-made and the microsandbox 0.6.2 reference fixtures),
//! pushing the bytes in random chunks (including empty and 1-byte chunks) gives exactly the same
//! `Result<Report, Error>` as pushing them all at once: same report, or same error with the same
//! offsets. A data-wanting sink is also checked on some splits: the files it rebuilds from the
//! `Data`/`Hole` events hash to what `FileEnd` says, whatever the chunking.
//!
//! The PRNG is seeded, so a failure names its seed and split and replays exactly. The number of
//! splits per bundle is scaled to its decompressed size so that the whole file stays within a
//! few seconds in a debug build: hundreds of splits for small bundles, a few for the 8 MiB ones.

use sha2::{Digest as _, Sha256};
use snapbundle_core::{validate, Error, Event, Limits, NullSink, Report, Sink, Stop, Validator};
use snapbundle_tests::builder::*;

/// Bytes of decompressed tar one property run may spend on a bundle (all its splits together).
const BYTES_PER_BUNDLE: u64 = 24 << 20;
/// Most and fewest splits per bundle.
const MAX_SPLITS: u64 = 400;
const MIN_SPLITS: u64 = 4;

/// A random chunk length: often 0 or 1, sometimes a few bytes around a record, sometimes large.
fn chunk_len(rng: &mut Rng, remaining: usize) -> usize {
    let n = match rng.below(100) {
        0..=9 => 0,
        10..=29 => 1,
        30..=44 => 2 + rng.index(15),
        45..=69 => 17 + rng.index(1008),
        70..=89 => 1025 + rng.index(16 << 10),
        _ => 16 << 10 | rng.index(256 << 10),
    };
    n.min(remaining)
}

/// Pushes `bytes` in random chunks into a validator with `sink`; returns the verdict.
fn chunked<S: Sink>(bytes: &[u8], limits: Limits, rng: &mut Rng, sink: &mut S) -> Result<Report, Error> {
    let mut v = Validator::new(limits);
    let mut rest = bytes;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(chunk_len(rng, rest.len()));
        v.push(chunk, sink)?;
        rest = tail;
    }
    // A trailing empty push must not change anything either.
    v.push(&[], sink)?;
    v.finish()
}

/// A sink that rebuilds every file from `Data` and `Hole` events and checks it against
/// `FileEnd`.
#[derive(Default)]
struct Rebuild {
    hasher: Option<Sha256>,
    /// `msb-sparse-sha256-v1` of the same bytes, from its definition.
    sparse: Option<Sha256>,
    next_offset: u64,
    files: Vec<(String, [u8; 32])>,
    current: String,
    problems: Vec<String>,
}

impl Sink for Rebuild {
    fn event(&mut self, event: Event<'_>) -> Result<(), Stop> {
        match event {
            Event::Member(m) => {
                self.current = m.path.to_string();
                self.hasher = (!m.slot.is_dir()).then(Sha256::new);
                self.sparse = (!m.slot.is_dir()).then(|| {
                    let mut h = Sha256::new();
                    h.update(b"msb-sparse-sha256-v1\0");
                    h.update(m.size.to_le_bytes());
                    h
                });
                self.next_offset = 0;
            }
            Event::Data { offset, bytes } => {
                if offset != self.next_offset {
                    self.problems
                        .push(format!("{}: data at {offset}, expected {}", self.current, self.next_offset));
                }
                self.next_offset = offset + bytes.len() as u64;
                for h in [self.hasher.as_mut(), self.sparse.as_mut()].into_iter().flatten() {
                    h.update(bytes);
                }
            }
            Event::Hole { offset, len } => {
                if offset != self.next_offset || offset % 4096 != 0 {
                    self.problems
                        .push(format!("{}: hole at {offset}, expected {}", self.current, self.next_offset));
                }
                self.next_offset = offset + len;
                for h in [self.hasher.as_mut(), self.sparse.as_mut()].into_iter().flatten() {
                    for _ in 0..len / 4096 {
                        h.update([0u8; 4096]);
                    }
                    h.update(vec![0u8; (len % 4096) as usize]);
                }
            }
            Event::FileEnd { size, digests } => {
                let got: [u8; 32] = self.hasher.take().map(|h| h.finalize().into()).unwrap_or_default();
                let sparse: [u8; 32] = self.sparse.take().map(|h| h.finalize().into()).unwrap_or_default();
                let announced = digests.sha256.is_some() || digests.sparse_sha256.is_some();
                if size != self.next_offset
                    || !announced
                    || digests.sha256.is_some_and(|d| d != got)
                    || digests.sparse_sha256.is_some_and(|d| d != sparse)
                {
                    self.problems.push(format!("{}: rebuilt file differs from FileEnd", self.current));
                }
                self.files.push((self.current.clone(), got));
            }
        }
        Ok(())
    }
}

/// `SNAPBUNDLE_CHUNKING_SCALE=<n>` multiplies the number of splits (for long runs in release).
fn scale() -> u64 {
    std::env::var("SNAPBUNDLE_CHUNKING_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1)
}

/// Checks the property on one bundle; returns the number of splits tried.
fn property(name: &str, bytes: &[u8], limits: Limits, seed: u64) -> u64 {
    let whole = validate(bytes, limits);
    let cost = match &whole {
        Ok(r) => r.decompressed_bytes,
        Err(_) => decompressed_len(bytes),
    };
    let splits = (BYTES_PER_BUNDLE / cost.max(1)).clamp(MIN_SPLITS, MAX_SPLITS) * scale();
    let mut rng = Rng::new(seed ^ fnv(name));
    let mut rebuilt_reference: Option<Vec<(String, [u8; 32])>> = None;
    for split in 0..splits {
        let state = rng.clone();
        if split % 8 == 0 {
            let mut sink = Rebuild::default();
            let r = chunked(bytes, limits, &mut rng, &mut sink);
            assert_eq!(r, whole, "{name}: split {split} (rng {state:?}) with a data sink");
            assert!(sink.problems.is_empty(), "{name}: split {split}: {:?}", sink.problems);
            match &rebuilt_reference {
                None => rebuilt_reference = Some(sink.files),
                Some(files) => assert_eq!(&sink.files, files, "{name}: split {split} rebuilt other files"),
            }
        } else {
            let r = chunked(bytes, limits, &mut rng, &mut NullSink);
            assert_eq!(r, whole, "{name}: split {split} (rng {state:?})");
        }
    }
    splits
}

/// About how many tar bytes an invalid bundle makes the validator read: what libzstd decodes
/// of it, or its own length.
fn decompressed_len(bytes: &[u8]) -> u64 {
    let mut decoded = Vec::new();
    if let Ok(mut d) = zstd::stream::read::Decoder::new(bytes) {
        let _ = std::io::Read::read_to_end(&mut std::io::Read::take(&mut d, 64 << 20), &mut decoded);
    }
    (decoded.len() as u64).max(bytes.len() as u64)
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// Valid bundles made by the builder, in every container form.
fn valid_bundles() -> Vec<(String, Vec<u8>)> {
    let single = bundle_tar(&[Snapshot::small(1)]);
    let chain = bundle_tar(&chain(3));
    let c = ImageCache::new("docker.io/library/python:3.12", 2);
    let cached = Tar::new().snapshot(&c.pin(Snapshot::small(4))).cache(&c).end().build();
    let long = Snapshot::small(5).with_prefix(&"p".repeat(130));
    let long = Tar::new()
        .long_file(&long.manifest_path(), &long.manifest_bytes())
        .long_file(&long.upper_path(), &long.upper)
        .end()
        .build();
    let sha = Snapshot::new(upper_bytes(40_000, 6), Integrity::Sha256);
    let upper_first = Tar::new().snapshot_upper_first(&sha).end().build();
    let mut padded = single.clone();
    padded.resize(single.len().div_ceil(10240) * 10240, 0);
    vec![
        ("single.tar".into(), single.clone()),
        ("single.tar.zst".into(), zstd(&single)),
        ("single multi-frame".into(), zstd_frames(&single, 700)),
        (
            "single skippable + checksum".into(),
            [skippable_frame(1, b"meta"), zstd_with_checksum(&single)].concat(),
        ),
        ("single raw frame 1 KiB window".into(), raw_frame(window_descriptor(10, 0), &single)),
        ("single padded to a record".into(), padded),
        ("chain.tar.zst".into(), zstd(&chain)),
        ("chain multi-frame".into(), zstd_frames(&chain, 5000)),
        ("cache.tar".into(), cached.clone()),
        ("cache.tar.zst".into(), zstd_with_checksum(&cached)),
        ("long names".into(), long),
        ("upper first sha256".into(), zstd(&upper_first)),
    ]
}

/// Invalid bundles: one per layer at least, failing at various depths.
fn invalid_bundles() -> Vec<(String, Vec<u8>)> {
    let s = Snapshot::small(1);
    let good = bundle_tar(std::slice::from_ref(&s));
    let upper_at = header_offsets(&good)[1];
    let mut bad_sum = good.clone();
    bad_sum[upper_at + 148] ^= 1;
    let mut flipped = good.clone();
    flipped[upper_at + BLOCK + 100] ^= 0x40;
    let mut checksum = zstd_with_checksum(&good);
    let last = checksum.len() - 1;
    checksum[last] ^= 1;
    let symlink = Tar::new()
        .file(&s.manifest_path(), &s.manifest_bytes())
        .header(&Header::file(&s.upper_path(), 0).type_flag(flag::SYMLINK).link_name(b"/etc"))
        .end()
        .build();
    let pax = Tar::new().pax(flag::PAX, &[("size", "0")]).snapshot(&s).end().build();
    let lone = Tar::new()
        .file(&s.manifest_path(), &s.manifest_bytes())
        .zero_block()
        .file(&s.upper_path(), &s.upper)
        .end()
        .build();
    let mut fcs_lie = frame_header_with_content_size(window_descriptor(20, 0), 1024);
    fcs_lie.extend(raw_blocks(1 << 20, &good));
    let mut bomb: Vec<u8> = zero_bomb(&[], 64).flatten().collect();
    bomb.extend(b"tail");
    let dict = [frame_header_with_dictionary(9), raw_blocks(1 << 20, &good)].concat();
    let c = ImageCache::new("docker.io/library/python:3.12", 1);
    let mut bad_cache = c.clone();
    bad_cache.layers[0].pop();
    let bad_cache = Tar::new().snapshot(&c.pin(Snapshot::small(2))).cache(&bad_cache).end().build();
    let bad_json =
        Tar::new().file(&s.manifest_path(), b"{\"schema\":1,").file(&s.upper_path(), &s.upper).end().build();
    vec![
        ("not a bundle".into(), b"hello, this is not a bundle".repeat(30)),
        ("empty".into(), Vec::new()),
        ("three bytes".into(), b"\x28\xb5\x2f".to_vec()),
        ("header checksum".into(), bad_sum),
        ("upper digest".into(), zstd(&flipped)),
        ("zstd checksum".into(), checksum),
        ("symlink".into(), zstd(&symlink)),
        ("pax".into(), pax),
        ("lone zero block".into(), lone),
        ("missing end".into(), zstd(&good[..good.len() - 1024])),
        ("truncated tar".into(), good[..upper_at + 3000].to_vec()),
        ("truncated zstd".into(), {
            let z = zstd(&good);
            z[..z.len() - 7].to_vec()
        }),
        ("trailing data".into(), [good.clone(), b"x".to_vec()].concat()),
        ("trailing frame garbage".into(), [zstd(&good), b"garbage".to_vec()].concat()),
        ("content size lie".into(), fcs_lie),
        ("zero bomb".into(), bomb),
        ("dictionary".into(), dict),
        (
            "window too large".into(),
            [frame_header_with_window(window_descriptor(31, 0)), vec![0; 100]].concat(),
        ),
        ("cache erofs size".into(), zstd(&bad_cache)),
        ("manifest json".into(), bad_json),
    ]
}

/// An upper of `len` bytes, zero but for 4 KiB data blocks at `blocks` and its last byte.
fn blocky_upper(len: usize, blocks: &[usize]) -> Vec<u8> {
    let mut v = vec![0u8; len];
    for &b in blocks {
        for (j, byte) in v[b * 4096..(b + 1) * 4096].iter_mut().enumerate() {
            *byte = (j as u8).wrapping_mul(13) | 1;
        }
    }
    if let Some(last) = v.last_mut() {
        *last = 9;
    }
    v
}

/// Bundles with old-GNU sparse uppers: `(name, bytes, the dense bundle of the same snapshots
/// when the bundle is valid, else its error code and a word of its message)`.
type Expect = Result<Vec<u8>, (&'static str, &'static str)>;

fn sparse_bundles() -> Vec<(String, Vec<u8>, Expect)> {
    use snapbundle_tests::sparse::{stored, Sparse};
    let blocks: Vec<usize> = (0..40).map(|i| i * 3 + 1).collect();
    let s = Snapshot::new(blocky_upper(130 * 4096 + 77, &blocks), Integrity::Sparse);
    let manifest = || Tar::new().file(&s.manifest_path(), &s.manifest_bytes());
    let sp = Sparse::of(&s.upper_path(), &s.upper);
    let many = sp.append(manifest()).end().build();
    let dense = bundle_tar(std::slice::from_ref(&s));
    let holes = Snapshot::new(vec![0; 64 << 10], Integrity::Sha256);
    let all_hole = Sparse::of(&holes.upper_path(), &holes.upper)
        .append(Tar::new())
        .file(&holes.manifest_path(), &holes.manifest_bytes());
    let all_hole = all_hole.end().build();
    let holes_dense = Tar::new().snapshot_upper_first(&holes).end().build();
    let len = s.upper.len() as u64;
    let slots = vec![(4096, 8192), (8192, 4096), (len, 0)];
    let overlap = Sparse::with(&s.upper_path(), len, slots.clone(), stored(&s.upper, &slots));
    let overlap = overlap.append(manifest()).end().build();
    let huge = Sparse::with(&s.upper_path(), 1 << 50, vec![(1 << 50, 0)], Vec::new())
        .append(manifest())
        .end()
        .build();
    let ext_at = many.len() - 1024 - sp.data.len().div_ceil(BLOCK) * BLOCK - 2 * BLOCK;
    let mut lying = sp.clone();
    lying.size += 512;
    lying.data.extend_from_slice(&[1; 512]);
    vec![
        ("sparse upper, 3 extension blocks".into(), many.clone(), Ok(dense.clone())),
        ("sparse upper zstd".into(), zstd(&many), Ok(dense)),
        ("sparse all hole, upper first".into(), all_hole, Ok(holes_dense)),
        ("sparse overlap".into(), zstd(&overlap), Err(("invalid_sparse_map", "overlap"))),
        ("sparse huge realsize".into(), huge, Err(("logical_budget_exceeded", "logical"))),
        (
            "sparse sum mismatch".into(),
            lying.append(manifest()).end().build(),
            Err(("invalid_sparse_map", "do not sum")),
        ),
        (
            "sparse cut in an extension block".into(),
            many[..ext_at + 100].to_vec(),
            Err(("truncated", "extension block")),
        ),
        (
            "sparse cut in its data".into(),
            zstd(&many[..many.len() - 3000]),
            Err(("truncated", "member data")),
        ),
    ]
}

#[test]
fn sparse_bundles_give_the_same_verdict_for_every_chunking() {
    let mut total = 0;
    for (i, (name, bytes, expect)) in sparse_bundles().into_iter().enumerate() {
        let r = validate(&bytes, Limits::default());
        match expect {
            Ok(dense) => {
                let (sparse, dense) =
                    (r.expect("valid"), validate(&dense, Limits::default()).expect("dense"));
                assert_eq!((&sparse.snapshots, &sparse.files), (&dense.snapshots, &dense.files), "{name}");
            }
            Err((code, word)) => {
                let e = r.expect_err("invalid");
                assert_eq!(e.code(), code, "{name}: {e}");
                assert!(e.to_string().contains(word), "{name}: {e}");
            }
        }
        total += property(&name, &bytes, Limits::default(), 0x5a45_0000 + i as u64);
    }
    println!("sparse bundles: {total} random splits");
}

#[test]
fn builder_bundles_give_the_same_verdict_for_every_chunking() {
    let mut total = 0;
    for (i, (name, bytes)) in valid_bundles().into_iter().enumerate() {
        assert!(validate(&bytes, Limits::default()).is_ok(), "{name} must be valid");
        total += property(&name, &bytes, Limits::default(), 0x5eed_0000 + i as u64);
    }
    println!("valid builder bundles: {total} random splits");
}

#[test]
fn invalid_bundles_give_the_same_error_for_every_chunking() {
    let mut total = 0;
    for (i, (name, bytes)) in invalid_bundles().into_iter().enumerate() {
        assert!(validate(&bytes, Limits::default()).is_err(), "{name} must be invalid");
        total += property(&name, &bytes, Limits::default(), 0xbad_0000 + i as u64);
    }
    println!("invalid builder bundles: {total} random splits");
}

#[test]
fn reference_bundles_give_the_same_verdict_for_every_chunking() {
    let mut total = 0;
    for (i, name) in fixture_names().into_iter().enumerate() {
        total += property(&name, &fixture(&name), Limits::default(), 0xf1c5_0000 + i as u64);
    }
    println!("reference bundles: {total} random splits");
}

#[test]
fn tight_limits_give_the_same_verdict_for_every_chunking() {
    // Limits that trip in the middle of a stream: the error must not move with the chunking.
    let limits = Limits {
        max_decompressed_bytes: 30_000,
        max_entries: 5,
        max_trailing_zeros: 700,
        max_window_size: 1 << 16,
        ..Limits::default()
    };
    let mut total = 0;
    for (i, (name, bytes)) in valid_bundles().into_iter().chain(invalid_bundles()).enumerate() {
        total += property(&name, &bytes, limits, 0x7167_0000 + i as u64) / 4 + 1;
    }
    println!("tight limits: about {total} random splits");
}

/// Released (0.6.7 – 0.6.16) archives: valid ones and lies, with random chunkings (a null sink:
/// no writer takes a released archive, so the data-sink check of [`property`] does not apply).
#[test]
fn released_archives_give_the_same_verdict_for_every_chunking() {
    use snapbundle_tests::released::{archive, chain, images, members, sealed, tar, Inventory};
    let snaps = chain(3);
    let ms = members(&snaps, &images());
    let mut lie = Inventory::for_members(&ms, &snaps[2].digest(), true);
    lie.entries[0].apparent += 1;
    let mut flipped = ms.clone();
    flipped[1].data[4096] ^= 1;
    let cases = [
        ("g2-chain3", archive(&snaps, &images())),
        ("g2-chain3-zstd", zstd(&archive(&snaps, &images()))),
        ("g2-no-inventory", tar(&ms)),
        ("g2-size-lie", sealed(&ms, &lie)),
        ("g2-flipped", tar(&flipped)),
    ];
    let mut total = 0;
    for (i, (name, bytes)) in cases.iter().enumerate() {
        let whole = validate(bytes, Limits::default());
        assert_eq!(whole.is_ok(), i < 3, "{name}: {whole:?}");
        let mut rng = Rng::new(0x0672_0000 + i as u64);
        for split in 0..(100 * scale()) {
            let state = rng.clone();
            let r = chunked(bytes, Limits::default(), &mut rng, &mut NullSink);
            assert_eq!(r, whole, "{name}: split {split} (rng {state:?})");
            total += 1;
        }
    }
    println!("released archives: {total} random splits");
}
