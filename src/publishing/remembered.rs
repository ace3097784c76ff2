//! Partners remembered by their tokens, so that a PublishArticle call need not look its token
//! up before it is stored. What keeps this sound is not the memory but the write: a publish
//! made for a remembered partner checks the partner's row in its own transaction
//! ([`crate::storage::WriteChecks::Remembered`]), and a call that fails confirms its token
//! with a fresh lookup, so a revocation, rotation or change of rights holds from the next
//! call on, as when every call looked its token up.

use crate::domain::{Partner, TokenHash};
use crate::locks::lock;
use std::collections::HashMap;
use std::sync::Mutex;

/// Most tokens remembered; the memory starts again empty when one more would be kept.
/// Partners are few, and only tokens that authenticated are kept.
const MOST_REMEMBERED: usize = 1024;

/// The partner of each token that last authenticated.
#[derive(Default)]
pub(super) struct Remembered {
    partners: Mutex<HashMap<TokenHash, Partner>>,
}

impl Remembered {
    /// The partner `token` last authenticated, if it is remembered.
    pub(super) fn get(&self, token: &TokenHash) -> Option<Partner> {
        self.lock().get(token).cloned()
    }

    /// Remembers that `token` authenticates `partner`.
    pub(super) fn keep(&self, token: &TokenHash, partner: &Partner) {
        let mut partners = self.lock();
        if partners.len() >= MOST_REMEMBERED && !partners.contains_key(token) {
            partners.clear();
        }
        partners.insert(token.clone(), partner.clone());
    }

    /// Forgets `token`: it authenticates no partner any more.
    pub(super) fn forget(&self, token: &TokenHash) {
        self.lock().remove(token);
    }

    /// The map, also after a panic while it was held (every change leaves it whole).
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenHash, Partner>> {
        lock(&self.partners)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{PartnerId, PartnerName, SectionGrant};

    fn partner(id: i64) -> Partner {
        Partner {
            id: PartnerId(id),
            name: PartnerName::parse(&format!("outlet-{id}")).expect("a valid name"),
            grant: SectionGrant::All,
            embargoed: true,
        }
    }

    fn token(n: usize) -> TokenHash {
        TokenHash(format!("{n:064x}"))
    }

    #[test]
    fn a_token_kept_is_remembered_until_forgotten_or_replaced() {
        let remembered = Remembered::default();
        assert_eq!(remembered.get(&token(1)), None);
        remembered.keep(&token(1), &partner(1));
        assert_eq!(remembered.get(&token(1)), Some(partner(1)));
        assert_eq!(remembered.get(&token(2)), None);
        let mut narrowed = partner(1);
        narrowed.embargoed = false;
        remembered.keep(&token(1), &narrowed);
        assert_eq!(remembered.get(&token(1)), Some(narrowed));
        remembered.forget(&token(1));
        assert_eq!(remembered.get(&token(1)), None);
    }

    #[test]
    fn the_memory_never_holds_more_than_its_bound() {
        let remembered = Remembered::default();
        for n in 0..MOST_REMEMBERED {
            remembered.keep(&token(n), &partner(1));
        }
        assert_eq!(remembered.lock().len(), MOST_REMEMBERED);
        // A token already kept is replaced in place.
        remembered.keep(&token(0), &partner(2));
        assert_eq!(remembered.lock().len(), MOST_REMEMBERED);
        assert_eq!(remembered.get(&token(0)), Some(partner(2)));
        // One more starts again from empty.
        remembered.keep(&token(MOST_REMEMBERED), &partner(3));
        assert_eq!(remembered.lock().len(), 1);
        assert_eq!(remembered.get(&token(MOST_REMEMBERED)), Some(partner(3)));
    }
}
