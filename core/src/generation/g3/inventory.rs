//! `archive.json`: the G3 inventory (`microsandbox.snapshot-archive/1`), the last member of a
//! `.msb` archive. It lists every snapshot descriptor (`members`) and every file (`entries`) with
//! its kind, sizes, sparse map, integrity and transport digest.
//!
//! [`Inventory::parse`] does what 0.7.13's loader checks before it looks at the tar members: at
//! most 4 MiB; the schema's shape (unknown fields refused); canonical bytes (the file must equal the
//! compact serialization of the parsed value in declared field order, maps in byte order, no
//! trailing newline); the schema string; `completeness`; `requires` sorted and within the
//! allow-list; the `included: false` rules of dependent archives; `suggested_name`; `members`
//! strictly sorted with valid ids, lowercase digests and exact descriptor paths; the head listed;
//! entries strictly sorted by path bytes (so unique), each kind derived from its path and equal to
//! the recorded one; transport digests well formed (present when required); every descriptor entry
//! bound to its member's digest and every member to a descriptor entry; image entries unowned with
//! a `sha256`.
//!
//! Checks against the tar members (presence, sizes, sparse maps, transport digests, sha256 of
//! non-payload files, descriptor digests) need the stream: they belong to the generation's
//! `Layout` (see [`super`]).

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use super::descriptor::{self, Integrity};
use super::json::{self, Fields, Json, JsonError, KeyOrder};
use super::transport::ARCHIVE_MEMBER_BLAKE3_V1;

/// The only inventory schema this generation reads.
pub const SCHEMA: &str = "microsandbox.snapshot-archive/1";
/// The inventory's path in the archive.
pub const INVENTORY_PATH: &str = "archive.json";
/// Largest accepted `archive.json`.
pub const MAX_INVENTORY_BYTES: usize = 4 * 1024 * 1024;
/// The requirement and extension key of a dependent (`--since`) archive.
pub const DEPENDENCIES_V1: &str = "msb-snapshot-dependencies-v1";
/// The requirement of a snapshot whose guest clock is not synchronised.
pub const GUEST_CLOCK: &str = "microsandbox.guest-clock";
/// Most disk dependencies of a dependent archive.
pub const MAX_DISK_DEPENDENCIES: usize = 256;

/// Why an `archive.json` is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InventoryError {
    /// Larger than [`MAX_INVENTORY_BYTES`].
    TooLarge(u64),
    /// Not JSON, or not the schema's shape.
    Json(JsonError),
    /// A numeric `schema` of 1: the released 0.6.7 – 0.6.16 inventory (G2), not read here.
    ReleasedSchema,
    /// The bytes are not the compact serialization of their value.
    NotCanonical,
    /// `schema` is not [`SCHEMA`].
    Schema(String),
    /// `completeness` is neither `boot-complete` nor `dependent`.
    Completeness(String),
    /// `requires` is unsorted, repeats a key or names one outside the allow-list.
    Requires(String),
    /// The dependency rules of omitted (`included: false`) entries are broken.
    Dependencies(&'static str),
    /// `suggested_name` is empty, longer than 255 bytes or holds `/` or `\`.
    SuggestedName(String),
    /// A member's id, digest, path or order is wrong.
    Member(String),
    /// `head` is not a listed member.
    Head(String),
    /// Entries are not strictly sorted by path bytes (or repeat a path).
    EntryOrder(String),
    /// An entry's recorded kind is not the kind its path implies.
    Kind {
        /// The entry's path.
        path: String,
        /// The recorded kind.
        recorded: String,
    },
    /// A transport digest is missing where required, or malformed.
    Transport(String),
    /// A descriptor or image entry is not bound as required.
    Binding(String),
}

impl InventoryError {
    /// Stable identifier.
    pub fn code(&self) -> &'static str {
        match self {
            InventoryError::TooLarge(_) => "inventory_too_large",
            InventoryError::Json(e) => match e {
                JsonError::Syntax(_) => "inventory_parse",
                JsonError::DuplicateKey(_) => "inventory_duplicate_key",
                JsonError::UnknownField(_) => "inventory_unknown_field",
                JsonError::MissingField(_) => "inventory_missing_field",
                JsonError::WrongType { .. } | JsonError::UnknownVariant { .. } => "inventory_wrong_type",
            },
            InventoryError::ReleasedSchema => "inventory_released_schema",
            InventoryError::NotCanonical => "inventory_not_canonical",
            InventoryError::Schema(_) => "inventory_schema",
            InventoryError::Completeness(_) => "inventory_completeness",
            InventoryError::Requires(_) => "inventory_requires",
            InventoryError::Dependencies(_) => "inventory_dependencies",
            InventoryError::SuggestedName(_) => "inventory_suggested_name",
            InventoryError::Member(_) => "inventory_member",
            InventoryError::Head(_) => "inventory_head",
            InventoryError::EntryOrder(_) => "inventory_entry_order",
            InventoryError::Kind { .. } => "inventory_kind",
            InventoryError::Transport(_) => "inventory_transport",
            InventoryError::Binding(_) => "inventory_binding",
        }
    }
}

impl fmt::Display for InventoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("archive inventory: ")?;
        match self {
            InventoryError::TooLarge(n) => write!(f, "{n} bytes exceed the {MAX_INVENTORY_BYTES}-byte limit"),
            InventoryError::Json(e) => write!(f, "{e}"),
            InventoryError::ReleasedSchema => {
                f.write_str("schema 1 is the released 0.6.7 – 0.6.16 inventory, not supported here")
            }
            InventoryError::NotCanonical => {
                f.write_str("not canonical: the bytes are not the compact serialization of the inventory")
            }
            InventoryError::Schema(s) => write!(f, "unsupported schema '{}'", s.escape_debug()),
            InventoryError::Completeness(s) => write!(f, "unsupported completeness '{}'", s.escape_debug()),
            InventoryError::Requires(s) => {
                write!(f, "requires must be sorted, unique and supported ('{}')", s.escape_debug())
            }
            InventoryError::Dependencies(why) => f.write_str(why),
            InventoryError::SuggestedName(s) => write!(f, "invalid suggested_name '{}'", s.escape_debug()),
            InventoryError::Member(why) => write!(f, "invalid member: {why}"),
            InventoryError::Head(h) => write!(f, "head '{}' is not a listed member", h.escape_debug()),
            InventoryError::EntryOrder(p) => {
                write!(f, "entries are not strictly sorted by path (at '{}')", p.escape_debug())
            }
            InventoryError::Kind { path, recorded } => write!(
                f,
                "entry '{}' is recorded as '{}', not the kind its path implies",
                path.escape_debug(),
                recorded.escape_debug()
            ),
            InventoryError::Transport(p) => {
                write!(f, "entry '{}': missing or malformed transport integrity", p.escape_debug())
            }
            InventoryError::Binding(why) => f.write_str(why),
        }
    }
}

impl From<JsonError> for InventoryError {
    fn from(e: JsonError) -> Self {
        InventoryError::Json(e)
    }
}

/// What an inventory entry holds, derived from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// `snapshots/<id>/snapshot.json`.
    SnapshotDescriptor,
    /// `snapshots/<id>/metadata.json`.
    SnapshotMetadata,
    /// `layers/<file>` (or the released `files/<digest>/<file>`).
    FilePayload,
    /// `checkpoints/<id>/checkpoint.json`.
    CheckpointRoot,
    /// `checkpoints/<id>/objects/sha256/<xx>/<hex>`.
    CheckpointObject,
    /// `checkpoints/<id>/layers/<file>`.
    CheckpointDiskLayer,
    /// `snapshots|checkpoints/<id>/owned/<tag>/{directory.bin,files/<digest>}`.
    OwnedDirectoryPayload,
    /// `snapshots/<id>/layers/<file>`.
    OwnedDiskLayer,
    /// `images/manifests/<file>`.
    ImageMetadata,
    /// `images/<dir>/<file>`.
    ImageObject,
}

const KINDS: [(EntryKind, &str); 10] = [
    (EntryKind::SnapshotDescriptor, "snapshot-descriptor"),
    (EntryKind::SnapshotMetadata, "snapshot-metadata"),
    (EntryKind::FilePayload, "file-payload"),
    (EntryKind::CheckpointRoot, "checkpoint-root"),
    (EntryKind::CheckpointObject, "checkpoint-object"),
    (EntryKind::CheckpointDiskLayer, "checkpoint-disk-layer"),
    (EntryKind::OwnedDirectoryPayload, "owned-directory-payload"),
    (EntryKind::OwnedDiskLayer, "owned-disk-layer"),
    (EntryKind::ImageMetadata, "image-metadata"),
    (EntryKind::ImageObject, "image-object"),
];

impl EntryKind {
    /// The inventory's spelling.
    pub fn as_str(&self) -> &'static str {
        KINDS.iter().find(|(k, _)| k == self).map(|(_, s)| *s).unwrap_or_default()
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<EntryKind> {
        KINDS.iter().find(|(_, n)| *n == s).map(|(k, _)| *k)
    }

    /// The kind a member path implies in a G3 archive (0.7.13's `archive_member_kind`), `None`
    /// for paths no entry may have (`archive.json` itself, legacy and unknown shapes).
    pub fn of_path(path: &str) -> Option<EntryKind> {
        let c: Vec<&str> = path.split('/').collect();
        Some(match c.as_slice() {
            ["snapshots" | "checkpoints", _, "owned", _, "directory.bin"]
            | ["snapshots" | "checkpoints", _, "owned", _, "files", _] => EntryKind::OwnedDirectoryPayload,
            ["snapshots", _, "layers", _] => EntryKind::OwnedDiskLayer,
            ["snapshots", _, "metadata.json"] => EntryKind::SnapshotMetadata,
            ["snapshots", _, _] => EntryKind::SnapshotDescriptor,
            ["layers", _] | ["files", _, _] => EntryKind::FilePayload,
            ["checkpoints", _, "checkpoint.json"] => EntryKind::CheckpointRoot,
            ["checkpoints", _, "objects", "sha256", _, _] => EntryKind::CheckpointObject,
            ["checkpoints", _, "layers", _] => EntryKind::CheckpointDiskLayer,
            ["images" | "cache", "manifests", _] => EntryKind::ImageMetadata,
            ["images" | "cache", _, _] => EntryKind::ImageObject,
            _ => return None,
        })
    }
}

/// One snapshot of the archive (`members[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// `snap_` + 32 lowercase hex digits.
    pub snapshot_id: String,
    /// `snapshots/<snapshot_id>/snapshot.json`.
    pub descriptor_path: String,
    /// The descriptor digest `sha256:<hex>` its `snapshot.json` must have.
    pub descriptor_digest: String,
}

/// One file of the archive (`entries[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The member path.
    pub path: String,
    /// The snapshot it belongs to (`None` for image files).
    pub owner_snapshot: Option<String>,
    /// Its kind (equal to [`EntryKind::of_path`] of `path`).
    pub kind: EntryKind,
    /// Whether the tar holds it (`false`: a dependency the base archive provides).
    pub included: bool,
    /// Stored bytes in the tar.
    pub encoded_size: u64,
    /// Logical size.
    pub apparent_size: u64,
    /// The sparse map as stored (`(offset, len)`, terminator included), empty for dense members.
    pub sparse_ranges: Vec<(u64, u64)>,
    /// Recorded integrity.
    pub integrity: Option<Integrity>,
    /// `msb-archive-member-blake3-v1` digest (`blake3:<hex>`), when recorded.
    pub transport_digest: Option<String>,
    transport_algorithm: Option<String>,
}

/// Whether an archive carries all it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completeness {
    /// Everything is included.
    BootComplete,
    /// Some payloads are omitted and come from an exact base.
    Dependent,
}

/// A parsed and statically checked `archive.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    /// The head snapshot id.
    pub head: String,
    /// A group name suggestion.
    pub suggested_name: Option<String>,
    /// Completeness.
    pub completeness: Completeness,
    /// Snapshots, sorted by id.
    pub members: Vec<Member>,
    /// Files, sorted by path bytes.
    pub entries: Vec<Entry>,
    /// Requirements, sorted.
    pub requires: Vec<String>,
    limits: [u64; 3],
    extensions: Vec<(String, Json)>,
    completeness_text: String,
}

fn parse_entry(v: &Json) -> Result<(Entry, String), JsonError> {
    let mut f = Fields::of(v, "entries[]")?;
    let path = f.str("path")?.to_string();
    // `Option<String>` without a default: serde treats a missing key as `None`.
    let owner_snapshot = match f.opt("owner_snapshot") {
        None | Some(Json::Null) => None,
        Some(v) => Some(json::as_str(v, "entries[].owner_snapshot")?.to_string()),
    };
    let kind = f.str("kind")?.to_string();
    let included = f.bool("included")?;
    let encoded_size = f.u64("encoded_size")?;
    let apparent_size = f.u64("apparent_size")?;
    let mut sparse_ranges = Vec::new();
    for r in f.arr("sparse_ranges")? {
        match r {
            Json::Arr(pair) if pair.len() == 2 => {
                let off = json::as_u64(pair.first().unwrap_or(&Json::Null), "entries[].sparse_ranges[]")?;
                let len = json::as_u64(pair.get(1).unwrap_or(&Json::Null), "entries[].sparse_ranges[]")?;
                sparse_ranges.push((off, len));
            }
            _ => return Err(json::wrong("entries[].sparse_ranges[]", "an array of two unsigned integers")),
        }
    }
    let integrity = match f.req("integrity")? {
        Json::Null => None,
        v => Some(Integrity::parse(v, "entries[].integrity")?),
    };
    let (transport_algorithm, transport_digest) = match f.opt("transport_integrity") {
        None | Some(Json::Null) => (None, None),
        Some(v) => {
            let mut t = Fields::of(v, "entries[].transport_integrity")?;
            let a = t.str("algorithm")?.to_string();
            let d = t.str("digest")?.to_string();
            t.done()?;
            (Some(a), Some(d))
        }
    };
    f.done()?;
    let entry = Entry {
        path,
        owner_snapshot,
        // Placeholder until the kind is checked against the path (after the canonical check).
        kind: EntryKind::FilePayload,
        included,
        encoded_size,
        apparent_size,
        sparse_ranges,
        integrity,
        transport_digest,
        transport_algorithm,
    };
    Ok((entry, kind))
}

impl Entry {
    /// An included member as a writer records it: `transport_digest` is its
    /// `msb-archive-member-blake3-v1` digest ([`super::transport::TransportHasher`]) and
    /// `sparse_ranges` its stored sparse map, terminator included (empty for a regular member).
    #[allow(clippy::too_many_arguments)]
    pub fn included(
        path: String,
        owner_snapshot: Option<String>,
        kind: EntryKind,
        encoded_size: u64,
        apparent_size: u64,
        sparse_ranges: Vec<(u64, u64)>,
        integrity: Option<Integrity>,
        transport_digest: String,
    ) -> Entry {
        Entry {
            path,
            owner_snapshot,
            kind,
            included: true,
            encoded_size,
            apparent_size,
            sparse_ranges,
            integrity,
            transport_digest: Some(transport_digest),
            transport_algorithm: Some(ARCHIVE_MEMBER_BLAKE3_V1.to_string()),
        }
    }
}

fn str_json(s: &str) -> Json {
    Json::Str(s.to_string())
}

impl Inventory {
    /// Parses `archive.json` bytes and runs every check that needs no tar member.
    pub fn parse(bytes: &[u8]) -> Result<Inventory, InventoryError> {
        if bytes.len() > MAX_INVENTORY_BYTES {
            return Err(InventoryError::TooLarge(bytes.len() as u64));
        }
        let tree = json::parse(bytes)?;
        let mut f = Fields::of(&tree, "")?;
        let schema = f.req("schema")?;
        if *schema == Json::U64(1) {
            return Err(InventoryError::ReleasedSchema);
        }
        let schema = json::as_str(schema, "schema")?.to_string();
        let head = f.str("head")?.to_string();
        let suggested_name = match f.opt("suggested_name") {
            None | Some(Json::Null) => None,
            Some(v) => Some(json::as_str(v, "suggested_name")?.to_string()),
        };
        let completeness_text = f.str("completeness")?.to_string();
        let mut members = Vec::new();
        for m in f.arr("members")? {
            let mut mf = Fields::of(m, "members[]")?;
            members.push(Member {
                snapshot_id: mf.str("snapshot_id")?.to_string(),
                descriptor_path: mf.str("descriptor_path")?.to_string(),
                descriptor_digest: mf.str("descriptor_digest")?.to_string(),
            });
            mf.done()?;
        }
        let mut entries = Vec::new();
        let mut kinds = Vec::new();
        for e in f.arr("entries")? {
            let (entry, kind) = parse_entry(e)?;
            entries.push(entry);
            kinds.push(kind);
        }
        let mut lf = Fields::of(f.req("limits")?, "limits")?;
        let limits = [lf.u64("entry_count")?, lf.u64("encoded_bytes")?, lf.u64("apparent_bytes")?];
        lf.done()?;
        let extensions = f.obj("extensions")?.to_vec();
        let requires = f
            .arr("requires")?
            .iter()
            .map(|v| json::as_str(v, "requires[]").map(str::to_string))
            .collect::<Result<Vec<_>, _>>()?;
        f.done()?;

        let mut inv = Inventory {
            head,
            suggested_name,
            completeness: Completeness::BootComplete,
            members,
            entries,
            requires,
            limits,
            extensions,
            completeness_text,
        };
        if inv.canonical_bytes(&schema, &kinds) != bytes {
            return Err(InventoryError::NotCanonical);
        }
        inv.validate(&schema, &kinds)?;
        Ok(inv)
    }

    /// The canonical `archive.json` of a boot-complete archive (what a writer puts last): the
    /// `members` and `entries` sorted here, the limits summed, `requires` the transport digest,
    /// and `extensions` given as (key, JSON text). The bytes pass [`Inventory::parse`] before
    /// they are returned.
    pub fn write(
        head: &str,
        suggested_name: Option<&str>,
        mut members: Vec<Member>,
        mut entries: Vec<Entry>,
        extensions: &[(&str, &[u8])],
    ) -> Result<Vec<u8>, InventoryError> {
        members.sort_by(|a, b| a.snapshot_id.cmp(&b.snapshot_id));
        entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        let mut ext = Vec::with_capacity(extensions.len());
        for (key, text) in extensions {
            ext.push((key.to_string(), json::parse(text)?));
        }
        ext.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let sum = |f: fn(&Entry) -> u64| entries.iter().fold(0u64, |acc, e| acc.saturating_add(f(e)));
        let limits = [entries.len() as u64, sum(|e| e.encoded_size), sum(|e| e.apparent_size)];
        let kinds: Vec<String> = entries.iter().map(|e| e.kind.as_str().to_string()).collect();
        let inventory = Inventory {
            head: head.to_string(),
            suggested_name: suggested_name.map(str::to_string),
            completeness: Completeness::BootComplete,
            members,
            entries,
            requires: alloc::vec![ARCHIVE_MEMBER_BLAKE3_V1.to_string()],
            limits,
            extensions: ext,
            completeness_text: "boot-complete".to_string(),
        };
        let bytes = inventory.canonical_bytes(SCHEMA, &kinds);
        Inventory::parse(&bytes)?;
        Ok(bytes)
    }

    /// The value of the extension `key`, as canonical JSON text.
    pub fn extension(&self, key: &str) -> Option<Vec<u8>> {
        let (_, value) = self.extensions.iter().find(|(k, _)| k == key)?;
        let mut out = Vec::new();
        json::write(value, KeyOrder::Bytes, &mut out);
        Some(out)
    }

    /// The compact serialization in declared field order (what the file's bytes must be).
    fn canonical_bytes(&self, schema: &str, kinds: &[String]) -> Vec<u8> {
        let mut out = Vec::new();
        let put = |out: &mut Vec<u8>, first: bool, key: &str| {
            if !first {
                out.push(b',');
            }
            json::write_str(key, out);
            out.push(b':');
        };
        out.push(b'{');
        put(&mut out, true, "schema");
        json::write_str(schema, &mut out);
        put(&mut out, false, "head");
        json::write_str(&self.head, &mut out);
        if let Some(name) = &self.suggested_name {
            put(&mut out, false, "suggested_name");
            json::write_str(name, &mut out);
        }
        put(&mut out, false, "completeness");
        json::write_str(&self.completeness_text, &mut out);
        put(&mut out, false, "members");
        out.push(b'[');
        for (i, m) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let (a, b, c) =
                (str_json(&m.snapshot_id), str_json(&m.descriptor_path), str_json(&m.descriptor_digest));
            let fields = [("snapshot_id", &a), ("descriptor_path", &b), ("descriptor_digest", &c)];
            json::write_entries(fields.into_iter(), KeyOrder::Bytes, &mut out);
        }
        out.push(b']');
        put(&mut out, false, "entries");
        out.push(b'[');
        for (i, (e, kind)) in self.entries.iter().zip(kinds).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'{');
            put(&mut out, true, "path");
            json::write_str(&e.path, &mut out);
            put(&mut out, false, "owner_snapshot");
            match &e.owner_snapshot {
                Some(o) => json::write_str(o, &mut out),
                None => out.extend_from_slice(b"null"),
            }
            put(&mut out, false, "kind");
            json::write_str(kind, &mut out);
            put(&mut out, false, "included");
            out.extend_from_slice(if e.included { b"true" } else { b"false" });
            put(&mut out, false, "encoded_size");
            out.extend_from_slice(e.encoded_size.to_string().as_bytes());
            put(&mut out, false, "apparent_size");
            out.extend_from_slice(e.apparent_size.to_string().as_bytes());
            put(&mut out, false, "sparse_ranges");
            let ranges = Json::Arr(
                e.sparse_ranges
                    .iter()
                    .map(|&(o, l)| Json::Arr(alloc::vec![Json::U64(o), Json::U64(l)]))
                    .collect(),
            );
            json::write(&ranges, KeyOrder::Bytes, &mut out);
            put(&mut out, false, "integrity");
            match &e.integrity {
                Some(i) => i.write(&mut out),
                None => out.extend_from_slice(b"null"),
            }
            if let (Some(a), Some(d)) = (&e.transport_algorithm, &e.transport_digest) {
                put(&mut out, false, "transport_integrity");
                let (a, d) = (str_json(a), str_json(d));
                json::write_entries(
                    [("algorithm", &a), ("digest", &d)].into_iter(),
                    KeyOrder::Bytes,
                    &mut out,
                );
            }
            out.push(b'}');
        }
        out.push(b']');
        put(&mut out, false, "limits");
        let [n, enc, app] = self.limits.map(Json::U64);
        json::write_entries(
            [("entry_count", &n), ("encoded_bytes", &enc), ("apparent_bytes", &app)].into_iter(),
            KeyOrder::Bytes,
            &mut out,
        );
        put(&mut out, false, "extensions");
        json::write(&Json::Obj(self.extensions.clone()), KeyOrder::Bytes, &mut out);
        put(&mut out, false, "requires");
        json::write(
            &Json::Arr(self.requires.iter().map(|r| str_json(r)).collect()),
            KeyOrder::Bytes,
            &mut out,
        );
        out.push(b'}');
        out
    }

    fn validate(&mut self, schema: &str, kinds: &[String]) -> Result<(), InventoryError> {
        if schema != SCHEMA {
            return Err(InventoryError::Schema(schema.to_string()));
        }
        self.completeness = match self.completeness_text.as_str() {
            "boot-complete" => Completeness::BootComplete,
            "dependent" => Completeness::Dependent,
            other => return Err(InventoryError::Completeness(other.to_string())),
        };
        let allowed = [ARCHIVE_MEMBER_BLAKE3_V1, DEPENDENCIES_V1, GUEST_CLOCK];
        let mut previous: Option<&str> = None;
        for r in &self.requires {
            if previous.is_some_and(|p| p >= r.as_str()) || !allowed.contains(&r.as_str()) {
                return Err(InventoryError::Requires(r.clone()));
            }
            previous = Some(r);
        }
        // Kinds first: the dependency rules below look at them.
        for (e, recorded) in self.entries.iter_mut().zip(kinds) {
            match (EntryKind::of_path(&e.path), EntryKind::parse(recorded)) {
                (Some(derived), Some(k)) if derived == k => e.kind = k,
                _ => return Err(InventoryError::Kind { path: e.path.clone(), recorded: recorded.clone() }),
            }
        }
        self.check_dependencies()?;
        let requires_transport = self.requires.iter().any(|r| r == ARCHIVE_MEMBER_BLAKE3_V1);
        if let Some(name) = &self.suggested_name {
            if name.is_empty() || name.len() > 255 || name.contains(['/', '\\']) {
                return Err(InventoryError::SuggestedName(name.clone()));
            }
        }
        let mut previous: Option<&str> = None;
        for m in &self.members {
            if !descriptor::is_id(&m.snapshot_id, "snap_") {
                return Err(InventoryError::Member(alloc::format!("bad snapshot id '{}'", m.snapshot_id)));
            }
            if !descriptor::is_digest(&m.descriptor_digest, "sha256:") {
                return Err(InventoryError::Member(alloc::format!(
                    "bad descriptor digest of {}",
                    m.snapshot_id
                )));
            }
            if previous.is_some_and(|p| p >= m.snapshot_id.as_str()) {
                return Err(InventoryError::Member(alloc::format!("{} is out of order", m.snapshot_id)));
            }
            if m.descriptor_path != alloc::format!("snapshots/{}/snapshot.json", m.snapshot_id) {
                return Err(InventoryError::Member(alloc::format!("descriptor path of {}", m.snapshot_id)));
            }
            previous = Some(&m.snapshot_id);
        }
        if self.members.binary_search_by(|m| m.snapshot_id.cmp(&self.head)).is_err() {
            return Err(InventoryError::Head(self.head.clone()));
        }
        let mut previous: Option<&str> = None;
        let mut described = 0usize;
        for e in &self.entries {
            if previous.is_some_and(|p| p.as_bytes() >= e.path.as_bytes()) {
                return Err(InventoryError::EntryOrder(e.path.clone()));
            }
            previous = Some(&e.path);
            if !e.included {
                continue;
            }
            let transport_ok = match (&e.transport_algorithm, &e.transport_digest) {
                (Some(a), Some(d)) => a == ARCHIVE_MEMBER_BLAKE3_V1 && descriptor::is_digest(d, "blake3:"),
                _ => !requires_transport,
            };
            if !transport_ok {
                return Err(InventoryError::Transport(e.path.clone()));
            }
            match e.kind {
                EntryKind::SnapshotDescriptor => {
                    // Members are strictly sorted by id (checked above): a binary search.
                    let bound = e.owner_snapshot.as_deref().and_then(|o| {
                        let i = self.members.binary_search_by(|m| m.snapshot_id.as_str().cmp(o)).ok()?;
                        self.members.get(i).filter(|m| m.descriptor_path == e.path)
                    });
                    match (bound, &e.integrity) {
                        (Some(m), Some(Integrity::Sha256 { digest })) if *digest == m.descriptor_digest => {
                            described += 1
                        }
                        _ => {
                            return Err(InventoryError::Binding(alloc::format!(
                                "snapshot descriptor identity mismatch: {}",
                                e.path
                            )))
                        }
                    }
                }
                EntryKind::ImageMetadata | EntryKind::ImageObject
                    if e.owner_snapshot.is_some()
                        || !matches!(e.integrity, Some(Integrity::Sha256 { .. })) =>
                {
                    return Err(InventoryError::Binding(alloc::format!("image entry binding: {}", e.path)));
                }
                _ => {}
            }
        }
        if described != self.members.len() {
            return Err(InventoryError::Binding("a member has no snapshot descriptor entry".to_string()));
        }
        Ok(())
    }

    /// The disk dependencies of a dependent archive, in the extension's order (empty for a
    /// complete one).
    pub fn disk_dependencies(&self) -> Vec<DiskDependency> {
        self.dependencies()
            .into_iter()
            .filter_map(|(path, d)| match d {
                Dependency::Disk(identity) => Some(DiskDependency { path, identity }),
                _ => None,
            })
            .collect()
    }

    /// The owned-payload dependencies of a dependent archive, in the extension's order (empty
    /// for a complete one).
    pub fn owned_dependencies(&self) -> Vec<OwnedDependency> {
        self.dependencies()
            .into_iter()
            .filter_map(|(path, d)| match d {
                Dependency::Owned(identity) => Some(OwnedDependency { path, identity }),
                _ => None,
            })
            .collect()
    }

    /// Every dependency the extension declares, with its path (none for a complete archive).
    fn dependencies(&self) -> Vec<(String, Dependency)> {
        let Some((_, extension)) = self.extensions.iter().find(|(k, _)| k == DEPENDENCIES_V1) else {
            return Vec::new();
        };
        // Parsed and checked by `check_dependencies` already.
        dependency_paths(extension, &self.head, self.entries.len()).unwrap_or_default()
    }

    /// The binding of `completeness`, the dependencies requirement and extension, and the
    /// omitted entries (0.7.13 `delta::validate`, disk dependencies).
    fn check_dependencies(&self) -> Result<(), InventoryError> {
        let extension = self.extensions.iter().find(|(k, _)| k == DEPENDENCIES_V1).map(|(_, v)| v);
        let required = self.requires.iter().any(|r| r == DEPENDENCIES_V1);
        let omitted = self.entries.iter().filter(|e| !e.included).count();
        if self.completeness == Completeness::BootComplete && !required && extension.is_none() {
            if omitted > 0 {
                return Err(InventoryError::Dependencies("complete archive cannot omit payloads"));
            }
            return Ok(());
        }
        let (Completeness::Dependent, true, Some(extension)) = (self.completeness, required, extension)
        else {
            return Err(InventoryError::Dependencies(
                "invalid snapshot dependency capability/completeness binding",
            ));
        };
        let paths = dependency_paths(extension, &self.head, self.entries.len())?;
        for (path, category) in &paths {
            // Linear: the entries' order is checked after this.
            let entry = self
                .entries
                .iter()
                .find(|e| e.path == *path)
                .ok_or(InventoryError::Dependencies("dependency lacks an inventory entry"))?;
            let valid_kind = match category {
                Dependency::Disk(_) => {
                    matches!(entry.kind, EntryKind::FilePayload | EntryKind::CheckpointDiskLayer)
                }
                Dependency::Memory => entry.kind == EntryKind::CheckpointObject,
                Dependency::Owned(_) => matches!(
                    entry.kind,
                    EntryKind::OwnedDirectoryPayload
                        | EntryKind::OwnedDiskLayer
                        | EntryKind::CheckpointDiskLayer
                ),
            };
            if entry.included
                || !valid_kind
                || entry.owner_snapshot.as_deref() != Some(self.head.as_str())
                || entry.encoded_size != 0
                || !entry.sparse_ranges.is_empty()
                || entry.transport_digest.is_some()
            {
                return Err(InventoryError::Dependencies("invalid omitted payload binding"));
            }
        }
        if omitted != paths.len() {
            return Err(InventoryError::Dependencies("archive omits an undeclared dependency"));
        }
        Ok(())
    }
}

/// Which list of the dependencies extension names a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Dependency {
    Disk(DiskIdentity),
    Memory,
    Owned(OwnedIdentity),
}

impl Dependency {
    fn is_disk(&self) -> bool {
        matches!(self, Dependency::Disk(_))
    }

    fn is_memory(&self) -> bool {
        matches!(self, Dependency::Memory)
    }

    fn is_owned(&self) -> bool {
        matches!(self, Dependency::Owned(_))
    }
}

/// What an owned-payload dependency of a dependent archive must be (0.7.13
/// `OwnedPayloadIdentity`): a directory volume's content file, or an owned disk layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedIdentity {
    /// A directory volume's file: its SHA-256 (as the volume records it) and length.
    Directory {
        /// The digest as recorded.
        digest: String,
        /// Its length.
        bytes: u64,
    },
    /// An owned disk layer: its `microsandbox.checkpoint-file/1` root and virtual size.
    Disk {
        /// `blake3:<hex>` as recorded.
        integrity_root: String,
        /// The layer's virtual size.
        bytes: u64,
    },
}

/// One owned-payload dependency of a dependent archive: the omitted member and its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedDependency {
    /// The member path the archive omits.
    pub path: String,
    /// The payload the base must hold there.
    pub identity: OwnedIdentity,
}

/// What a disk dependency of a dependent archive must be in its base (0.7.13 `LayerIdentity`):
/// the layer exactly as a descriptor or a disk generation records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskIdentity {
    /// A layer of a file-scope snapshot's descriptor.
    File(descriptor::Layer),
    /// A layer of a checkpoint's disk generation.
    Checkpoint(super::checkpoint::DiskLayerRef),
}

/// One disk dependency of a dependent archive: the omitted member and its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskDependency {
    /// The member path the archive omits.
    pub path: String,
    /// The layer the base must hold there.
    pub identity: DiskIdentity,
}

/// The `msb-snapshot-dependencies-v1` extension parsed as 0.7.13's `delta::Dependencies` (unknown
/// fields refused, `disks` and `memory` required, `owned` optional; each disk's identity a
/// descriptor layer (`file`) or a disk-generation layer (`checkpoint`), each owned payload's a
/// directory `{digest, bytes}` or a disk `{integrity_root, bytes}`), with `delta::validate`'s
/// counts and order: not all empty, at most 256 disks, memory and owned at most as many as the
/// entries, memory ids and owned paths strictly sorted, no path twice. Memory objects are at
/// `checkpoints/<head>/objects/sha256/<xx>/<hex>`. Returns each path and its list.
fn dependency_paths(
    extension: &Json,
    head: &str,
    entries: usize,
) -> Result<Vec<(String, Dependency)>, InventoryError> {
    let malformed = |_| InventoryError::Dependencies("malformed msb-snapshot-dependencies-v1 extension");
    let parse = || -> Result<Vec<(String, Dependency)>, JsonError> {
        let mut f = Fields::of(extension, DEPENDENCIES_V1)?;
        let disks = f.arr("disks")?;
        let memory = f.arr("memory")?;
        let owned = match f.opt("owned") {
            None => &[][..],
            Some(Json::Arr(items)) => items.as_slice(),
            Some(_) => return Err(json::wrong("owned", "an array")),
        };
        f.done()?;
        let mut paths = Vec::new();
        for d in disks {
            let mut df = Fields::of(d, "disks[]")?;
            let path = df.str("path")?.to_string();
            let mut idf = Fields::of(df.req("identity")?, "disks[].identity")?;
            let layer = idf.req("layer")?;
            let identity =
                match json::variant(idf.req("kind")?, "disks[].identity.kind", &["file", "checkpoint"])? {
                    0 => DiskIdentity::File(descriptor::parse_layer(layer, "disks[].identity.layer")?),
                    _ => DiskIdentity::Checkpoint(super::checkpoint::DiskLayerRef::from_json(
                        layer,
                        "disks[].identity.layer",
                    )?),
                };
            idf.done()?;
            df.done()?;
            paths.push((path, Dependency::Disk(identity)));
        }
        for m in memory {
            let id = json::as_str(m, "memory[]")?;
            if !descriptor::is_digest(id, "sha256:") {
                return Err(json::wrong("memory[]", "an object identity sha256:<64 hex>"));
            }
            paths.push((super::checkpoint::object_path(head, id), Dependency::Memory));
        }
        for o in owned {
            let mut of = Fields::of(o, "owned[]")?;
            let path = of.str("path")?.to_string();
            let mut idf = Fields::of(of.req("identity")?, "owned[].identity")?;
            let identity =
                if json::variant(idf.req("kind")?, "owned[].identity.kind", &["directory", "disk"])? == 0 {
                    let digest = idf.str("digest")?.to_string();
                    OwnedIdentity::Directory { digest, bytes: idf.u64("bytes")? }
                } else {
                    let integrity_root = idf.str("integrity_root")?.to_string();
                    OwnedIdentity::Disk { integrity_root, bytes: idf.u64("bytes")? }
                };
            idf.done()?;
            of.done()?;
            paths.push((path, Dependency::Owned(identity)));
        }
        Ok(paths)
    };
    let paths = parse().map_err(malformed)?;
    let count = |c: fn(&Dependency) -> bool| paths.iter().filter(|(_, k)| c(k)).count();
    let sorted = |c: fn(&Dependency) -> bool| {
        let of: Vec<&str> = paths.iter().filter(|(_, k)| c(k)).map(|(p, _)| p.as_str()).collect();
        of.windows(2).all(|w| w.first() < w.get(1))
    };
    if paths.is_empty()
        || paths.iter().filter(|(_, k)| k.is_disk()).count() > MAX_DISK_DEPENDENCIES
        || count(Dependency::is_memory) > entries
        || count(Dependency::is_owned) > entries
        || !sorted(Dependency::is_memory)
        || !sorted(Dependency::is_owned)
    {
        return Err(InventoryError::Dependencies("invalid snapshot dependency count or object ordering"));
    }
    let mut unique: Vec<&str> = paths.iter().map(|(p, _)| p.as_str()).collect();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() != paths.len() {
        return Err(InventoryError::Dependencies("duplicate snapshot dependency"));
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_paths() {
        let k = EntryKind::of_path;
        assert_eq!(k("snapshots/snap_x/snapshot.json"), Some(EntryKind::SnapshotDescriptor));
        assert_eq!(k("snapshots/snap_x/metadata.json"), Some(EntryKind::SnapshotMetadata));
        assert_eq!(k("snapshots/snap_x/layers/a.raw"), Some(EntryKind::OwnedDiskLayer));
        assert_eq!(k("layers/layer_a.raw"), Some(EntryKind::FilePayload));
        assert_eq!(k("images/manifests/a.json"), Some(EntryKind::ImageMetadata));
        assert_eq!(k("images/vmdk/a.vmdk"), Some(EntryKind::ImageObject));
        assert_eq!(k("checkpoints/c/objects/sha256/ab/cd"), Some(EntryKind::CheckpointObject));
        assert_eq!(k("archive.json"), None);
        assert_eq!(k("prefix/manifest.json"), None);
        for (kind, name) in KINDS {
            assert_eq!(EntryKind::parse(name), Some(kind));
            assert_eq!(kind.as_str(), name);
        }
    }
}
