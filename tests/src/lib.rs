//! Cross-cutting test support.
pub mod fixtures;
