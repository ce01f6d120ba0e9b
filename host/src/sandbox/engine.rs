//! The wasmtime side: the embedded component, compiled (or loaded from [`super::cache`]) once
//! per process, and the per-run store with its memory cap and deadline.
//!
//! The engine runs with epoch interruption; a background thread advances the epoch every
//! [`TICK`]. Each call into the guest gets a deadline of one tick, and when it expires the
//! callback compares the guest's own running time (wall time of the call minus the time spent
//! inside the host's event functions, e.g. waiting for a disk) with the configured deadline:
//! under it the call continues, over it the call traps. Memory growth beyond the cap is refused
//! by a [`wasmtime::ResourceLimiter`]; the guest's allocator then fails and the guest traps.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, Store, UpdateDeadline};

use super::SandboxOptions;

/// The bindings `bindgen!` generates from `wasm/wit` (undocumented: generated).
#[allow(missing_docs)]
mod bindings {
    pub use super::Sha256State;

    wasmtime::component::bindgen!({
        world: "validator",
        path: "../wasm/wit",
        // A digest call naming a state the guest does not own traps instead of panicking.
        imports: { "snapbundle:sandbox/digest": trappable },
        with: { "snapbundle:sandbox/digest.sha256": Sha256State },
    });
}

pub use self::bindings::*;
pub use self::snapbundle::sandbox::types::{Digests, Failure, Member};

/// The component: `wasm/component/snapbundle-validator.wasm`, built from `wasm/guest` by
/// `scripts/build-wasm.sh` and committed (see `docs/sandbox.md` for why).
pub const COMPONENT: &[u8] = include_bytes!("../../../wasm/component/snapbundle-validator.wasm");

/// How often the epoch advances.
pub const TICK: Duration = Duration::from_millis(10);

/// What the guest hands to the host while a push runs.
#[derive(Debug)]
pub enum Owned {
    /// A member header.
    Member(Member),
    /// File content at an offset.
    Data(u64, Vec<u8>),
    /// A hole at an offset, with a length.
    Hole(u64, u64),
    /// End of file: size and digests.
    FileEnd(u64, Digests),
}

/// Receives the guest's events (on the thread that runs the guest).
pub type EventFn = Box<dyn FnMut(Owned) -> bool + Send>;

/// A SHA-256 computation the guest runs through the `digest` import: the host's backend
/// ([`crate::hash_thread`]: natively, SHA-NI where the CPU has it, on the second core), several
/// times faster than the same code compiled to WebAssembly. Only the arithmetic moves out of the sandbox: what is
/// hashed, and what the digests must match, stay the core's decisions inside it. The host is
/// trusted (it runs the sandbox and writes the files), so computing digests for it adds no trust.
pub struct Sha256State(Box<dyn snapbundle_core::integrity::Sha256State>);

/// The most SHA-256 computations a guest may hold at once (it needs at most two per file).
const MAX_SHA256_STATES: usize = 64;

/// The store's data: limits, the deadline bookkeeping and the event receiver.
pub struct State {
    /// The guest's SHA-256 computations.
    table: ResourceTable,
    memory_cap: usize,
    /// Set when the memory cap refused a growth.
    pub memory_hit: bool,
    deadline: Duration,
    call_start: Instant,
    in_host: Duration,
    /// Set when the deadline stopped a call.
    pub deadline_hit: bool,
    events: Option<EventFn>,
}

impl State {
    fn deliver(&mut self, event: Owned) -> bool {
        let Some(f) = self.events.as_mut() else { return false };
        let t = Instant::now();
        let go = f(event);
        self.in_host += t.elapsed();
        go
    }

    /// Starts the clock for one call into the guest.
    pub fn start_call(&mut self) {
        self.call_start = Instant::now();
        self.in_host = Duration::ZERO;
    }
}

impl wasmtime::ResourceLimiter for State {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 65_536)
    }
}

impl self::snapbundle::sandbox::types::Host for State {}

impl self::snapbundle::sandbox::digest::Host for State {}

impl self::snapbundle::sandbox::digest::HostSha256 for State {
    fn new(&mut self) -> wasmtime::Result<Resource<Sha256State>> {
        // Fails (a trap) beyond MAX_SHA256_STATES live computations.
        Ok(self.table.push(Sha256State(crate::hash_thread::backend().start()))?)
    }

    fn update(&mut self, state: Resource<Sha256State>, bytes: Vec<u8>) -> wasmtime::Result<()> {
        self.table.get_mut(&state)?.0.update(&bytes);
        Ok(())
    }

    fn update_zeros(&mut self, state: Resource<Sha256State>, len: u64) -> wasmtime::Result<()> {
        self.table.get_mut(&state)?.0.update_zeros(len);
        Ok(())
    }

    fn finish(&mut self, state: Resource<Sha256State>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.delete(state)?.0.finish().to_vec())
    }

    fn drop(&mut self, state: Resource<Sha256State>) -> wasmtime::Result<()> {
        self.table.delete(state)?;
        Ok(())
    }
}

impl self::snapbundle::sandbox::events::Host for State {
    fn member_start(&mut self, m: Member) -> bool {
        self.deliver(Owned::Member(m))
    }

    fn data(&mut self, offset: u64, bytes: Vec<u8>) -> bool {
        self.deliver(Owned::Data(offset, bytes))
    }

    fn hole(&mut self, offset: u64, len: u64) -> bool {
        self.deliver(Owned::Hole(offset, len))
    }

    fn file_end(&mut self, size: u64, digests: Digests) -> bool {
        self.deliver(Owned::FileEnd(size, digests))
    }
}

/// The engine and the pre-instantiated component, shared by every run of the process.
pub struct Compiled {
    engine: Engine,
    pre: ValidatorPre<State>,
    /// How long compiling (or loading it from the on-disk cache) took, once per process.
    pub compile_time: Duration,
    /// Whether the compiled component came from the on-disk cache ([`super::cache`]).
    pub from_cache: bool,
}

static COMPILED: OnceLock<Result<Compiled, String>> = OnceLock::new();

fn compile() -> Result<Compiled, String> {
    let t = Instant::now();
    let mut config = Config::new();
    config.epoch_interruption(true);
    let engine = Engine::new(&config).map_err(|e| format!("creating the wasmtime engine: {e}"))?;
    let (component, from_cache) = super::cache::load_or_compile(&engine, COMPONENT)?;
    let mut linker = Linker::<State>::new(&engine);
    Validator::add_to_linker::<State, wasmtime::component::HasSelf<State>>(&mut linker, |s| s)
        .map_err(|e| format!("linking the sandbox component: {e}"))?;
    let pre = linker
        .instantiate_pre(&component)
        .and_then(ValidatorPre::new)
        .map_err(|e| format!("preparing the sandbox component: {e}"))?;
    let ticker = engine.clone();
    std::thread::Builder::new()
        .name("snapbundle-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(TICK);
            ticker.increment_epoch();
        })
        .map_err(|e| format!("starting the sandbox clock: {e}"))?;
    Ok(Compiled { engine, pre, compile_time: t.elapsed(), from_cache })
}

/// The compiled component, compiling it on first use.
pub fn compiled() -> Result<&'static Compiled, String> {
    COMPILED.get_or_init(compile).as_ref().map_err(Clone::clone)
}

/// A fresh store and instance for one bundle.
pub fn instantiate(
    compiled: &Compiled,
    opts: &SandboxOptions,
    events: Option<EventFn>,
) -> wasmtime::Result<(Store<State>, Validator)> {
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_SHA256_STATES);
    let state = State {
        table,
        memory_cap: usize::try_from(opts.memory_limit).unwrap_or(usize::MAX),
        memory_hit: false,
        deadline: opts.deadline,
        call_start: Instant::now(),
        in_host: Duration::ZERO,
        deadline_hit: false,
        events,
    };
    let mut store = Store::new(&compiled.engine, state);
    store.limiter(|s| s);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut ctx| {
        let s = ctx.data_mut();
        let guest_time = s.call_start.elapsed().saturating_sub(s.in_host);
        if guest_time > s.deadline {
            s.deadline_hit = true;
            return Err(wasmtime::Error::msg("sandbox deadline reached"));
        }
        Ok(UpdateDeadline::Continue(1))
    });
    let instance = compiled.pre.instantiate(&mut store)?;
    Ok((store, instance))
}
