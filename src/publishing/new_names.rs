//! The allowance of new author and tag feeds. A name that has no feed yet starts three
//! documents, rebuilt with each of its articles, and their files under `feeds/`, for good:
//! one article may carry a hundred and fifty names, one batch ten thousand articles. A
//! partner may start at most `[limits] new_names_per_hour` of them in an hour (on every
//! replica of a shared database together), all at once or spread out; an article that
//! would start more is refused, and nothing of it is stored.

use crate::domain::{FeedScope, Partner, PartnerId};
use crate::locks::lock;
use crate::storage::Store;
use chrono::Utc;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a name charged is not charged again, at least (up to twice as long).
const REMEMBERED: Duration = Duration::from_secs(3_600);

/// Partners' allowances of new names.
pub struct NewNames {
    per_hour: NonZeroU32,
    limiter: DefaultKeyedRateLimiter<PartnerId>,
    /// Names charged lately, not charged again while their feeds are being built: a batch
    /// of a thousand articles under one new tag is charged one name.
    charged: Mutex<Charged>,
}

/// Names charged since `since`, and in the [`REMEMBERED`] before.
struct Charged {
    since: Instant,
    current: HashSet<FeedScope>,
    previous: HashSet<FeedScope>,
}

/// An article refused for starting more author and tag feeds than its partner may now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{fields}: {new} {} with no feed yet, more than partner {partner:?} may start now (its \
     allowance is {per_hour} new author and tag feeds an hour, [limits] \
     new_names_per_hour){}",
    if *new == 1 { "name" } else { "names" },
    match retry_after {
        Some(wait) => format!("; retry in {} s", wait.as_secs().max(1)),
        None => String::from("; never in one article: send fewer names"),
    }
)]
pub struct NewNamesRefused {
    /// The fields that carry the new names: `article.authors`, `article.tags` or both.
    pub fields: &'static str,
    /// Names the article carries that have no feed yet.
    pub new: usize,
    pub partner: String,
    pub per_hour: u32,
    /// When the article would be taken; `None` when it carries more new names than the
    /// whole allowance.
    pub retry_after: Option<Duration>,
}

impl NewNames {
    /// An allowance of `per_hour` new names for each partner.
    pub fn new(per_hour: NonZeroU32) -> Self {
        Self {
            per_hour,
            limiter: RateLimiter::keyed(Quota::per_hour(per_hour)),
            charged: Mutex::new(Charged {
                since: Instant::now(),
                current: HashSet::new(),
                previous: HashSet::new(),
            }),
        }
    }

    /// Charges `partner` for the names of `unshown` (author and tag scopes that have no
    /// feed) that were not charged lately, or refuses the article when they are more than
    /// its allowance has left. Nothing is charged for a refused article. With `shared` (a
    /// store replicas share), from the allowance every process on it shares, or from this
    /// process's while the store cannot be reached. Names charged lately are remembered by
    /// each process: one that another charged may be charged again here, never the other
    /// way round.
    pub async fn charge(
        &self,
        partner: &Partner,
        unshown: Vec<FeedScope>,
        shared: Option<&dyn Store>,
    ) -> Result<(), NewNamesRefused> {
        if unshown.is_empty() {
            return Ok(());
        }
        let new = self.charged().uncharged(unshown);
        let Some(count) = NonZeroU32::new(u32::try_from(new.len()).unwrap_or(u32::MAX)) else {
            return Ok(());
        };
        let taken = match shared {
            // More than the whole allowance: refused here, whatever the store holds.
            Some(store) if count <= self.per_hour => {
                match store
                    .take_new_names(partner.id, count, self.per_hour, Utc::now())
                    .await
                {
                    Ok(None) => Ok(()),
                    Ok(Some(wait)) => Err(Some(wait)),
                    Err(error) => {
                        tracing::warn!(%error, "cannot take new names from the shared allowance");
                        self.take_here(partner.id, count)
                    }
                }
            }
            _ => self.take_here(partner.id, count),
        };
        match taken {
            Ok(()) => {
                self.charged().current.extend(new);
                Ok(())
            }
            Err(retry_after) => Err(self.refused(partner, &new, retry_after)),
        }
    }

    /// The names charged lately, as of now.
    fn charged(&self) -> std::sync::MutexGuard<'_, Charged> {
        let mut charged = lock(&self.charged);
        charged.roll();
        charged
    }

    /// Takes `count` from `partner`'s allowance in this process, or says when they would
    /// be taken (`None`: never, more than the whole allowance).
    fn take_here(&self, partner: PartnerId, count: NonZeroU32) -> Result<(), Option<Duration>> {
        match self.limiter.check_key_n(&partner, count) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Some(
                not_until.wait_time_from(DefaultClock::default().now()),
            )),
            Err(_) => Err(None),
        }
    }

    /// The refusal of an article that would start `new` feeds.
    fn refused(
        &self,
        partner: &Partner,
        new: &[FeedScope],
        retry_after: Option<Duration>,
    ) -> NewNamesRefused {
        let authors = new.iter().any(|n| matches!(n, FeedScope::Author(_)));
        let tags = new.iter().any(|n| matches!(n, FeedScope::Tag(_)));
        NewNamesRefused {
            fields: match (authors, tags) {
                (true, true) => "article.authors and article.tags",
                (true, false) => "article.authors",
                _ => "article.tags",
            },
            new: new.len(),
            partner: partner.name.to_string(),
            per_hour: self.per_hour.get(),
            retry_after,
        }
    }
}

impl Charged {
    /// Starts the next hour when this one is over, and forgets the hour before.
    fn roll(&mut self) {
        let age = self.since.elapsed();
        if age >= 2 * REMEMBERED {
            self.previous.clear();
            self.current.clear();
            self.since = Instant::now();
        } else if age >= REMEMBERED {
            // The next hour starts where this one ended, not now: a name is remembered for
            // at most two.
            self.previous = std::mem::take(&mut self.current);
            self.since += REMEMBERED;
        }
    }

    /// Those of `unshown` not charged lately.
    fn uncharged(&self, unshown: Vec<FeedScope>) -> Vec<FeedScope> {
        unshown
            .into_iter()
            .filter(|name| !self.current.contains(name) && !self.previous.contains(name))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{PartnerName, SectionGrant};

    fn partner(id: i64, name: &str) -> Partner {
        Partner {
            id: PartnerId(id),
            name: PartnerName::parse(name).unwrap(),
            grant: SectionGrant::All,
            embargoed: false,
        }
    }

    fn tags(names: &[&str]) -> Vec<FeedScope> {
        names.iter().map(|n| FeedScope::tag(n)).collect()
    }

    #[tokio::test]
    async fn a_partner_starts_at_most_its_allowance_of_new_names() {
        let names = NewNames::new(NonZeroU32::new(3).unwrap());
        let wire = partner(1, "wire");
        names
            .charge(&wire, tags(&["一", "二"]), None)
            .await
            .expect("two of three");
        // Charged lately: not again.
        names
            .charge(&wire, tags(&["一", "二"]), None)
            .await
            .expect("the same names again");
        let refused = names
            .charge(&wire, tags(&["三", "四"]), None)
            .await
            .expect_err("two more of the one left");
        assert_eq!(refused.fields, "article.tags");
        assert_eq!(refused.new, 2);
        assert_eq!(refused.per_hour, 3);
        let wait = refused.retry_after.expect("a retry time");
        assert!(
            wait > Duration::from_secs(1_000) && wait <= Duration::from_secs(1_200),
            "{wait:?}"
        );
        assert!(refused.to_string().starts_with(
            "article.tags: 2 names with no feed yet, more than partner \"wire\" may start now"
        ));
        // Nothing was charged for the refused article: one is still left.
        names
            .charge(&wire, tags(&["三"]), None)
            .await
            .expect("the last one");
        let refused = names
            .charge(&wire, vec![FeedScope::author("王芳")], None)
            .await
            .expect_err("none left");
        assert_eq!(refused.fields, "article.authors");
        // Another partner has an allowance of its own.
        names
            .charge(&partner(2, "county"), tags(&["四", "五"]), None)
            .await
            .expect("another partner's");
        // Names with feeds cost nothing.
        names
            .charge(&wire, Vec::new(), None)
            .await
            .expect("no new names");
    }

    #[tokio::test]
    async fn more_new_names_than_the_whole_allowance_are_never_taken() {
        let names = NewNames::new(NonZeroU32::new(2).unwrap());
        let refused = names
            .charge(
                &partner(1, "wire"),
                vec![
                    FeedScope::author("甲"),
                    FeedScope::tag("乙"),
                    FeedScope::tag("丙"),
                ],
                None,
            )
            .await
            .expect_err("three of two");
        assert_eq!(refused.fields, "article.authors and article.tags");
        assert_eq!(refused.retry_after, None);
        assert!(
            refused.to_string().ends_with("send fewer names"),
            "{refused}"
        );
    }
}
