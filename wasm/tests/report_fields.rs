//! The TypeScript declarations are written by hand: check that every field of real reports (every
//! valid reference fixture of 0.6.2 and 0.7.13, which between them carry a cache, labels, both
//! integrity states, parents in and out of the archive, a dependent archive and image files, plus
//! the built checkpoint archive of `snapbundle_tests::msb`) is declared in them, so the types
//! cannot drift from the core.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

fn keys(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                out.insert(k.clone());
                // Label keys are data, not fields.
                if k != "labels" {
                    keys(v, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

#[test]
fn every_report_field_is_declared_in_the_typescript_types() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let mut fields = BTreeSet::new();
    let mut valid = 0;
    for dir in ["microsandbox-0.6.2", "microsandbox-0.7.13"] {
        for entry in std::fs::read_dir(fixtures.join(dir)).expect("fixture dir") {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            if !(name.ends_with(".tar.zst") || name.ends_with(".tar") || name.ends_with(".msb")) {
                continue;
            }
            let bytes = std::fs::read(&path).expect("fixture");
            if let Ok(report) = snapbundle_core::validate(&bytes, Default::default()) {
                valid += 1;
                keys(&serde_json::to_value(&report).expect("report json"), &mut fields);
            }
        }
    }
    assert!(valid >= 15, "expected the valid reference fixtures, found {valid}");
    // No real 0.7.13 archive holds a checkpoint (capturing one needs a running VM): the built one.
    let checkpoint =
        snapbundle_core::validate(&snapbundle_tests::msb::checkpoint_archive(), Default::default())
            .expect("the built checkpoint archive is valid");
    keys(&serde_json::to_value(&checkpoint).expect("report json"), &mut fields);
    assert!(fields.contains("checkpoint_root") && fields.contains("verified"), "no checkpoint report");
    assert!(fields.contains("integrity") && fields.contains("layers"), "fixtures lack a cache or integrity");
    assert!(fields.contains("msb") && fields.contains("unsupported_requires"), "no 0.7 report");
    // No reference archive of 0.6.7 – 0.6.16 exists: a released report with every field set.
    keys(&serde_json::to_value(released_report()).expect("report json"), &mut fields);
    // wasm-bindgen consumes the `typescript_custom_section` constant (it only exists in the
    // generated .d.ts), so read its text from the source.
    let src = include_str!("../src/lib.rs");
    let start = src.find("pub const TYPESCRIPT").expect("TYPESCRIPT section");
    let ts = &src[start..];
    let missing: Vec<&String> = fields
        .iter()
        .filter(|f| !ts.contains(&format!(" {f}:")) && !ts.contains(&format!(" {f}?:")))
        .collect();
    assert!(missing.is_empty(), "report fields not declared in the TypeScript types: {missing:?}");
}

/// A report of a released (0.6.7 – 0.6.16) archive with every optional field present.
fn released_report() -> snapbundle_core::Report {
    use snapbundle_core::report::*;
    let digest = format!("sha256:{}", "a".repeat(64));
    Report {
        generation: Generation::G2,
        container: Container::Tar,
        zstd_frames: 0,
        compressed_bytes: 0,
        decompressed_bytes: 0,
        entries: 0,
        snapshots: Vec::new(),
        head: digest.clone(),
        head_prefix: format!("snap_{}", "a".repeat(32)),
        cache: None,
        files: Vec::new(),
        msb: None,
        released: Some(ReleasedReport {
            inventory: true,
            head: digest.clone(),
            suggested_name: Some("web".into()),
            with_parents: Some(false),
            with_image: Some(true),
            requires: Vec::new(),
            snapshots: vec![ReleasedSnapshot {
                digest: digest.clone(),
                snapshot_id: format!("snap_{}", "a".repeat(32)),
                parent: None,
                parent_in_archive: false,
                is_head: true,
                created_at: "2026-05-01T12:00:00Z".into(),
                image_ref: "alpine".into(),
                image_manifest_digest: digest.clone(),
                format: "raw".into(),
                fstype: "ext4".into(),
                labels: Default::default(),
                source_sandbox: None,
                upper_path: format!("files/{}/upper.ext4", "a".repeat(64)),
                size_bytes: 1,
                encoded_size: 1,
                sparse: false,
                integrity: LayerIntegrity::NotRecorded,
            }],
            images: vec![MsbImageFile {
                path: "images/manifests/a.json".into(),
                kind: "image-metadata".into(),
                size: 1,
                sha256: digest,
            }],
        }),
    }
}
