//! `snapshots/<snap_id>/snapshot.json`: the G3 snapshot descriptor (`microsandbox.snapshot/1`),
//! its strict parse, its canonical bytes and its digest.
//!
//! Parsing follows `microsandbox_types::snapshot::Manifest` 0.7.13: at most 1 MiB; duplicate keys
//! refused in every object (maps included); unknown fields refused; `parent`, the capture's
//! `source_lineage`/`source_checkpoint`, a layer's `backing` and `payload.integrity` must be
//! present even when `null`; `root_disk` defaults to `{"layout":"managed"}`. Then `validate()`'s
//! rules: ids `snap_`/`layer_` + 32 lowercase hex digits, `sha256:`/`blake3:` + 64 lowercase hex
//! digests, sizes at most 2^53 − 1, the layer chain (1..=256 layers, only the first may be raw,
//! each later one qcow2 backed by the one before, the head is the last), `requires` sorted,
//! unique, each key present in `extensions`, extension values nested at most 64 deep with at
//! most 4096 items per container and JSON-safe integers only.
//!
//! Canonical bytes (what the descriptor digest covers): `created_at` normalised to UTC with nine
//! fractional digits and `Z`, object keys sorted by UTF-16 code units, compact, serde_json string
//! escapes. The digest is `sha256:<hex>` of them; it is not the snapshot id.
//!
//! Not yet checked: the semantic schemas of the known extensions (`microsandbox.guest-clock`,
//! restore defaults, owned volumes, external mounts); each is only bounded as above.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use sha2::{Digest as _, Sha256};

use super::json::{self, Fields, Json, JsonError, KeyOrder};

/// The only descriptor schema.
pub const SCHEMA: &str = "microsandbox.snapshot/1";
/// Largest accepted `snapshot.json`.
pub const MAX_DESCRIPTOR_BYTES: usize = 1024 * 1024;
/// Largest integer a size may hold (2^53 − 1).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
/// Most layers in one file state.
pub const MAX_LAYERS: usize = 256;
/// Deepest nesting of an extension value (the value itself is at depth 0).
pub const MAX_EXTENSION_DEPTH: usize = 64;
/// Most items in one array or object inside an extension value.
pub const MAX_EXTENSION_ITEMS: usize = 4096;
/// The must-understand extensions 0.7.13 implements; a descriptor requiring any other is
/// well formed but cannot be restored by it ([`Descriptor::unsupported_requires`]).
pub const SUPPORTED_REQUIRES: [&str; 3] =
    ["microsandbox.guest-clock", "microsandbox.restore-defaults", "microsandbox.owned-volumes"];

/// Why a `snapshot.json` is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DescriptorError {
    /// Larger than [`MAX_DESCRIPTOR_BYTES`].
    TooLarge(u64),
    /// Not JSON, or not the schema's shape (duplicate key, unknown or missing field, wrong type).
    Json(JsonError),
    /// `schema` is not [`SCHEMA`].
    Schema(String),
    /// An id is not its prefix and 32 lowercase hex digits.
    BadId {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// A digest is not its prefix and 64 lowercase hex digits.
    BadDigest {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// A required string is empty.
    Empty(&'static str),
    /// `parent` is the snapshot itself.
    OwnParent,
    /// `capture.created_at` is not an RFC 3339 time this validator can normalise.
    Timestamp(String),
    /// `scope`, `state.kind` and `root_disk` do not go together.
    Scope(&'static str),
    /// A size passes 2^53 − 1.
    UnsafeSize(&'static str),
    /// The layer chain breaks a rule.
    Layers(&'static str),
    /// A layer's integrity breaks a rule.
    Integrity(&'static str),
    /// `requires` is not sorted and unique, or names a key absent from `extensions`.
    Requires(String),
    /// An extension value nests deeper than [`MAX_EXTENSION_DEPTH`].
    ExtensionTooDeep,
    /// An extension container holds more than [`MAX_EXTENSION_ITEMS`] items.
    ExtensionTooLarge,
    /// An extension number is not an integer of magnitude at most 2^53 − 1.
    ExtensionNumber,
    /// The `microsandbox.owned-volumes` extension is not a valid owned-volume inventory, or is
    /// not required.
    OwnedVolumes(super::checkpoint::CheckpointError),
}

impl DescriptorError {
    /// Stable identifier.
    pub fn code(&self) -> &'static str {
        match self {
            DescriptorError::TooLarge(_) => "descriptor_too_large",
            DescriptorError::Json(e) => match e {
                JsonError::Syntax(_) => "descriptor_parse",
                JsonError::DuplicateKey(_) => "descriptor_duplicate_key",
                JsonError::UnknownField(_) => "descriptor_unknown_field",
                JsonError::MissingField(_) => "descriptor_missing_field",
                JsonError::WrongType { .. } | JsonError::UnknownVariant { .. } => "descriptor_wrong_type",
            },
            DescriptorError::Schema(_) => "descriptor_schema",
            DescriptorError::BadId { .. } => "descriptor_bad_id",
            DescriptorError::BadDigest { .. } => "descriptor_bad_digest",
            DescriptorError::Empty(_) => "descriptor_empty_field",
            DescriptorError::OwnParent => "descriptor_own_parent",
            DescriptorError::Timestamp(_) => "descriptor_timestamp",
            DescriptorError::Scope(_) => "descriptor_scope",
            DescriptorError::UnsafeSize(_) => "descriptor_unsafe_size",
            DescriptorError::Layers(_) => "descriptor_layer_chain",
            DescriptorError::Integrity(_) => "descriptor_bad_integrity",
            DescriptorError::Requires(_) => "descriptor_requires",
            DescriptorError::ExtensionTooDeep => "descriptor_extension_too_deep",
            DescriptorError::ExtensionTooLarge => "descriptor_extension_too_large",
            DescriptorError::ExtensionNumber => "descriptor_extension_number",
            DescriptorError::OwnedVolumes(_) => "descriptor_owned_volumes",
        }
    }
}

impl fmt::Display for DescriptorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("snapshot descriptor: ")?;
        match self {
            DescriptorError::TooLarge(n) => {
                write!(f, "{n} bytes exceed the {MAX_DESCRIPTOR_BYTES}-byte limit")
            }
            DescriptorError::Json(e) => write!(f, "{e}"),
            DescriptorError::Schema(s) => {
                write!(f, "unsupported schema '{}' (expected {SCHEMA})", s.escape_debug())
            }
            DescriptorError::BadId { field, value } => write!(
                f,
                "{field} must be its prefix and 32 lowercase hexadecimal digits: '{}'",
                value.escape_debug()
            ),
            DescriptorError::BadDigest { field, value } => write!(
                f,
                "{field} must be its algorithm prefix and 64 lowercase hexadecimal digits: '{}'",
                value.escape_debug()
            ),
            DescriptorError::Empty(field) => write!(f, "empty {field}"),
            DescriptorError::OwnParent => f.write_str("snapshot cannot be its own parent"),
            DescriptorError::Timestamp(v) => {
                write!(f, "capture.created_at is not an RFC 3339 time: '{}'", v.escape_debug())
            }
            DescriptorError::Scope(why) | DescriptorError::Layers(why) | DescriptorError::Integrity(why) => {
                f.write_str(why)
            }
            DescriptorError::UnsafeSize(field) => {
                write!(f, "{field} exceeds the JSON safe-integer limit 2^53 - 1")
            }
            DescriptorError::Requires(key) => write!(
                f,
                "requires must be sorted, unique and name keys of extensions ('{}')",
                key.escape_debug()
            ),
            DescriptorError::ExtensionTooDeep => {
                write!(f, "extension nesting exceeds {MAX_EXTENSION_DEPTH} levels")
            }
            DescriptorError::ExtensionTooLarge => {
                write!(f, "an extension array or object exceeds {MAX_EXTENSION_ITEMS} entries")
            }
            DescriptorError::ExtensionNumber => f.write_str("extension numbers must be JSON-safe integers"),
            DescriptorError::OwnedVolumes(e) => write!(f, "owned volumes: {e}"),
        }
    }
}

impl From<JsonError> for DescriptorError {
    fn from(e: JsonError) -> Self {
        DescriptorError::Json(e)
    }
}

/// A layer file's physical format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerFormat {
    /// Raw disk image (`.raw`).
    Raw,
    /// qcow2 image (`.qcow2`), backed by the layer before it.
    Qcow2,
}

impl LayerFormat {
    /// The JSON spelling, also the file extension under `layers/`.
    pub fn as_str(&self) -> &'static str {
        match self {
            LayerFormat::Raw => "raw",
            LayerFormat::Qcow2 => "qcow2",
        }
    }

    fn parse(v: &Json, path: &str) -> Result<LayerFormat, JsonError> {
        Ok(if json::variant(v, path, &["raw", "qcow2"])? == 0 {
            LayerFormat::Raw
        } else {
            LayerFormat::Qcow2
        })
    }
}

/// A recorded payload integrity (`UpperIntegrity`, tagged by `algorithm`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrity {
    /// `sha256`: plain SHA-256 of the file.
    Sha256 {
        /// `sha256:<hex>`.
        digest: String,
    },
    /// `msb-sparse-sha256-v1`.
    SparseSha256V1 {
        /// `sha256:<hex>`.
        digest: String,
    },
    /// `msb-file-merkle-blake3-v1` ([`crate::merkle`]).
    FileMerkleBlake3V1 {
        /// `blake3:<hex>`.
        root: String,
        /// The payload file's size.
        logical_size: u64,
        /// Always [`crate::merkle::LEAF_SIZE`] once validated.
        leaf_size: u32,
    },
}

impl Integrity {
    /// Parses the tagged object at `path`.
    pub(crate) fn parse(v: &Json, path: &str) -> Result<Integrity, JsonError> {
        let mut f = Fields::of(v, path)?;
        let algorithm = f.req("algorithm")?;
        let names = ["sha256", "msb-sparse-sha256-v1", crate::merkle::FILE_MERKLE_BLAKE3_V1];
        let i = match json::variant(algorithm, &f.path_of("algorithm"), &names)? {
            0 => Integrity::Sha256 { digest: f.str("digest")?.to_string() },
            1 => Integrity::SparseSha256V1 { digest: f.str("digest")?.to_string() },
            _ => Integrity::FileMerkleBlake3V1 {
                root: f.str("root")?.to_string(),
                logical_size: f.u64("logical_size")?,
                leaf_size: f.u32("leaf_size")?,
            },
        };
        f.done()?;
        Ok(i)
    }

    /// Appends the compact form in declared field order (tag first), as serde writes it.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        let algorithm = Json::Str(self.algorithm().to_string());
        match self {
            Integrity::Sha256 { digest } | Integrity::SparseSha256V1 { digest } => {
                let digest = Json::Str(digest.clone());
                json::write_entries(
                    [("algorithm", &algorithm), ("digest", &digest)].into_iter(),
                    KeyOrder::Bytes,
                    out,
                )
            }
            Integrity::FileMerkleBlake3V1 { root, logical_size, leaf_size } => {
                let (root, size, leaf) =
                    (Json::Str(root.clone()), Json::U64(*logical_size), Json::U64(u64::from(*leaf_size)));
                json::write_entries(
                    [
                        ("algorithm", &algorithm),
                        ("root", &root),
                        ("logical_size", &size),
                        ("leaf_size", &leaf),
                    ]
                    .into_iter(),
                    KeyOrder::Bytes,
                    out,
                )
            }
        }
    }

    /// The algorithm name.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Integrity::Sha256 { .. } => "sha256",
            Integrity::SparseSha256V1 { .. } => "msb-sparse-sha256-v1",
            Integrity::FileMerkleBlake3V1 { .. } => crate::merkle::FILE_MERKLE_BLAKE3_V1,
        }
    }

    /// The rules of `validate_integrity`: digest shapes, a non-zero Merkle size, 64 KiB leaves.
    pub(crate) fn validate(&self) -> Result<(), DescriptorError> {
        match self {
            Integrity::Sha256 { digest } | Integrity::SparseSha256V1 { digest } => {
                check_digest(digest, "sha256:", "layer integrity digest")
            }
            Integrity::FileMerkleBlake3V1 { root, logical_size, leaf_size } => {
                check_digest(root, "blake3:", "layer integrity root")?;
                if *logical_size == 0 {
                    return Err(DescriptorError::Integrity("layer integrity logical_size must be non-zero"));
                }
                if *leaf_size != crate::merkle::LEAF_SIZE {
                    return Err(DescriptorError::Integrity("layer integrity leaf_size must be 65536"));
                }
                Ok(())
            }
        }
    }
}

/// One layer of a file state, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// `layer_` + 32 lowercase hex digits; the payload is `layers/<layer_id>.<format>`.
    pub layer_id: String,
    /// Physical format.
    pub format: LayerFormat,
    /// Guest-visible size.
    pub virtual_size: u64,
    /// The layer it is backed by (the one before it), `None` for the first.
    pub backing: Option<String>,
    /// The payload's recorded integrity.
    pub integrity: Option<Integrity>,
}

/// The member path of a layer's payload: `layers/<layer_id>.<format>`.
pub fn payload_path(layer_id: &str, format: LayerFormat) -> String {
    let ext = format.as_str();
    let mut s = String::with_capacity(8 + layer_id.len() + ext.len());
    s.push_str("layers/");
    s.push_str(layer_id);
    s.push('.');
    s.push_str(ext);
    s
}

impl Layer {
    /// The member path of its payload, `layers/<layer_id>.<format>`.
    pub fn payload_path(&self) -> String {
        payload_path(&self.layer_id, self.format)
    }
}

/// A file-backed snapshot state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    /// Format of the head layer.
    pub disk_format: LayerFormat,
    /// Filesystem inside the disk.
    pub filesystem: String,
    /// Guest-visible size of the head layer.
    pub virtual_size: u64,
    /// The head layer's id (the last layer).
    pub head: String,
    /// The layer chain, oldest first.
    pub layers: Vec<Layer>,
}

/// A snapshot's state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum State {
    /// `kind: "file"`: disk layers.
    File(FileState),
    /// `kind: "checkpoint"`: a composite checkpoint, stored under `checkpoints/<snap_id>/`.
    Checkpoint {
        /// The checkpoint id (its `checkpoint.json`'s `checkpoint_id`).
        checkpoint_id: String,
        /// `sha256:<hex>` of its `checkpoint.json`.
        checkpoint_root: String,
        /// Allowed restore intents (`clone`, `resume`, …), not interpreted.
        restore_intents: Vec<String>,
    },
}

/// A parsed and validated `snapshot.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Descriptor {
    /// `snap_` + 32 lowercase hex digits.
    pub snapshot_id: String,
    /// The logical parent, if any.
    pub parent: Option<String>,
    /// The state.
    pub state: State,
    /// `capture.created_at`, normalised (`YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`).
    pub created_at: String,
    /// `image.reference`.
    pub image_reference: String,
    /// `image.manifest_digest` (`sha256:<hex>`).
    pub image_manifest_digest: String,
    /// Must-understand extension keys, sorted.
    pub requires: Vec<String>,
    /// Its owned volumes (the `microsandbox.owned-volumes` extension), empty without them.
    pub owned_volumes: Vec<super::owned::OwnedVolume>,
    /// `capture.source_lineage`.
    pub source_lineage: Option<String>,
    /// Whether `root_disk` is the managed layout (the default).
    pub managed_root: bool,
    /// The device the root disk is (0.7.13 `restore::root_device`): `vdb` for the managed
    /// layout, `vda` for a flat one, none for tmpfs.
    pub root_device: Option<&'static str>,
    /// The keys of `extensions`.
    pub extension_keys: Vec<String>,
    canonical: Vec<u8>,
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `value` is `prefix` followed by 32 lowercase hex digits (`snap_`, `layer_`).
pub fn is_id(value: &str, prefix: &str) -> bool {
    value.strip_prefix(prefix).is_some_and(|hex| is_lower_hex(hex, 32))
}

/// Whether `value` is `prefix` followed by 64 lowercase hex digits (`sha256:`, `blake3:`).
pub fn is_digest(value: &str, prefix: &str) -> bool {
    value.strip_prefix(prefix).is_some_and(|hex| is_lower_hex(hex, 64))
}

fn check_id(value: &str, prefix: &str, field: &'static str) -> Result<(), DescriptorError> {
    if is_id(value, prefix) {
        Ok(())
    } else {
        Err(DescriptorError::BadId { field, value: value.to_string() })
    }
}

fn check_digest(value: &str, prefix: &str, field: &'static str) -> Result<(), DescriptorError> {
    if is_digest(value, prefix) {
        Ok(())
    } else {
        Err(DescriptorError::BadDigest { field, value: value.to_string() })
    }
}

fn strings(items: &[Json], path: &str) -> Result<Vec<String>, JsonError> {
    items.iter().map(|v| json::as_str(v, path).map(str::to_string)).collect()
}

pub(crate) fn parse_layer(v: &Json, path: &str) -> Result<Layer, JsonError> {
    let mut f = Fields::of(v, path)?;
    let layer_id = f.str("layer_id")?.to_string();
    let format = LayerFormat::parse(f.req("format")?, &f.path_of("format"))?;
    let virtual_size = f.u64("virtual_size")?;
    let backing = f.str_or_null("backing")?.map(str::to_string);
    let payload = f.req("payload")?;
    let payload_path = f.path_of("payload");
    f.done()?;
    let mut p = Fields::of(payload, &payload_path)?;
    json::variant(p.req("file_kind")?, &p.path_of("file_kind"), &["regular"])?;
    let integrity = match p.req("integrity")? {
        Json::Null => None,
        v => Some(Integrity::parse(v, &p.path_of("integrity"))?),
    };
    p.done()?;
    Ok(Layer { layer_id, format, virtual_size, backing, integrity })
}

fn parse_state(v: &Json) -> Result<State, JsonError> {
    let mut f = Fields::of(v, "state")?;
    let kind = json::variant(f.req("kind")?, "state.kind", &["file", "checkpoint"])?;
    let state = if kind == 0 {
        let disk_format = LayerFormat::parse(f.req("disk_format")?, "state.disk_format")?;
        let filesystem = f.str("filesystem")?.to_string();
        let virtual_size = f.u64("virtual_size")?;
        let head = f.str("head")?.to_string();
        let layers = f
            .arr("layers")?
            .iter()
            .map(|l| parse_layer(l, "state.layers[]"))
            .collect::<Result<Vec<_>, _>>()?;
        State::File(FileState { disk_format, filesystem, virtual_size, head, layers })
    } else {
        let checkpoint_id = f.str("checkpoint_id")?.to_string();
        let checkpoint_root = f.str("checkpoint_root")?.to_string();
        let restore_intents = strings(f.arr("restore_intents")?, "state.restore_intents[]")?;
        f.obj("requirements_summary")?;
        State::Checkpoint { checkpoint_id, checkpoint_root, restore_intents }
    };
    f.done()?;
    Ok(state)
}

/// Which `root_disk` layout, checked for shape.
fn parse_root_disk(v: &Json) -> Result<usize, JsonError> {
    let mut f = Fields::of(v, "root_disk")?;
    let layout = json::variant(f.req("layout")?, "root_disk.layout", &["managed", "flat", "tmpfs"])?;
    if layout == 2 {
        match f.req("size_mib")? {
            Json::Null => {}
            n => {
                let n = json::as_u64(n, "root_disk.size_mib")?;
                u32::try_from(n)
                    .map_err(|_| json::wrong("root_disk.size_mib", "an unsigned 32-bit integer"))?;
            }
        }
    }
    f.done()?;
    Ok(layout)
}

/// Bounds of one extension value (`validate_json_value`).
fn check_extension(value: &Json, depth: usize) -> Result<(), DescriptorError> {
    if depth > MAX_EXTENSION_DEPTH {
        return Err(DescriptorError::ExtensionTooDeep);
    }
    match value {
        Json::U64(n) if *n > MAX_SAFE_INTEGER => Err(DescriptorError::ExtensionNumber),
        Json::I64(n) if n.unsigned_abs() > MAX_SAFE_INTEGER => Err(DescriptorError::ExtensionNumber),
        Json::F64(_) => Err(DescriptorError::ExtensionNumber),
        Json::Arr(items) => {
            if items.len() > MAX_EXTENSION_ITEMS {
                return Err(DescriptorError::ExtensionTooLarge);
            }
            items.iter().try_for_each(|v| check_extension(v, depth + 1))
        }
        Json::Obj(items) => {
            if items.len() > MAX_EXTENSION_ITEMS {
                return Err(DescriptorError::ExtensionTooLarge);
            }
            items.iter().try_for_each(|(_, v)| check_extension(v, depth + 1))
        }
        _ => Ok(()),
    }
}

fn validate_file_state(file: &FileState) -> Result<(), DescriptorError> {
    if file.filesystem.is_empty() {
        return Err(DescriptorError::Empty("state.filesystem"));
    }
    if file.virtual_size > MAX_SAFE_INTEGER {
        return Err(DescriptorError::UnsafeSize("state.virtual_size"));
    }
    if file.layers.is_empty() || file.layers.len() > MAX_LAYERS {
        return Err(DescriptorError::Layers("state.layers must contain 1..=256 entries"));
    }
    let mut previous: Option<&Layer> = None;
    for (index, layer) in file.layers.iter().enumerate() {
        check_id(&layer.layer_id, "layer_", "state.layers[].layer_id")?;
        if file.layers.iter().take(index).any(|l| l.layer_id == layer.layer_id) {
            return Err(DescriptorError::Layers("duplicate layer id"));
        }
        if layer.virtual_size > MAX_SAFE_INTEGER {
            return Err(DescriptorError::UnsafeSize("state.layers[].virtual_size"));
        }
        match (previous, layer.format, layer.backing.as_deref()) {
            (None, _, None) => {}
            (None, _, Some(_)) => {
                return Err(DescriptorError::Layers("oldest layer must not name a backing layer"))
            }
            (Some(_), LayerFormat::Raw, _) => {
                return Err(DescriptorError::Layers("raw successor layers are not allowed"))
            }
            (Some(p), LayerFormat::Qcow2, Some(b)) if b == p.layer_id => {}
            (Some(_), LayerFormat::Qcow2, Some(_)) => {
                return Err(DescriptorError::Layers("qcow2 successor must name its immediate predecessor"))
            }
            (Some(_), LayerFormat::Qcow2, None) => {
                return Err(DescriptorError::Layers("qcow2 successor is missing its backing layer"))
            }
        }
        if let Some(integrity) = &layer.integrity {
            integrity.validate()?;
        }
        previous = Some(layer);
    }
    let head = file
        .layers
        .last()
        .filter(|l| l.layer_id == file.head)
        .ok_or(DescriptorError::Layers("state.head does not name the final layer"))?;
    if head.format != file.disk_format || head.virtual_size != file.virtual_size {
        return Err(DescriptorError::Layers("head format/size does not match file state"));
    }
    Ok(())
}

impl Descriptor {
    /// Parses, validates and canonicalises `snapshot.json` bytes.
    pub fn parse(bytes: &[u8]) -> Result<Descriptor, DescriptorError> {
        if bytes.len() > MAX_DESCRIPTOR_BYTES {
            return Err(DescriptorError::TooLarge(bytes.len() as u64));
        }
        let tree = json::parse(bytes)?;
        let mut f = Fields::of(&tree, "")?;
        let schema = f.str("schema")?;
        let snapshot_id = f.str("snapshot_id")?.to_string();
        let scope = json::variant(f.req("scope")?, "scope", &["file", "checkpoint"])?;
        let state = parse_state(f.req("state")?)?;
        let mut c = Fields::of(f.req("capture")?, "capture")?;
        let created_at = c.str("created_at")?;
        let source_lineage = c.str_or_null("source_lineage")?.map(str::to_string);
        c.str_or_null("source_checkpoint")?;
        json::variant(
            c.req("consistency")?,
            "capture.consistency",
            &["crash-consistent", "filesystem-consistent", "application-consistent"],
        )?;
        c.done()?;
        let mut i = Fields::of(f.req("image")?, "image")?;
        let image_reference = i.str("reference")?.to_string();
        let image_manifest_digest = i.str("manifest_digest")?.to_string();
        i.done()?;
        let root_disk = f.opt("root_disk").map(parse_root_disk).transpose()?.unwrap_or(0);
        let parent = f.str_or_null("parent")?.map(str::to_string);
        let requires = strings(f.arr("requires")?, "requires[]")?;
        let extensions = f.obj("extensions")?;
        f.done()?;

        // `validate()`, in its order.
        if schema != SCHEMA {
            return Err(DescriptorError::Schema(schema.to_string()));
        }
        check_id(&snapshot_id, "snap_", "snapshot_id")?;
        if image_reference.is_empty() {
            return Err(DescriptorError::Empty("image.reference"));
        }
        check_digest(&image_manifest_digest, "sha256:", "image.manifest_digest")?;
        if let Some(p) = &parent {
            check_id(p, "snap_", "parent")?;
            if *p == snapshot_id {
                return Err(DescriptorError::OwnParent);
            }
        }
        let created_at = super::time::normalize_rfc3339(created_at)
            .ok_or_else(|| DescriptorError::Timestamp(created_at.to_string()))?;
        match &state {
            State::File(file) => {
                if scope != 0 {
                    return Err(DescriptorError::Scope("state.kind=file requires scope=file"));
                }
                if root_disk == 2 {
                    return Err(DescriptorError::Scope("file snapshots cannot capture a tmpfs root disk"));
                }
                validate_file_state(file)?;
            }
            State::Checkpoint { checkpoint_id, checkpoint_root, .. } => {
                if scope != 1 {
                    return Err(DescriptorError::Scope("state.kind=checkpoint requires scope=checkpoint"));
                }
                if checkpoint_id.is_empty() {
                    return Err(DescriptorError::Empty("state.checkpoint_id"));
                }
                check_digest(checkpoint_root, "sha256:", "state.checkpoint_root")?;
            }
        }
        let mut previous: Option<&str> = None;
        for key in &requires {
            if key.is_empty()
                || !extensions.iter().any(|(k, _)| k == key)
                || previous.is_some_and(|p| p >= key.as_str())
            {
                return Err(DescriptorError::Requires(key.clone()));
            }
            previous = Some(key);
        }
        extensions.iter().try_for_each(|(_, v)| check_extension(v, 0))?;
        let owned =
            extensions.iter().find(|(k, _)| k == super::owned::OWNED_VOLUMES_EXTENSION).map(|(_, v)| v);
        let owned_volumes =
            super::owned::of_descriptor(owned, &requires).map_err(DescriptorError::OwnedVolumes)?;

        let extension_keys = extensions.iter().map(|(k, _)| k.clone()).collect();
        let canonical = canonical_bytes(&tree, &created_at);
        Ok(Descriptor {
            snapshot_id,
            parent,
            state,
            created_at,
            image_reference,
            image_manifest_digest,
            requires,
            owned_volumes,
            source_lineage,
            managed_root: root_disk == 0,
            root_device: match root_disk {
                0 => Some("vdb"),
                1 => Some("vda"),
                _ => None,
            },
            extension_keys,
            canonical,
        })
    }

    /// The `requires` keys outside [`SUPPORTED_REQUIRES`].
    pub fn unsupported_requires(&self) -> impl Iterator<Item = &str> {
        self.requires.iter().map(String::as_str).filter(|r| !SUPPORTED_REQUIRES.contains(r))
    }

    /// The canonical bytes the digest covers.
    pub fn canonical_bytes(&self) -> &[u8] {
        &self.canonical
    }

    /// The descriptor digest, `sha256:<hex>` of the canonical bytes.
    pub fn digest(&self) -> String {
        crate::hex::sha256_digest(&Sha256::digest(&self.canonical).into())
    }
}

/// The validated tree with `created_at` normalised and the default `root_disk`, written with
/// keys by UTF-16 code units.
fn canonical_bytes(tree: &Json, created_at: &str) -> Vec<u8> {
    let mut tree = tree.clone();
    if let Json::Obj(top) = &mut tree {
        for (k, v) in top.iter_mut() {
            if k == "capture" {
                if let Json::Obj(capture) = v {
                    for (ck, cv) in capture.iter_mut() {
                        if ck == "created_at" {
                            *cv = Json::Str(created_at.to_string());
                        }
                    }
                }
            }
        }
        if !top.iter().any(|(k, _)| k == "root_disk") {
            top.push((
                "root_disk".to_string(),
                Json::Obj(alloc::vec![("layout".to_string(), Json::Str("managed".to_string()))]),
            ));
        }
    }
    let mut out = Vec::new();
    json::write(&tree, KeyOrder::Utf16, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `chain3-head-only`'s descriptor, keys as the real save writes them.
    pub(crate) const REAL: &str = r#"{"capture":{"consistency":"crash-consistent","created_at":"2026-05-01T12:00:00.000000000Z","source_checkpoint":null,"source_lineage":"msb713-oracle"},"extensions":{},"image":{"manifest_digest":"sha256:0000000000000000000000000000000000000000000000000000000000000001","reference":"docker.io/library/alpine:3.20"},"parent":"snap_8c258b65afd88d96e645c53e63aaa699","requires":[],"root_disk":{"layout":"managed"},"schema":"microsandbox.snapshot/1","scope":"file","snapshot_id":"snap_ca2472f3748fe23fcf85123261a75c73","state":{"disk_format":"raw","filesystem":"ext4","head":"layer_555c876eeb93dc7ccb4656d8f09d923f","kind":"file","layers":[{"backing":null,"format":"raw","layer_id":"layer_555c876eeb93dc7ccb4656d8f09d923f","payload":{"file_kind":"regular","integrity":null},"virtual_size":32768}],"virtual_size":32768}}"#;

    fn code(json: &str) -> &'static str {
        Descriptor::parse(json.as_bytes()).map(|_| "ok").unwrap_or_else(|e| e.code())
    }

    #[test]
    fn the_real_descriptor_round_trips_to_its_digest() {
        let d = Descriptor::parse(REAL.as_bytes()).unwrap();
        assert_eq!(d.canonical_bytes(), REAL.as_bytes());
        assert_eq!(d.digest(), "sha256:56e9315fa5d83a0d75c2517907d5de70e345dcb32d1ed4e2683398bbf3b2b3fd");
        assert_eq!(d.parent.as_deref(), Some("snap_8c258b65afd88d96e645c53e63aaa699"));
        let State::File(file) = &d.state else { panic!("file state") };
        assert_eq!(file.layers.len(), 1);
    }

    #[test]
    fn canonical_form_normalises_time_order_and_default_root_disk() {
        let shuffled = REAL
            .replace("2026-05-01T12:00:00.000000000Z", "2026-05-01T14:00:00+02:00")
            .replace(r#""root_disk":{"layout":"managed"},"#, "")
            .replacen('{', "{\"schema\":\"microsandbox.snapshot/1\",", 1)
            .replace(r#","schema":"microsandbox.snapshot/1""#, "");
        let d = Descriptor::parse(shuffled.as_bytes()).unwrap();
        assert_eq!(d.canonical_bytes(), REAL.as_bytes());
    }

    #[test]
    fn rules() {
        assert_eq!(
            code(&REAL.replace("\"extensions\":{}", "\"extensions\":{},\"x\":1")),
            "descriptor_unknown_field"
        );
        assert_eq!(
            code(&REAL.replace("\"requires\":[]", "\"requires\":[],\"requires\":[]")),
            "descriptor_duplicate_key"
        );
        assert_eq!(
            code(&REAL.replace("\"extensions\":{}", "\"extensions\":{\"a\":1,\"a\":2}")),
            "descriptor_duplicate_key"
        );
        assert_eq!(
            code(&REAL.replace("\"parent\":\"snap_8c258b65afd88d96e645c53e63aaa699\",", "")),
            "descriptor_missing_field"
        );
        assert_eq!(
            code(
                &REAL.replace(
                    "snap_8c258b65afd88d96e645c53e63aaa699",
                    "snap_8C258b65afd88d96e645c53e63aaa699"
                )
            ),
            "descriptor_bad_id"
        );
        assert_eq!(
            code(
                &REAL.replace(
                    "snap_8c258b65afd88d96e645c53e63aaa699",
                    "snap_ca2472f3748fe23fcf85123261a75c73"
                )
            ),
            "descriptor_own_parent"
        );
        assert_eq!(
            code(&REAL.replace("\"virtual_size\":32768}}", "\"virtual_size\":9007199254740992}}")),
            "descriptor_unsafe_size"
        );
        assert_eq!(
            code(&REAL.replace("\"virtual_size\":32768}}", "\"virtual_size\":1.0}}")),
            "descriptor_wrong_type"
        );
        assert_eq!(code(&REAL.replace("\"requires\":[]", "\"requires\":[\"k\"]")), "descriptor_requires");
        assert_eq!(
            code(
                &REAL
                    .replace("\"requires\":[]", "\"requires\":[\"b\",\"a\"]")
                    .replace("\"extensions\":{}", "\"extensions\":{\"a\":1,\"b\":2}")
            ),
            "descriptor_requires"
        );
        let two = REAL
            .replace("\"requires\":[]", "\"requires\":[\"a\",\"microsandbox.guest-clock\"]")
            .replace("\"extensions\":{}", "\"extensions\":{\"a\":1,\"microsandbox.guest-clock\":{}}");
        let d = Descriptor::parse(two.as_bytes()).unwrap();
        assert_eq!(d.unsupported_requires().collect::<Vec<_>>(), ["a"]);
        assert_eq!(
            code(&REAL.replace("\"extensions\":{}", "\"extensions\":{\"a\":1.5}")),
            "descriptor_extension_number"
        );
        assert_eq!(
            code(&REAL.replace("2026-05-01T12:00:00.000000000Z", "yesterday")),
            "descriptor_timestamp"
        );
        assert_eq!(code(&REAL.replace("\"format\":\"raw\"", "\"format\":\"vmdk\"")), "descriptor_wrong_type");
        assert_eq!(
            code(&REAL.replace("\"backing\":null", "\"backing\":\"layer_555c876eeb93dc7ccb4656d8f09d923f\"")),
            "descriptor_layer_chain"
        );
        assert_eq!(
            code(&REAL.replace(
                "\"head\":\"layer_555c876eeb93dc7ccb4656d8f09d923f\"",
                "\"head\":\"layer_555c876eeb93dc7ccb4656d8f09d923e\""
            )),
            "descriptor_layer_chain"
        );
        let big = alloc::format!("{REAL}{}", " ".repeat(MAX_DESCRIPTOR_BYTES));
        assert_eq!(code(&big), "descriptor_too_large");
    }

    #[test]
    fn extension_nesting_is_bounded_at_64() {
        let nest = |depth: usize| {
            let value = alloc::format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            REAL.replace("\"extensions\":{}", &alloc::format!("\"extensions\":{{\"x\":{value}}}"))
        };
        assert_eq!(code(&nest(64)), "ok");
        assert_eq!(code(&nest(65)), "descriptor_extension_too_deep");
        let wide = alloc::format!("[{}0]", "0,".repeat(MAX_EXTENSION_ITEMS));
        assert_eq!(
            code(&REAL.replace("\"extensions\":{}", &alloc::format!("\"extensions\":{{\"x\":{wide}}}"))),
            "descriptor_extension_too_large"
        );
    }
}
