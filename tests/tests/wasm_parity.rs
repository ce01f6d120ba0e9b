//! Parity of the three front ends: every case of [`snapbundle_tests::parity::cases`] (the
//! reference fixtures, hand-built hostile bundles, mutations) is judged natively, inside the
//! wasmtime sandbox and by the wasm-bindgen build in node; the reports, or the error code, kind
//! and message, must be identical. A failure names the case and the front end that differs.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use snapbundle::progress::Progress;
use snapbundle::sandbox::{self, SandboxOptions};
use snapbundle::HostError;
use snapbundle_tests::fixtures::fixture_dir;
use snapbundle_tests::parity::{cases, Case};

fn native(bytes: &[u8]) -> Value {
    match snapbundle_core::validate(bytes, Default::default()) {
        Ok(r) => json!({ "report": r }),
        Err(e) => json!({ "code": e.code(), "kind": e.kind(), "message": e.to_string() }),
    }
}

fn sandboxed(bytes: &[u8]) -> Value {
    let r = sandbox::verify_stream(
        &mut Cursor::new(bytes),
        "case",
        Default::default(),
        &SandboxOptions::DEFAULT,
        &Progress::hidden(),
    );
    match r {
        Ok(r) => json!({ "report": r }),
        Err(HostError::Rejected(r)) => json!({ "code": r.code, "kind": r.kind, "message": r.message }),
        Err(e) => json!({ "host_error": e.to_string() }),
    }
}

fn diff(what: &str, all: &[(String, Value, Value)]) {
    let differing: Vec<String> = all
        .iter()
        .filter(|(_, a, b)| a != b)
        .map(|(name, a, b)| format!("case {name}: native {a}\n  {what} {b}"))
        .collect();
    assert!(
        differing.is_empty(),
        "{} of {} cases differ ({what}):\n{}",
        differing.len(),
        all.len(),
        differing.join("\n")
    );
}

#[test]
fn native_and_wasmtime_agree_on_every_case() {
    let all = cases(&fixture_dir());
    let names: std::collections::BTreeSet<&str> = all.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), all.len(), "case names must be unique");
    let codes: std::collections::BTreeSet<String> =
        all.iter().filter_map(|c| native(&c.bytes)["code"].as_str().map(String::from)).collect();
    assert!(
        all.len() > 150 && codes.len() >= 20,
        "{} cases, {} error codes: {codes:?}",
        all.len(),
        codes.len()
    );
    let judged: Vec<(String, Value, Value)> =
        all.iter().map(|c| (c.name.clone(), native(&c.bytes), sandboxed(&c.bytes))).collect();
    diff("wasmtime", &judged);
}

fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/npm/snapbundle-wasm")
}

#[test]
#[ignore = "needs node and the wasm-bindgen package (scripts/build-wasm.sh); scripts/test.sh runs it"]
fn native_and_node_agree_on_every_case() {
    let all = cases(&fixture_dir());
    let dir = std::env::temp_dir().join(format!("snapbundle-parity-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("cases dir");
    for c in &all {
        std::fs::write(dir.join(&c.name), &c.bytes).expect("write case");
    }
    // The package's node entry hashes with node:crypto, the bare module with its portable code
    // (as in browsers): both must agree with native on every case.
    for mode in ["entry", "portable"] {
        let (judged, from_node_crypto) = node_verdicts(&all, &dir, mode);
        diff(&format!("node ({mode})"), &judged);
        if mode == "entry" {
            assert!(from_node_crypto > 0, "the node entry never hashed with node:crypto");
        } else {
            assert_eq!(from_node_crypto, 0, "the bare module hashed with node:crypto");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every case judged by `wasm/js-tests/parity.mjs` in `mode`, next to native's verdict, and how
/// many SHA-256 computations node:crypto ran.
fn node_verdicts(all: &[Case], dir: &Path, mode: &str) -> (Vec<(String, Value, Value)>, u64) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm/js-tests/parity.mjs");
    let out =
        Command::new("node").arg(script).arg(package_dir()).arg(dir).arg(mode).output().expect("run node");
    assert!(out.status.success(), "node failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut by_case: BTreeMap<String, Value> = BTreeMap::new();
    let mut from_node_crypto = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut v: Value = serde_json::from_str(line).expect("node output line");
        if let Some(n) = v.get("sha256_from_node_crypto") {
            from_node_crypto = n.as_u64();
            continue;
        }
        let name = v["case"].as_str().unwrap_or_default().to_string();
        if let Some(o) = v.as_object_mut() {
            o.remove("case");
        }
        by_case.insert(name, v);
    }
    assert_eq!(by_case.len(), all.len(), "node ({mode}) judged {} of {} cases", by_case.len(), all.len());
    let judged = all
        .iter()
        .map(|c| (c.name.clone(), native(&c.bytes), by_case.remove(&c.name).unwrap_or(Value::Null)))
        .collect();
    (judged, from_node_crypto.expect("the summary line"))
}
