//! The audit log in SQLite: the writer task inserts entries in the transaction of the change
//! they record; the read pool lists them.

use super::StoreError;
use super::rows::Columns;
use super::sqlite::{from_nanos, nanos};
use super::sqlite_writes::Script;
use crate::domain::{AuditEntry, AuditFilter, AuditOperation, Outcome};
use sqlx::SqlitePool;
use sqlx::sqlite::SqliteConnection;

/// Inserts one entry; run by the writer, inside the savepoint of the job it records.
pub(super) async fn insert(
    conn: &mut SqliteConnection,
    entry: &AuditEntry,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (time, partner, operation, article_id, peer, outcome, detail)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(nanos(entry.time))
    .bind(&entry.partner)
    .bind(entry.operation.as_str())
    .bind(entry.article_id.as_deref())
    .bind(entry.peer.map(|p| p.to_string()))
    .bind(entry.outcome.as_str())
    .bind(&entry.detail)
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds the statement that inserts these entries in order to the script of the job (or
/// jobs) they record; nothing when there are none.
pub(super) fn add_all<'q>(
    script: &mut Script<'q>,
    entries: &'q [AuditEntry],
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = entries
        .iter()
        .map(|e| {
            (
                nanos(e.time),
                e.partner.as_str(),
                e.operation.as_str(),
                e.article_id.as_deref(),
                e.peer.map(|p| p.to_string()),
                e.outcome.as_str(),
                e.detail.as_str(),
            )
        })
        .collect();
    script.statement(
        "INSERT INTO audit_log (time, partner, operation, article_id, peer, outcome, detail)
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5,
                value ->> 6
         FROM json_each(?) ORDER BY key",
    );
    script.bind(serde_json::to_string(&rows).expect("rows always serialise"))
}

/// Records the entry `entry` makes of a job's successful result, so that the change and its
/// record commit together; a job that failed records nothing (its savepoint is undone).
pub(super) async fn record<T>(
    conn: &mut SqliteConnection,
    result: Result<T, StoreError>,
    entry: impl FnOnce(&T) -> AuditEntry,
) -> Result<T, StoreError> {
    let value = result?;
    insert(conn, &entry(&value)).await?;
    Ok(value)
}

/// Entries matching `filter`, newest first.
pub(super) async fn entries(
    pool: &SqlitePool,
    filter: &AuditFilter,
) -> Result<Vec<AuditEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT time, partner, operation, article_id, peer, outcome, detail FROM audit_log
         WHERE (?1 IS NULL OR partner = ?1) AND (?2 IS NULL OR time >= ?2)
         ORDER BY time DESC, id DESC LIMIT ?3",
    )
    .bind(filter.partner.as_ref().map(|p| p.as_str()))
    .bind(filter.since.map(nanos))
    .bind(i64::try_from(filter.limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    rows.iter().map(entry_from_row).collect()
}

pub(super) fn entry_from_row(row: &impl Columns) -> Result<AuditEntry, StoreError> {
    let corrupt = |what: &str, value: &str| StoreError::Corrupt(format!("audit {what}: {value}"));
    let operation: String = row.value("operation")?;
    let outcome: String = row.value("outcome")?;
    let peer: Option<String> = row.value("peer")?;
    Ok(AuditEntry {
        time: from_nanos(row.value("time")?),
        partner: row.value("partner")?,
        operation: AuditOperation::parse(&operation)
            .ok_or_else(|| corrupt("operation", &operation))?,
        article_id: row.value("article_id")?,
        peer: peer
            .map(|p| p.parse().map_err(|_| corrupt("peer", &p)))
            .transpose()?,
        outcome: Outcome::parse(&outcome).ok_or_else(|| corrupt("outcome", &outcome))?,
        detail: row.value("detail")?,
    })
}
