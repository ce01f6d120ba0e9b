//! The JSON documents of a checkpoint closure (`checkpoints/<snap_id>/…`, 0.7.13
//! `microsandbox_image::checkpoint`): the root `checkpoint.json` (`microsandbox.checkpoint/1`), the
//! memory manifest (`microsandbox.memory/1`) and the disk generations
//! (`microsandbox.disk-generation/1`), the last two stored as content-addressed objects
//! `objects/sha256/<xx>/<hex>`.
//!
//! Each is parsed as 0.7.13 parses it: at most 8 MiB, duplicate keys and unknown fields refused,
//! the bytes must be the canonical serialisation (keys by UTF-16 code units, compact, an empty
//! `owned_volumes` and the default `device_id` `"vdb"` omitted), then the same-record rules of
//! `validate()`. Which objects a checkpoint references, and the checks across documents and
//! members, are in `closure`.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use super::descriptor::is_digest;
use super::json::{self, Fields, Json, JsonError, KeyOrder};
use super::owned::{self, OwnedVolume};

/// Largest checkpoint, memory or disk-generation manifest (0.7.13 `MAX_MANIFEST_BYTES`).
pub const MAX_MANIFEST_BYTES: usize = 8 * 1024 * 1024;
/// Most disks, devices or resources of one checkpoint.
pub const MAX_COMPONENTS: usize = 4096;
/// Most memory extents of one memory manifest.
pub const MAX_MEMORY_EXTENTS: usize = 4 * 1024 * 1024;
/// Most layers of one disk generation.
pub const MAX_DISK_LAYERS: usize = 256;
/// Largest execution-state object (0.7.13 `MAX_EXECUTION_STATE_BYTES`).
pub const MAX_EXECUTION_STATE_BYTES: u64 = 512 * 1024 * 1024;

/// Why a checkpoint-closure document (or an owned-volume inventory) is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Larger than [`MAX_MANIFEST_BYTES`].
    TooLarge(u64),
    /// Not JSON, or not the schema's shape.
    Json(JsonError),
    /// The bytes are not the canonical serialisation of their value.
    NotCanonical,
    /// A rule of the schema is broken.
    Invalid(&'static str),
}

impl CheckpointError {
    /// Stable identifier.
    pub fn code(&self) -> &'static str {
        match self {
            CheckpointError::TooLarge(_) => "checkpoint_too_large",
            CheckpointError::Json(e) => match e {
                JsonError::Syntax(_) => "checkpoint_parse",
                JsonError::DuplicateKey(_) => "checkpoint_duplicate_key",
                JsonError::UnknownField(_) => "checkpoint_unknown_field",
                JsonError::MissingField(_) => "checkpoint_missing_field",
                JsonError::WrongType { .. } | JsonError::UnknownVariant { .. } => "checkpoint_wrong_type",
            },
            CheckpointError::NotCanonical => "checkpoint_not_canonical",
            CheckpointError::Invalid(_) => "checkpoint_invalid",
        }
    }
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::TooLarge(n) => write!(f, "{n} bytes exceed the {MAX_MANIFEST_BYTES}-byte limit"),
            CheckpointError::Json(e) => write!(f, "{e}"),
            CheckpointError::NotCanonical => f.write_str("the bytes are not the canonical serialisation"),
            CheckpointError::Invalid(why) => f.write_str(why),
        }
    }
}

impl From<JsonError> for CheckpointError {
    fn from(e: JsonError) -> Self {
        CheckpointError::Json(e)
    }
}

fn invalid<T>(why: &'static str) -> Result<T, CheckpointError> {
    Err(CheckpointError::Invalid(why))
}

/// An object identity `sha256:<64 lowercase hex>`, checked.
fn object_id(v: &Json, path: &str) -> Result<String, CheckpointError> {
    let s = json::as_str(v, path)?;
    if !is_digest(s, "sha256:") {
        return invalid("an object identity is not sha256: and 64 lowercase hex digits");
    }
    Ok(s.to_string())
}

/// The archive path of object `id` (`sha256:<hex>`) of the checkpoint of snapshot `snap`:
/// `checkpoints/<snap>/objects/sha256/<hex[..2]>/<hex>`.
pub fn object_path(snap: &str, id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    let shard = hex.get(..2).unwrap_or_default();
    alloc::format!("checkpoints/{snap}/objects/sha256/{shard}/{hex}")
}

/// A portable member id (`volume_id`, `device_id`, `layer_id` of a disk generation, an owned
/// `mount_id`): 1–128 bytes of ASCII letters, digits, `_` and `-`.
pub fn is_member_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Parses `bytes` to a tree after the size bound.
fn tree(bytes: &[u8]) -> Result<Json, CheckpointError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(CheckpointError::TooLarge(bytes.len() as u64));
    }
    Ok(json::parse(bytes)?)
}

/// The canonical bytes of `tree` must be `bytes`.
fn canonical(tree: &Json, bytes: &[u8]) -> Result<(), CheckpointError> {
    let mut out = Vec::with_capacity(bytes.len());
    json::write(tree, KeyOrder::Utf16, &mut out);
    if out != bytes {
        return Err(CheckpointError::NotCanonical);
    }
    Ok(())
}

/// One layer of a disk generation (`DiskLayerRef`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskLayerRef {
    /// A portable member id; the file is `layers/<layer_id>.<format>`.
    pub layer_id: String,
    /// `raw` or `qcow2`.
    pub format: String,
    /// Guest-visible size.
    pub virtual_size: u64,
    /// The file's exact length.
    pub file_size: u64,
    /// The layer before it.
    pub predecessor: Option<String>,
    /// `blake3:<hex>` of the `microsandbox.checkpoint-file/1` Merkle tree, when recorded.
    pub integrity_root: Option<String>,
}

impl DiskLayerRef {
    /// Parses one layer reference (its shape only; the chain rules belong to the generation).
    pub(crate) fn from_json(v: &Json, path: &str) -> Result<DiskLayerRef, JsonError> {
        let mut f = Fields::of(v, path)?;
        let layer = DiskLayerRef {
            layer_id: f.str("layer_id")?.to_string(),
            format: f.str("format")?.to_string(),
            virtual_size: f.u64("virtual_size")?,
            file_size: f.u64("file_size")?,
            // Serialised even when `None`: a missing key is not the canonical form.
            predecessor: f.str_or_null("predecessor")?.map(str::to_string),
            integrity_root: f.str_or_null("integrity_root")?.map(str::to_string),
        };
        f.done()?;
        Ok(layer)
    }

    /// `<layer_id>.<format>`.
    pub fn file_name(&self) -> String {
        alloc::format!("{}.{}", self.layer_id, self.format)
    }
}

/// A sealed disk generation (`DiskGenerationManifest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskGeneration {
    /// The logical volume.
    pub volume_id: String,
    /// The guest block device (default `vdb`).
    pub device_id: String,
    /// The generation number (non-zero).
    pub generation: u64,
    /// Oldest first.
    pub layers: Vec<DiskLayerRef>,
    /// The last layer's id.
    pub head: String,
    /// The checkpoint epoch.
    pub pause_generation: u64,
}

impl DiskGeneration {
    /// Parses a disk generation value (also found inside an owned-volume inventory).
    pub(crate) fn from_json(v: &Json, path: &str) -> Result<DiskGeneration, CheckpointError> {
        let mut f = Fields::of(v, path)?;
        if f.str("schema")? != "microsandbox.disk-generation/1" {
            return invalid("unsupported disk generation schema");
        }
        let volume_id = f.str("volume_id")?.to_string();
        let device_id = match f.opt("device_id") {
            None => "vdb".to_string(),
            Some(Json::Str(s)) if s == "vdb" => return Err(CheckpointError::NotCanonical),
            Some(d) => json::as_str(d, "device_id")?.to_string(),
        };
        let generation = f.u64("generation")?;
        let layers = f
            .arr("layers")?
            .iter()
            .map(|l| DiskLayerRef::from_json(l, "layers[]"))
            .collect::<Result<Vec<_>, _>>()?;
        let head = f.str("head")?.to_string();
        let pause_generation = f.u64("pause_generation")?;
        f.done()?;
        let d = DiskGeneration { volume_id, device_id, generation, layers, head, pause_generation };
        d.validate()?;
        Ok(d)
    }

    /// Parses and checks an object holding a disk generation.
    pub fn parse(bytes: &[u8]) -> Result<DiskGeneration, CheckpointError> {
        let t = tree(bytes)?;
        let d = DiskGeneration::from_json(&t, "")?;
        canonical(&t, bytes)?;
        Ok(d)
    }

    fn validate(&self) -> Result<(), CheckpointError> {
        if !is_member_id(&self.volume_id)
            || !is_member_id(&self.device_id)
            || self.generation == 0
            || self.layers.is_empty()
        {
            return invalid("disk generation has invalid identity, generation, or layers");
        }
        if self.layers.len() > MAX_DISK_LAYERS {
            return invalid("disk generation exceeds 256 layers");
        }
        if self.layers.last().map(|l| l.layer_id.as_str()) != Some(self.head.as_str()) {
            return invalid("disk head does not name the final layer");
        }
        let mut previous: Option<&DiskLayerRef> = None;
        for l in &self.layers {
            if !is_member_id(&l.layer_id) || l.virtual_size == 0 || l.file_size == 0 {
                return invalid("disk layer has invalid identity or zero virtual size");
            }
            if l.integrity_root.as_deref().is_some_and(|r| !is_digest(r, "blake3:")) {
                return invalid("disk layer integrity is not blake3: and 64 lowercase hex digits");
            }
            let chained = match (previous, l.format.as_str(), l.predecessor.as_deref()) {
                (None, "raw" | "qcow2", None) => true,
                (Some(p), "qcow2", Some(b)) => b == p.layer_id,
                _ => false,
            };
            if !chained {
                return invalid("disk layer closure is not a valid oldest-first chain");
            }
            previous = Some(l);
        }
        Ok(())
    }
}

/// Where one memory range's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryExtent {
    /// Guest-physical start.
    pub start: u64,
    /// Non-zero length.
    pub length: u64,
    /// `Some((object, offset))` for bytes in an object, `None` for a zero range.
    pub object: Option<(String, u64)>,
}

/// A memory manifest (`microsandbox.memory/1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryManifest {
    /// Guest architecture.
    pub architecture: String,
    /// The checkpoint epoch.
    pub pause_generation: u64,
    /// Sorted, non-overlapping.
    pub extents: Vec<MemoryExtent>,
}

impl MemoryManifest {
    /// Parses and checks a memory manifest object.
    pub fn parse(bytes: &[u8]) -> Result<MemoryManifest, CheckpointError> {
        let t = tree(bytes)?;
        let mut f = Fields::of(&t, "")?;
        if f.str("schema")? != "microsandbox.memory/1" {
            return invalid("unsupported memory manifest schema");
        }
        let architecture = f.str("architecture")?.to_string();
        let guest_page_size = f.u64("guest_page_size")?;
        f.u64("topology_generation")?;
        let generation = f.u64("generation")?;
        json::variant(f.req("capture_mode")?, "capture_mode", &["full", "incremental"])?;
        let pause_generation = f.u64("pause_generation")?;
        let items = f.arr("extents")?;
        if items.len() > MAX_MEMORY_EXTENTS {
            return invalid("memory extent count exceeds the format bound");
        }
        let mut extents = Vec::with_capacity(items.len());
        for e in items {
            let mut ef = Fields::of(e, "extents[]")?;
            let start = ef.u64("start")?;
            let length = ef.u64("length")?;
            let content = ef.req("content")?;
            ef.done()?;
            let mut cf = Fields::of(content, "extents[].content")?;
            let object = match json::variant(cf.req("kind")?, "extents[].content.kind", &["object", "zero"])?
            {
                0 => Some((object_id(cf.req("object")?, "object")?, cf.u64("object_offset")?)),
                _ => None,
            };
            cf.done()?;
            extents.push(MemoryExtent { start, length, object });
        }
        f.done()?;
        if architecture.is_empty() || guest_page_size == 0 || generation == 0 {
            return invalid("memory manifest has empty architecture or zero geometry");
        }
        let mut previous_end = 0u64;
        for (i, e) in extents.iter().enumerate() {
            if e.length == 0 {
                return invalid("memory extent has zero length");
            }
            let Some(end) = e.start.checked_add(e.length) else {
                return invalid("memory extent overflows the address space");
            };
            if i != 0 && e.start < previous_end {
                return invalid("memory extents overlap or are unsorted");
            }
            if e.object.as_ref().is_some_and(|(_, off)| off.checked_add(e.length).is_none()) {
                return invalid("memory object slice overflows");
            }
            previous_end = end;
        }
        canonical(&t, bytes)?;
        Ok(MemoryManifest { architecture, pause_generation, extents })
    }
}

/// A device's state object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceState {
    /// Virtio device type.
    pub device_type: u32,
    /// Stable device id.
    pub device_id: String,
    /// The state object.
    pub state: String,
}

/// A checkpoint root (`checkpoints/<snap_id>/checkpoint.json`, `microsandbox.checkpoint/1`).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointManifest {
    /// The checkpoint id (the descriptor's `state.checkpoint_id`).
    pub checkpoint_id: String,
    /// `full-snapshot`, `park` or `transparent-transfer`.
    pub capture_intent: String,
    /// Guest architecture.
    pub architecture: String,
    /// The epoch every part shares.
    pub pause_generation: u64,
    /// The execution-state object.
    pub execution_state: String,
    /// The memory-manifest object.
    pub memory: String,
    /// Disk-generation objects.
    pub disks: Vec<String>,
    /// Owned volumes (empty when absent).
    pub owned_volumes: Vec<OwnedVolume>,
    /// Device-state objects.
    pub devices: Vec<DeviceState>,
}

impl CheckpointManifest {
    /// Parses and checks `checkpoint.json` bytes.
    pub fn parse(bytes: &[u8]) -> Result<CheckpointManifest, CheckpointError> {
        let t = tree(bytes)?;
        let mut f = Fields::of(&t, "")?;
        if f.str("schema")? != "microsandbox.checkpoint/1" {
            return invalid("unsupported checkpoint schema");
        }
        let checkpoint_id = f.str("checkpoint_id")?.to_string();
        let intents = ["full-snapshot", "park", "transparent-transfer"];
        let capture_intent = intents
            .get(json::variant(f.req("capture_intent")?, "capture_intent", &intents)?)
            .copied()
            .unwrap_or_default()
            .to_string();
        let architecture = f.str("architecture")?.to_string();
        let mut g = Fields::of(f.req("geometry")?, "geometry")?;
        let byte = |g: &mut Fields, k: &str| -> Result<u8, JsonError> {
            u8::try_from(g.u64(k)?).map_err(|_| json::wrong(k, "an unsigned 8-bit integer"))
        };
        let (vcpus, max_vcpus) = (byte(&mut g, "vcpus")?, byte(&mut g, "max_vcpus")?);
        let (memory_mib, max_memory_mib) = (g.u32("memory_mib")?, g.u32("max_memory_mib")?);
        g.done()?;
        let pause_generation = f.u64("pause_generation")?;
        let execution_state = object_id(f.req("execution_state")?, "execution_state")?;
        let memory = object_id(f.req("memory")?, "memory")?;
        let disks = f.arr("disks")?.iter().map(|d| object_id(d, "disks[]")).collect::<Result<Vec<_>, _>>()?;
        let owned_volumes = match f.opt("owned_volumes") {
            None => Vec::new(),
            Some(Json::Arr(items)) if items.is_empty() => return Err(CheckpointError::NotCanonical),
            Some(v) => owned::parse(v, "owned_volumes")?,
        };
        let mut devices = Vec::new();
        for d in f.arr("devices")? {
            let mut df = Fields::of(d, "devices[]")?;
            devices.push(DeviceState {
                device_type: df.u32("device_type")?,
                device_id: df.str("device_id")?.to_string(),
                state: object_id(df.req("state")?, "devices[].state")?,
            });
            df.done()?;
        }
        let mut resources: Vec<(&str, Vec<(&str, &str)>)> = Vec::new();
        for r in f.arr("resources")? {
            let mut rf = Fields::of(r, "resources[]")?;
            let id = rf.str("id")?;
            let kind = rf.str("kind")?;
            let treatment = json::variant(
                rf.req("treatment")?,
                "resources[].treatment",
                &["serialize", "reconnect", "reset", "reject"],
            )?;
            let mut binding = Vec::new();
            for (k, v) in rf.obj("binding")? {
                binding.push((k.as_str(), json::as_str(v, "resources[].binding")?));
            }
            rf.done()?;
            if id.is_empty() || kind.is_empty() || resources.iter().any(|(other, _)| *other == id) {
                return invalid("checkpoint contains an invalid or duplicate resource");
            }
            if treatment == 3 {
                return invalid("published checkpoint contains a rejected resource");
            }
            resources.push((id, binding));
        }
        let requires = f.arr("requires")?;
        let requires =
            requires.iter().map(|r| json::as_str(r, "requires[]")).collect::<Result<Vec<_>, _>>()?;
        f.done()?;

        if checkpoint_id.is_empty() || architecture.is_empty() {
            return invalid("checkpoint is missing identity or architecture");
        }
        if vcpus == 0 || vcpus > max_vcpus || memory_mib == 0 || memory_mib > max_memory_mib {
            return invalid("checkpoint has invalid construction geometry");
        }
        if disks.len() > MAX_COMPONENTS || devices.len() > MAX_COMPONENTS || resources.len() > MAX_COMPONENTS
        {
            return invalid("checkpoint component count exceeds the format bound");
        }
        for (i, d) in devices.iter().enumerate() {
            if devices.iter().take(i).any(|o| o.device_type == d.device_type && o.device_id == d.device_id) {
                return invalid("checkpoint contains a duplicate logical device");
            }
        }
        if requires.windows(2).any(|w| w.first() >= w.get(1)) {
            return invalid("checkpoint requires must be sorted and unique");
        }
        owned::check_resources(&owned_volumes, &resources)?;
        for v in &owned_volumes {
            if let owned::OwnedData::Disk(generation) = &v.data {
                if generation.pause_generation != pause_generation {
                    return invalid("owned disk belongs to another checkpoint epoch");
                }
            }
        }
        canonical(&t, bytes)?;
        Ok(CheckpointManifest {
            checkpoint_id,
            capture_intent,
            architecture,
            pause_generation,
            execution_state,
            memory,
            disks,
            owned_volumes,
            devices,
        })
    }

    /// The objects the root names directly (execution state, memory manifest, disk generations,
    /// device states), with repeats.
    pub fn direct_objects(&self) -> impl Iterator<Item = &str> {
        [self.execution_state.as_str(), self.memory.as_str()]
            .into_iter()
            .chain(self.disks.iter().map(String::as_str))
            .chain(self.devices.iter().map(|d| d.state.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBJ: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000001";

    fn root() -> String {
        alloc::format!(
            r#"{{"architecture":"x86_64","capture_intent":"full-snapshot","checkpoint_id":"ck","devices":[],"disks":[],"execution_state":"{OBJ}","geometry":{{"max_memory_mib":512,"max_vcpus":2,"memory_mib":256,"vcpus":1}},"memory":"{OBJ}","pause_generation":1,"requires":[],"resources":[],"schema":"microsandbox.checkpoint/1"}}"#
        )
    }

    fn code(bytes: &str) -> &'static str {
        CheckpointManifest::parse(bytes.as_bytes()).map(|_| "ok").unwrap_or_else(|e| e.code())
    }

    #[test]
    fn root_rules() {
        assert_eq!(code(&root()), "ok");
        assert_eq!(code(&root().replace("\"vcpus\":1", "\"vcpus\":3")), "checkpoint_invalid");
        assert_eq!(
            code(&root().replace("\"requires\":[]", "\"requires\":[],\"x\":1")),
            "checkpoint_unknown_field"
        );
        assert_eq!(code(&root().replacen("{", "{ ", 1)), "checkpoint_not_canonical");
        assert_eq!(
            code(&root().replace("\"memory\":\"", "\"owned_volumes\":[],\"memory\":\"")),
            "checkpoint_not_canonical"
        );
        assert_eq!(code(&root().replace("full-snapshot", "nap")), "checkpoint_wrong_type");
        assert_eq!(
            code(&root().replace("\"memory\":\"sha256:0", "\"memory\":\"sha256:X")),
            "checkpoint_invalid"
        );
    }

    #[test]
    fn memory_and_disk_rules() {
        let mem = |extents: &str| {
            alloc::format!(
                r#"{{"architecture":"x86_64","capture_mode":"full","extents":[{extents}],"generation":1,"guest_page_size":4096,"pause_generation":1,"schema":"microsandbox.memory/1","topology_generation":1}}"#
            )
        };
        let obj = alloc::format!(
            r#"{{"content":{{"kind":"object","object":"{OBJ}","object_offset":0}},"length":4096,"start":0}}"#
        );
        let zero = r#"{"content":{"kind":"zero"},"length":4096,"start":0}"#;
        let m = MemoryManifest::parse(mem(&obj).as_bytes()).unwrap();
        assert_eq!(m.extents[0].object, Some((OBJ.to_string(), 0)));
        let overlap = alloc::format!("{obj},{zero}");
        assert_eq!(MemoryManifest::parse(mem(&overlap).as_bytes()).unwrap_err().code(), "checkpoint_invalid");
        let disk = |layers: &str| {
            alloc::format!(
                r#"{{"generation":1,"head":"b","layers":[{layers}],"pause_generation":1,"schema":"microsandbox.disk-generation/1","volume_id":"v"}}"#
            )
        };
        let a = r#"{"file_size":10,"format":"raw","integrity_root":null,"layer_id":"a","predecessor":null,"virtual_size":10}"#;
        let b = r#"{"file_size":10,"format":"qcow2","integrity_root":null,"layer_id":"b","predecessor":"a","virtual_size":10}"#;
        let d = DiskGeneration::parse(disk(&alloc::format!("{a},{b}")).as_bytes()).unwrap();
        assert_eq!(d.device_id, "vdb");
        let raw_successor = b.replace("qcow2", "raw");
        assert_eq!(
            DiskGeneration::parse(disk(&alloc::format!("{a},{raw_successor}")).as_bytes())
                .unwrap_err()
                .code(),
            "checkpoint_invalid"
        );
        let default_device = disk(&alloc::format!("{a},{b}"))
            .replace("\"generation\"", "\"device_id\":\"vdb\",\"generation\"");
        assert_eq!(
            DiskGeneration::parse(default_device.as_bytes()).unwrap_err().code(),
            "checkpoint_not_canonical"
        );
    }
}
