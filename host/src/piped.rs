//! Two stages of one job joined by a pipe (`export --format msb`: export → convert; `import`
//! of a `.msb`: convert → import): one stage runs on this thread, the other on a scoped thread;
//! each closes its end of the pipe when it returns, so a stage that stops early ends the other
//! one's stream (a short read, or a write into a closed pipe) instead of blocking it.
//!
//! Which stage's error the caller reports is the caller's choice; both results are returned.

use std::io::{self, PipeReader, PipeWriter};

use crate::error::HostError;

/// The buffer a pipe between two stages asks for: Linux's default of 64 KiB makes the two
/// stages take turns (each fills or drains it in one step and waits), 1 MiB (the default
/// `/proc/sys/fs/pipe-max-size`) lets them run side by side on two cores.
const PIPE_BUFFER: usize = 1 << 20;

/// A pipe between two stages of one job, its buffer enlarged to [`PIPE_BUFFER`] where the
/// system allows (best effort: a smaller limit leaves the default, which is only slower).
pub(crate) fn pipe() -> Result<(PipeReader, PipeWriter), HostError> {
    let (r, w) = io::pipe().map_err(|e| HostError::io("creating a pipe", e))?;
    #[cfg(target_os = "linux")]
    let _ = rustix::pipe::fcntl_setpipe_size(&w, PIPE_BUFFER);
    Ok((r, w))
}

/// The results of the writing and the reading stage.
pub(crate) type Both<W, R> = (Result<W, HostError>, Result<R, HostError>);

/// Runs `write` on this thread and `read` (named `reader` in a panic's error) on another.
pub(crate) fn write_here<W, R: Send>(
    write: impl FnOnce(&mut PipeWriter) -> Result<W, HostError>,
    read: impl FnOnce(&mut PipeReader) -> Result<R, HostError> + Send,
    reader: &str,
) -> Result<Both<W, R>, HostError> {
    let (mut r, mut w) = pipe()?;
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
    let (mut r, mut w) = pipe()?;
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

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    #[test]
    fn a_pipe_holds_a_mebibyte_where_the_system_allows_it() {
        let (mut r, mut w) = super::pipe().expect("a pipe");
        #[cfg(target_os = "linux")]
        {
            let max = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let size = rustix::pipe::fcntl_getpipe_size(&w).expect("the pipe's size");
            if max >= super::PIPE_BUFFER {
                assert!(size >= super::PIPE_BUFFER, "{size} bytes");
            }
        }
        w.write_all(b"through").expect("write");
        drop(w);
        let mut got = String::new();
        r.read_to_string(&mut got).expect("read");
        assert_eq!(got, "through");
    }
}
