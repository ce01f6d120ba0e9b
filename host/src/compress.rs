//! The bundle's compression, shared by `export` and `pull -o` so that the same tar stream always
//! becomes the same bytes: plain, or one zstd frame declaring its content size and carrying a
//! checksum.

use std::io::{self, Write};

/// The zstd level 0.6.2 uses (async-compression's default).
pub const DEFAULT_LEVEL: i32 = 3;
/// Most zstd workers used when the thread count is left at 0 (memory grows with each worker;
/// beyond four, reading and hashing the snapshot are the bottleneck anyway).
pub const DEFAULT_MAX_THREADS: usize = 4;
/// zstd job size for multithreaded compression.
const ZSTD_JOB_SIZE: u32 = 2 << 20;

/// How a bundle is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Compression {
    /// A plain tar, no zstd.
    pub(crate) plain: bool,
    /// zstd level.
    pub(crate) level: i32,
    /// zstd worker threads; 0 uses one per available core, at most [`DEFAULT_MAX_THREADS`].
    pub(crate) threads: u32,
}

impl Default for Compression {
    fn default() -> Self {
        Compression { plain: false, level: DEFAULT_LEVEL, threads: 0 }
    }
}

/// Counts bytes on their way to the target.
pub(crate) struct Counting<W> {
    pub(crate) inner: W,
    pub(crate) count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count = self.count.saturating_add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The tar stream's destination: plain, or a zstd frame.
pub(crate) enum Compressor<W: Write> {
    Plain(W),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Plain(w) => w.write(buf),
            Compressor::Zstd(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Compressor::Plain(w) => w.write_all(buf),
            Compressor::Zstd(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Plain(w) => w.flush(),
            Compressor::Zstd(w) => w.flush(),
        }
    }
}

impl<W: Write> Compressor<W> {
    /// Ends the zstd frame (if any) and returns the writer below.
    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Plain(w) => Ok(w),
            Compressor::Zstd(w) => w.finish(),
        }
    }
}

/// The bundle's compressor as `how` asks for it (plain, or one zstd frame declaring
/// `tar_bytes` when it is known and carrying a checksum), so that the same tar stream always
/// gives the same bytes.
pub(crate) fn compressor<W: Write>(
    out: W,
    how: Compression,
    tar_bytes: Option<u64>,
) -> io::Result<Compressor<W>> {
    if how.plain {
        return Ok(Compressor::Plain(out));
    }
    let threads = match how.threads {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(DEFAULT_MAX_THREADS),
        n => n as usize,
    };
    let threads = u32::try_from(threads).unwrap_or(u32::MAX);
    let mut enc = zstd::stream::write::Encoder::new(out, how.level)?;
    enc.include_checksum(true)?;
    enc.set_pledged_src_size(tar_bytes)?;
    enc.multithread(threads)?;
    // Small jobs keep memory flat (about 4 MiB per worker at level 3) at no measurable cost in
    // ratio or speed; the default job size (4x the window, larger still at high levels) tripled
    // peak RSS.
    enc.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
    Ok(Compressor::Zstd(enc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_counts() {
        let mut c = Counting { inner: Vec::new(), count: 0 };
        assert!(c.write_all(b"hello").is_ok());
        assert_eq!(c.count, 5);
    }
}
