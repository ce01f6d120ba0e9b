//! Shared harness of the snapbundle fuzz targets.
//!
//! Every target follows one pattern: run the code under test over the whole input in one chunk,
//! run it again over the same bytes cut into chunks whose sizes are derived from the input itself
//! (so a crashing input replays exactly), and require the same result. On top of libFuzzer's own
//! oracles (panic, `-timeout`, `-rss_limit_mb`, `-malloc_limit_mb`), a counting global allocator
//! aborts when the bytes live at once pass [`ALLOC_BOUND`], the bound that [`limits`] implies.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use snapbundle_core::tar::{Member, TarSink, Walker};
use snapbundle_core::{Error, Limits, NullSink, Report, Validator};

/// The limits every target validates with: the defaults, with the window, the decompressed
/// budget and the JSON caps lowered so that one execution stays fast and small. The 0.6.2
/// reference bundles (2 MiB windows, tars of at most 2050 KiB) fit, except the two whose tar
/// passes 8 MiB: those exercise the budget instead. (A budget of 4 MiB let zero-bomb seeds cost
/// 8 MiB of decoding and hashing per execution and held `validator_zstd` near 600 exec/s.)
pub fn limits() -> Limits {
    Limits {
        max_window_size: 8 << 20,
        max_decompressed_bytes: 2176 << 10,
        max_manifest_size: 256 << 10,
        max_metadata_size: 1 << 20,
        max_json_total: 2 << 20,
        ..Limits::DEFAULT
    }
}

/// Most bytes the harness may hold live at once: the zstd window twice over (decoder buffer and
/// its copy-on-grow), the JSON cap twice over (buffer and parsed values), the input and the
/// single-chunk result, and 16 MiB for everything bounded by counts (names, reports).
pub const ALLOC_BOUND: usize = 2 * (8 << 20) + 2 * (2 << 20) + (16 << 20);

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator with a live-bytes counter and a hard bound.
pub struct Counting;

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
    if now > ALLOC_BOUND + input_allowance() {
        // An allocation beyond the limits is a finding: abort so libFuzzer saves the input.
        eprintln!("snapbundle-fuzz: {now} bytes live, bound is {ALLOC_BOUND} + input");
        std::process::abort();
    }
}

static INPUT: AtomicUsize = AtomicUsize::new(0);

fn input_allowance() -> usize {
    // The harness holds the input and up to two derived copies of it.
    INPUT.load(Ordering::Relaxed).saturating_mul(4)
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
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Declares the size of the input about to be processed (it is allowed on top of the bound).
pub fn begin(input: &[u8]) {
    INPUT.store(input.len(), Ordering::Relaxed);
}

/// Peak live bytes since the process started.
pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Chunk sizes derived from the input: FNV-1a of the bytes seeds an xorshift generator, which
/// picks a size class per chunk (1..=16, 1..=600, 1..=8192 or the rest of the input).
pub fn chunks(data: &[u8]) -> Vec<&[u8]> {
    let mut seed = 0xcbf2_9ce4_8422_2325u64;
    for &b in data {
        seed = (seed ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let r = next();
        let max = match r % 4 {
            0 => 16,
            1 => 600,
            2 => 8192,
            _ => rest.len(),
        };
        let n = (((r >> 8) % max as u64) as usize + 1).min(rest.len());
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
    }
    out
}

/// [`limits`] with a 256 KiB decompressed budget, for `validator_zstd`: what it explores is the
/// zstd gate and the decoder, whose paths do not need megabytes of output; zero-bomb inputs
/// stop at the budget after a quarter millisecond instead of several.
pub fn zstd_limits() -> Limits {
    Limits { max_decompressed_bytes: 256 << 10, ..limits() }
}

/// The validator over `data` in one push.
pub fn validate_whole(data: &[u8]) -> Result<Report, Error> {
    validate_whole_with(data, limits())
}

/// [`validate_whole`] with other limits.
pub fn validate_whole_with(data: &[u8], limits: Limits) -> Result<Report, Error> {
    let mut v = Validator::new(limits);
    v.push(data, &mut NullSink)?;
    v.finish()
}

/// The validator over `data` pushed in the derived chunks.
pub fn validate_chunked(data: &[u8]) -> Result<Report, Error> {
    validate_chunked_with(data, limits())
}

/// [`validate_chunked`] with other limits.
pub fn validate_chunked_with(data: &[u8], limits: Limits) -> Result<Report, Error> {
    let mut v = Validator::new(limits);
    for c in chunks(data) {
        v.push(c, &mut NullSink)?;
    }
    v.finish()
}

/// The validator oracle: same verdict, same report or same error, for both chunkings.
pub fn check_validator(data: &[u8]) -> Result<Report, Error> {
    check_validator_with(data, limits())
}

/// [`check_validator`] with other limits.
pub fn check_validator_with(data: &[u8], limits: Limits) -> Result<Report, Error> {
    let whole = validate_whole_with(data, limits);
    let chunked = validate_chunked_with(data, limits);
    assert_eq!(whole, chunked, "the chunked run differs from the single-chunk run");
    if let Err(e) = &whole {
        // Every error has a stable code and a message.
        assert!(!e.code().is_empty());
        assert!(!e.to_string().is_empty());
    }
    whole
}

/// What the walker told its sink, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum WalkEvent {
    /// A member header.
    Member { index: u32, offset: u64, name: Vec<u8>, size: u64, mtime: u64, mode: u64 },
    /// The end of a member's data: its logical length (holes included) and an FNV-1a hash.
    End { len: u64, hash: u64 },
}

/// A [`TarSink`] that records events (data folded into a running hash).
#[derive(Default)]
pub struct Recorder {
    /// The events so far.
    pub events: Vec<WalkEvent>,
    len: u64,
    hash: u64,
}

impl TarSink for Recorder {
    fn member(&mut self, m: &Member) -> Result<(), Error> {
        self.events.push(WalkEvent::Member {
            index: m.index,
            offset: m.offset,
            name: m.name.clone(),
            size: m.size,
            mtime: m.mtime,
            mode: m.mode,
        });
        self.len = 0;
        self.hash = 0xcbf2_9ce4_8422_2325;
        Ok(())
    }
    fn data(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.len += bytes.len() as u64;
        for &b in bytes {
            self.hash = (self.hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Ok(())
    }
    fn hole(&mut self, len: u64) -> Result<(), Error> {
        // A hole is folded in as its length behind a marker byte the data never reaches.
        self.len += len;
        for b in [0x1ff_u64, len] {
            self.hash = (self.hash ^ b).wrapping_mul(0x0100_0000_01b3);
        }
        Ok(())
    }
    fn member_end(&mut self) -> Result<(), Error> {
        self.events.push(WalkEvent::End { len: self.len, hash: self.hash });
        Ok(())
    }
}

/// Walks `pieces` of a tar stream; returns the events and the verdict.
pub fn walk<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> (Vec<WalkEvent>, Result<(), Error>) {
    let mut w = Walker::new(limits());
    let mut rec = Recorder::default();
    for p in pieces {
        if let Err(e) = w.push(p, &mut rec) {
            return (rec.events, Err(e));
        }
    }
    let r = w.finish();
    (rec.events, r)
}

/// Plain-tar surgery on the microsandbox 0.7.13 reference archives, for the G3 (`.msb`) targets:
/// they embed one real archive and swap one member's bytes, keeping every other record as the
/// real save wrote it.
pub mod msb {
    use core::ops::Range;

    /// `labels.msb` (a plain tar of 23 040 bytes): a snapshot descriptor, a `metadata.json`, one
    /// 16 KiB raw layer without recorded integrity, and `archive.json`. The smallest valid
    /// reference archive with every JSON member kind, so one execution stays cheap.
    pub const LABELS: &[u8] =
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/microsandbox-0.7.13/labels.msb"));

    /// One member of a plain tar whose headers are all ustar/GNU regular or old-GNU sparse files
    /// with short names (a sparse member's `data` is its stored bytes).
    #[derive(Debug, Clone)]
    pub struct TarMember {
        /// Offset of its header record.
        pub header: usize,
        /// Its name (the name field up to the first NUL; the fixtures use no prefix field).
        pub name: String,
        /// Its data, unpadded.
        pub data: Range<usize>,
    }

    fn octal(field: &[u8]) -> usize {
        let s: String = field.iter().take_while(|&&b| b != 0 && b != b' ').map(|&b| b as char).collect();
        usize::from_str_radix(s.trim_start(), 8).expect("octal size field")
    }

    /// The members of `tar`, up to its first zero record (panics on anything else: the inputs are
    /// the embedded fixtures, not fuzzer data).
    pub fn members(tar: &[u8]) -> Vec<TarMember> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 512 <= tar.len() && tar[at..at + 512].iter().any(|&b| b != 0) {
            let h = &tar[at..at + 512];
            assert!(matches!(h[156], 0 | b'0' | b'S'), "fixture member of type {}", h[156]);
            let name_len = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
            let name = String::from_utf8(h[..name_len].to_vec()).expect("utf-8 name");
            let size = octal(&h[124..136]);
            // An old-GNU sparse member: its extension records come before its stored data.
            let mut start = at + 512;
            if h[156] == b'S' && h[482] != 0 {
                while tar[start + 504] != 0 {
                    start += 512;
                }
                start += 512;
            }
            let data = start..start + size;
            out.push(TarMember { header: at, name, data: data.clone() });
            at = data.end.div_ceil(512) * 512;
        }
        out
    }

    /// The data of the member `name`.
    pub fn member<'a>(tar: &'a [u8], name: &str) -> &'a [u8] {
        let m = members(tar).into_iter().find(|m| m.name == name).expect("member present");
        &tar[m.data]
    }

    /// `tar` with the data of member `name` replaced by `data`: its header keeps every field but
    /// the size (and the checksum); the records after it are copied unchanged.
    pub fn replace_member(tar: &[u8], name: &str, data: &[u8]) -> Vec<u8> {
        let m = members(tar).into_iter().find(|m| m.name == name).expect("member present");
        let after = m.data.end.div_ceil(512) * 512;
        let mut out = Vec::with_capacity(tar.len() + data.len() + 512);
        out.extend_from_slice(&tar[..m.header]);
        let mut h = [0u8; 512];
        h.copy_from_slice(&tar[m.header..m.header + 512]);
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out.extend_from_slice(&tar[after..]);
        out
    }

    /// `hay` with every occurrence of `from` replaced by `to`; also returns how many there were.
    pub fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> (Vec<u8>, usize) {
        let mut out = Vec::with_capacity(hay.len() + to.len());
        let mut n = 0;
        let mut i = 0;
        while i < hay.len() {
            if !from.is_empty() && hay[i..].starts_with(from) {
                out.extend_from_slice(to);
                i += from.len();
                n += 1;
            } else {
                out.push(hay[i]);
                i += 1;
            }
        }
        (out, n)
    }
}
