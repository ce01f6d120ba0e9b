//! Cross-cutting test support.
pub mod builder;
pub mod fixtures;
