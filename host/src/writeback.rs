//! Early writeback: a staged file's written ranges start going to disk while later data is still
//! arriving, so the fsync that ends each file (durability is unchanged: a file counts as staged
//! only after it) has little left to wait for.
//!
//! [`Writeback`] follows a file written front to back and, every [`STEP`] bytes, asks the kernel
//! to start writing the range behind it (`sync_file_range(SYNC_FILE_RANGE_WRITE)` on Linux: it
//! queues the dirty pages and returns; it promises nothing about durability, the final fsync
//! does). Elsewhere it does nothing.

use std::fs::File;
use std::io::{self, Write};

/// Bytes written between two writeback requests.
pub const STEP: u64 = 8 << 20;

/// The writeback state of one file being written in increasing offsets.
#[derive(Debug, Default, Clone, Copy)]
pub struct Writeback {
    /// Everything before this offset has been handed to the kernel.
    started_to: u64,
}

impl Writeback {
    /// Records that bytes up to `end` were written; starts writeback of the range since the last
    /// request once it reaches [`STEP`]. Advisory: a failure is left to the final fsync.
    pub fn written(&mut self, file: &File, end: u64) {
        let Some(len) = end.checked_sub(self.started_to).filter(|&l| l >= STEP) else { return };
        start(file, self.started_to, len);
        self.started_to = end;
    }
}

/// A file written front to back through [`Write`] (an output file: `export -o`, `convert -o`,
/// `pull -o`), with early writeback of what was written, so that its final fsync does not wait
/// for the whole file.
pub struct WritebackFile<'a> {
    file: &'a File,
    written: u64,
    writeback: Writeback,
}

impl<'a> WritebackFile<'a> {
    /// Writes to `file` from its current offset, which is taken to be 0 (a new file).
    pub fn new(file: &'a File) -> Self {
        WritebackFile { file, written: 0, writeback: Writeback::default() }
    }
}

impl Write for WritebackFile<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written = self.written.saturating_add(n as u64);
        self.writeback.written(self.file, self.written);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Starts writeback of `len` bytes at `offset` of `file` without waiting for it.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // One FFI call; see SAFETY.
fn start(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (libc::off64_t::try_from(offset), libc::off64_t::try_from(len)) else {
        return;
    };
    // SAFETY: `sync_file_range` reads no memory of ours; the descriptor is borrowed from a live
    // `File` for the duration of the call, and any error (e.g. EINVAL on a filesystem without
    // it) is harmless here because the caller fsyncs the file before relying on it.
    let _ = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
}

/// Starts writeback of `len` bytes at `offset` of `file` without waiting for it (no-op here).
#[cfg(not(target_os = "linux"))]
fn start(_file: &File, _offset: u64, _len: u64) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_come_every_step_and_cover_what_was_written() {
        let f = tempfile::tempfile().expect("temp file");
        let mut w = Writeback::default();
        w.written(&f, STEP - 1);
        assert_eq!(w.started_to, 0, "less than a step: nothing requested yet");
        w.written(&f, STEP + 5);
        assert_eq!(w.started_to, STEP + 5);
        w.written(&f, 2 * STEP);
        assert_eq!(w.started_to, STEP + 5);
        w.written(&f, 3 * STEP);
        assert_eq!(w.started_to, 3 * STEP);
        w.written(&f, 10);
        assert_eq!(w.started_to, 3 * STEP, "an offset behind the mark changes nothing");
    }

    #[test]
    fn a_writeback_file_writes_everything_and_requests_writeback_behind_it() {
        use std::io::{Read, Seek};
        let mut f = tempfile::tempfile().expect("temp file");
        let data: Vec<u8> = (0..(2 * STEP + 100)).map(|i| (i % 251) as u8).collect();
        let mut w = WritebackFile::new(&f);
        for piece in data.chunks(3 << 20) {
            w.write_all(piece).expect("write");
        }
        w.flush().expect("flush");
        assert_eq!(w.written, data.len() as u64);
        let requested = w.writeback.started_to;
        assert!(requested > 0 && w.written - requested < STEP, "requested up to {requested}");
        f.rewind().expect("rewind");
        let mut back = Vec::new();
        f.read_to_end(&mut back).expect("read");
        assert!(back == data, "the file holds what was written");
    }
}
