//! Typed errors. Every rejection says what was wrong and where.
//!
//! [`Error`] groups the failures by layer (container, tar record, member name, manifest, snapshot
//! content, image cache, bundle, `.msb` archive, limits). Each leaf has a stable snake_case [`Error::code`], shared by
//! every front end, the corpus sidecars and the tests, and a `Display` text meant for people.

use alloc::string::String;
use core::fmt;

use crate::cache_meta::CacheError;
use crate::generation::g2::G2Error;
use crate::generation::g3::MsbError;

/// Where in the decompressed tar stream something went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// Byte offset of the member's header in the decompressed tar stream.
    pub offset: u64,
    /// Zero-based index of the tar header record (every header counts, long-name records too).
    pub index: Option<u32>,
    /// The member name, when it could be read.
    pub name: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.index, &self.name) {
            (Some(i), Some(n)) => write!(f, "entry #{i} '{}' at byte {}", n.escape_debug(), self.offset),
            (Some(i), None) => write!(f, "entry #{i} at byte {}", self.offset),
            (None, Some(n)) => write!(f, "'{}' at byte {}", n.escape_debug(), self.offset),
            (None, None) => write!(f, "byte {}", self.offset),
        }
    }
}

/// Why a bundle was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The outer container (zstd framing or the choice of container) is not acceptable.
    Container {
        /// Offset in the compressed input.
        offset: u64,
        /// What was wrong.
        error: ContainerError,
    },
    /// A tar record is malformed or outside the accepted grammar.
    Tar {
        /// The record.
        at: Location,
        /// What was wrong.
        error: TarError,
    },
    /// A `manifest.json` does not parse or validate.
    Manifest {
        /// The snapshot directory (archive prefix) holding it.
        prefix: String,
        /// What was wrong.
        error: ManifestError,
    },
    /// A snapshot's files do not match its manifest.
    Snapshot {
        /// The snapshot directory (archive prefix).
        prefix: String,
        /// What was wrong.
        error: SnapshotError,
    },
    /// The image cache members are inconsistent.
    Cache(CacheError),
    /// The bundle as a whole is unusable.
    Bundle(BundleError),
    /// A microsandbox 0.7 `.msb` archive (G3) breaks one of its rules.
    Msb(MsbError),
    /// A released (G2, microsandbox 0.6.7 – 0.6.16) archive breaks one of its own rules.
    MsbG2(G2Error),
    /// A configured limit was exceeded.
    Limit {
        /// Where, when it is tied to a member.
        at: Option<Location>,
        /// Which limit.
        error: LimitError,
    },
    /// The caller's event sink asked to stop; the caller holds the reason.
    Stopped,
    /// The validator was used after it had finished or failed.
    Finished,
}

impl Error {
    /// Stable snake_case identifier of the failure, identical on every front end.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Container { error, .. } => error.code(),
            Error::Tar { error, .. } => error.code(),
            Error::Manifest { error, .. } => error.code(),
            Error::Snapshot { error, .. } => error.code(),
            Error::Cache(error) => error.code(),
            Error::Bundle(error) => error.code(),
            Error::Msb(error) => error.code(),
            Error::MsbG2(error) => error.code(),
            Error::Limit { error, .. } => error.code(),
            Error::Stopped => "stopped",
            Error::Finished => "finished",
        }
    }

    /// The layer that rejected the bundle: `container`, `tar`, `manifest`, `snapshot`, `cache`,
    /// `bundle`, `msb` (a `.msb` or released archive's own rules), `limit` or `caller`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Container { .. } => "container",
            Error::Tar { .. } => "tar",
            Error::Manifest { .. } => "manifest",
            Error::Snapshot { .. } => "snapshot",
            Error::Cache(_) => "cache",
            Error::Bundle(_) => "bundle",
            Error::Msb(_) | Error::MsbG2(_) => "msb",
            Error::Limit { .. } => "limit",
            Error::Stopped | Error::Finished => "caller",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Container { offset, error } => write!(f, "{error} (at compressed byte {offset})"),
            Error::Tar { at, error } => write!(f, "{at}: {error}"),
            Error::Manifest { prefix, error } => {
                write!(f, "snapshot '{}': manifest.json: {error}", prefix.escape_debug())
            }
            Error::Snapshot { prefix, error } => write!(f, "snapshot '{}': {error}", prefix.escape_debug()),
            Error::Cache(error) => write!(f, "image cache: {error}"),
            Error::Bundle(error) => write!(f, "{error}"),
            Error::Msb(error) => write!(f, ".msb archive: {error}"),
            Error::MsbG2(error) => write!(f, "released archive (0.6.7 - 0.6.16): {error}"),
            Error::Limit { at: Some(at), error } => write!(f, "{at}: {error}"),
            Error::Limit { at: None, error } => write!(f, "{error}"),
            Error::Stopped => f.write_str("stopped by the caller"),
            Error::Finished => f.write_str("the validator has already finished"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// Failures of the outer container: the zstd frames or the container choice.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContainerError {
    /// No input at all.
    Empty,
    /// The leading bytes are neither zstd nor a tar header.
    Unknown,
    /// A known but unsupported container (gzip, xz, bzip2).
    Unsupported(&'static str),
    /// A frame declares a window larger than the cap.
    WindowTooLarge {
        /// Declared window size.
        requested: u64,
        /// The cap.
        max: u64,
    },
    /// A frame needs a dictionary.
    Dictionary(u32),
    /// A reserved bit or block type is set.
    Reserved(&'static str),
    /// A block is larger than the format allows.
    BlockTooLarge(u32),
    /// The frame's content checksum does not match the decoded bytes.
    Checksum {
        /// Stored in the frame.
        stored: u32,
        /// Computed over the decoded bytes.
        computed: u32,
    },
    /// The input ends inside a frame.
    Truncated,
    /// Bytes after the last frame are not another frame.
    TrailingData,
    /// The block decoder rejected the data.
    Corrupt(String),
}

impl ContainerError {
    /// Stable identifier.
    pub fn code(&self) -> &'static str {
        match self {
            ContainerError::Empty => "empty_input",
            ContainerError::Unknown => "unknown_container",
            ContainerError::Unsupported(_) => "unsupported_container",
            ContainerError::WindowTooLarge { .. } => "zstd_window_too_large",
            ContainerError::Dictionary(_) => "zstd_dictionary",
            ContainerError::Reserved(_) => "zstd_reserved",
            ContainerError::BlockTooLarge(_) => "zstd_block_too_large",
            ContainerError::Checksum { .. } => "zstd_checksum",
            ContainerError::Truncated => "zstd_truncated",
            ContainerError::TrailingData => "trailing_data",
            ContainerError::Corrupt(_) => "zstd_corrupt",
        }
    }
}

impl fmt::Display for ContainerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContainerError::Empty => f.write_str("empty input: not a bundle"),
            ContainerError::Unknown => {
                f.write_str("unknown container: the input is neither zstd nor a tar archive")
            }
            ContainerError::Unsupported(what) => {
                write!(f, "unsupported container: {what} (bundles are zstd-compressed or plain tar)")
            }
            ContainerError::WindowTooLarge { requested, max } => {
                write!(f, "zstd window too large: frame asks for {requested} bytes, the cap is {max}")
            }
            ContainerError::Dictionary(id) => {
                write!(f, "unsupported zstd frame: it needs dictionary {id}")
            }
            ContainerError::Reserved(what) => write!(f, "corrupt zstd frame: reserved {what} is set"),
            ContainerError::BlockTooLarge(n) => {
                write!(f, "corrupt zstd frame: block of {n} bytes exceeds the 128 KiB maximum")
            }
            ContainerError::Checksum { stored, computed } => write!(
                f,
                "zstd content checksum mismatch: frame says {stored:08x}, data gives {computed:08x}"
            ),
            ContainerError::Truncated => f.write_str("unexpected end of input inside a zstd frame"),
            ContainerError::TrailingData => {
                f.write_str("trailing data: bytes after the last zstd frame are not a zstd frame")
            }
            ContainerError::Corrupt(msg) => write!(f, "corrupt zstd data: {msg}"),
        }
    }
}

/// Failures of tar records and member names.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TarError {
    /// The header checksum does not match (the unsigned sum is the only one accepted).
    Checksum {
        /// The value in the header.
        stored: u64,
        /// The unsigned sum of the header bytes.
        computed: u64,
    },
    /// The magic is neither POSIX ustar nor GNU.
    UnknownFormat,
    /// A numeric field holds something other than octal digits with a terminator, or base-256.
    BadNumber(&'static str),
    /// A size is negative or its padded length overflows.
    SizeOverflow,
    /// A name field has bytes after its terminating NUL.
    BytesAfterNul(&'static str),
    /// The entry type is not accepted (links, devices, FIFOs, GNU dump directories, ...).
    UnsupportedType(u8),
    /// An old-GNU sparse (`S`) member's map breaks a rule of [`crate::tar::sparse`].
    SparseMap(&'static str),
    /// An old-GNU sparse (`S`) member where only a regular entry is accepted (`manifest.json`
    /// and image cache files are never sparse).
    SparseNotAllowed(&'static str),
    /// A PAX extended header (`x` or `g`).
    Pax(u8),
    /// A GNU long-name record that is not in the strict form.
    LongName(&'static str),
    /// A link name is set on an entry that is not a link.
    LinkName,
    /// A directory entry carries data.
    DirectoryData,
    /// The input ends inside a header, a member or its padding.
    Truncated(&'static str),
    /// One zero block followed by a non-zero block.
    LoneZeroBlock,
    /// The input ends without the two zero blocks that close a tar archive.
    MissingEnd,
    /// Non-zero bytes after the end-of-archive blocks.
    TrailingData,
    /// A name is not valid UTF-8.
    NonUtf8Name,
    /// A name is absolute, has `..`, `.`, empty components, backslashes or host-hostile names.
    UnsafePath(&'static str),
    /// A name does not fit any slot of the bundle layout.
    UnexpectedMember(&'static str),
    /// The same path appears twice (paths compare ASCII case-insensitively).
    Duplicate,
}

impl TarError {
    /// Stable identifier.
    pub fn code(&self) -> &'static str {
        match self {
            TarError::Checksum { .. } => "header_checksum",
            TarError::UnknownFormat => "header_format",
            TarError::BadNumber(_) => "bad_numeric_field",
            TarError::SizeOverflow => "size_overflow",
            TarError::BytesAfterNul(_) => "bytes_after_nul",
            TarError::UnsupportedType(_) => "unsupported_entry_type",
            TarError::SparseMap(_) => "invalid_sparse_map",
            TarError::SparseNotAllowed(_) => "sparse_not_allowed",
            TarError::Pax(_) => "pax_header",
            TarError::LongName(_) => "bad_long_name",
            TarError::LinkName => "link_name_set",
            TarError::DirectoryData => "directory_with_data",
            TarError::Truncated(_) => "truncated",
            TarError::LoneZeroBlock => "lone_zero_block",
            TarError::MissingEnd => "missing_end_of_archive",
            TarError::TrailingData => "trailing_data",
            TarError::NonUtf8Name => "non_utf8_name",
            TarError::UnsafePath(_) => "unsafe_path",
            TarError::UnexpectedMember(_) => "unexpected_member",
            TarError::Duplicate => "duplicate_entry",
        }
    }
}

fn type_name(flag: u8) -> &'static str {
    match flag {
        b'1' => "hard link",
        b'2' => "symlink",
        b'3' => "character device",
        b'4' => "block device",
        b'6' => "FIFO",
        b'K' => "GNU long link name",
        b'S' => "GNU sparse file",
        b'D' => "GNU dump directory",
        b'M' => "GNU multi-volume continuation",
        b'N' => "GNU long names (obsolete)",
        b'V' => "GNU volume label",
        b'x' => "PAX extended header",
        b'g' => "PAX global header",
        _ => "unknown type",
    }
}

impl fmt::Display for TarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TarError::Checksum { stored, computed } => write!(
                f,
                "header checksum mismatch: header says {stored}, unsigned sum is {computed}"
            ),
            TarError::UnknownFormat => {
                f.write_str("header is neither POSIX ustar nor GNU (magic/version field)")
            }
            TarError::BadNumber(field) => write!(
                f,
                "bad numeric field '{field}': expected octal digits with a NUL or space terminator, or base-256"
            ),
            TarError::SizeOverflow => f.write_str("size overflow: negative size or padded length beyond 2^63"),
            TarError::BytesAfterNul(field) => {
                write!(f, "field '{field}' has bytes after its NUL terminator (smuggled name)")
            }
            TarError::UnsupportedType(flag) => write!(
                f,
                "unsupported entry type '{}' ({}): only regular files, old-GNU sparse files and directories are accepted",
                char::from(*flag).escape_default(),
                type_name(*flag)
            ),
            TarError::Pax(flag) => write!(
                f,
                "PAX header '{}' rejected: bundles never carry PAX records",
                char::from(*flag)
            ),
            TarError::SparseMap(why) => write!(f, "invalid sparse map: {why}"),
            TarError::SparseNotAllowed(what) => {
                write!(f, "sparse entry not allowed: {what} must be stored as a regular entry")
            }
            TarError::LongName(why) => write!(f, "bad GNU long-name record: {why}"),
            TarError::LinkName => f.write_str("link name set on an entry that is not a link"),
            TarError::DirectoryData => f.write_str("directory entry with a non-zero size"),
            TarError::Truncated(inside) => write!(f, "truncated: input ends inside {inside}"),
            TarError::LoneZeroBlock => {
                f.write_str("a single zero block followed by more headers (end-of-archive needs two)")
            }
            TarError::MissingEnd => f.write_str(
                "missing end-of-archive: input ends without the two zero blocks (truncated bundle?)",
            ),
            TarError::TrailingData => f.write_str("trailing data: non-zero bytes after the end-of-archive blocks"),
            TarError::NonUtf8Name => f.write_str("name is not valid UTF-8"),
            TarError::UnsafePath(why) => write!(f, "unsafe path: {why}"),
            TarError::UnexpectedMember(why) => write!(f, "unexpected member: {why}"),
            TarError::Duplicate => f.write_str("duplicate entry: this path (compared case-insensitively) appeared before"),
        }
    }
}

/// Manifest parse and `validate()` failures, with 0.6.2's texts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManifestError {
    /// JSON does not match the schema (unknown or missing field, wrong type, duplicate key).
    Parse(String),
    /// `schema` is not 1.
    UnsupportedSchema(u32),
    /// A required string is empty.
    Empty(&'static str),
    /// A digest field has no `:`.
    NotDigest {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// A digest field has an empty algorithm or hex part.
    DigestEmptyComponent {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// `upper.file` is not a relative name.
    UpperNotRelative(String),
    /// `upper.file` is not a single file name.
    UpperNotSingle(String),
    /// `upper.file` names the manifest itself or a name the grammar forbids.
    UpperName(String),
}

impl ManifestError {
    /// Stable identifier.
    pub fn code(&self) -> &'static str {
        match self {
            ManifestError::Parse(_) => "manifest_parse",
            ManifestError::UnsupportedSchema(_) => "manifest_schema",
            ManifestError::Empty(_) => "manifest_empty_field",
            ManifestError::NotDigest { .. } | ManifestError::DigestEmptyComponent { .. } => {
                "manifest_bad_digest"
            }
            ManifestError::UpperNotRelative(_)
            | ManifestError::UpperNotSingle(_)
            | ManifestError::UpperName(_) => "manifest_bad_upper_file",
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("snapshot manifest: ")?;
        match self {
            ManifestError::Parse(msg) => write!(f, "parse failed: {msg}"),
            ManifestError::UnsupportedSchema(n) => write!(f, "unsupported schema version {n} (expected 1)"),
            ManifestError::Empty(field) => write!(f, "empty {field}"),
            ManifestError::NotDigest { field, value } => {
                write!(f, "{field} is not a digest (missing ':'): {value}")
            }
            ManifestError::DigestEmptyComponent { field, value } => {
                write!(f, "{field} has empty component: {value}")
            }
            ManifestError::UpperNotRelative(v) => {
                write!(f, "upper.file must be a relative artifact filename: {v}")
            }
            ManifestError::UpperNotSingle(v) => {
                write!(f, "upper.file must be a single artifact filename: {v}")
            }
            ManifestError::UpperName(v) => write!(f, "upper.file is not an acceptable file name: {v}"),
        }
    }
}

/// A snapshot's files disagree with its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Files or a directory under the prefix, but no `manifest.json`.
    NoManifest,
    /// The manifest's `upper.file` is not in the bundle.
    MissingUpper(String),
    /// The upper's size differs from `upper.size_bytes`.
    UpperSize {
        /// `upper.size_bytes`.
        manifest: u64,
        /// The member's size.
        file: u64,
    },
    /// `upper.integrity.algorithm` is not `sha256` or `msb-sparse-sha256-v1`.
    UnsupportedAlgorithm(String),
    /// The recorded integrity digest does not match the upper's content.
    DigestMismatch {
        /// Recorded in the manifest.
        manifest: String,
        /// Computed over the member.
        file: String,
    },
}

impl SnapshotError {
    /// Stable identifier.
    pub fn code(&self) -> &'static str {
        match self {
            SnapshotError::NoManifest => "snapshot_without_manifest",
            SnapshotError::MissingUpper(_) => "missing_upper",
            SnapshotError::UpperSize { .. } => "upper_size_mismatch",
            SnapshotError::UnsupportedAlgorithm(_) => "unsupported_integrity_algorithm",
            SnapshotError::DigestMismatch { .. } => "upper_digest_mismatch",
        }
    }
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::NoManifest => f.write_str("directory has no manifest.json"),
            SnapshotError::MissingUpper(file) => write!(f, "missing upper file: {file}"),
            SnapshotError::UpperSize { manifest, file } => {
                write!(f, "upper size mismatch: manifest says {manifest}, file is {file}")
            }
            SnapshotError::UnsupportedAlgorithm(a) => {
                write!(f, "unsupported upper integrity algorithm: {a}")
            }
            SnapshotError::DigestMismatch { manifest, file } => {
                write!(f, "upper digest mismatch: manifest={manifest}, file={file}")
            }
        }
    }
}

/// Whole-bundle failures.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BundleError {
    /// No `manifest.json` anywhere (also: empty or cache-only archives).
    NoManifest,
    /// Every snapshot is some other snapshot's parent.
    NoHead,
}

impl BundleError {
    /// Stable identifier.
    pub fn code(&self) -> &'static str {
        match self {
            BundleError::NoManifest => "no_snapshot_manifest",
            BundleError::NoHead => "no_head_snapshot",
        }
    }
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::NoManifest => f.write_str("archive contained no snapshot manifest"),
            BundleError::NoHead => f.write_str("archive contained no head snapshot"),
        }
    }
}

/// A configured bound was exceeded (see [`crate::Limits`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitError {
    /// More tar headers than `max_entries`.
    Entries(u32),
    /// A path longer than `max_path_len`.
    PathLength {
        /// Its length.
        len: u64,
        /// The bound.
        max: u32,
    },
    /// A manifest larger than `max_manifest_size`.
    ManifestSize {
        /// Its size.
        size: u64,
        /// The bound.
        max: u64,
    },
    /// A cache metadata file larger than `max_metadata_size`.
    MetadataSize {
        /// Its size.
        size: u64,
        /// The bound.
        max: u64,
    },
    /// The decompressed stream would exceed `max_decompressed_bytes`.
    Budget(u64),
    /// More snapshots than `max_snapshots`.
    Snapshots(u32),
    /// More zero padding after end-of-archive than `max_trailing_zeros`.
    TrailingZeros(u64),
    /// A sparse map with more than `max_sparse_segments` segments.
    SparseSegments(u32),
    /// The files' logical sizes (sparse members at their real size, holes included) together
    /// would exceed `max_decompressed_bytes`.
    LogicalBudget(u64),
    /// Manifests and cache metadata together exceed `max_json_total`.
    JsonTotal(u64),
}

impl LimitError {
    /// Stable identifier.
    pub fn code(&self) -> &'static str {
        match self {
            LimitError::Entries(_) => "too_many_entries",
            LimitError::PathLength { .. } => "path_too_long",
            LimitError::ManifestSize { .. } => "manifest_too_large",
            LimitError::MetadataSize { .. } => "metadata_too_large",
            LimitError::Budget(_) => "budget_exceeded",
            LimitError::Snapshots(_) => "too_many_snapshots",
            LimitError::TrailingZeros(_) => "trailing_zeros_too_long",
            LimitError::SparseSegments(_) => "too_many_sparse_segments",
            LimitError::LogicalBudget(_) => "logical_budget_exceeded",
            LimitError::JsonTotal(_) => "json_total_too_large",
        }
    }
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitError::Entries(max) => write!(f, "too many entries: more than {max}"),
            LimitError::PathLength { len, max } => {
                write!(f, "path of {len} bytes exceeds the {max}-byte limit")
            }
            LimitError::ManifestSize { size, max } => {
                write!(f, "manifest of {size} bytes exceeds the {max}-byte limit")
            }
            LimitError::MetadataSize { size, max } => {
                write!(f, "image cache metadata of {size} bytes exceeds the {max}-byte limit")
            }
            LimitError::Budget(max) => {
                write!(f, "budget exceeded: the decompressed bundle would pass {max} bytes")
            }
            LimitError::Snapshots(max) => write!(f, "too many snapshots: more than {max}"),
            LimitError::TrailingZeros(max) => {
                write!(f, "more than {max} bytes of padding after the end-of-archive blocks")
            }
            LimitError::SparseSegments(max) => write!(f, "sparse map has more than {max} segments"),
            LimitError::LogicalBudget(max) => write!(
                f,
                "budget exceeded: the files' logical content (holes of sparse entries included) would pass {max} bytes"
            ),
            LimitError::JsonTotal(max) => {
                write!(f, "manifests and cache metadata together exceed {max} bytes")
            }
        }
    }
}
