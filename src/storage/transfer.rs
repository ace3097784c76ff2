//! Moving a deployment between databases (SQLite to PostgreSQL, or back): `export` writes
//! every stored row as JSON lines, `import` loads them into an empty database in one
//! transaction. Both backends store the same values in the same encodings, so a row goes
//! across unchanged: articles with every past version, the event log with its sequence
//! numbers (followers' cursors stay valid), partners with their token hashes and rights,
//! request ids, pending embargo lifts, subscriptions, the audit log, and the feeds' archive
//! sizes with the dates kept with them.

use super::rows::Columns;
use super::sqlite::DATABASE_FILE;
use super::{PostgresStore, SqliteStore, Store as _, StoreError};
use crate::config::{Limits, Server};
use crate::domain::HtmlPolicy;
use crate::domain::stored::{self, Fault};
use crate::lines::LineRead;
use crate::websub::{self, Callback, Topic};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{Postgres, Sqlite, Transaction};
use std::io::{BufRead, Write};
use std::str::FromStr;
use tokio_stream::StreamExt;

/// The first line of an export names its format and version. Version 2 added the events'
/// `left_section` and `left_embargoed`, which a version 1 export lacks (imported as none):
/// a feedpub that knows only version 1 refuses a version 2 export at its first line.
/// Version 3 added the last line, `{"end": {table: rows, …}}`, so that an export cut short
/// at a line break is refused rather than imported without its last rows.
/// Version 4 added `shown_change_time` to articles and their author and tag rows (a row of
/// an older export takes its `change_time`, as migration 0016 gave the rows it found), and
/// the rows of `feed_sizes`.
/// Version 5 added `first_stored` to the rows of `feed_sizes` (which of two author or tag
/// names with one slug keeps the folder); a row of an older export takes its name's
/// earliest article's create time, as migration 0022 gave the rows it found.
/// Version 6 added `callback_address` to the rows of `websub_subscriptions` (where the
/// callback was reached when verified); a row of an older export has none, and is not
/// counted against the subscriptions allowed per address until it is renewed.
/// Version 7 added `site_identity` (what the feeds' Atom ids begin with); an import of an
/// older export leaves it to the first server on the database to record.
const FORMAT: &str = "feedpub-export";
const VERSION: u64 = 7;
/// The first version that ends with its row counts.
const COUNTED_VERSION: u64 = 3;
/// The oldest version imported.
const OLDEST_VERSION: u64 = 1;

/// How a column's values are stored and written in an export, and what an import takes.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Int,
    Bool,
    /// A subscription's secret: 1 to 199 bytes, as base64 in the export.
    Secret,
    /// An article's version number, an integer: 1 to `u32::MAX - 1` on import, so that
    /// every stored article can take one more version.
    Version,
    /// An article's state, as an integer the schema knows.
    State,
    /// An event's kind, as an integer the schema knows.
    Event,
    /// Text, refused on import when it has a fault.
    Text(Fault),
    /// An article's HTML body: on import, as the configured sanitiser leaves it.
    Html,
}

use Kind::{Bool, Event, Html, Int, Secret, State, Version};

impl Kind {
    /// What a value of this kind is, for a message refusing one.
    fn what(self) -> &'static str {
        match self {
            Int | Version | State | Event => "an integer",
            Bool => "true or false",
            Secret => "base64 text",
            Kind::Text(_) | Html => "a string",
        }
    }
}

/// Text feedpub reads back as it is (an etag, an audit entry's partner or detail).
const TEXT: Kind = Kind::Text(|_| None);
/// Text that feeds or readers show: no character feeds cannot carry.
const PROSE: Kind = Kind::Text(stored::text_fault);
/// Empty, or an absolute http(s) URL.
const LINK: Kind = Kind::Text(stored::url_fault);
/// A site URL: absolute http(s), ending in `/`, as the configuration's `base_url` is.
const SITE_URL: Kind = Kind::Text(|base| match url::Url::parse(base) {
    Ok(url) if ["http", "https"].contains(&url.scheme()) && base.ends_with('/') => None,
    _ => Some(format!(
        "{base:?} is not a site URL (absolute http or https, ending in /)"
    )),
});
/// A JSON array of author or tag names.
const NAMES: Kind = Kind::Text(stored::names_fault);
/// A JSON array of media files, each with an http(s) URL.
const MEDIA: Kind = Kind::Text(stored::media_fault);
/// A section slug, in the shape the configuration takes.
const SLUG: Kind = Kind::Text(stored::slug_fault);
/// A JSON array of section slugs.
const SLUGS: Kind = Kind::Text(stored::slugs_fault);
const ARTICLE_ID: Kind = Kind::Text(stored::article_id_fault);
const LANGUAGE: Kind = Kind::Text(stored::language_fault);
const PARTNER_NAME: Kind = Kind::Text(stored::partner_name_fault);
const TOKEN_HASH: Kind = Kind::Text(stored::token_hash_fault);
const OPERATION: Kind = Kind::Text(stored::operation_fault);
const OUTCOME: Kind = Kind::Text(stored::outcome_fault);
const PEER: Kind = Kind::Text(stored::peer_fault);
/// A WebSub topic: a feed's path.
const TOPIC: Kind = Kind::Text(|topic| Topic::new(topic).err());
/// A WebSub callback, written as feedpub writes it (the subscriptions of one callback are
/// found by its text).
const CALLBACK: Kind = Kind::Text(|callback| match Callback::stored(callback) {
    Ok(parsed) if parsed.as_str() == callback => None,
    Ok(parsed) => Some(format!(
        "{callback:?} is not written as feedpub writes it ({:?})",
        parsed.as_str()
    )),
    Err(e) => Some(format!("{callback:?} {e}")),
});

/// A table, the order its rows are exported in, and its columns.
struct Table {
    name: &'static str,
    order: &'static str,
    columns: &'static [(&'static str, Kind)],
}

/// Every table, parents first. `feed_sizes` is last: its sizes are counted again from the
/// articles after an import, but the dates it keeps (of moves, of archive pages filled or
/// emptied, since version 4) are not found anywhere else.
const TABLES: &[Table] = &[
    Table {
        name: "partners",
        order: "id",
        columns: &[
            ("id", Int),
            ("name", PARTNER_NAME),
            ("token_hash", TOKEN_HASH),
            ("token_prefix", PROSE),
            ("all_sections", Bool),
            ("sections", SLUGS),
            ("embargoed", Bool),
            ("create_time", Int),
            ("rotate_time", Int),
            ("revoke_time", Int),
        ],
    },
    Table {
        name: "articles",
        order: "partner_id, article_id",
        columns: &[
            ("partner_id", Int),
            ("article_id", ARTICLE_ID),
            ("guid", PROSE),
            ("section", SLUG),
            ("state", State),
            ("title", PROSE),
            ("subtitle", PROSE),
            ("kicker", PROSE),
            ("authors", NAMES),
            ("summary", PROSE),
            ("content_html", Html),
            ("content_text", PROSE),
            ("tags", NAMES),
            ("canonical_url", LINK),
            ("publish_time", Int),
            ("update_time", Int),
            ("updated", Int),
            ("expire_time", Int),
            ("create_time", Int),
            ("change_time", Int),
            ("retract_time", Int),
            ("retract_reason", PROSE),
            ("etag", TEXT),
            ("embargo_time", Int),
            ("media", MEDIA),
            ("language", LANGUAGE),
            ("version", Version),
            ("shown_change_time", Int),
        ],
    },
    Table {
        name: "article_versions",
        order: "partner_id, article_id, version",
        columns: &[
            ("partner_id", Int),
            ("article_id", ARTICLE_ID),
            ("version", Version),
            ("section", SLUG),
            ("title", PROSE),
            ("subtitle", PROSE),
            ("kicker", PROSE),
            ("authors", NAMES),
            ("summary", PROSE),
            ("content_html", Html),
            ("content_text", PROSE),
            ("tags", NAMES),
            ("canonical_url", LINK),
            ("publish_time", Int),
            ("update_time", Int),
            ("updated", Int),
            ("expire_time", Int),
            ("embargo_time", Int),
            ("media", MEDIA),
            ("language", LANGUAGE),
            ("etag", TEXT),
        ],
    },
    Table {
        name: "article_authors",
        order: "name, partner_id, article_id",
        columns: NAME_COLUMNS,
    },
    Table {
        name: "article_tags",
        order: "name, partner_id, article_id",
        columns: NAME_COLUMNS,
    },
    Table {
        name: "article_events",
        order: "seq",
        columns: &[
            ("seq", Int),
            ("partner_id", Int),
            ("article_id", ARTICLE_ID),
            ("version", Version),
            ("kind", Event),
            ("section", SLUG),
            ("embargoed", Bool),
            ("event_time", Int),
            ("left_section", SLUG),
            ("left_embargoed", Bool),
        ],
    },
    Table {
        name: "request_ids",
        order: "partner_id, request_id",
        columns: &[
            ("partner_id", Int),
            ("request_id", TEXT),
            ("fingerprint", TEXT),
            ("article_id", ARTICLE_ID),
            ("version", Version),
            ("state", State),
            ("retract_time", Int),
            ("retract_reason", PROSE),
            ("create_time", Int),
        ],
    },
    Table {
        name: "embargo_lifts",
        order: "partner_id, article_id",
        columns: &[
            ("partner_id", Int),
            ("article_id", ARTICLE_ID),
            ("embargo_time", Int),
        ],
    },
    Table {
        name: "websub_subscriptions",
        order: "topic, callback",
        columns: &[
            ("topic", TOPIC),
            ("callback", CALLBACK),
            ("secret", Secret),
            ("create_time", Int),
            ("verify_time", Int),
            ("expire_time", Int),
            ("callback_address", TEXT),
        ],
    },
    Table {
        name: "audit_log",
        order: "id",
        columns: &[
            ("id", Int),
            ("time", Int),
            ("partner", TEXT),
            ("operation", OPERATION),
            ("article_id", TEXT),
            ("peer", PEER),
            ("outcome", OUTCOME),
            ("detail", TEXT),
        ],
    },
    Table {
        name: SITE_IDENTITY,
        order: "one",
        columns: &[("one", Int), ("atom_id_base", SITE_URL)],
    },
    Table {
        name: FEED_SIZES,
        order: "kind, name",
        columns: &[
            ("kind", TEXT),
            ("name", TEXT),
            ("articles", Int),
            ("shift_time", Int),
            ("shift_from", Int),
            ("shown_shift_time", Int),
            ("first_stored", Int),
        ],
    },
];

/// The table of what the feeds' Atom ids begin with, exported since version 7. Into a
/// database that holds no partner or article, its row replaces any the database holds (a
/// server started on it before the import): the ids stay those the exported site gave.
/// Among stored data, the target's row stays: its feeds keep the ids they have.
const SITE_IDENTITY: &str = "site_identity";
const SITE_IDENTITY_SINCE: u64 = 7;
const SITE_IDENTITY_TAKEN: &str =
    " ON CONFLICT (one) DO UPDATE SET atom_id_base = excluded.atom_id_base";
const SITE_IDENTITY_KEPT: &str = " ON CONFLICT (one) DO NOTHING";

/// Whether an export of `version` holds the rows of `table`.
fn exported_in(table: &str, version: Option<u64>) -> bool {
    match table {
        FEED_SIZES => version >= Some(FEED_SIZES_SINCE),
        SITE_IDENTITY => version >= Some(SITE_IDENTITY_SINCE),
        _ => true,
    }
}

/// The table of the feeds' archive sizes and dates, exported since version 4. A row of it
/// joins the one the import's articles made already: the dates are taken as exported, the
/// size is counted again at the end.
const FEED_SIZES: &str = "feed_sizes";
const FEED_SIZES_SINCE: u64 = 4;
const FEED_SIZES_TAKEN: &str = " ON CONFLICT (kind, name) DO UPDATE SET
    shift_time = CASE WHEN excluded.shift_time > feed_sizes.shift_time
                      THEN excluded.shift_time ELSE COALESCE(feed_sizes.shift_time, excluded.shift_time) END,
    shift_from = CASE WHEN excluded.shift_from < feed_sizes.shift_from
                      THEN excluded.shift_from ELSE COALESCE(feed_sizes.shift_from, excluded.shift_from) END,
    shown_shift_time = CASE WHEN excluded.shown_shift_time > feed_sizes.shown_shift_time
                            THEN excluded.shown_shift_time
                            ELSE COALESCE(feed_sizes.shown_shift_time, excluded.shown_shift_time) END,
    first_stored = CASE WHEN excluded.first_stored < feed_sizes.first_stored
                        THEN excluded.first_stored
                        ELSE COALESCE(feed_sizes.first_stored, excluded.first_stored) END";

const NAME_COLUMNS: &[(&str, Kind)] = &[
    ("name", PROSE),
    ("partner_id", Int),
    ("article_id", ARTICLE_ID),
    ("guid", PROSE),
    ("state", State),
    ("publish_time", Int),
    ("expire_time", Int),
    ("embargo_time", Int),
    ("change_time", Int),
    ("retract_time", Int),
    ("shown_change_time", Int),
];

/// Why an export or an import failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the export: {0}")]
    Write(std::io::Error),
    #[error("cannot read the export: {0}")]
    Read(std::io::Error),
    #[error("line {line} of the export: {message}")]
    Invalid { line: usize, message: String },
    #[error(
        "there is no database: {} does not exist (check the data folder: --data-dir, FEEDPUB_DATA_DIR or [server] data_dir)",
        .0.display()
    )]
    NoDatabase(std::path::PathBuf),
    #[error(
        "cannot look for the database {}: {error} (check the data folder: --data-dir, FEEDPUB_DATA_DIR or [server] data_dir)",
        .file.display()
    )]
    Unreachable {
        file: std::path::PathBuf,
        error: std::io::Error,
    },
    /// The schema is not the one this feedpub reads.
    #[error("{0}")]
    Schema(String),
    #[error(
        "the target database already holds {partners} partners and {articles} articles; import only into an empty one (or pass --allow-non-empty)"
    )]
    NotEmpty { partners: i64, articles: i64 },
}

impl From<sqlx::Error> for TransferError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// How many rows of each table an export or import moved, in table order.
pub type Counts = Vec<(&'static str, u64)>;

/// A database as the settings name it, opened with its schema up to date.
enum Database {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Database {
    /// The database with its schema brought up to date (created if it is a new SQLite one).
    async fn open(server: &Server) -> Result<Self, StoreError> {
        // Opening it as a store applies the migrations.
        match &server.database_url {
            Some(url) => PostgresStore::connect(url.expose()).await?.close().await,
            None => SqliteStore::open(&server.data_dir).await?.close().await,
        }
        Ok(Self::connect(server, false).await?)
    }

    /// One connection to the database the settings name; `read_only` for SQLite opens the
    /// file so, and reads a file that may not be written with no WAL beside it (on a
    /// read-only file system, say) as immutable (a PostgreSQL export reads in a read-only
    /// transaction of its own).
    async fn connect(server: &Server, read_only: bool) -> Result<Self, sqlx::Error> {
        Ok(match &server.database_url {
            Some(url) => {
                let options = PgConnectOptions::from_str(url.expose())?;
                super::postgres::reach(&options).await?;
                Self::Postgres(
                    PgPoolOptions::new()
                        .max_connections(1)
                        .connect_with(options)
                        .await?,
                )
            }
            None => {
                let file = server.data_dir.join(DATABASE_FILE);
                let immutable = read_only && super::sqlite::readable_only_as_immutable(&file);
                let options = SqliteConnectOptions::new()
                    .filename(file)
                    .read_only(read_only)
                    .immutable(immutable)
                    .foreign_keys(true);
                Self::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .connect_with(options)
                        .await?,
                )
            }
        })
    }

    /// The database as it is, for reading only: not created, not migrated. Its schema
    /// must be the one this feedpub writes, which `feedpub migrate` brings it to.
    async fn open_as_is(server: &Server) -> Result<Self, TransferError> {
        find_database(server)?;
        // Reading in WAL mode writes too (the shared-memory index beside the file): a
        // SQLite file that cannot be opened is told why.
        let explained = |e: sqlx::Error| -> TransferError {
            match server.database_url {
                None => super::sqlite::unopened(&server.data_dir.join(DATABASE_FILE), e),
                Some(_) => e.into(),
            }
            .into()
        };
        let database = Self::connect(server, true).await.map_err(explained)?;
        let known = super::newest_migration(&match &database {
            Self::Postgres(_) => sqlx::migrate!("src/storage/migrations/postgres"),
            Self::Sqlite(_) => sqlx::migrate!("src/storage/migrations/sqlite"),
        });
        let found = match database.schema_version().await {
            Ok(found) => found,
            Err(e) => {
                database.close().await;
                return Err(explained(e));
            }
        };
        if found != known {
            database.close().await;
            return Err(if found < known {
                TransferError::Schema(format!(
                    "the database's schema is at version {found}, older than this feedpub's ({known}): run `feedpub migrate` first (this command does not migrate a database)"
                ))
            } else {
                StoreError::UnknownSchema { found, known }.into()
            });
        }
        Ok(database)
    }

    /// The newest migration applied to the database; 0 for one with no schema yet (a new,
    /// empty file). A file that is not a database is an error, not version 0.
    async fn schema_version(&self) -> Result<i64, sqlx::Error> {
        const APPLIED: &str =
            "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success";
        let migrated: bool = match self {
            Self::Sqlite(pool) => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) > 0 FROM sqlite_master WHERE name = '_sqlx_migrations'",
                )
                .fetch_one(pool)
                .await?
            }
            Self::Postgres(pool) => {
                sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                    .fetch_one(pool)
                    .await?
            }
        };
        if !migrated {
            return Ok(0);
        }
        match self {
            Self::Sqlite(pool) => sqlx::query_scalar(APPLIED).fetch_one(pool).await,
            Self::Postgres(pool) => sqlx::query_scalar(APPLIED).fetch_one(pool).await,
        }
    }

    async fn close(self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

/// Refuses a database that is missing (see [`find_database`]) or whose schema is not the
/// one this feedpub writes: the operator commands that only read or change what is stored
/// leave migrating to `feedpub migrate` (or `serve`), rather than migrate a database under
/// the older servers still running on it in the middle of an upgrade.
pub async fn check_schema(server: &Server) -> Result<(), TransferError> {
    Database::open_as_is(server).await?.close().await;
    Ok(())
}

impl TransferError {
    /// Whether the error names the database file looked for, and with it the data folder,
    /// which a message around it need not name again.
    pub fn names_the_database(&self) -> bool {
        matches!(self, Self::NoDatabase(_) | Self::Unreachable { .. })
    }
}

/// Refuses settings whose SQLite database file does not exist, or cannot be looked for (a
/// folder that may not be read, a file where a folder should be); PostgreSQL passes.
/// Commands that only read or change what is stored refuse such a folder, so that a
/// mistyped one is not taken for a new, empty database.
fn find_database(server: &Server) -> Result<(), TransferError> {
    if server.database_url.is_some() {
        return Ok(());
    }
    let file = server.data_dir.join(DATABASE_FILE);
    match file.try_exists() {
        Ok(true) => super::sqlite::emptied(&file).map_or(Ok(()), |e| Err(e.into())),
        Ok(false) => Err(TransferError::NoDatabase(file)),
        Err(error) => Err(TransferError::Unreachable { file, error }),
    }
}

/// Applies the migrations the database the settings name lacks; returns the newest
/// migration version it then has.
pub async fn migrate(server: &Server) -> Result<i64, StoreError> {
    let database = Database::open(server).await?;
    let version = database.schema_version().await;
    database.close().await;
    Ok(version?)
}

/// Writes every row of the database the settings name to `out` as JSON lines, from one
/// consistent snapshot: a header line, then one `{"table": …, "row": {…}}` per row.
/// The database is only read: neither created nor migrated.
pub async fn export(server: &Server, out: &mut impl Write) -> Result<Counts, TransferError> {
    let database = Database::open_as_is(server).await?;
    let header = json!({"format": FORMAT, "version": VERSION});
    writeln!(out, "{header}").map_err(TransferError::Write)?;
    let mut counts = Vec::with_capacity(TABLES.len());
    match &database {
        Database::Sqlite(pool) => {
            // One read transaction: every table as of the same instant.
            let mut tx = pool.begin().await?;
            for table in TABLES {
                let sql = select_sql(table);
                let mut rows = sqlx::query(&sql).fetch(&mut *tx);
                let mut count = 0;
                while let Some(row) = rows.next().await {
                    write_row(out, table, &row?)?;
                    count += 1;
                }
                counts.push((table.name, count));
            }
            tx.commit().await?;
        }
        Database::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
            for table in TABLES {
                let sql = select_sql(table);
                let mut rows = sqlx::query(&sql).fetch(&mut *tx);
                let mut count = 0;
                while let Some(row) = rows.next().await {
                    write_row(out, table, &row?)?;
                    count += 1;
                }
                counts.push((table.name, count));
            }
            tx.commit().await?;
        }
    }
    // The last line: what came before it, so that an export cut short is known to be.
    let end: Map<String, Value> = counts
        .iter()
        .map(|(table, count)| ((*table).to_owned(), Value::from(*count)))
        .collect();
    writeln!(out, "{}", json!({ "end": end })).map_err(TransferError::Write)?;
    out.flush().map_err(TransferError::Write)?;
    database.close().await;
    Ok(counts)
}

fn select_sql(table: &Table) -> String {
    let columns: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    format!(
        "SELECT {} FROM {} ORDER BY {}",
        columns.join(", "),
        table.name,
        table.order
    )
}

fn write_row(out: &mut impl Write, table: &Table, row: &impl Columns) -> Result<(), TransferError> {
    let mut values = Map::new();
    for (column, kind) in table.columns {
        let value = match kind {
            Int | Version | State | Event => row.value::<Option<i64>>(column)?.map(Value::from),
            Kind::Text(_) | Html => row.value::<Option<String>>(column)?.map(Value::from),
            Bool => row.value::<Option<bool>>(column)?.map(Value::from),
            Secret => row
                .value::<Option<Vec<u8>>>(column)?
                .map(|bytes| Value::from(BASE64.encode(bytes))),
        };
        values.insert((*column).to_owned(), value.unwrap_or(Value::Null));
    }
    let line = json!({"table": table.name, "row": values});
    writeln!(out, "{line}").map_err(TransferError::Write)
}

/// One value of an imported row, as bound to a statement.
enum Bound {
    Int(Option<i64>),
    Text(Option<String>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
}

/// How many bytes a line of an export may take per byte of the largest body or message the
/// API takes, whichever is larger: an article's row holds its body as HTML (at most twice
/// a body's size) and as text, and JSON may write a character in two bytes (`\"`); its
/// other fields are small beside them.
const LINE_BYTES_PER_BODY_BYTE: usize = 8;

/// Loads an export into the database the settings name, in one transaction: nothing is
/// stored unless every line is. The target must hold no partner and no article unless
/// `allow_non_empty`. The limits of the API bound a line (see
/// [`LINE_BYTES_PER_BODY_BYTE`]): a longer one (a file with no line break) is refused before
/// it is held.
pub async fn import(
    server: &Server,
    policy: Option<&HtmlPolicy>,
    limits: &Limits,
    input: impl BufRead,
    allow_non_empty: bool,
) -> Result<Counts, TransferError> {
    let max_line = (limits.fields.content_bytes)
        .max(limits.max_message_bytes)
        .saturating_mul(LINE_BYTES_PER_BODY_BYTE);
    let input = numbered_lines(input, max_line);
    let database = Database::open(server).await?;
    let result = match &database {
        Database::Sqlite(pool) => {
            let mut tx = pool.begin().await?;
            let counts =
                import_into(&mut Target::Sqlite(&mut tx), policy, input, allow_non_empty).await?;
            tx.commit().await?;
            counts
        }
        Database::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            let counts = import_into(
                &mut Target::Postgres(&mut tx),
                policy,
                input,
                allow_non_empty,
            )
            .await?;
            tx.commit().await?;
            counts
        }
    };
    database.close().await;
    Ok(result)
}

/// The transaction an import writes in.
enum Target<'a, 't> {
    Sqlite(&'a mut Transaction<'t, Sqlite>),
    Postgres(&'a mut Transaction<'t, Postgres>),
}

impl Target<'_, '_> {
    async fn scalar(&mut self, sql: &str) -> Result<i64, sqlx::Error> {
        match self {
            Self::Sqlite(tx) => sqlx::query_scalar(sql).fetch_one(&mut ***tx).await,
            Self::Postgres(tx) => sqlx::query_scalar(sql).fetch_one(&mut ***tx).await,
        }
    }

    async fn execute(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(tx) => sqlx::raw_sql(sql).execute(&mut ***tx).await.map(drop),
            Self::Postgres(tx) => sqlx::raw_sql(sql).execute(&mut ***tx).await.map(drop),
        }
    }

    /// When an article was first stored, if it is.
    async fn create_time(
        &mut self,
        partner: i64,
        article: &str,
    ) -> Result<Option<i64>, sqlx::Error> {
        const SQL: [&str; 2] = [
            "SELECT create_time FROM articles WHERE partner_id = ? AND article_id = ?",
            "SELECT create_time FROM articles WHERE partner_id = $1 AND article_id = $2",
        ];
        match self {
            Self::Sqlite(tx) => {
                sqlx::query_scalar(SQL[0])
                    .bind(partner)
                    .bind(article)
                    .fetch_optional(&mut ***tx)
                    .await
            }
            Self::Postgres(tx) => {
                sqlx::query_scalar(SQL[1])
                    .bind(partner)
                    .bind(article)
                    .fetch_optional(&mut ***tx)
                    .await
            }
        }
    }

    /// Inserts a row of `table`; `among_stored`: the database held partners or articles
    /// before the import.
    async fn insert(
        &mut self,
        table: &Table,
        values: Vec<(&str, Bound)>,
        among_stored: bool,
    ) -> Result<(), sqlx::Error> {
        let (columns, values): (Vec<&str>, Vec<Bound>) = values.into_iter().unzip();
        let placeholders: Vec<String> = match self {
            Self::Sqlite(_) => vec!["?".to_owned(); columns.len()],
            Self::Postgres(_) => (1..=columns.len()).map(|n| format!("${n}")).collect(),
        };
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({}){}",
            table.name,
            columns.join(", "),
            placeholders.join(", "),
            match table.name {
                FEED_SIZES => FEED_SIZES_TAKEN,
                SITE_IDENTITY if among_stored => SITE_IDENTITY_KEPT,
                SITE_IDENTITY => SITE_IDENTITY_TAKEN,
                _ => "",
            }
        );
        match self {
            Self::Sqlite(tx) => {
                let mut query = sqlx::query(&sql);
                for value in values {
                    query = match value {
                        Bound::Int(v) => query.bind(v),
                        Bound::Text(v) => query.bind(v),
                        Bound::Bool(v) => query.bind(v),
                        Bound::Bytes(v) => query.bind(v),
                    };
                }
                query.execute(&mut ***tx).await.map(drop)
            }
            Self::Postgres(tx) => {
                let mut query = sqlx::query(&sql);
                for value in values {
                    query = match value {
                        Bound::Int(v) => query.bind(v),
                        Bound::Text(v) => query.bind(v),
                        Bound::Bool(v) => query.bind(v),
                        Bound::Bytes(v) => query.bind(v),
                    };
                }
                query.execute(&mut ***tx).await.map(drop)
            }
        }
    }
}

async fn import_into(
    target: &mut Target<'_, '_>,
    policy: Option<&HtmlPolicy>,
    mut lines: impl Iterator<Item = Line>,
    allow_non_empty: bool,
) -> Result<Counts, TransferError> {
    let partners = target.scalar("SELECT COUNT(*) FROM partners").await?;
    // Imported articles land among those stored by when they were first stored.
    let stored_articles = target.scalar("SELECT COUNT(*) FROM articles").await?;
    let held = partners + stored_articles;
    if held > 0 && !allow_non_empty {
        return Err(TransferError::NotEmpty {
            partners,
            articles: stored_articles,
        });
    }
    let mut counts: Counts = TABLES.iter().map(|t| (t.name, 0)).collect();
    let mut earliest_imported: Option<i64> = None;
    let invalid = |line: usize, message: String| TransferError::Invalid {
        line: line + 1,
        message,
    };
    let Some((_, header)) = lines.next() else {
        return Err(invalid(0, "the export is empty".to_owned()));
    };
    let header = header?;
    if header.starts_with('\u{feff}') {
        return Err(invalid(
            0,
            "starts with a byte order mark (U+FEFF), which no export has: remove it".to_owned(),
        ));
    }
    let header: Value = serde_json::from_str(&header).map_err(|e| invalid(0, e.to_string()))?;
    let version = header.get("version").and_then(Value::as_u64);
    if header.get("format") != Some(&json!(FORMAT))
        || !version.is_some_and(|v| (OLDEST_VERSION..=VERSION).contains(&v))
    {
        return Err(invalid(
            0,
            format!("not a {FORMAT} file of version {OLDEST_VERSION} to {VERSION}: {header}"),
        ));
    }
    let counted = version.is_some_and(|v| v >= COUNTED_VERSION);
    // The line number of the end line, once read.
    let mut ended: Option<usize> = None;
    let mut last = 0;
    for (number, line) in lines {
        let line = line?;
        last = number;
        if line.trim().is_empty() {
            continue;
        }
        if let Some(end) = ended {
            return Err(invalid(
                number,
                format!("follows the end of the export (line {})", end + 1),
            ));
        }
        let record: Value =
            serde_json::from_str(&line).map_err(|e| invalid(number, e.to_string()))?;
        if counted && let Some(end) = record.get("end") {
            // An older export does not count the tables it has not.
            let counted: Counts = counts
                .iter()
                .filter(|(table, _)| exported_in(table, version))
                .cloned()
                .collect();
            check_end(end, &counted).map_err(|e| invalid(number, e))?;
            ended = Some(number);
            continue;
        }
        let name = record.get("table").and_then(Value::as_str).unwrap_or("");
        let Some(at) = TABLES.iter().position(|t| t.name == name) else {
            return Err(invalid(number, format!("unknown table {name:?}")));
        };
        let table = &TABLES[at];
        let Some(row) = record.get("row").and_then(Value::as_object) else {
            return Err(invalid(number, "no row".to_owned()));
        };
        if let Some(unknown) = row
            .keys()
            .find(|key| !table.columns.iter().any(|(c, _)| c == key))
        {
            return Err(invalid(number, format!("{name} has no column {unknown:?}")));
        }
        // Relative URLs in a body are resolved against its row's canonical URL.
        let base = row
            .get("canonical_url")
            .and_then(Value::as_str)
            .and_then(|url| url::Url::parse(url).ok());
        let html = policy.map(|policy| (policy, base.as_ref()));
        // A column the row lacks takes the database's default (a column an older export
        // has not, say); a required one is then refused by its constraint.
        // A row of an export before version 4 has no `shown_change_time`: it takes its
        // change time (see VERSION).
        let source = |column: &'static str| match column {
            "shown_change_time" if !row.contains_key(column) => "change_time",
            _ => column,
        };
        let values = table
            .columns
            .iter()
            .filter(|(column, _)| row.contains_key(source(column)))
            .map(|(column, kind)| {
                bound(row.get(source(column)), *kind, html)
                    .map(|value| (*column, value))
                    .map_err(|e| format!("{column}: {e}"))
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| invalid(number, e))?;
        target.insert(table, values, held > 0).await.map_err(|e| {
            // Among stored data, a key the database holds already: most likely a partner's
            // or an audit entry's number, which every deployment counts from 1.
            let held_already = held > 0
                && matches!(&e, sqlx::Error::Database(e)
                    if e.kind() == sqlx::error::ErrorKind::UniqueViolation);
            let message = if held_already {
                format!(
                    "the key of this {name} row is taken in the target database ({e}): an \
                     import among stored data takes rows whose keys the database does not \
                     hold, and two deployments number their partners and audit entries alike \
                     (from 1), so one cannot be merged into the other this way; import into \
                     an empty database"
                )
            } else {
                e.to_string()
            };
            invalid(number, message)
        })?;
        // Where in the archive the import reaches: an imported article's place, or that of
        // a stored article an imported author or tag row adds to a feed.
        let placed = match table.name {
            _ if stored_articles == 0 => None,
            "articles" => row.get("create_time").and_then(Value::as_i64),
            "article_authors" | "article_tags" => match (
                row.get("partner_id").and_then(Value::as_i64),
                row.get("article_id").and_then(Value::as_str),
            ) {
                (Some(partner), Some(article)) => target
                    .create_time(partner, article)
                    .await
                    .map_err(|e| invalid(number, e.to_string()))?,
                _ => None,
            },
            _ => None,
        };
        if let Some(created) = placed {
            earliest_imported = Some(earliest_imported.map_or(created, |e| e.min(created)));
        }
        counts[at].1 += 1;
    }
    if counted && ended.is_none() {
        return Err(invalid(
            last + 1,
            "the export ends without its last line ({\"end\": …} with the rows of each table): it was cut short and rows may be missing"
                .to_owned(),
        ));
    }
    // What the write path keeps as it goes: the name rows' create times (the archive order,
    // copied from their articles: an export leaves them out), the archive sizes (counted
    // again, keeping the shifts of earlier moves), and (PostgreSQL) the next numbers of the
    // identity columns.
    let archive_order = |table: &str| {
        format!(
            "UPDATE {table} SET create_time = (
                 SELECT a.create_time FROM articles AS a
                 WHERE a.partner_id = {table}.partner_id AND a.article_id = {table}.article_id)
             WHERE create_time IS NULL;"
        )
    };
    // Names no exported row dates (an export before version 5) are stored first with their
    // earliest article, as migration 0022 dated them.
    let first_stored = |kind: &str, table: &str| {
        format!(
            "UPDATE feed_sizes SET first_stored =
                 (SELECT MIN(create_time) FROM {table} WHERE name = feed_sizes.name)
             WHERE kind = '{kind}' AND first_stored IS NULL;"
        )
    };
    let recount = |kind: &str, name: &str, table: &str, group: &str| {
        format!(
            "INSERT INTO feed_sizes (kind, name, articles)
             SELECT '{kind}', {name}, COUNT(*) FROM {table} WHERE true {group}
             ON CONFLICT (kind, name) DO UPDATE SET articles = excluded.articles;"
        )
    };
    target
        .execute(
            &[
                archive_order("article_authors"),
                archive_order("article_tags"),
                "UPDATE feed_sizes SET articles = 0;".to_owned(),
                recount("all", "''", "articles", ""),
                recount("section", "section", "articles", "GROUP BY section"),
                recount("author", "name", "article_authors", "GROUP BY name"),
                recount("tag", "name", "article_tags", "GROUP BY name"),
                first_stored("author", "article_authors"),
                first_stored("tag", "article_tags"),
            ]
            .concat(),
        )
        .await?;
    // Articles imported among stored ones (or stored ones given an author or tag) shift
    // every archive page from the earliest on, in whichever feeds they joined: all of them
    // are dated by the import, and so are the feeds' current documents.
    if let (true, Some(from)) = (stored_articles > 0, earliest_imported) {
        let now = super::sqlite::nanos(chrono::Utc::now());
        target
            .execute(&format!(
                "UPDATE feed_sizes SET
                     shift_time = CASE WHEN shift_time > {now} THEN shift_time ELSE {now} END,
                     shift_from = CASE WHEN shift_from < {from} THEN shift_from ELSE {from} END,
                     shown_shift_time = CASE WHEN shown_shift_time > {now}
                                             THEN shown_shift_time ELSE {now} END"
            ))
            .await?;
    }
    if let Target::Postgres(_) = target {
        for (table, column) in [
            ("partners", "id"),
            ("article_events", "seq"),
            ("audit_log", "id"),
        ] {
            target
                .execute(&format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', '{column}'),
                                   COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
                ))
                .await?;
        }
    }
    Ok(counts)
}

/// A line of an export, numbered from 0, as text.
type Line = (usize, Result<String, TransferError>);

/// The lines of an export: a line that is not UTF-8 (an export cut in the middle of a
/// character) is named, and so is one longer than `max_bytes`, read no further. The lines
/// end at the first error.
fn numbered_lines(mut input: impl BufRead, max_bytes: usize) -> impl Iterator<Item = Line> {
    let mut number = 0;
    let mut ended = false;
    std::iter::from_fn(move || {
        if ended {
            return None;
        }
        let mut bytes = Vec::new();
        let line = match crate::lines::read_line(&mut input, max_bytes, &mut bytes) {
            Ok(None) => return None,
            Err(e) => Err(TransferError::Read(e)),
            Ok(Some((_, read))) => {
                if read == LineRead::Whole {
                    String::from_utf8(bytes).map_err(|e| TransferError::Invalid {
                        line: number + 1,
                        message: format!(
                            "is not UTF-8 text: byte {} is not part of a character (an export cut short, or not saved as UTF-8?)",
                            e.utf8_error().valid_up_to() + 1
                        ),
                    })
                } else {
                    Err(TransferError::Invalid {
                        line: number + 1,
                        message: format!(
                            "is longer than {max_bytes} bytes, more than any row of an article \
                             [limits] content_bytes and max_message_bytes allow: not an export, \
                             or one from a deployment that takes larger articles (raise those \
                             limits to its own)"
                        ),
                    })
                }
            }
        };
        ended = line.is_err();
        number += 1;
        Some((number - 1, line))
    })
}

/// Whether the end line of an export counts the rows that came before it, table by table.
fn check_end(end: &Value, counts: &Counts) -> Result<(), String> {
    let Some(end) = end.as_object() else {
        return Err(format!("end: {end} is not an object of row counts"));
    };
    if let Some(unknown) = end.keys().find(|k| !counts.iter().any(|(t, _)| t == k)) {
        return Err(format!("end: no table {unknown:?}"));
    }
    for (table, count) in counts {
        match end.get(*table).map(|n| n.as_u64().ok_or(n)) {
            None => return Err(format!("end: the rows of {table} are not counted")),
            Some(Err(n)) => return Err(format!("end.{table}: {n} is not a count of rows")),
            Some(Ok(said)) if said != *count => {
                return Err(format!(
                    "end.{table}: the export says it holds {said} rows of {table}, but {count} came before this line: rows are missing or were added"
                ));
            }
            Some(Ok(_)) => {}
        }
    }
    Ok(())
}

/// The value of one column of an imported row; absent is NULL. Text that feeds carry is
/// checked as publishing left it (`html`: the configured HTML sanitiser and the base of
/// the row's relative URLs; `None`: HTML taken as it is).
fn bound(
    value: Option<&Value>,
    kind: Kind,
    html: Option<(&HtmlPolicy, Option<&url::Url>)>,
) -> Result<Bound, String> {
    let value = value.filter(|v| !v.is_null());
    let wrong = |v: &Value| format!("{v} is not {}", kind.what());
    // Text whose `fault` must be `None`.
    let checked = |fault: &dyn Fn(&str) -> Option<String>| -> Result<Bound, String> {
        let text = value
            .map(|v| v.as_str().ok_or_else(|| wrong(v)))
            .transpose()?;
        match text.and_then(fault) {
            Some(fault) => Err(fault),
            None => Ok(Bound::Text(text.map(str::to_owned))),
        }
    };
    Ok(match kind {
        Kind::Text(fault) => checked(&fault)?,
        Html => {
            checked(&|body| html.and_then(|(policy, base)| stored::html_fault(body, policy, base)))?
        }
        Int => Bound::Int(
            value
                .map(|v| v.as_i64().ok_or_else(|| wrong(v)))
                .transpose()?,
        ),
        Version => Bound::Int(
            value
                .map(|v| {
                    v.as_i64()
                        .filter(|n| (1..i64::from(u32::MAX)).contains(n))
                        .ok_or_else(|| {
                            format!("{v} is not a version number (1 to {})", u32::MAX - 1)
                        })
                })
                .transpose()?,
        ),
        State => Bound::Int(
            value
                .map(|v| {
                    v.as_i64()
                        .filter(|&code| super::sqlite::state_from_code(code).is_ok())
                        .ok_or_else(|| format!("{v} is not a state (1 published, 2 retracted)"))
                })
                .transpose()?,
        ),
        Event => Bound::Int(
            value
                .map(|v| {
                    v.as_i64()
                        .filter(|&code| super::sqlite_history::kind_from_code(code).is_ok())
                        .ok_or_else(|| {
                            format!("{v} is not an event kind (1 published, 2 updated, 3 retracted, 4 embargo lifted)")
                        })
                })
                .transpose()?,
        ),
        Bool => Bound::Bool(
            value
                .map(|v| v.as_bool().ok_or_else(|| wrong(v)))
                .transpose()?,
        ),
        Secret => Bound::Bytes(
            value
                .map(|v| {
                    let bytes = v
                        .as_str()
                        .and_then(|s| BASE64.decode(s).ok())
                        .ok_or_else(|| wrong(v))?;
                    websub::Secret::new(bytes.clone()).map(|_| bytes)
                })
                .transpose()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::{Bound, CALLBACK, Kind, Secret, TOPIC, TransferError, bound, numbered_lines};
    use crate::domain::HtmlPolicy;
    use serde_json::json;

    /// A body is checked as publishing left it: its relative URLs resolved against its
    /// row's canonical URL, so one still relative is refused.
    #[test]
    fn a_body_is_checked_against_the_base_of_its_row() {
        let policy = HtmlPolicy::default();
        let base = url::Url::parse("https://example.com/2023/a.html").unwrap();
        let resolved = json!(
            r#"<p><a href="https://example.com/2023/b.html" rel="noopener noreferrer">b</a></p>"#
        );
        let html = Some((&policy, Some(&base)));
        assert!(bound(Some(&resolved), Kind::Html, html).is_ok());
        let relative = json!(r#"<p><a href="b.html" rel="noopener noreferrer">b</a></p>"#);
        for base in [None, Some(&base)] {
            let refused = bound(Some(&relative), Kind::Html, Some((&policy, base)));
            assert!(refused.is_err_and(|e| e.contains("relative")), "{base:?}");
        }
    }

    /// A line longer than any row is refused without being held, and nothing after it is
    /// read: a file with no line break (`/dev/zero`) ends the import at once. Lines up to
    /// the limit are read whole, without their line ends.
    #[test]
    fn a_line_longer_than_any_row_ends_the_lines_unread() {
        let input = std::io::Cursor::new(b"0123456789\r\n{}\n0123456789A\n{}\n".to_vec());
        let lines: Vec<_> = numbered_lines(input, 10).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(matches!(&lines[0], (0, Ok(line)) if line == "0123456789"));
        assert!(matches!(&lines[1], (1, Ok(line)) if line == "{}"));
        assert!(
            matches!(&lines[2], (2, Err(TransferError::Invalid { line: 3, message }))
                if message.starts_with("is longer than 10 bytes")),
            "{:?}",
            lines[2]
        );
        // A last line without a line end, at the limit; and one past it.
        for (text, taken) in [(&b"{}\n0123456789"[..], true), (b"{}\n0123456789A", false)] {
            let lines: Vec<_> = numbered_lines(text, 10).collect();
            assert_eq!(lines.len(), 2, "{lines:?}");
            assert_eq!(lines[1].1.is_ok(), taken, "{lines:?}");
        }
        // Endless input with no line break: the first line is refused, read no further.
        let endless = std::io::BufReader::new(std::io::repeat(b'0'));
        let mut lines = numbered_lines(endless, 1 << 20);
        assert!(matches!(
            lines.next(),
            Some((0, Err(TransferError::Invalid { line: 1, .. })))
        ));
        assert!(lines.next().is_none());
    }

    /// A subscription's topic, callback and secret are imported only as the hub takes and
    /// writes them: a callback written otherwise would not be found by its text.
    #[test]
    fn a_subscription_is_imported_only_as_the_hub_writes_it() {
        let taken = |kind: Kind, value: serde_json::Value| bound(Some(&value), kind, None);
        assert!(taken(TOPIC, json!("politics/atom.xml")).is_ok());
        let refused = |kind, value, says: &str| {
            let fault = taken(kind, value).err().unwrap_or_default();
            assert!(fault.contains(says), "{fault:?}");
        };
        refused(TOPIC, json!("../secret"), "not a feed path");
        assert!(taken(CALLBACK, json!("https://reader.example/cb?id=1")).is_ok());
        refused(
            CALLBACK,
            json!("HTTPS://Reader.example/cb"),
            "\"https://reader.example/cb\"",
        );
        refused(CALLBACK, json!("ftp://reader.example/"), "http or https");
        assert!(matches!(
            taken(Secret, json!("c2VjcmV0")),
            Ok(Bound::Bytes(Some(bytes))) if bytes == b"secret"
        ));
        refused(Secret, json!(""), "must not be empty");
        refused(Secret, json!("%%%"), "is not base64 text");
    }

    #[test]
    fn a_version_number_is_imported_only_if_another_can_follow_it() {
        for good in [1, i64::from(u32::MAX) - 1] {
            let bound = bound(Some(&json!(good)), Kind::Version, None);
            assert!(
                matches!(bound, Ok(Bound::Int(Some(n))) if n == good),
                "{good}"
            );
        }
        for bad in [
            json!(0),
            json!(-1),
            json!(u32::MAX),
            json!(i64::MAX),
            json!("2"),
        ] {
            let refused = bound(Some(&bad), Kind::Version, None)
                .err()
                .unwrap_or_default();
            assert!(
                refused.contains("not a version number"),
                "{bad}: {refused:?}"
            );
        }
        // Other integers keep their whole range.
        assert!(matches!(
            bound(Some(&json!(u32::MAX)), Kind::Int, None),
            Ok(Bound::Int(Some(_)))
        ));
    }
}
