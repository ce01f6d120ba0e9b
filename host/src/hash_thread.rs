//! Hashing on the second core: a [`Sha256Backend`] and a [`Blake3Backend`] whose computations
//! run on worker threads.
//!
//! The core stays single-threaded and sans-IO; it decides what is hashed and what the digests
//! must be (a BLAKE3 computation is the core's own [`Blake3Work`], moved to the worker). These
//! backends only move the arithmetic: each computation copies the bytes it is given into
//! 256 KiB buffers and hands full buffers to its worker, which hashes them (SHA-256 with the
//! CPU's SHA instructions through `sha2`, BLAKE3 with its SIMD code) while the validator's thread
//! decompresses, walks the tar and writes the next data. Holes cross as a length, never as
//! bytes, and so do runs of [`ZERO_RUN`] zero bytes given as data (a dense member's zeros when
//! nobody split them off; the worker tells them from holes, which a transport digest skips).
//! `finish` waits for the worker to reach the end of that computation.
//!
//! Memory is bounded: a computation has at most [`IN_FLIGHT`] buffers (4 MiB) between it and the
//! worker and waits for one to come back before filling another, so a slow worker slows the
//! stream instead of growing a queue. SHA-256 has one worker and BLAKE3 another, each serving the
//! whole process; computations of several validators interleave on a worker in the order their
//! buffers arrive.
//!
//! With one CPU there is nothing to overlap, and [`backend`] and [`blake3_backend`] are the
//! core's inline implementations.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::OnceLock;

use sha2::{Digest as _, Sha256};
use snapbundle_core::blake3_work::{self, Blake3Backend, Blake3Digests, Blake3State, Blake3Work};
use snapbundle_core::holes::is_zero;
use snapbundle_core::integrity::{Sha2, Sha256Backend, Sha256State};

/// Bytes a buffer holds before it goes to the worker.
const BUFFER: usize = 256 << 10;
/// Zero bytes given as data that cross as a length instead of a copy: whole pieces of this size.
pub const ZERO_RUN: usize = 64 << 10;
/// Buffers one computation may have queued or being hashed.
pub const IN_FLIGHT: usize = 16;
/// Zero bytes the worker feeds SHA-256 for zeros, 1024 blocks a call.
static ZEROS: [u8; 1 << 16] = [0; 1 << 16];

/// Whether this process offloads: two or more CPUs to run on.
fn offload() -> bool {
    static CHOICE: OnceLock<bool> = OnceLock::new();
    *CHOICE.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2))
}

/// The SHA-256 backend for validators in this process: [`OFFLOADED`] when there are two or more
/// CPUs to run on, else the core's inline [`Sha2`].
pub fn backend() -> &'static dyn Sha256Backend {
    if offload() {
        &OFFLOADED
    } else {
        &Sha2
    }
}

/// The BLAKE3 backend for validators in this process: [`BLAKE3_OFFLOADED`] when there are two or
/// more CPUs to run on, else the core's [`blake3_work::Inline`].
pub fn blake3_backend() -> &'static dyn Blake3Backend {
    if offload() {
        &BLAKE3_OFFLOADED
    } else {
        &blake3_work::Inline
    }
}

/// A computation as the worker runs it.
trait Work: Send {
    /// Adds bytes.
    fn bytes(&mut self, bytes: &[u8]);
    /// Adds `len` zero bytes that were given as data.
    fn zeros(&mut self, len: u64);
    /// Adds a hole of `len` zero bytes.
    fn hole(&mut self, len: u64);
    /// Finishes, sending the result to whoever waits for it.
    fn finish(self: Box<Self>);
}

/// What a computation sends its worker.
enum Msg {
    /// A new computation.
    Start(Box<dyn Work>),
    /// Bytes to add; the buffer goes back on the sender.
    Bytes(Vec<u8>, Sender<Vec<u8>>),
    /// Zero bytes given as data.
    Zeros(u64),
    /// A hole.
    Hole(u64),
    /// The end.
    Finish,
    /// The computation was dropped unfinished.
    Abandon,
}

/// One worker thread and its queue, started with its first computation.
#[derive(Debug)]
pub struct Worker {
    name: &'static str,
    queue: OnceLock<Option<SyncSender<(u64, Msg)>>>,
    next_id: AtomicU64,
}

impl Worker {
    const fn new(name: &'static str) -> Worker {
        Worker { name, queue: OnceLock::new(), next_id: AtomicU64::new(0) }
    }

    /// The worker's queue, starting the worker on first use; `None` if it could not be started.
    fn queue(&self) -> Option<&SyncSender<(u64, Msg)>> {
        self.queue
            .get_or_init(|| {
                let (tx, rx) = mpsc::sync_channel(2 * IN_FLIGHT);
                let spawned = std::thread::Builder::new().name(self.name.into()).spawn(move || work_on(rx));
                spawned.ok().map(|_| tx)
            })
            .as_ref()
    }

    /// A stream to a new computation `work` on the worker of `queue`.
    fn start(&self, queue: &SyncSender<(u64, Msg)>, work: Box<dyn Work>) -> Stream {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (back, spare) = mpsc::channel();
        let stream =
            Stream { id, queue: queue.clone(), buf: Vec::new(), back, spare, buffers: 0, finished: false };
        stream.send(Msg::Start(work));
        stream
    }
}

/// The worker: the live computations, fed in arrival order.
fn work_on(rx: Receiver<(u64, Msg)>) {
    let mut live: HashMap<u64, Box<dyn Work>> = HashMap::new();
    while let Ok((id, msg)) = rx.recv() {
        match msg {
            Msg::Start(w) => {
                live.insert(id, w);
            }
            Msg::Bytes(mut buf, back) => {
                if let Some(w) = live.get_mut(&id) {
                    w.bytes(&buf);
                }
                buf.clear();
                // The computation may be gone (dropped after an error): then so is the buffer.
                let _ = back.send(buf);
            }
            Msg::Zeros(len) => {
                if let Some(w) = live.get_mut(&id) {
                    w.zeros(len);
                }
            }
            Msg::Hole(len) => {
                if let Some(w) = live.get_mut(&id) {
                    w.hole(len);
                }
            }
            Msg::Finish => {
                if let Some(w) = live.remove(&id) {
                    w.finish();
                }
            }
            Msg::Abandon => {
                live.remove(&id);
            }
        }
    }
}

/// The validator's end of one computation on a worker.
struct Stream {
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

impl Stream {
    fn send(&self, msg: Msg) {
        // The worker only stops when the process does; if it is gone the result never comes, the
        // digest is wrong and the validator rejects the archive (fail closed), never accepts it.
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

    /// Adds bytes; a whole piece of zeros costs a scan that stops at the first non-zero 64
    /// bytes, against a copy.
    fn update(&mut self, bytes: &[u8]) {
        for piece in bytes.chunks(ZERO_RUN) {
            if piece.len() == ZERO_RUN && is_zero(piece) {
                self.flush();
                self.send(Msg::Zeros(ZERO_RUN as u64));
            } else {
                self.copy(piece);
            }
        }
    }

    /// Adds a hole.
    fn hole(&mut self, len: u64) {
        self.flush();
        self.send(Msg::Hole(len));
    }

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

    /// Sends the rest and the end; the result comes on the computation's own channel.
    fn finish(&mut self) {
        self.flush();
        self.send(Msg::Finish);
        self.finished = true;
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if !self.finished {
            self.send(Msg::Abandon);
        }
    }
}

/// The SHA-256 offloading backend (see the module docs).
#[derive(Debug)]
pub struct Offloaded(Worker);

/// The process's SHA-256 offloading backend; its worker starts with the first computation.
pub static OFFLOADED: Offloaded = Offloaded(Worker::new("snapbundle-sha256"));

/// A SHA-256 computation as the worker runs it.
struct ShaWork(Sha256, SyncSender<[u8; 32]>);

impl Work for ShaWork {
    fn bytes(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn zeros(&mut self, mut len: u64) {
        while len > 0 {
            let n = len.min(ZEROS.len() as u64) as usize;
            self.0.update(ZEROS.get(..n).unwrap_or(&[]));
            len -= n as u64;
        }
    }

    fn hole(&mut self, len: u64) {
        self.zeros(len);
    }

    fn finish(self: Box<Self>) {
        let _ = self.1.send(self.0.finalize().into());
    }
}

/// A SHA-256 computation on the worker, from the validator's side.
struct ShaComputation(Stream, Receiver<[u8; 32]>);

impl Sha256Backend for Offloaded {
    fn start(&self) -> Box<dyn Sha256State> {
        let Some(queue) = self.0.queue() else {
            // No thread could be started: hash inline, as with one CPU.
            return Sha2.start();
        };
        let (reply, result) = mpsc::sync_channel(1);
        Box::new(ShaComputation(self.0.start(queue, Box::new(ShaWork(Sha256::new(), reply))), result))
    }
}

impl Sha256State for ShaComputation {
    fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn update_zeros(&mut self, len: u64) {
        self.0.hole(len);
    }

    fn finish(mut self: Box<Self>) -> [u8; 32] {
        self.0.finish();
        self.1.recv().unwrap_or_default()
    }
}

/// The BLAKE3 offloading backend (see the module docs).
#[derive(Debug)]
pub struct Blake3Offloaded(Worker);

/// The process's BLAKE3 offloading backend; its worker starts with the first computation.
pub static BLAKE3_OFFLOADED: Blake3Offloaded = Blake3Offloaded(Worker::new("snapbundle-blake3"));

/// A member's BLAKE3 work as the worker runs it.
struct B3Work(Blake3Work, SyncSender<Blake3Digests>);

impl Work for B3Work {
    fn bytes(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn zeros(&mut self, len: u64) {
        self.0.stored_zeros(len);
    }

    fn hole(&mut self, len: u64) {
        self.0.hole(len);
    }

    fn finish(self: Box<Self>) {
        let _ = self.1.send(self.0.finish());
    }
}

/// A member's BLAKE3 work on the worker, from the validator's side.
struct B3Computation(Stream, Receiver<Blake3Digests>);

impl Blake3Backend for Blake3Offloaded {
    fn start(&self, work: Blake3Work) -> Box<dyn Blake3State> {
        let Some(queue) = self.0.queue() else {
            // No thread could be started: run the work inline, as with one CPU.
            return blake3_work::Inline.start(work);
        };
        let (reply, result) = mpsc::sync_channel(1);
        Box::new(B3Computation(self.0.start(queue, Box::new(B3Work(work, reply))), result))
    }
}

impl Blake3State for B3Computation {
    fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn hole(&mut self, len: u64) {
        self.0.hole(len);
    }

    fn finish(mut self: Box<Self>) -> Blake3Digests {
        self.0.finish();
        // Fail closed: without the worker's answer no digest matches a recorded one.
        self.1.recv().unwrap_or(Blake3Digests { transport: None, merkle: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snapbundle_core::generation::g3::transport::TransportHasher;
    use snapbundle_core::merkle::{FileMerkle, CHECKPOINT_FILE};

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
        let Some(queue) = OFFLOADED.0.queue() else { return };
        let (reply, result) = mpsc::sync_channel(1);
        let mut c = ShaComputation(OFFLOADED.0.start(queue, Box::new(ShaWork(Sha256::new(), reply))), result);
        c.update(&vec![0u8; 4 * ZERO_RUN]);
        assert_eq!(c.0.buffers, 0, "whole runs of zeros cross as lengths, without a buffer");
        let data = vec![1u8; BUFFER / 3];
        for _ in 0..200 {
            c.update(&data);
            assert!(c.0.buffers <= IN_FLIGHT, "{} buffers", c.0.buffers);
        }
        let want = digest(&Sha2, &[Err(4 * ZERO_RUN as u64), Ok(&vec![1u8; 200 * (BUFFER / 3)])]);
        assert_eq!(Box::new(c).finish(), want);
    }

    /// A small deterministic generator (xorshift64*), so that a failure can be replayed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    /// A piece of a member's content: stored bytes, or a hole.
    enum Piece {
        Data(Vec<u8>),
        Hole(u64),
    }

    /// A random member: data runs (random, text-like, zeros, some a whole [`ZERO_RUN`] or more)
    /// and holes, of random lengths around the buffer and leaf sizes.
    fn member(rng: &mut Rng) -> Vec<Piece> {
        let count = rng.below(8);
        (0..count)
            .map(|_| {
                let len = match rng.below(4) {
                    0 => rng.below(100),
                    1 => rng.below(3 * ZERO_RUN as u64),
                    2 => BUFFER as u64 + rng.below(3) - 1,
                    _ => rng.below(2 * BUFFER as u64 + 1),
                } as usize;
                match rng.below(4) {
                    0 => Piece::Hole(len as u64 + rng.below(1 << 30) * u64::from(rng.below(4) == 0)),
                    1 => Piece::Data(vec![0; len]),
                    2 => Piece::Data((0..len).map(|i| b"text, "[i % 6]).collect()),
                    _ => Piece::Data((0..len).map(|_| rng.next() as u8).collect()),
                }
            })
            .collect()
    }

    /// The BLAKE3 digests of `pieces` fed by `backend` in chunks cut by `rng`, as the validator
    /// feeds them: a transport digest of the stored bytes when `transport`, a Merkle root when
    /// `merkle` (of the checkpoint domain when `checkpoint`).
    fn blake3_digests(
        backend: &dyn Blake3Backend,
        pieces: &[Piece],
        flags: (bool, bool, bool),
        rng: &mut Rng,
    ) -> Blake3Digests {
        let (transport, merkle, checkpoint) = flags;
        let stored: u64 =
            pieces.iter().map(|p| if let Piece::Data(d) = p { d.len() as u64 } else { 0 }).sum();
        let logical = pieces.iter().map(|p| match p {
            Piece::Data(d) => d.len() as u64,
            Piece::Hole(n) => *n,
        });
        let ranges = [(0, stored), (logical.sum(), 0)];
        let t =
            transport.then(|| TransportHasher::new("file-payload", "layers/l.raw", stored, 1 << 40, &ranges));
        let m =
            merkle.then(
                || if checkpoint { FileMerkle::in_domain(&CHECKPOINT_FILE) } else { FileMerkle::new() },
            );
        let mut s = backend.start(Blake3Work::new(t, m));
        for p in pieces {
            match p {
                Piece::Data(d) => {
                    let mut d: &[u8] = d;
                    while !d.is_empty() {
                        let n = (1 + rng.below(d.len() as u64)) as usize;
                        let (now, rest) = d.split_at(n);
                        s.update(now);
                        d = rest;
                    }
                }
                Piece::Hole(n) => s.hole(*n),
            }
        }
        s.finish()
    }

    #[test]
    fn offloaded_blake3_work_gives_the_inline_digests() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..48 {
            let pieces = member(&mut rng);
            let flags = (case % 3 != 1, case % 3 != 0, case % 2 == 0);
            let seed = rng.next() | 1;
            let want = blake3_digests(&blake3_work::Inline, &pieces, flags, &mut Rng(seed));
            // A different chunking on the worker: the digests do not depend on it.
            let got = blake3_digests(&BLAKE3_OFFLOADED, &pieces, flags, &mut Rng(seed ^ 0xff00));
            assert_eq!(got, want, "case {case}");
            assert_eq!(got.transport.is_some(), flags.0, "case {case}");
            assert_eq!(got.merkle.is_some(), flags.1, "case {case}");
        }
    }

    #[test]
    fn offloaded_blake3_of_empty_and_zero_members() {
        let cases: Vec<Vec<Piece>> = vec![
            vec![],
            vec![Piece::Data(vec![])],
            vec![Piece::Hole(0)],
            vec![Piece::Hole(8 << 30)],
            vec![Piece::Data(vec![0; 5 * ZERO_RUN])],
            vec![Piece::Data(vec![0; ZERO_RUN]), Piece::Hole(3), Piece::Data(vec![0; ZERO_RUN + 1])],
        ];
        for (i, pieces) in cases.iter().enumerate() {
            for flags in [(true, true, false), (true, false, false), (false, true, true)] {
                let want = blake3_digests(&blake3_work::Inline, pieces, flags, &mut Rng(7));
                let got = blake3_digests(&BLAKE3_OFFLOADED, pieces, flags, &mut Rng(11));
                assert_eq!(got, want, "case {i}, {flags:?}");
            }
        }
    }

    #[test]
    fn interleaved_and_abandoned_blake3_work_does_not_disturb_other_work() {
        let work = || Blake3Work::new(None, Some(FileMerkle::new()));
        let data: Vec<u8> = (0..BUFFER * 2 + 5).map(|i| (i % 13) as u8).collect();
        let mut a = BLAKE3_OFFLOADED.start(work());
        let mut dropped = BLAKE3_OFFLOADED.start(work());
        let mut want = blake3_work::Inline.start(work());
        for _ in 0..3 {
            a.update(&data);
            dropped.update(&data);
            want.update(&data);
            a.hole(12_345);
            want.hole(12_345);
        }
        drop(dropped);
        assert_eq!(a.finish(), want.finish());
    }
}
