//! The wasmtime sandbox: the embedded component's imports, verify and import through it (same
//! verdicts and the same files as native), and its memory cap and deadline.
#![cfg(feature = "sandbox")]

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Duration;

use snapbundle::home::Home;
use snapbundle::import::{import, ImportOptions};
use snapbundle::progress::Progress;
use snapbundle::sandbox::{self, engine::COMPONENT, SandboxError, SandboxOptions};
use snapbundle::{HostError, Limits};

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/microsandbox-0.6.2").join(name);
    std::fs::read(p).expect("fixture")
}

fn verify(bytes: &[u8], limits: Limits, opts: SandboxOptions) -> Result<snapbundle::Report, HostError> {
    sandbox::verify_stream(&mut Cursor::new(bytes), "bundle", limits, &opts, &Progress::hidden())
}

#[test]
fn the_component_imports_only_the_event_sink_and_digest_it_declares() {
    use wasmparser::{Parser, Payload};
    let mut component_imports = Vec::new();
    // (module size, its imports) for every core module.
    let mut modules: Vec<(usize, Vec<String>)> = Vec::new();
    // Nested modules and components (wit-component's shims and type-checking wrappers) have their
    // own import sections; only the outermost component's imports reach the host.
    let mut depth = 0i32;
    for payload in Parser::new(0).parse_all(COMPONENT) {
        match payload.expect("valid component") {
            Payload::ModuleSection { unchecked_range, .. } => {
                depth += 1;
                modules.push((unchecked_range.len(), Vec::new()));
            }
            Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth -= 1,
            Payload::ComponentImportSection(s) if depth == 0 => {
                for i in s {
                    component_imports.push(i.expect("import").name.name.to_string());
                }
            }
            Payload::ImportSection(s) => {
                for i in s.into_imports() {
                    let i = i.expect("import");
                    if let Some(m) = modules.last_mut() {
                        m.1.push(format!("{}#{}", i.module, i.name));
                    }
                }
            }
            _ => {}
        }
    }
    component_imports.sort();
    assert_eq!(
        component_imports,
        [
            "snapbundle:sandbox/digest@0.1.0",
            "snapbundle:sandbox/events@0.1.0",
            "snapbundle:sandbox/types@0.1.0"
        ]
    );
    // The validator's core module (the largest; the others are wit-component's small shims)
    // imports the declared event and digest functions and the canonical intrinsics of its
    // exported resource; no core module imports anything from an environment (`env`, WASI).
    let all: Vec<&String> = modules.iter().flat_map(|m| &m.1).collect();
    assert!(all.iter().all(|i| !i.starts_with("env#") && !i.starts_with("wasi")), "{all:?}");
    modules.sort();
    let module_imports = modules.last().map(|m| m.1.clone()).unwrap_or_default();
    for i in &module_imports {
        let allowed = [
            "snapbundle:sandbox/events@0.1.0#",
            "snapbundle:sandbox/digest@0.1.0#",
            "[export]snapbundle:sandbox/validation@0.1.0#",
        ];
        assert!(allowed.iter().any(|a| i.starts_with(a)), "the validator module imports {i}");
    }
    eprintln!("core module imports: {module_imports:?}");
}

#[test]
fn verify_in_the_sandbox_gives_the_native_report_and_errors() {
    let ok = fixture("b-chain3-with-parents.tar.zst");
    let native = snapbundle_core::validate(&ok, Limits::default()).expect("valid");
    assert_eq!(verify(&ok, Limits::default(), SandboxOptions::DEFAULT).expect("sandboxed"), native);
    let bad = fixture("r-dotdot-path.tar.zst");
    let native = snapbundle_core::validate(&bad, Limits::default()).expect_err("invalid");
    match verify(&bad, Limits::default(), SandboxOptions::DEFAULT) {
        Err(e @ HostError::Rejected(_)) => {
            assert_eq!((e.code(), e.kind()), (native.code(), native.kind()));
            assert_eq!(e.to_string(), format!("invalid bundle: {native}"));
            assert_eq!(e.exit_code(), 1);
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    // Limits cross the boundary.
    let tight = Limits { max_entries: 2, ..Limits::default() };
    let e = verify(&ok, tight, SandboxOptions::DEFAULT).expect_err("limit");
    assert_eq!(e.kind(), "limit");
}

#[test]
fn the_component_is_compiled_once_per_process() {
    let first = sandbox::precompile().expect("compile");
    let again = sandbox::precompile().expect("compile");
    assert_eq!(first, again, "a second call must reuse the compiled component");
    let t = std::time::Instant::now();
    for _ in 0..20 {
        verify(&fixture("a-single.tar.zst"), Limits::default(), SandboxOptions::DEFAULT).expect("valid");
    }
    eprintln!("compile {first:?}; 20 small bundles in {:?}", t.elapsed());
}

#[test]
fn the_memory_cap_is_a_clear_error() {
    // A 4 MiB cap cannot hold an 8 MiB zstd window.
    let tar = snapbundle_tests_free_tar(32 << 20);
    let bundle = zstd::bulk::compress(&tar, 19).expect("zstd");
    let opts = SandboxOptions { memory_limit: 4 << 20, ..SandboxOptions::DEFAULT };
    match verify(&bundle, Limits::default(), opts) {
        Err(HostError::Sandbox(e @ SandboxError::MemoryLimit(_))) => {
            assert_eq!(e.code(), "sandbox_memory_limit");
            assert!(e.to_string().contains("memory limit reached"), "{e}");
        }
        other => panic!("expected the memory cap, got {other:?}"),
    }
}

#[test]
fn the_deadline_is_a_clear_error() {
    // 256 MiB of data in one push takes far more than 1 ms of guest time.
    let tar = snapbundle_tests_free_tar(256 << 20);
    let bundle = zstd::bulk::compress(&tar, 1).expect("zstd");
    let opts = SandboxOptions { deadline: Duration::from_millis(1), ..SandboxOptions::DEFAULT };
    match verify(&bundle, Limits::default(), opts) {
        Err(HostError::Sandbox(e @ SandboxError::Deadline(_))) => {
            assert_eq!(e.code(), "sandbox_deadline");
            assert!(e.to_string().contains("deadline reached"), "{e}");
        }
        other => panic!("expected the deadline, got {other:?}"),
    }
}

/// A tar whose one member is `len` bytes of a repeating non-zero pattern (the verdict does not
/// matter for the limits: they hit while it streams).
fn snapbundle_tests_free_tar(len: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8 | 1).collect();
    let mut h = tar::Header::new_gnu();
    h.set_size(len as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1);
    h.set_cksum();
    b.append_data(&mut h, "sha256-0123456789abcdef/upper.ext4", data.as_slice()).expect("append");
    b.into_inner().expect("tar")
}

fn tree(root: &Path) -> Vec<(String, u64, Vec<u8>)> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, u64, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).expect("prefix").display().to_string();
                // The index, stages and verification records (named by inode) are not content.
                if rel.ends_with(".db") || rel.contains("/tmp/") || rel.starts_with("cache/snapbundle/") {
                    continue;
                }
                let bytes = std::fs::read(&p).expect("read");
                out.push((rel, bytes.len() as u64, bytes));
            }
        }
    }
    walk(root, root, &mut out);
    out.sort();
    out
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("snapbundle-sandbox-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn import_through_the_sandbox_writes_the_same_files_as_native() {
    for name in ["b-chain3-with-parents.tar.zst", "d-with-image-2layers.tar.zst"] {
        let bytes = fixture(name);
        let (a, b) = (scratch("native"), scratch("sandboxed"));
        let native = ImportOptions { quiet: true, ..Default::default() };
        let sandboxed =
            ImportOptions { quiet: true, sandbox: Some(SandboxOptions::DEFAULT), ..Default::default() };
        let n = import(&mut Cursor::new(&bytes), name, &Home::at(&a), &native).expect("native import");
        let s = import(&mut Cursor::new(&bytes), name, &Home::at(&b), &sandboxed).expect("sandboxed import");
        assert_eq!(n.report, s.report, "{name}");
        assert_eq!(tree(&a), tree(&b), "{name}: imported files differ");
        let _ = std::fs::remove_dir_all(&a);
        let _ = std::fs::remove_dir_all(&b);
    }
}

#[test]
fn a_rejected_import_through_the_sandbox_writes_nothing() {
    let home = scratch("rejected");
    let opts = ImportOptions { quiet: true, sandbox: Some(SandboxOptions::DEFAULT), ..Default::default() };
    let e = import(&mut Cursor::new(fixture("r-dotdot-path.tar.zst")), "r", &Home::at(&home), &opts)
        .expect_err("rejected");
    assert_eq!(e.code(), "unsafe_path");
    let left: Vec<_> = tree(&home).into_iter().map(|f| f.0).collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn the_cli_reuses_its_compiled_component_cache_and_replaces_a_bad_entry() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let bundle = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/microsandbox-0.6.2/b-chain3-with-parents.tar.zst");
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_snapbundle"))
            .args(["verify", "-q", "--sandbox"])
            .arg(&bundle)
            .env("SNAPBUNDLE_CACHE_DIR", &cache)
            .output()
            .expect("run snapbundle");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let entry = || -> PathBuf {
        let files: Vec<PathBuf> =
            std::fs::read_dir(&cache).expect("cache dir").map(|e| e.expect("entry").path()).collect();
        assert_eq!(files.len(), 1, "one cache file, no temporary left: {files:?}");
        files.into_iter().next().expect("cache file")
    };
    // First run: compiles and stores the compiled component, privately.
    let verdict = run();
    let file = entry();
    assert!(file
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("component-") && n.ends_with(".cwasm")));
    assert_eq!(std::fs::metadata(&cache).expect("dir").permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(&file).expect("file").permissions().mode() & 0o777, 0o600);
    let inode = std::fs::metadata(&file).expect("file").ino();
    // Second run: loads it (the file is not written again) and gives the same verdict.
    assert_eq!(run(), verdict);
    assert_eq!(
        std::fs::metadata(entry()).expect("file").ino(),
        inode,
        "the cache entry was rewritten, not reused"
    );
    // A file that is not what wasmtime wrote is refused, compiled again and replaced.
    std::fs::write(&file, b"not a compiled component").expect("spoil");
    assert_eq!(run(), verdict);
    assert_ne!(std::fs::read(entry()).expect("file"), b"not a compiled component");
    // A file that others may write is never loaded: replaced by a private one.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let inode = std::fs::metadata(&file).expect("file").ino();
    assert_eq!(run(), verdict);
    let replaced = std::fs::metadata(entry()).expect("file");
    assert!(replaced.ino() != inode && replaced.permissions().mode() & 0o777 == 0o600);
}
