//! The scopes served before they were finished (compressed and written), and the order
//! they are finished in. They wait in two queues, `all` and the sections in one, author and
//! tag feeds in the other, each by the time of its oldest change, so that finding the next
//! scope to finish, or when one is due, looks at the head of each queue: its cost does not
//! grow with the number of scopes waiting (one call can leave tens of thousands of author and
//! tag feeds to finish).

use super::regeneration::Pending;
use crate::domain::FeedScope;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

/// A scope served uncompressed, or compressed fast, waiting to be finished.
#[derive(Debug)]
pub(super) struct Unfinished {
    pub(super) docs: Vec<Pending>,
    /// Moves on whenever newer documents are merged in.
    pub(super) generation: u64,
    /// When the oldest of its changes went in; fixed while it waits (it orders the queue).
    since: Instant,
    /// Not before this instant: set when its files could not be written.
    pub(super) retry_at: Option<Instant>,
}

impl Unfinished {
    fn new(since: Instant) -> Self {
        Self {
            docs: Vec::new(),
            generation: 0,
            since,
            retry_at: None,
        }
    }

    /// Takes newer documents in, in place of those at the same paths, to be finished not
    /// before `retry_at` (at once: `None`).
    pub(super) fn merge(&mut self, docs: &[Pending], retry_at: Option<Instant>) {
        self.generation += 1;
        self.retry_at = retry_at;
        for pending in docs {
            self.docs.retain(|d| d.key != pending.key);
            self.docs.push(pending.clone());
        }
    }

    /// When it may be finished: at once, or after a failure a second later; during a burst
    /// (`busy`) some time after its oldest change (see [`burst_finish_interval`]), so that
    /// compressing feeds that keep changing takes little of the CPU the changes need.
    pub(super) fn due_at(&self, busy: bool, scope: &FeedScope) -> Instant {
        let settled = settled_at(self.since, busy, scope);
        self.retry_at.map_or(settled, |at| at.max(settled))
    }
}

/// When a scope whose oldest change went in at `since` may be finished, failures aside.
fn settled_at(since: Instant, busy: bool, scope: &FeedScope) -> Instant {
    if busy {
        since + burst_finish_interval(scope)
    } else {
        since
    }
}

/// During a burst, how long a scope may be served uncompressed before it is finished: half
/// a second for `all` and the sections, which most readers poll and which every change
/// touches; five seconds for author and tag feeds, which are many (a burst touches several
/// for each section), so that they are compressed a tenth as often.
fn burst_finish_interval(scope: &FeedScope) -> Duration {
    if scope.name().is_some() {
        Duration::from_secs(5)
    } else {
        Duration::from_millis(500)
    }
}

/// The order unfinished scopes are finished in, among those due, oldest first, an author
/// or tag feed as if it had changed a minute later than it did. Articles with many names
/// can leave thousands of name feeds to compress, and they must not keep `all` and the
/// sections, which most readers poll, uncompressed meanwhile: a section waits for at most
/// the name feeds that changed more than a minute before it, and a name feed for at most
/// a minute of sections, so that sections changing all the time cannot hold it back.
fn finishing_order(scope: &FeedScope, since: Instant) -> Instant {
    const NAME_WAIT: Duration = Duration::from_secs(60);
    if scope.name().is_some() {
        since + NAME_WAIT
    } else {
        since
    }
}

/// The unfinished scopes, with their two queues.
#[derive(Debug, Default)]
pub(super) struct UnfinishedScopes {
    scopes: BTreeMap<FeedScope, Unfinished>,
    /// `all` and the sections, by the time of their oldest change.
    sections: BTreeSet<(Instant, FeedScope)>,
    /// Author and tag feeds, by the time of their oldest change.
    names: BTreeSet<(Instant, FeedScope)>,
}

impl UnfinishedScopes {
    pub(super) fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// How many scopes wait.
    pub(super) fn len(&self) -> usize {
        self.scopes.len()
    }

    pub(super) fn get(&self, scope: &FeedScope) -> Option<&Unfinished> {
        self.scopes.get(scope)
    }

    pub(super) fn get_mut(&mut self, scope: &FeedScope) -> Option<&mut Unfinished> {
        self.scopes.get_mut(scope)
    }

    /// The scope's entry, made now if it was not waiting.
    pub(super) fn entry(&mut self, scope: &FeedScope) -> &mut Unfinished {
        self.entry_since(scope, Instant::now())
    }

    /// The scope's entry, made with `since` if it was not waiting.
    fn entry_since(&mut self, scope: &FeedScope, since: Instant) -> &mut Unfinished {
        if !self.scopes.contains_key(scope) {
            let queue = self.queue_of(scope);
            queue.insert((since, scope.clone()));
        }
        self.scopes
            .entry(scope.clone())
            .or_insert_with(|| Unfinished::new(since))
    }

    /// The queue the scope waits in: an author's or a tag's feeds wait in one of their own.
    fn queue_of(&mut self, scope: &FeedScope) -> &mut BTreeSet<(Instant, FeedScope)> {
        if scope.name().is_some() {
            &mut self.names
        } else {
            &mut self.sections
        }
    }

    pub(super) fn remove(&mut self, scope: &FeedScope) {
        if let Some(unfinished) = self.scopes.remove(scope) {
            let queue = self.queue_of(scope);
            queue.remove(&(unfinished.since, scope.clone()));
        }
    }

    /// The scope to finish next, first in [`finishing_order`] among those due at `now` (or
    /// among all, when `all`) and not in `done`; an author or tag feed only when `names`.
    pub(super) fn next(
        &self,
        now: Instant,
        busy: bool,
        all: bool,
        names: bool,
        done: &HashSet<FeedScope>,
    ) -> Option<(&FeedScope, &Unfinished)> {
        let queues = if names {
            &[&self.sections, &self.names][..]
        } else {
            &[&self.sections][..]
        };
        queues
            .iter()
            .filter_map(|queue| self.first_in(queue, now, busy, all, done))
            .min_by_key(|(scope, unfinished)| finishing_order(scope, unfinished.since))
    }

    /// The first scope of `queue` due at `now` (any, when `all`) and not in `done`.
    fn first_in<'a>(
        &'a self,
        queue: &'a BTreeSet<(Instant, FeedScope)>,
        now: Instant,
        busy: bool,
        all: bool,
        done: &HashSet<FeedScope>,
    ) -> Option<(&'a FeedScope, &'a Unfinished)> {
        for (since, scope) in queue {
            // The queue is in `since` order: those after are settled later still.
            if !all && settled_at(*since, busy, scope) > now {
                return None;
            }
            if done.contains(scope) {
                continue;
            }
            let unfinished = &self.scopes[scope];
            if all || unfinished.due_at(busy, scope) <= now {
                return Some((scope, unfinished));
            }
        }
        None
    }

    /// When the next scope is due: `None` when none is waiting.
    pub(super) fn next_due(&self, busy: bool) -> Option<Instant> {
        let first = |queue: &BTreeSet<(Instant, FeedScope)>| {
            let mut due: Option<Instant> = None;
            for (since, scope) in queue {
                // Those after are settled no earlier: only one waiting for a retry can be
                // passed over.
                if due.is_some_and(|due| settled_at(*since, busy, scope) >= due) {
                    break;
                }
                let at = self.scopes[scope].due_at(busy, scope);
                due = Some(due.map_or(at, |due| due.min(at)));
            }
            due
        };
        [first(&self.sections), first(&self.names)]
            .into_iter()
            .flatten()
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SectionSlug;

    fn politics() -> FeedScope {
        FeedScope::Section(SectionSlug::parse("politics").unwrap())
    }

    /// The scopes `next` gives, one after another, each marked done.
    fn in_order(scopes: &UnfinishedScopes, now: Instant, busy: bool, all: bool) -> Vec<FeedScope> {
        let mut done = HashSet::new();
        while let Some((scope, _)) = scopes.next(now, busy, all, true, &done) {
            done.insert(scope.clone());
        }
        let mut order: Vec<(Instant, FeedScope)> = Vec::new();
        for scope in done {
            let since = scopes.get(&scope).unwrap().since;
            order.push((finishing_order(&scope, since), scope));
        }
        order.sort();
        order.into_iter().map(|(_, scope)| scope).collect()
    }

    #[test]
    fn name_feeds_are_finished_a_minute_behind_the_sections() {
        let now = Instant::now() + Duration::from_secs(3_600);
        let ago = |seconds: u64| now - Duration::from_secs(seconds);
        let mut scopes = UnfinishedScopes::default();
        for (scope, since) in [
            (FeedScope::author("刘磊"), ago(300)),
            (FeedScope::tag("乡村振兴"), ago(20)),
            (politics(), ago(1)),
            (FeedScope::All, ago(239)),
            (FeedScope::tag("基准测试"), ago(90)),
            (FeedScope::author("张智宙"), ago(62)),
        ] {
            scopes.entry_since(&scope, since);
        }
        let expected = [
            // Changed 300 s ago: as if 240 s ago, before `all` at 239 s.
            FeedScope::author("刘磊"),
            FeedScope::All,
            FeedScope::tag("基准测试"),
            FeedScope::author("张智宙"),
            politics(),
            FeedScope::tag("乡村振兴"),
        ];
        // One at a time, as the finisher takes them.
        let mut done = HashSet::new();
        let mut taken = Vec::new();
        while let Some((scope, _)) = scopes.next(now, false, false, true, &done) {
            done.insert(scope.clone());
            taken.push(scope.clone());
        }
        assert_eq!(taken, expected);
        assert_eq!(in_order(&scopes, now, false, true), expected);
        assert_eq!(scopes.next_due(false), Some(ago(300)));
        for scope in &expected {
            scopes.remove(scope);
        }
        assert!(scopes.is_empty());
        assert_eq!(scopes.next_due(false), None);
        assert!(scopes.sections.is_empty() && scopes.names.is_empty());
    }

    #[test]
    fn during_a_burst_sections_are_finished_before_author_and_tag_feeds() {
        let unfinished = Unfinished::new(Instant::now());
        let since = unfinished.since;
        let named = FeedScope::tag("基准测试");
        let author = FeedScope::author("刘磊");
        for scope in [FeedScope::All, politics(), named.clone(), author.clone()] {
            assert_eq!(unfinished.due_at(false, &scope), since, "at once when calm");
        }
        let section = unfinished.due_at(true, &politics());
        assert_eq!(unfinished.due_at(true, &FeedScope::All), section);
        assert!(section > since);
        assert!(unfinished.due_at(true, &named) >= section + Duration::from_secs(4));
        assert_eq!(
            unfinished.due_at(true, &author),
            unfinished.due_at(true, &named)
        );
    }

    #[test]
    fn only_scopes_due_are_taken_and_the_next_due_is_known() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut scopes = UnfinishedScopes::default();
        let tag = FeedScope::tag("乡村振兴");
        scopes.entry_since(&tag, at(0));
        scopes.entry_since(&politics(), at(100));
        scopes.entry_since(&FeedScope::All, at(200));
        let none = HashSet::new();
        // In a burst a section settles half a second after its change, a tag five.
        assert!(scopes.next(at(599), true, false, true, &none).is_none());
        assert_eq!(scopes.next_due(true), Some(at(600)));
        let (first, _) = scopes.next(at(600), true, false, true, &none).unwrap();
        assert_eq!(first, &politics());
        assert_eq!(
            in_order(&scopes, at(700), true, false),
            [politics(), FeedScope::All]
        );
        assert_eq!(
            in_order(&scopes, at(5_000), true, false),
            [politics(), FeedScope::All, tag.clone()],
        );
        // A section whose files could not be written waits for its retry; the one behind it
        // in the queue does not wait for it.
        scopes.get_mut(&politics()).unwrap().retry_at = Some(at(10_000));
        assert_eq!(scopes.next_due(false), Some(at(0)));
        scopes.remove(&tag);
        assert_eq!(scopes.next_due(false), Some(at(200)));
        assert_eq!(in_order(&scopes, at(300), false, false), [FeedScope::All]);
        scopes.remove(&FeedScope::All);
        assert_eq!(scopes.next_due(false), Some(at(10_000)));
        assert!(scopes.next(at(9_999), false, false, true, &none).is_none());
        // At shutdown every scope is finished, due or not.
        assert_eq!(in_order(&scopes, at(0), false, true), [politics()]);
        // Once author and tag feeds are no longer taken, only sections are.
        scopes.entry_since(&tag, at(0));
        assert_eq!(
            scopes
                .next(at(20_000), false, true, false, &none)
                .map(|(s, _)| s),
            Some(&politics())
        );
        let politics_done = HashSet::from([politics()]);
        assert!(
            scopes
                .next(at(20_000), false, true, false, &politics_done)
                .is_none()
        );
        assert_eq!(
            scopes
                .next(at(20_000), false, true, true, &politics_done)
                .map(|(s, _)| s),
            Some(&tag)
        );
        scopes.remove(&tag);
        // An entry made again keeps its place.
        let again = scopes.entry(&politics());
        again.generation += 1;
        assert_eq!(scopes.get(&politics()).unwrap().since, at(100));
        assert_eq!(scopes.sections.len(), 1);
    }
}
