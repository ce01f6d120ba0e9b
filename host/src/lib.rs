//! # snapbundle
//!
//! Export, validate and import microsandbox snapshot bundles. The format decisions live in
//! [`snapbundle_core`]; this crate owns files, processes and terminals.
//!
//! ```no_run
//! use snapbundle::{check, progress::Progress};
//! let mut file = std::fs::File::open("bundle.tar.zst")?;
//! let report = check::verify_stream(&mut file, "bundle.tar.zst", Default::default(), &Progress::hidden())?;
//! println!("head {}", report.head);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// One `unsafe` block exists (loading the cached sandbox component, `sandbox::cache`), allowed
// there with its SAFETY argument; nothing else may add one.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, rust_2018_idioms)]

pub mod check;
pub mod compress;
pub mod crash;
pub mod display;
pub mod error;
pub mod export;
pub mod fsutil;
pub mod hash_thread;
pub mod home;
pub mod import;
pub mod index;
pub mod input;
pub mod msb;
pub(crate) mod piped;
pub mod plural;
pub mod progress;
pub mod promote;
pub mod publish;
pub mod registry;
pub mod render;
pub mod render_msb;
pub mod render_released;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod sparse;
pub mod stage;
pub mod store;
pub mod tar_writer;
pub mod verified;
pub mod writeback;

pub use error::HostError;
pub use snapbundle_core::{Limits, Report};
