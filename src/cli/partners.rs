//! `feedpub partner add | list | revoke | rotate | restore | grant | deny | retract` and
//! `feedpub audit`: the
//! operator's commands, run on the configured database (also while the server runs: SQLite
//! in WAL mode lets them write between the server's commits).

use super::{StoreArgs, write_out};
use crate::config::{Overrides, Settings};
use crate::domain::{
    AuditEntry, AuditFilter, PartnerName, PartnerRecord, Right, Rights, RightsChange, SectionGrant,
    SectionSlug, Token,
};
use crate::partners;
use crate::storage::Store;
use anyhow::Context;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use clap::{ArgGroup, Args, Subcommand};

/// `feedpub partner …`
#[derive(Debug, Subcommand)]
pub enum PartnerCommand {
    /// Create a partner and print its new token (shown once) on the last line.
    Add(PartnerAddArgs),
    /// List every partner: token prefix, state, rights, creation time.
    List(StoreArgs),
    /// Revoke a partner: its token is refused from its next call on.
    Revoke(PartnerNameArgs),
    /// Give a partner a new token (printed once, on the last line); the old one is refused
    /// from its next call on.
    Rotate(PartnerNameArgs),
    /// Make a revoked partner active again, with a new token (printed once, on the last
    /// line) and the rights it had; its revoked token stays refused.
    Restore(PartnerNameArgs),
    /// Give a partner rights: sections, or the embargo right.
    Grant(RightsArgs),
    /// Take rights away from a partner.
    Deny(RightsArgs),
    /// Take down one of a partner's articles (a legal order, copy that must not stay up):
    /// it leaves every feed as if the partner had retracted it, also while the server runs.
    Retract(PartnerRetractArgs),
}

/// Options of `feedpub partner retract`.
#[derive(Debug, Args)]
pub struct PartnerRetractArgs {
    /// The partner's name (active or revoked)
    pub name: String,
    /// The partner's article id
    pub id: String,
    /// Why, kept with the article for its partner (one line), never published
    #[arg(long, default_value = "")]
    pub reason: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Options of `feedpub partner add`: sections, or every section.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("where").required(true).args(["sections", "all_sections"])))]
pub struct PartnerAddArgs {
    /// Unique name: a-z 0-9 -, 1 to 64 characters
    pub name: String,
    /// A section the partner may publish to (repeatable)
    #[arg(long = "section", value_name = "SLUG")]
    pub sections: Vec<String>,
    /// Let the partner publish to every section
    #[arg(long, conflicts_with = "sections")]
    pub all_sections: bool,
    /// Let the partner publish under embargo and see its embargoed articles
    #[arg(long)]
    pub embargoed: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// A partner named on the command line.
#[derive(Debug, Args)]
pub struct PartnerNameArgs {
    /// The partner's name
    pub name: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Options of `feedpub partner grant` and `deny`: at least one right.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("rights").required(true).multiple(true)))]
pub struct RightsArgs {
    /// The partner's name
    pub name: String,
    /// A section (repeatable)
    #[arg(long = "section", value_name = "SLUG", group = "rights")]
    pub sections: Vec<String>,
    /// Every section, present and future
    #[arg(long, group = "rights", conflicts_with = "sections")]
    pub all_sections: bool,
    /// Publishing under embargo and seeing embargoed articles
    #[arg(long, group = "rights")]
    pub embargoed: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Options of `feedpub audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this partner's entries
    #[arg(long, value_name = "NAME")]
    pub partner: Option<String>,
    /// Only entries at or after this time: RFC 3339 (2023-06-07T08:00:00+08:00) or a date
    /// (2023-06-07, midnight UTC)
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// Most entries shown (the newest); 0 for all
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// One JSON object per line instead of a table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

fn parse_since(raw: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
        })
        .map_err(|_| {
            "expected an RFC 3339 time such as 2023-06-07T08:00:00Z or a date such as 2023-06-07"
                .to_owned()
        })
}

/// Runs a `feedpub partner …` command.
pub async fn run(command: PartnerCommand) -> anyhow::Result<()> {
    crate::telemetry::init(crate::config::LogFormat::Text);
    match command {
        PartnerCommand::Add(args) => add(args).await,
        PartnerCommand::List(store) => {
            let records = with_store(&store, async |store, _| partners::list(store).await).await?;
            write_out(&partner_table(&records))?;
            Ok(())
        }
        PartnerCommand::Revoke(args) => {
            let (record, changed) = with_store(&args.store, async |store, _| {
                partners::revoke(store, &args.name).await
            })
            .await?;
            let name = &record.partner.name;
            if changed {
                let done =
                    format!("partner {name} revoked; its token is refused from its next call on");
                write_out(&format!("{done}\n")).map_err(|e| e.after(done))?;
            } else {
                write_out(&format!("partner {name} was already revoked\n"))?;
            }
            Ok(())
        }
        PartnerCommand::Rotate(args) => new_token(args, false).await,
        PartnerCommand::Restore(args) => new_token(args, true).await,
        PartnerCommand::Grant(args) => change(args, true).await,
        PartnerCommand::Deny(args) => change(args, false).await,
        PartnerCommand::Retract(args) => {
            let (article, changed) = with_store(&args.store, async |store, _| {
                partners::retract_article(store, &args.name, &args.id, &args.reason).await
            })
            .await?;
            if changed {
                let done = format!("{} of partner {} was retracted", article.id, args.name);
                write_out(&format!(
                    "{done}: it leaves every feed (a server running on this database rebuilds \
                     them within seconds, one started later at its start); the partner may \
                     publish it again unless denied the section or revoked\n"
                ))
                .map_err(|e| e.after(done))?;
            } else {
                write_out(&format!(
                    "{} of partner {} was retracted already, reason: {}\n",
                    article.id, args.name, article.retract_reason
                ))?;
            }
            Ok(())
        }
    }
}

/// `partner rotate`, or with `restore`, `partner restore`: the new token printed once.
async fn new_token(args: PartnerNameArgs, restore: bool) -> anyhow::Result<()> {
    let (record, token) = with_store(&args.store, async |store, _| {
        if restore {
            partners::restore(store, &args.name).await
        } else {
            partners::rotate(store, &args.name).await
        }
    })
    .await?;
    let name = &record.partner.name;
    let (done, lost) = if restore {
        (
            "is active again, with the rights it had and a new token; the revoked one stays \
             refused",
            "was restored",
        )
    } else {
        (
            "has a new token; the old one is refused from its next call on",
            "was given a new token",
        )
    };
    write_out(&format!("partner {name} {done}\n{}", token_lines(&token)))
        .map_err(|e| e.after(token_lost(name, lost)))?;
    Ok(())
}

/// What a failed write of a new token says: the change stands, and how to get a token
/// that can be used.
fn token_lost(name: &PartnerName, what: &str) -> String {
    format!(
        "partner {name} {what}, but the token was not shown and cannot be shown again: run `feedpub partner rotate {name}` for one that can be used"
    )
}

/// Loads the settings, opens the configured store, runs `work` and closes the store. Only
/// `partner add` (the first command of a new deployment) may create a SQLite database, or
/// migrate one: the others refuse a folder without one, which is most likely a mistyped
/// one, and a database whose schema is not this feedpub's (see `check_schema`).
async fn with_store<T, F>(args: &StoreArgs, work: F) -> anyhow::Result<T>
where
    F: AsyncFnOnce(&dyn Store, &Settings) -> Result<T, crate::publishing::PublishError>,
{
    on_store(args, false, work).await
}

/// [`with_store`], creating the SQLite database when `creates`.
async fn on_store<T, F>(args: &StoreArgs, creates: bool, work: F) -> anyhow::Result<T>
where
    F: AsyncFnOnce(&dyn Store, &Settings) -> Result<T, crate::publishing::PublishError>,
{
    let settings = Settings::load(
        args.config.as_deref(),
        Overrides {
            data_dir: args.data_dir.clone(),
            database_url: args.database_url.clone(),
            ..Overrides::default()
        },
    )?;
    let location = || {
        format!(
            "cannot open the store in {}",
            crate::storage::location(&settings.server)
        )
    };
    if !creates {
        match crate::storage::transfer::check_schema(&settings.server).await {
            // It names the file it looked for.
            Err(e) if e.names_the_database() => return Err(e.into()),
            checked => checked.with_context(location)?,
        }
    }
    let store = crate::storage::open(&settings.server)
        .await
        .with_context(location)?;
    let result = work(store.as_ref(), &settings).await;
    store.close().await;
    Ok(result?)
}

fn sections(raw: &[String]) -> anyhow::Result<Vec<SectionSlug>> {
    raw.iter()
        .map(|s| SectionSlug::parse(s).map_err(|e| anyhow::anyhow!("--section {s:?}: {e}")))
        .collect()
}

async fn add(args: PartnerAddArgs) -> anyhow::Result<()> {
    let rights = Rights {
        sections: if args.all_sections {
            SectionGrant::All
        } else {
            SectionGrant::Only(sections(&args.sections)?)
        },
        embargoed: args.embargoed,
    };
    let (partner, token) = on_store(&args.store, true, async |store, settings| {
        partners::add_partner(store, settings, &args.name, rights).await
    })
    .await?;
    write_out(&format!(
        "partner {} created; it may publish to: {}{}\n{}",
        partner.name,
        partner.grant.describe(),
        if partner.embargoed {
            "; and under embargo"
        } else {
            ""
        },
        token_lines(&token)
    ))
    .map_err(|e| e.after(token_lost(&partner.name, "was created")))?;
    Ok(())
}

async fn change(args: RightsArgs, grant: bool) -> anyhow::Result<()> {
    let mut rights: Vec<Right> = sections(&args.sections)?
        .into_iter()
        .map(Right::Section)
        .collect();
    if args.all_sections {
        rights.push(Right::AllSections);
    }
    if args.embargoed {
        rights.push(Right::Embargoed);
    }
    let change = RightsChange { grant, rights };
    let what = change.to_string();
    let (record, changed) = with_store(&args.store, async |store, settings| {
        partners::change_rights(store, settings, &args.name, change).await
    })
    .await?;
    let partner = &record.partner;
    let done = match (changed, grant) {
        (true, true) => "granted",
        (true, false) => "denied",
        (false, true) => "already held",
        (false, false) => "not held, so nothing to deny",
    };
    let said = format!(
        "partner {}: {what} {done}; it may now publish to: {}; under embargo: {}",
        partner.name,
        partner.grant.describe(),
        yes_no(partner.embargoed)
    );
    write_out(&format!("{said}\n")).map_err(|e| if changed { e.after(said) } else { e })?;
    Ok(())
}

/// The last two lines of `add` and `rotate`: the token, alone on the last one.
fn token_lines(token: &Token) -> String {
    format!(
        "its token follows; it is shown only this once and stored only as a hash:\n{}\n",
        token.expose()
    )
}

/// Runs `feedpub audit`.
pub async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    crate::telemetry::init(crate::config::LogFormat::Text);
    let filter = AuditFilter {
        partner: args
            .partner
            .as_deref()
            .map(|p| PartnerName::parse(p).map_err(|e| anyhow::anyhow!("--partner {p:?}: {e}")))
            .transpose()?,
        since: args.since,
        limit: match args.limit {
            0 => usize::MAX,
            n => n,
        },
    };
    let entries = with_store(&args.store, async |store, _| {
        partners::audit(store, &filter).await
    })
    .await?;
    let text = if args.json {
        entries
            .iter()
            .map(|entry| format!("{}\n", audit_json(entry)))
            .collect()
    } else {
        audit_table(&entries)
    };
    write_out(&text)?;
    Ok(())
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn yes_no(flag: bool) -> &'static str {
    if flag { "yes" } else { "no" }
}

fn partner_table(records: &[PartnerRecord]) -> String {
    let rows = records.iter().map(|r| {
        vec![
            r.partner.name.to_string(),
            format!("{}…", r.token_prefix),
            match r.revoke_time {
                Some(t) => format!("revoked {}", time(t)),
                None => "active".to_owned(),
            },
            r.partner.grant.describe(),
            yes_no(r.partner.embargoed).to_owned(),
            time(r.create_time),
            r.rotate_time.map(time).unwrap_or_else(|| "-".to_owned()),
        ]
    });
    table(
        &[
            "NAME",
            "TOKEN",
            "STATE",
            "SECTIONS",
            "EMBARGOED",
            "CREATED",
            "ROTATED",
        ],
        rows,
    )
}

fn audit_table(entries: &[AuditEntry]) -> String {
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    let rows = entries.iter().map(|e| {
        vec![
            time(e.time),
            e.partner.clone(),
            e.operation.to_string(),
            dash(e.article_id.clone()),
            dash(e.peer.map(|p| p.to_string())),
            e.outcome.to_string(),
            e.detail.clone(),
        ]
    });
    table(
        &[
            "TIME",
            "PARTNER",
            "OPERATION",
            "ARTICLE",
            "PEER",
            "OUTCOME",
            "DETAIL",
        ],
        rows,
    )
}

fn audit_json(entry: &AuditEntry) -> serde_json::Value {
    serde_json::json!({
        "time": entry.time.to_rfc3339_opts(SecondsFormat::Nanos, true),
        "partner": entry.partner,
        "operation": entry.operation.as_str(),
        "article_id": entry.article_id,
        "peer": entry.peer.map(|p| p.to_string()),
        "outcome": entry.outcome.as_str(),
        "detail": entry.detail,
    })
}

/// Columns padded to their widest cell (the last one is not padded), one row per line.
fn table(headers: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = std::iter::once(headers.iter().map(|h| h.to_string()).collect())
        .chain(rows)
        .collect();
    let mut widths = vec![0; headers.len()];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let last = row.len().saturating_sub(1);
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&" ".repeat(width - cell.chars().count() + 2));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_rfc3339_times_and_dates_only() {
        assert_eq!(
            parse_since("2023-06-07T08:00:00+08:00").unwrap(),
            parse_since("2023-06-07").unwrap()
        );
        assert!(parse_since("yesterday").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn tables_align_every_column_but_the_last() {
        let rows = vec![vec!["wire".to_owned(), "x".to_owned()]].into_iter();
        assert_eq!(table(&["NAME", "DETAIL"], rows), "NAME  DETAIL\nwire  x\n");
    }
}
