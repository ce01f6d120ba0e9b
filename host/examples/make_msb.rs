//! Writes a one-snapshot microsandbox 0.7 `.msb` archive of a disk image, for benchmarks
//! (`bench/msb_bench.py`): the layer's integrity as asked, holes kept (an old-GNU sparse member).
//!
//!   cargo run --release -p snapbundle --example make_msb -- UPPER OUT.msb [merkle|sparse-sha256|none] [--plain]
//!
//! The descriptor is the one `convert --to 0.7` derives for a 0.6.2 snapshot of that upper, with
//! the integrity replaced; a Merkle root is computed first (holes as precomputed zero subtrees).

use std::fs::File;
use std::io::BufWriter;

use snapbundle::msb::writer::{MsbWriter, Spool};
use snapbundle::sparse::{read_logical, Chunk};
use snapbundle::tar_writer::{EntryMeta, FromMetadata as _};
use snapbundle_core::generation::g3::descriptor::{Descriptor, Integrity};
use snapbundle_core::generation::translate;
use snapbundle_core::integrity::{Hashes, MemberHasher};
use snapbundle_core::manifest::{ImageRef, Manifest, SnapshotFormat, UpperLayer};
use snapbundle_core::merkle::FileMerkle;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn integrity_of(upper: &File, len: u64, kind: &str) -> Result<(Option<Integrity>, serde_json::Value)> {
    let mut merkle = FileMerkle::new();
    // The core's own `msb-sparse-sha256-v1` hasher (holes hashed as lengths of zeros).
    let mut sparse = MemberHasher::new(len, Hashes::SPARSE_SHA256);
    read_logical(upper, len, &mut |c| {
        let merkled = match c {
            Chunk::Data(b) if kind == "merkle" => merkle.update(b),
            Chunk::Zeros(n) if kind == "merkle" => merkle.update_zeros(n),
            Chunk::Data(b) => {
                sparse.update(b);
                Ok(())
            }
            Chunk::Zeros(n) => {
                sparse.update_zeros(n);
                Ok(())
            }
        };
        merkled.map_err(|_| std::io::Error::other("the upper is too large for a Merkle tree"))
    })?;
    Ok(match kind {
        "merkle" => {
            let root = merkle.finish().digest();
            let json = serde_json::json!({"algorithm": "msb-file-merkle-blake3-v1", "root": root.clone(), "logical_size": len, "leaf_size": 65536});
            (Some(Integrity::FileMerkleBlake3V1 { root, logical_size: len, leaf_size: 65536 }), json)
        }
        "sparse-sha256" => {
            let d = sparse.finish().sparse_sha256.ok_or("no msb-sparse-sha256-v1 digest")?;
            let digest = snapbundle_core::hex::sha256_digest(&d);
            let json = serde_json::json!({"algorithm": "msb-sparse-sha256-v1", "digest": digest});
            (Some(Integrity::SparseSha256V1 { digest }), json)
        }
        _ => (None, serde_json::Value::Null),
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (upper_path, out_path) = match (args.first(), args.get(1)) {
        (Some(u), Some(o)) => (u, o),
        _ => return Err("usage: make_msb UPPER OUT.msb [merkle|sparse-sha256|none] [--plain]".into()),
    };
    let kind = args.get(2).map(String::as_str).unwrap_or("merkle");
    let plain = args.iter().any(|a| a == "--plain");
    let upper = File::open(upper_path)?;
    let meta = upper.metadata()?;
    let len = meta.len();
    let (integrity, integrity_json) = integrity_of(&upper, len, kind)?;
    let manifest = Manifest {
        schema: 1,
        format: SnapshotFormat::Raw,
        fstype: "ext4".into(),
        image: ImageRef {
            reference: "docker.io/library/alpine:3.20".into(),
            manifest_digest: format!("sha256:{}", "0".repeat(63) + "1"),
        },
        parent: None,
        created_at: "2026-05-01T12:00:00Z".into(),
        labels: Default::default(),
        upper: UpperLayer { file: "upper.ext4".into(), size_bytes: len, integrity: None },
        source_sandbox: Some("bench".into()),
    };
    let f = translate::forward(&manifest, &manifest.digest()).map_err(|e| e.to_string())?;
    let mut tree: serde_json::Value = serde_json::from_slice(&f.descriptor)?;
    tree["state"]["layers"][0]["payload"]["integrity"] = integrity_json;
    let descriptor = Descriptor::parse(&serde_json::to_vec(&tree)?).map_err(|e| e.to_string())?;
    let out = BufWriter::with_capacity(1 << 20, File::create(out_path)?);
    let sink: Box<dyn std::io::Write> = if plain {
        Box::new(out)
    } else {
        let mut enc = zstd::stream::write::Encoder::new(out, 3)?;
        enc.include_checksum(true)?;
        enc.multithread(2)?;
        Box::new(enc.auto_finish())
    };
    let mut w = MsbWriter::new(sink, 65_536);
    w.descriptor(&f.snapshot_id, descriptor.canonical_bytes(), &descriptor.digest())?;
    let spool = Spool::of_file(upper, len)?;
    let meta = EntryMeta::from_metadata(&meta);
    w.payload(&f.layer_path(), &f.snapshot_id, &meta, &spool, integrity)?;
    let done = w.finish(&f.snapshot_id, None, &[]).map_err(|e| format!("{e:?}"))?;
    drop(done.inner);
    println!("{out_path}: {} tar bytes, {kind} integrity", done.tar_bytes);
    Ok(())
}
