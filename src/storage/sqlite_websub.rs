//! WebSub subscriptions in SQLite: the statements the writer task and the read pool run.

use super::StoreError;
use super::rows::Columns;
use crate::websub::{Callback, Secret, Subscription, Topic};
use chrono::{DateTime, Utc};
use sqlx::SqlitePool;
use sqlx::sqlite::SqliteConnection;

/// Inserts or renews a subscription; a renewal keeps its first verification time.
pub(super) async fn save(
    conn: &mut SqliteConnection,
    subscription: Subscription,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO websub_subscriptions
             (topic, callback, secret, create_time, verify_time, expire_time)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (topic, callback) DO UPDATE SET
             secret = excluded.secret,
             verify_time = excluded.verify_time,
             expire_time = excluded.expire_time",
    )
    .bind(subscription.topic.path())
    .bind(subscription.callback.as_str())
    .bind(subscription.secret.as_ref().map(Secret::expose))
    .bind(nanos(now))
    .bind(nanos(subscription.verify_time))
    .bind(nanos(subscription.expire_time))
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes one subscription; true when it existed.
pub(super) async fn delete(
    conn: &mut SqliteConnection,
    topic: &Topic,
    callback: &Callback,
) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM websub_subscriptions WHERE topic = ? AND callback = ?")
        .bind(topic.path())
        .bind(callback.as_str())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Deletes every subscription whose lease has ended; returns how many.
pub(super) async fn delete_expired(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM websub_subscriptions WHERE expire_time <= ?")
        .bind(nanos(now))
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// The subscriptions to `topic` still leased at `now`.
pub(super) async fn active(
    pool: &SqlitePool,
    topic: &Topic,
    now: DateTime<Utc>,
) -> Result<Vec<Subscription>, StoreError> {
    let rows = sqlx::query(
        "SELECT topic, callback, secret, verify_time, expire_time FROM websub_subscriptions
         WHERE topic = ? AND expire_time > ? ORDER BY callback",
    )
    .bind(topic.path())
    .bind(nanos(now))
    .fetch_all(pool)
    .await?;
    rows.iter().map(subscription_from_row).collect()
}

pub(super) fn subscription_from_row(row: &impl Columns) -> Result<Subscription, StoreError> {
    let corrupt = |what: &str, e: String| StoreError::Corrupt(format!("subscription {what}: {e}"));
    let topic: String = row.value("topic")?;
    let callback: String = row.value("callback")?;
    let secret: Option<Vec<u8>> = row.value("secret")?;
    Ok(Subscription {
        topic: Topic::new(&topic).map_err(|e| corrupt("topic", e))?,
        callback: Callback::parse(&callback).map_err(|e| corrupt("callback", e))?,
        secret: secret
            .map(Secret::new)
            .transpose()
            .map_err(|e| corrupt("secret", e))?,
        verify_time: DateTime::from_timestamp_nanos(row.value("verify_time")?),
        expire_time: DateTime::from_timestamp_nanos(row.value("expire_time")?),
    })
}

/// Unix nanoseconds; leases are capped far inside i64's range (1677–2262).
fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use crate::storage::{SqliteStore, Store};
    use crate::websub::{Callback, Secret, Subscription, Topic};
    use chrono::{TimeDelta, Utc};

    fn subscription(callback: &str, lease_seconds: i64) -> Subscription {
        let now = Utc::now();
        Subscription {
            topic: Topic::new("politics/atom.xml").unwrap(),
            callback: Callback::parse(callback).unwrap(),
            secret: Some(Secret::new(b"s\xffcret".to_vec()).unwrap()),
            verify_time: now,
            expire_time: now + TimeDelta::seconds(lease_seconds),
        }
    }

    #[tokio::test]
    async fn subscriptions_are_renewed_listed_while_leased_expired_and_kept_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let topic = Topic::new("politics/atom.xml").unwrap();
        let now = Utc::now();
        let kept = subscription("https://a.example/cb", 3600);
        store.save_subscription(kept.clone(), now).await.unwrap();
        store
            .save_subscription(subscription("https://b.example/cb", -1), now)
            .await
            .unwrap();
        let renewed = Subscription {
            secret: None,
            ..subscription("https://c.example/cb", 60)
        };
        store
            .save_subscription(subscription("https://c.example/cb", 1), now)
            .await
            .unwrap();
        store.save_subscription(renewed.clone(), now).await.unwrap();
        store.close().await;

        let store = SqliteStore::open(dir.path()).await.unwrap();
        let active = store
            .active_subscriptions(&topic, Utc::now())
            .await
            .unwrap();
        assert_eq!(active, [kept.clone(), renewed.clone()]);
        assert_eq!(
            store
                .delete_expired_subscriptions(Utc::now())
                .await
                .unwrap(),
            1
        );
        assert!(
            store
                .delete_subscription(&topic, &renewed.callback)
                .await
                .unwrap()
        );
        assert!(
            !store
                .delete_subscription(&topic, &renewed.callback)
                .await
                .unwrap()
        );
        let other = Topic::new("rural/atom.xml").unwrap();
        assert!(
            store
                .active_subscriptions(&other, Utc::now())
                .await
                .unwrap()
                .is_empty()
        );
        let active = store
            .active_subscriptions(&topic, Utc::now())
            .await
            .unwrap();
        assert_eq!(active, [kept]);
        store.close().await;
    }
}
