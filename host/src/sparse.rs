//! Reading files by their logical content with SEEK_DATA/SEEK_HOLE, so holes cost no reads. The
//! map `export --sparse` writes for a file with holes is planned by the core ([`sparse_map`]).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use rustix::fs::SeekFrom;

pub use snapbundle_core::tar::sparse_plan::sparse_map;

/// A piece of a file's logical content.
pub enum Chunk<'a> {
    /// Bytes read from the file.
    Data(&'a [u8]),
    /// A hole of this many zero bytes.
    Zeros(u64),
}

/// The data segments `(offset, len)` of the first `len` bytes of `file`, found with
/// SEEK_DATA/SEEK_HOLE. Filesystems without support report one segment covering everything.
pub fn data_segments(file: &File, len: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < len {
        let start = match rustix::fs::seek(file, SeekFrom::Data(pos)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::OPNOTSUPP) if pos == 0 => {
                return Ok(vec![(0, len)]);
            }
            Err(e) => return Err(e.into()),
        };
        if start >= len {
            break;
        }
        let end = match rustix::fs::seek(file, SeekFrom::Hole(start)) {
            Ok(e) => e.min(len),
            Err(rustix::io::Errno::NXIO) => len,
            Err(e) => return Err(e.into()),
        };
        if end <= start {
            break;
        }
        out.push((start, end - start));
        pos = end;
    }
    Ok(out)
}

/// Calls `f` with the logical content of the first `len` bytes of `file`, in order: data read
/// with `pread`, holes as [`Chunk::Zeros`]. A file that shrinks while being read is an error.
pub fn read_logical(file: &File, len: u64, f: &mut dyn FnMut(Chunk<'_>) -> io::Result<()>) -> io::Result<()> {
    read_segments(file, &data_segments(file, len)?, len, f)
}

/// Like [`read_logical`], with the data segments given: `segments` (sorted, not overlapping,
/// within `len`) are read, everything else is reported as [`Chunk::Zeros`] without a read.
pub fn read_segments(
    file: &File,
    segments: &[(u64, u64)],
    len: u64,
    f: &mut dyn FnMut(Chunk<'_>) -> io::Result<()>,
) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    for &(start, seg_len) in segments {
        if start < pos || start.saturating_add(seg_len) > len {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "data segments out of order"));
        }
        if start > pos {
            f(Chunk::Zeros(start - pos))?;
        }
        let end = start + seg_len;
        let mut at = start;
        while at < end {
            let want = usize::try_from((end - at).min(buf.len() as u64)).unwrap_or(buf.len());
            let slice = buf.get_mut(..want).unwrap_or(&mut []);
            let n = file.read_at(slice, at)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being read"));
            }
            f(Chunk::Data(buf.get(..n).unwrap_or(&[])))?;
            at += n as u64;
        }
        pos = end;
    }
    if pos < len {
        f(Chunk::Zeros(len - pos))?;
    }
    Ok(())
}
