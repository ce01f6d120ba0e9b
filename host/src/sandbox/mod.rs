//! Validation inside a wasmtime sandbox: the core, compiled to a WebAssembly component
//! (`wasm/guest`, world `snapbundle:sandbox/validator` in `wasm/wit/validator.wit`), judges the
//! bundle; the host only moves bytes in and events out, and writes files.
//!
//! How an import crosses the boundary:
//! - the host reads the bundle and pushes each chunk into the guest;
//! - while a push runs, the guest calls the host's `events` functions (member, data slice, hole,
//!   end of file). The guest runs on a worker thread; its events travel over a bounded channel
//!   to the caller's thread, which hands them to the caller's [`Sink`] (the import's stager), so
//!   memory stays bounded however well the bundle compresses;
//! - [`checked`] re-derives every path with the core's name grammar, hashes every byte again,
//!   and finally requires the guest's report (its file plan) to name exactly the files written.
//!
//! So the verdict and the file plan come from the sandbox, the writes happen outside it, and a
//! guest that lied would be caught before anything is promoted. The component is compiled once
//! per process ([`engine::compiled`]), or loaded from the on-disk cache of compiled components
//! ([`cache`]); each bundle gets a fresh instance with its own memory cap and deadline
//! ([`SandboxOptions`]).

pub mod cache;
pub mod checked;
pub mod engine;
pub mod error;

use std::io::{ErrorKind, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use snapbundle_core::{Limits, NullSink, Report, Sink};

use crate::error::HostError;
use crate::progress::Progress;
use checked::Checked;
use engine::{Compiled, Failure, Owned};
pub use error::SandboxError;

/// Resource bounds of the sandbox itself (the validator's own bounds are [`Limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxOptions {
    /// Most bytes of linear memory the guest may have.
    pub memory_limit: u64,
    /// Most time the guest may compute in one call (a push of one chunk, or finish); time
    /// spent in the host's event functions (writing files) does not count.
    pub deadline: Duration,
}

impl SandboxOptions {
    /// 512 MiB of memory (the default zstd window cap is 128 MiB), 60 s per call.
    pub const DEFAULT: SandboxOptions =
        SandboxOptions { memory_limit: 512 << 20, deadline: Duration::from_secs(60) };
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Compiles the component now (it is otherwise compiled on first use); returns how long the
/// one compilation of this process took.
pub fn precompile() -> Result<Duration, HostError> {
    engine::compiled().map(|c| c.compile_time).map_err(|m| HostError::Sandbox(SandboxError::Setup(m)))
}

/// Validates a bundle stream inside the sandbox without writing anything.
pub fn verify_stream<R: Read + ?Sized>(
    reader: &mut R,
    name: &str,
    limits: Limits,
    opts: &SandboxOptions,
    progress: &Progress,
) -> Result<Report, HostError> {
    let mut sink = NullSink;
    run(reader, name, limits, opts, &mut sink, progress, &mut |_| {
        HostError::Usage("validation stopped".into())
    })
}

enum ToGuest {
    Chunk(Vec<u8>),
    Finish,
}

enum FromGuest {
    Event(Owned),
    Pushed(Result<(), GuestError>),
    Finished(Result<String, GuestError>),
}

enum GuestError {
    Rejected(Failure),
    Sandbox(SandboxError),
}

/// Like [`crate::check::run`], with the validator inside the sandbox: streams `reader` through
/// the guest and hands the (checked) events to `sink`. `on_stop` turns a sink's stop into the
/// sink's own error.
pub fn run<R: Read + ?Sized, S: Sink>(
    reader: &mut R,
    name: &str,
    limits: Limits,
    opts: &SandboxOptions,
    sink: &mut S,
    progress: &Progress,
    on_stop: &mut dyn FnMut(&mut S) -> HostError,
) -> Result<Report, HostError> {
    let compiled = engine::compiled().map_err(|m| HostError::Sandbox(SandboxError::Setup(m)))?;
    let limits_json = serde_json::to_string(&limits)
        .map_err(|e| HostError::Sandbox(SandboxError::Setup(format!("limits: {e}"))))?;
    let want_events = sink.wants_data();
    let (to_tx, to_rx) = sync_channel::<ToGuest>(1);
    let (from_tx, from_rx) = sync_channel::<FromGuest>(64);
    let stop = Arc::new(AtomicBool::new(false));
    let mut checked = Checked::new(sink);
    let outcome = std::thread::scope(|scope| {
        let worker_stop = Arc::clone(&stop);
        let worker_opts = *opts;
        scope.spawn(move || {
            guest_worker(compiled, &worker_opts, &limits_json, want_events, worker_stop, to_rx, from_tx)
        });
        drive(reader, name, &stop, to_tx, from_rx, &mut checked, progress)
    });
    let json = match outcome {
        Ok(json) => json,
        Err(Driven::Host(e)) => return Err(e),
        Err(Driven::Guest(GuestError::Sandbox(e))) => return Err(HostError::Sandbox(e)),
        Err(Driven::Guest(GuestError::Rejected(f))) => {
            if let Some(v) = checked.violation.take() {
                return Err(HostError::Sandbox(SandboxError::Protocol(v.0)));
            }
            if f.code == "stopped" && checked.sink_stopped {
                drop(checked);
                return Err(on_stop(sink));
            }
            return Err(HostError::Rejected(crate::error::Rejection {
                code: f.code,
                kind: f.kind,
                message: f.message,
            }));
        }
    };
    let report: Report = serde_json::from_str(&json)
        .map_err(|e| HostError::Sandbox(SandboxError::Protocol(format!("unreadable report: {e}"))))?;
    checked.conclude(&report, want_events).map_err(|p| HostError::Sandbox(SandboxError::Protocol(p.0)))?;
    Ok(report)
}

enum Driven {
    Host(HostError),
    Guest(GuestError),
}

/// The caller's side: reads chunks, sends them, replays events until the push is done. Owns
/// both channel ends, so returning early unblocks and ends the worker.
fn drive<R: Read + ?Sized, S: Sink>(
    reader: &mut R,
    name: &str,
    stop: &AtomicBool,
    to_guest: SyncSender<ToGuest>,
    from_guest: Receiver<FromGuest>,
    checked: &mut Checked<'_, S>,
    progress: &Progress,
) -> Result<String, Driven> {
    let mut buf = vec![0u8; crate::check::CHUNK];
    let mut total = 0u64;
    let mut finishing = false;
    loop {
        let msg = if finishing {
            ToGuest::Finish
        } else {
            let n = match reader.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(Driven::Host(HostError::io(format!("reading {name}"), e)));
                }
            };
            if n == 0 {
                finishing = true;
                continue;
            }
            total += n as u64;
            ToGuest::Chunk(buf.get(..n).unwrap_or(&[]).to_vec())
        };
        if to_guest.send(msg).is_err() {
            return Err(Driven::Guest(GuestError::Sandbox(SandboxError::Trap(
                "the sandbox worker ended".into(),
            ))));
        }
        loop {
            match from_guest.recv() {
                Ok(FromGuest::Event(ev)) => {
                    if !checked.handle(ev) {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                Ok(FromGuest::Pushed(Ok(()))) => break,
                Ok(FromGuest::Pushed(Err(e))) => return Err(Driven::Guest(e)),
                Ok(FromGuest::Finished(r)) => return r.map_err(Driven::Guest),
                Err(_) => {
                    return Err(Driven::Guest(GuestError::Sandbox(SandboxError::Trap(
                        "the sandbox worker ended".into(),
                    ))))
                }
            }
        }
        progress.set(total);
    }
}

/// The worker's side: one store and instance, fed until finish or until the caller hangs up.
fn guest_worker(
    compiled: &Compiled,
    opts: &SandboxOptions,
    limits_json: &str,
    want_events: bool,
    stop: Arc<AtomicBool>,
    from_caller: Receiver<ToGuest>,
    to_caller: SyncSender<FromGuest>,
) {
    let events_tx = to_caller.clone();
    let events: engine::EventFn =
        Box::new(move |ev| !stop.load(Ordering::Relaxed) && events_tx.send(FromGuest::Event(ev)).is_ok());
    let (mut store, instance) = match engine::instantiate(compiled, opts, Some(events)) {
        Ok(x) => x,
        Err(e) => {
            let _ = to_caller.send(FromGuest::Pushed(Err(GuestError::Sandbox(SandboxError::Setup(
                format!("instantiating the validator: {e}"),
            )))));
            return;
        }
    };
    let api = instance.snapbundle_sandbox_validation().validator();
    store.data_mut().start_call();
    let handle = match api.call_create(&mut store, limits_json, want_events) {
        Ok(Ok(h)) => h,
        Ok(Err(f)) => {
            let _ = to_caller.send(FromGuest::Pushed(Err(GuestError::Rejected(f))));
            return;
        }
        Err(e) => {
            let _ = to_caller.send(FromGuest::Pushed(Err(trap(&store, opts, &e))));
            return;
        }
    };
    while let Ok(msg) = from_caller.recv() {
        store.data_mut().start_call();
        let reply = match msg {
            ToGuest::Chunk(chunk) => FromGuest::Pushed(match api.call_push(&mut store, handle, &chunk) {
                Ok(r) => r.map_err(GuestError::Rejected),
                Err(e) => Err(trap(&store, opts, &e)),
            }),
            ToGuest::Finish => FromGuest::Finished(match api.call_finish(&mut store, handle) {
                Ok(r) => r.map_err(GuestError::Rejected),
                Err(e) => Err(trap(&store, opts, &e)),
            }),
        };
        if to_caller.send(reply).is_err() {
            return;
        }
    }
}

fn trap(store: &wasmtime::Store<engine::State>, opts: &SandboxOptions, e: &wasmtime::Error) -> GuestError {
    let s = store.data();
    GuestError::Sandbox(if s.memory_hit {
        SandboxError::MemoryLimit(opts.memory_limit)
    } else if s.deadline_hit {
        SandboxError::Deadline(opts.deadline)
    } else {
        SandboxError::Trap(format!("{e}"))
    })
}
