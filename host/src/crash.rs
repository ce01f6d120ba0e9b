//! A test hook that kills the process at a named point, to prove crash safety.
//!
//! When `SNAPBUNDLE_TEST_CRASH_AT` equals a point's name, the process sends itself SIGKILL there:
//! no destructor, no cleanup, exactly like a power cut for the store's purposes. Points:
//! `decode` (after the first chunk has been staged), `staged` (everything staged and verified,
//! before the journal), `journal` (journal committed, before the first rename), `promote-1`
//! (after the first rename), `promoted` (after the last rename, before cleanup).

use std::sync::OnceLock;

/// The environment variable that arms the hook.
pub const ENV: &str = "SNAPBUNDLE_TEST_CRASH_AT";

fn armed() -> Option<&'static str> {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    AT.get_or_init(|| std::env::var(ENV).ok().filter(|v| !v.is_empty())).as_deref()
}

/// Dies here if the hook names this point.
pub fn point(name: &str) {
    if armed() == Some(name) {
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        // SIGKILL cannot be caught; if sending it failed, abort is the next best thing.
        std::process::abort();
    }
}
