//! The host's side of the boundary: the guest's events become core [`Event`]s again, checked.
//!
//! The guest is the same core, but it parses hostile bytes, so the host believes nothing it is
//! told without checking what it can cheaply: every member path is classified again with the
//! core's name grammar (the slot, and so the staging path, comes from that, not from the guest),
//! events must come in a legal order, every file's bytes are hashed again on the host as they are
//! written (with the digests the guest announced for it), and at the end the files written must
//! be exactly the report's file plan (area, path, size, digest, in order). Any disagreement is a
//! [`Protocol`] error and nothing is promoted.

use snapbundle_core::integrity::{Algorithm, Hashes, MemberDigests, MemberHasher};
use snapbundle_core::names::{self, Slot};
use snapbundle_core::report::{Area, PlannedFile, Report};
use snapbundle_core::{hex, Event, MemberStart, Sink, Stop};

use super::engine::{Member, Owned};

/// A disagreement between the guest's events or report and what the host saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol(pub String);

struct Current {
    area: Area,
    path: String,
    size: u64,
    written: u64,
    hasher: MemberHasher,
}

/// One file the host wrote, as the host measured it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Destination area.
    pub area: Area,
    /// Path relative to the area.
    pub path: String,
    /// Bytes (data and holes).
    pub size: u64,
    /// The digests the host computed of the bytes it wrote.
    pub digests: MemberDigests,
}

impl Written {
    /// Whether `f`, a row of the file plan, describes exactly this file: its digest must be one
    /// the host computed, by the plan's algorithm.
    fn is(&self, f: &PlannedFile) -> bool {
        let ours = Algorithm::parse(&f.algorithm).and_then(|a| self.digests.get(a)).map(hex::sha256_digest);
        self.area == f.area
            && self.path == f.path
            && self.size == f.size
            && ours.as_deref() == Some(&f.digest)
    }
}

/// Replays guest events into a host [`Sink`], checking them.
pub struct Checked<'s, S: Sink> {
    sink: &'s mut S,
    current: Option<Current>,
    written: Vec<Written>,
    /// The first disagreement, if any.
    pub violation: Option<Protocol>,
    /// Whether the host sink (not the checks) stopped the stream.
    pub sink_stopped: bool,
}

impl<'s, S: Sink> Checked<'s, S> {
    /// Wraps `sink`.
    pub fn new(sink: &'s mut S) -> Self {
        Checked { sink, current: None, written: Vec::new(), violation: None, sink_stopped: false }
    }

    fn violate(&mut self, what: String) -> bool {
        if self.violation.is_none() {
            self.violation = Some(Protocol(what));
        }
        false
    }

    fn forward(&mut self, event: Event<'_>) -> bool {
        match self.sink.event(event) {
            Ok(()) => true,
            Err(Stop) => {
                self.sink_stopped = true;
                false
            }
        }
    }

    /// Handles one guest event; `false` stops the guest.
    pub fn handle(&mut self, event: Owned) -> bool {
        if self.violation.is_some() || self.sink_stopped {
            return false;
        }
        match event {
            Owned::Member(m) => self.member(&m),
            Owned::Data(offset, bytes) => {
                let Some(cur) = self.current.as_mut() else {
                    return self.violate("data outside a file".into());
                };
                let end = offset.checked_add(bytes.len() as u64);
                if offset != cur.written || end.is_none_or(|e| e > cur.size) {
                    let what = format!("data at {offset} out of order in {}", cur.path);
                    return self.violate(what);
                }
                cur.hasher.update(&bytes);
                cur.written = end.unwrap_or(cur.size);
                self.forward(Event::Data { offset, bytes: &bytes })
            }
            Owned::Hole(offset, len) => {
                let Some(cur) = self.current.as_mut() else {
                    return self.violate("hole outside a file".into());
                };
                let end = offset.checked_add(len);
                if offset != cur.written || end.is_none_or(|e| e > cur.size) {
                    let what = format!("hole at {offset} out of order in {}", cur.path);
                    return self.violate(what);
                }
                cur.hasher.update_zeros(len);
                cur.written = end.unwrap_or(cur.size);
                self.forward(Event::Hole { offset, len })
            }
            Owned::FileEnd(size, theirs) => {
                let Some(cur) = self.current.take() else {
                    return self.violate("file end outside a file".into());
                };
                let ours = cur.hasher.finish();
                let same = |a: Option<[u8; 32]>, b: &Option<Vec<u8>>| {
                    a.as_ref().map(|d| d.as_slice()) == b.as_deref()
                };
                let agree =
                    same(ours.sha256, &theirs.sha256) && same(ours.sparse_sha256, &theirs.sparse_sha256);
                if size != cur.size || cur.written != cur.size || !agree {
                    return self
                        .violate(format!("file end of {} disagrees with the bytes written", cur.path));
                }
                self.written.push(Written { area: cur.area, path: cur.path, size, digests: ours });
                self.forward(Event::FileEnd { size, digests: ours })
            }
        }
    }

    fn member(&mut self, m: &Member) -> bool {
        if let Some(cur) = &self.current {
            let what = format!("member {} starts inside {}", m.path, cur.path);
            return self.violate(what);
        }
        let slot = match names::classify(m.path.as_bytes(), m.is_dir) {
            Ok(slot) => slot,
            Err(e) => return self.violate(format!("member path {:?} fails the name grammar: {e}", m.path)),
        };
        let planned = match slot {
            Slot::SnapshotFile { prefix, file } => Some((Area::Snapshots, format!("{prefix}/{file}"))),
            Slot::CacheFile { kind, file } => Some((Area::Cache, format!("{}/{file}", kind.as_str()))),
            Slot::SnapshotDir { .. } | Slot::CacheRoot | Slot::CacheDir { .. } | Slot::Msb { .. } => None,
        };
        if slot.is_dir() != m.is_dir {
            return self.violate(format!("member {} is a directory on one side only", m.path));
        }
        let hashes = Hashes { sha256: m.hash_sha256, sparse_sha256: m.hash_sparse_sha256 };
        if let Some((area, path)) = planned {
            self.current = Some(Current {
                area,
                path,
                size: m.size,
                written: 0,
                hasher: MemberHasher::with_backend(crate::hash_thread::backend(), m.size, hashes),
            });
        }
        let start = MemberStart {
            index: m.index,
            offset: m.offset,
            path: &m.path,
            slot,
            size: m.size,
            mtime: m.mtime,
            mode: m.mode,
            hashes,
        };
        self.forward(Event::Member(start))
    }

    /// Checks the guest's report against what was written: the same files, in the same order.
    pub fn conclude(&self, report: &Report, events_wanted: bool) -> Result<(), Protocol> {
        if let Some(v) = &self.violation {
            return Err(v.clone());
        }
        if self.current.is_some() {
            return Err(Protocol("the report came before the last file ended".into()));
        }
        if !events_wanted {
            return Ok(());
        }
        let same = report.files.len() == self.written.len()
            && self.written.iter().zip(&report.files).all(|(w, f)| w.is(f));
        if !same {
            return Err(Protocol(format!(
                "the file plan ({} files) differs from the files written ({})",
                report.files.len(),
                self.written.len()
            )));
        }
        for s in &report.snapshots {
            if names::check_component(&s.prefix).is_err() {
                return Err(Protocol(format!("snapshot prefix {:?} fails the name grammar", s.prefix)));
            }
        }
        Ok(())
    }
}
