//! Partner management, shared by the CLI, the demo and the tests: add, list, revoke, rotate,
//! grant, deny, take down an article, and reading the audit log. Every change is in the
//! audit log.

use crate::config::Settings;
use crate::domain::{
    AuditEntry, AuditFilter, Partner, PartnerName, PartnerRecord, Right, Rights, RightsChange,
    SectionGrant, SectionSlug, Token, Violations,
};
use crate::publishing::PublishError;
use crate::storage::{NewPartner, NewToken, Store};
use chrono::Utc;

/// Creates a partner with `rights` and returns it with its token, which is shown once and
/// stored only as a hash.
pub async fn add_partner(
    store: &dyn Store,
    settings: &Settings,
    name: &str,
    rights: impl Into<Rights>,
) -> Result<(Partner, Token), PublishError> {
    let name = parse_name(name)?;
    let mut rights = rights.into();
    if let SectionGrant::Only(sections) = &mut rights.sections {
        let mut seen = std::collections::HashSet::new();
        sections.retain(|s| seen.insert(s.clone()));
        let mut violations = configured_only(settings, sections);
        if sections.is_empty() {
            violations.add(
                "section",
                "name at least one section, or grant all sections",
            );
        }
        violations.into_result(())?;
    }
    let token = Token::generate().map_err(PublishError::Randomness)?;
    let partner = store
        .add_partner(
            NewPartner {
                name,
                rights,
                token_hash: token.hash(),
                token_prefix: token.visible_prefix(),
            },
            Utc::now(),
        )
        .await?;
    Ok((partner, token))
}

/// Every partner, active or revoked, by name.
pub async fn list(store: &dyn Store) -> Result<Vec<PartnerRecord>, PublishError> {
    Ok(store.partner_records().await?)
}

/// Takes down a partner's article, active or revoked (a legal order, copy that must not
/// stay up): it leaves every feed as a retraction by the partner would, with `reason` kept
/// for the partner, and a server running on the same database rebuilds the feeds within
/// about a second. The flag is false when it was retracted already (its first reason kept).
pub async fn retract_article(
    store: &dyn Store,
    name: &str,
    id: &str,
    reason: &str,
) -> Result<(crate::domain::Article, bool), PublishError> {
    let name = parse_name(name)?;
    let (id, reason) = Violations::both(
        crate::publishing::parse_id(id),
        crate::publishing::retraction_reason(reason),
    )?;
    let record = store
        .partner_record(&name)
        .await?
        .ok_or_else(|| PublishError::UnknownPartner(name.to_string()))?;
    let retraction = crate::storage::Retraction {
        id: id.clone(),
        reason,
        expected_etag: None,
        request: None,
        by_operator: true,
    };
    let actor = crate::domain::Actor {
        partner: name,
        peer: None,
    };
    store
        .retract(record.partner.id, retraction, Utc::now(), &actor)
        .await?
        .ok_or_else(|| PublishError::NotFound(id.to_string()))
}

/// Revokes a partner: its token is refused from the next call on. The flag is false when it
/// was already revoked.
pub async fn revoke(store: &dyn Store, name: &str) -> Result<(PartnerRecord, bool), PublishError> {
    let name = parse_name(name)?;
    store
        .revoke_partner(&name, Utc::now())
        .await?
        .ok_or_else(|| PublishError::UnknownPartner(name.to_string()))
}

/// Gives an active partner a new token, returned to be shown once; the old one is refused
/// from the next call on.
pub async fn rotate(store: &dyn Store, name: &str) -> Result<(PartnerRecord, Token), PublishError> {
    new_token(store, name, false).await
}

/// Makes a revoked partner active again with a new token, returned to be shown once, and
/// the rights it had; its revoked token stays refused.
pub async fn restore(
    store: &dyn Store,
    name: &str,
) -> Result<(PartnerRecord, Token), PublishError> {
    new_token(store, name, true).await
}

async fn new_token(
    store: &dyn Store,
    name: &str,
    restore: bool,
) -> Result<(PartnerRecord, Token), PublishError> {
    let name = parse_name(name)?;
    let token = Token::generate().map_err(PublishError::Randomness)?;
    let new = NewToken {
        hash: token.hash(),
        prefix: token.visible_prefix(),
        restore,
    };
    let (record, replaced) = store
        .new_token(&name, new, Utc::now())
        .await?
        .ok_or_else(|| PublishError::UnknownPartner(name.to_string()))?;
    // Unchanged, the partner was not in the state asked for: active for a restoration,
    // revoked for a rotation.
    match (replaced, record.revoke_time.is_some()) {
        (true, _) => Ok((record, token)),
        (false, false) => Err(Violations::one(
            "name",
            format!(
                "partner {name} is not revoked: `feedpub partner rotate {name}` gives it a new \
                 token"
            ),
        )
        .into()),
        (false, true) => Err(Violations::one(
            "name",
            format!(
                "partner {name} is revoked: `feedpub partner restore {name}` makes it active \
                 again with a new token"
            ),
        )
        .into()),
    }
}

/// Grants or denies rights to an active partner. Only configured sections can be granted;
/// a section can be denied if it is configured or the partner holds it (one no longer
/// configured, say): any other is a typo, refused rather than reported as not held. The
/// flag is false when the partner already had (or lacked) every right named.
pub async fn change_rights(
    store: &dyn Store,
    settings: &Settings,
    name: &str,
    change: RightsChange,
) -> Result<(PartnerRecord, bool), PublishError> {
    let name = parse_name(name)?;
    if change.rights.is_empty() {
        return Err(Violations::one("rights", "name a section, all sections or embargoed").into());
    }
    if change.grant {
        let sections: Vec<SectionSlug> = change
            .rights
            .iter()
            .filter_map(|r| match r {
                Right::Section(slug) => Some(slug.clone()),
                Right::AllSections | Right::Embargoed => None,
            })
            .collect();
        configured_only(settings, &sections).into_result(())?;
    } else {
        let held = match store.partner_record(&name).await? {
            Some(record) => match record.partner.grant {
                SectionGrant::Only(held) => held,
                SectionGrant::All => Vec::new(),
            },
            None => return Err(PublishError::UnknownPartner(name.to_string())),
        };
        let mut violations = Violations::default();
        for right in &change.rights {
            if let Right::Section(slug) = right
                && settings.section(slug).is_none()
                && !held.contains(slug)
            {
                violations.add(
                    "section",
                    format!(
                        "{:?} is neither a configured section nor one partner {name} holds",
                        slug.as_str()
                    ),
                );
            }
        }
        violations.into_result(())?;
    }
    let configured = settings.sections.iter().map(|s| s.slug.clone()).collect();
    let (record, changed) = store
        .change_rights(&name, change, configured, Utc::now())
        .await?
        .ok_or_else(|| PublishError::UnknownPartner(name.to_string()))?;
    if record.revoke_time.is_some() {
        return Err(PublishError::PartnerRevoked(name.to_string()));
    }
    Ok((record, changed))
}

/// Audit log entries, newest first; an unknown partner name is an error, not an empty list.
pub async fn audit(
    store: &dyn Store,
    filter: &AuditFilter,
) -> Result<Vec<AuditEntry>, PublishError> {
    if let Some(name) = &filter.partner
        && store.partner_record(name).await?.is_none()
    {
        return Err(PublishError::UnknownPartner(name.to_string()));
    }
    Ok(store.audit_entries(filter).await?)
}

fn parse_name(raw: &str) -> Result<PartnerName, PublishError> {
    PartnerName::parse(raw).map_err(|e| Violations::one("name", e).into())
}

/// A violation for every section of `sections` that is not configured.
fn configured_only(settings: &Settings, sections: &[SectionSlug]) -> Violations {
    let mut violations = Violations::default();
    for slug in sections {
        if settings.section(slug).is_none() {
            violations.add(
                "section",
                format!("{:?} is not a configured section", slug.as_str()),
            );
        }
    }
    violations
}
