//! A fresh PostgreSQL database for a test, on the server `FEEDPUB_TEST_DATABASE_URL` names
//! (whose role may create databases). Without that variable the test is skipped, with a
//! message, except in CI (`CI` set), where it fails.

use super::binary::{Running, ServeOptions, ServeProcess, feedpub, run, token_of};
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use std::path::Path;
use std::time::{Duration, Instant};
use url::Url;

const VARIABLE: &str = "FEEDPUB_TEST_DATABASE_URL";

/// A database of its own, removed by [`TestDatabase::remove`].
pub struct TestDatabase {
    /// Its URL, password included.
    pub url: String,
    admin: String,
    name: String,
}

/// A new empty database, or `None` (with a message) when no test server is configured.
pub async fn fresh_database() -> Option<TestDatabase> {
    let admin = match std::env::var(VARIABLE) {
        Ok(url) if !url.is_empty() => url,
        _ if std::env::var_os("CI").is_some() => {
            panic!("{VARIABLE} is not set: CI must test the PostgreSQL backend")
        }
        _ => {
            eprintln!("PostgreSQL skipped: {VARIABLE} is not set");
            return None;
        }
    };
    let mut random = [0_u8; 8];
    getrandom::fill(&mut random).unwrap();
    let name = format!("feedpub_test_{}", hex::encode(random));
    let mut conn = PgConnection::connect(&admin)
        .await
        .expect("the test database server accepts connections");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("the test role may create databases");
    conn.close().await.unwrap();
    let mut url = Url::parse(&admin).unwrap();
    url.set_path(&name);
    Some(TestDatabase {
        url: url.to_string(),
        admin,
        name,
    })
}

impl TestDatabase {
    /// Adds partner `newsroom` (every section) with `feedpub partner add` run in `dir`;
    /// returns its token.
    pub fn add_newsroom(&self, dir: &Path) -> String {
        let added = run(feedpub(dir).args([
            "partner",
            "add",
            "newsroom",
            "--all-sections",
            "--database-url",
            &self.url,
        ]));
        token_of(&added)
    }

    /// Starts replica `name` on this database, in a folder of its own under `dir`.
    pub fn replica(&self, dir: &Path, name: &str, config: Option<&Path>) -> ServeProcess {
        let data_dir = dir.join(name).join("data");
        let feeds_dir = dir.join(name).join("feeds");
        std::fs::create_dir_all(&feeds_dir).unwrap();
        ServeProcess::start(ServeOptions {
            database_url: Some(&self.url),
            config,
            ..ServeOptions::new(&data_dir, &feeds_dir)
        })
    }

    /// Replicas `a` and `b` on this database (with `config` when given), each in a folder
    /// of its own under `dir`, started together; returned once both listen.
    pub fn two_replicas(&self, dir: &Path, config: Option<&Path>) -> [(ServeProcess, Running); 2] {
        let mut started = ["a", "b"].map(|name| self.replica(dir, name, config));
        let ready = started.each_mut().map(ServeProcess::wait_ready);
        let [a, b] = started;
        let [on_a, on_b] = ready;
        [(a, on_a), (b, on_b)]
    }

    /// Drops the database, closing whatever connections are left.
    ///
    /// A process the server runs with no role, such as an autovacuum worker that has just
    /// started on the database, makes `WITH (FORCE)` refuse for a role that is not a
    /// superuser (SQLSTATE 42501). Such a process soon ends, so the drop is tried again for
    /// up to 30 s.
    pub async fn remove(self) {
        let mut conn = PgConnection::connect(&self.admin).await.unwrap();
        let drop = format!("DROP DATABASE {} WITH (FORCE)", self.name);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match sqlx::query(&drop).execute(&mut conn).await {
                Ok(_) => break,
                Err(sqlx::Error::Database(e))
                    if e.code().as_deref() == Some("42501") && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("dropping test database {}: {e}", self.name),
            }
        }
        conn.close().await.unwrap();
    }
}
