//! Why a G2 ("released flat", microsandbox 0.6.7 – 0.6.16) archive is refused: its descriptor,
//! its inventory, and the rules that bind them to the tar members. Failures that are the same as
//! in a G3 archive (a member the inventory does not list, a size or transport digest that
//! differs, an upper whose content lacks its recorded integrity…) are reported with the G3
//! [`MsbError`](crate::generation::g3::MsbError) codes instead.

use alloc::string::String;
use core::fmt;

use super::descriptor::ReleasedDescriptorError;
use super::inventory::ReleasedInventoryError;

/// A G2 archive breaks a rule of its own (`Error::MsbG2`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum G2Error {
    /// A `snapshots/<hex>/snapshot.json` is not a released flat descriptor 0.7.13 translates.
    Descriptor {
        /// The member path.
        path: String,
        /// What was wrong.
        error: ReleasedDescriptorError,
    },
    /// `archive.json` is not a released inventory 0.7.13 accepts.
    Inventory(ReleasedInventoryError),
    /// A descriptor's directory is not the SHA-256 of its bytes (its released identity).
    DescriptorDirectory {
        /// The member path.
        path: String,
        /// `sha256:<hex>` of its bytes.
        digest: String,
    },
    /// An upper file and its descriptor do not match (absent, another size, or a file under
    /// `files/<hex>/` that its descriptor does not name).
    Upper {
        /// The upper's (or its descriptor's) member path.
        path: String,
        /// Why.
        why: &'static str,
    },
    /// The archive holds no snapshot descriptor.
    NoSnapshot,
    /// Two descriptors map to the same 0.7 snapshot id (`snap_` + the first 32 hex digits).
    IdCollision(String),
    /// The parent links do not leave exactly one head, or the inventory names another head.
    Head(&'static str),
    /// A member of another generation (a 0.6.2 `<prefix>/manifest.json`, a 0.7 `layers/…`,
    /// `snapshots/snap_…/…` or `checkpoints/…`) in a released archive.
    Foreign {
        /// The member path.
        path: String,
        /// The generation its shape belongs to.
        generation: &'static str,
    },
    /// A path no released archive holds (0.7.13: "unsupported path").
    UnexpectedPath(String),
}

impl G2Error {
    /// Stable identifier.
    pub fn code(&self) -> &'static str {
        match self {
            G2Error::Descriptor { error, .. } => error.code(),
            G2Error::Inventory(error) => error.code(),
            G2Error::DescriptorDirectory { .. } => "msb_g2_descriptor_directory",
            G2Error::Upper { .. } => "msb_g2_upper_binding",
            G2Error::NoSnapshot => "msb_g2_no_snapshot",
            G2Error::IdCollision(_) => "msb_g2_id_collision",
            G2Error::Head(_) => "msb_g2_head",
            G2Error::Foreign { .. } => "msb_g2_foreign_member",
            G2Error::UnexpectedPath(_) => "msb_g2_unexpected_path",
        }
    }
}

impl fmt::Display for G2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            G2Error::Descriptor { path, error } => write!(f, "'{}': {error}", path.escape_debug()),
            G2Error::Inventory(error) => write!(f, "{error}"),
            G2Error::DescriptorDirectory { path, digest } => {
                write!(f, "'{}': the directory is not the descriptor's digest {digest}", path.escape_debug())
            }
            G2Error::Upper { path, why } => write!(f, "upper '{}': {why}", path.escape_debug()),
            G2Error::NoSnapshot => f.write_str("the archive holds no snapshot descriptor"),
            G2Error::IdCollision(id) => {
                write!(f, "two descriptors map to the same 0.7 snapshot id {}", id.escape_debug())
            }
            G2Error::Head(why) => f.write_str(why),
            G2Error::Foreign { path, generation } => write!(
                f,
                "'{}' is a member of a microsandbox {generation} archive, not of a released one",
                path.escape_debug()
            ),
            G2Error::UnexpectedPath(path) => {
                write!(f, "'{}' is not a path of a released archive", path.escape_debug())
            }
        }
    }
}
