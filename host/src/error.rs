//! Host errors: an invalid bundle or stored snapshot versus everything else (usage, I/O).

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a host operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum HostError {
    /// The bundle (or snapshot) is invalid; the core says why.
    Invalid(snapbundle_core::Error),
    /// An I/O operation failed.
    Io {
        /// What was being done, e.g. "reading bundle.tar.zst".
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The request cannot be carried out as asked (a fault of the arguments).
    Usage(String),
    /// A snapshot in the store (or an image cache file) is not fit to export: its parent chain
    /// loops, its directory holds a symbolic link, a directory or a special file, or a file name
    /// that import would reject. A fault of the stored data, not of the arguments: exit 1.
    StoreFault(String),
    /// A snapshot, file or digest does not exist.
    NotFound(String),
    /// The target already exists (a snapshot directory, or a cache file with other bytes).
    Conflict(String),
    /// A valid snapshot that the other archive generation cannot hold (`convert`): exit 1.
    Unrepresentable {
        /// The snapshot (its digest or id).
        snapshot: String,
        /// Why.
        reason: String,
    },
    /// The bundle is invalid, as judged by the sandboxed validator (the core's code, kind and
    /// message, carried across the sandbox boundary as text).
    Rejected(Rejection),
    /// The sandbox could not deliver a verdict (memory cap, deadline, trap, inconsistency).
    #[cfg(feature = "sandbox")]
    Sandbox(crate::sandbox::error::SandboxError),
    /// An OCI registry refused a request, could not be reached, or served something that is not
    /// a snapbundle artifact or not the bytes its digest names (see [`crate::registry`]).
    Registry {
        /// What kind of failure it is ([`RegistryErrorCode::as_str`] gives its stable text).
        code: RegistryErrorCode,
        /// What failed, naming the registry, repository and blob.
        message: String,
    },
}

/// The kind of a [`HostError::Registry`] failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RegistryErrorCode {
    /// The registry refused the credentials (401/403, or its token endpoint did).
    Auth,
    /// The registry could not be reached, or kept failing transiently until the attempts ran out.
    Unreachable,
    /// The repository, tag, manifest or blob does not exist.
    NotFound,
    /// Any other refusal or protocol violation.
    Error,
    /// A blob (or manifest) whose bytes are not the ones its digest names.
    BlobDigestMismatch,
    /// What the registry serves is not a snapbundle artifact (or not a well-formed one).
    InvalidArtifact,
}

impl RegistryErrorCode {
    /// The stable identifier: `registry_auth`, `registry_unreachable`, `registry_not_found`,
    /// `registry_error`, `blob_digest_mismatch` or `invalid_artifact`.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryErrorCode::Auth => "registry_auth",
            RegistryErrorCode::Unreachable => "registry_unreachable",
            RegistryErrorCode::NotFound => "registry_not_found",
            RegistryErrorCode::Error => "registry_error",
            RegistryErrorCode::BlobDigestMismatch => "blob_digest_mismatch",
            RegistryErrorCode::InvalidArtifact => "invalid_artifact",
        }
    }
}

impl fmt::Display for RegistryErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejection by the core, as text: what crosses the sandbox boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The core's `Error::code()`.
    pub code: String,
    /// The core's `Error::kind()`.
    pub kind: String,
    /// The core's `Display` text.
    pub message: String,
}

impl HostError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        HostError::Io { context: context.into(), source }
    }

    /// The layer that failed: the core's kind for invalid bundles, else `store` (a fault of
    /// stored data), `io`, `usage`, `not_found`, `conflict`, `sandbox` or `registry`.
    pub fn kind(&self) -> &str {
        match self {
            HostError::Invalid(e) => e.kind(),
            HostError::Rejected(r) => &r.kind,
            #[cfg(feature = "sandbox")]
            HostError::Sandbox(_) => "sandbox",
            HostError::Io { .. } => "io",
            HostError::NotFound(_) => "not_found",
            HostError::Conflict(_) => "conflict",
            HostError::Unrepresentable { .. } => "convert",
            HostError::Usage(_) => "usage",
            HostError::StoreFault(_) => "store",
            HostError::Registry { .. } => "registry",
        }
    }

    /// Process exit code: 1 invalid bundle, snapshot (a stored one that cannot be exported as it
    /// is included) or registry artifact (a blob that does not match its digest included),
    /// 2 usage, I/O, registry access or not found, 3 conflict.
    pub fn exit_code(&self) -> u8 {
        match self {
            HostError::Invalid(_)
            | HostError::Rejected(_)
            | HostError::StoreFault(_)
            | HostError::Unrepresentable { .. } => 1,
            #[cfg(feature = "sandbox")]
            HostError::Sandbox(_) => 1,
            HostError::Io { .. } | HostError::Usage(_) | HostError::NotFound(_) => 2,
            HostError::Conflict(_) => 3,
            HostError::Registry { code, .. } => match code {
                RegistryErrorCode::BlobDigestMismatch | RegistryErrorCode::InvalidArtifact => 1,
                _ => 2,
            },
        }
    }

    /// Stable identifier: the core's code for invalid bundles, `invalid_snapshot` for a fault of
    /// stored data, `io`, `usage`, `not_found`, `already_exists` or a registry code otherwise.
    pub fn code(&self) -> &str {
        match self {
            HostError::Invalid(e) => e.code(),
            HostError::Rejected(r) => &r.code,
            #[cfg(feature = "sandbox")]
            HostError::Sandbox(e) => e.code(),
            HostError::Io { .. } => "io",
            HostError::Usage(_) => "usage",
            HostError::StoreFault(_) => "invalid_snapshot",
            HostError::NotFound(_) => "not_found",
            HostError::Conflict(_) => "already_exists",
            HostError::Unrepresentable { .. } => "not_representable",
            HostError::Registry { code, .. } => code.as_str(),
        }
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Invalid(e) => write!(f, "invalid bundle: {e}"),
            HostError::Rejected(r) => write!(f, "invalid bundle: {}", r.message),
            #[cfg(feature = "sandbox")]
            HostError::Sandbox(e) => write!(f, "{e}"),
            HostError::Io { context, source } => write!(f, "{context}: {source}"),
            HostError::Usage(msg)
            | HostError::StoreFault(msg)
            | HostError::NotFound(msg)
            | HostError::Conflict(msg) => f.write_str(msg),
            HostError::Registry { message, .. } => f.write_str(message),
            HostError::Unrepresentable { snapshot, reason } => {
                write!(f, "snapshot {snapshot} cannot be converted: {reason}")
            }
        }
    }
}

impl std::error::Error for HostError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HostError::Invalid(e) => Some(e),
            HostError::Io { source, .. } => Some(source),
            HostError::Usage(_)
            | HostError::StoreFault(_)
            | HostError::NotFound(_)
            | HostError::Conflict(_)
            | HostError::Rejected(_)
            | HostError::Unrepresentable { .. }
            | HostError::Registry { .. } => None,
            #[cfg(feature = "sandbox")]
            HostError::Sandbox(_) => None,
        }
    }
}

impl From<snapbundle_core::Error> for HostError {
    fn from(e: snapbundle_core::Error) -> Self {
        HostError::Invalid(e)
    }
}

/// A path for messages.
pub fn shown(p: &std::path::Path) -> String {
    PathBuf::from(p).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::HostError;

    /// Faults of stored data (a parent chain that loops: export's check, which no store on disk
    /// can trigger since each digest hashes its parent's; links or directories in a snapshot
    /// directory: `tests/export.rs`) exit 1 like an invalid snapshot; usage errors exit 2.
    #[test]
    fn store_faults_exit_1_and_usage_errors_2() {
        let e = HostError::StoreFault("the parent chain loops at sha256:00".into());
        assert_eq!((e.exit_code(), e.code(), e.kind()), (1, "invalid_snapshot", "store"));
        let e = HostError::Usage("zstd level 40 is out of range".into());
        assert_eq!((e.exit_code(), e.code(), e.kind()), (2, "usage", "usage"));
    }
}
