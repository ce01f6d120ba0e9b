//! The validator: ties the zstd gate, the tar walker, the name grammar, the manifest, the
//! integrity hashes and the image-cache rules into one push-driven state machine.
//!
//! ```
//! use snapbundle_core::{Limits, NullSink, Validator};
//! let mut v = Validator::new(Limits::default());
//! // Feed any chunking of the bundle; 1 byte at a time gives the same result as all at once.
//! for chunk in [&b"not a bundle"[..]] {
//!     if v.push(chunk, &mut NullSink).is_err() { break; }
//! }
//! assert!(v.finish().is_err());
//! ```

use alloc::boxed::Box;

use crate::blake3_work::{self, Blake3Backend};
use crate::error::{ContainerError, Error, TarError};
use crate::events::Sink;
use crate::generation::Layout;
use crate::integrity::{Sha2, Sha256Backend};
use crate::limits::Limits;
use crate::report::{Container, Report};
use crate::tar::{Member, TarSink, Walker};
use crate::zstd::{self, ZstdGate};

#[derive(Debug)]
enum Input {
    Detect { buf: [u8; 4], len: usize },
    Tar,
    Zstd(Box<ZstdGate>),
}

/// Forwards the walker's records to the generation's layout, with the caller's sink.
struct Router<'a, S> {
    layout: &'a mut Layout,
    sink: &'a mut S,
}

impl<S: Sink> TarSink for Router<'_, S> {
    fn member(&mut self, m: &Member) -> Result<(), Error> {
        self.layout.member(m, self.sink)
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.layout.data(bytes, self.sink)
    }

    fn hole(&mut self, len: u64) -> Result<(), Error> {
        self.layout.hole(len, self.sink)
    }

    fn member_end(&mut self) -> Result<(), Error> {
        self.layout.member_end(self.sink)
    }

    fn allows_unset_ids(&self, name: &[u8]) -> bool {
        self.layout.allows_unset_ids(name)
    }
}

/// Streaming bundle validator. See the crate docs for the rules it enforces.
#[derive(Debug)]
pub struct Validator {
    input: Input,
    walker: Walker,
    layout: Layout,
    limits: Limits,
    compressed: u64,
    failed: bool,
}

impl Validator {
    /// A validator bounded by `limits`.
    pub fn new(limits: Limits) -> Self {
        Self::with_sha256(limits, &Sha2)
    }

    /// A validator bounded by `limits` that computes SHA-256 with `backend` (a sandbox's host
    /// may provide a faster one than the guest's portable code; see [`crate::integrity`]).
    pub fn with_sha256(limits: Limits, backend: &'static dyn Sha256Backend) -> Self {
        Self::with_backends(limits, backend, &blake3_work::Inline)
    }

    /// [`Validator::with_sha256`] that also runs a `.msb` archive's BLAKE3 work with `blake3`
    /// (a host may run it on another thread; see [`crate::blake3_work`]).
    pub fn with_backends(
        limits: Limits,
        sha256: &'static dyn Sha256Backend,
        blake3: &'static dyn Blake3Backend,
    ) -> Self {
        Validator {
            input: Input::Detect { buf: [0; 4], len: 0 },
            walker: Walker::new(limits),
            layout: Layout::new(limits, sha256, blake3),
            limits,
            compressed: 0,
            failed: false,
        }
    }

    /// Input bytes consumed so far.
    pub fn compressed_bytes(&self) -> u64 {
        self.compressed
    }

    /// Tar stream bytes produced so far.
    pub fn decompressed_bytes(&self) -> u64 {
        self.walker.position()
    }

    /// The archive's generation, once its first member header decided it.
    pub fn generation(&self) -> Option<crate::report::Generation> {
        self.layout.generation()
    }

    /// Feeds the next chunk of the bundle (any size, including empty). After an error every
    /// further call fails with [`Error::Finished`].
    pub fn push<S: Sink>(&mut self, chunk: &[u8], sink: &mut S) -> Result<(), Error> {
        self.push_tapped(chunk, sink, &mut |_| Ok(()))
    }

    /// [`Validator::push`] that also hands `tap` the decompressed tar stream, every byte once and
    /// in order, each slice right after the tar walker (and so the sink) accepted it: a caller
    /// that splits the archive (`registry_artifact::msb`) sees only bytes the validation passed so
    /// far. An error from `tap` ends validation like a sink's [`crate::Stop`] (its reason is the
    /// caller's).
    pub fn push_tapped<S: Sink, T: FnMut(&[u8]) -> Result<(), Error>>(
        &mut self,
        chunk: &[u8],
        sink: &mut S,
        tap: &mut T,
    ) -> Result<(), Error> {
        if self.failed {
            return Err(Error::Finished);
        }
        self.compressed = self.compressed.saturating_add(chunk.len() as u64);
        let r = self.push_inner(chunk, sink, tap);
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn push_inner<S: Sink, T: FnMut(&[u8]) -> Result<(), Error>>(
        &mut self,
        mut chunk: &[u8],
        sink: &mut S,
        tap: &mut T,
    ) -> Result<(), Error> {
        if let Input::Detect { buf, len } = &mut self.input {
            let take = (4 - *len).min(chunk.len());
            let (head, rest) = chunk.split_at(take);
            if let Some(dst) = buf.get_mut(*len..*len + take) {
                dst.copy_from_slice(head);
            }
            *len += take;
            chunk = rest;
            if *len < 4 {
                return Ok(());
            }
            let magic = *buf;
            self.input = detect(&magic, &self.limits)?;
            self.feed(&magic, sink, tap)?;
        }
        self.feed(chunk, sink, tap)
    }

    fn feed<S: Sink, T: FnMut(&[u8]) -> Result<(), Error>>(
        &mut self,
        bytes: &[u8],
        sink: &mut S,
        tap: &mut T,
    ) -> Result<(), Error> {
        let walker = &mut self.walker;
        let mut router = Router { layout: &mut self.layout, sink };
        match &mut self.input {
            Input::Detect { .. } => Ok(()),
            Input::Tar => {
                walker.push(bytes, &mut router).map_err(first_header_unknown)?;
                tap(bytes)
            }
            Input::Zstd(gate) => gate.push(bytes, &mut |out: &[u8]| {
                walker.push(out, &mut router)?;
                tap(out)
            }),
        }
    }

    /// Declares the end of input and returns the report of a valid bundle.
    pub fn finish(mut self) -> Result<Report, Error> {
        if self.failed {
            return Err(Error::Finished);
        }
        if let Input::Detect { buf, len } = self.input {
            if len == 0 {
                return Err(Error::Container { offset: 0, error: ContainerError::Empty });
            }
            self.input = Input::Tar;
            let head = buf.get(..len).unwrap_or(&[]);
            self.feed(head, &mut crate::events::NullSink, &mut |_| Ok(()))?;
            return Err(Error::Container { offset: 0, error: ContainerError::Unknown });
        }
        let (container, frames) = match &mut self.input {
            Input::Zstd(gate) => {
                gate.finish()?;
                (Container::Zstd, gate.frames())
            }
            _ => (Container::Tar, 0),
        };
        self.walker.finish().map_err(first_header_unknown)?;
        let mut report = self.layout.conclude(frames)?;
        report.container = container;
        report.zstd_frames = frames;
        report.compressed_bytes = self.compressed;
        report.decompressed_bytes = self.walker.position();
        report.entries = self.walker.entries();
        Ok(report)
    }
}

/// A plain-tar input whose very first record is not a tar header is an unknown container.
fn first_header_unknown(e: Error) -> Error {
    match &e {
        Error::Tar { at, error: TarError::UnknownFormat | TarError::Truncated("the first header") }
            if at.offset == 0 =>
        {
            Error::Container { offset: 0, error: ContainerError::Unknown }
        }
        _ => e,
    }
}

fn detect(magic: &[u8; 4], limits: &Limits) -> Result<Input, Error> {
    let unsupported = |what| Err(Error::Container { offset: 0, error: ContainerError::Unsupported(what) });
    if *magic == zstd::MAGIC || zstd::is_skippable_magic(magic) {
        return Ok(Input::Zstd(Box::new(ZstdGate::new(limits.max_window_size))));
    }
    match magic {
        [0x1f, 0x8b, ..] => unsupported("gzip"),
        [0xfd, b'7', b'z', b'X'] => unsupported("xz"),
        [b'B', b'Z', b'h', _] => unsupported("bzip2"),
        [0x04, 0x22, 0x4d, 0x18] => unsupported("lz4"),
        _ => Ok(Input::Tar),
    }
}
