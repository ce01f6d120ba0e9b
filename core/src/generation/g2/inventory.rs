//! `archive.json` of a released (0.6.7 – 0.6.16) archive: numeric `schema` 1,
//! `artifact: "snapshot-archive"` (0.7.13's private `ReleasedArchiveInventory`).
//!
//! Fields, in this order, all required (`null` where optional): `schema`, `artifact`, `head`,
//! `suggested_name`, `completeness`, `with_parents`, `with_image`, `snapshots`
//! (`[{snapshot_id, descriptor}]`), `entries` (`[{path, owner_snapshot, kind, included,
//! encoded_size, apparent_size, integrity, transport_integrity?}]`, no sparse map),
//! `protection_requirements`, `extensions`, `requires`.
//!
//! [`ReleasedInventory::parse`] makes 0.7.13's static checks: unknown fields refused; the bytes
//! equal the compact serialization of the parsed value (declared field order, maps in byte
//! order, `transport_integrity` omitted when absent, no trailing newline), so a missing
//! `suggested_name` is not canonical; schema 1 and artifact `snapshot-archive`; completeness
//! `boot-complete`; no protection requirements; `requires` empty or exactly
//! `["msb-archive-member-blake3-v1"]`; `suggested_name` 1–255 bytes without `/` or `\`;
//! snapshots strictly sorted, each id a lowercase `sha256:` digest and its descriptor
//! `snapshots/<hex>/snapshot.json`; the head listed; entries strictly sorted by path bytes;
//! transport digests well formed (present when required); every descriptor entry owned by the
//! snapshot whose digest its `sha256` integrity is, and every snapshot with exactly its
//! descriptor entry.
//!
//! Stricter than 0.7.13, which keeps the recorded kind as written and only looks at it to spot
//! payloads and descriptors: each entry's kind must be the one its path implies (0.7.13 derives
//! that kind for the transport digest); every non-payload entry records a `sha256` integrity
//! (0.7.13 checks one only when recorded); an upper's entry is owned by the snapshot of its
//! directory; an image entry is unowned or owned by a listed snapshot; and no entry may be
//! `included: false` (a boot-complete released archive omits nothing; 0.7.13 ignores such an
//! entry when its file is absent). At most 4 MiB, as 0.7.13 bounds every inventory.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::generation::g3::descriptor::{is_digest, Integrity};
use crate::generation::g3::inventory::EntryKind;
use crate::generation::g3::json::{self, Fields, Json, JsonError, KeyOrder};
use crate::generation::g3::transport::ARCHIVE_MEMBER_BLAKE3_V1;

/// Largest accepted `archive.json`.
pub const MAX_INVENTORY_BYTES: usize = 4 * 1024 * 1024;

/// Why a released `archive.json` is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReleasedInventoryError {
    /// Larger than [`MAX_INVENTORY_BYTES`].
    TooLarge(u64),
    /// Not JSON, or not the schema's shape.
    Json(JsonError),
    /// The bytes are not the compact serialization of their value.
    NotCanonical,
    /// `schema` is not 1 or `artifact` not `snapshot-archive` (a 0.7 inventory in a released
    /// archive lands here too).
    Schema,
    /// `completeness` is not `boot-complete`.
    Completeness(String),
    /// `protection_requirements` is not empty.
    Protection,
    /// `requires` is neither empty nor exactly the transport digest requirement.
    Requires,
    /// `suggested_name` is empty, longer than 255 bytes or holds `/` or `\`.
    SuggestedName(String),
    /// A snapshot's id, descriptor path or order is wrong.
    Snapshot(String),
    /// `head` is not a listed snapshot.
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
    /// An entry is not bound as required (owner, integrity, `included`).
    Binding {
        /// The entry's path (empty for the whole snapshot list).
        path: String,
        /// Why.
        why: &'static str,
    },
}

impl ReleasedInventoryError {
    /// Stable identifier.
    pub fn code(&self) -> &'static str {
        match self {
            ReleasedInventoryError::TooLarge(_) => "msb_g2_inventory_too_large",
            ReleasedInventoryError::Json(e) => match e {
                JsonError::Syntax(_) => "msb_g2_inventory_parse",
                JsonError::DuplicateKey(_) => "msb_g2_inventory_duplicate_key",
                JsonError::UnknownField(_) => "msb_g2_inventory_unknown_field",
                JsonError::MissingField(_) => "msb_g2_inventory_missing_field",
                JsonError::WrongType { .. } | JsonError::UnknownVariant { .. } => {
                    "msb_g2_inventory_wrong_type"
                }
            },
            ReleasedInventoryError::NotCanonical => "msb_g2_inventory_not_canonical",
            ReleasedInventoryError::Schema => "msb_g2_inventory_schema",
            ReleasedInventoryError::Completeness(_) => "msb_g2_inventory_completeness",
            ReleasedInventoryError::Protection => "msb_g2_inventory_protection",
            ReleasedInventoryError::Requires => "msb_g2_inventory_requires",
            ReleasedInventoryError::SuggestedName(_) => "msb_g2_inventory_suggested_name",
            ReleasedInventoryError::Snapshot(_) => "msb_g2_inventory_snapshot",
            ReleasedInventoryError::Head(_) => "msb_g2_inventory_head",
            ReleasedInventoryError::EntryOrder(_) => "msb_g2_inventory_entry_order",
            ReleasedInventoryError::Kind { .. } => "msb_g2_inventory_kind",
            ReleasedInventoryError::Transport(_) => "msb_g2_inventory_transport",
            ReleasedInventoryError::Binding { .. } => "msb_g2_inventory_binding",
        }
    }
}

impl fmt::Display for ReleasedInventoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("released archive inventory: ")?;
        match self {
            ReleasedInventoryError::TooLarge(n) => {
                write!(f, "{n} bytes exceed the {MAX_INVENTORY_BYTES}-byte limit")
            }
            ReleasedInventoryError::Json(e) => write!(f, "{e}"),
            ReleasedInventoryError::NotCanonical => {
                f.write_str("not canonical: the bytes are not the compact serialization of the inventory")
            }
            ReleasedInventoryError::Schema => {
                f.write_str("unsupported schema or artifact (expected schema 1, artifact snapshot-archive)")
            }
            ReleasedInventoryError::Completeness(c) => {
                write!(f, "completeness '{}' is not supported", c.escape_debug())
            }
            ReleasedInventoryError::Protection => f.write_str("protection requirements are not supported"),
            ReleasedInventoryError::Requires => f.write_str("requires unsupported extensions"),
            ReleasedInventoryError::SuggestedName(s) => {
                write!(f, "invalid suggested_name '{}'", s.escape_debug())
            }
            ReleasedInventoryError::Snapshot(why) => write!(f, "invalid snapshot: {why}"),
            ReleasedInventoryError::Head(h) => {
                write!(f, "head '{}' is not a listed snapshot", h.escape_debug())
            }
            ReleasedInventoryError::EntryOrder(p) => {
                write!(f, "entries are not strictly sorted by path (at '{}')", p.escape_debug())
            }
            ReleasedInventoryError::Kind { path, recorded } => write!(
                f,
                "entry '{}' is recorded as '{}', not the kind its path implies",
                path.escape_debug(),
                recorded.escape_debug()
            ),
            ReleasedInventoryError::Transport(p) => {
                write!(f, "entry '{}': missing or malformed transport integrity", p.escape_debug())
            }
            ReleasedInventoryError::Binding { path, why } => {
                write!(f, "entry '{}': {why}", path.escape_debug())
            }
        }
    }
}

impl From<JsonError> for ReleasedInventoryError {
    fn from(e: JsonError) -> Self {
        ReleasedInventoryError::Json(e)
    }
}

/// One snapshot of the archive (`snapshots[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasedSnapshotEntry {
    /// `sha256:<hex>`: the descriptor's digest.
    pub snapshot_id: String,
    /// `snapshots/<hex>/snapshot.json`.
    pub descriptor: String,
}

/// One file of the archive (`entries[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasedEntry {
    /// The member path.
    pub path: String,
    /// The snapshot it belongs to.
    pub owner_snapshot: Option<String>,
    /// Its kind (the one its path implies).
    pub kind: EntryKind,
    /// Stored bytes in the tar.
    pub encoded_size: u64,
    /// Logical size.
    pub apparent_size: u64,
    /// Recorded integrity.
    pub integrity: Option<Integrity>,
    /// `msb-archive-member-blake3-v1` digest, when recorded.
    pub transport_digest: Option<String>,
    kind_text: String,
    included: bool,
    transport_algorithm: Option<String>,
}

/// A parsed and statically checked released `archive.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleasedInventory {
    /// The head snapshot's digest.
    pub head: String,
    /// A name suggestion.
    pub suggested_name: Option<String>,
    /// Whether the writer was asked to include the parents.
    pub with_parents: bool,
    /// Whether the writer was asked to include the image.
    pub with_image: bool,
    /// Snapshots, sorted by digest.
    pub snapshots: Vec<ReleasedSnapshotEntry>,
    /// Files, sorted by path bytes.
    pub entries: Vec<ReleasedEntry>,
    /// Requirements.
    pub requires: Vec<String>,
    schema: Json,
    artifact: String,
    completeness: String,
    protection: Vec<Json>,
    extensions: Vec<(String, Json)>,
}

fn parse_entry(v: &Json) -> Result<ReleasedEntry, JsonError> {
    let mut f = Fields::of(v, "entries[]")?;
    let path = f.str("path")?.to_string();
    let owner_snapshot = match f.opt("owner_snapshot") {
        None | Some(Json::Null) => None,
        Some(v) => Some(json::as_str(v, "entries[].owner_snapshot")?.to_string()),
    };
    let kind_text = f.str("kind")?.to_string();
    let included = f.bool("included")?;
    let encoded_size = f.u64("encoded_size")?;
    let apparent_size = f.u64("apparent_size")?;
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
    Ok(ReleasedEntry {
        path,
        owner_snapshot,
        // Checked against the path (after the canonical check).
        kind: EntryKind::FilePayload,
        encoded_size,
        apparent_size,
        integrity,
        transport_digest,
        kind_text,
        included,
        transport_algorithm,
    })
}

fn put(out: &mut Vec<u8>, first: bool, key: &str) {
    if !first {
        out.push(b',');
    }
    json::write_str(key, out);
    out.push(b':');
}

fn put_opt_str(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(s) => json::write_str(s, out),
        None => out.extend_from_slice(b"null"),
    }
}

fn binding(path: &str, why: &'static str) -> ReleasedInventoryError {
    ReleasedInventoryError::Binding { path: path.to_string(), why }
}

/// The hex digits of a `sha256:<hex>` digest.
fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or_default()
}

impl ReleasedInventory {
    /// Parses released `archive.json` bytes and runs every check that needs no tar member.
    pub fn parse(bytes: &[u8]) -> Result<ReleasedInventory, ReleasedInventoryError> {
        if bytes.len() > MAX_INVENTORY_BYTES {
            return Err(ReleasedInventoryError::TooLarge(bytes.len() as u64));
        }
        let tree = json::parse(bytes)?;
        let mut f = Fields::of(&tree, "")?;
        let schema = f.req("schema")?.clone();
        if !matches!(schema, Json::U64(n) if n <= u64::from(u32::MAX)) {
            return Err(ReleasedInventoryError::Schema);
        }
        let artifact = f.str("artifact")?.to_string();
        let head = f.str("head")?.to_string();
        let suggested_name = match f.opt("suggested_name") {
            None | Some(Json::Null) => None,
            Some(v) => Some(json::as_str(v, "suggested_name")?.to_string()),
        };
        let completeness = f.str("completeness")?.to_string();
        let with_parents = f.bool("with_parents")?;
        let with_image = f.bool("with_image")?;
        let mut snapshots = Vec::new();
        for s in f.arr("snapshots")? {
            let mut sf = Fields::of(s, "snapshots[]")?;
            snapshots.push(ReleasedSnapshotEntry {
                snapshot_id: sf.str("snapshot_id")?.to_string(),
                descriptor: sf.str("descriptor")?.to_string(),
            });
            sf.done()?;
        }
        let entries = f.arr("entries")?.iter().map(parse_entry).collect::<Result<Vec<_>, _>>()?;
        let protection = f.arr("protection_requirements")?.to_vec();
        let extensions = f.obj("extensions")?.to_vec();
        let requires = f
            .arr("requires")?
            .iter()
            .map(|v| json::as_str(v, "requires[]").map(str::to_string))
            .collect::<Result<Vec<_>, _>>()?;
        f.done()?;
        let mut inv = ReleasedInventory {
            head,
            suggested_name,
            with_parents,
            with_image,
            snapshots,
            entries,
            requires,
            schema,
            artifact,
            completeness,
            protection,
            extensions,
        };
        if inv.canonical_bytes() != bytes {
            return Err(ReleasedInventoryError::NotCanonical);
        }
        inv.validate()?;
        Ok(inv)
    }

    /// The compact serialization in declared field order (what the file's bytes must be).
    fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.push(b'{');
        put(&mut out, true, "schema");
        json::write(&self.schema, KeyOrder::Bytes, &mut out);
        put(&mut out, false, "artifact");
        json::write_str(&self.artifact, &mut out);
        put(&mut out, false, "head");
        json::write_str(&self.head, &mut out);
        put(&mut out, false, "suggested_name");
        put_opt_str(&mut out, self.suggested_name.as_deref());
        put(&mut out, false, "completeness");
        json::write_str(&self.completeness, &mut out);
        put(&mut out, false, "with_parents");
        out.extend_from_slice(if self.with_parents { b"true" } else { b"false" });
        put(&mut out, false, "with_image");
        out.extend_from_slice(if self.with_image { b"true" } else { b"false" });
        put(&mut out, false, "snapshots");
        out.push(b'[');
        for (i, s) in self.snapshots.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'{');
            put(&mut out, true, "snapshot_id");
            json::write_str(&s.snapshot_id, &mut out);
            put(&mut out, false, "descriptor");
            json::write_str(&s.descriptor, &mut out);
            out.push(b'}');
        }
        out.push(b']');
        put(&mut out, false, "entries");
        out.push(b'[');
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'{');
            put(&mut out, true, "path");
            json::write_str(&e.path, &mut out);
            put(&mut out, false, "owner_snapshot");
            put_opt_str(&mut out, e.owner_snapshot.as_deref());
            put(&mut out, false, "kind");
            json::write_str(&e.kind_text, &mut out);
            put(&mut out, false, "included");
            out.extend_from_slice(if e.included { b"true" } else { b"false" });
            put(&mut out, false, "encoded_size");
            out.extend_from_slice(e.encoded_size.to_string().as_bytes());
            put(&mut out, false, "apparent_size");
            out.extend_from_slice(e.apparent_size.to_string().as_bytes());
            put(&mut out, false, "integrity");
            match &e.integrity {
                Some(i) => i.write(&mut out),
                None => out.extend_from_slice(b"null"),
            }
            if let (Some(a), Some(d)) = (&e.transport_algorithm, &e.transport_digest) {
                put(&mut out, false, "transport_integrity");
                let (a, d) = (Json::Str(a.clone()), Json::Str(d.clone()));
                json::write_entries(
                    [("algorithm", &a), ("digest", &d)].into_iter(),
                    KeyOrder::Bytes,
                    &mut out,
                );
            }
            out.push(b'}');
        }
        out.push(b']');
        put(&mut out, false, "protection_requirements");
        json::write(&Json::Arr(self.protection.clone()), KeyOrder::Bytes, &mut out);
        put(&mut out, false, "extensions");
        json::write(&Json::Obj(self.extensions.clone()), KeyOrder::Bytes, &mut out);
        put(&mut out, false, "requires");
        json::write(
            &Json::Arr(self.requires.iter().map(|r| Json::Str(r.clone())).collect()),
            KeyOrder::Bytes,
            &mut out,
        );
        out.push(b'}');
        out
    }

    /// The entry of `path`, if listed (entries are strictly sorted by path bytes).
    pub fn entry(&self, path: &str) -> Option<&ReleasedEntry> {
        self.entries
            .binary_search_by(|e| e.path.as_bytes().cmp(path.as_bytes()))
            .ok()
            .and_then(|i| self.entries.get(i))
    }

    /// Whether `digest` is a listed snapshot (snapshots are strictly sorted).
    pub fn lists(&self, digest: &str) -> bool {
        self.snapshots.binary_search_by(|s| s.snapshot_id.as_str().cmp(digest)).is_ok()
    }

    fn validate(&mut self) -> Result<(), ReleasedInventoryError> {
        if self.schema != Json::U64(1) || self.artifact != "snapshot-archive" {
            return Err(ReleasedInventoryError::Schema);
        }
        if self.completeness != "boot-complete" {
            return Err(ReleasedInventoryError::Completeness(self.completeness.clone()));
        }
        if !self.protection.is_empty() {
            return Err(ReleasedInventoryError::Protection);
        }
        let requires_transport = match self.requires.as_slice() {
            [] => false,
            [r] if r == ARCHIVE_MEMBER_BLAKE3_V1 => true,
            _ => return Err(ReleasedInventoryError::Requires),
        };
        if let Some(name) = &self.suggested_name {
            if name.is_empty() || name.len() > 255 || name.contains(['/', '\\']) {
                return Err(ReleasedInventoryError::SuggestedName(name.clone()));
            }
        }
        let mut previous: Option<&str> = None;
        for s in &self.snapshots {
            let id = &s.snapshot_id;
            if !is_digest(id, "sha256:") {
                return Err(ReleasedInventoryError::Snapshot(alloc::format!(
                    "'{id}' is not a lowercase sha256 digest"
                )));
            }
            if previous.is_some_and(|p| p >= id.as_str()) {
                return Err(ReleasedInventoryError::Snapshot(alloc::format!("{id} is out of order")));
            }
            if s.descriptor != alloc::format!("snapshots/{}/snapshot.json", hex_of(id)) {
                return Err(ReleasedInventoryError::Snapshot(alloc::format!("descriptor path of {id}")));
            }
            previous = Some(id);
        }
        if !self.lists(&self.head) {
            return Err(ReleasedInventoryError::Head(self.head.clone()));
        }
        let mut previous: Option<String> = None;
        let mut described = 0usize;
        for i in 0..self.entries.len() {
            let Some(e) = self.entries.get(i) else { break };
            if previous.as_deref().is_some_and(|p| p.as_bytes() >= e.path.as_bytes()) {
                return Err(ReleasedInventoryError::EntryOrder(e.path.clone()));
            }
            previous = Some(e.path.clone());
            let kind = match (EntryKind::of_path(&e.path), EntryKind::parse(&e.kind_text)) {
                (Some(derived), Some(k)) if derived == k => k,
                _ => {
                    return Err(ReleasedInventoryError::Kind {
                        path: e.path.clone(),
                        recorded: e.kind_text.clone(),
                    })
                }
            };
            if !e.included {
                return Err(binding(
                    &e.path,
                    "a boot-complete released archive omits nothing (included: false)",
                ));
            }
            let transport_ok = match (&e.transport_algorithm, &e.transport_digest) {
                (Some(a), Some(d)) => a == ARCHIVE_MEMBER_BLAKE3_V1 && is_digest(d, "blake3:"),
                _ => !requires_transport,
            };
            if !transport_ok {
                return Err(ReleasedInventoryError::Transport(e.path.clone()));
            }
            let owner = e.owner_snapshot.as_deref();
            let sha256 = match &e.integrity {
                Some(Integrity::Sha256 { digest }) => Some(digest.as_str()),
                _ => None,
            };
            let dir = e.path.split('/').nth(1).unwrap_or_default();
            match kind {
                EntryKind::SnapshotDescriptor => {
                    let Some(owner) = owner else {
                        return Err(binding(&e.path, "snapshot descriptor has no owner"));
                    };
                    let listed = self
                        .snapshots
                        .binary_search_by(|s| s.snapshot_id.as_str().cmp(owner))
                        .ok()
                        .and_then(|i| self.snapshots.get(i))
                        .is_some_and(|s| s.descriptor == e.path);
                    if sha256 != Some(owner) || !listed {
                        return Err(binding(&e.path, "snapshot descriptor identity mismatch"));
                    }
                    described += 1;
                }
                EntryKind::FilePayload
                    if owner.map(hex_of) != Some(dir) || owner.is_some_and(|o| !self.lists(o)) =>
                {
                    return Err(binding(&e.path, "an upper is owned by the snapshot of its directory"));
                }
                EntryKind::ImageMetadata | EntryKind::ImageObject => {
                    if owner.is_some_and(|o| !self.lists(o)) {
                        return Err(binding(&e.path, "an image file's owner is not a listed snapshot"));
                    }
                    if sha256.is_none() {
                        return Err(binding(&e.path, "an image file records no sha256 integrity"));
                    }
                }
                // Other kinds are not paths of a released archive: refused by the layout.
                _ => {}
            }
            if let Some(e) = self.entries.get_mut(i) {
                e.kind = kind;
            }
        }
        if described != self.snapshots.len() {
            return Err(binding("", "archive snapshot descriptor inventory is incomplete"));
        }
        Ok(())
    }
}
