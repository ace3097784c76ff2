//! WebSub subscriptions and unfinished deliveries in SQLite: the statements the writer task and
//! the read pool run.

use super::StoreError;
use super::rows::Columns;
use super::sqlite::{from_nanos, nanos};
use crate::websub::{Callback, Secret, Subscription, Topic};
use chrono::{DateTime, Utc};
use sqlx::SqlitePool;
use sqlx::sqlite::SqliteConnection;

/// Inserts or renews a subscription; a renewal keeps its first verification time.
pub(super) async fn save(
    conn: &mut SqliteConnection,
    subscription: Subscription,
    address: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(super::SAVE_SUBSCRIPTION_SQL)
        .bind(subscription.topic.path())
        .bind(subscription.callback.as_str())
        .bind(subscription.secret.as_ref().map(Secret::expose))
        .bind(nanos(now))
        .bind(nanos(subscription.verify_time))
        .bind(nanos(subscription.expire_time))
        .bind(address)
        .execute(conn)
        .await?;
    Ok(())
}

/// How many subscriptions are leased past `now` (only those verified at `address`, if
/// given).
pub(super) async fn count(
    pool: &SqlitePool,
    address: Option<&str>,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    // Two statements, so that each finds its index.
    let count: i64 = match address {
        None => {
            sqlx::query_scalar("SELECT count(*) FROM websub_subscriptions WHERE expire_time > ?")
                .bind(nanos(now))
                .fetch_one(pool)
                .await?
        }
        Some(address) => {
            sqlx::query_scalar(
                "SELECT count(*) FROM websub_subscriptions
                 WHERE callback_address = ? AND expire_time > ?",
            )
            .bind(address)
            .bind(nanos(now))
            .fetch_one(pool)
            .await?
        }
    };
    Ok(u64::try_from(count).unwrap_or(0))
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

/// Records that `claimant` delivers `document` of `topic`, until [`finish`].
pub(super) async fn claim(
    conn: &mut SqliteConnection,
    topic: &Topic,
    document: &str,
    claimant: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO websub_deliveries (topic, document, claim_time, claimant)
         VALUES (?, ?, ?, ?)
         ON CONFLICT (topic, document) DO UPDATE SET
             claim_time = excluded.claim_time, claimant = excluded.claimant",
    )
    .bind(topic.path())
    .bind(document)
    .bind(nanos(now))
    .bind(claimant)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO websub_last_claims (topic, document) VALUES (?, ?)
         ON CONFLICT (topic) DO UPDATE SET document = excluded.document",
    )
    .bind(topic.path())
    .bind(document)
    .execute(conn)
    .await?;
    Ok(())
}

/// Per topic, the last document whose delivery was claimed.
pub(super) async fn last_claims(pool: &SqlitePool) -> Result<Vec<(Topic, String)>, StoreError> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT topic, document FROM websub_last_claims ORDER BY topic")
            .fetch_all(pool)
            .await?;
    super::claimed_deliveries(rows)
}

/// Forgets a delivery whose every subscriber's delivery ended.
pub(super) async fn finish(
    conn: &mut SqliteConnection,
    topic: &Topic,
    document: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM websub_deliveries WHERE topic = ? AND document = ?")
        .bind(topic.path())
        .bind(document)
        .execute(conn)
        .await?;
    Ok(())
}

/// Up to `limit` deliveries that processes other than `claimant` left unfinished, oldest
/// first, as topic and document.
pub(super) async fn left_by_others(
    pool: &SqlitePool,
    claimant: &str,
    limit: usize,
) -> Result<Vec<(Topic, String)>, StoreError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT topic, document FROM websub_deliveries WHERE claimant != ?
         ORDER BY claim_time, topic, document LIMIT ?",
    )
    .bind(claimant)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    super::claimed_deliveries(rows)
}

/// Deletes every subscription whose lease has ended, and deliveries left a day ago or
/// more; returns how many subscriptions.
pub(super) async fn delete_expired(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    sqlx::query("DELETE FROM websub_deliveries WHERE claim_time < ?")
        .bind(nanos(now - chrono::TimeDelta::days(1)))
        .execute(&mut *conn)
        .await?;
    let done = sqlx::query("DELETE FROM websub_subscriptions WHERE expire_time <= ?")
        .bind(nanos(now))
        .execute(&mut *conn)
        .await?;
    sqlx::query(super::FORGET_UNSUBSCRIBED_CLAIMS_SQL)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// The subscriptions to `topic` still leased at `now` (only `callback`'s, if given).
pub(super) async fn active(
    pool: &SqlitePool,
    topic: &Topic,
    callback: Option<&Callback>,
    now: DateTime<Utc>,
) -> Result<Vec<Subscription>, StoreError> {
    let rows = sqlx::query(
        "SELECT topic, callback, secret, verify_time, expire_time FROM websub_subscriptions
         WHERE topic = ?1 AND expire_time > ?2 AND (?3 IS NULL OR callback = ?3)
         ORDER BY callback",
    )
    .bind(topic.path())
    .bind(nanos(now))
    .bind(callback.map(Callback::as_str))
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
        callback: Callback::stored(&callback).map_err(|e| corrupt("callback", e))?,
        secret: secret
            .map(Secret::new)
            .transpose()
            .map_err(|e| corrupt("secret", e))?,
        verify_time: from_nanos(row.value("verify_time")?),
        expire_time: from_nanos(row.value("expire_time")?),
    })
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
        store
            .save_subscription(kept.clone(), "192.0.2.1", now)
            .await
            .unwrap();
        store
            .save_subscription(subscription("https://b.example/cb", -1), "192.0.2.1", now)
            .await
            .unwrap();
        let renewed = Subscription {
            secret: None,
            ..subscription("https://c.example/cb", 60)
        };
        store
            .save_subscription(subscription("https://c.example/cb", 1), "192.0.2.1", now)
            .await
            .unwrap();
        store
            .save_subscription(renewed.clone(), "192.0.2.1", now)
            .await
            .unwrap();
        store.close().await;

        let store = SqliteStore::open(dir.path()).await.unwrap();
        let active = store
            .active_subscriptions(&topic, None, Utc::now())
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
                .active_subscriptions(&other, None, Utc::now())
                .await
                .unwrap()
                .is_empty()
        );
        let active = store
            .active_subscriptions(&topic, None, Utc::now())
            .await
            .unwrap();
        assert_eq!(active, [kept]);
        store.close().await;
    }

    #[tokio::test]
    async fn deliveries_left_unfinished_are_the_next_process_to_take_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let politics = Topic::new("politics/atom.xml").unwrap();
        let rural = Topic::new("rural/feed.json").unwrap();
        let now = Utc::now();
        let until = now + TimeDelta::seconds(30);
        for (topic, document) in [
            (&politics, "\"e1\" 1"),
            (&politics, "\"e2\" 2"),
            (&rural, "\"e1\" 1"),
        ] {
            assert!(
                store
                    .claim_delivery(topic, document, now, until)
                    .await
                    .unwrap()
            );
        }
        // Its own claims are this process's to deliver, not to take over.
        assert!(store.lapsed_deliveries(now, 10).await.unwrap().is_empty());
        store.finish_delivery(&politics, "\"e2\" 2").await.unwrap();
        store.close().await;

        // The next process: the unfinished ones, oldest first, whatever their leases say.
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let left = store.lapsed_deliveries(now, 10).await.unwrap();
        assert_eq!(
            left,
            [
                (politics.clone(), "\"e1\" 1".to_owned()),
                (rural.clone(), "\"e1\" 1".to_owned())
            ]
        );
        assert_eq!(store.lapsed_deliveries(now, 1).await.unwrap().len(), 1);
        // Taken over, one is this process's; finished, the other is gone.
        assert!(
            store
                .claim_delivery(&politics, "\"e1\" 1", now, until)
                .await
                .unwrap()
        );
        store.finish_delivery(&rural, "\"e1\" 1").await.unwrap();
        assert!(store.lapsed_deliveries(now, 10).await.unwrap().is_empty());
        store.close().await;

        // One left a day ago is forgotten.
        let store = SqliteStore::open(dir.path()).await.unwrap();
        assert_eq!(store.lapsed_deliveries(now, 10).await.unwrap().len(), 1);
        store
            .delete_expired_subscriptions(now + TimeDelta::days(1) + TimeDelta::seconds(1))
            .await
            .unwrap();
        assert!(store.lapsed_deliveries(now, 10).await.unwrap().is_empty());
        store.close().await;
    }
}
