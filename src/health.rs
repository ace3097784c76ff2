//! Faults the service survives but operators must see (a full disk, say): each is logged
//! when it starts and ends, exported as `feedpub_fault{component}` and shown by `/healthz`.

use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;

/// A part of the service that can fail while the rest keeps serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    /// Durable writes: publishing and retracting fail, nothing is acknowledged.
    Storage,
    /// Feed regeneration: the feeds are served from memory while their files cannot be
    /// written (or, when the store cannot be read, as they last were).
    Feeds,
    /// Copying SQLite's write-ahead log into the database: writes still succeed, durable
    /// in the log, but the log grows with each of them (and reads slow) until copying
    /// works again.
    Wal,
    /// Following a shared PostgreSQL database: the newest event of the other replicas
    /// cannot be read, so this replica's feeds may lag their writes (and its own calls
    /// fail or wait while the database is out of reach).
    Replication,
}

impl Component {
    /// Every component, in the order `/healthz` lists them.
    pub const ALL: [Component; 4] = [
        Component::Storage,
        Component::Feeds,
        Component::Wal,
        Component::Replication,
    ];

    /// The name used in logs, metrics and `/healthz`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Storage => "storage",
            Self::Feeds => "feeds",
            Self::Wal => "wal",
            Self::Replication => "replication",
        }
    }
}

/// The faults present now. Cheap to clone; clones share the same state, and
/// [`Health::subscribe`] tells of each change.
#[derive(Debug, Clone)]
pub struct Health {
    faults: Arc<watch::Sender<BTreeMap<Component, String>>>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// No fault; the gauge of every component is exported as 0 from the start.
    pub fn new() -> Self {
        for component in Component::ALL {
            metrics::gauge!("feedpub_fault", "component" => component.label()).set(0.0);
        }
        Self {
            faults: Arc::new(watch::Sender::new(BTreeMap::new())),
        }
    }

    /// Records that `component` is failing, with what the last failure said.
    pub fn fault(&self, component: Component, message: impl std::fmt::Display) {
        let message = message.to_string();
        let mut started = false;
        self.faults.send_if_modified(|faults| {
            let previous = faults.insert(component, message.clone());
            started = previous.is_none();
            previous.as_ref() != Some(&message)
        });
        if started {
            metrics::gauge!("feedpub_fault", "component" => component.label()).set(1.0);
            tracing::error!(
                component = component.label(),
                error = %message,
                "fault: {} failing; the feeds stay served",
                component.label()
            );
        }
    }

    /// Records that `component` works again.
    pub fn recovered(&self, component: Component) {
        if self
            .faults
            .send_if_modified(|faults| faults.remove(&component).is_some())
        {
            metrics::gauge!("feedpub_fault", "component" => component.label()).set(0.0);
            tracing::info!(
                component = component.label(),
                "recovered: {} works again",
                component.label()
            );
        }
    }

    /// The failing components and what their last failure said.
    pub fn faults(&self) -> Vec<(Component, String)> {
        self.faults
            .borrow()
            .iter()
            .map(|(component, message)| (*component, message.clone()))
            .collect()
    }

    /// A receiver told of every change of the faults (a fault starting, ending, or its
    /// message changing).
    pub fn subscribe(&self) -> watch::Receiver<BTreeMap<Component, String>> {
        self.faults.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_lasts_until_its_component_recovers() {
        let health = Health::new();
        assert!(health.faults().is_empty());
        health.fault(
            Component::Feeds,
            "cannot write all/rss.xml: No space left on device",
        );
        health.fault(
            Component::Feeds,
            "cannot write politics/rss.xml: No space left",
        );
        health.fault(Component::Storage, "database or disk is full");
        let faults = health.faults();
        assert_eq!(faults.len(), 2);
        assert_eq!(faults[0].0, Component::Storage);
        assert!(
            faults[1].1.contains("politics"),
            "the latest message is kept"
        );
        health.recovered(Component::Storage);
        assert_eq!(health.clone().faults().len(), 1, "clones share the state");
        health.recovered(Component::Feeds);
        assert!(health.faults().is_empty());
    }

    #[test]
    fn subscribers_are_told_of_changes_only() {
        let health = Health::new();
        let mut changes = health.subscribe();
        assert!(!changes.has_changed().unwrap());
        health.recovered(Component::Storage);
        assert!(!changes.has_changed().unwrap(), "nothing was failing");
        health.fault(Component::Storage, "database or disk is full");
        assert!(changes.has_changed().unwrap());
        assert!(
            changes
                .borrow_and_update()
                .contains_key(&Component::Storage)
        );
        health.fault(Component::Storage, "database or disk is full");
        assert!(!changes.has_changed().unwrap(), "the same fault again");
        health.fault(Component::Storage, "disk I/O error");
        assert!(changes.has_changed().unwrap(), "a new message");
        changes.borrow_and_update();
        health.recovered(Component::Storage);
        assert!(changes.has_changed().unwrap());
        assert!(changes.borrow_and_update().is_empty());
    }
}
