//! Writes tar archives to an [`io::Write`]: the I/O around the core's sans-IO encoder
//! ([`snapbundle_core::tar::write`], which holds the format: the records microsandbox 0.6.2 export
//! writes, and the old-GNU sparse members of `export --sparse`).

use std::fs::Metadata;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;

use snapbundle_core::tar::write::{Encoder, WriteError};

pub use snapbundle_core::tar::layout::END_OF_ARCHIVE;
pub use snapbundle_core::tar::write::{header_count, member_len, sparse_member_len, EntryMeta};

/// Zeros for holes and padding.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// [`EntryMeta`] from a file's metadata.
pub trait FromMetadata {
    /// The fields of a file's metadata. A modification time before the epoch is written as 0
    /// (0.6.2 would wrap it to a huge unsigned value that no strict reader accepts).
    fn from_metadata(meta: &Metadata) -> Self;
}

impl FromMetadata for EntryMeta {
    fn from_metadata(meta: &Metadata) -> EntryMeta {
        EntryMeta {
            mode: meta.mode(),
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            mtime: u64::try_from(meta.mtime()).unwrap_or(0),
            size: meta.len(),
        }
    }
}

fn io_error(e: WriteError, name: Option<&str>) -> io::Error {
    let kind = match e {
        WriteError::Name | WriteError::Field { .. } | WriteError::SparseMap => io::ErrorKind::InvalidInput,
        _ => io::ErrorKind::Other,
    };
    match name {
        Some(name) => io::Error::new(kind, format!("tar writer: {name:?}: {e}")),
        None => io::Error::new(kind, format!("tar writer: {e}")),
    }
}

/// Streams members into `inner`, checking that each gets exactly the data its header declares.
#[derive(Debug)]
pub struct TarWriter<W: Write> {
    inner: W,
    position: u64,
    encoder: Encoder,
}

impl<W: Write> TarWriter<W> {
    /// A writer at the start of an archive.
    pub fn new(inner: W) -> Self {
        TarWriter { inner, position: 0, encoder: Encoder::new() }
    }

    /// Bytes of tar written so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        self.position = self.position.saturating_add(bytes.len() as u64);
        Ok(())
    }

    fn put_zeros(&mut self, mut n: u64) -> io::Result<()> {
        while n > 0 {
            let k = n.min(ZEROS.len() as u64);
            self.put(ZEROS.get(..usize::try_from(k).unwrap_or(0)).unwrap_or(&[]))?;
            n -= k;
        }
        Ok(())
    }

    /// Writes the header records of a member; its data must follow.
    pub fn begin(&mut self, name: &str, meta: &EntryMeta) -> io::Result<()> {
        let headers = self.encoder.begin(name, meta).map_err(|e| io_error(e, Some(name)))?;
        self.put(&headers)
    }

    /// Writes the header records and the map of an old-GNU sparse member of `meta.size` logical
    /// bytes whose data is at `segments`; exactly the segments' bytes must follow, in order.
    pub fn begin_sparse(&mut self, name: &str, meta: &EntryMeta, segments: &[(u64, u64)]) -> io::Result<()> {
        let headers = self.encoder.begin_sparse(name, meta, segments).map_err(|e| io_error(e, Some(name)))?;
        self.put(&headers)
    }

    /// Writes member data.
    pub fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.encoder.data(bytes.len() as u64).map_err(|e| io_error(e, None))?;
        self.put(bytes)
    }

    /// Writes `n` zero bytes of member data (a hole).
    pub fn zeros(&mut self, n: u64) -> io::Result<()> {
        self.encoder.data(n).map_err(|e| io_error(e, None))?;
        self.put_zeros(n)
    }

    /// Closes the member: all declared data must have been written; pads to a record.
    pub fn end(&mut self) -> io::Result<()> {
        let pad = self.encoder.end().map_err(|e| io_error(e, None))?;
        self.put_zeros(pad)
    }

    /// Writes a whole member from memory.
    pub fn append(&mut self, name: &str, meta: &EntryMeta, bytes: &[u8]) -> io::Result<()> {
        self.begin(name, meta)?;
        self.data(bytes)?;
        self.end()
    }

    /// Writes the two end-of-archive records and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let end = self.encoder.finish().map_err(|e| io_error(e, None))?;
        self.put(end)?;
        Ok(self.inner)
    }

    /// Flushes the inner writer: what was written so far reaches its reader.
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    /// The inner writer, without end-of-archive records (for abandoning a failed archive).
    pub fn into_inner_unfinished(self) -> W {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_moves_what_the_encoder_plans() {
        let meta = EntryMeta { mode: 0o100644, uid: 0, gid: 0, mtime: 0, size: 10_000 };
        let segs = [(0, 512), (9000, 1000)];
        let mut w = TarWriter::new(Vec::new());
        assert!(w.begin_sparse("a/b", &meta, &segs).is_ok());
        assert!(w.data(&[1; 1000]).is_ok());
        assert!(w.zeros(512).is_ok());
        assert!(w.zeros(1).is_err(), "more than the stored bytes");
        assert!(w.end().is_ok());
        assert_eq!(Some(w.position()), sparse_member_len("a/b", &segs));
        let small = EntryMeta { size: 4, ..meta };
        assert!(w.append("c", &small, b"abcd").is_ok());
        assert!(w.begin("d", &small).is_ok());
        assert!(w.data(b"ab").is_ok());
        assert!(w.end().is_err(), "2 bytes short");
        let before = w.position();
        let out = w.finish().unwrap_or_default();
        assert_eq!(out.len() as u64, before + END_OF_ARCHIVE.len() as u64);
        let mut w = TarWriter::new(Vec::new());
        let err = w.begin("", &small).err().map(|e| (e.kind(), e.to_string()));
        assert_eq!(
            err,
            Some((
                io::ErrorKind::InvalidInput,
                "tar writer: \"\": unusable tar member name (empty, or with a NUL byte)".to_string()
            ))
        );
    }
}
