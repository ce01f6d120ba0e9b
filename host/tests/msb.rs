//! The command line on microsandbox 0.7 `.msb` archives (the reference archives real 0.7.13
//! wrote, `tests/fixtures/microsandbox-0.7.13/`): `verify` and `inspect` give 0.7.13's verdict
//! and show the archive's snapshots; `import` converts them to 0.6.2 on the fly (the same store
//! as importing `convert --to 0.6.2`'s output), or refuses them with verify's code or as not
//! representable, writing nothing, natively and in the sandbox.

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

/// The code of a failed `--json` run, or "ok".
fn outcome(out: &std::process::Output) -> String {
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    if out.status.success() {
        "ok".into()
    } else {
        v["error"]["code"].as_str().unwrap_or("<no JSON>").to_string()
    }
}

#[test]
fn import_converts_a_msb_archive_on_the_fly_or_refuses_it_writing_nothing() {
    let scratch = tempfile::tempdir().expect("scratch");
    let mut imported = 0;
    for (path, expect) in archives() {
        let p = path.to_str().expect("UTF-8 path");
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        let converted = scratch.path().join(format!("{name}.tar.zst"));
        let conv = command([
            "convert",
            p,
            "--to",
            "0.6.2",
            "-o",
            converted.to_str().expect("utf-8"),
            "--json",
            "-q",
        ])
        .output()
        .expect("run");
        let verify = command(["verify", "--json", "-q", p]).output().expect("run");
        for sandbox in [false, true] {
            let home = scratch.path().join(format!("home-{name}-{sandbox}"));
            let home_s = home.to_str().expect("UTF-8 path");
            let mut args = vec!["import", p, "--json", "-q", "--home", home_s];
            if sandbox {
                args.push("--sandbox");
            }
            let out = command(&args).output().expect("run");
            let ctx = format!("{name} (sandbox {sandbox})");
            if !expect["ok"].as_bool().expect("ok") {
                assert_eq!(
                    outcome(&out),
                    outcome(&verify),
                    "{ctx}: refused as verify refuses it\n{}",
                    describe(&out)
                );
                assert!(!home.exists(), "{ctx}: nothing written");
                continue;
            }
            // Valid: imported exactly as its 0.6.2 conversion imports, or refused as that
            // conversion is (not representable in 0.6.2), writing nothing.
            assert_eq!(outcome(&out), outcome(&conv), "{ctx}\n{}", describe(&out));
            if !out.status.success() {
                assert_eq!(outcome(&out), "not_representable", "{ctx}");
                assert!(!home.exists(), "{ctx}: nothing written");
                continue;
            }
            let via = scratch.path().join(format!("via-{name}-{sandbox}"));
            let second = support::run_import(&converted, &via, &[]);
            assert!(second.status.success(), "{ctx}: {}", describe(&second));
            let (a, b) = (support::content(&support::tree(&home)), support::content(&support::tree(&via)));
            let strip = |t: support::Tree| -> Vec<_> {
                t.into_iter()
                    .filter(|(k, _)| !k.starts_with("db") && !k.contains("snapbundle/verified"))
                    .collect()
            };
            assert_eq!(strip(a), strip(b), "{ctx}: the same store as importing its conversion");
            let v: Value = serde_json::from_slice(&out.stdout).expect("import --json");
            assert_eq!(
                v["import"]["converted"].as_array().map(Vec::len),
                v["import"]["report"]["snapshots"].as_array().map(Vec::len),
                "{ctx}"
            );
            imported += 1;
        }
    }
    assert!(imported >= 12, "only {imported} imports of reference archives");
}

/// A released (0.6.7 – 0.6.16) archive built from 0.7.13's reading of the format, and one whose
/// upper lost a byte.
fn released_archives(dir: &std::path::Path) -> (PathBuf, PathBuf, Vec<snapbundle_tests::released::Snapshot>) {
    use snapbundle_tests::released::{archive, chain, images};
    let snaps = chain(2);
    let good = dir.join("released.tar");
    fs::write(&good, archive(&snaps, &images())).expect("write");
    // The same archive with a byte of the first upper changed after sealing.
    let mut bytes = archive(&snaps, &images());
    let at = bytes.windows(4096).position(|w| w == &snaps[0].upper[4096..8192]).expect("upper bytes");
    bytes[at] ^= 1;
    let bad = dir.join("released-bad.tar");
    fs::write(&bad, bytes).expect("write");
    (good, bad, snaps)
}

#[test]
fn verify_and_inspect_show_a_released_archive() {
    let scratch = tempfile::tempdir().expect("scratch");
    let (good, bad, snaps) = released_archives(scratch.path());
    let good = good.to_str().expect("UTF-8 path");
    let out = command(["verify", "--json", "-q", good]).output().expect("run");
    assert!(out.status.success(), "{}", describe(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("verify --json");
    let r = &v["report"];
    assert_eq!(r["generation"], "0.6.7");
    assert_eq!(r["head"], snaps[1].digest());
    assert_eq!(r["released"]["snapshots"][0]["integrity"]["status"], "verified");
    let line = String::from_utf8_lossy(&command(["verify", good]).output().expect("run").stdout).into_owned();
    assert!(line.contains("0.6.7 - 0.6.16 released archive, 2 snapshots"), "{line}");
    let inspect = command(["inspect", good]).output().expect("run");
    assert!(inspect.status.success(), "{}", describe(&inspect));
    let table = String::from_utf8_lossy(&inspect.stdout);
    for s in &snaps {
        assert!(table.contains(&s.snapshot_id()), "inspect does not show {}:\n{table}", s.snapshot_id());
    }
    assert!(table.contains("sha256 verified") && table.contains("verdict    valid"), "{table}");
    let out = command(["verify", "--json", "-q", bad.to_str().expect("UTF-8 path")]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("verify --json");
    assert_eq!(v["error"]["code"], "msb_transport_mismatch", "{v}");
}

#[test]
fn import_refuses_a_released_archive_and_writes_nothing() {
    let scratch = tempfile::tempdir().expect("scratch");
    let (good, _, _) = released_archives(scratch.path());
    let archive = good.to_str().expect("UTF-8 path");
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
            err.contains("0.6.7 - 0.6.16 released archive") && err.contains("msb snapshot load"),
            "{err}"
        );
        assert!(!home.exists(), "sandbox {sandbox}: import created {}", home.display());
    }
}

#[test]
fn convert_refuses_a_released_archive_either_way_and_writes_nothing() {
    let scratch = tempfile::tempdir().expect("scratch");
    let (good, _, _) = released_archives(scratch.path());
    let archive = good.to_str().expect("UTF-8 path");
    let listing = || -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(scratch.path())
            .expect("scratch")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = listing();
    for to in ["0.7", "0.6.2"] {
        let out_path = scratch.path().join(format!("out-{to}"));
        let out_s = out_path.to_str().expect("UTF-8 path");
        let out = command(["convert", archive, "--to", to, "-o", out_s, "-q"]).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "--to {to}\n{}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("0.6.7 - 0.6.16 released archive") && err.contains("not convert"), "{err}");
        assert_eq!(listing(), before, "--to {to}: convert left files behind");
    }
}

/// A zstd `.msb` archive whose first MiB is incompressible: its first member comes out of the
/// decoder only once more than its window is decoded, past the 1 MiB `import` used to read
/// ahead to learn the generation, so it was taken for a 0.6.2 bundle and refused ("a .msb
/// member cannot be staged"). It imports like any archive.
#[test]
fn import_takes_a_zstd_archive_whose_start_is_incompressible() {
    use snapbundle_tests::builder::{Integrity, Snapshot, Tar};
    let scratch = tempfile::tempdir().expect("scratch");
    let snap = Snapshot::new(support::noise(6 << 20, 11), Integrity::Sparse);
    let bundle = scratch.path().join("b.tar");
    fs::write(&bundle, Tar::new().snapshot(&snap).end().build()).expect("bundle");
    let archive = scratch.path().join("noise.msb");
    let (b, a) = (bundle.to_str().expect("UTF-8"), archive.to_str().expect("UTF-8"));
    let run = command(["convert", b, "-o", a, "--to", "0.7", "--quiet"]).output().expect("convert");
    assert!(run.status.success(), "{}", describe(&run));
    assert!(fs::metadata(&archive).expect("archive").len() > 2 << 20);
    let home = scratch.path().join("home");
    let out =
        command(["import", a, "--quiet", "--home", home.to_str().expect("UTF-8")]).output().expect("import");
    assert!(out.status.success(), "{}", describe(&out));
}
