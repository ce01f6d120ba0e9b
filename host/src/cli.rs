//! The command line's definitions (clap): commands, their arguments, and the option groups several
//! commands share (`OutputArgs`, `HomeArgs`, `LimitArgs`, `SandboxArgs`, `RegistryArgs`), each
//! defined once and flattened into the commands that take it.

use clap::{Args, Parser, Subcommand};

use snapbundle::error::HostError;
use snapbundle::Limits;

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
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    #[command(verbatim_doc_comment)]
    /// Validate a bundle and show what it holds: snapshots, chain, head, image cache, verdict.
    ///
    /// Every microsandbox archive generation is recognised from its first member: a 0.6.2
    /// bundle, a released 0.6.7 – 0.6.16 inventory archive, or a 0.7 `.msb` archive, validated
    /// more strictly than microsandbox's own load (docs/format-0.7.md) and shown with its
    /// snapshots, layers and which integrity each records and was verified.
    /// Examples:
    ///   snapbundle inspect bundle.tar.zst
    ///   snapbundle inspect web.msb
    ///   curl -s https://host/b.tar.zst | snapbundle inspect - --json
    Inspect(CheckArgs),
    #[command(verbatim_doc_comment)]
    /// Verify a bundle (one-line verdict) or a stored snapshot (0.6.2 `verify`).
    ///
    /// For a bundle every check import makes is made (tar grammar, manifests, digests, sizes,
    /// image cache) without writing anything. A directory, a `sha256:` digest (or unique prefix)
    /// or a bare name is a snapshot in the store, checked like `msb snapshot verify`. A
    /// microsandbox 0.7 `.msb` or released 0.6.7 – 0.6.16 archive is validated as `inspect` does.
    /// Examples:
    ///   snapbundle verify bundle.tar.zst && echo ok
    ///   snapbundle verify web.msb
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
    /// Holes in disk images are kept. A microsandbox 0.7 `.msb` archive is converted on the fly
    /// (as `convert --to 0.6.2` does; what 0.6.2 cannot hold is refused, naming the snapshot,
    /// nothing written); a released 0.6.7 – 0.6.16 archive is refused (exit 2). Examples:
    ///   snapbundle import bundle.tar.zst
    ///   snapbundle import web.msb
    ///   ssh host snapbundle export web -o - | snapbundle import -
    ///   snapbundle import b.tar.zst --home /srv/msb --dest /srv/msb/snapshots
    #[command(mut_arg("json", |a| a.help(JSON_IMPORT)))]
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
    ///   snapbundle export web --with-parents --format msb   # ./web.msb for microsandbox 0.7
    #[command(mut_arg("json", |a| a.help(JSON_NOT_TO_STDOUT)))]
    Export(ExportArgs),
    #[command(verbatim_doc_comment)]
    /// Convert between archive generations: 0.6.2 bundle <-> microsandbox 0.7 `.msb` archive.
    ///
    /// One streaming pass: the input is validated as `verify` validates it while the archive is
    /// written, and the output file appears only if the input was valid (a failed conversion
    /// leaves nothing; to standard output the stream is cut short). The `.msb` archive holds
    /// what microsandbox 0.7.13 makes of the bundle when it loads it: the same snapshot ids
    /// (from the 0.6.2 digests), descriptors, labels (metadata.json), image files (images/) and
    /// recorded integrity; sparse uppers become sparse members. Every original manifest rides
    /// along in archive.json (extension `snapbundle.v062-manifests`, which 0.7 ignores).
    /// Snapshots 0.7 cannot take over (a qcow2 upper, ...) are refused with the reason.
    ///
    /// With --to 0.6.2 a 0.7 archive becomes the bundle 0.6.2 imports: the original manifests
    /// where the archive carries them, else the ones microsandbox's own downgrade writes
    /// (a Merkle-BLAKE3 layer gets msb-sparse-sha256-v1, computed); what 0.6.2 cannot hold
    /// (layer chains, checkpoints, dependent archives, a parent not in the archive) is refused
    /// with the reason. Payloads are spooled until the archive's inventory (its last member).
    /// Examples:
    ///   snapbundle convert web.tar.zst -o web.msb
    ///   snapbundle convert web.msb --to 0.6.2 -o web.tar.zst
    ///   snapbundle convert chain.tar.zst -o - --to 0.7 | ssh host msb snapshot load /dev/stdin
    ///   snapbundle convert old.tar.zst -o old.msb --name web --json
    #[command(mut_arg("json", |a| a.help(JSON_NOT_TO_STDOUT)))]
    Convert(ConvertArgs),
    #[command(verbatim_doc_comment)]
    /// Push a snapshot (and its parents and image files), or a .msb archive as it is, to an OCI registry.
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
    /// A file as the first argument is a microsandbox 0.7 .msb archive, pushed as it is: verified
    /// like `verify` and split in the same pass into one blob per tar member (a parent's members
    /// are the same blobs in a child's archive, so they are sent once); nothing is sent unless
    /// the whole archive is valid. `pull -o FILE.msb` gives it back (same tar stream, and the
    /// same bytes for an archive snapbundle wrote). A 0.6.2 bundle file: import it, push the
    /// snapshot.
    /// Examples:
    ///   snapbundle push web registry.example/snaps/web:v1 --with-parents --with-image
    ///   snapbundle push web.msb registry.example/snaps/web:msb
    ///   echo "$TOKEN" | snapbundle push web ghcr.io/me/web:v2 --username me --password-stdin
    ///   snapbundle push child localhost:5000/snaps/web:v3 --with-parents --plain-http --json
    #[command(mut_arg("json", |a| a.help(JSON_PUSH)), mut_arg("quiet", |a| a.help(QUIET_NO_PROGRESS)))]
    Push(PushArgs),
    #[command(verbatim_doc_comment)]
    /// Pull a snapshot chain from an OCI registry into the store (or into a bundle with -o).
    ///
    /// Blobs are downloaded in parallel into <home>/cache/snapbundle/blobs (sha256 checked as
    /// they arrive), rebuilt into the exact 0.6.2 bundle stream and imported through the same
    /// validation, staging and all-or-nothing promotion as `import`. An interrupted pull
    /// resumes: verified blobs are not fetched again. With -o the bundle is written instead
    /// (byte for byte what `export` writes for the same snapshots) and no store is touched:
    /// without --home or $MSB_HOME the blobs wait in snapbundle's cache directory
    /// ($SNAPBUNDLE_CACHE_DIR, else $XDG_CACHE_HOME/snapbundle, else ~/.cache/snapbundle).
    /// A pushed .msb archive comes back with -o as a .msb archive: its tar stream byte for byte,
    /// the file byte for byte when snapbundle wrote it (a real 0.7.13 archive gets snapbundle's
    /// compression); without -o it is imported like `import X.msb`.
    /// Examples:
    ///   snapbundle pull registry.example/snaps/web:v1
    ///   snapbundle pull registry.example/snaps/web@sha256:4f1c… --home /srv/msb
    ///   snapbundle pull localhost:5000/snaps/web:v1 --plain-http -o web.tar.zst
    ///   snapbundle pull registry.example/snaps/web:msb -o web.msb
    #[command(mut_arg("json", |a| a.help(JSON_NOT_TO_STDOUT)), mut_arg("quiet", |a| a.help(QUIET_NO_PROGRESS)))]
    Pull(PullArgs),
    #[command(verbatim_doc_comment)]
    /// List the snapshots in the store.
    #[command(alias = "ls")]
    #[command(mut_arg("json", |a| a.help(JSON_SHORT)), mut_arg("quiet", |a| a.help("Print digests only")))]
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
    /// running pushes are left alone), forgets unfinished upload sessions older than a
    /// week (registries purge them), and removes the temporary files that a killed
    /// `export -o FILE` or `pull -o FILE` left beside FILE (noted in
    /// <home>/cache/snapbundle/outputs while they are written; also in the scratch home that
    /// `pull -o` uses without --home).
    Gc(GcArgs),
}

/// `--json` and `-q`: how a command reports (the same two flags on every command that has
/// them; a command whose output differs says so in its help, see the `mut_arg`s above).
#[derive(Args, Clone)]
pub(crate) struct OutputArgs {
    /// Print machine-readable JSON on standard output.
    #[arg(long)]
    pub(crate) json: bool,
    /// No progress bar.
    #[arg(short, long)]
    pub(crate) quiet: bool,
}

// clap drops the final period of a one-sentence doc comment: these texts have none either.

/// `--json` of `import`.
const JSON_IMPORT: &str = "Print machine-readable JSON (the outcome and the full report) on standard output";
/// `--json` of `export` and `pull`, which can write the bundle to standard output.
const JSON_NOT_TO_STDOUT: &str = "Print a JSON summary on standard output (not with `-o -`)";
/// `--json` of `push`.
const JSON_PUSH: &str = "Print a JSON summary (blobs uploaded/skipped, bytes, time) on standard output";
/// `--json` of `list` (and `gc`).
const JSON_SHORT: &str = "Print JSON";
/// `-q` of `push` and `pull`.
const QUIET_NO_PROGRESS: &str = "No progress";

/// `--home`.
#[derive(Args)]
pub(crate) struct HomeArgs {
    /// microsandbox home (default: $MSB_HOME, else ~/.microsandbox).
    #[arg(long, value_name = "DIR")]
    pub(crate) home: Option<std::path::PathBuf>,
}

#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// Bundle file or `-` (stdin), or a snapshot: path, name or `sha256:` digest.
    pub(crate) target: String,
    /// Treat TARGET as a bundle even if it could name a snapshot.
    #[arg(long, conflicts_with = "snapshot")]
    pub(crate) bundle: bool,
    /// Treat TARGET as a snapshot in the store.
    #[arg(long)]
    pub(crate) snapshot: bool,
    #[command(flatten)]
    pub(crate) print: OutputArgs,
    #[command(flatten)]
    pub(crate) home: HomeArgs,
    #[command(flatten)]
    pub(crate) sandbox: SandboxArgs,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
}

#[derive(Args)]
pub(crate) struct ImportArgs {
    /// Bundle file, or `-` for standard input.
    pub(crate) bundle: String,
    /// Snapshots directory to import into (default: <home>/snapshots), like 0.6.2's DEST.
    #[arg(long, value_name = "DIR")]
    pub(crate) dest: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub(crate) print: OutputArgs,
    #[command(flatten)]
    pub(crate) home: HomeArgs,
    #[command(flatten)]
    pub(crate) sandbox: SandboxArgs,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
}

#[derive(Args)]
pub(crate) struct ExportArgs {
    /// Snapshot: a path, a name under <home>/snapshots, or a `sha256:` digest (or unique prefix);
    /// or a .msb archive file, pushed as it is.
    pub(crate) snapshot: String,
    /// Output file (as in `msb snapshot export <SNAP> <OUT>`); same as -o.
    #[arg(value_name = "OUT", conflicts_with = "output")]
    pub(crate) out: Option<String>,
    /// Output file, or `-` for standard output (default: ./<snapshot name>.tar.zst).
    #[arg(short, long, value_name = "OUT")]
    pub(crate) output: Option<String>,
    /// Also export every ancestor, root first (found by digest among the store's snapshots).
    #[arg(long)]
    pub(crate) with_parents: bool,
    /// Also export the head's image cache files (metadata, fsmeta, VMDK, layers).
    #[arg(long)]
    pub(crate) with_image: bool,
    /// Write a plain tar instead of zstd.
    #[arg(long)]
    pub(crate) plain_tar: bool,
    /// Write files with holes (sparse disk images) as GNU sparse entries: only their data is
    /// read, stored and compressed. microsandbox 0.6.2 cannot read sparse bundles (snapbundle
    /// and GNU tar can); without --sparse the bundle is exactly the 0.6.2 layout.
    #[arg(long)]
    pub(crate) sparse: bool,
    /// zstd compression level (1-19; 0.6.2 uses 3).
    #[arg(long, default_value_t = snapbundle::export::DEFAULT_LEVEL, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub(crate) level: i32,
    /// zstd worker threads (0: one per core, at most 4).
    #[arg(long, default_value_t = 0)]
    pub(crate) threads: u32,
    /// Hash every upper with recorded integrity, even one that snapbundle verified earlier
    /// and that is unchanged since (same inode, size, mtime and ctime). Without it such an
    /// upper is not hashed again; `snapbundle verify <snapshot>` always hashes.
    #[arg(long)]
    pub(crate) rehash: bool,
    /// What to write: a 0.6.2 bundle, or a microsandbox 0.7 `.msb` archive (byte for byte what
    /// `convert --to 0.7` makes of the bundle; holes always stay holes).
    #[arg(long, value_enum, default_value = "bundle")]
    pub(crate) format: ExportFormat,
    /// With --format msb: the archive's suggested group name.
    #[arg(long, value_name = "NAME", requires = "format")]
    pub(crate) name: Option<String>,
    #[command(flatten)]
    pub(crate) print: OutputArgs,
    #[command(flatten)]
    pub(crate) home: HomeArgs,
}

/// What `export` writes.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// A microsandbox 0.6.2 bundle (`.tar.zst`).
    Bundle,
    /// A microsandbox 0.7 `.msb` archive.
    Msb,
}

/// The archive generation `convert` writes.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ToGeneration {
    /// A microsandbox 0.7 `.msb` archive.
    #[value(name = "0.7")]
    V07,
    /// A microsandbox 0.6.2 bundle (from a 0.7 archive).
    #[value(name = "0.6.2")]
    V062,
}

#[derive(Args)]
pub(crate) struct ConvertArgs {
    /// Input archive, or `-` for standard input.
    pub(crate) input: String,
    /// Output file, or `-` for standard output.
    #[arg(short, long, value_name = "OUT")]
    pub(crate) output: String,
    /// The generation to write.
    #[arg(long, value_enum, default_value = "0.7")]
    pub(crate) to: ToGeneration,
    /// The `.msb` archive's suggested group name (what `msb snapshot load` names the group).
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// --to 0.6.2: write exactly the 0.6.2 layout, without each snapshot's 0.7 descriptor
    /// (msb-0.7-descriptor.json). With it (the default), converting back to 0.7 gives the same
    /// snapshot ids; microsandbox 0.6.2 keeps the file, but 0.7.13 refuses to load such a bundle.
    #[arg(long)]
    pub(crate) no_carry: bool,
    /// Write a plain tar instead of zstd.
    #[arg(long)]
    pub(crate) plain_tar: bool,
    /// zstd compression level (1-19; microsandbox 0.7.13 uses 3).
    #[arg(long, default_value_t = snapbundle::export::DEFAULT_LEVEL, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub(crate) level: i32,
    /// zstd worker threads (0: one per core, at most 4).
    #[arg(long, default_value_t = 0)]
    pub(crate) threads: u32,
    #[command(flatten)]
    pub(crate) print: OutputArgs,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
}

#[derive(Args)]
pub(crate) struct RegistryArgs {
    /// Speak plain HTTP to the registry (default: HTTPS).
    #[arg(long)]
    pub(crate) plain_http: bool,
    /// Also trust the PEM certificate(s) in FILE (a private CA, a self-signed registry).
    #[arg(long, value_name = "FILE")]
    pub(crate) ca_file: Option<std::path::PathBuf>,
    /// Registry user name (the password is read from standard input: --password-stdin).
    #[arg(long, short = 'u', requires = "password_stdin")]
    pub(crate) username: Option<String>,
    /// Read the password (or token) from the first line of standard input.
    #[arg(long, requires = "username")]
    pub(crate) password_stdin: bool,
    /// Blobs transferred at once.
    #[arg(long, value_name = "N", default_value_t = snapbundle::registry::client::DEFAULT_JOBS)]
    pub(crate) jobs: usize,
    /// Give up on one request that moves little data (manifest, token, config, HEAD) after SECS
    /// seconds in all, however slowly the registry keeps answering; a blob transfer gets SECS
    /// plus its size at --min-rate-kib. A request that runs out is retried like a dropped
    /// connection.
    #[arg(long, value_name = "SECS", default_value_t = snapbundle::registry::client::DEFAULT_DEADLINE.as_secs())]
    pub(crate) deadline_secs: u64,
    /// The slowest blob transfer rate, in KiB/s, given time for (see --deadline-secs).
    #[arg(long, value_name = "KIB", default_value_t = snapbundle::registry::client::DEFAULT_MIN_RATE >> 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) min_rate_kib: u64,
}

impl RegistryArgs {
    pub(crate) fn connection(&self, reference: &str) -> Result<snapbundle::registry::Connection, HostError> {
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
            deadline: Some(std::time::Duration::from_secs(self.deadline_secs)),
            min_rate: self.min_rate_kib.saturating_mul(1024),
        })
    }
}

#[derive(Args)]
pub(crate) struct PushArgs {
    /// Snapshot: a path, a name under <home>/snapshots, or a `sha256:` digest (or unique prefix);
    /// or a .msb archive file, pushed as it is.
    pub(crate) snapshot: String,
    /// Where to: REGISTRY/REPO:TAG.
    pub(crate) reference: String,
    /// Also push every ancestor (found by digest among the store's snapshots).
    #[arg(long)]
    pub(crate) with_parents: bool,
    /// Also push the head's image cache files (metadata, fsmeta, VMDK, layers).
    #[arg(long)]
    pub(crate) with_image: bool,
    /// Mount missing blobs from this repository of the same registry before uploading them.
    /// Without it, blobs this home pushed to or pulled from another repository of the registry
    /// are mounted from there.
    #[arg(long, value_name = "REPO")]
    pub(crate) mount_from: Option<String>,
    /// Read, hash and compress every member again: without it an upper verified earlier and
    /// unchanged since is not hashed (as in export), and an unchanged file whose blob an
    /// earlier push made is not read at all when the registry has that blob.
    #[arg(long)]
    pub(crate) rehash: bool,
    #[command(flatten)]
    pub(crate) print: OutputArgs,
    #[command(flatten)]
    pub(crate) registry: RegistryArgs,
    #[command(flatten)]
    pub(crate) home: HomeArgs,
}

#[derive(Args)]
pub(crate) struct PullArgs {
    /// What to pull: REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:DIGEST.
    pub(crate) reference: String,
    /// Write a bundle to this file, or `-` for standard output, instead of importing.
    #[arg(short, long, value_name = "OUT")]
    pub(crate) output: Option<String>,
    /// With -o: write a plain tar instead of zstd.
    #[arg(long, requires = "output")]
    pub(crate) plain_tar: bool,
    /// Snapshots directory to import into (default: <home>/snapshots).
    #[arg(long, value_name = "DIR", conflicts_with = "output")]
    pub(crate) dest: Option<std::path::PathBuf>,
    /// Keep the downloaded blobs in <home>/cache/snapbundle/blobs after a successful pull.
    #[arg(long)]
    pub(crate) keep_blobs: bool,
    /// Refuse a pull whose downloads would make the blob cache hold more than GIB (the free
    /// space of its filesystem is checked either way).
    #[arg(long, value_name = "GIB")]
    pub(crate) blob_cache_max_gib: Option<u64>,
    #[command(flatten)]
    pub(crate) print: OutputArgs,
    #[command(flatten)]
    pub(crate) registry: RegistryArgs,
    #[command(flatten)]
    pub(crate) home: HomeArgs,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
}

#[derive(Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub(crate) print: OutputArgs,
    #[command(flatten)]
    pub(crate) home: HomeArgs,
}

#[derive(Args)]
pub(crate) struct GcArgs {
    /// Snapshots directory to clean (default: <home>/snapshots).
    #[arg(long, value_name = "DIR")]
    pub(crate) dest: Option<std::path::PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) home: HomeArgs,
}

#[derive(Args)]
pub(crate) struct CheckArgs {
    /// Bundle file, or `-` for standard input.
    pub(crate) bundle: String,
    #[command(flatten)]
    pub(crate) print: OutputArgs,
    #[command(flatten)]
    pub(crate) sandbox: SandboxArgs,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
}

#[derive(Args, Clone)]
pub(crate) struct SandboxArgs {
    /// Validate inside a wasmtime sandbox (the core compiled to WebAssembly); files are
    /// written outside it, from its checked events, and promoted only on its verdict.
    #[cfg(feature = "sandbox")]
    #[arg(long)]
    pub(crate) sandbox: bool,
    /// Memory cap of the sandbox, in MiB.
    #[cfg(feature = "sandbox")]
    #[arg(long, value_name = "MIB", default_value_t = snapbundle::sandbox::SandboxOptions::DEFAULT.memory_limit >> 20)]
    pub(crate) sandbox_memory_mib: u64,
    /// Most seconds the sandbox may compute on one chunk (waiting for writes does not count).
    #[cfg(feature = "sandbox")]
    #[arg(long, value_name = "SECS", default_value_t = snapbundle::sandbox::SandboxOptions::DEFAULT.deadline.as_secs_f64())]
    pub(crate) sandbox_deadline_secs: f64,
}

impl SandboxArgs {
    #[cfg(feature = "sandbox")]
    pub(crate) fn options(&self) -> Result<Option<snapbundle::sandbox::SandboxOptions>, HostError> {
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

/// The decompression limits of every command that reads a bundle.
#[derive(Args, Clone)]
pub(crate) struct LimitArgs {
    /// Largest zstd window a frame may ask for, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = Limits::DEFAULT.max_window_size >> 20)]
    pub(crate) max_window_mib: u64,
    /// Largest decompressed tar stream, in GiB.
    #[arg(long, value_name = "GIB", default_value_t = Limits::DEFAULT.max_decompressed_bytes >> 30)]
    pub(crate) max_decompressed_gib: u64,
}

impl LimitArgs {
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_window_size: self.max_window_mib.saturating_mul(1 << 20),
            max_decompressed_bytes: self.max_decompressed_gib.saturating_mul(1 << 30),
            ..Limits::DEFAULT
        }
    }
}
