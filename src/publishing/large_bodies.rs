//! Turns for validating large HTML bodies, which take the blocking pool for as long as the
//! sanitiser needs (seconds, for a megabyte of misnested markup): each partner validates
//! one at a time, and at most as many run at once as the machine has cores. A partner that
//! sends many such bodies queues behind its own, never in front of another partner's.

use crate::domain::PartnerId;
use crate::locks::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The turns: one per partner, and the machine's share.
pub struct LargeBodies {
    machine: Arc<Semaphore>,
    partners: Mutex<HashMap<PartnerId, Arc<Semaphore>>>,
}

/// A turn: held while one body is validated.
pub struct Turn {
    _partner: OwnedSemaphorePermit,
    _machine: OwnedSemaphorePermit,
}

impl LargeBodies {
    /// At most `at_once` bodies validated at a time, whoever sends them.
    pub fn new(at_once: usize) -> Self {
        Self {
            machine: Arc::new(Semaphore::new(at_once.max(1))),
            partners: Mutex::default(),
        }
    }

    /// Waits for `partner`'s turn: its own bodies before, then a place among those running.
    /// Given up (the call dropped) while waiting, it holds nothing.
    pub async fn turn(&self, partner: PartnerId) -> Result<Turn, tokio::sync::AcquireError> {
        let own = {
            let mut partners = lock(&self.partners);
            Arc::clone(
                partners
                    .entry(partner)
                    .or_insert_with(|| Arc::new(Semaphore::new(1))),
            )
        };
        let partner = own.acquire_owned().await?;
        let machine = Arc::clone(&self.machine).acquire_owned().await?;
        Ok(Turn {
            _partner: partner,
            _machine: machine,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Whether `turn` is had at once (polled once, without waiting).
    async fn at_once(bodies: &LargeBodies, partner: i64) -> Option<Turn> {
        tokio::time::timeout(Duration::ZERO, bodies.turn(PartnerId(partner)))
            .await
            .ok()
            .map(|turn| turn.unwrap())
    }

    /// A partner with a body being validated waits for it before its next; another
    /// partner's body goes ahead while there is room, and takes the room freed first.
    #[tokio::test]
    async fn a_partners_large_bodies_queue_behind_its_own_not_before_others() {
        let bodies = LargeBodies::new(2);
        let first = at_once(&bodies, 1).await.expect("room");
        assert!(
            at_once(&bodies, 1).await.is_none(),
            "the partner's own first"
        );
        let other = at_once(&bodies, 2)
            .await
            .expect("another partner's goes ahead");
        assert!(at_once(&bodies, 3).await.is_none(), "two at once at most");
        drop(other);
        let _third = at_once(&bodies, 3).await.expect("the room freed");
        drop(first);
        let _next = at_once(&bodies, 1)
            .await
            .expect("its own done, the partner's next");
        assert!(at_once(&bodies, 4).await.is_none(), "two at once at most");
    }
}
