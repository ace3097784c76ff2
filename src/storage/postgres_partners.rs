//! Partners, the audit log and WebSub subscriptions in PostgreSQL: the statements run in the
//! caller's transaction (partner changes, recorded in the audit log with the change) or on
//! the pool.

use super::StoreError;
use super::sqlite::nanos;
use super::sqlite_partners::{
    describe_rights, operator_entry, record_from_row, sections_columns, token_change,
};
use super::{NewPartner, NewToken};
use crate::domain::{
    AuditEntry, AuditOperation, Outcome, Partner, PartnerId, PartnerName, PartnerRecord,
    RightsChange, SectionSlug,
};
use crate::websub::{Secret, Subscription};
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnection, Postgres};
use sqlx::{Executor, PgPool};

/// The columns of `partners` the decoders read.
pub(super) const PARTNER_COLUMNS: &str = "id, name, all_sections, sections, embargoed, \
     token_prefix, create_time, rotate_time, revoke_time";

/// Inserts one audit log entry.
pub(super) async fn insert_audit<'c>(
    executor: impl Executor<'c, Database = Postgres>,
    entry: &AuditEntry,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (time, partner, operation, article_id, peer, outcome, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(nanos(entry.time))
    .bind(&entry.partner)
    .bind(entry.operation.as_str())
    .bind(entry.article_id.as_deref())
    .bind(entry.peer.map(|p| p.to_string()))
    .bind(entry.outcome.as_str())
    .bind(&entry.detail)
    .execute(executor)
    .await?;
    Ok(())
}

/// The partner with this name, active or revoked; `locked` keeps others from changing it
/// until the transaction ends.
pub(super) async fn partner_record<'c>(
    executor: impl Executor<'c, Database = Postgres>,
    name: &PartnerName,
    locked: bool,
) -> Result<Option<PartnerRecord>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {PARTNER_COLUMNS} FROM partners WHERE name = $1{}",
        if locked { " FOR NO KEY UPDATE" } else { "" }
    ))
    .bind(name.as_str())
    .fetch_optional(executor)
    .await?;
    row.as_ref().map(record_from_row).transpose()
}

pub(super) async fn add_partner(
    conn: &mut PgConnection,
    partner: NewPartner,
    now: DateTime<Utc>,
) -> Result<Partner, StoreError> {
    let (all, sections) = sections_columns(&partner.rights.sections);
    let result: Result<i64, sqlx::Error> = sqlx::query_scalar(
        "INSERT INTO partners (name, token_hash, token_prefix, all_sections, sections, embargoed,
                               create_time)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(partner.name.as_str())
    .bind(&partner.token_hash.0)
    .bind(&partner.token_prefix)
    .bind(all)
    .bind(sections)
    .bind(partner.rights.embargoed)
    .bind(nanos(now))
    .fetch_one(&mut *conn)
    .await;
    let added = match result {
        Ok(id) => Partner {
            id: PartnerId(id),
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
    insert_audit(conn, &entry).await?;
    Ok(added)
}

pub(super) async fn revoke_partner(
    conn: &mut PgConnection,
    name: &PartnerName,
    now: DateTime<Utc>,
) -> Result<Option<(PartnerRecord, bool)>, StoreError> {
    let Some(mut found) = partner_record(&mut *conn, name, true).await? else {
        return Ok(None);
    };
    let changed = found.revoke_time.is_none();
    if changed {
        sqlx::query("UPDATE partners SET revoke_time = $1 WHERE id = $2")
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
    insert_audit(
        conn,
        &operator_entry(name, AuditOperation::PartnerRevoke, outcome, now),
    )
    .await?;
    Ok(Some((found, changed)))
}

pub(super) async fn replace_token(
    conn: &mut PgConnection,
    name: &PartnerName,
    token: NewToken,
    now: DateTime<Utc>,
) -> Result<Option<(PartnerRecord, bool)>, StoreError> {
    let Some(mut found) = partner_record(&mut *conn, name, true).await? else {
        return Ok(None);
    };
    let (write, entry) = token_change(&mut found, &token, now);
    if write {
        sqlx::query(
            "UPDATE partners SET token_hash = $1, token_prefix = $2, rotate_time = $3,
                                 revoke_time = NULL
             WHERE id = $4",
        )
        .bind(&token.hash.0)
        .bind(&token.prefix)
        .bind(nanos(now))
        .bind(found.partner.id.0)
        .execute(&mut *conn)
        .await?;
    }
    insert_audit(conn, &entry).await?;
    Ok(Some((found, write)))
}

pub(super) async fn change_rights(
    conn: &mut PgConnection,
    name: &PartnerName,
    change: RightsChange,
    configured: Vec<SectionSlug>,
    now: DateTime<Utc>,
) -> Result<Option<(PartnerRecord, bool)>, StoreError> {
    let Some(mut found) = partner_record(&mut *conn, name, true).await? else {
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
            "UPDATE partners SET all_sections = $1, sections = $2, embargoed = $3 WHERE id = $4",
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
    insert_audit(
        conn,
        &operator_entry(name, operation, outcome, now).with_detail(detail),
    )
    .await?;
    Ok(Some((found, outcome == Outcome::Ok)))
}

/// Inserts or renews a subscription; a renewal keeps its first verification time.
pub(super) async fn save_subscription(
    pool: &PgPool,
    subscription: &Subscription,
    address: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(&super::postgres::numbered(super::SAVE_SUBSCRIPTION_SQL))
        .bind(subscription.topic.path())
        .bind(subscription.callback.as_str())
        .bind(subscription.secret.as_ref().map(Secret::expose))
        .bind(nanos(now))
        .bind(nanos(subscription.verify_time))
        .bind(nanos(subscription.expire_time))
        .bind(address)
        .execute(pool)
        .await?;
    Ok(())
}
