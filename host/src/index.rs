//! Keeping microsandbox's SQLite snapshot index (`<home>/db/msb.db`, table `snapshot_index`)
//! in step after an import, as 0.6.2's `index_upsert` and `reindex_dir` do (`docs/format-0.6.2.md` §4).
//!
//! The index is a rebuildable cache: when the database or the table does not exist nothing is
//! created, and the outcome says how to rebuild it. All rows are written in one transaction.

use std::path::Path;

use chrono::{DateTime, NaiveDateTime, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use snapbundle_core::Report;

use crate::error::{shown, HostError};
use crate::home::Home;

/// What happened to the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum IndexOutcome {
    /// Rows upserted.
    Updated {
        /// Number of snapshot rows written.
        rows: usize,
    },
    /// No database (or no `snapshot_index` table): nothing was created.
    Absent {
        /// How to build the index.
        hint: String,
    },
    /// The update failed; the imported snapshots are in place all the same (the index is a
    /// rebuildable cache, as in 0.6.2, whose own update is best-effort).
    Failed {
        /// What went wrong, and how to rebuild the index.
        error: String,
    },
}

/// `created_at` as 0.6.2 stores it: RFC 3339 parsed and converted to naive UTC, or "now" when it
/// does not parse; written in sqlx's `%F %T%.f` text form.
pub fn db_time(created_at: &str) -> String {
    let t: NaiveDateTime = DateTime::parse_from_rfc3339(created_at)
        .map(|d| d.with_timezone(&Utc).naive_utc())
        .unwrap_or_else(|_| Utc::now().naive_utc());
    t.format("%F %T%.f").to_string()
}

fn db_err(db: &Path) -> impl Fn(rusqlite::Error) -> HostError + '_ {
    move |e| HostError::io(format!("updating index {}", shown(db)), std::io::Error::other(e))
}

/// Upserts the report's snapshots into the index, if there is one. Never fails: a failure is
/// reported as [`IndexOutcome::Failed`].
pub fn update(home: &Home, report: &Report) -> IndexOutcome {
    match try_update(home, report) {
        Ok(o) => o,
        Err(e) => {
            IndexOutcome::Failed { error: format!("{e}; run `msb snapshot reindex` to rebuild the index") }
        }
    }
}

fn try_update(home: &Home, report: &Report) -> Result<IndexOutcome, HostError> {
    let db = home.db_path();
    let hint = format!(
        "no microsandbox index at {}; run `msb snapshot reindex` to index the imported snapshots",
        shown(&db)
    );
    if !db.is_file() {
        return Ok(IndexOutcome::Absent { hint });
    }
    let err = db_err(&db);
    let mut conn =
        Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(&err)?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(&err)?;
    let table: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'snapshot_index'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(&err)?;
    if table.is_none() {
        return Ok(IndexOutcome::Absent { hint });
    }
    let tx = conn.transaction().map_err(&err)?;
    let now = Utc::now().naive_utc().format("%F %T%.f").to_string();
    for s in &report.snapshots {
        let path = home.snapshots.join(&s.prefix).display().to_string();
        tx.execute(
            "DELETE FROM snapshot_index WHERE digest = ?1 OR name = ?2 OR artifact_path = ?3",
            params![s.digest, s.prefix, path],
        )
        .map_err(&err)?;
        tx.execute(
            "INSERT INTO snapshot_index (digest, name, parent_digest, image_ref, image_manifest_digest, format, fstype, \
             artifact_path, size_bytes, created_at, indexed_at, child_count) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0)",
            params![
                s.digest,
                s.prefix,
                s.parent,
                s.image_ref,
                s.image_manifest_digest,
                s.format,
                s.fstype,
                path,
                i64::try_from(s.size_bytes).ok(),
                db_time(&s.created_at),
                now
            ],
        )
        .map_err(&err)?;
    }
    tx.execute(
        "UPDATE snapshot_index SET child_count = \
         (SELECT COUNT(*) FROM snapshot_index c WHERE c.parent_digest = snapshot_index.digest)",
        [],
    )
    .map_err(&err)?;
    tx.commit().map_err(&err)?;
    Ok(IndexOutcome::Updated { rows: report.snapshots.len() })
}

#[cfg(test)]
mod tests {
    #[test]
    fn created_at_is_stored_as_naive_utc() {
        assert_eq!(super::db_time("2026-05-01T12:00:00.123456789+00:00"), "2026-05-01 12:00:00.123456789");
        assert_eq!(super::db_time("2026-05-01T01:30:00+02:00"), "2026-04-30 23:30:00");
    }
}
