//! Where everything sits in a tar stream: the one set of record sizes, header field ranges,
//! magic values, type flags and old-GNU sparse map positions that the reader
//! ([`super::header`], [`super::sparse`]) and the writer ([`super::write`]) share.
//!
//! Multi-byte fields are byte ranges of the 512-byte header record (POSIX ustar, and GNU's
//! `oldgnu_header`, which reuses the ustar `prefix` area for times and the sparse map); one-byte
//! fields are offsets.
//!
//! | bytes | GNU header | extension block |
//! |---|---|---|
//! | sparse slots of 24 bytes: `offset[12]`, `numbytes[12]` | 4 at 386 | 21 at 0 |
//! | `isextended` (another extension block follows) | 482 | 504 |
//! | `realsize[12]` (the logical size) | 483 | — |

use core::ops::Range;

/// Size of a tar record.
pub const BLOCK: usize = 512;

/// The two zero records that end an archive.
pub const END_OF_ARCHIVE: [u8; 2 * BLOCK] = [0; 2 * BLOCK];

/// `name[100]`.
pub const NAME: Range<usize> = 0..100;
/// `mode[8]`.
pub const MODE: Range<usize> = 100..108;
/// `uid[8]`.
pub const UID: Range<usize> = 108..116;
/// `gid[8]`.
pub const GID: Range<usize> = 116..124;
/// `size[12]`: the bytes of data that follow the header.
pub const SIZE: Range<usize> = 124..136;
/// `mtime[12]`.
pub const MTIME: Range<usize> = 136..148;
/// `chksum[8]`: summed as eight spaces.
pub const CHKSUM: Range<usize> = 148..156;
/// `typeflag`.
pub const TYPEFLAG: usize = 156;
/// `linkname[100]`.
pub const LINKNAME: Range<usize> = 157..257;
/// `magic[6]`.
pub const MAGIC: Range<usize> = 257..263;
/// `version[2]`.
pub const VERSION: Range<usize> = 263..265;
/// `uname[32]`.
pub const UNAME: Range<usize> = 265..297;
/// `gname[32]`.
pub const GNAME: Range<usize> = 297..329;
/// `devmajor[8]`.
pub const DEVMAJOR: Range<usize> = 329..337;
/// `devminor[8]`.
pub const DEVMINOR: Range<usize> = 337..345;
/// ustar `prefix[155]`, joined to the name with `/` (GNU headers use the area otherwise).
pub const PREFIX: Range<usize> = 345..500;

/// POSIX ustar `magic`.
pub const USTAR_MAGIC: &[u8; 6] = b"ustar\0";
/// POSIX ustar `version`.
pub const USTAR_VERSION: &[u8; 2] = b"00";
/// GNU `magic`.
pub const GNU_MAGIC: &[u8; 6] = b"ustar ";
/// GNU `version`.
pub const GNU_VERSION: &[u8; 2] = b" \0";

/// Type flag of a regular file.
pub const REGULAR: u8 = b'0';
/// Legacy (pre-POSIX) type flag of a regular file.
pub const REGULAR_LEGACY: u8 = 0;
/// Type flag of a contiguous file, read as a regular one.
pub const CONTIGUOUS: u8 = b'7';
/// Type flag of a directory.
pub const DIRECTORY: u8 = b'5';
/// Type flag of a GNU long name: the data is the next member's name.
pub const GNU_LONG_NAME: u8 = b'L';
/// Type flag of an old-GNU sparse file.
pub const GNU_SPARSE: u8 = b'S';

/// The name GNU long-name records carry.
pub const LONG_LINK_NAME: &[u8] = b"././@LongLink";

/// Bytes per sparse slot: `offset[12]` and `numbytes[12]`.
pub const SLOT_LEN: usize = 24;
/// `offset[12]` within a slot: where the segment goes in the logical file.
pub const SLOT_OFFSET: Range<usize> = 0..12;
/// `numbytes[12]` within a slot: the segment's length.
pub const SLOT_NUMBYTES: Range<usize> = 12..24;
/// Slots in the GNU header.
pub const INLINE_SLOTS: usize = 4;
/// The GNU header's slots.
pub const INLINE_MAP: Range<usize> = 386..386 + INLINE_SLOTS * SLOT_LEN;
/// `isextended` in the GNU header.
pub const INLINE_EXTENDED: usize = 482;
/// `realsize[12]` in the GNU header: the logical size of a sparse member.
pub const REAL_SIZE: Range<usize> = 483..495;
/// Slots in one extension block.
pub const EXTENSION_SLOTS: usize = 21;
/// An extension block's slots.
pub const EXTENSION_MAP: Range<usize> = 0..EXTENSION_SLOTS * SLOT_LEN;
/// `isextended` in an extension block; every byte after it is zero.
pub const EXTENSION_EXTENDED: usize = 504;
