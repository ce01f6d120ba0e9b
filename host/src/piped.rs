//! Two stages of one job joined by a pipe (`export --format msb`: export → convert; `import`
//! of a `.msb`: convert → import): one stage runs on this thread, the other on a scoped thread;
//! each closes its end of the pipe when it returns, so a stage that stops early ends the other
//! one's stream (a short read, or a write into a closed pipe) instead of blocking it.
//!
//! Which stage's error the caller reports is the caller's choice; both results are returned.

use std::io::{self, PipeReader, PipeWriter};

use crate::error::HostError;

/// The results of the writing and the reading stage.
pub(crate) type Both<W, R> = (Result<W, HostError>, Result<R, HostError>);

/// Runs `write` on this thread and `read` (named `reader` in a panic's error) on another.
pub(crate) fn write_here<W, R: Send>(
    write: impl FnOnce(&mut PipeWriter) -> Result<W, HostError>,
    read: impl FnOnce(&mut PipeReader) -> Result<R, HostError> + Send,
    reader: &str,
) -> Result<Both<W, R>, HostError> {
    let (mut r, mut w) = io::pipe().map_err(|e| HostError::io("creating a pipe", e))?;
    Ok(std::thread::scope(|s| {
        let there = s.spawn(move || read(&mut r));
        let here = write(&mut w);
        drop(w);
        (here, joined(there.join(), reader))
    }))
}

/// Runs `read` on this thread and `write` (named `writer` in a panic's error) on another.
pub(crate) fn read_here<W: Send, R>(
    write: impl FnOnce(&mut PipeWriter) -> Result<W, HostError> + Send,
    read: impl FnOnce(&mut PipeReader) -> Result<R, HostError>,
    writer: &str,
) -> Result<Both<W, R>, HostError> {
    let (mut r, mut w) = io::pipe().map_err(|e| HostError::io("creating a pipe", e))?;
    Ok(std::thread::scope(|s| {
        let there = s.spawn(move || write(&mut w));
        let here = read(&mut r);
        drop(r);
        (joined(there.join(), writer), here)
    }))
}

fn joined<T>(r: std::thread::Result<Result<T, HostError>>, stage: &str) -> Result<T, HostError> {
    r.unwrap_or_else(|_| Err(HostError::io(stage, io::Error::other(format!("the {stage} thread panicked")))))
}
