//! Test oracle: the real microsandbox 0.7.13 `Snapshot::load` / `Snapshot::save`, driven from the
//! command line with MSB_HOME set by the caller. Prints one JSON object.
//!   oracle0713 load ARCHIVE GROUP        load into $MSB_HOME, list what was installed
//!   oracle0713 save NAME_OR_PATH OUT [--plain] [--with-parents]
use std::path::{Path, PathBuf};

use microsandbox::snapshot::{LoadOpts, SaveOpts, Snapshot};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn files(root: &Path, dir: &Path, out: &mut Vec<Value>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".lock") || name == ".msb-leases" {
            continue;
        }
        let md = std::fs::symlink_metadata(&p).unwrap();
        if md.is_dir() {
            files(root, &p, out);
        } else if md.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            out.push(json!({"path": rel, "size": md.len(), "sha256": format!("sha256:{:x}", Sha256::digest(&bytes))}));
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let home = PathBuf::from(std::env::var("MSB_HOME").expect("MSB_HOME"));
    let v = match args.get(1).map(String::as_str) {
        Some("load") => {
            let opts = LoadOpts { group: Some(args[3].clone()), ..Default::default() };
            match Snapshot::load_with_options(Path::new(&args[2]), opts).await {
                Err(e) => json!({"ok": false, "error": e.to_string()}),
                Ok(h) => {
                    let group_dir = home.join("snapshots").join(&args[3]);
                    let mut snaps = Vec::new();
                    for s in Snapshot::list_dir(&group_dir).await.unwrap_or_default() {
                        snaps.push(json!({
                            "id": s.id().to_string(),
                            "digest": s.digest(),
                            "labels": s.labels(),
                            "manifest": serde_json::to_value(s.manifest()).unwrap(),
                        }));
                    }
                    let mut f = Vec::new();
                    files(&home, &home.join("snapshots"), &mut f);
                    files(&home, &home.join("cache"), &mut f);
                    json!({"ok": true, "head": h.id(), "head_digest": h.digest(), "snapshots": snaps, "files": f})
                }
            }
        }
        Some("save") => {
            let opts = SaveOpts {
                plain_tar: args.iter().any(|a| a == "--plain"),
                with_parents: args.iter().any(|a| a == "--with-parents"),
                with_image: args.iter().any(|a| a == "--with-image"),
                ..Default::default()
            };
            match Snapshot::save(&args[2], Path::new(&args[3]), opts).await {
                Err(e) => json!({"ok": false, "error": e.to_string()}),
                Ok(()) => json!({"ok": true}),
            }
        }
        _ => json!({"ok": false, "error": "usage: oracle0713 load ARCHIVE GROUP | save NAME OUT [--plain] [--with-parents] [--with-image]"}),
    };
    println!("{}", serde_json::to_string_pretty(&v).unwrap());
}
