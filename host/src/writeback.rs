//! Early writeback: a staged file's written ranges start going to disk while later data is still
//! arriving, so the fsync that ends each file (durability is unchanged: a file counts as staged
//! only after it) has little left to wait for.
//!
//! [`Writeback`] follows a file written front to back and, every [`STEP`] bytes, asks the kernel
//! to start writing the range behind it (`sync_file_range(SYNC_FILE_RANGE_WRITE)` on Linux: it
//! queues the dirty pages and returns; it promises nothing about durability, the final fsync
//! does). Elsewhere it does nothing.

use std::fs::File;

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
}
