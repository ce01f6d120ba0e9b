//! The snapbundle validation core for JavaScript (browsers and node), through wasm-bindgen.
//!
//! Bindings only: every decision is the core's. The API streams like the core's:
//!
//! ```js
//! const v = new Validator({ max_window_size: 64 << 20 });   // limits: the core's Limits fields
//! for await (const chunk of file.stream()) v.push(chunk);     // Uint8Array chunks of any size
//! const report = v.finish();                                  // the CLI's --json "report" object
//! ```
//!
//! A rejected bundle throws an `Error` whose `message`, `code` and `kind` are the core's
//! `Display`, `Error::code()` and `Error::kind()`, the same as natively. The report is the core's
//! `Report` serialised by `serde_json` and parsed by `JSON.parse`, so its fields are exactly those
//! of `snapbundle inspect --json`. TypeScript types for both are declared in the source's
//! `TYPESCRIPT` section and ship in the generated `.d.ts`.
#![cfg_attr(target_arch = "wasm32", no_std)]
#![warn(missing_docs)]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};

use alloc::boxed::Box;
use alloc::vec::Vec;

use snapbundle_core::integrity::{Sha2, Sha256Backend, Sha256State};
use snapbundle_core::{Error, Limits, NullSink};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// A panic is a bug; it traps (a `RuntimeError: unreachable` in JavaScript). Nothing is formatted.
#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// TypeScript declarations of the objects that cross as JSON: limits, report, error.
/// `tests/report_fields.rs` checks that every field of a real report is declared here. (The
/// constant is consumed by wasm-bindgen: it appears only in the generated `.d.ts`.)
#[wasm_bindgen(typescript_custom_section)]
pub const TYPESCRIPT: &str = r#"
/** Resource bounds: any subset of the core's `Limits` fields (the rest keep their defaults). */
export interface LimitsOptions {
  max_window_size?: number;
  max_decompressed_bytes?: number;
  max_entries?: number;
  max_path_len?: number;
  max_manifest_size?: number;
  max_metadata_size?: number;
  max_snapshots?: number;
  max_trailing_zeros?: number;
  max_sparse_segments?: number;
  max_json_total?: number;
}

/** The integrity verdict of a snapshot's upper. */
export type IntegrityStatus =
  | { status: "not_recorded" }
  | { status: "verified"; algorithm: string; digest: string };

/** One snapshot of the bundle. */
export interface SnapshotReport {
  prefix: string;
  digest: string;
  prefix_matches_digest: boolean;
  parent: string | null;
  parent_in_bundle: boolean;
  is_head: boolean;
  image_ref: string;
  image_manifest_digest: string;
  format: string;
  fstype: string;
  created_at: string;
  labels: Record<string, string>;
  source_sandbox: string | null;
  upper_file: string;
  size_bytes: number;
  integrity: IntegrityStatus;
}

/** The image cache carried by the bundle. */
export interface CacheReport {
  image_ref: string;
  manifest_digest: string;
  layers: number;
  files: string[];
}

/** One file an import writes, in archive order. */
export interface PlannedFile {
  index: number;
  area: "snapshots" | "cache";
  path: string;
  role: "manifest" | "upper" | "extra" | "cache_metadata" | "cache_artifact";
  size: number;
  /** "msb-sparse-sha256-v1" for an upper whose manifest records it, else "sha256". */
  algorithm: "sha256" | "msb-sparse-sha256-v1";
  /** The content's digest by `algorithm`, "sha256:<hex>". */
  digest: string;
  mtime: number;
}

/** A layer payload's integrity verdict in a microsandbox 0.7 `.msb` archive. */
export type LayerIntegrity =
  | { status: "not_recorded" }
  | { status: "verified"; algorithm: string; digest: string }
  | { status: "not_included"; algorithm: string | null; digest: string | null };

/** One layer payload of a `.msb` archive, in inventory order. */
export interface MsbLayer {
  layer_id: string;
  path: string;
  format: "raw" | "qcow2";
  owner_snapshot: string;
  included: boolean;
  encoded_size: number;
  apparent_size: number;
  sparse: boolean;
  integrity: LayerIntegrity;
}

/** One snapshot of a `.msb` archive, in archive order. */
export interface MsbSnapshot {
  snapshot_id: string;
  descriptor_digest: string;
  parent: string | null;
  parent_in_archive: boolean;
  is_head: boolean;
  created_at: string;
  image_ref: string;
  image_manifest_digest: string;
  /** Empty for a checkpoint snapshot, as are `disk_format`, `virtual_size` (0) and `layers`. */
  filesystem: string;
  disk_format: "raw" | "qcow2" | "";
  virtual_size: number;
  layers: string[];
  labels: Record<string, string>;
  requires: string[];
  unsupported_requires: string[];
  scope: "file" | "checkpoint";
  owned_volumes: number;
}

/** A checkpoint snapshot's closure (`checkpoints/<snap_id>/…`). */
export interface MsbCheckpoint {
  snapshot_id: string;
  checkpoint_id: string;
  checkpoint_root: string;
  architecture: string;
  capture_intent: "full-snapshot" | "park" | "transparent-transfer";
  objects: number;
  disk_layers: number;
  owned_payloads: number;
  bytes: number;
  not_included: number;
}

/** A checkpoint or owned-volume member of a `.msb` archive, in inventory order. */
export interface MsbClosureMember {
  path: string;
  kind:
    | "checkpoint-root"
    | "checkpoint-object"
    | "checkpoint-disk-layer"
    | "owned-directory-payload"
    | "owned-disk-layer";
  owner_snapshot: string;
  included: boolean;
  encoded_size: number;
  apparent_size: number;
  sparse: boolean;
  /** The recomputed content digest that matched what names or records it, if any. */
  verified: string | null;
}

/** An image file of a `.msb` archive. */
export interface MsbImageFile {
  path: string;
  kind: "image-metadata" | "image-object";
  size: number;
  sha256: string;
}

/** What a valid microsandbox 0.7 `.msb` archive holds. */
export interface MsbReport {
  head: string;
  suggested_name: string | null;
  completeness: "boot-complete" | "dependent";
  requires: string[];
  dependencies: string[];
  snapshots: MsbSnapshot[];
  layers: MsbLayer[];
  images: MsbImageFile[];
  checkpoints: MsbCheckpoint[];
  closure: MsbClosureMember[];
}

/** One snapshot of a released (0.6.7 – 0.6.16) archive with its upper file, in archive order. */
export interface ReleasedSnapshot {
  /** `sha256:<hex>` of its `snapshot.json`: its released identity. */
  digest: string;
  /** The 0.7 id microsandbox 0.7.13 gives it on load. */
  snapshot_id: string;
  parent: string | null;
  parent_in_archive: boolean;
  is_head: boolean;
  created_at: string;
  image_ref: string;
  image_manifest_digest: string;
  format: "raw" | "qcow2";
  fstype: string;
  labels: Record<string, string>;
  source_sandbox: string | null;
  upper_path: string;
  size_bytes: number;
  encoded_size: number;
  sparse: boolean;
  integrity: LayerIntegrity;
}

/** What a valid released archive of microsandbox 0.6.7 – 0.6.16 holds. */
export interface ReleasedReport {
  /** Whether it carries an `archive.json` inventory (0.7.13 loads one without). */
  inventory: boolean;
  head: string;
  suggested_name: string | null;
  with_parents: boolean | null;
  with_image: boolean | null;
  requires: string[];
  snapshots: ReleasedSnapshot[];
  images: MsbImageFile[];
}

/** The verdict on a valid bundle: the same fields as `snapbundle inspect --json`'s "report".
 * For a `.msb` archive (`generation` "0.7") the content is in `msb`, for a released archive
 * (`generation` "0.6.7") in `released`; `snapshots`, `cache` and `files` stay empty for both,
 * `head` is the head's descriptor digest and `head_prefix` its (0.7) snapshot id. */
export interface Report {
  generation: "0.6.2" | "0.6.7" | "0.7";
  container: "zstd" | "tar";
  zstd_frames: number;
  compressed_bytes: number;
  decompressed_bytes: number;
  entries: number;
  snapshots: SnapshotReport[];
  head: string;
  head_prefix: string;
  cache: CacheReport | null;
  files: PlannedFile[];
  /** Present only for a `.msb` archive. */
  msb?: MsbReport;
  /** Present only for a released (0.6.7 – 0.6.16) archive. */
  released?: ReleasedReport;
}

/** What a rejected bundle throws: the core's message, code and kind. */
export interface SnapbundleError extends Error {
  /** Stable snake_case identifier, e.g. "unsafe_path". */
  code: string;
  /** The layer that rejected the bundle, e.g. "tar". */
  kind: string;
}
"#;

#[wasm_bindgen]
extern "C" {
    /// Limits as a plain object (`LimitsOptions`).
    #[wasm_bindgen(typescript_type = "LimitsOptions")]
    pub type LimitsOptions;

    /// The report as a plain object (`Report`).
    #[wasm_bindgen(typescript_type = "Report")]
    pub type ReportObject;

    #[wasm_bindgen(js_namespace = JSON, js_name = parse)]
    fn json_parse(text: &str) -> JsValue;

    #[wasm_bindgen(catch, js_namespace = JSON, js_name = stringify)]
    fn json_stringify(value: &JsValue) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(js_namespace = Reflect, js_name = set)]
    fn reflect_set(target: &JsValue, key: &str, value: &str) -> bool;

    // SHA-256 from the embedding JavaScript, when it provides `globalThis.__snapbundle_sha256`
    // (the package's node entry does, with `node:crypto`). Absent in browsers: `start` throws,
    // and the computation runs on the portable `sha2` code instead.
    #[wasm_bindgen(catch, js_namespace = __snapbundle_sha256, js_name = start)]
    fn host_sha256_start() -> Result<u32, JsValue>;
    #[wasm_bindgen(js_namespace = __snapbundle_sha256, js_name = update)]
    fn host_sha256_update(id: u32, bytes: &[u8]);
    #[wasm_bindgen(js_namespace = __snapbundle_sha256, js_name = zeros)]
    fn host_sha256_zeros(id: u32, len: u32);
    #[wasm_bindgen(js_namespace = __snapbundle_sha256, js_name = finish)]
    fn host_sha256_finish(id: u32) -> Vec<u8>;
    #[wasm_bindgen(js_namespace = __snapbundle_sha256, js_name = drop)]
    fn host_sha256_drop(id: u32);
}

/// SHA-256 computed by the embedding JavaScript where it offers it (node: OpenSSL, with the
/// CPU's SHA instructions, which WebAssembly lacks), else by the core's portable [`Sha2`]. The
/// core still decides what is hashed and what the digests must be.
#[derive(Debug)]
struct HostSha256;

/// One computation in the embedding JavaScript.
struct HostState {
    id: u32,
    finished: bool,
}

impl Sha256Backend for HostSha256 {
    fn start(&self) -> Box<dyn Sha256State> {
        match host_sha256_start() {
            Ok(id) => Box::new(HostState { id, finished: false }),
            Err(_) => Sha2.start(),
        }
    }
}

impl Sha256State for HostState {
    fn update(&mut self, bytes: &[u8]) {
        host_sha256_update(self.id, bytes);
    }

    fn update_zeros(&mut self, mut len: u64) {
        while len > 0 {
            let n = len.min(1 << 30);
            host_sha256_zeros(self.id, n as u32);
            len -= n;
        }
    }

    fn finish(mut self: Box<Self>) -> [u8; 32] {
        self.finished = true;
        // A digest of another length cannot match anything: the bundle is rejected (fail closed).
        <[u8; 32]>::try_from(host_sha256_finish(self.id).as_slice()).unwrap_or([0; 32])
    }
}

impl Drop for HostState {
    fn drop(&mut self) {
        if !self.finished {
            host_sha256_drop(self.id);
        }
    }
}

/// A JavaScript `Error` with `code` and `kind` properties.
fn throwable(message: &str, code: &str, kind: &str) -> JsValue {
    let err: JsValue = JsError::new(message).into();
    reflect_set(&err, "code", code);
    reflect_set(&err, "kind", kind);
    err
}

fn core_error(e: &Error) -> JsValue {
    throwable(&e.to_string(), e.code(), e.kind())
}

fn invalid_limits(detail: &str) -> JsValue {
    throwable(&format!("invalid limits: {detail}"), "invalid_limits", "caller")
}

/// Reads limits from a plain object: missing fields keep the core's defaults, unknown ones fail.
fn limits_from(options: Option<LimitsOptions>) -> Result<Limits, JsValue> {
    let Some(options) = options else { return Ok(Limits::DEFAULT) };
    let value: &JsValue = options.as_ref();
    if value.is_undefined() || value.is_null() {
        return Ok(Limits::DEFAULT);
    }
    let text = json_stringify(value)
        .ok()
        .and_then(|t| t.as_string())
        .ok_or_else(|| invalid_limits("not a plain object of numbers"))?;
    // from_slice: the same reader the core uses for manifests (one JSON reader in the module).
    serde_json::from_slice(text.as_bytes()).map_err(|e| invalid_limits(&e.to_string()))
}

fn report_object(report: &snapbundle_core::Report) -> Result<ReportObject, JsValue> {
    let text = serde_json::to_string(report)
        .map_err(|e| throwable(&format!("report serialisation failed: {e}"), "internal", "caller"))?;
    Ok(json_parse(&text).unchecked_into())
}

/// A streaming validator for one bundle: `push` chunks, then `finish`.
#[wasm_bindgen]
pub struct Validator {
    inner: Option<snapbundle_core::Validator>,
    compressed: u64,
    decompressed: u64,
}

#[wasm_bindgen]
impl Validator {
    /// A validator bounded by `limits` (any subset of `LimitsOptions`; defaults otherwise).
    /// Throws `invalid_limits` for unknown fields or values that are not numbers.
    #[wasm_bindgen(constructor)]
    pub fn new(limits: Option<LimitsOptions>) -> Result<Validator, JsValue> {
        let limits = limits_from(limits)?;
        let inner = snapbundle_core::Validator::with_sha256(limits, &HostSha256);
        Ok(Validator { inner: Some(inner), compressed: 0, decompressed: 0 })
    }

    /// Feeds the next chunk (any size). Throws the core's error for an invalid bundle; after an
    /// error or `finish`, every call throws (code `finished`).
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), JsValue> {
        let v = self.inner.as_mut().ok_or_else(|| core_error(&Error::Finished))?;
        let r = v.push(chunk, &mut NullSink);
        self.compressed = v.compressed_bytes();
        self.decompressed = v.decompressed_bytes();
        r.map_err(|e| core_error(&e))
    }

    /// Input bytes consumed so far (for progress).
    #[wasm_bindgen(getter, js_name = compressedBytes)]
    pub fn compressed_bytes(&self) -> f64 {
        self.compressed as f64
    }

    /// Tar stream bytes produced so far.
    #[wasm_bindgen(getter, js_name = decompressedBytes)]
    pub fn decompressed_bytes(&self) -> f64 {
        self.decompressed as f64
    }

    /// Declares the end of input: returns the report of a valid bundle, or throws why it is not.
    pub fn finish(&mut self) -> Result<ReportObject, JsValue> {
        let v = self.inner.take().ok_or_else(|| core_error(&Error::Finished))?;
        let report = v.finish().map_err(|e| core_error(&e))?;
        report_object(&report)
    }
}

/// Validates a whole in-memory bundle in one call (same report and errors as `Validator`).
#[wasm_bindgen]
pub fn validate(bundle: &[u8], limits: Option<LimitsOptions>) -> Result<ReportObject, JsValue> {
    let mut v = snapbundle_core::Validator::with_sha256(limits_from(limits)?, &HostSha256);
    v.push(bundle, &mut NullSink).map_err(|e| core_error(&e))?;
    let report = v.finish().map_err(|e| core_error(&e))?;
    report_object(&report)
}

/// The version of this package (the workspace version).
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
