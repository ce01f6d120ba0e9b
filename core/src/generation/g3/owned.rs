//! Owned volumes: storage whose lifetime belongs to one sandbox, captured with its snapshot
//! (0.7.13 `microsandbox_types::snapshot::owned`). A file snapshot records them in the descriptor
//! extension `microsandbox.owned-volumes` (a must-understand key); a checkpoint in its
//! `checkpoint.json` (`owned_volumes`), and the two must agree.
//!
//! A directory volume is a namespace file `owned/<mount_id>/directory.bin` and content files
//! `owned/<mount_id>/files/<sha256 hex>`, each bound by its SHA-256 and size; a disk volume is a
//! disk generation whose layers are `layers/<layer_id>.<format>`.
//!
//! Parsed strictly except `mount.options` (mount flags and owner overrides), which 0.7.13 reads
//! with defaults and without refusing unknown fields: it must be an object and is compared, not
//! interpreted.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use sha2::{Digest as _, Sha256};

use super::checkpoint::{is_member_id, CheckpointError, DiskGeneration};
use super::json::{self, Fields, Json};

/// The descriptor extension (and must-understand key) of owned volumes.
pub const OWNED_VOLUMES_EXTENSION: &str = "microsandbox.owned-volumes";
/// Most owned volumes of one snapshot.
pub const MAX_OWNED_VOLUMES: usize = 256;

/// One file of a directory volume: its unqualified SHA-256 and length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedPayload {
    /// 64 lowercase hex digits.
    pub digest: String,
    /// Exact length.
    pub bytes: u64,
}

/// What an owned volume's capture holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedData {
    /// A disk generation.
    Disk(DiskGeneration),
    /// A directory: its namespace file and its content files (sorted, unique).
    Directory {
        /// `directory.bin`.
        descriptor: OwnedPayload,
        /// `files/<digest>`.
        files: Vec<OwnedPayload>,
    },
}

/// One captured owned volume.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedVolume {
    /// The mount tag derived from the guest path.
    pub mount_id: String,
    /// The whole `mount` value (compared between descriptor and checkpoint).
    pub mount: Json,
    /// Its guest path.
    pub guest: String,
    /// A disk volume's capacity in MiB (`None` for a directory).
    pub capacity_mib: Option<u32>,
    /// The capture.
    pub data: OwnedData,
}

impl OwnedVolume {
    /// The directory payloads as `(path relative to the snapshot or checkpoint, payload)`:
    /// `owned/<mount_id>/directory.bin`, then `owned/<mount_id>/files/<digest>`.
    pub fn directory_payloads(&self) -> Vec<(String, &OwnedPayload)> {
        let OwnedData::Directory { descriptor, .. } = &self.data else {
            return Vec::new();
        };
        let mut all = alloc::vec![(alloc::format!("owned/{}/directory.bin", self.mount_id), descriptor)];
        all.extend(self.directory_files());
        all
    }

    /// A directory volume's content files as `(path relative to the snapshot or checkpoint,
    /// payload)`: `owned/<mount_id>/files/<digest>` (its `directory.bin` is not one of them).
    pub fn directory_files(&self) -> Vec<(String, &OwnedPayload)> {
        let OwnedData::Directory { files, .. } = &self.data else {
            return Vec::new();
        };
        files.iter().map(|f| (alloc::format!("owned/{}/files/{}", self.mount_id, f.digest), f)).collect()
    }
}

fn invalid<T>(why: &'static str) -> Result<T, CheckpointError> {
    Err(CheckpointError::Invalid(why))
}

/// 0.7.13 `owned_volume_mount_id`: up to 11 characters of the guest path (without leading `/`),
/// each kept if ASCII alphanumeric or `-` and `_` otherwise, then `_` (when any), then the hex of
/// the first 4 bytes of SHA-256 of the guest path.
pub fn mount_id_of(guest: &str) -> String {
    let mut id: String = guest
        .trim_start_matches('/')
        .chars()
        .take(11)
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect();
    if !id.is_empty() {
        id.push('_');
    }
    let digest = Sha256::digest(guest.as_bytes());
    id.push_str(&crate::hex::encode(digest.get(..4).unwrap_or_default()));
    id
}

fn payload(v: &Json, path: &str) -> Result<OwnedPayload, CheckpointError> {
    let mut f = Fields::of(v, path)?;
    let p = OwnedPayload { digest: f.str("digest")?.to_string(), bytes: f.u64("bytes")? };
    f.done()?;
    let hex =
        p.digest.len() == 64 && p.digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex {
        return invalid("owned directory payload has an invalid SHA-256 identity");
    }
    Ok(p)
}

fn volume(v: &Json) -> Result<OwnedVolume, CheckpointError> {
    let mut f = Fields::of(v, "owned_volumes[]")?;
    let mount_id = f.str("mount_id")?.to_string();
    let mount = f.req("mount")?.clone();
    let data = f.req("data")?;
    f.done()?;
    let mut m = Fields::of(&mount, "owned_volumes[].mount")?;
    let guest = m.str("guest")?.to_string();
    let mut s = Fields::of(m.req("storage")?, "owned_volumes[].mount.storage")?;
    let capacity_mib =
        match json::variant(s.req("kind")?, "owned_volumes[].mount.storage.kind", &["directory", "disk"])? {
            0 => {
                match s.opt("quota_mib") {
                    None | Some(Json::Null) => {}
                    Some(q) => {
                        u32::try_from(json::as_u64(q, "quota_mib")?)
                            .map_err(|_| json::wrong("quota_mib", "an unsigned 32-bit integer"))?;
                    }
                }
                None
            }
            _ => Some(s.u32("capacity_mib")?),
        };
    s.done()?;
    m.obj("options")?;
    json::variant(m.req("stat_virtualization")?, "stat_virtualization", &["strict", "relaxed", "off"])?;
    json::variant(m.req("host_permissions")?, "host_permissions", &["private", "mirror"])?;
    m.done()?;
    let mut d = Fields::of(data, "owned_volumes[].data")?;
    let data = match json::variant(d.req("kind")?, "owned_volumes[].data.kind", &["disk", "directory"])? {
        0 => OwnedData::Disk(DiskGeneration::from_json(d.req("generation")?, "generation")?),
        _ => OwnedData::Directory {
            descriptor: payload(d.req("descriptor")?, "descriptor")?,
            files: d.arr("files")?.iter().map(|p| payload(p, "files[]")).collect::<Result<Vec<_>, _>>()?,
        },
    };
    d.done()?;
    Ok(OwnedVolume { mount_id, mount: mount.clone(), guest, capacity_mib, data })
}

/// Parses and checks an owned-volume inventory (`validate_owned_volumes`).
pub fn parse(v: &Json, path: &str) -> Result<Vec<OwnedVolume>, CheckpointError> {
    let Json::Arr(items) = v else {
        return Err(json::wrong(path, "an array").into());
    };
    if items.len() > MAX_OWNED_VOLUMES {
        return invalid("owned volume count exceeds the format bound");
    }
    let volumes = items.iter().map(volume).collect::<Result<Vec<_>, _>>()?;
    for (i, v) in volumes.iter().enumerate() {
        let repeated = volumes.iter().take(i).any(|o| o.mount_id == v.mount_id || o.guest == v.guest);
        if !is_member_id(&v.mount_id) || repeated {
            return invalid("owned volume has an invalid or repeated mount identity");
        }
        if mount_id_of(&v.guest) != v.mount_id {
            return invalid("owned volume mount identity differs from its guest path");
        }
        if v.guest == "/"
            || !v.guest.starts_with('/')
            || v.guest.split('/').skip(1).any(|p| matches!(p, "" | "." | ".."))
        {
            return invalid("owned volume guest path is not canonical");
        }
        match (&v.data, v.capacity_mib) {
            (OwnedData::Disk(g), Some(capacity)) => {
                let bytes = u64::from(capacity).checked_mul(1024 * 1024);
                if capacity == 0
                    || g.device_id != v.mount_id
                    || g.layers.iter().any(|l| Some(l.virtual_size) != bytes)
                {
                    return invalid("owned disk generation differs from its storage specification");
                }
            }
            (OwnedData::Directory { files, .. }, None) => {
                if files.windows(2).any(|w| w.first().map(|a| &a.digest) >= w.get(1).map(|b| &b.digest)) {
                    return invalid("owned directory payloads must be sorted and unique");
                }
            }
            _ => return invalid("owned volume storage and captured backing kinds differ"),
        }
    }
    Ok(volumes)
}

/// A descriptor's owned volumes: the `microsandbox.owned-volumes` extension, which must then be
/// required (`Manifest::owned_volumes`); none without it.
pub fn of_descriptor(
    extension: Option<&Json>,
    requires: &[String],
) -> Result<Vec<OwnedVolume>, CheckpointError> {
    let Some(v) = extension else {
        return Ok(Vec::new());
    };
    if !requires.iter().any(|r| r == OWNED_VOLUMES_EXTENSION) {
        return invalid("owned volumes must be a required snapshot extension");
    }
    parse(v, OWNED_VOLUMES_EXTENSION)
}

/// The one-to-one binding of owned runtime resources (`resources[]` as `(id, binding)`) and
/// captured volumes (`validate_owned_resources`).
pub fn check_resources(
    volumes: &[OwnedVolume],
    resources: &[(&str, Vec<(&str, &str)>)],
) -> Result<(), CheckpointError> {
    let mut matched: Vec<&str> = Vec::new();
    for (_, binding) in resources {
        let get = |k: &str| binding.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let directory = get("role") == Some("owned_directory");
        let disk = get("lifecycle_owned") == Some("true");
        if !directory && !disk {
            continue;
        }
        if directory && disk {
            return invalid("owned resource has conflicting storage roles");
        }
        let Some(id) = get(if directory { "guest_tag" } else { "device_id" }) else {
            return invalid("owned resource has no mount identity");
        };
        let Some(volume) = volumes.iter().find(|v| v.mount_id == id) else {
            return invalid("owned resource has no required captured backing");
        };
        if matched.contains(&id) || directory != matches!(volume.data, OwnedData::Directory { .. }) {
            return invalid("owned resource binding is duplicated or has the wrong storage kind");
        }
        if disk && get("guest_path") != Some(volume.guest.as_str()) {
            return invalid("owned disk resource guest path differs from its inventory");
        }
        matched.push(id);
    }
    if matched.len() != volumes.len() {
        return invalid("owned captured backing has no corresponding runtime resource");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_ids_follow_guest_paths() {
        // The slug, `_`, then 4 bytes of SHA-256 of the path (`hashlib.sha256(b"/cache")`).
        assert_eq!(mount_id_of("/cache"), "cache_4f7cfe6f");
        assert_eq!(mount_id_of("/a b/long-directory-name"), "a_b_long-di_a372475b");
        assert_eq!(mount_id_of("/").len(), 8);
    }

    fn directory(guest: &str, id: &str, files: &str) -> String {
        alloc::format!(
            r#"[{{"data":{{"descriptor":{{"bytes":20,"digest":"{a}"}},"files":[{files}],"kind":"directory"}},"mount":{{"guest":"{guest}","host_permissions":"private","options":{{}},"stat_virtualization":"strict","storage":{{"kind":"directory","quota_mib":null}}}},"mount_id":"{id}"}}]"#,
            a = "a".repeat(64)
        )
    }

    fn code(text: &str) -> &'static str {
        let tree = json::parse(text.as_bytes()).unwrap();
        parse(&tree, "v").map(|_| "ok").unwrap_or_else(|e| e.code())
    }

    #[test]
    fn inventory_rules() {
        let id = mount_id_of("/cache");
        assert_eq!(code(&directory("/cache", &id, "")), "ok");
        assert_eq!(code(&directory("/cache", "cache_00000000", "")), "checkpoint_invalid");
        assert_eq!(code(&directory("/cache/../x", &mount_id_of("/cache/../x"), "")), "checkpoint_invalid");
        let (b, c) = ("b".repeat(64), "c".repeat(64));
        let sorted = alloc::format!(r#"{{"bytes":1,"digest":"{b}"}},{{"bytes":1,"digest":"{c}"}}"#);
        let unsorted = alloc::format!(r#"{{"bytes":1,"digest":"{c}"}},{{"bytes":1,"digest":"{b}"}}"#);
        assert_eq!(code(&directory("/cache", &id, &sorted)), "ok");
        assert_eq!(code(&directory("/cache", &id, &unsorted)), "checkpoint_invalid");
        assert_eq!(
            code(&directory("/cache", &id, "").replace("\"private\"", "\"public\"")),
            "checkpoint_wrong_type"
        );
    }
}
