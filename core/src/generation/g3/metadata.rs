//! `snapshots/<snap_id>/metadata.json`: a snapshot's labels
//! (`{"schema":"microsandbox.snapshot-metadata/1","labels":{…}}`, at most 1 MiB), written only
//! when the snapshot has labels.
//!
//! Read strictly, like the descriptor: duplicate keys, unknown fields and non-string label values
//! are refused. (The inventory binds the file's bytes by SHA-256; its value is only reported.)

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};

use super::json::{self, Fields, Json};

/// The only metadata schema.
pub const SCHEMA: &str = "microsandbox.snapshot-metadata/1";
/// Largest accepted `metadata.json`.
pub const MAX_METADATA_BYTES: u64 = 1024 * 1024;

/// The labels of a `metadata.json`, or why it is refused.
pub fn parse_labels(bytes: &[u8]) -> Result<BTreeMap<String, String>, &'static str> {
    if bytes.len() as u64 > MAX_METADATA_BYTES {
        return Err("larger than 1 MiB");
    }
    let tree = json::parse(bytes).map_err(|_| "not JSON, or a repeated key")?;
    let mut f = Fields::of(&tree, "").map_err(|_| "not a JSON object")?;
    let schema = f.str("schema").map_err(|_| "no schema string")?;
    if schema != SCHEMA {
        return Err("unsupported schema (expected microsandbox.snapshot-metadata/1)");
    }
    let mut labels = BTreeMap::new();
    for (k, v) in f.obj("labels").map_err(|_| "no labels object")? {
        let Json::Str(v) = v else { return Err("a label value is not a string") };
        labels.insert(k.clone(), v.to_string());
    }
    f.done().map_err(|_| "unknown field")?;
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_strictly() {
        let ok = br#"{"schema":"microsandbox.snapshot-metadata/1","labels":{"a":"1","b":"2"}}"#;
        assert_eq!(parse_labels(ok).unwrap().len(), 2);
        assert!(parse_labels(br#"{"schema":"x","labels":{}}"#).is_err());
        assert!(parse_labels(br#"{"schema":"microsandbox.snapshot-metadata/1","labels":{"a":1}}"#).is_err());
        assert!(parse_labels(br#"{"schema":"microsandbox.snapshot-metadata/1","labels":{},"x":1}"#).is_err());
    }
}
