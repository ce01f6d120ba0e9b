//! Zero-block detection: splits a file's data into written runs and holes.
//!
//! Blocks are 4 KiB, aligned to the file offset. A partial block at a slice edge is carried (at
//! most 4 KiB copied) until it completes, so the split is the same for every chunking of the input.
//! The last partial block of a file is emitted as data unless it is all zero.

use alloc::vec::Vec;

/// Hole granularity.
pub const BLOCK: usize = 4096;

/// A piece of a file's content.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Bytes to write at an offset.
    Data(u64, &'a [u8]),
    /// Zero bytes to skip at an offset.
    Hole(u64, u64),
}

/// Splits one file's data stream.
#[derive(Debug, Default)]
pub struct HoleSplitter {
    /// File offset of the first byte not yet emitted (start of `carry`).
    offset: u64,
    carry: Vec<u8>,
}

/// Whether every byte is zero: 64 bytes at a time without an early exit inside them (so the
/// compiler ORs them with vector instructions), stopping at the first 64 that are not.
pub fn is_zero(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(64);
    for c in &mut chunks {
        if c.iter().fold(0u8, |acc, &x| acc | x) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&x| x == 0)
}

impl HoleSplitter {
    /// A splitter at file offset 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes of the file.
    pub fn push<E>(
        &mut self,
        mut bytes: &[u8],
        emit: &mut impl FnMut(Piece<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.carry.is_empty() {
            let take = (BLOCK - self.carry.len()).min(bytes.len());
            let (head, rest) = bytes.split_at(take);
            self.carry.extend_from_slice(head);
            bytes = rest;
            if self.carry.len() < BLOCK {
                return Ok(());
            }
            let block = core::mem::take(&mut self.carry);
            let r = emit(if is_zero(&block) {
                Piece::Hole(self.offset, BLOCK as u64)
            } else {
                Piece::Data(self.offset, &block)
            });
            self.offset += BLOCK as u64;
            self.carry = block;
            self.carry.clear();
            r?;
        }
        let whole = bytes.len() - bytes.len() % BLOCK;
        let (blocks, tail) = bytes.split_at(whole);
        let mut run_start = 0usize;
        let mut run_zero = None::<bool>;
        for (i, block) in blocks.chunks_exact(BLOCK).enumerate() {
            let zero = is_zero(block);
            if run_zero != Some(zero) {
                if let Some(z) = run_zero {
                    self.emit_run(blocks, run_start, i * BLOCK, z, emit)?;
                }
                run_start = i * BLOCK;
                run_zero = Some(zero);
            }
        }
        if let Some(z) = run_zero {
            self.emit_run(blocks, run_start, whole, z, emit)?;
        }
        self.carry.extend_from_slice(tail);
        Ok(())
    }

    fn emit_run<E>(
        &mut self,
        blocks: &[u8],
        start: usize,
        end: usize,
        zero: bool,
        emit: &mut impl FnMut(Piece<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let len = (end - start) as u64;
        let piece = if zero {
            Piece::Hole(self.offset, len)
        } else {
            Piece::Data(self.offset, blocks.get(start..end).unwrap_or(&[]))
        };
        self.offset += len;
        emit(piece)
    }

    /// Feeds `len` zero bytes without materialising them (a hole of a sparse member): the same
    /// pieces as pushing that many zeros, with at most one block of them copied.
    pub fn hole<E>(
        &mut self,
        mut len: u64,
        emit: &mut impl FnMut(Piece<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.carry.is_empty() {
            let fill = ((BLOCK - self.carry.len()) as u64).min(len);
            self.carry.resize(self.carry.len() + fill as usize, 0);
            len -= fill;
            if self.carry.len() < BLOCK {
                return Ok(());
            }
            let block = core::mem::take(&mut self.carry);
            let r = emit(if is_zero(&block) {
                Piece::Hole(self.offset, BLOCK as u64)
            } else {
                Piece::Data(self.offset, &block)
            });
            self.offset += BLOCK as u64;
            self.carry = block;
            self.carry.clear();
            r?;
        }
        let tail = len % BLOCK as u64;
        let whole = len - tail;
        if whole > 0 {
            let r = emit(Piece::Hole(self.offset, whole));
            self.offset += whole;
            r?;
        }
        self.carry.resize(tail as usize, 0);
        Ok(())
    }

    /// Emits the final partial block.
    pub fn finish<E>(&mut self, emit: &mut impl FnMut(Piece<'_>) -> Result<(), E>) -> Result<(), E> {
        if self.carry.is_empty() {
            return Ok(());
        }
        let block = core::mem::take(&mut self.carry);
        let len = block.len() as u64;
        let r = emit(if is_zero(&block) {
            Piece::Hole(self.offset, len)
        } else {
            Piece::Data(self.offset, &block)
        });
        self.offset += len;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_zero_sees_a_single_set_byte_anywhere() {
        for len in [0usize, 1, 63, 64, 65, 127, 128, 4096, 4097] {
            let mut b = alloc::vec![0u8; len];
            assert!(is_zero(&b), "{len} zeros");
            for at in 0..len {
                b[at] = 1 << (at % 8);
                assert!(!is_zero(&b), "len {len}, byte {at} set");
                b[at] = 0;
            }
        }
    }
    use alloc::vec;

    fn split(data: &[u8], chunk: usize) -> Vec<(bool, u64, u64)> {
        let mut out = Vec::new();
        let mut s = HoleSplitter::new();
        let mut emit = |p: Piece<'_>| -> Result<(), ()> {
            out.push(match p {
                Piece::Data(o, b) => (false, o, b.len() as u64),
                Piece::Hole(o, l) => (true, o, l),
            });
            Ok(())
        };
        for c in data.chunks(chunk) {
            s.push(c, &mut emit).unwrap();
        }
        s.finish(&mut emit).unwrap();
        // Merge adjacent pieces of the same kind so different chunkings compare equal.
        let mut merged: Vec<(bool, u64, u64)> = Vec::new();
        for p in out {
            match merged.last_mut() {
                Some(last) if last.0 == p.0 && last.1 + last.2 == p.1 => last.2 += p.2,
                _ => merged.push(p),
            }
        }
        merged
    }

    /// Pieces for `runs` of data (`Some`) and holes (`None` with a length), merged.
    fn split_runs(runs: &[(Option<&[u8]>, u64)]) -> Vec<(bool, u64, u64)> {
        let mut out = Vec::new();
        let mut s = HoleSplitter::new();
        let mut emit = |p: Piece<'_>| -> Result<(), ()> {
            out.push(match p {
                Piece::Data(o, b) => (false, o, b.len() as u64),
                Piece::Hole(o, l) => (true, o, l),
            });
            Ok(())
        };
        for (data, len) in runs {
            match data {
                Some(d) => s.push(d, &mut emit).unwrap(),
                None => s.hole(*len, &mut emit).unwrap(),
            }
        }
        s.finish(&mut emit).unwrap();
        let mut merged: Vec<(bool, u64, u64)> = Vec::new();
        for p in out {
            match merged.last_mut() {
                Some(last) if last.0 == p.0 && last.1 + last.2 == p.1 => last.2 += p.2,
                _ => merged.push(p),
            }
        }
        merged
    }

    #[test]
    fn a_hole_splits_like_the_zeros_it_stands_for() {
        let a = vec![7u8; 1000];
        let b = vec![9u8; 5000];
        for (gap, tail) in [(3096u64, 0u64), (100, 10), (3 * 4096 + 17, 4096 * 2 + 5), (0, 4095)] {
            let mut dense = a.clone();
            dense.resize(dense.len() + gap as usize, 0);
            dense.extend_from_slice(&b);
            dense.resize(dense.len() + tail as usize, 0);
            let runs = [(Some(&a[..]), 0), (None, gap), (Some(&b[..]), 0), (None, tail)];
            assert_eq!(split_runs(&runs), split(&dense, 100_000), "gap {gap} tail {tail}");
        }
        assert_eq!(split_runs(&[(None, 3 * 4096 + 5)]), vec![(true, 0, 3 * 4096 + 5)]);
    }

    #[test]
    fn holes_are_aligned_blocks_whatever_the_chunking() {
        let mut data = vec![0u8; 5 * BLOCK + 100];
        data[10] = 1;
        data[3 * BLOCK + 7] = 2;
        let want = vec![(false, 0, 4096), (true, 4096, 8192), (false, 12288, 4096), (true, 16384, 4196)];
        for chunk in [1, 7, 512, 4096, 5000, 100_000] {
            assert_eq!(split(&data, chunk), want, "chunk {chunk}");
        }
    }
}
