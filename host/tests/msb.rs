//! The command line on microsandbox 0.7 `.msb` archives (the reference archives real 0.7.13
//! wrote, `tests/fixtures/microsandbox-0.7.13/`): `verify` and `inspect` give 0.7.13's verdict
//! and show the archive's snapshots; `import` refuses them with a clear message and writes
//! nothing, natively and in the sandbox.

mod support;

use std::fs;
use std::path::PathBuf;

use serde_json::Value;
use support::{command, describe};

fn msb_dir() -> PathBuf {
    support::fixture_dir().join("..").join("microsandbox-0.7.13")
}

/// Every reference archive with its expect file.
fn archives() -> Vec<(PathBuf, Value)> {
    let dir = msb_dir();
    let mut out = Vec::new();
    for e in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = e.expect("dir entry").path();
        if path.extension().is_some_and(|x| x == "msb") {
            let expect = path.with_extension("expect.json");
            let v: Value =
                serde_json::from_slice(&fs::read(&expect).expect("expect file")).expect("expect JSON");
            out.push((path, v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 16, "expected the 16 reference archives, found {}", out.len());
    out
}

#[test]
fn verify_and_inspect_give_the_verdict_of_0_7_13() {
    for (path, expect) in archives() {
        let p = path.to_str().expect("UTF-8 path");
        let out = command(["verify", "--json", "-q", p]).output().expect("run");
        let ok = expect["ok"].as_bool().expect("ok in expect");
        if !ok {
            assert_eq!(out.status.code(), Some(1), "{p}: 0.7.13 refuses it\n{}", describe(&out));
            continue;
        }
        assert!(out.status.success(), "{p}: 0.7.13 loads it\n{}", describe(&out));
        let v: Value = serde_json::from_slice(&out.stdout).expect("verify --json");
        let r = &v["report"];
        assert_eq!(r["generation"], "0.7", "{p}");
        assert_eq!(r["head_prefix"], expect["head"], "{p}: head snapshot id");
        assert_eq!(r["head"], expect["head_digest"], "{p}: head descriptor digest");

        let text = command(["verify", p]).output().expect("run");
        let line = String::from_utf8_lossy(&text.stdout);
        assert!(line.contains("microsandbox 0.7 archive"), "{p}: {line}");
        let inspect = command(["inspect", p]).output().expect("run");
        assert!(inspect.status.success(), "{p}\n{}", describe(&inspect));
        let table = String::from_utf8_lossy(&inspect.stdout);
        for s in r["msb"]["snapshots"].as_array().expect("snapshots") {
            let id = s["snapshot_id"].as_str().expect("id");
            assert!(table.contains(id), "{p}: inspect does not show {id}:\n{table}");
        }
        assert!(table.contains("verdict    valid"), "{p}:\n{table}");
    }
}

#[test]
fn import_refuses_a_msb_archive_and_writes_nothing() {
    let scratch = tempfile::tempdir().expect("scratch");
    let archive = msb_dir().join("labels.msb");
    let archive = archive.to_str().expect("UTF-8 path");
    for sandbox in [false, true] {
        let home = scratch.path().join(format!("home-{sandbox}"));
        let home_s = home.to_str().expect("UTF-8 path");
        let mut args = vec!["import", archive, "-q", "--home", home_s];
        if sandbox {
            args.push("--sandbox");
        }
        let out = command(&args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "sandbox {sandbox}\n{}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("microsandbox 0.7 archive (.msb)") && err.contains("msb snapshot load"),
            "{err}"
        );
        assert!(!home.exists(), "sandbox {sandbox}: import created {}", home.display());
    }
}
