//! Released (G2, microsandbox 0.6.7 – 0.6.16) archives built from what 0.7.13 accepts when it
//! loads one (no 0.6.x binary is here to write a reference archive): the flat `snapshot.json`
//! of `translate_released_flat_forward`, the `archive.json` of `ReleasedArchiveInventory`
//! (declared field order, compact, `transport_integrity` only when recorded) and the member
//! layout of `archive_entry_target` (`snapshots/<hex>/snapshot.json`, `files/<hex>/<file>`,
//! `images/<kind>/<file>`). Each part is editable so tests can break one rule at a time, and
//! [`Inventory::for_members`] re-seals an edited member list with a truthful inventory.

use std::collections::BTreeMap;

use snapbundle_core::generation::g3::transport::TransportHasher;

use crate::builder::{flag, sha256_digest, sparse_digest, Format, Header, Tar};
use crate::sparse::Sparse;

/// The integrity a released descriptor records for its upper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpperIntegrity {
    /// `null`.
    Null,
    /// `sha256` of the file.
    Sha256,
    /// `msb-sparse-sha256-v1`.
    Sparse,
}

/// One released snapshot: its descriptor's fields and its upper's bytes.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The upper's bytes.
    pub upper: Vec<u8>,
    /// `state.upper.file`.
    pub upper_file: String,
    /// The integrity recorded.
    pub integrity: UpperIntegrity,
    /// `parent` (a released digest or a `snap_` id).
    pub parent: Option<String>,
    /// `labels`.
    pub labels: BTreeMap<String, String>,
    /// `created_at`.
    pub created_at: String,
    /// Store the upper as an old-GNU sparse member.
    pub sparse: bool,
    /// Edits applied to the descriptor's JSON text last (to break one rule).
    pub edit: Option<fn(String) -> String>,
}

impl Snapshot {
    /// A 64 KiB upper, mostly holes, seeded by `seed`; `upper.ext4`, sha256 integrity.
    pub fn new(seed: u8) -> Snapshot {
        Snapshot {
            upper: crate::sparse::holed(65536, &[1, 9], seed),
            upper_file: "upper.ext4".into(),
            integrity: UpperIntegrity::Sha256,
            parent: None,
            labels: BTreeMap::new(),
            created_at: "2026-05-01T12:00:00Z".into(),
            sparse: false,
            edit: None,
        }
    }

    /// The descriptor's bytes (keys sorted, compact, as `serde_json::to_vec` of a `json!` value).
    pub fn descriptor(&self) -> Vec<u8> {
        let integrity = match self.integrity {
            UpperIntegrity::Null => serde_json::Value::Null,
            UpperIntegrity::Sha256 => {
                serde_json::json!({"algorithm": "sha256", "digest": sha256_digest(&self.upper)})
            }
            UpperIntegrity::Sparse => {
                serde_json::json!({"algorithm": "msb-sparse-sha256-v1", "digest": sparse_digest(&self.upper)})
            }
        };
        let v = serde_json::json!({
            "schema": 1, "artifact": "snapshot", "scope": "disk",
            "created_at": self.created_at, "parent": self.parent,
            "image": {"ref": "docker.io/library/alpine:3.21", "manifest_digest": format!("sha256:{}", "a".repeat(64))},
            "source_sandbox": "builder", "labels": self.labels,
            "state": {"kind": "file", "format": "raw", "fstype": "ext4",
                "upper": {"file": self.upper_file, "size_bytes": self.upper.len(), "integrity": integrity}},
            "extensions": {}, "requires": []
        });
        let text = serde_json::to_string(&v).expect("json");
        self.edit.map_or(text.clone(), |e| e(text)).into_bytes()
    }

    /// `sha256:<hex>` of the descriptor: the released identity.
    pub fn digest(&self) -> String {
        sha256_digest(&self.descriptor())
    }

    /// The digest's hex digits (the snapshot's directory).
    pub fn hex(&self) -> String {
        self.digest()["sha256:".len()..].to_string()
    }

    /// `snapshots/<hex>/snapshot.json`.
    pub fn descriptor_path(&self) -> String {
        format!("snapshots/{}/snapshot.json", self.hex())
    }

    /// `files/<hex>/<upper_file>`.
    pub fn upper_path(&self) -> String {
        format!("files/{}/{}", self.hex(), self.upper_file)
    }

    /// The 0.7 id 0.7.13 gives it.
    pub fn snapshot_id(&self) -> String {
        format!("snap_{}", &self.hex()[..32])
    }
}

/// `n` snapshots, each the parent of the next (parents first), integrities cycling through
/// sha256, msb-sparse-sha256-v1 and none, the second one sparse and labelled.
pub fn chain(n: usize) -> Vec<Snapshot> {
    let mut out: Vec<Snapshot> = Vec::new();
    for i in 0..n {
        let mut s = Snapshot::new(i as u8 + 1);
        s.integrity = [UpperIntegrity::Sha256, UpperIntegrity::Sparse, UpperIntegrity::Null][i % 3];
        s.sparse = i == 1;
        if i == 1 {
            s.labels.insert("tier".into(), "web".into());
        }
        s.parent = out.last().map(Snapshot::digest);
        s.created_at = format!("2026-05-0{}T12:00:00Z", i + 1);
        out.push(s);
    }
    out
}

/// One member of a released archive as written.
#[derive(Debug, Clone)]
pub struct Member {
    /// The path.
    pub path: String,
    /// Its content (the logical bytes, holes included, for a sparse member).
    pub data: Vec<u8>,
    /// Written as an old-GNU sparse member.
    pub sparse: bool,
    /// A directory record (no data).
    pub dir: bool,
}

impl Member {
    /// A regular file.
    pub fn file(path: &str, data: &[u8]) -> Member {
        Member { path: path.into(), data: data.to_vec(), sparse: false, dir: false }
    }

    /// A directory record (`path` ends with `/`).
    pub fn dir(path: &str) -> Member {
        Member { path: path.into(), data: Vec::new(), sparse: false, dir: true }
    }

    fn kind(&self) -> &'static str {
        let c: Vec<&str> = self.path.split('/').collect();
        match c.as_slice() {
            ["snapshots", ..] => "snapshot-descriptor",
            ["files", ..] => "file-payload",
            ["images" | "cache", "manifests", _] => "image-metadata",
            _ => "image-object",
        }
    }

    /// `(encoded size, apparent size, transport digest)` as the inventory records them.
    pub fn observed(&self) -> (u64, u64, String) {
        let (encoded, ranges, stored) = if self.sparse {
            let s = Sparse::of(&self.path, &self.data);
            (s.data.len() as u64, s.slots.clone(), s.data)
        } else {
            (self.data.len() as u64, Vec::new(), self.data.clone())
        };
        let mut t = TransportHasher::new(self.kind(), &self.path, encoded, self.data.len() as u64, &ranges);
        t.update(&stored).expect("stored bytes");
        (encoded, self.data.len() as u64, t.finish().expect("transport"))
    }
}

/// Two image files (`images/manifests/…json` and `images/layers/…erofs`).
pub fn images() -> Vec<Member> {
    vec![
        Member::file("images/layers/aaaa.erofs", &[7u8; 3000]),
        Member::file("images/manifests/alpine.json", br#"{"image":"alpine"}"#),
    ]
}

/// The members of an archive of `snapshots` (descriptor then upper, in the given order), then
/// `images`.
pub fn members(snapshots: &[Snapshot], images: &[Member]) -> Vec<Member> {
    let mut out = Vec::new();
    for s in snapshots {
        out.push(Member::file(&s.descriptor_path(), &s.descriptor()));
        out.push(Member { path: s.upper_path(), data: s.upper.clone(), sparse: s.sparse, dir: false });
    }
    out.extend(images.iter().cloned());
    out
}

/// One `entries[]` element.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `path`.
    pub path: String,
    /// `owner_snapshot`.
    pub owner: Option<String>,
    /// `kind`.
    pub kind: String,
    /// `included`.
    pub included: bool,
    /// `encoded_size`.
    pub encoded: u64,
    /// `apparent_size`.
    pub apparent: u64,
    /// `integrity` as JSON text (`null` when absent).
    pub integrity: String,
    /// `transport_integrity.digest`, written only when present.
    pub transport: Option<String>,
}

/// A released `archive.json` under construction, written in declared field order.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// `schema` as JSON text.
    pub schema: String,
    /// `artifact`.
    pub artifact: String,
    /// `head`.
    pub head: String,
    /// `suggested_name`.
    pub suggested_name: Option<String>,
    /// `completeness`.
    pub completeness: String,
    /// `with_parents`.
    pub with_parents: bool,
    /// `with_image`.
    pub with_image: bool,
    /// `snapshots[]`: `(snapshot_id, descriptor)`.
    pub snapshots: Vec<(String, String)>,
    /// `entries[]`.
    pub entries: Vec<Entry>,
    /// `protection_requirements` as JSON text.
    pub protection: String,
    /// `extensions` as JSON text.
    pub extensions: String,
    /// `requires`.
    pub requires: Vec<String>,
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

impl Inventory {
    /// The truthful inventory of `members` with head `head` (a digest) and transport digests
    /// when `transport`.
    pub fn for_members(members: &[Member], head: &str, transport: bool) -> Inventory {
        let mut snapshots = Vec::new();
        let mut entries = Vec::new();
        for m in members.iter().filter(|m| !m.dir && m.path != "archive.json") {
            let (encoded, apparent, digest) = m.observed();
            let dir = m.path.split('/').nth(1).unwrap_or_default();
            let owner = match m.kind() {
                "snapshot-descriptor" => {
                    snapshots.push((format!("sha256:{dir}"), m.path.clone()));
                    Some(format!("sha256:{dir}"))
                }
                "file-payload" => Some(format!("sha256:{dir}")),
                _ => None,
            };
            let integrity = if m.kind() == "file-payload" {
                "null".to_string()
            } else {
                format!(r#"{{"algorithm":"sha256","digest":"{}"}}"#, sha256_digest(&m.data))
            };
            entries.push(Entry {
                path: m.path.clone(),
                owner,
                kind: m.kind().into(),
                included: true,
                encoded,
                apparent,
                integrity,
                transport: transport.then_some(digest),
            });
        }
        snapshots.sort();
        entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        Inventory {
            schema: "1".into(),
            artifact: "snapshot-archive".into(),
            head: head.into(),
            suggested_name: Some("web".into()),
            completeness: "boot-complete".into(),
            with_parents: snapshots.len() > 1,
            with_image: entries.iter().any(|e| e.kind.starts_with("image")),
            snapshots,
            entries,
            protection: "[]".into(),
            extensions: "{}".into(),
            requires: if transport { vec!["msb-archive-member-blake3-v1".into()] } else { Vec::new() },
        }
    }

    /// The entry of `path`.
    pub fn entry(&mut self, path: &str) -> &mut Entry {
        self.entries.iter_mut().find(|e| e.path == path).expect("entry")
    }

    /// The compact JSON `serde_json::to_vec(&ReleasedArchiveInventory)` writes.
    pub fn to_json(&self) -> String {
        let opt = |s: &Option<String>| s.as_deref().map_or("null".to_string(), json_str);
        let snapshots: Vec<String> = self
            .snapshots
            .iter()
            .map(|(id, d)| format!(r#"{{"snapshot_id":{},"descriptor":{}}}"#, json_str(id), json_str(d)))
            .collect();
        let entries: Vec<String> = self
            .entries
            .iter()
            .map(|e| {
                let transport = e.transport.as_ref().map_or(String::new(), |d| {
                    format!(r#","transport_integrity":{{"algorithm":"msb-archive-member-blake3-v1","digest":{}}}"#, json_str(d))
                });
                format!(
                    r#"{{"path":{},"owner_snapshot":{},"kind":{},"included":{},"encoded_size":{},"apparent_size":{},"integrity":{}{transport}}}"#,
                    json_str(&e.path),
                    opt(&e.owner),
                    json_str(&e.kind),
                    e.included,
                    e.encoded,
                    e.apparent,
                    e.integrity
                )
            })
            .collect();
        let requires: Vec<String> = self.requires.iter().map(|r| json_str(r)).collect();
        format!(
            r#"{{"schema":{},"artifact":{},"head":{},"suggested_name":{},"completeness":{},"with_parents":{},"with_image":{},"snapshots":[{}],"entries":[{}],"protection_requirements":{},"extensions":{},"requires":[{}]}}"#,
            self.schema,
            json_str(&self.artifact),
            json_str(&self.head),
            opt(&self.suggested_name),
            json_str(&self.completeness),
            self.with_parents,
            self.with_image,
            snapshots.join(","),
            entries.join(","),
            self.protection,
            self.extensions,
            requires.join(",")
        )
    }
}

/// The tar stream of `members` (sparse ones as GNU tar writes them, headers as 0.7.13's test
/// writes them: GNU, uid/gid 0).
pub fn tar(members: &[Member]) -> Vec<u8> {
    members
        .iter()
        .fold(Tar::new(), |t, m| {
            if m.dir {
                t.dir(&m.path)
            } else if m.sparse {
                Sparse::of(&m.path, &m.data).append(t)
            } else {
                t.member(
                    &Header::new(Format::Gnu, m.path.as_bytes(), flag::REGULAR, m.data.len() as u64),
                    &m.data,
                )
            }
        })
        .end()
        .build()
}

/// `members`, then `inventory` as `archive.json`, as a tar stream.
pub fn sealed(members: &[Member], inventory: &Inventory) -> Vec<u8> {
    let mut all = members.to_vec();
    all.push(Member::file("archive.json", inventory.to_json().as_bytes()));
    tar(&all)
}

/// A valid archive of `snapshots` (head last) with `images`, a truthful inventory and transport
/// digests.
pub fn archive(snapshots: &[Snapshot], images: &[Member]) -> Vec<u8> {
    let ms = members(snapshots, images);
    let head = snapshots.last().expect("a snapshot").digest();
    sealed(&ms, &Inventory::for_members(&ms, &head, true))
}
