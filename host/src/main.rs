//! The `snapbundle` command line.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use snapbundle::error::HostError;
use snapbundle::export::{ExportOptions, ExportTarget, IntegrityCheck};
use snapbundle::home::Home;
use snapbundle::import::ImportOptions;
use snapbundle::index::IndexOutcome;
use snapbundle::progress::Progress;
use snapbundle::{check, input, render, store, Limits, Report};
use snapbundle_core::report::IntegrityStatus;

/// Move microVM sandbox snapshots between machines safely.
///
/// A bundle is a tar stream (zstd-compressed by default) holding one or more snapshot
/// directories (manifest.json + upper disk image) and optionally the image cache files they boot
/// from, in the layout microsandbox 0.6.2 writes. Every bundle is treated as hostile input.
///
/// Exit status: 0 success / valid, 1 invalid bundle or snapshot, 2 usage, I/O or not found,
/// 3 conflict (the snapshot or a different cache file already exists).
#[derive(Parser)]
#[command(name = "snapbundle", version, about, long_about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(verbatim_doc_comment)]
    /// Validate a bundle and show what it holds: snapshots, chain, head, image cache, verdict.
    ///
    /// Examples:
    ///   snapbundle inspect bundle.tar.zst
    ///   curl -s https://host/b.tar.zst | snapbundle inspect - --json
    Inspect(CheckArgs),
    #[command(verbatim_doc_comment)]
    /// Verify a bundle (one-line verdict) or a stored snapshot (0.6.2 `verify`).
    ///
    /// For a bundle every check import makes is made (tar grammar, manifests, digests, sizes,
    /// image cache) without writing anything. A directory, a `sha256:` digest (or unique prefix)
    /// or a bare name is a snapshot in the store, checked like `msb snapshot verify`.
    /// Examples:
    ///   snapbundle verify bundle.tar.zst && echo ok
    ///   snapbundle verify - < bundle.tar.zst
    ///   snapbundle verify my-snapshot
    ///   snapbundle verify sha256:11edd654
    Verify(VerifyArgs),
    #[command(verbatim_doc_comment)]
    /// Import a bundle into the store: one streaming pass, sparse, all-or-nothing.
    ///
    /// The bundle is validated while it is staged beneath a private directory of the store;
    /// nothing becomes visible until every snapshot is verified and every target checked, and
    /// then all snapshots (and image cache files) appear or none do, even across a crash.
    /// Holes in disk images are kept. Examples:
    ///   snapbundle import bundle.tar.zst
    ///   ssh host snapbundle export web -o - | snapbundle import -
    ///   snapbundle import b.tar.zst --home /srv/msb --dest /srv/msb/snapshots
    Import(ImportArgs),
    #[command(verbatim_doc_comment)]
    /// Export a snapshot as a bundle that microsandbox 0.6.2 (and snapbundle) imports.
    ///
    /// The snapshot (and with --with-parents every ancestor, found by digest in the store) is
    /// verified while it is written; the whole closure (parents, image files) is checked before
    /// any output. The output file appears atomically: a failed export leaves nothing behind.
    /// Examples:
    ///   snapbundle export my-snapshot                     # writes ./my-snapshot.tar.zst
    ///   snapbundle export sha256:d04c4f19 --with-parents -o chain.tar.zst
    ///   snapbundle export web --with-image -o - | ssh host snapbundle import -
    Export(ExportArgs),
    #[command(verbatim_doc_comment)]
    /// Push a snapshot (and its parents and image files) to an OCI registry.
    ///
    /// Verified like export; every bundle member becomes one blob (uppers and image files
    /// zstd-compressed), so a parent or an image shared by many snapshots is uploaded once.
    /// Blobs the repository has are skipped (HEAD); a file this home pushed before and that
    /// has not changed since is not even read when its blob is there (records in
    /// <home>/cache/snapbundle/pushed; --rehash reads everything); blobs this home pushed to
    /// or pulled from another repository of the registry are mounted from there; the rest are
    /// uploaded several at once, in chunks, with retries. The manifest is put last, so a
    /// failed push leaves no tag behind; running it again sends only what is missing and
    /// continues a half-sent blob where the registry stands. TLS unless --plain-http.
    /// Credentials: --username with --password-stdin, else ~/.docker/config.json
    /// ($DOCKER_CONFIG).
    /// Examples:
    ///   snapbundle push web registry.example/snaps/web:v1 --with-parents --with-image
    ///   echo "$TOKEN" | snapbundle push web ghcr.io/me/web:v2 --username me --password-stdin
    ///   snapbundle push child localhost:5000/snaps/web:v3 --with-parents --plain-http --json
    Push(PushArgs),
    #[command(verbatim_doc_comment)]
    /// Pull a snapshot chain from an OCI registry into the store (or into a bundle with -o).
    ///
    /// Blobs are downloaded in parallel into <home>/cache/snapbundle/blobs (sha256 checked as
    /// they arrive), rebuilt into the exact 0.6.2 bundle stream and imported through the same
    /// validation, staging and all-or-nothing promotion as `import`. An interrupted pull
    /// resumes: verified blobs are not fetched again. With -o the bundle is written instead
    /// (byte for byte what `export` writes for the same snapshots).
    /// Examples:
    ///   snapbundle pull registry.example/snaps/web:v1
    ///   snapbundle pull registry.example/snaps/web@sha256:4f1c… --home /srv/msb
    ///   snapbundle pull localhost:5000/snaps/web:v1 --plain-http -o web.tar.zst
    Pull(PullArgs),
    #[command(verbatim_doc_comment)]
    /// List the snapshots in the store.
    #[command(alias = "ls")]
    List(ListArgs),
    #[command(verbatim_doc_comment)]
    /// Clean up after imports that were killed: roll committed ones forward, remove the rest.
    ///
    /// Imports still running are never touched. Every import does this first on its own.
    /// Also removes verification records (see `export --rehash`) and push records (which blob
    /// a file made) of files that are gone or changed, empties the pull blob cache
    /// (<home>/cache/snapbundle/blobs: blobs and partial downloads a failed `pull` kept for a
    /// resume, or a pull left because another was running) unless a pull is running, removes
    /// the spool directories of killed pushes (<home>/cache/snapbundle/tmp/push-*; those of
    /// running pushes are left alone), and forgets unfinished upload sessions older than a
    /// week (registries purge them).
    Gc(GcArgs),
}

#[derive(Args)]
struct HomeArgs {
    /// microsandbox home (default: $MSB_HOME, else ~/.microsandbox).
    #[arg(long, value_name = "DIR")]
    home: Option<std::path::PathBuf>,
}

#[derive(Args)]
struct VerifyArgs {
    /// Bundle file or `-` (stdin), or a snapshot: path, name or `sha256:` digest.
    target: String,
    /// Treat TARGET as a bundle even if it could name a snapshot.
    #[arg(long, conflicts_with = "snapshot")]
    bundle: bool,
    /// Treat TARGET as a snapshot in the store.
    #[arg(long)]
    snapshot: bool,
    /// Print machine-readable JSON on standard output.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    home: HomeArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args)]
struct ImportArgs {
    /// Bundle file, or `-` for standard input.
    bundle: String,
    /// Snapshots directory to import into (default: <home>/snapshots), like 0.6.2's DEST.
    #[arg(long, value_name = "DIR")]
    dest: Option<std::path::PathBuf>,
    /// Print machine-readable JSON (the outcome and the full report) on standard output.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    home: HomeArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args)]
struct ExportArgs {
    /// Snapshot: a path, a name under <home>/snapshots, or a `sha256:` digest (or unique prefix).
    snapshot: String,
    /// Output file (as in `msb snapshot export <SNAP> <OUT>`); same as -o.
    #[arg(value_name = "OUT", conflicts_with = "output")]
    out: Option<String>,
    /// Output file, or `-` for standard output (default: ./<snapshot name>.tar.zst).
    #[arg(short, long, value_name = "OUT")]
    output: Option<String>,
    /// Also export every ancestor, root first (found by digest among the store's snapshots).
    #[arg(long)]
    with_parents: bool,
    /// Also export the head's image cache files (metadata, fsmeta, VMDK, layers).
    #[arg(long)]
    with_image: bool,
    /// Write a plain tar instead of zstd.
    #[arg(long)]
    plain_tar: bool,
    /// Write files with holes (sparse disk images) as GNU sparse entries: only their data is
    /// read, stored and compressed. microsandbox 0.6.2 cannot read sparse bundles (snapbundle
    /// and GNU tar can); without --sparse the bundle is exactly the 0.6.2 layout.
    #[arg(long)]
    sparse: bool,
    /// zstd compression level (1-19; 0.6.2 uses 3).
    #[arg(long, default_value_t = snapbundle::export::DEFAULT_LEVEL, value_parser = clap::value_parser!(i32).range(1..=19))]
    level: i32,
    /// zstd worker threads (0: one per core, at most 4).
    #[arg(long, default_value_t = 0)]
    threads: u32,
    /// Hash every upper with recorded integrity, even one that snapbundle verified earlier
    /// and that is unchanged since (same inode, size, mtime and ctime). Without it such an
    /// upper is not hashed again; `snapbundle verify <snapshot>` always hashes.
    #[arg(long)]
    rehash: bool,
    /// Print a JSON summary on standard output (not with `-o -`).
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    home: HomeArgs,
}

#[derive(Args)]
struct RegistryArgs {
    /// Speak plain HTTP to the registry (default: HTTPS).
    #[arg(long)]
    plain_http: bool,
    /// Also trust the PEM certificate(s) in FILE (a private CA, a self-signed registry).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// Registry user name (the password is read from standard input: --password-stdin).
    #[arg(long, short = 'u', requires = "password_stdin")]
    username: Option<String>,
    /// Read the password (or token) from the first line of standard input.
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Blobs transferred at once.
    #[arg(long, value_name = "N", default_value_t = snapbundle::registry::client::DEFAULT_JOBS)]
    jobs: usize,
}

impl RegistryArgs {
    fn connection(&self, reference: &str) -> Result<snapbundle::registry::Connection, HostError> {
        let registry = snapbundle_core::reference::parse_reference(reference)
            .map(|r| r.registry)
            .map_err(|e| HostError::Usage(format!("invalid registry reference {reference:?}: {e}")))?;
        let password =
            if self.password_stdin { Some(snapbundle::registry::auth::password_from_stdin()?) } else { None };
        Ok(snapbundle::registry::Connection {
            plain_http: self.plain_http,
            ca_file: self.ca_file.clone(),
            credentials: snapbundle::registry::auth::resolve(&registry, self.username.clone(), password)?,
            jobs: self.jobs,
            attempts: 0,
        })
    }
}

#[derive(Args)]
struct PushArgs {
    /// Snapshot: a path, a name under <home>/snapshots, or a `sha256:` digest (or unique prefix).
    snapshot: String,
    /// Where to: REGISTRY/REPO:TAG.
    reference: String,
    /// Also push every ancestor (found by digest among the store's snapshots).
    #[arg(long)]
    with_parents: bool,
    /// Also push the head's image cache files (metadata, fsmeta, VMDK, layers).
    #[arg(long)]
    with_image: bool,
    /// Mount missing blobs from this repository of the same registry before uploading them.
    /// Without it, blobs this home pushed to or pulled from another repository of the registry
    /// are mounted from there.
    #[arg(long, value_name = "REPO")]
    mount_from: Option<String>,
    /// Read, hash and compress every member again: without it an upper verified earlier and
    /// unchanged since is not hashed (as in export), and an unchanged file whose blob an
    /// earlier push made is not read at all when the registry has that blob.
    #[arg(long)]
    rehash: bool,
    /// Print a JSON summary (blobs uploaded/skipped, bytes, time) on standard output.
    #[arg(long)]
    json: bool,
    /// No progress.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    home: HomeArgs,
}

#[derive(Args)]
struct PullArgs {
    /// What to pull: REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:DIGEST.
    reference: String,
    /// Write a bundle to this file, or `-` for standard output, instead of importing.
    #[arg(short, long, value_name = "OUT")]
    output: Option<String>,
    /// With -o: write a plain tar instead of zstd.
    #[arg(long, requires = "output")]
    plain_tar: bool,
    /// Snapshots directory to import into (default: <home>/snapshots).
    #[arg(long, value_name = "DIR", conflicts_with = "output")]
    dest: Option<std::path::PathBuf>,
    /// Keep the downloaded blobs in <home>/cache/snapbundle/blobs after a successful pull.
    #[arg(long)]
    keep_blobs: bool,
    /// Print a JSON summary on standard output (not with `-o -`).
    #[arg(long)]
    json: bool,
    /// No progress.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    home: HomeArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args)]
struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Print digests only.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    home: HomeArgs,
}

#[derive(Args)]
struct GcArgs {
    /// Snapshots directory to clean (default: <home>/snapshots).
    #[arg(long, value_name = "DIR")]
    dest: Option<std::path::PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    home: HomeArgs,
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
    sandbox: SandboxArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args, Clone)]
struct SandboxArgs {
    /// Validate inside a wasmtime sandbox (the core compiled to WebAssembly); files are
    /// written outside it, from its checked events, and promoted only on its verdict.
    #[cfg(feature = "sandbox")]
    #[arg(long)]
    sandbox: bool,
    /// Memory cap of the sandbox, in MiB.
    #[cfg(feature = "sandbox")]
    #[arg(long, value_name = "MIB", default_value_t = snapbundle::sandbox::SandboxOptions::DEFAULT.memory_limit >> 20)]
    sandbox_memory_mib: u64,
    /// Most seconds the sandbox may compute on one chunk (waiting for writes does not count).
    #[cfg(feature = "sandbox")]
    #[arg(long, value_name = "SECS", default_value_t = snapbundle::sandbox::SandboxOptions::DEFAULT.deadline.as_secs_f64())]
    sandbox_deadline_secs: f64,
}

impl SandboxArgs {
    #[cfg(feature = "sandbox")]
    fn options(&self) -> Result<Option<snapbundle::sandbox::SandboxOptions>, HostError> {
        if !self.sandbox {
            return Ok(None);
        }
        let deadline = std::time::Duration::try_from_secs_f64(self.sandbox_deadline_secs)
            .map_err(|_| HostError::Usage("--sandbox-deadline-secs must be a non-negative number".into()))?;
        Ok(Some(snapbundle::sandbox::SandboxOptions {
            memory_limit: self.sandbox_memory_mib.saturating_mul(1 << 20),
            deadline,
        }))
    }
}

#[derive(Args, Clone)]
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
    json!({ "code": e.code(), "kind": e.kind(), "message": e.to_string() })
}

fn check(args: &CheckArgs, verbose: bool) -> Result<(), HostError> {
    let mut src = input::open_bundle(&args.bundle)?;
    let progress = Progress::new("validating", src.len, args.quiet || args.json);
    let result = verify_bundle(&mut src.reader, &src.name, args, &progress);
    progress.finish();
    let mut out = std::io::stdout().lock();
    let print = |out: &mut dyn Write, text: String| -> Result<(), HostError> {
        out.write_all(text.as_bytes()).map_err(|e| HostError::io("writing to stdout", e))
    };
    match (&result, args.json) {
        (Ok(report), true) => print(
            &mut out,
            json_line(&json!({ "ok": true, "valid": true, "bundle": src.name, "report": report })),
        )?,
        (Ok(report), false) if verbose => print(&mut out, render::inspect(&src.name, report))?,
        (Ok(report), false) => print(&mut out, verdict_line(&src.name, report))?,
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
            json: a.json,
            quiet: a.quiet,
            sandbox: a.sandbox.clone(),
            limits: a.limits.clone(),
        };
        return check(&args, false);
    }
    let home = Home::resolve(a.home.home.as_deref())?;
    let snap = store::resolve(&home, &a.target)?;
    let status = store::verify(&snap, Some(&snapbundle::verified::Records::of(&home)))?;
    let text = match (&status, a.json) {
        (_, true) => {
            json_line(&json!({ "valid": true, "digest": snap.digest, "path": snap.dir, "upper": status }))
        }
        (IntegrityStatus::Verified { algorithm, digest }, false) => {
            format!("verified ({algorithm} {digest})\n")
        }
        (IntegrityStatus::NotRecorded, false) => "not recorded (metadata checks only)\n".to_string(),
    };
    print_out(&text)
}

fn print_out(text: &str) -> Result<(), HostError> {
    std::io::stdout().lock().write_all(text.as_bytes()).map_err(|e| HostError::io("writing to stdout", e))
}

fn import(a: &ImportArgs) -> Result<(), HostError> {
    let home = Home::resolve(a.home.home.as_deref())?.with_snapshots_dir(a.dest.clone());
    let mut src = input::open_bundle(&a.bundle)?;
    let opts = ImportOptions {
        limits: a.limits.limits(),
        quiet: a.quiet || a.json,
        input_len: src.len,
        #[cfg(feature = "sandbox")]
        sandbox: a.sandbox.options()?,
    };
    let out = snapbundle::import::import(&mut src.reader, &src.name, &home, &opts)?;
    if a.json {
        return print_out(&json_line(&json!({ "ok": true, "bundle": src.name, "import": out })));
    }
    let mut text = format!(
        "imported {} snapshot{}\n",
        out.snapshots.len(),
        if out.snapshots.len() == 1 { "" } else { "s" }
    );
    text.push_str(&format!(
        "head   {}\nname   {}\npath   {}\n",
        out.head_digest,
        out.head_name,
        out.head_path.display()
    ));
    if !out.cache_installed.is_empty() || !out.cache_reused.is_empty() {
        text.push_str(&format!(
            "cache  {} installed, {} already present\n",
            out.cache_installed.len(),
            out.cache_reused.len()
        ));
    }
    match &out.index {
        IndexOutcome::Updated { rows } => text.push_str(&format!("index  {rows} row(s) updated\n")),
        IndexOutcome::Absent { hint } => text.push_str(&format!("index  {hint}\n")),
        IndexOutcome::Failed { error } => {
            eprintln!("snapbundle: warning: index not updated: {error}");
            text.push_str("index  not updated (see the warning)\n");
        }
    }
    print_out(&text)
}

fn export(a: &ExportArgs) -> Result<(), HostError> {
    let home = Home::resolve(a.home.home.as_deref())?;
    let out = match a.output.clone().or_else(|| a.out.clone()) {
        Some(o) => o,
        None => {
            let snap = store::resolve(&home, &a.snapshot)?;
            format!("{}.{}", snap.name(), if a.plain_tar { "tar" } else { "tar.zst" })
        }
    };
    let to_stdout = out == "-";
    if to_stdout && a.json {
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
    let progress = Progress::new("exporting", None, a.quiet || a.json);
    let path = std::path::PathBuf::from(&out);
    let target = if to_stdout { ExportTarget::Stdout } else { ExportTarget::File(&path) };
    let outcome = snapbundle::export::export(&home, &a.snapshot, target, &opts, &progress)?;
    if a.json {
        return print_out(&json_line(&json!({ "ok": true, "export": outcome })));
    }
    if to_stdout {
        return Ok(());
    }
    let n = outcome.snapshots.len();
    let mut text = format!(
        "exported {n} snapshot{} ({} of tar, {} written{})\n",
        if n == 1 { "" } else { "s" },
        render::size(outcome.tar_bytes),
        render::size(outcome.bytes_written),
        if outcome.cache_files.is_empty() {
            String::new()
        } else {
            format!(", {} cache files", outcome.cache_files.len())
        }
    );
    for s in &outcome.snapshots {
        let how = match s.integrity {
            IntegrityCheck::NotRecorded => "integrity not recorded",
            IntegrityCheck::Hashed => "integrity verified (hashed)",
            IntegrityCheck::Record => "integrity verified earlier, upper unchanged since (--rehash to hash)",
        };
        text.push_str(&format!("{}  {how}\n", s.prefix));
    }
    text.push_str(&format!("head   {}\n{out}\n", outcome.head));
    print_out(&text)
}

fn push(a: &PushArgs) -> Result<(), HostError> {
    let home = Home::resolve(a.home.home.as_deref())?;
    let conn = a.registry.connection(&a.reference)?;
    let opts = snapbundle::registry::PushOptions {
        with_parents: a.with_parents,
        with_image: a.with_image,
        mount_from: a.mount_from.clone(),
        rehash: a.rehash,
        quiet: a.quiet || a.json,
        ..Default::default()
    };
    let out = snapbundle::registry::push::push(&home, &a.snapshot, &a.reference, &conn, &opts)?;
    if a.json {
        return print_out(&json_line(&json!({ "ok": true, "push": out })));
    }
    print_out(&format!(
        "pushed {} snapshot{} to {}\nhead     {}\nmanifest {}\nblobs    {} uploaded ({}), {} already there{}{}; read {} of {}, {:.1} s\n",
        out.snapshots.len(),
        if out.snapshots.len() == 1 { "" } else { "s" },
        out.reference,
        out.head,
        out.manifest_digest,
        out.uploaded,
        render::size(out.bytes_uploaded),
        out.skipped,
        if out.mounted > 0 { format!(", {} mounted", out.mounted) } else { String::new() },
        if out.resumed > 0 {
            format!(
                "; {} upload{} continued where the registry stood ({} sent)",
                out.resumed,
                if out.resumed == 1 { "" } else { "s" },
                render::size(out.bytes_sent)
            )
        } else {
            String::new()
        },
        render::size(out.bytes_read),
        render::size(out.member_bytes),
        out.seconds
    ))
}

fn pull(a: &PullArgs) -> Result<(), HostError> {
    let home = Home::resolve(a.home.home.as_deref())?;
    let to_stdout = a.output.as_deref() == Some("-");
    if to_stdout && a.json {
        return Err(HostError::Usage("--json prints on standard output: it cannot be used with -o -".into()));
    }
    let conn = a.registry.connection(&a.reference)?;
    let opts = snapbundle::registry::PullOptions {
        limits: a.limits.limits(),
        keep_blobs: a.keep_blobs,
        plain_tar: a.plain_tar,
        quiet: a.quiet || a.json,
    };
    let path = a.output.as_ref().map(std::path::PathBuf::from);
    let target = match (&path, to_stdout) {
        (_, true) => snapbundle::registry::PullTarget::Stdout,
        (Some(p), false) => snapbundle::registry::PullTarget::File(p),
        (None, _) => snapbundle::registry::PullTarget::Import { dest: a.dest.clone() },
    };
    let out = snapbundle::registry::pull::pull(&home, &a.reference, &conn, &opts, target)?;
    if a.json {
        return print_out(&json_line(&json!({ "ok": true, "pull": out })));
    }
    if to_stdout {
        return Ok(());
    }
    let mut text = format!(
        "pulled {} ({} blobs: {} downloaded, {} resumed, {} from the cache; {} in {:.1} s)\n",
        out.reference,
        out.blobs,
        out.downloaded,
        out.resumed,
        out.cached,
        render::size(out.bytes_downloaded),
        out.seconds
    );
    if let Some(i) = &out.import {
        text.push_str(&format!(
            "imported {} snapshot{}\nhead   {}\nname   {}\npath   {}\n",
            i.snapshots.len(),
            if i.snapshots.len() == 1 { "" } else { "s" },
            i.head_digest,
            i.head_name,
            i.head_path.display()
        ));
    }
    if let Some(b) = &out.bundle {
        text.push_str(&format!("head   {}\n{}\n", b.head, a.output.as_deref().unwrap_or_default()));
    }
    print_out(&text)
}

fn list(a: &ListArgs) -> Result<(), HostError> {
    let home = Home::resolve(a.home.home.as_deref())?;
    let entries = store::list(&home.snapshots)?;
    let mut rows = Vec::new();
    let mut text = String::new();
    for (path, opened) in &entries {
        match opened {
            Ok(s) => {
                let m = &s.manifest;
                rows.push(json!({
                    "digest": s.digest, "name": s.name(), "image_ref": m.image.reference,
                    "parent_digest": m.parent, "format": m.format.as_str(), "size_bytes": m.upper.size_bytes,
                    "created_at": m.created_at, "artifact_path": path,
                }));
                if a.quiet {
                    text.push_str(&format!("{}\n", s.digest));
                } else {
                    text.push_str(&format!(
                        "{:<28} {:<21} {:>10}  {:<25} {}\n",
                        s.name(),
                        render::short(&s.digest),
                        render::size(m.upper.size_bytes),
                        m.created_at,
                        m.image.reference
                    ));
                }
            }
            Err(e) => {
                rows.push(json!({ "artifact_path": path, "error": error_json(e) }));
                if !a.quiet {
                    text.push_str(&format!(
                        "{:<28} invalid: {e}\n",
                        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
                    ));
                }
            }
        }
    }
    if a.json {
        return print_out(&json_line(&serde_json::Value::Array(rows)));
    }
    if !a.quiet && !text.is_empty() {
        text.insert_str(
            0,
            &format!("{:<28} {:<21} {:>10}  {:<25} {}\n", "NAME", "DIGEST", "SIZE", "CREATED", "IMAGE"),
        );
    }
    print_out(&text)
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
    if a.json {
        return print_out(&json_line(&json!({
            "ok": true, "gc": rec, "verification_records_removed": pruned, "push_records_removed": pushed, "pull_cache": pulled,
            "push_spool": spooled, "upload_sessions_removed": sessions
        })));
    }
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let cache = if pulled.in_use {
        "left the pull blob cache alone (a pull is running)".to_string()
    } else {
        format!(
            "removed {} pulled blob{} and {} partial download{} ({} bytes) from the pull cache",
            pulled.blobs_removed,
            plural(pulled.blobs_removed),
            pulled.parts_removed,
            plural(pulled.parts_removed),
            pulled.bytes_removed
        )
    };
    let running = match spooled.in_use {
        0 => String::new(),
        n => format!(", left {n} of running pushes"),
    };
    let spool = format!(
        "removed {} push spool director{} ({} bytes){running}",
        spooled.dirs_removed,
        if spooled.dirs_removed == 1 { "y" } else { "ies" },
        spooled.bytes_removed
    );
    print_out(&format!(
        "rolled forward {}, removed {}, left {} running; removed {pruned} stale verification record{} and {pushed} stale push record{}; {cache}; {spool}; removed {sessions} week-old upload session record{}\n",
        rec.rolled_forward.len(),
        rec.removed.len(),
        rec.running.len(),
        plural(pruned),
        plural(pushed),
        plural(sessions)
    ))
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
        Command::Verify(a) => (verify(a), a.json),
        Command::Import(a) => (import(a), a.json),
        Command::Export(a) => (export(a), a.json),
        Command::Push(a) => (push(a), a.json),
        Command::Pull(a) => (pull(a), a.json),
        Command::List(a) => (list(a), a.json),
        Command::Gc(a) => (gc(a), a.json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json_mode {
                let mut v = json!({ "ok": false, "error": error_json(&e) });
                if matches!(e, HostError::Invalid(_) | HostError::Rejected(_)) {
                    v["valid"] = json!(false);
                }
                let _ = std::io::stdout().write_all(json_line(&v).as_bytes());
            }
            eprintln!("snapbundle: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
