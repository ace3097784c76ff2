//! The sample edition (朔州日报, 7 June 2023): parsed from the embedded fixture and
//! published through the same conversion and use-case as the gRPC API.

use crate::config::Settings;
use crate::domain::SectionGrant;
use crate::grpc::convert::draft_from_proto;
use crate::grpc::proto;
use crate::publishing::{self, PublishError, PublishRequest, Publisher};
use crate::storage::Store;
use chrono::{DateTime, FixedOffset};
use serde::Deserialize;

/// The fixture: one page of the paper, structured into articles, copy as printed.
pub const SAMPLE_EDITION_TOML: &str = include_str!("sample_edition.toml");
/// The partner the demo publishes as.
pub const DEMO_PARTNER: &str = "newsroom";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Edition {
    articles: Vec<FixtureArticle>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureArticle {
    id: String,
    section: String,
    kicker: String,
    title: String,
    subtitle: String,
    authors: Vec<String>,
    tags: Vec<String>,
    publish_time: DateTime<FixedOffset>,
    expire_time: Option<DateTime<FixedOffset>>,
    paragraphs: Vec<String>,
}

fn timestamp(t: DateTime<FixedOffset>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// The sample edition as API messages, in page order: plain-text bodies with paragraphs
/// separated by blank lines.
pub fn sample_edition() -> Vec<proto::Article> {
    let edition: Edition =
        toml::from_str(SAMPLE_EDITION_TOML).expect("the embedded sample edition is valid TOML");
    edition
        .articles
        .into_iter()
        .map(|a| proto::Article {
            id: a.id,
            section: a.section,
            title: a.title,
            subtitle: a.subtitle,
            kicker: a.kicker,
            authors: a.authors,
            content_text: a.paragraphs.join("\n\n"),
            tags: a.tags,
            publish_time: Some(timestamp(a.publish_time)),
            expire_time: a.expire_time.map(timestamp),
            ..Default::default()
        })
        .collect()
}

/// Publishes the sample edition as the `newsroom` partner (created with rights to every
/// section if missing); returns how many articles it stored. Only articles the partner
/// does not have yet are published: what an editor did to one since (a correction, a
/// retraction, a move) is theirs, and a restart with `--demo` does not undo it.
pub async fn publish_sample_edition(
    publisher: &Publisher,
    store: &dyn Store,
    settings: &Settings,
) -> Result<usize, PublishError> {
    let name = crate::domain::PartnerName::parse(DEMO_PARTNER).expect("a valid partner name");
    let partner = match store.partner_by_name(&name).await? {
        Some(partner) => partner,
        // Revoked: it keeps its name, and the sample edition is not published as it.
        None if store
            .partner_record(&name)
            .await?
            .is_some_and(|r| r.revoke_time.is_some()) =>
        {
            return Err(PublishError::Invalid(crate::domain::Violations::one(
                "partner",
                format!(
                    "{DEMO_PARTNER:?}, as which the sample edition is published, is revoked: serve without --demo (or with a data folder of its own for the demo)"
                ),
            )));
        }
        None => {
            publishing::add_partner(store, settings, DEMO_PARTNER, SectionGrant::All)
                .await?
                .0
        }
    };
    let caller = crate::domain::Caller {
        partner,
        peer: None,
        remembered: None,
        token: None,
    };
    let mut stored = 0;
    for article in sample_edition() {
        let id = crate::domain::ArticleId::parse(&article.id)
            .map_err(|e| PublishError::Invalid(crate::domain::Violations::one("id", e)))?;
        if store.article(caller.partner.id, &id).await?.is_some() {
            continue;
        }
        let request = PublishRequest {
            draft: draft_from_proto(Some(article))?,
            ..PublishRequest::default()
        };
        if publisher.publish(&caller, request).await?.changed {
            stored += 1;
        }
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_edition_has_seven_articles_with_copy_as_printed() {
        let edition = sample_edition();
        assert_eq!(edition.len(), 7);
        assert_eq!(edition[0].title, "“党建引领+居民自治”打造“幸福新邻里”");
        assert_eq!(edition[6].authors, ["刘磊", "张智宙"]);
        // The page break that splits "机关企" from "事业单位" is kept.
        assert!(
            edition[0]
                .content_text
                .contains("并积极引导机关企\n\n事业单位退休党员")
        );
    }
}
