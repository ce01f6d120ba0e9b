//! Why the sandbox could not deliver a verdict: a leaf module (imports nothing of the crate),
//! so that [`crate::error::HostError`] can carry it without depending on the sandbox itself.

use std::fmt;
use std::time::Duration;

/// Why the sandbox could not deliver a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SandboxError {
    /// The component could not be compiled or instantiated.
    Setup(String),
    /// The guest wanted more memory than [`super::SandboxOptions::memory_limit`].
    MemoryLimit(u64),
    /// A call ran longer than [`super::SandboxOptions::deadline`].
    Deadline(Duration),
    /// The guest trapped (a bug in the guest).
    Trap(String),
    /// The guest's events or report disagree with what the host saw.
    Protocol(String),
}

impl SandboxError {
    /// Stable identifier.
    pub fn code(&self) -> &'static str {
        match self {
            SandboxError::Setup(_) => "sandbox_setup",
            SandboxError::MemoryLimit(_) => "sandbox_memory_limit",
            SandboxError::Deadline(_) => "sandbox_deadline",
            SandboxError::Trap(_) => "sandbox_trap",
            SandboxError::Protocol(_) => "sandbox_protocol",
        }
    }
}

impl fmt::Display for SandboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SandboxError::Setup(m) => write!(f, "sandbox: {m}"),
            SandboxError::MemoryLimit(cap) => write!(
                f,
                "sandbox: memory limit reached: the validator needed more than {} MiB (raise --sandbox-memory-mib)",
                cap >> 20
            ),
            SandboxError::Deadline(d) => write!(
                f,
                "sandbox: deadline reached: one call computed for more than {:.3} s (raise --sandbox-deadline-secs)",
                d.as_secs_f64()
            ),
            SandboxError::Trap(m) => write!(f, "sandbox: the validator trapped: {m}"),
            SandboxError::Protocol(m) => write!(f, "sandbox: the validator's output is inconsistent: {m}"),
        }
    }
}
