//! A test-side writer of microsandbox 0.7 `.msb` archives with checkpoint-scope snapshots, built
//! from a reading of 0.7.13's writer (`write_archive_entries`, `build_archive_inventory`,
//! `checkpoint_archive_members`, `owned::members`): real 0.7.13 needs a running VM to capture a
//! checkpoint, so there is no reference archive of one.
//!
//! Everything is computed here from the format's definitions, independently of the core: the
//! canonical JSON (keys sorted, compact), SHA-256 object ids, the `msb-archive-member-blake3-v1`
//! transport digest, and the `microsandbox.checkpoint-file/1` Merkle root of a disk layer of at
//! most one 64 KiB leaf. [`Closure::members`] lists the archive's members; tests edit them and
//! [`seal`] writes the inventory that binds them as they are.

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use snapbundle_core::{Error, Limits, NullSink, Report, Validator};

use crate::builder::{hex, write_members, TarMember};

/// The checkpoint snapshot's id.
pub const SNAP: &str = "snap_c0000000000000000000000000000001";
/// A file-scope snapshot's id.
pub const FILE_SNAP: &str = "snap_f0000000000000000000000000000001";
/// The checkpoint id.
pub const CHECKPOINT_ID: &str = "ck_test";
/// The owned directory volume's guest path.
pub const GUEST: &str = "/cache";

/// Compact JSON with object keys sorted (bytes; every key here is ASCII, so this is also the
/// UTF-16 order of the canonical form).
pub fn canonical(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), canonical(&map[*k])))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// `sha256:<hex>`.
pub fn object_id(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// The archive path of object `id` of snapshot `snap`.
pub fn object_path(snap: &str, id: &str) -> String {
    let h = id.trim_start_matches("sha256:");
    format!("checkpoints/{snap}/objects/sha256/{}/{h}", &h[..2])
}

/// `microsandbox.checkpoint-file/1` of `content`, straight from the definition (the shared
/// spec's Integrity section): 64 KiB leaves, the last zero-padded, their count rounded up to a
/// power of two with zero leaves, pairwise parents, then the root binding size and height.
pub fn checkpoint_file_root(content: &[u8]) -> String {
    const LEAF: usize = 65536;
    let domain = |part: &str| {
        let mut h = blake3::Hasher::new();
        h.update(b"microsandbox.checkpoint-file/1\0");
        h.update(part.as_bytes());
        h.update(b"\0");
        h
    };
    let count = content.len().div_ceil(LEAF).max(1).next_power_of_two();
    let mut level: Vec<[u8; 32]> = (0..count)
        .map(|i| {
            let mut leaf = vec![0u8; LEAF];
            let part = content.get(i * LEAF..).unwrap_or(&[]);
            let part = &part[..part.len().min(LEAF)];
            leaf[..part.len()].copy_from_slice(part);
            *domain("leaf").update(&leaf).finalize().as_bytes()
        })
        .collect();
    let mut height = 0u32;
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|p| *domain("parent").update(&p[0]).update(&p[1]).finalize().as_bytes())
            .collect();
        height += 1;
    }
    let mut h = domain("root");
    h.update(&(content.len() as u64).to_le_bytes());
    h.update(&(LEAF as u32).to_le_bytes());
    h.update(&height.to_le_bytes());
    h.update(&level[0]);
    format!("blake3:{}", h.finalize().to_hex())
}

/// `msb-archive-member-blake3-v1` of a dense member.
pub fn transport(kind: &str, path: &str, data: &[u8]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"msb-archive-member-blake3-v1\0");
    for text in [kind, path] {
        h.update(&(text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    h.update(&(data.len() as u64).to_le_bytes());
    h.update(&(data.len() as u64).to_le_bytes());
    h.update(&0u64.to_le_bytes());
    h.update(data);
    format!("blake3:{}", h.finalize().to_hex())
}

/// 0.7.13 `archive_member_kind`.
pub fn kind_of(path: &str) -> &'static str {
    let c: Vec<&str> = path.split('/').collect();
    match c.as_slice() {
        ["snapshots" | "checkpoints", _, "owned", _, "directory.bin"]
        | ["snapshots" | "checkpoints", _, "owned", _, "files", _] => "owned-directory-payload",
        ["snapshots", _, "layers", _] => "owned-disk-layer",
        ["snapshots", _, "metadata.json"] => "snapshot-metadata",
        ["snapshots", _, _] => "snapshot-descriptor",
        ["layers", _] => "file-payload",
        ["checkpoints", _, "checkpoint.json"] => "checkpoint-root",
        ["checkpoints", _, "objects", "sha256", _, _] => "checkpoint-object",
        ["checkpoints", _, "layers", _] => "checkpoint-disk-layer",
        _ => panic!("no kind for {path}"),
    }
}

/// One member to be sealed: its path, bytes and inventory fields.
#[derive(Debug, Clone)]
pub struct Member {
    /// The path.
    pub path: String,
    /// The bytes.
    pub data: Vec<u8>,
    /// `owner_snapshot`.
    pub owner: Option<String>,
    /// The recorded kind (normally [`kind_of`] the path).
    pub kind: String,
    /// The recorded integrity JSON (`null` for closure members).
    pub integrity: String,
    /// Whether the tar carries it (`false`: an omitted dependency, listed but not written).
    pub included: bool,
}

impl Member {
    /// A member of `owner`'s closure at `path` (its kind from the path, no recorded integrity).
    pub fn closure(path: String, data: Vec<u8>, owner: &str) -> Member {
        let kind = kind_of(&path).to_string();
        Member { path, data, owner: Some(owner.to_string()), kind, integrity: "null".into(), included: true }
    }
}

/// The parts of a checkpoint snapshot, before they are serialised.
#[derive(Debug, Clone)]
pub struct Closure {
    /// The memory extent object's bytes.
    pub memory_bytes: Vec<u8>,
    /// The execution-state object's bytes.
    pub execution: Vec<u8>,
    /// The device-state object's bytes.
    pub device: Vec<u8>,
    /// The checkpoint disk layer's bytes (raw).
    pub layer: Vec<u8>,
    /// The owned directory volume's `directory.bin`.
    pub directory: Vec<u8>,
    /// Its one content file.
    pub file: Vec<u8>,
}

impl Default for Closure {
    fn default() -> Self {
        Closure {
            memory_bytes: (0..8192u32).map(|i| (i % 251) as u8).collect(),
            execution: b"vcpu registers".to_vec(),
            device: b"virtio-blk state".to_vec(),
            layer: vec![7u8; 4096],
            directory: b"owned namespace".to_vec(),
            file: b"hello from /cache".to_vec(),
        }
    }
}

/// 0.7.13 `owned_volume_mount_id`.
pub fn mount_id(guest: &str) -> String {
    let slug: String = guest
        .trim_start_matches('/')
        .chars()
        .take(11)
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect();
    let tail = hex(&Sha256::digest(guest.as_bytes())[..4]);
    if slug.is_empty() {
        tail
    } else {
        format!("{slug}_{tail}")
    }
}

impl Closure {
    /// The owned-volume inventory (a directory volume at [`GUEST`]).
    pub fn owned_volumes(&self) -> Value {
        json!([{
            "mount_id": mount_id(GUEST),
            "mount": {
                "guest": GUEST,
                "storage": {"kind": "directory", "quota_mib": null},
                "options": {},
                "stat_virtualization": "strict",
                "host_permissions": "private"
            },
            "data": {
                "kind": "directory",
                "descriptor": {"digest": hex(&Sha256::digest(&self.directory)), "bytes": self.directory.len()},
                "files": [{"digest": hex(&Sha256::digest(&self.file)), "bytes": self.file.len()}]
            }
        }])
    }

    /// The memory manifest's bytes: the extent object, then a zero range.
    pub fn memory_manifest(&self) -> Vec<u8> {
        let len = self.memory_bytes.len() as u64;
        canonical(&json!({
            "schema": "microsandbox.memory/1", "architecture": "x86_64", "guest_page_size": 4096,
            "topology_generation": 1, "generation": 1, "capture_mode": "full", "pause_generation": 7,
            "extents": [
                {"start": 0, "length": len, "content": {"kind": "object", "object": object_id(&self.memory_bytes), "object_offset": 0}},
                {"start": len, "length": 4096, "content": {"kind": "zero"}}
            ]
        }))
        .into_bytes()
    }

    /// The disk generation's bytes (one raw layer with its integrity root).
    pub fn disk_manifest(&self) -> Vec<u8> {
        let n = self.layer.len();
        canonical(&json!({
            "schema": "microsandbox.disk-generation/1", "volume_id": "root", "generation": 1,
            "head": "base", "pause_generation": 7,
            "layers": [{"layer_id": "base", "format": "raw", "virtual_size": n, "file_size": n,
                        "predecessor": null, "integrity_root": checkpoint_file_root(&self.layer)}]
        }))
        .into_bytes()
    }

    /// `checkpoint.json`.
    pub fn root(&self) -> Vec<u8> {
        canonical(&json!({
            "schema": "microsandbox.checkpoint/1", "checkpoint_id": CHECKPOINT_ID,
            "capture_intent": "full-snapshot", "architecture": "x86_64",
            "geometry": {"vcpus": 1, "max_vcpus": 2, "memory_mib": 256, "max_memory_mib": 512},
            "pause_generation": 7,
            "execution_state": object_id(&self.execution),
            "memory": object_id(&self.memory_manifest()),
            "disks": [object_id(&self.disk_manifest())],
            "owned_volumes": self.owned_volumes(),
            "devices": [{"device_type": 2, "device_id": "vda", "state": object_id(&self.device)}],
            "resources": [{"id": "virtio_fs1", "kind": "filesystem", "treatment": "serialize",
                           "binding": {"role": "owned_directory", "guest_tag": mount_id(GUEST)}}],
            "requires": []
        }))
        .into_bytes()
    }

    /// The checkpoint snapshot's `snapshot.json`.
    pub fn descriptor(&self) -> Vec<u8> {
        canonical(&json!({
            "schema": "microsandbox.snapshot/1", "snapshot_id": SNAP, "scope": "checkpoint",
            "state": {"kind": "checkpoint", "checkpoint_id": CHECKPOINT_ID,
                      "checkpoint_root": object_id(&self.root()),
                      "restore_intents": ["clone", "resume"], "requirements_summary": {}},
            "capture": {"created_at": "2026-05-01T12:00:00.000000000Z", "source_lineage": null,
                        "source_checkpoint": CHECKPOINT_ID, "consistency": "application-consistent"},
            "image": {"reference": "docker.io/library/alpine:3.20",
                      "manifest_digest": format!("sha256:{}", "0".repeat(63) + "1")},
            "root_disk": {"layout": "managed"}, "parent": null,
            "requires": ["microsandbox.owned-volumes"],
            "extensions": {"microsandbox.owned-volumes": self.owned_volumes()}
        }))
        .into_bytes()
    }

    /// The members 0.7.13 writes for the snapshot: its descriptor, then its closure sorted by
    /// path (`checkpoint.json`, `layers/`, `objects/`, `owned/`).
    pub fn members(&self) -> Vec<Member> {
        let descriptor = self.descriptor();
        let mut d = Member::closure(format!("snapshots/{SNAP}/snapshot.json"), descriptor.clone(), SNAP);
        d.integrity = format!("{{\"algorithm\":\"sha256\",\"digest\":\"{}\"}}", object_id(&descriptor));
        let mut closure = vec![
            Member::closure(format!("checkpoints/{SNAP}/checkpoint.json"), self.root(), SNAP),
            Member::closure(format!("checkpoints/{SNAP}/layers/base.raw"), self.layer.clone(), SNAP),
        ];
        for bytes in [
            &self.execution,
            &self.memory_bytes,
            &self.device,
            &self.memory_manifest(),
            &self.disk_manifest(),
        ] {
            closure.push(Member::closure(object_path(SNAP, &object_id(bytes)), bytes.clone(), SNAP));
        }
        let owned = format!("checkpoints/{SNAP}/owned/{}", mount_id(GUEST));
        closure.push(Member::closure(format!("{owned}/directory.bin"), self.directory.clone(), SNAP));
        closure.push(Member::closure(
            format!("{owned}/files/{}", hex(&Sha256::digest(&self.file))),
            self.file.clone(),
            SNAP,
        ));
        closure.sort_by(|a, b| a.path.cmp(&b.path));
        std::iter::once(d).chain(closure).collect()
    }
}

/// The member at `path`.
pub fn find<'a>(ms: &'a mut [Member], path: &str) -> &'a mut Member {
    ms.iter_mut().find(|m| m.path == path).unwrap_or_else(|| panic!("no member {path}"))
}

/// The members written as a plain tar, then `archive.json` listing them as they are (head
/// `head`); `dependencies`, when given, is the `msb-snapshot-dependencies-v1` extension value and
/// makes the archive dependent.
pub fn seal(ms: &[Member], head: &str, dependencies: Option<Value>) -> Vec<u8> {
    let mut entries: Vec<&Member> = ms.iter().collect();
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    let descriptors: Vec<&Member> =
        entries.iter().copied().filter(|m| m.kind == "snapshot-descriptor").collect();
    let members: Vec<String> = descriptors
        .iter()
        .map(|m| {
            let id = m.path.split('/').nth(1).unwrap_or_default();
            format!(
                "{{\"snapshot_id\":\"{id}\",\"descriptor_path\":\"{}\",\"descriptor_digest\":\"{}\"}}",
                m.path,
                object_id(&m.data)
            )
        })
        .collect();
    let rows: Vec<String> = entries
        .iter()
        .map(|m| {
            let owner = m.owner.as_ref().map_or("null".to_string(), |o| format!("\"{o}\""));
            let (encoded, transport) = if m.included {
                let t = transport(&m.kind, &m.path, &m.data);
                (m.data.len(), format!(",\"transport_integrity\":{{\"algorithm\":\"msb-archive-member-blake3-v1\",\"digest\":\"{t}\"}}"))
            } else {
                (0, String::new())
            };
            format!(
                "{{\"path\":\"{}\",\"owner_snapshot\":{owner},\"kind\":\"{}\",\"included\":{},\"encoded_size\":{encoded},\"apparent_size\":{},\"sparse_ranges\":[],\"integrity\":{}{transport}}}",
                m.path, m.kind, m.included, m.data.len(), m.integrity
            )
        })
        .collect();
    let encoded: usize = entries.iter().filter(|m| m.included).map(|m| m.data.len()).sum();
    let apparent: usize = entries.iter().map(|m| m.data.len()).sum();
    let (completeness, extensions, requires) = match &dependencies {
        None => ("boot-complete", "{}".to_string(), "[\"msb-archive-member-blake3-v1\"]"),
        Some(d) => (
            "dependent",
            format!("{{\"msb-snapshot-dependencies-v1\":{}}}", canonical(d)),
            "[\"msb-archive-member-blake3-v1\",\"msb-snapshot-dependencies-v1\"]",
        ),
    };
    let inventory = format!(
        "{{\"schema\":\"microsandbox.snapshot-archive/1\",\"head\":\"{head}\",\"completeness\":\"{completeness}\",\"members\":[{}],\"entries\":[{}],\"limits\":{{\"entry_count\":{},\"encoded_bytes\":{encoded},\"apparent_bytes\":{apparent}}},\"extensions\":{extensions},\"requires\":{requires}}}",
        members.join(","),
        rows.join(","),
        entries.len()
    );
    let mut tar: Vec<TarMember> = ms
        .iter()
        .filter(|m| m.included)
        .map(|m| TarMember { offset: 0, name: m.path.clone(), type_flag: b'0', data: m.data.clone() })
        .collect();
    tar.push(TarMember {
        offset: 0,
        name: "archive.json".into(),
        type_flag: b'0',
        data: inventory.into_bytes(),
    });
    write_members(&tar)
}

/// A valid checkpoint archive: [`Closure::default`]'s members, sealed.
pub fn checkpoint_archive() -> Vec<u8> {
    seal(&Closure::default().members(), SNAP, None)
}

/// A file-scope snapshot with one raw layer of `payload`, recorded with `virtual_size`.
pub fn file_snapshot(payload: &[u8], virtual_size: u64) -> Vec<Member> {
    let layer = "layer_f0000000000000000000000000000001";
    let descriptor = canonical(&json!({
        "schema": "microsandbox.snapshot/1", "snapshot_id": FILE_SNAP, "scope": "file",
        "state": {"kind": "file", "disk_format": "raw", "filesystem": "ext4", "virtual_size": virtual_size,
                  "head": layer, "layers": [{"layer_id": layer, "format": "raw", "virtual_size": virtual_size,
                  "backing": null, "payload": {"file_kind": "regular", "integrity": null}}]},
        "capture": {"created_at": "2026-05-01T12:00:00.000000000Z", "source_lineage": null,
                    "source_checkpoint": null, "consistency": "crash-consistent"},
        "image": {"reference": "docker.io/library/alpine:3.20",
                  "manifest_digest": format!("sha256:{}", "0".repeat(63) + "1")},
        "root_disk": {"layout": "managed"}, "parent": null, "requires": [], "extensions": {}
    }))
    .into_bytes();
    let mut d =
        Member::closure(format!("snapshots/{FILE_SNAP}/snapshot.json"), descriptor.clone(), FILE_SNAP);
    d.integrity = format!("{{\"algorithm\":\"sha256\",\"digest\":\"{}\"}}", object_id(&descriptor));
    let p = Member::closure(format!("layers/{layer}.raw"), payload.to_vec(), FILE_SNAP);
    vec![d, p]
}

/// [`file_snapshot`] of a 4 KiB payload with an owned disk volume mounted at `/data`: its disk
/// generation of one raw layer (`snapshots/<FILE_SNAP>/layers/data.raw`, `disk` bytes, recorded
/// with `file_size` and its `microsandbox.checkpoint-file/1` root) in the descriptor's
/// `microsandbox.owned-volumes` extension.
pub fn file_snapshot_with_owned_disk(disk: &[u8], file_size: u64) -> Vec<Member> {
    let mut ms = file_snapshot(&[1; 4096], 4096);
    let guest = "/data";
    let id = mount_id(guest);
    let capacity_mib = (disk.len() as u64).div_ceil(1 << 20).max(1);
    let volumes = json!([{
        "mount_id": id,
        "mount": {"guest": guest, "storage": {"kind": "disk", "capacity_mib": capacity_mib}, "options": {},
                  "stat_virtualization": "strict", "host_permissions": "private"},
        "data": {"kind": "disk", "generation": {
            "schema": "microsandbox.disk-generation/1", "volume_id": "data", "device_id": id, "generation": 1,
            "layers": [{"layer_id": "data", "format": "raw", "virtual_size": capacity_mib << 20,
                        "file_size": file_size, "predecessor": null,
                        "integrity_root": checkpoint_file_root(disk)}],
            "head": "data", "pause_generation": 0}}
    }]);
    let d = &mut ms[0];
    let mut descriptor: Value = serde_json::from_slice(&d.data).expect("descriptor JSON");
    descriptor["extensions"] = json!({ OWNED_VOLUMES: volumes });
    descriptor["requires"] = json!([OWNED_VOLUMES]);
    d.data = canonical(&descriptor).into_bytes();
    d.integrity = format!("{{\"algorithm\":\"sha256\",\"digest\":\"{}\"}}", object_id(&d.data));
    ms.push(Member::closure(format!("snapshots/{FILE_SNAP}/layers/data.raw"), disk.to_vec(), FILE_SNAP));
    ms
}

/// The descriptor extension of owned volumes.
const OWNED_VOLUMES: &str = "microsandbox.owned-volumes";

/// A small deterministic generator for chunk sizes.
pub struct XorShift(pub u64);

impl XorShift {
    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Validates `bytes` pushed in chunks of random sizes (1 byte to 64 KiB).
pub fn validate_chunked(bytes: &[u8], seed: u64) -> Result<Report, Error> {
    let mut rng = XorShift(seed | 1);
    let mut v = Validator::new(Limits::default());
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = match rng.next_u64() % 4 {
            0 => 1 + rng.next_u64() % 7,
            1 => 1 + rng.next_u64() % 600,
            _ => 1 + rng.next_u64() % 65536,
        } as usize;
        let (chunk, tail) = rest.split_at(n.min(rest.len()));
        v.push(chunk, &mut NullSink)?;
        rest = tail;
    }
    v.finish()
}
