//! Partners in SQLite: the statements the writer task and the read pool run. Every change
//! is recorded in the audit log in its own transaction.

use super::rows::Columns;
use super::sqlite::{from_nanos, nanos};
use super::sqlite_audit as audit;
use super::{Holder, NewPartner, NewToken, StoreError};
use crate::domain::{
    Actor, AuditEntry, AuditOperation, Outcome, Partner, PartnerId, PartnerName, PartnerRecord,
    Rights, RightsChange, SectionGrant, SectionSlug, TokenHash,
};
use chrono::{DateTime, Utc};
use sqlx::sqlite::{Sqlite, SqliteConnection};
use sqlx::{Executor, SqlitePool};

const COLUMNS: &str = "id, name, all_sections, sections, embargoed, token_prefix, create_time, \
     rotate_time, revoke_time";

/// The active partner holding the token with this hash. A caller that keeps the answer
/// has the write it makes with it check the partner's row again ([`holder_sql`]), so a
/// revocation or rotation holds from the next call on.
pub(super) async fn by_token(
    pool: &SqlitePool,
    hash: &TokenHash,
) -> Result<Option<Partner>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM partners WHERE token_hash = ? AND revoke_time IS NULL"
    ))
    .bind(&hash.0)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(partner_from_row).transpose()
}

/// The row of the partner whose id is the statement's first parameter (`param`, `?1` or
/// `$1`), as a write's transaction reads it to check a remembered partner.
pub(super) fn holder_sql(param: &str) -> String {
    format!("SELECT {COLUMNS}, token_hash FROM partners WHERE id = {param}")
}

/// A row of [`holder_sql`].
pub(super) fn holder_from_row(row: &impl Columns) -> Result<Holder, StoreError> {
    Ok(Holder {
        token: TokenHash(row.value("token_hash")?),
        revoked: row.value::<Option<i64>>("revoke_time")?.is_some(),
        partner: partner_from_row(row)?,
    })
}

/// The partner with this name, active or revoked.
pub(super) async fn record<'c>(
    executor: impl Executor<'c, Database = Sqlite>,
    name: &PartnerName,
) -> Result<Option<PartnerRecord>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM partners WHERE name = ?"))
        .bind(name.as_str())
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(record_from_row).transpose()
}

/// Every partner, by name.
pub(super) async fn all(pool: &SqlitePool) -> Result<Vec<PartnerRecord>, StoreError> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM partners ORDER BY name"))
        .fetch_all(pool)
        .await?;
    rows.iter().map(record_from_row).collect()
}

/// The operator's changes are recorded under the partner they concern, with no peer.
pub(super) fn operator_entry(
    name: &PartnerName,
    operation: AuditOperation,
    outcome: Outcome,
    now: DateTime<Utc>,
) -> AuditEntry {
    let actor = Actor {
        partner: name.clone(),
        peer: None,
    };
    AuditEntry::new(&actor, operation, None, outcome, now)
}

pub(super) async fn add(
    conn: &mut SqliteConnection,
    partner: NewPartner,
    now: DateTime<Utc>,
) -> Result<Partner, StoreError> {
    let (all, sections) = sections_columns(&partner.rights.sections);
    let result = sqlx::query(
        "INSERT INTO partners (name, token_hash, token_prefix, all_sections, sections, embargoed,
                               create_time)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(partner.name.as_str())
    .bind(&partner.token_hash.0)
    .bind(&partner.token_prefix)
    .bind(all)
    .bind(sections)
    .bind(partner.rights.embargoed)
    .bind(nanos(now))
    .execute(&mut *conn)
    .await;
    let added = match result {
        Ok(done) => Partner {
            id: PartnerId(done.last_insert_rowid()),
            name: partner.name,
            grant: partner.rights.sections,
            embargoed: partner.rights.embargoed,
        },
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(StoreError::Conflict(format!(
                "partner {:?}",
                partner.name.as_str()
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let entry = operator_entry(&added.name, AuditOperation::PartnerAdd, Outcome::Ok, now)
        .with_detail(describe_rights(&added.rights()));
    audit::insert(conn, &entry).await?;
    Ok(added)
}

pub(super) async fn revoke(
    conn: &mut SqliteConnection,
    name: &PartnerName,
    now: DateTime<Utc>,
) -> Result<Option<(PartnerRecord, bool)>, StoreError> {
    let Some(mut found) = record(&mut *conn, name).await? else {
        return Ok(None);
    };
    let changed = found.revoke_time.is_none();
    if changed {
        sqlx::query("UPDATE partners SET revoke_time = ? WHERE id = ?")
            .bind(nanos(now))
            .bind(found.partner.id.0)
            .execute(&mut *conn)
            .await?;
        found.revoke_time = Some(now);
    }
    let outcome = if changed {
        Outcome::Ok
    } else {
        Outcome::Unchanged
    };
    audit::insert(
        conn,
        &operator_entry(name, AuditOperation::PartnerRevoke, outcome, now),
    )
    .await?;
    Ok(Some((found, changed)))
}

pub(super) async fn replace_token(
    conn: &mut SqliteConnection,
    name: &PartnerName,
    token: NewToken,
    now: DateTime<Utc>,
) -> Result<Option<(PartnerRecord, bool)>, StoreError> {
    let Some(mut found) = record(&mut *conn, name).await? else {
        return Ok(None);
    };
    let (write, entry) = token_change(&mut found, &token, now);
    if write {
        sqlx::query(
            "UPDATE partners SET token_hash = ?, token_prefix = ?, rotate_time = ?,
                                 revoke_time = NULL
             WHERE id = ?",
        )
        .bind(&token.hash.0)
        .bind(&token.prefix)
        .bind(nanos(now))
        .bind(found.partner.id.0)
        .execute(&mut *conn)
        .await?;
    }
    audit::insert(conn, &entry).await?;
    Ok(Some((found, write)))
}

/// What a new token does to the partner `found`: whether its row is to be written (as
/// `found` now is), and the audit entry. A rotation takes an active partner only, a
/// restoration a revoked one.
pub(super) fn token_change(
    found: &mut PartnerRecord,
    token: &NewToken,
    now: DateTime<Utc>,
) -> (bool, AuditEntry) {
    let name = found.partner.name.clone();
    let (operation, wanted) = if token.restore {
        (AuditOperation::PartnerRestore, true)
    } else {
        (AuditOperation::PartnerRotate, false)
    };
    let revoked = found.revoke_time.is_some();
    if revoked != wanted {
        let outcome = if revoked {
            Outcome::Revoked
        } else {
            Outcome::Unchanged
        };
        return (false, operator_entry(&name, operation, outcome, now));
    }
    let detail = format!("token {} replaced by {}", found.token_prefix, token.prefix);
    found.token_prefix.clone_from(&token.prefix);
    found.rotate_time = Some(now);
    found.revoke_time = None;
    (
        true,
        operator_entry(&name, operation, Outcome::Ok, now).with_detail(detail),
    )
}

pub(super) async fn change_rights(
    conn: &mut SqliteConnection,
    name: &PartnerName,
    change: RightsChange,
    configured: Vec<SectionSlug>,
    now: DateTime<Utc>,
) -> Result<Option<(PartnerRecord, bool)>, StoreError> {
    let Some(mut found) = record(&mut *conn, name).await? else {
        return Ok(None);
    };
    let operation = if change.grant {
        AuditOperation::PartnerGrant
    } else {
        AuditOperation::PartnerDeny
    };
    let before = found.partner.rights();
    let after = before.changed(&change, &configured);
    let outcome = if found.revoke_time.is_some() {
        Outcome::Revoked
    } else if after == before {
        Outcome::Unchanged
    } else {
        let (all, sections) = sections_columns(&after.sections);
        sqlx::query(
            "UPDATE partners SET all_sections = ?, sections = ?, embargoed = ? WHERE id = ?",
        )
        .bind(all)
        .bind(sections)
        .bind(after.embargoed)
        .bind(found.partner.id.0)
        .execute(&mut *conn)
        .await?;
        found.partner.grant = after.sections.clone();
        found.partner.embargoed = after.embargoed;
        Outcome::Ok
    };
    let detail = format!("{change}; now {}", describe_rights(&found.partner.rights()));
    audit::insert(
        conn,
        &operator_entry(name, operation, outcome, now).with_detail(detail),
    )
    .await?;
    Ok(Some((found, outcome == Outcome::Ok)))
}

/// Rights in words, as the audit log shows them.
pub(super) fn describe_rights(rights: &Rights) -> String {
    format!(
        "sections: {}; embargoed: {}",
        rights.sections.describe(),
        if rights.embargoed { "yes" } else { "no" }
    )
}

/// `(all_sections, sections)` columns of a grant.
pub(super) fn sections_columns(grant: &SectionGrant) -> (bool, String) {
    let (all, sections) = match grant {
        SectionGrant::All => (true, Vec::new()),
        SectionGrant::Only(sections) => (false, sections.iter().map(|s| s.as_str()).collect()),
    };
    let json = serde_json::to_string(&sections).expect("strings always serialise");
    (all, json)
}

pub(super) fn partner_from_row(row: &impl Columns) -> Result<Partner, StoreError> {
    let name: String = row.value("name")?;
    let grant = if row.value::<bool>("all_sections")? {
        SectionGrant::All
    } else {
        let raw: String = row.value("sections")?;
        let slugs: Vec<SectionSlug> = serde_json::from_str(&raw)
            .map_err(|e| StoreError::Corrupt(format!("partner sections: {e}")))?;
        SectionGrant::Only(slugs)
    };
    Ok(Partner {
        id: PartnerId(row.value("id")?),
        name: PartnerName::parse(&name).map_err(StoreError::Corrupt)?,
        grant,
        embargoed: row.value("embargoed")?,
    })
}

pub(super) fn record_from_row(row: &impl Columns) -> Result<PartnerRecord, StoreError> {
    Ok(PartnerRecord {
        partner: partner_from_row(row)?,
        token_prefix: row.value("token_prefix")?,
        create_time: from_nanos(row.value("create_time")?),
        rotate_time: row.value::<Option<i64>>("rotate_time")?.map(from_nanos),
        revoke_time: row.value::<Option<i64>>("revoke_time")?.map(from_nanos),
    })
}
