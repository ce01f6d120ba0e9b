//! Cross-cutting test support.
