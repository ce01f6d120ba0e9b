//! The snapbundle validation core behind the WIT world `snapbundle:sandbox/validator`
//! (`wasm/wit/validator.wit`), built as a WebAssembly component that the host runs in wasmtime.
//!
//! Bindings only: every decision is the core's. Errors cross as the core's `code`, `kind` and
//! `Display` text; the report crosses as the same JSON the command line prints; events cross
//! through the imported `events` interface, one call per event, so the guest buffers nothing.
//! Built for `wasm32-unknown-unknown` without `std` by `scripts/build-wasm.sh`; natively it
//! compiles too (so that clippy and the workspace see it), with the imports as stubs.
#![cfg_attr(target_arch = "wasm32", no_std)]
#![warn(missing_docs)]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::RefCell;

use snapbundle_core::integrity::{Sha256Backend, Sha256State};
use snapbundle_core::{Error, Event, Limits, NullSink, Sink, Stop, Validator};

/// The bindings wit-bindgen generates from the world.
#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({ world: "validator", path: "../wit" });
}

use bindings::exports::snapbundle::sandbox::validation::{Guest, GuestValidator, Validator as Handle};
use bindings::snapbundle::sandbox::digest::Sha256;
use bindings::snapbundle::sandbox::events;
use bindings::snapbundle::sandbox::types::{Digests, Failure, Member};

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// A panic is a bug; it traps, and the host reports the trap. Nothing is formatted.
#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// SHA-256 computed by the host through the imported `digest` interface: natively it runs several
/// times faster than the portable code compiled to WebAssembly. Only the arithmetic moves; what
/// is hashed and what the digests must be stay the core's decisions, inside the sandbox.
#[derive(Debug)]
struct HostSha256;

/// One host computation.
struct HostState(Sha256);

impl Sha256State for HostState {
    fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn update_zeros(&mut self, len: u64) {
        self.0.update_zeros(len);
    }

    fn finish(self: alloc::boxed::Box<Self>) -> [u8; 32] {
        let d = Sha256::finish(self.0);
        let mut out = [0u8; 32];
        // The host always answers 32 bytes (host/src/sandbox/engine.rs); no panic path if not.
        if let Some(d) = d.get(..32) {
            out.copy_from_slice(d);
        }
        out
    }
}

impl Sha256Backend for HostSha256 {
    fn start(&self) -> alloc::boxed::Box<dyn Sha256State> {
        alloc::boxed::Box::new(HostState(Sha256::new()))
    }
}

fn failure(e: &Error) -> Failure {
    Failure { code: e.code().to_string(), kind: e.kind().to_string(), message: e.to_string() }
}

/// The component's exports.
pub struct Component;

impl Guest for Component {
    type Validator = GuestValidatorState;
}

/// One validation: the core's validator until `finish` consumes it.
pub struct GuestValidatorState {
    inner: RefCell<Option<Validator>>,
    want_events: bool,
}

/// Forwards each core event to the host's `events` import.
struct HostSink;

impl Sink for HostSink {
    fn event(&mut self, event: Event<'_>) -> Result<(), Stop> {
        let go = match event {
            Event::Member(m) => events::member_start(&Member {
                index: m.index,
                offset: m.offset,
                path: m.path.to_string(),
                is_dir: m.slot.is_dir(),
                size: m.size,
                mtime: m.mtime,
                mode: m.mode,
                hash_sha256: m.hashes.sha256,
                hash_sparse_sha256: m.hashes.sparse_sha256,
            }),
            Event::Data { offset, bytes } => events::data(offset, bytes),
            Event::Hole { offset, len } => events::hole(offset, len),
            Event::FileEnd { size, digests } => events::file_end(
                size,
                &Digests {
                    sha256: digests.sha256.map(|d| d.to_vec()),
                    sparse_sha256: digests.sparse_sha256.map(|d| d.to_vec()),
                },
            ),
        };
        if go {
            Ok(())
        } else {
            Err(Stop)
        }
    }
}

impl GuestValidator for GuestValidatorState {
    fn create(limits_json: String, want_events: bool) -> Result<Handle, Failure> {
        let limits: Limits = serde_json::from_slice(limits_json.as_bytes()).map_err(|e| Failure {
            code: "invalid_limits".to_string(),
            kind: "caller".to_string(),
            message: format!("invalid limits: {e}"),
        })?;
        Ok(Handle::new(GuestValidatorState {
            inner: RefCell::new(Some(Validator::with_sha256(limits, &HostSha256))),
            want_events,
        }))
    }

    fn push(&self, chunk: Vec<u8>) -> Result<(), Failure> {
        let mut inner = self.inner.borrow_mut();
        let v = inner.as_mut().ok_or_else(|| failure(&Error::Finished))?;
        let r = if self.want_events { v.push(&chunk, &mut HostSink) } else { v.push(&chunk, &mut NullSink) };
        r.map_err(|e| failure(&e))
    }

    fn compressed_bytes(&self) -> u64 {
        self.inner.borrow().as_ref().map_or(0, |v| v.compressed_bytes())
    }

    fn finish(&self) -> Result<String, Failure> {
        let v = self.inner.borrow_mut().take().ok_or_else(|| failure(&Error::Finished))?;
        let report = v.finish().map_err(|e| failure(&e))?;
        serde_json::to_string(&report).map_err(|e| Failure {
            code: "internal".to_string(),
            kind: "caller".to_string(),
            message: format!("report serialisation failed: {e}"),
        })
    }
}

bindings::export!(Component with_types_in bindings);
