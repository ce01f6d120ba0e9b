//! Snapshots through an OCI registry: [`push`] and [`pull`].
//!
//! A pushed chain is one OCI image manifest whose layers are the bundle's members, one blob
//! each (the format is the core's [`registry_artifact`](snapbundle_core::registry_artifact),
//! documented in `docs/registry-format.md`), so a parent or an image file shared by many
//! snapshots is stored and uploaded once. Pull rebuilds the exact 0.6.2 tar stream from the layers and runs it through [`crate::import`], so validation,
//! staging and promotion are import's own. Requests are our own, following the distribution
//! spec, so that what a registry sends is bounded while it is read and an upload can continue
//! where the registry stands. They are built in layers, each importing only those below it:
//! `http` (sending a request authenticated, TLS by default, the token exchange, bounded reads,
//! why a request failed), then the requests ([`fetch`](mod@fetch): pull's GETs; `upload`:
//! push's), then [`client`] (the connection and its one retry rule: backoff on transient
//! failures, never on 401/403), then [`push`] and [`pull`]. [`auth`] reads credentials from the
//! command line or the Docker configuration; [`reference`](mod@reference) parses references
//! with the core. Records under the home's
//! cache make repeated work cheap: [`known`] (the blob a file compressed to), [`seen`]
//! (repositories holding a blob, to mount from), [`resume`] (unfinished upload sessions),
//! [`blobs`] (verified pulled blobs).
//!
//! ```no_run
//! use snapbundle::home::Home;
//! use snapbundle::registry::{pull, push, Connection, PullOptions, PullTarget, PushOptions};
//!
//! let home = Home::resolve(None)?;
//! let conn = Connection::default(); // HTTPS, anonymous or ~/.docker/config.json credentials
//! let opts = PushOptions { with_parents: true, ..Default::default() };
//! let pushed = push::push(&home, "web", "registry.example/snaps/web:v1", &conn, &opts)?;
//! println!("{} uploaded, {} skipped", pushed.uploaded, pushed.skipped);
//! let other = Home::at("/srv/msb");
//! pull::pull(&other, "registry.example/snaps/web:v1", &conn, &PullOptions::default(), PullTarget::Import { dest: None })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod auth;
pub mod blobs;
pub mod client;
pub mod fetch;
pub(crate) mod http;
pub mod known;
pub mod pull;
pub mod push;
pub mod reference;
pub mod resume;
pub mod seen;
pub mod spool;
pub(crate) mod upload;

pub use auth::Credentials;
pub use client::Connection;
pub use pull::{PullOptions, PullOutcome, PullTarget};
pub use push::{PushOptions, PushOutcome};
