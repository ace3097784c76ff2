//! The audit log: who changed what, from where, when, and with what outcome.

use super::{Caller, PartnerName};
use chrono::{DateTime, Utc};
use std::fmt;
use std::net::SocketAddr;

/// Who asks for a change, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub partner: PartnerName,
    /// Remote address of the gRPC connection; `None` for the CLI and the demo.
    pub peer: Option<SocketAddr>,
}

impl From<&Caller> for Actor {
    fn from(caller: &Caller) -> Self {
        Self {
            partner: caller.partner.name.clone(),
            peer: caller.peer,
        }
    }
}

/// A mutation the audit log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOperation {
    Publish,
    Retract,
    PartnerAdd,
    PartnerRevoke,
    PartnerRotate,
    PartnerRestore,
    PartnerGrant,
    PartnerDeny,
}

impl AuditOperation {
    const ALL: [Self; 8] = [
        Self::Publish,
        Self::Retract,
        Self::PartnerAdd,
        Self::PartnerRevoke,
        Self::PartnerRotate,
        Self::PartnerRestore,
        Self::PartnerGrant,
        Self::PartnerDeny,
    ];

    /// The operation's stored and printed name, e.g. `partner.rotate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Retract => "retract",
            Self::PartnerAdd => "partner.add",
            Self::PartnerRevoke => "partner.revoke",
            Self::PartnerRotate => "partner.rotate",
            Self::PartnerRestore => "partner.restore",
            Self::PartnerGrant => "partner.grant",
            Self::PartnerDeny => "partner.deny",
        }
    }

    /// The operation with this name.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str() == raw)
    }
}

impl fmt::Display for AuditOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a recorded mutation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The change was made.
    Ok,
    /// Nothing needed changing (identical content, retracted twice, a right already held).
    Unchanged,
    /// No such article.
    NotFound,
    /// The partner is revoked.
    Revoked,
    /// Refused: a field was invalid.
    InvalidArgument,
    /// Refused: the partner lacks the right.
    PermissionDenied,
    /// Refused: the partner is past an allowance (of new author and tag feeds).
    ResourceExhausted,
}

impl Outcome {
    const ALL: [Self; 7] = [
        Self::Ok,
        Self::Unchanged,
        Self::NotFound,
        Self::Revoked,
        Self::InvalidArgument,
        Self::PermissionDenied,
        Self::ResourceExhausted,
    ];

    /// The outcome's stored and printed name, e.g. `permission_denied`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unchanged => "unchanged",
            Self::NotFound => "not_found",
            Self::Revoked => "revoked",
            Self::InvalidArgument => "invalid_argument",
            Self::PermissionDenied => "permission_denied",
            Self::ResourceExhausted => "resource_exhausted",
        }
    }

    /// The outcome with this name.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == raw)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub time: DateTime<Utc>,
    /// The partner that made the call, or whose rights or token the operator changed.
    pub partner: String,
    pub operation: AuditOperation,
    /// The article concerned, as the partner named it (cut to 128 characters).
    pub article_id: Option<String>,
    pub peer: Option<SocketAddr>,
    pub outcome: Outcome,
    /// What else is worth knowing: the rights granted, why a call was refused…
    pub detail: String,
}

impl AuditEntry {
    /// An entry for `actor` at `time`; `article_id` is cut to the longest valid id.
    pub fn new(
        actor: &Actor,
        operation: AuditOperation,
        article_id: Option<&str>,
        outcome: Outcome,
        time: DateTime<Utc>,
    ) -> Self {
        Self {
            time,
            partner: actor.partner.to_string(),
            operation,
            article_id: article_id.map(|id| id.chars().take(128).collect()),
            peer: actor.peer,
            outcome,
            detail: String::new(),
        }
    }

    /// The entry of a retraction of `article_id` asked with `reason` (by the operator, not
    /// the partner, when `by_operator`), as the store answered it: the article and whether
    /// this call retracted it (`None`: not found). The detail is the reason kept; an
    /// article retracted already keeps its first reason, and the one given again, when it
    /// differs, is recorded beside it.
    pub fn retraction(
        actor: &Actor,
        article_id: &str,
        (reason, by_operator): (&str, bool),
        result: Option<(&super::Article, bool)>,
        time: DateTime<Utc>,
    ) -> Self {
        let (outcome, detail) = match result {
            None => (Outcome::NotFound, String::new()),
            Some((article, true)) => (Outcome::Ok, article.retract_reason.clone()),
            Some((article, false)) if article.retract_reason == reason => {
                (Outcome::Unchanged, article.retract_reason.clone())
            }
            Some((article, false)) => (
                Outcome::Unchanged,
                format!(
                    "{} (retracted already; the reason given again, not kept: {reason})",
                    article.retract_reason
                ),
            ),
        };
        Self::new(
            actor,
            AuditOperation::Retract,
            Some(article_id),
            outcome,
            time,
        )
        .with_detail(match (by_operator, detail.is_empty()) {
            (true, true) => "by the operator".to_owned(),
            (true, false) => format!("by the operator: {detail}"),
            (false, _) => detail,
        })
    }

    /// The entry with `detail`, cut to 1000 characters.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = super::one_line(&detail.into(), 1000);
        self
    }
}

/// Which entries `feedpub audit` shows: newest first, at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    pub partner: Option<PartnerName>,
    pub since: Option<DateTime<Utc>>,
    pub limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_and_outcomes_round_trip_through_their_names() {
        for op in AuditOperation::ALL {
            assert_eq!(AuditOperation::parse(op.as_str()), Some(op));
        }
        for outcome in Outcome::ALL {
            assert_eq!(Outcome::parse(outcome.as_str()), Some(outcome));
        }
        assert_eq!(AuditOperation::parse("drop"), None);
    }

    #[test]
    fn article_ids_and_details_are_cut() {
        let actor = Actor {
            partner: PartnerName::parse("wire").unwrap(),
            peer: None,
        };
        let entry = AuditEntry::new(
            &actor,
            AuditOperation::Publish,
            Some(&"x".repeat(500)),
            Outcome::InvalidArgument,
            Utc::now(),
        )
        .with_detail("y\n".repeat(2000));
        assert_eq!(entry.article_id.unwrap().len(), 128);
        assert!(entry.detail.chars().count() <= 1001, "1000 and an ellipsis");
        assert!(!entry.detail.contains('\n'));
    }
}
