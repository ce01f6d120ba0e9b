//! The cases every front end must judge identically (native, wasmtime sandbox, wasm-bindgen in
//! node): the reference fixtures, hand-built hostile bundles covering each layer of the core, and
//! a deterministic mutation set of the valid fixtures (truncations, byte flips, trailing bytes).

use std::path::Path;

use crate::builder::*;

/// A named bundle.
pub struct Case {
    /// Unique, file-name safe.
    pub name: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

fn case(name: &str, bytes: Vec<u8>) -> Case {
    Case { name: name.to_string(), bytes }
}

fn fixtures(dir: &Path) -> Vec<Case> {
    let mut out = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("fixture dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".tar") || n.ends_with(".tar.zst") || n.ends_with(".msb"))
        .collect();
    names.sort();
    for n in names {
        let bytes = std::fs::read(dir.join(&n)).expect("fixture");
        out.push(case(&format!("fixture-{n}"), bytes));
    }
    out
}

fn built() -> Vec<Case> {
    let s = Snapshot::small(1);
    let chain3 = chain(3);
    let cache = ImageCache::new("docker.io/library/python:3.12", 2);
    let with_image = cache.pin(Snapshot::small(2));
    let good = bundle_tar(std::slice::from_ref(&s));
    let mut v = vec![
        case("valid-plain-tar", good.clone()),
        case("valid-zstd", zstd(&good)),
        case("valid-zstd-checksum", zstd_with_checksum(&good)),
        case("valid-zstd-frames", zstd_frames(&good, 4096)),
        case("valid-chain3", zstd(&bundle_tar(&chain3))),
        case("valid-chain-child-only", zstd(&bundle_tar(&chain3[2..]))),
        case("valid-upper-first", Tar::new().snapshot_upper_first(&s).end().build()),
        case("valid-with-image", Tar::new().cache(&cache).snapshot(&with_image).end().build()),
        case("empty", Vec::new()),
        case("unknown-container", b"hello, this is not a bundle at all".repeat(20)),
        case("gzip", [&[0x1f, 0x8b, 8, 0][..], &[0; 600]].concat()),
        case("zstd-truncated", zstd(&good)[..40].to_vec()),
        case("zstd-trailing-garbage", [zstd(&good), b"garbage".to_vec()].concat()),
        case("tar-only-end", Tar::new().end().build()),
        case("tar-missing-end", Tar::new().snapshot(&s).build()),
        case(
            "tar-symlink",
            Tar::new().snapshot(&s).member(&Header::file("x/link", 0).type_flag(b'2'), &[]).end().build(),
        ),
        case("tar-pax", Tar::new().pax(b'x', &[("path", "a")]).snapshot(&s).end().build()),
        case(
            "tar-dotdot",
            Tar::new().snapshot(&s).file(&format!("{}/../../evil", s.prefix()), b"x").end().build(),
        ),
        case("tar-absolute", Tar::new().file("/etc/passwd", b"x").end().build()),
        case(
            "tar-bad-checksum",
            Tar::new().member(&Header::file("a/manifest.json", 1).checksum_value(1), b"x").end().build(),
        ),
        case(
            "tar-signed-checksum",
            Tar::new().member(&Header::file("a/manifest.json", 1).signed_sum(), b"x").end().build(),
        ),
        case("tar-duplicate", Tar::new().snapshot(&s).snapshot(&s).end().build()),
        case(
            "tar-windows-name",
            Tar::new().snapshot(&s).file(&format!("{}/con.txt", s.prefix()), b"x").end().build(),
        ),
        case("tar-dot-prefix", Tar::new().snapshot(&s.clone().with_prefix(".stage")).end().build()),
        case(
            "tar-long-name",
            Tar::new().long_file(&format!("{}/{}", s.prefix(), "n".repeat(300)), b"x").end().build(),
        ),
        case("tar-garbage-after-end", [Tar::new().snapshot(&s).end().build(), vec![1u8; 512]].concat()),
        case(
            "manifest-not-json",
            Tar::new().file("sha256-0123456789abcdef/manifest.json", b"{not json").end().build(),
        ),
        case(
            "snapshot-no-manifest",
            Tar::new()
                .dir("sha256-0123456789abcdef/")
                .file("sha256-0123456789abcdef/upper.ext4", &[0; 100])
                .end()
                .build(),
        ),
        case("chain-missing-middle", zstd(&bundle_tar(&[chain3[0].clone(), chain3[2].clone()]))),
        case("cache-without-snapshot", Tar::new().cache(&cache).end().build()),
        case(
            "cache-for-other-image",
            Tar::new()
                .cache(&ImageCache::new("docker.io/library/alpine:3", 1))
                .snapshot(&with_image)
                .end()
                .build(),
        ),
    ];
    let mut bad_upper = s.clone();
    if let Some(b) = bad_upper.upper.first_mut() {
        *b ^= 0xff;
    }
    v.push(case("upper-digest-mismatch", bundle_tar(&[bad_upper])));
    let mut short_upper = s.clone();
    short_upper.upper.truncate(1000);
    v.push(case("upper-size-mismatch", bundle_tar(&[short_upper])));
    // Released (0.6.7 – 0.6.16) archives: valid ones (their mutations follow) and a lie.
    let g2 = crate::released::chain(3);
    let g2_members = crate::released::members(&g2, &crate::released::images());
    v.push(case("g2-chain3", zstd(&crate::released::archive(&g2, &crate::released::images()))));
    v.push(case("g2-no-inventory", crate::released::tar(&g2_members)));
    let mut inv = crate::released::Inventory::for_members(&g2_members, &g2[0].digest(), true);
    inv.suggested_name = None;
    v.push(case("g2-inventory-lies", crate::released::sealed(&g2_members, &inv)));
    v
}

/// Small deterministic generator for the mutation positions.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

fn mutations(valid: &[Case]) -> Vec<Case> {
    let mut out = Vec::new();
    let mut rng = Lcg(0x5eed);
    for c in valid {
        let n = c.bytes.len();
        if n == 0 {
            continue;
        }
        for k in 1..=6 {
            let at = n * k / 7;
            out.push(case(&format!("{}-cut-{at}", c.name), c.bytes[..at].to_vec()));
        }
        for k in 0..10 {
            let at = rng.below(n);
            let mut b = c.bytes.clone();
            b[at] ^= 1 << rng.below(8);
            out.push(case(&format!("{}-flip{k}-{at}", c.name), b));
        }
        out.push(case(&format!("{}-trailing", c.name), [c.bytes.clone(), vec![0x28, 0xb5, 0x2f]].concat()));
    }
    out
}

/// Every parity case: fixtures (the 0.6.2 bundles in `fixture_dir` and the 0.7.13 `.msb`
/// archives beside it), built cases, then mutations of the valid ones.
pub fn cases(fixture_dir: &Path) -> Vec<Case> {
    let mut all = fixtures(fixture_dir);
    if let Some(parent) = fixture_dir.parent() {
        all.extend(fixtures(&parent.join("microsandbox-0.7.13")));
    }
    all.extend(built());
    // Checkpoint-scope archives (`crate::msb`): a complete one and an unreferenced object.
    all.push(case("msb-checkpoint", crate::msb::checkpoint_archive()));
    let mut ms = crate::msb::Closure::default().members();
    let root = ms.iter().position(|m| m.path.ends_with("/checkpoint.json")).unwrap_or(1);
    let mut extra = ms[root].clone();
    extra.data = b"an object nothing names".to_vec();
    extra.path = crate::msb::object_path(crate::msb::SNAP, &crate::msb::object_id(&extra.data));
    extra.kind = "checkpoint-object".into();
    ms.push(extra);
    ms[1..].sort_by(|a, b| a.path.cmp(&b.path));
    all.push(case("msb-checkpoint-unreferenced", crate::msb::seal(&ms, crate::msb::SNAP, None)));
    let valid: Vec<Case> = all
        .iter()
        .filter(|c| snapbundle_core::validate(&c.bytes, Default::default()).is_ok())
        .map(|c| case(&c.name, c.bytes.clone()))
        .collect();
    all.extend(mutations(&valid));
    all
}
