//! Cross-cutting test support.
pub mod alloc_counter;
pub mod builder;
#[path = "../corpus/generator.rs"]
pub mod corpus;
pub mod fixtures;
pub mod msb;
pub mod parity;
pub mod released;
pub mod sparse;
