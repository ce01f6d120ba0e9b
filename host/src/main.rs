//! The `snapbundle` command line: runs the command [`cli`] parsed and prints what
//! [`snapbundle::render`] makes of its outcome (or JSON); errors go to standard error (and, with
//! `--json`, to standard output) and set the exit status ([`HostError::exit_code`]).

#![forbid(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, rust_2018_idioms)]

mod cli;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use serde_json::json;

use snapbundle::error::HostError;
use snapbundle::export::{ExportOptions, ExportTarget};
use snapbundle::home::Home;
use snapbundle::import::ImportOptions;
use snapbundle::index::IndexOutcome;
use snapbundle::progress::Progress;
use snapbundle::{check, input, render, render_msb, store, Report};

use cli::{
    CheckArgs, Cli, Command, ConvertArgs, ExportArgs, ExportFormat, GcArgs, ImportArgs, ListArgs, PullArgs,
    PushArgs, ToGeneration, VerifyArgs,
};
use snapbundle::msb::{ConvertOptions, Generation as ConvertTo};

fn error_json(e: &HostError) -> serde_json::Value {
    json!({ "code": e.code(), "kind": e.kind(), "message": e.to_string() })
}

fn check(args: &CheckArgs, verbose: bool) -> Result<(), HostError> {
    let mut src = input::open_bundle(&args.bundle)?;
    let progress = Progress::new("validating", src.len, args.print.quiet || args.print.json);
    let result = verify_bundle(&mut src.reader, &src.name, args, &progress);
    progress.finish();
    let mut out = std::io::stdout().lock();
    let print = |out: &mut dyn Write, text: String| -> Result<(), HostError> {
        out.write_all(text.as_bytes()).map_err(|e| HostError::io("writing to stdout", e))
    };
    match (&result, args.print.json) {
        (Ok(report), true) => print(
            &mut out,
            json_line(&json!({ "ok": true, "valid": true, "bundle": src.name, "report": report })),
        )?,
        (Ok(report), false) if verbose => print(&mut out, render::inspect(&src.name, report))?,
        (Ok(report), false) => print(&mut out, render::verdict(&src.name, report))?,
        // Errors are printed by `main`, in JSON too when asked.
        (Err(_), _) => {}
    }
    result.map(|_| ())
}

fn verify_bundle(
    reader: &mut dyn std::io::Read,
    name: &str,
    args: &CheckArgs,
    progress: &Progress,
) -> Result<Report, HostError> {
    #[cfg(feature = "sandbox")]
    if let Some(opts) = args.sandbox.options()? {
        return snapbundle::sandbox::verify_stream(reader, name, args.limits.limits(), &opts, progress);
    }
    check::verify_stream(reader, name, args.limits.limits(), progress)
}

/// Whether a verify target names a bundle rather than a stored snapshot.
fn is_bundle_target(a: &VerifyArgs) -> bool {
    if a.bundle || a.target == "-" {
        return true;
    }
    if a.snapshot {
        return false;
    }
    match std::fs::metadata(&a.target) {
        Ok(m) => !m.is_dir(),
        Err(_) => false,
    }
}

fn verify(a: &VerifyArgs) -> Result<(), HostError> {
    if is_bundle_target(a) {
        let args = CheckArgs {
            bundle: a.target.clone(),
            print: a.print.clone(),
            sandbox: a.sandbox.clone(),
            limits: a.limits.clone(),
        };
        return check(&args, false);
    }
    let home = Home::resolve(a.home.home.as_deref())?;
    let snap = store::resolve(&home, &a.target)?;
    let status = store::verify(&snap, Some(&snapbundle::verified::Records::of(&home)))?;
    if a.print.json {
        return print_out(&json_line(
            &json!({ "valid": true, "digest": snap.digest, "path": snap.dir, "upper": status }),
        ));
    }
    print_out(&render::integrity(&status))
}

fn print_out(text: &str) -> Result<(), HostError> {
    std::io::stdout().lock().write_all(text.as_bytes()).map_err(|e| HostError::io("writing to stdout", e))
}

fn import(a: &ImportArgs) -> Result<(), HostError> {
    let home = Home::resolve(a.home.home.as_deref())?.with_snapshots_dir(a.dest.clone());
    let mut src = input::open_bundle(&a.bundle)?;
    let opts = ImportOptions {
        limits: a.limits.limits(),
        quiet: a.print.quiet || a.print.json,
        input_len: src.len,
        #[cfg(feature = "sandbox")]
        sandbox: a.sandbox.options()?,
    };
    let out = snapbundle::import::import(&mut src.reader, &src.name, &home, &opts)?;
    if a.print.json {
        return print_out(&json_line(&json!({ "ok": true, "bundle": src.name, "import": out })));
    }
    if let IndexOutcome::Failed { error } = &out.index {
        eprintln!("snapbundle: warning: index not updated: {error}");
    }
    print_out(&render::import(&out))
}

fn export(a: &ExportArgs) -> Result<(), HostError> {
    let home = Home::resolve(a.home.home.as_deref())?;
    let out = match a.output.clone().or_else(|| a.out.clone()) {
        Some(o) => o,
        None => {
            let snap = store::resolve(&home, &a.snapshot)?;
            let ext = match (a.format, a.plain_tar) {
                (ExportFormat::Msb, _) => "msb",
                (ExportFormat::Bundle, true) => "tar",
                (ExportFormat::Bundle, false) => "tar.zst",
            };
            format!("{}.{ext}", snap.name())
        }
    };
    let to_stdout = out == "-";
    if to_stdout && a.print.json {
        return Err(HostError::Usage("--json prints on standard output: it cannot be used with -o -".into()));
    }
    let opts = ExportOptions {
        with_parents: a.with_parents,
        with_image: a.with_image,
        plain_tar: a.plain_tar,
        sparse: a.sparse,
        level: a.level,
        threads: a.threads,
        rehash: a.rehash,
        ..ExportOptions::default()
    };
    let path = std::path::PathBuf::from(&out);
    let target = if to_stdout { ExportTarget::Stdout } else { ExportTarget::File(&path) };
    if a.format == ExportFormat::Msb {
        let convert = ConvertOptions {
            plain_tar: a.plain_tar,
            level: a.level,
            threads: a.threads,
            suggested_name: a.name.clone(),
            quiet: a.print.quiet || a.print.json,
            ..ConvertOptions::default()
        };
        let outcome = snapbundle::msb::export_msb(&home, &a.snapshot, target, &opts, &convert)?;
        if a.print.json {
            return print_out(&json_line(&json!({ "ok": true, "export": outcome })));
        }
        if to_stdout {
            return Ok(());
        }
        return print_out(&render_msb::converted(&outcome, &out, "exported"));
    }
    let progress = Progress::new("exporting", None, a.print.quiet || a.print.json);
    let outcome = snapbundle::export::export(&home, &a.snapshot, target, &opts, &progress)?;
    if a.print.json {
        return print_out(&json_line(&json!({ "ok": true, "export": outcome })));
    }
    if to_stdout {
        return Ok(());
    }
    print_out(&render::export(&outcome, &out))
}

fn convert(a: &ConvertArgs) -> Result<(), HostError> {
    let to_stdout = a.output == "-";
    if to_stdout && a.print.json {
        return Err(HostError::Usage("--json prints on standard output: it cannot be used with -o -".into()));
    }
    let mut src = input::open_bundle(&a.input)?;
    let opts = ConvertOptions {
        to: match a.to {
            ToGeneration::V07 => ConvertTo::V07,
            ToGeneration::V062 => ConvertTo::V062,
        },
        limits: a.limits.limits(),
        plain_tar: a.plain_tar,
        level: a.level,
        threads: a.threads,
        suggested_name: a.name.clone(),
        input_len: src.len,
        quiet: a.print.quiet || a.print.json,
        carry: !a.no_carry,
    };
    let path = std::path::PathBuf::from(&a.output);
    let target = if to_stdout { ExportTarget::Stdout } else { ExportTarget::File(&path) };
    // Temporary outputs are noted in the home's journal when there is a home (for `gc`).
    let journal = Home::resolve(None).ok().map(|h| snapbundle::publish::OutputJournal::of(&h));
    let outcome = snapbundle::msb::convert(&mut src.reader, &src.name, target, &opts, journal.as_ref())?;
    if a.print.json {
        return print_out(&json_line(&json!({ "ok": true, "convert": outcome })));
    }
    if to_stdout {
        return Ok(());
    }
    print_out(&render_msb::converted(&outcome, &a.output, "converted"))
}

fn push(a: &PushArgs) -> Result<(), HostError> {
    let opts = snapbundle::registry::PushOptions {
        with_parents: a.with_parents,
        with_image: a.with_image,
        mount_from: a.mount_from.clone(),
        rehash: a.rehash,
        quiet: a.print.quiet || a.print.json,
        ..Default::default()
    };
    let archive = snapbundle::registry::push::archive_argument(&a.snapshot, opts.limits)?;
    let out = match archive {
        Some(path) => {
            if a.with_parents || a.with_image || a.rehash {
                return Err(HostError::Usage(
                    "--with-parents, --with-image and --rehash choose what to push of a store's snapshot; a .msb archive is pushed as it is".into(),
                ));
            }
            // A .msb archive needs no store: without --home or MSB_HOME the spool and records
            // go to snapbundle's scratch home.
            let home = match Home::explicit(a.home.home.as_deref()) {
                Some(h) => h,
                None => Home::scratch()?,
            };
            let conn = a.registry.connection(&a.reference)?;
            snapbundle::registry::push::push_msb(&home, &path, &a.reference, &conn, &opts)?
        }
        None => {
            let home = Home::resolve(a.home.home.as_deref())?;
            let conn = a.registry.connection(&a.reference)?;
            snapbundle::registry::push::push(&home, &a.snapshot, &a.reference, &conn, &opts)?
        }
    };
    if a.print.json {
        return print_out(&json_line(&json!({ "ok": true, "push": out })));
    }
    print_out(&render::push(&out))
}

fn pull(a: &PullArgs) -> Result<(), HostError> {
    let to_stdout = a.output.as_deref() == Some("-");
    // A pull to a file or stdout needs no store: without --home or MSB_HOME its blob cache goes
    // to snapbundle's scratch home, not to a ~/.microsandbox it would create.
    let home = match (&a.output, Home::explicit(a.home.home.as_deref())) {
        (_, Some(h)) => h,
        (Some(_), None) => Home::scratch()?,
        (None, None) => Home::resolve(None)?,
    };
    if to_stdout && a.print.json {
        return Err(HostError::Usage("--json prints on standard output: it cannot be used with -o -".into()));
    }
    let conn = a.registry.connection(&a.reference)?;
    let opts = snapbundle::registry::PullOptions {
        limits: a.limits.limits(),
        keep_blobs: a.keep_blobs,
        plain_tar: a.plain_tar,
        quiet: a.print.quiet || a.print.json,
        max_cache_bytes: a.blob_cache_max_gib.map(|g| g.saturating_mul(1 << 30)),
    };
    let path = a.output.as_ref().map(std::path::PathBuf::from);
    let target = match (&path, to_stdout) {
        (_, true) => snapbundle::registry::PullTarget::Stdout,
        (Some(p), false) => snapbundle::registry::PullTarget::File(p),
        (None, _) => snapbundle::registry::PullTarget::Import { dest: a.dest.clone() },
    };
    let out = snapbundle::registry::pull::pull(&home, &a.reference, &conn, &opts, target)?;
    if a.print.json {
        return print_out(&json_line(&json!({ "ok": true, "pull": out })));
    }
    if to_stdout {
        return Ok(());
    }
    print_out(&render::pull(&out, a.output.as_deref()))
}

fn list(a: &ListArgs) -> Result<(), HostError> {
    let home = Home::resolve(a.home.home.as_deref())?;
    let entries = store::list(&home.snapshots)?;
    if a.print.json {
        let rows = entries
            .iter()
            .map(|(path, opened)| match opened {
                Ok(s) => {
                    let m = &s.manifest;
                    json!({
                        "digest": s.digest, "name": s.name(), "image_ref": m.image.reference,
                        "parent_digest": m.parent, "format": m.format.as_str(), "size_bytes": m.upper.size_bytes,
                        "created_at": m.created_at, "artifact_path": path,
                    })
                }
                Err(e) => json!({ "artifact_path": path, "error": error_json(e) }),
            })
            .collect();
        return print_out(&json_line(&serde_json::Value::Array(rows)));
    }
    print_out(&render::list(&entries, a.print.quiet))
}

fn gc(a: &GcArgs) -> Result<(), HostError> {
    let home = Home::resolve(a.home.home.as_deref())?.with_snapshots_dir(a.dest.clone());
    let rec = snapbundle::import::recover(&home)?;
    let records = snapbundle::verified::Records::of(&home);
    let pruned = records.prune().map_err(|e| {
        HostError::io(format!("pruning verification records in {}", records.dir().display()), e)
    })?;
    let known = snapbundle::registry::known::KnownBlobs::of(&home);
    let pushed = known
        .prune()
        .map_err(|e| HostError::io(format!("pruning push records in {}", known.dir().display()), e))?;
    let blobs = snapbundle::registry::blobs::BlobCache::new(&home);
    let pulled = blobs.gc().map_err(|e| HostError::io(format!("cleaning {}", blobs.dir().display()), e))?;
    let spool_dir = snapbundle::registry::spool::dir(&home);
    let spooled = snapbundle::registry::spool::gc(&home).map_err(|e| {
        HostError::io(format!("cleaning push spool directories in {}", spool_dir.display()), e)
    })?;
    let sessions = snapbundle::registry::resume::gc(&home, snapbundle::registry::resume::MAX_AGE)
        .map_err(|e| HostError::io("pruning upload session records", e))?;
    // Temporary files of outputs (export -o, pull -o) that killed processes left: those noted
    // in this home, and in the scratch home pull -o uses without one.
    let mut outputs = 0;
    let scratch = Home::scratch().ok().filter(|s| s.root != home.root);
    for h in std::iter::once(&home).chain(scratch.as_ref()) {
        let journal = snapbundle::publish::OutputJournal::of(h);
        outputs +=
            journal.gc().map_err(|e| HostError::io(format!("cleaning {}", journal.dir().display()), e))?;
    }
    if a.json {
        return print_out(&json_line(&json!({
            "ok": true, "gc": rec, "verification_records_removed": pruned, "push_records_removed": pushed, "pull_cache": pulled,
            "push_spool": spooled, "upload_sessions_removed": sessions, "output_temporaries_removed": outputs
        })));
    }
    print_out(&render::gc(&rec, pruned, pushed, &pulled, &spooled, sessions, outputs))
}

fn json_line(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if let Err(e) = snapbundle::publish::remove_pending_on_signal() {
        eprintln!("snapbundle: cannot watch for signals ({e}); an interrupted export or pull may leave a temporary file");
    }
    let (result, json_mode) = match &cli.command {
        Command::Inspect(a) => (check(a, true), a.print.json),
        Command::Verify(a) => (verify(a), a.print.json),
        Command::Import(a) => (import(a), a.print.json),
        Command::Export(a) => (export(a), a.print.json),
        Command::Convert(a) => (convert(a), a.print.json),
        Command::Push(a) => (push(a), a.print.json),
        Command::Pull(a) => (pull(a), a.print.json),
        Command::List(a) => (list(a), a.print.json),
        Command::Gc(a) => (gc(a), a.json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json_mode {
                let mut v = json!({ "ok": false, "error": error_json(&e) });
                if matches!(e, HostError::Invalid(_) | HostError::Rejected(_) | HostError::StoreFault(_)) {
                    v["valid"] = json!(false);
                }
                let _ = std::io::stdout().write_all(json_line(&v).as_bytes());
            }
            eprintln!("snapbundle: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
