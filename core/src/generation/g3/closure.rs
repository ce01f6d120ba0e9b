//! The whole-archive checks of checkpoint and owned-volume members (0.7.13
//! `checkpoint_archive_members`, `owned::members`, `validate_inventory_snapshot_bindings` and
//! `CheckpointClosure::open_portable`), once `archive.json` has been read.
//!
//! Each snapshot's closure is derived from what streamed past: for a checkpoint-scope snapshot
//! `S`, `checkpoints/S/checkpoint.json`, every object it names (execution state, memory manifest,
//! disk generations, device states) and every object the memory manifest's extents name, every
//! layer of its disk generations (`checkpoints/S/layers/…`) and the directory payloads of its
//! owned volumes (`checkpoints/S/owned/…`); for a file-scope snapshot, the directory payloads and
//! disk layers of the owned volumes its descriptor records (`snapshots/S/owned/…`,
//! `snapshots/S/layers/…`). Then:
//! - every checkpoint or owned-volume entry of the inventory is in a closure, owned by that
//!   closure's snapshot, with no recorded integrity (0.7.13 writes `null`), and every closure
//!   member has an entry (included, or omitted as a declared dependency);
//! - `checkpoint.json`'s SHA-256 is the descriptor's `checkpoint_root` and its `checkpoint_id`
//!   the descriptor's; the descriptor's and the checkpoint's owned volumes are equal; the memory
//!   manifest and the disk generations share the checkpoint's architecture and epoch, no volume
//!   repeats, every owned disk is one of the checkpoint's disks; the execution state is at most
//!   512 MiB and every memory extent lies inside its object;
//! - every present disk layer has its `file_size` and, when recorded, its `integrity_root`
//!   (`microsandbox.checkpoint-file/1`, recomputed while it streamed); an owned disk layer's
//!   capacity is its `virtual_size`; every present owned payload has its size and SHA-256
//!   (objects and `files/<digest>` were checked against their names as they ended).

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::archive::{capacity, Archive, Seen};
use super::checkpoint::{self, DiskLayerRef, MAX_EXECUTION_STATE_BYTES};
use super::descriptor::State;
use super::error::MsbError;
use super::inventory::{EntryKind, Inventory};
use super::owned::{OwnedData, OwnedPayload, OwnedVolume};
use crate::error::Error;
use crate::hex;
use crate::report::{MsbCheckpoint, MsbClosureMember};

/// What a closure says a member is.
#[derive(Debug, Clone, Copy)]
enum Content<'a> {
    /// `checkpoint.json`.
    Root,
    /// An object (named by its digest).
    Object,
    /// A disk layer; `true` for a layer of an owned disk.
    Layer(&'a DiskLayerRef, bool),
    /// An owned directory payload.
    Payload(&'a OwnedPayload),
}

/// One member a closure references.
#[derive(Debug)]
struct Expect<'a> {
    owner: &'a str,
    kind: EntryKind,
    content: Content<'a>,
}

fn msb(e: MsbError) -> Error {
    Error::Msb(e)
}

fn bind(path: &str, why: &'static str) -> Error {
    msb(MsbError::ClosureBinding { path: path.to_string(), why })
}

fn is_closure_kind(kind: EntryKind) -> bool {
    matches!(
        kind,
        EntryKind::CheckpointRoot
            | EntryKind::CheckpointObject
            | EntryKind::CheckpointDiskLayer
            | EntryKind::OwnedDirectoryPayload
            | EntryKind::OwnedDiskLayer
    )
}

/// Adds the owned volumes' members under `prefix` (`snapshots/S` or `checkpoints/S`); the
/// layers of owned disks only for a file snapshot (a checkpoint's are among its disks).
fn owned_members<'a>(
    expected: &mut BTreeMap<String, Expect<'a>>,
    owner: &'a str,
    prefix: &str,
    volumes: &'a [OwnedVolume],
    with_disks: bool,
) {
    for v in volumes {
        for (rel, p) in v.directory_payloads() {
            let e = Expect { owner, kind: EntryKind::OwnedDirectoryPayload, content: Content::Payload(p) };
            expected.insert(alloc::format!("{prefix}/{rel}"), e);
        }
        if let (OwnedData::Disk(g), true) = (&v.data, with_disks) {
            for l in &g.layers {
                let e = Expect { owner, kind: EntryKind::OwnedDiskLayer, content: Content::Layer(l, true) };
                expected.insert(alloc::format!("{prefix}/layers/{}", l.file_name()), e);
            }
        }
    }
}

/// The closure checks and the report's `checkpoints` and `closure`.
pub(super) fn check(
    a: &Archive,
    inv: &Inventory,
    present: &BTreeMap<&str, &Seen>,
) -> Result<(Vec<MsbCheckpoint>, Vec<MsbClosureMember>), Error> {
    let entry_of = |path: &str| {
        inv.entries
            .binary_search_by(|e| e.path.as_bytes().cmp(path.as_bytes()))
            .ok()
            .and_then(|i| inv.entries.get(i))
    };
    let mut expected: BTreeMap<String, Expect> = BTreeMap::new();
    let mut summaries = Vec::new();
    for d in &a.descriptors {
        let ds = &d.descriptor;
        let snap = ds.snapshot_id.as_str();
        let State::Checkpoint { checkpoint_id, checkpoint_root, .. } = &ds.state else {
            owned_members(&mut expected, snap, &alloc::format!("snapshots/{snap}"), &ds.owned_volumes, true);
            continue;
        };
        let prefix = alloc::format!("checkpoints/{snap}");
        let root_path = alloc::format!("{prefix}/checkpoint.json");
        let closure = a.closures.get(snap);
        let Some(root) = closure.and_then(|c| c.root.as_ref()) else {
            return Err(msb(MsbError::ClosureMissing(root_path)));
        };
        let closure = closure.ok_or_else(|| msb(MsbError::ClosureMissing(root_path.clone())))?;
        if closure.root_digest != *checkpoint_root {
            return Err(msb(MsbError::ContentDigest {
                path: root_path,
                expected: checkpoint_root.clone(),
                computed: closure.root_digest.clone(),
            }));
        }
        if root.checkpoint_id != *checkpoint_id {
            return Err(bind(&root_path, "its checkpoint_id is not the descriptor's state.checkpoint_id"));
        }
        if root.owned_volumes != ds.owned_volumes {
            return Err(bind(
                &root_path,
                "snapshot descriptor and checkpoint owned storage inventories disagree",
            ));
        }
        expected.insert(
            root_path.clone(),
            Expect { owner: snap, kind: EntryKind::CheckpointRoot, content: Content::Root },
        );
        let mut objects: Vec<&str> = root.direct_objects().collect();
        let Some(memory) = closure.memory.as_ref() else {
            return Err(bind(
                &checkpoint::object_path(snap, &root.memory),
                "the memory manifest is not in the archive",
            ));
        };
        if memory.architecture != root.architecture || memory.pause_generation != root.pause_generation {
            return Err(bind(&root_path, "memory state does not belong to the checkpoint epoch"));
        }
        objects.extend(memory.extents.iter().filter_map(|e| e.object.as_ref().map(|(o, _)| o.as_str())));
        let mut volumes: Vec<&str> = Vec::new();
        let mut disk_layers = 0u32;
        for id in &root.disks {
            let Some(disk) = closure.disks.get(id) else {
                return Err(bind(
                    &checkpoint::object_path(snap, id),
                    "a disk generation is not in the archive",
                ));
            };
            if disk.pause_generation != root.pause_generation {
                return Err(bind(&root_path, "disk generation does not belong to the checkpoint epoch"));
            }
            if volumes.contains(&disk.volume_id.as_str()) {
                return Err(bind(&root_path, "checkpoint repeats a logical disk volume"));
            }
            volumes.push(&disk.volume_id);
            let owned_disk =
                root.owned_volumes.iter().any(|v| matches!(&v.data, OwnedData::Disk(g) if g == disk));
            for l in &disk.layers {
                disk_layers = disk_layers.saturating_add(1);
                let e = Expect {
                    owner: snap,
                    kind: EntryKind::CheckpointDiskLayer,
                    content: Content::Layer(l, owned_disk),
                };
                expected.insert(alloc::format!("{prefix}/layers/{}", l.file_name()), e);
            }
        }
        for v in &root.owned_volumes {
            if let OwnedData::Disk(g) = &v.data {
                if !closure.disks.values().any(|d| d == g) {
                    return Err(bind(&root_path, "owned disk is absent from the checkpoint closure"));
                }
            }
        }
        objects.sort_unstable();
        objects.dedup();
        for o in &objects {
            let e = Expect { owner: snap, kind: EntryKind::CheckpointObject, content: Content::Object };
            expected.insert(checkpoint::object_path(snap, o), e);
        }
        // Sizes 0.7.13 checks when it opens the closure.
        let size_of = |id: &str| entry_of(&checkpoint::object_path(snap, id)).map(|e| e.apparent_size);
        if size_of(&root.execution_state).is_some_and(|n| n > MAX_EXECUTION_STATE_BYTES) {
            return Err(bind(
                &checkpoint::object_path(snap, &root.execution_state),
                "execution state exceeds 512 MiB",
            ));
        }
        for e in &memory.extents {
            if let Some((o, offset)) = &e.object {
                let end = offset.checked_add(e.length);
                if let Some(size) = size_of(o) {
                    if end.is_none_or(|end| end > size) {
                        return Err(bind(
                            &checkpoint::object_path(snap, o),
                            "memory extent exceeds its immutable object",
                        ));
                    }
                }
            }
        }
        owned_members(&mut expected, snap, &prefix, &root.owned_volumes, false);
        let owned_payloads = root.owned_volumes.iter().map(|v| v.directory_payloads().len()).sum::<usize>();
        summaries.push(MsbCheckpoint {
            snapshot_id: snap.to_string(),
            checkpoint_id: checkpoint_id.clone(),
            checkpoint_root: checkpoint_root.clone(),
            architecture: root.architecture.clone(),
            capture_intent: root.capture_intent.clone(),
            objects: u32::try_from(objects.len()).unwrap_or(u32::MAX),
            disk_layers,
            owned_payloads: u32::try_from(owned_payloads).unwrap_or(u32::MAX),
            bytes: 0,
            not_included: 0,
        });
    }

    let mut members = Vec::new();
    for e in inv.entries.iter().filter(|e| is_closure_kind(e.kind)) {
        let Some(x) = expected.get(&e.path) else {
            return Err(msb(MsbError::ClosureUnreferenced(e.path.clone())));
        };
        if e.owner_snapshot.as_deref() != Some(x.owner) || e.kind != x.kind {
            return Err(bind(&e.path, "its owner_snapshot or kind is not the closure's"));
        }
        if e.integrity.is_some() {
            return Err(bind(
                &e.path,
                "records an integrity (0.7.13 writes null; the closure binds the content)",
            ));
        }
        let m = present.get(e.path.as_str());
        let verified = match (m, x.content) {
            (None, _) => None,
            (Some(m), Content::Root | Content::Object) => m.digests.sha256.as_ref().map(hex::sha256_digest),
            (Some(m), Content::Payload(p)) => {
                let computed = m.digests.sha256.as_ref().map(|d| hex::encode(d)).unwrap_or_default();
                if m.apparent != p.bytes {
                    return Err(bind(&e.path, "owned directory payload has a different size"));
                }
                if computed != p.digest {
                    return Err(msb(MsbError::ContentDigest {
                        path: e.path.clone(),
                        expected: alloc::format!("sha256:{}", p.digest),
                        computed: alloc::format!("sha256:{computed}"),
                    }));
                }
                Some(alloc::format!("sha256:{computed}"))
            }
            (Some(m), Content::Layer(l, owned_disk)) => {
                if m.apparent != l.file_size {
                    return Err(bind(&e.path, "disk layer length differs from captured file size"));
                }
                if owned_disk {
                    let payload = capacity(&l.format, m.apparent, &m.head);
                    if payload != Some(l.virtual_size) {
                        return Err(msb(MsbError::VirtualSize {
                            path: e.path.clone(),
                            recorded: l.virtual_size,
                            payload,
                        }));
                    }
                }
                match &l.integrity_root {
                    None => None,
                    Some(want) => {
                        let got = m.digests.merkle.as_ref().map(|r| r.digest()).unwrap_or_default();
                        if got != *want {
                            return Err(msb(MsbError::ContentDigest {
                                path: e.path.clone(),
                                expected: want.clone(),
                                computed: got,
                            }));
                        }
                        Some(got)
                    }
                }
            }
        };
        if let Some(s) = summaries.iter_mut().find(|s| s.snapshot_id == x.owner) {
            if e.included {
                s.bytes = s.bytes.saturating_add(e.apparent_size);
            } else {
                s.not_included = s.not_included.saturating_add(1);
            }
        }
        members.push(MsbClosureMember {
            path: e.path.clone(),
            kind: e.kind.as_str().to_string(),
            owner_snapshot: x.owner.to_string(),
            included: e.included,
            encoded_size: e.encoded_size,
            apparent_size: e.apparent_size,
            sparse: m.is_some_and(|m| m.sparse),
            verified,
        });
    }
    if let Some(path) = expected.keys().find(|p| entry_of(p).is_none()) {
        return Err(msb(MsbError::ClosureMissing(path.clone())));
    }
    Ok((summaries, members))
}
