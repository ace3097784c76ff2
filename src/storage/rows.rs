//! Reading a stored row as domain values, the same for every backend: both store the same
//! values in the same encodings (times as Unix nanoseconds, lists as JSON text).

use sqlx::{Decode, Postgres, Row, Sqlite, Type};

/// A value both backends decode.
pub(super) trait Stored:
    for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

impl<T> Stored for T where
    T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

/// A row of either backend, read by column name.
pub(super) trait Columns {
    /// The value of column `name`.
    fn value<T: Stored>(&self, name: &str) -> Result<T, sqlx::Error>;
}

impl Columns for sqlx::sqlite::SqliteRow {
    fn value<T: Stored>(&self, name: &str) -> Result<T, sqlx::Error> {
        self.try_get(name)
    }
}

impl Columns for sqlx::postgres::PgRow {
    fn value<T: Stored>(&self, name: &str) -> Result<T, sqlx::Error> {
        self.try_get(name)
    }
}
