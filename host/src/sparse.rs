//! Reading files by their logical content with SEEK_DATA/SEEK_HOLE, so holes cost no reads, and
//! the map `export --sparse` writes for a file with holes.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use rustix::fs::SeekFrom;

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

/// The data segments of the old-GNU sparse map `export --sparse` writes for a file of `len`
/// bytes whose data is at `segments` (from [`data_segments`]), or `None` when the file has no
/// hole and stays a regular entry.
///
/// Segments are widened to 512-byte boundaries (a no-op for filesystem blocks) so that every
/// segment but the last is a whole number of records, as tar-rs requires; when there are more
/// than `max_slots - 1` (one slot is GNU's zero-length end marker), the smallest holes are
/// stored as zeros, just enough of them, so the importer's segment limit always holds.
pub fn sparse_map(segments: &[(u64, u64)], len: u64, max_slots: u32) -> Option<Vec<(u64, u64)>> {
    const RECORD: u64 = 512;
    let max = usize::try_from(max_slots).unwrap_or(usize::MAX).checked_sub(1).filter(|&m| m > 0)?;
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(segments.len().min(max + 1));
    let push = |out: &mut Vec<(u64, u64)>, start: u64, end: u64, min_gap: u64| match out.last_mut() {
        Some(last) if start <= (last.0 + last.1).saturating_add(min_gap) => {
            last.1 = end.max(last.0 + last.1) - last.0
        }
        _ => out.push((start, end - start)),
    };
    for &(start, seg_len) in segments {
        let end = start.saturating_add(seg_len).min(len);
        let start = start - start % RECORD;
        let end = end.div_ceil(RECORD).saturating_mul(RECORD).min(len);
        if end > start {
            push(&mut out, start, end, 0);
        }
    }
    if out.len() > max {
        // Fill the smallest holes: exactly as many as needed.
        let mut gaps: Vec<(u64, usize)> =
            out.windows(2).enumerate().map(|(i, w)| (w[1].0 - (w[0].0 + w[0].1), i)).collect();
        gaps.sort_unstable();
        let mut fill = vec![false; out.len()];
        for &(_, i) in gaps.iter().take(out.len() - max) {
            fill[i] = true;
        }
        let kept = std::mem::take(&mut out);
        for (i, (start, seg_len)) in kept.into_iter().enumerate() {
            let fill_before = i.checked_sub(1).is_some_and(|p| fill[p]);
            push(&mut out, start, start + seg_len, if fill_before { u64::MAX } else { 0 });
        }
    }
    let stored: u64 = out.iter().map(|s| s.1).sum();
    (stored < len).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_without_holes_stay_dense() {
        assert_eq!(sparse_map(&[(0, 10_000)], 10_000, 100), None);
        assert_eq!(sparse_map(&[], 0, 100), None);
        // A sub-record hole is filled by the widening, so there is none left.
        assert_eq!(sparse_map(&[(0, 100), (300, 100)], 400, 100), None);
    }

    #[test]
    fn segments_are_widened_to_records_and_merged() {
        assert_eq!(sparse_map(&[], 8192, 100), Some(vec![]));
        assert_eq!(sparse_map(&[(4096, 4096)], 1 << 20, 100), Some(vec![(4096, 4096)]));
        assert_eq!(
            sparse_map(&[(100, 10), (1000, 10), (8192, 5)], 9000, 100),
            Some(vec![(0, 1024), (8192, 512)])
        );
        // The last segment may end at the file's end, off a record boundary.
        assert_eq!(sparse_map(&[(8192, 100)], 8292, 100), Some(vec![(8192, 100)]));
    }

    #[test]
    fn too_many_segments_are_coalesced_to_fit() {
        let segs: Vec<(u64, u64)> = (0..1000u64).map(|i| (i * 16384 + (i % 3) * 4096, 4096)).collect();
        for max in [2u32, 3, 10, 100, 1001] {
            let m = sparse_map(&segs, 1000 * 16384 + 65536, max).expect("sparse");
            assert_eq!(m.len(), (max as usize - 1).min(1000), "{max}");
            // Every data byte is still covered.
            for &(o, n) in &segs {
                assert!(m.iter().any(|&(a, b)| a <= o && o + n <= a + b), "{o} lost at {max}");
            }
        }
        assert_eq!(sparse_map(&segs, 9_000_000, 1), None);
    }
}
