//! Opening a bundle argument: a file path or `-` for standard input.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::error::HostError;

/// An opened bundle source.
pub struct BundleInput {
    /// The byte stream.
    pub reader: Box<dyn Read>,
    /// Its length when known (regular files), for progress.
    pub len: Option<u64>,
    /// How to name it in messages.
    pub name: String,
}

/// Opens `arg`: `-` is standard input, anything else a file.
pub fn open_bundle(arg: &str) -> Result<BundleInput, HostError> {
    if arg == "-" {
        return Ok(BundleInput { reader: Box::new(io::stdin().lock()), len: None, name: "<stdin>".into() });
    }
    let path = Path::new(arg);
    let file = File::open(path).map_err(|e| HostError::io(format!("opening {arg}"), e))?;
    let meta = file.metadata().map_err(|e| HostError::io(format!("reading {arg}"), e))?;
    if meta.is_dir() {
        return Err(HostError::Usage(format!("{arg} is a directory, not a bundle")));
    }
    let len = meta.is_file().then_some(meta.len());
    Ok(BundleInput { reader: Box::new(file), len, name: arg.to_string() })
}
