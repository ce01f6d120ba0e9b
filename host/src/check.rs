//! Driving the core validator from a byte stream.

use std::io::{ErrorKind, Read};

use snapbundle_core::{Limits, Report, Sink, Validator};

use crate::error::HostError;
use crate::progress::Progress;

/// Read size: large enough that per-call overhead vanishes, small enough to stay lean.
pub const CHUNK: usize = 1 << 20;

/// Streams `reader` through the validator, handing events to `sink`. `on_stop` turns a sink's
/// [`snapbundle_core::Stop`] into the sink's own error.
pub fn run<R: Read + ?Sized, S: Sink>(
    reader: &mut R,
    name: &str,
    limits: Limits,
    sink: &mut S,
    progress: &Progress,
    on_stop: &mut dyn FnMut(&mut S) -> HostError,
) -> Result<Report, HostError> {
    run_tapped(reader, name, limits, sink, progress, on_stop, &mut |_| Ok(()))
}

/// [`run`] that also hands `tap` the decompressed tar stream as the validator walks it
/// ([`Validator::push_tapped`]); an error of `tap` ends the run and is its error.
pub fn run_tapped<R: Read + ?Sized, S: Sink>(
    reader: &mut R,
    name: &str,
    limits: Limits,
    sink: &mut S,
    progress: &Progress,
    on_stop: &mut dyn FnMut(&mut S) -> HostError,
    tap: &mut dyn FnMut(&[u8]) -> Result<(), HostError>,
) -> Result<Report, HostError> {
    let mut tapped = None;
    let mut core_tap = |bytes: &[u8]| {
        tap(bytes).map_err(|e| {
            tapped = Some(e);
            snapbundle_core::Error::Stopped
        })
    };
    let mut v =
        Validator::with_backends(limits, crate::hash_thread::backend(), crate::hash_thread::blake3_backend());
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(HostError::io(format!("reading {name}"), e)),
        };
        let chunk = buf.get(..n).unwrap_or(&[]);
        match v.push_tapped(chunk, sink, &mut core_tap) {
            Ok(()) => {}
            Err(snapbundle_core::Error::Stopped) => match tapped.take() {
                Some(e) => return Err(e),
                None => return Err(on_stop(sink)),
            },
            Err(e) => return Err(HostError::Invalid(e)),
        }
        progress.set(v.compressed_bytes());
    }
    v.finish().map_err(HostError::Invalid)
}

/// Validates a bundle stream without writing anything.
pub fn verify_stream<R: Read + ?Sized>(
    reader: &mut R,
    name: &str,
    limits: Limits,
    progress: &Progress,
) -> Result<Report, HostError> {
    let mut sink = snapbundle_core::NullSink;
    run(reader, name, limits, &mut sink, progress, &mut |_| HostError::Usage("validation stopped".into()))
}
