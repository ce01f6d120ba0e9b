//! SHA-256 on the second core: a [`Sha256Backend`] whose computations run on one worker thread.
//!
//! The core stays single-threaded and sans-IO; it decides what is hashed and what the digests
//! must be. This backend only moves the arithmetic: each computation copies the bytes it is
//! given into 256 KiB buffers and hands full buffers to the worker, which hashes them (with the
//! CPU's SHA instructions through `sha2`) while the validator's thread decompresses, walks the
//! tar and writes the next data. Holes cross as a length, never as bytes, and so do runs of
//! [`ZERO_RUN`] zero bytes given as data (a dense member's zeros when nobody split them off).
//! `finish` waits for the worker to reach the end of that computation.
//!
//! Memory is bounded: a computation has at most [`IN_FLIGHT`] buffers (1 MiB) between it and the
//! worker and waits for one to come back before filling another, so a slow worker slows the
//! stream instead of growing a queue. One worker serves the whole process; computations of
//! several validators interleave on it in the order their buffers arrive.
//!
//! With one CPU there is nothing to overlap, and [`backend`] is the core's inline [`Sha2`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::OnceLock;

use sha2::{Digest as _, Sha256};
use snapbundle_core::holes::is_zero;
use snapbundle_core::integrity::{Sha2, Sha256Backend, Sha256State};

/// Bytes a buffer holds before it goes to the worker.
const BUFFER: usize = 256 << 10;
/// Zero bytes given as data that cross as a length instead of a copy: whole pieces of this size.
pub const ZERO_RUN: usize = 64 << 10;
/// Buffers one computation may have queued or being hashed.
pub const IN_FLIGHT: usize = 4;
/// Zero bytes the worker feeds for a hole, 1024 SHA-256 blocks a call.
static ZEROS: [u8; 1 << 16] = [0; 1 << 16];

/// What a computation sends the worker.
enum Msg {
    /// Bytes to add; the buffer goes back on the sender.
    Bytes(Vec<u8>, Sender<Vec<u8>>),
    /// Zero bytes to add.
    Zeros(u64),
    /// The end: the digest goes back on the sender.
    Finish(SyncSender<[u8; 32]>),
    /// The computation was dropped unfinished.
    Abandon,
}

/// The SHA-256 backend for validators in this process: the worker thread when there are two or
/// more CPUs to run on, else the core's inline [`Sha2`].
pub fn backend() -> &'static dyn Sha256Backend {
    static CHOICE: OnceLock<bool> = OnceLock::new();
    let offload = *CHOICE.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2));
    if offload {
        &OFFLOADED
    } else {
        &Sha2
    }
}

/// The offloading backend (see the module docs).
#[derive(Debug)]
pub struct Offloaded {
    worker: OnceLock<Option<SyncSender<(u64, Msg)>>>,
    next_id: AtomicU64,
}

/// The process's offloading backend; its worker starts with the first computation.
pub static OFFLOADED: Offloaded = Offloaded { worker: OnceLock::new(), next_id: AtomicU64::new(0) };

impl Offloaded {
    /// The worker's queue, starting the worker on first use; `None` if it could not be started.
    fn queue(&self) -> Option<&SyncSender<(u64, Msg)>> {
        self.worker
            .get_or_init(|| {
                let (tx, rx) = mpsc::sync_channel(2 * IN_FLIGHT);
                let spawned =
                    std::thread::Builder::new().name("snapbundle-sha256".into()).spawn(move || work(rx));
                spawned.ok().map(|_| tx)
            })
            .as_ref()
    }
}

impl Sha256Backend for Offloaded {
    fn start(&self) -> Box<dyn Sha256State> {
        let Some(queue) = self.queue() else {
            // No thread could be started: hash inline, as with one CPU.
            return Sha2.start();
        };
        let (back, spare) = mpsc::channel();
        Box::new(Computation {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            queue: queue.clone(),
            buf: Vec::new(),
            back,
            spare,
            buffers: 0,
            finished: false,
        })
    }
}

/// The worker: one SHA-256 state per live computation, fed in arrival order.
fn work(rx: Receiver<(u64, Msg)>) {
    let mut states: HashMap<u64, Sha256> = HashMap::new();
    while let Ok((id, msg)) = rx.recv() {
        match msg {
            Msg::Bytes(mut buf, back) => {
                states.entry(id).or_default().update(&buf);
                buf.clear();
                // The computation may be gone (dropped after an error): then so is the buffer.
                let _ = back.send(buf);
            }
            Msg::Zeros(mut len) => {
                let h = states.entry(id).or_default();
                while len > 0 {
                    let n = len.min(ZEROS.len() as u64) as usize;
                    h.update(ZEROS.get(..n).unwrap_or(&[]));
                    len -= n as u64;
                }
            }
            Msg::Finish(reply) => {
                let digest = states.remove(&id).unwrap_or_default().finalize().into();
                let _ = reply.send(digest);
            }
            Msg::Abandon => {
                states.remove(&id);
            }
        }
    }
}

/// One computation on the worker.
struct Computation {
    id: u64,
    queue: SyncSender<(u64, Msg)>,
    /// Bytes not sent yet.
    buf: Vec<u8>,
    /// Where the worker returns buffers, and where they are taken from.
    back: Sender<Vec<u8>>,
    spare: Receiver<Vec<u8>>,
    /// Buffers this computation owns (in `buf`, queued, or spare): at most [`IN_FLIGHT`].
    buffers: usize,
    finished: bool,
}

impl Computation {
    fn send(&self, msg: Msg) {
        // The worker only stops when the process does; if it is gone the digest is wrong and
        // the validator rejects the bundle (fail closed), it never accepts one.
        let _ = self.queue.send((self.id, msg));
    }

    /// Sends the filled buffer and takes an empty one: a returned one, a new one while fewer
    /// than [`IN_FLIGHT`] exist, else waits for the worker to return one.
    fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let next = match self.spare.try_recv() {
            Ok(b) => b,
            Err(_) if self.buffers < IN_FLIGHT => {
                self.buffers += 1;
                Vec::with_capacity(BUFFER)
            }
            Err(_) => self.spare.recv().unwrap_or_default(),
        };
        let full = std::mem::replace(&mut self.buf, next);
        self.send(Msg::Bytes(full, self.back.clone()));
    }
}

impl Sha256State for Computation {
    fn update(&mut self, bytes: &[u8]) {
        // A piece of zeros costs a scan that stops at the first non-zero 64 bytes, against a copy.
        for piece in bytes.chunks(ZERO_RUN) {
            if piece.len() == ZERO_RUN && is_zero(piece) {
                self.update_zeros(ZERO_RUN as u64);
            } else {
                self.copy(piece);
            }
        }
    }

    fn update_zeros(&mut self, len: u64) {
        self.flush();
        self.send(Msg::Zeros(len));
    }

    fn finish(mut self: Box<Self>) -> [u8; 32] {
        self.flush();
        let (reply, digest) = mpsc::sync_channel(1);
        self.send(Msg::Finish(reply));
        self.finished = true;
        digest.recv().unwrap_or_default()
    }
}

impl Computation {
    /// Copies `bytes` into buffers, sending each one that fills.
    fn copy(&mut self, mut bytes: &[u8]) {
        if self.buffers == 0 {
            self.buffers = 1;
            self.buf.reserve_exact(BUFFER);
        }
        while !bytes.is_empty() {
            let room = BUFFER.saturating_sub(self.buf.len());
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.buf.extend_from_slice(now);
            bytes = rest;
            if self.buf.len() >= BUFFER {
                self.flush();
            }
        }
    }
}

impl Drop for Computation {
    fn drop(&mut self) {
        if !self.finished {
            self.send(Msg::Abandon);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digest of `parts` (bytes, or a run of zeros) by `backend`.
    fn digest(backend: &dyn Sha256Backend, parts: &[Result<&[u8], u64>]) -> [u8; 32] {
        let mut s = backend.start();
        for p in parts {
            match p {
                Ok(b) => s.update(b),
                Err(n) => s.update_zeros(*n),
            }
        }
        s.finish()
    }

    #[test]
    fn offloaded_digests_equal_inline_ones_across_buffer_boundaries() {
        let big: Vec<u8> = (0..3 * BUFFER + 17).map(|i| (i * 7 % 251) as u8).collect();
        let zeros = vec![0u8; 3 * ZERO_RUN + 5];
        let cases: Vec<Vec<Result<&[u8], u64>>> = vec![
            vec![],
            vec![Ok(b"abc")],
            vec![Ok(&big)],
            vec![Ok(&big[..BUFFER]), Ok(&big[BUFFER..])],
            vec![Ok(&big[..5]), Err(70_000), Ok(&big[5..BUFFER + 3]), Err(1), Err(0), Ok(&big[..1])],
            vec![Err(10 * BUFFER as u64 + 3)],
            // Zeros given as data: whole runs cross as lengths, the rest is copied.
            vec![Ok(&zeros), Ok(&big[..7]), Ok(&zeros[..ZERO_RUN + 1]), Ok(&zeros[..ZERO_RUN - 1])],
        ];
        for (i, parts) in cases.iter().enumerate() {
            assert_eq!(digest(&OFFLOADED, parts), digest(&Sha2, parts), "case {i}");
        }
    }

    #[test]
    fn interleaved_and_abandoned_computations_do_not_disturb_each_other() {
        let mut a = OFFLOADED.start();
        let mut b = OFFLOADED.start();
        let mut dropped = OFFLOADED.start();
        let data = vec![9u8; BUFFER * 2 + 5];
        for _ in 0..3 {
            a.update(&data);
            dropped.update(&data);
            b.update_zeros(12_345);
            b.update(&data[..100]);
        }
        drop(dropped);
        let want_a = digest(&Sha2, &[Ok(&data), Ok(&data), Ok(&data)]);
        let z: Vec<Result<&[u8], u64>> = (0..3).flat_map(|_| [Err(12_345), Ok(&data[..100])]).collect();
        assert_eq!(b.finish(), digest(&Sha2, &z));
        assert_eq!(a.finish(), want_a);
    }

    #[test]
    fn a_computation_never_owns_more_than_its_buffers() {
        let mut c = Box::new(match OFFLOADED.queue() {
            Some(q) => {
                let (back, spare) = mpsc::channel();
                Computation {
                    id: u64::MAX,
                    queue: q.clone(),
                    buf: Vec::new(),
                    back,
                    spare,
                    buffers: 0,
                    finished: false,
                }
            }
            None => return,
        });
        c.update(&vec![0u8; 4 * ZERO_RUN]);
        assert_eq!(c.buffers, 0, "whole runs of zeros cross as lengths, without a buffer");
        let data = vec![1u8; BUFFER / 3];
        for _ in 0..200 {
            c.update(&data);
            assert!(c.buffers <= IN_FLIGHT, "{} buffers", c.buffers);
        }
        let want = digest(&Sha2, &[Err(4 * ZERO_RUN as u64), Ok(&vec![1u8; 200 * (BUFFER / 3)])]);
        assert_eq!(c.finish(), want);
    }
}
