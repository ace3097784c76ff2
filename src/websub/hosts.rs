//! Shares per callback host: deliveries and verifications in progress are capped per host
//! (whatever the port, however its address is written), so that a host that answers slowly
//! on purpose takes no more than its share of the slots every subscriber shares; and the
//! hosts whose last delivery failed, whose deliveries take slots of their own.

use super::callback::address_key;
use super::subscription::Callback;
use crate::locks::lock;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Up to `share` slots per callback host, for the hosts that hold or await one.
pub(super) struct HostShares {
    share: usize,
    hosts: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

/// One host's slot, given back (and the host forgotten once nothing holds or awaits one of
/// its slots) when dropped.
pub(super) struct HostSlot {
    hosts: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
    key: String,
    /// The host's slots; taken when dropped.
    slots: Option<Arc<Semaphore>>,
    permit: Option<OwnedSemaphorePermit>,
}

impl HostShares {
    pub(super) fn new(share: usize) -> Self {
        Self {
            share,
            hosts: Arc::default(),
        }
    }

    /// Waits for a slot of `callback`'s host.
    pub(super) async fn acquire(&self, callback: &Callback) -> HostSlot {
        let mut slot = self.slot(callback);
        let slots = slot.slots.clone().expect("a slot's host until dropped");
        // Never closed: every slot is given back.
        slot.permit = slots.acquire_owned().await.ok();
        slot
    }

    /// A slot of `callback`'s host, if one is free now.
    pub(super) fn try_acquire(&self, callback: &Callback) -> Option<HostSlot> {
        let mut slot = self.slot(callback);
        let slots = slot.slots.clone().expect("a slot's host until dropped");
        slot.permit = Some(slots.try_acquire_owned().ok()?);
        Some(slot)
    }

    /// A claim on the host's slots, holding none of them yet.
    fn slot(&self, callback: &Callback) -> HostSlot {
        let key = host_key(callback);
        let slots = lock(&self.hosts)
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.share)))
            .clone();
        HostSlot {
            hosts: self.hosts.clone(),
            key,
            slots: Some(slots),
            permit: None,
        }
    }
}

impl Drop for HostSlot {
    fn drop(&mut self) {
        let mut hosts = lock(&self.hosts);
        // This slot's references go under the lock, so that of two slots dropped at once
        // the second sees the first's gone.
        drop(self.permit.take());
        drop(self.slots.take());
        // Only the map's reference is left: nobody holds or awaits a slot, and nobody can
        // take a new reference while the map is locked.
        if hosts
            .get(&self.key)
            .is_some_and(|slots| Arc::strong_count(slots) == 1)
        {
            hosts.remove(&self.key);
        }
    }
}

/// The callback hosts whose last delivery failed (a timeout, a connection that failed, an
/// answer other than 2xx or 410), until one succeeds: their deliveries take slots of a
/// smaller pool than the others', so that hosts that hang, however many, hold up the
/// others' deliveries for one request's time at most, not at every retry.
#[derive(Default)]
pub(super) struct FailingHosts {
    hosts: Mutex<HashSet<String>>,
}

impl FailingHosts {
    /// Most hosts remembered; past it every one is forgotten (each is found failing again
    /// at its next delivery).
    const LIMIT: usize = 65_536;

    /// True while `callback`'s host's last delivery failed.
    pub(super) fn is_failing(&self, callback: &Callback) -> bool {
        lock(&self.hosts).contains(&host_key(callback))
    }

    /// Records whether a delivery to `callback`'s host `succeeded`.
    pub(super) fn record(&self, callback: &Callback, succeeded: bool) {
        let key = host_key(callback);
        let mut hosts = lock(&self.hosts);
        let changed = if succeeded {
            hosts.remove(&key)
        } else {
            if hosts.len() >= Self::LIMIT {
                hosts.clear();
            }
            hosts.insert(key)
        };
        if changed {
            metrics::gauge!("feedpub_websub_failing_hosts").set(hosts.len() as f64);
        }
    }

    /// How many hosts are failing.
    pub(super) fn count(&self) -> usize {
        lock(&self.hosts).len()
    }
}

/// What callbacks share slots by: the callback's host, whatever the port, and whichever
/// way its address is written (as [`address_key`] knows an address; a name with its
/// trailing dot is the name). One server reached on several ports or spellings gets the
/// slots of one host. (Several names of one server still get one share each.)
fn host_key(callback: &Callback) -> String {
    match callback.url().host() {
        Some(url::Host::Ipv4(v4)) => address_key(v4.into()),
        Some(url::Host::Ipv6(v6)) => address_key(v6.into()),
        Some(url::Host::Domain(name)) => name.trim_end_matches('.').to_owned(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A host is failing from a failed delivery to any of its callbacks until one to any
    /// of them succeeds; other hosts are not.
    #[test]
    fn a_host_fails_until_a_delivery_to_it_succeeds() {
        let callback = |url: &str| Callback::parse(url).unwrap();
        let hosts = FailingHosts::default();
        assert!(!hosts.is_failing(&callback("http://127.0.0.2:9/a")));
        hosts.record(&callback("http://127.0.0.2:9/a"), false);
        assert!(hosts.is_failing(&callback("http://127.0.0.2:18484/b")));
        assert!(!hosts.is_failing(&callback("http://127.0.0.3:9/a")));
        assert_eq!(hosts.count(), 1);
        hosts.record(&callback("http://127.0.0.2:80/c"), true);
        assert!(!hosts.is_failing(&callback("http://127.0.0.2:9/a")));
        assert_eq!(hosts.count(), 0);
    }

    /// One server reached on several ports or spellings of its address shares the slots of
    /// one host; other hosts have their own.
    #[test]
    fn callbacks_share_slots_by_host_whatever_the_port_or_spelling() {
        let key = |url: &str| host_key(&Callback::parse(url).unwrap());
        for same in [
            "http://127.0.0.2:18484/slow1",
            "http://127.0.0.2:9/slow2",
            "https://127.0.0.2/x",
            "http://[::ffff:127.0.0.2]:18484/slow3",
        ] {
            assert_eq!(key(same), "127.0.0.2", "{same}");
        }
        assert_eq!(
            key("http://[2001:db8::1]:80/a"),
            key("http://[2001:db8::ffff]:8080/b")
        );
        assert_ne!(
            key("http://[2001:db8::1]/"),
            key("http://[2001:db8:0:1::1]/")
        );
        assert_eq!(
            key("https://reader.example./cb"),
            key("http://READER.example:81/")
        );
        assert_ne!(
            key("https://reader.example/"),
            key("https://other.example/")
        );
    }

    /// Two slots of one host dropped at the same moment on two threads: the host is
    /// forgotten all the same.
    #[test]
    fn slots_dropped_at_once_leave_no_entry_behind() {
        let shares = HostShares::new(2);
        let here = Callback::parse("http://127.0.0.2/a").unwrap();
        for _ in 0..20_000 {
            let (a, b) = (
                shares.try_acquire(&here).unwrap(),
                shares.try_acquire(&here).unwrap(),
            );
            let together = std::sync::Barrier::new(2);
            std::thread::scope(|scope| {
                for slot in [a, b] {
                    let together = &together;
                    scope.spawn(move || {
                        together.wait();
                        drop(slot);
                    });
                }
            });
            assert!(lock(&shares.hosts).is_empty());
        }
    }

    /// A host has its share and no more; its slots come back when dropped, and a host no
    /// slot is held or awaited for is forgotten.
    #[tokio::test]
    async fn a_host_has_its_share_and_is_forgotten_when_idle() {
        let shares = HostShares::new(2);
        let here = Callback::parse("http://127.0.0.2/a").unwrap();
        let there = Callback::parse("http://127.0.0.3/a").unwrap();
        let first = shares.try_acquire(&here).unwrap();
        let second = shares.acquire(&here).await;
        assert!(shares.try_acquire(&here).is_none(), "its share is taken");
        let other = shares.try_acquire(&there).unwrap();
        drop(first);
        let third = shares.try_acquire(&here).unwrap();
        drop((second, third, other));
        assert!(lock(&shares.hosts).is_empty());
        // A wait given up on (its delivery superseded, say) leaves nothing behind either.
        let held = shares.try_acquire(&here).unwrap();
        let _second = shares.try_acquire(&here).unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(10), shares.acquire(&here));
        assert!(waiting.await.is_err(), "no slot free");
        drop((held, _second));
        assert!(lock(&shares.hosts).is_empty());
    }
}
