//! Opening a bundle argument: a file path or `-` for standard input.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::error::HostError;

/// An opened bundle source.
pub struct BundleInput {
    /// The byte stream.
    pub reader: Box<dyn Read>,
    /// Its length when known (regular files), for progress.
    pub len: Option<u64>,
    /// How to name it in messages.
    pub name: String,
}

/// Opens `arg`: `-` is standard input, anything else a file.
pub fn open_bundle(arg: &str) -> Result<BundleInput, HostError> {
    if arg == "-" {
        return Ok(BundleInput { reader: Box::new(io::stdin().lock()), len: None, name: "<stdin>".into() });
    }
    let path = Path::new(arg);
    let file = File::open(path).map_err(|e| HostError::io(format!("opening {arg}"), e))?;
    let meta = file.metadata().map_err(|e| HostError::io(format!("reading {arg}"), e))?;
    if meta.is_dir() {
        return Err(HostError::Usage(format!("{arg} is a directory, not a bundle")));
    }
    let len = meta.is_file().then_some(meta.len());
    Ok(BundleInput { reader: Box::new(file), len, name: arg.to_string() })
}

/// The first bytes of a stream read ahead, and what they are.
pub struct Peeked<R> {
    /// The generation of the archive, when its first member header was within what was read
    /// and valid.
    pub generation: Option<snapbundle_core::report::Generation>,
    /// The whole stream again: the bytes read ahead, then the rest.
    pub reader: io::Chain<io::Cursor<Vec<u8>>, R>,
}

/// Most bytes read ahead to learn an archive's generation once the decoder has produced its
/// first header record (before that, a zstd input is read on until it does: see below).
const PEEK_MAX: usize = 1 << 20;

/// Reads ahead until the core knows the archive's generation (its first member header), at
/// most 1 MiB, or while no decompressed record has come out yet, up to the largest window the
/// core accepts plus 1 MiB; an input it refuses that early is left to the caller's own
/// validation. The zstd decoder hands out bytes
/// only once more than its window is decoded (or the frame ends), so a zstd archive whose
/// first MiB is incompressible has produced nothing after 1 MiB: it is read on until the
/// first record comes out, bounded by the window the core accepts (`Limits::max_window_size`),
/// which the decoder holds anyway. (`import` of such an archive was taken for a 0.6.2 bundle.)
pub fn peek_generation<R: Read>(mut reader: R, limits: snapbundle_core::Limits) -> io::Result<Peeked<R>> {
    let mut v = snapbundle_core::Validator::new(limits);
    let mut ahead = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let cap = |v: &snapbundle_core::Validator| {
        let window = usize::try_from(limits.max_window_size).unwrap_or(usize::MAX);
        if v.decompressed_bytes() < 512 {
            PEEK_MAX.max(window.saturating_add(PEEK_MAX))
        } else {
            PEEK_MAX
        }
    };
    while v.generation().is_none() && ahead.len() < cap(&v) {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = buf.get(..n).unwrap_or(&[]);
        ahead.extend_from_slice(chunk);
        if v.push(chunk, &mut snapbundle_core::NullSink).is_err() {
            break;
        }
    }
    Ok(Peeked { generation: v.generation(), reader: io::Cursor::new(ahead).chain(reader) })
}

/// What a command that writes (`import`, `convert`) says of a released 0.6.7 – 0.6.16 archive:
/// snapbundle validates one but does not `doing` it (a usage error, exit 2, nothing written).
pub(crate) fn released_refusal(name: &str, doing: &str) -> HostError {
    HostError::Usage(format!(
        "{name} is a microsandbox 0.6.7 - 0.6.16 released archive, which snapbundle validates \
         (`verify`, `inspect`) but does not {doing}; on a microsandbox 0.7 host, `msb snapshot load` \
         imports it"
    ))
}
