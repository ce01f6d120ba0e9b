//! Counted nouns for messages, in one place (a leaf module: errors, plans and renderers use it).

use std::fmt::Display;

/// `n` and the noun that fits it: `count(1, "snapshot", "snapshots")` → `1 snapshot`,
/// `count(2, "directory", "directories")` → `2 directories`.
pub fn count<N: Copy + PartialEq + From<u8> + Display>(n: N, one: &str, many: &str) -> String {
    format!("{n} {}", if n == N::from(1) { one } else { many })
}
