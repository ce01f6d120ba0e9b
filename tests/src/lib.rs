//! Cross-cutting test support.
pub mod builder;
pub mod fixtures;
pub mod sparse;
