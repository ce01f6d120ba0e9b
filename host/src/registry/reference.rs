//! Registry references on the command line: `REGISTRY/REPO:TAG` or `REGISTRY/REPO@DIGEST`,
//! parsed and normalised by the core's reference rules (the ones microsandbox 0.6.2 applies to
//! image references: `alpine` is `docker.io/library/alpine:latest`).

use snapbundle_core::reference::parse_reference;

use crate::error::HostError;

/// Parses a reference for a push (a tag is required: the manifest is put under it) or a pull
/// (a tag or a digest).
pub fn parse(s: &str, for_push: bool) -> Result<oci_client::Reference, HostError> {
    let r = parse_reference(s)
        .map_err(|e| HostError::Usage(format!("invalid registry reference {s:?}: {e} (expected REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:DIGEST)")))?;
    if for_push && r.digest.is_some() {
        return Err(HostError::Usage(format!(
            "push needs a tag to put the manifest under, not a digest: {s:?} (the pushed manifest's digest is printed)"
        )));
    }
    if let Some(d) = &r.digest {
        if !crate::registry::format::is_sha256_digest(d) {
            return Err(HostError::Usage(format!("only lowercase sha256 digests are supported: {s:?}")));
        }
    }
    // The core's normalised form is exactly oci-spec's `to_string()`, which oci-client parses.
    let normalized = r.to_string();
    normalized
        .parse::<oci_client::Reference>()
        .map_err(|e| HostError::Usage(format!("invalid registry reference {s:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_requires_a_tag_for_push() {
        let r = parse("127.0.0.1:5000/snaps/web:v1", true).map(|r| r.to_string()).map_err(|e| e.to_string());
        assert_eq!(r.as_deref(), Ok("127.0.0.1:5000/snaps/web:v1"));
        let d = format!("127.0.0.1:5000/snaps/web@sha256:{}", "a".repeat(64));
        assert!(matches!(parse(&d, true), Err(HostError::Usage(_))));
        assert!(parse(&d, false).is_ok());
        assert!(matches!(parse("UPPER/x", false), Err(HostError::Usage(_))));
    }
}
