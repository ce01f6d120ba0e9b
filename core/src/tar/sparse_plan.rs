//! The old-GNU sparse map a writer stores for a file with holes, planned from the file's data
//! segments so that every reader accepts it ([`super::sparse`] states the rules).

use alloc::vec;
use alloc::vec::Vec;

use super::layout::BLOCK;

/// Appends `start..end` to `out`, merged into the last segment when it starts no more than
/// `min_gap` bytes after that segment's end.
fn push(out: &mut Vec<(u64, u64)>, start: u64, end: u64, min_gap: u64) {
    match out.last_mut() {
        Some(last) if start <= last.0.saturating_add(last.1).saturating_add(min_gap) => {
            last.1 = end.max(last.0.saturating_add(last.1)).saturating_sub(last.0);
        }
        _ => out.push((start, end.saturating_sub(start))),
    }
}

/// The data segments `(offset, len)` of the old-GNU sparse map to write for a file of `len`
/// bytes whose data is at `segments` (sorted, as SEEK_DATA/SEEK_HOLE finds them), or `None`
/// when the file has no hole and stays a regular entry.
///
/// Segments are widened to 512-byte boundaries (a no-op for filesystem blocks) so that every
/// segment but the last is a whole number of records, as tar-rs requires; when there are more
/// than `max_slots - 1` (one slot is GNU's zero-length end marker), the smallest holes are
/// stored as zeros, just enough of them, so the importer's segment limit always holds.
pub fn sparse_map(segments: &[(u64, u64)], len: u64, max_slots: u32) -> Option<Vec<(u64, u64)>> {
    const RECORD: u64 = BLOCK as u64;
    let max = usize::try_from(max_slots).unwrap_or(usize::MAX).checked_sub(1).filter(|&m| m > 0)?;
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(segments.len().min(max.saturating_add(1)));
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
        let mut gaps: Vec<(u64, usize)> = out
            .windows(2)
            .enumerate()
            .filter_map(|(i, w)| match w {
                [a, b] => Some((b.0.saturating_sub(a.0.saturating_add(a.1)), i)),
                _ => None,
            })
            .collect();
        gaps.sort_unstable();
        let mut fill = vec![false; out.len()];
        for &(_, i) in gaps.iter().take(out.len() - max) {
            if let Some(f) = fill.get_mut(i) {
                *f = true;
            }
        }
        let kept = core::mem::take(&mut out);
        for (i, (start, seg_len)) in kept.into_iter().enumerate() {
            let fill_before = i.checked_sub(1).and_then(|p| fill.get(p)).copied().unwrap_or(false);
            push(&mut out, start, start.saturating_add(seg_len), if fill_before { u64::MAX } else { 0 });
        }
    }
    let stored = out.iter().try_fold(0u64, |sum, s| sum.checked_add(s.1))?;
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
