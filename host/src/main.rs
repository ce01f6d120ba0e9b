//! The `snapbundle` command line.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use snapbundle::error::HostError;
use snapbundle::progress::Progress;
use snapbundle::{check, input, render, Limits, Report};

/// Move microVM sandbox snapshots between machines safely.
///
/// A bundle is a tar stream (zstd-compressed by default) holding one or more snapshot
/// directories (manifest.json + upper disk image) and optionally the image cache files they boot
/// from, in the layout microsandbox 0.6.2 writes. Every bundle is treated as hostile input.
///
/// Exit status: 0 success / valid, 1 invalid bundle, 2 usage or I/O error.
#[derive(Parser)]
#[command(name = "snapbundle", version, about, long_about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a bundle and show what it holds: snapshots, chain, head, image cache, verdict.
    ///
    /// Examples:
    ///   snapbundle inspect bundle.tar.zst
    ///   curl -s https://host/b.tar.zst | snapbundle inspect - --json
    Inspect(CheckArgs),
    /// Validate a bundle and print a one-line verdict.
    ///
    /// Every check import makes is made (tar grammar, manifests, digests, sizes, image cache),
    /// without writing anything. Examples:
    ///   snapbundle verify bundle.tar.zst && echo ok
    ///   snapbundle verify - < bundle.tar.zst
    Verify(CheckArgs),
}

#[derive(Args)]
struct CheckArgs {
    /// Bundle file, or `-` for standard input.
    bundle: String,
    /// Print machine-readable JSON on standard output.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args)]
struct LimitArgs {
    /// Largest zstd window a frame may ask for, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = Limits::DEFAULT.max_window_size >> 20)]
    max_window_mib: u64,
    /// Largest decompressed tar stream, in GiB.
    #[arg(long, value_name = "GIB", default_value_t = Limits::DEFAULT.max_decompressed_bytes >> 30)]
    max_decompressed_gib: u64,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_window_size: self.max_window_mib.saturating_mul(1 << 20),
            max_decompressed_bytes: self.max_decompressed_gib.saturating_mul(1 << 30),
            ..Limits::DEFAULT
        }
    }
}

fn error_json(e: &HostError) -> serde_json::Value {
    let kind = match e {
        HostError::Invalid(inner) => inner.kind(),
        HostError::Io { .. } => "io",
        _ => "usage",
    };
    json!({ "code": e.code(), "kind": kind, "message": e.to_string() })
}

fn check(args: &CheckArgs, verbose: bool) -> Result<(), HostError> {
    let mut src = input::open_bundle(&args.bundle)?;
    let progress = Progress::new("validating", src.len, args.quiet || args.json);
    let result = check::verify_stream(&mut src.reader, &src.name, args.limits.limits(), &progress);
    progress.finish();
    let mut out = std::io::stdout().lock();
    let print = |out: &mut dyn Write, text: String| -> Result<(), HostError> {
        out.write_all(text.as_bytes()).map_err(|e| HostError::io("writing to stdout", e))
    };
    match (&result, args.json) {
        (Ok(report), true) => {
            print(&mut out, json_line(&json!({ "valid": true, "bundle": src.name, "report": report })))?
        }
        (Err(e @ HostError::Invalid(_)), true) => print(
            &mut out,
            json_line(&json!({ "valid": false, "bundle": src.name, "error": error_json(e) })),
        )?,
        (Ok(report), false) if verbose => print(&mut out, render::inspect(&src.name, report))?,
        (Ok(report), false) => print(&mut out, verdict_line(&src.name, report))?,
        (Err(_), false) => {}
        (Err(_), true) => {}
    }
    result.map(|_| ())
}

fn verdict_line(name: &str, r: &Report) -> String {
    format!(
        "valid: {name}: {} snapshot{}, head {} ({}){}\n",
        r.snapshots.len(),
        if r.snapshots.len() == 1 { "" } else { "s" },
        r.head,
        r.head_prefix,
        if r.cache.is_some() { ", with image cache" } else { "" }
    )
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
    let (result, json_mode) = match &cli.command {
        Command::Inspect(a) => (check(a, true), a.json),
        Command::Verify(a) => (check(a, false), a.json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json_mode && !matches!(e, HostError::Invalid(_)) {
                let _ = std::io::stdout()
                    .write_all(json_line(&json!({ "valid": false, "error": error_json(&e) })).as_bytes());
            }
            eprintln!("snapbundle: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
