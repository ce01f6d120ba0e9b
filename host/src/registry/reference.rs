//! Registry references on the command line: `REGISTRY/REPO:TAG` or `REGISTRY/REPO@DIGEST`,
//! parsed and normalised by the core's reference rules (the ones microsandbox 0.6.2 applies to
//! image references: `alpine` is `docker.io/library/alpine:latest`).

use std::fmt;

use snapbundle_core::reference::{parse_reference, Reference};

use crate::error::HostError;

/// A checked, normalised registry reference (`registry/repository:tag` or
/// `registry/repository@sha256:…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target(Reference);

impl Target {
    /// The registry as written after normalisation (`docker.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.0.registry
    }

    /// The host to talk to: Docker Hub's API lives at `index.docker.io`, not `docker.io`.
    pub fn resolve_registry(&self) -> &str {
        match self.0.registry.as_str() {
            "docker.io" => "index.docker.io",
            r => r,
        }
    }

    /// The repository path (`library/alpine`, `snaps/web`).
    pub fn repository(&self) -> &str {
        &self.0.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.0.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&str> {
        self.0.digest.as_deref()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A repository of the same registry given by name (`--mount-from`), normalised as references
/// are (`alpine` is `library/alpine` on Docker Hub).
pub fn repository_of(registry: &str, name: &str) -> Result<String, HostError> {
    parse_reference(&format!("{registry}/{name}"))
        .ok()
        .filter(|r| r.registry == registry && r.tag.as_deref() == Some("latest") && r.digest.is_none())
        .map(|r| r.repository)
        .ok_or_else(|| {
            HostError::Usage(format!("{name:?} is not a repository name (expected e.g. snaps/base)"))
        })
}

/// Parses a reference for a push (a tag is required: the manifest is put under it) or a pull
/// (a tag or a digest).
pub fn parse(s: &str, for_push: bool) -> Result<Target, HostError> {
    let r = parse_reference(s)
        .map_err(|e| HostError::Usage(format!("invalid registry reference {s:?}: {e} (expected REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:DIGEST)")))?;
    if for_push && r.digest.is_some() {
        return Err(HostError::Usage(format!(
            "push needs a tag to put the manifest under, not a digest: {s:?} (the pushed manifest's digest is printed)"
        )));
    }
    if let Some(d) = &r.digest {
        if !snapbundle_core::registry_artifact::is_sha256_digest(d) {
            return Err(HostError::Usage(format!("only lowercase sha256 digests are supported: {s:?}")));
        }
    }
    Ok(Target(r))
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
        assert!(matches!(parse("r:5000/snaps/UPPER", false), Err(HostError::Usage(_))));
        let hub = parse("alpine:3", true).expect("hub");
        assert_eq!(
            (hub.registry(), hub.resolve_registry(), hub.repository()),
            ("docker.io", "index.docker.io", "library/alpine")
        );
    }

    #[test]
    fn mount_sources_are_repository_names() {
        assert_eq!(repository_of("r:5000", "snaps/base").ok().as_deref(), Some("snaps/base"));
        assert_eq!(repository_of("docker.io", "alpine").ok().as_deref(), Some("library/alpine"));
        assert!(repository_of("r:5000", "snaps/base:v1").is_err());
        assert!(repository_of("r:5000", "Snaps").is_err());
        assert!(repository_of("r:5000", "other:5000/x").is_err());
    }
}
