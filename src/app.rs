//! The running service: storage, publication, gRPC and HTTP listeners, and clean shutdown.

use crate::config::Settings;
use crate::health::Health;
use crate::publication::{FeedsFolder, Publication, PublicationError, Scheduler};
use crate::publishing::{PublishError, Publisher};
use crate::storage::{Store, StoreError};
use crate::tls::{TlsError, TlsIdentity};
use crate::websub::{Hub, HubTasks, WebSubError};
use crate::{demo, grpc, http};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long, at shutdown, the follower of other processes' writes may take its last look
/// at them before the feeds are built and written without it.
const LAST_LOOK: std::time::Duration = std::time::Duration::from_secs(5);

/// Why the service could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// `location` names the database (the URL without its password, or the data
    /// folder), unless the error names its file already.
    #[error("cannot open the store{location}")]
    Store {
        location: String,
        source: StoreError,
    },
    #[error("cannot log the embargoes that ended while no server ran")]
    Embargoes(#[source] StoreError),
    #[error("cannot build the feeds")]
    Publication(#[from] PublicationError),
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error(transparent)]
    Grpc(#[from] grpc::GrpcError),
    #[error("cannot publish the sample edition")]
    Demo(#[from] PublishError),
    #[error("cannot start the WebSub hub")]
    WebSub(#[from] WebSubError),
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
    // The cause in the message and not as a source, so that it is said once in a chain.
    #[error("cannot set up TLS: {0}")]
    Tls(TlsError),
    #[error(
        "another feedpub serve is running on the data folder {:?}: stop it first (to run \
         several servers on one database, give them a PostgreSQL database_url)",
        .0
    )]
    DataFolderInUse(std::path::PathBuf),
    #[error("cannot lock the data folder {path:?}: {error}")]
    Lock {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error(
        "another feedpub serve is writing the feeds folder {:?}: give each server a feeds \
         folder of its own (feeds_dir, --feeds-dir or FEEDPUB_FEEDS_DIR)",
        .0
    )]
    FeedsFolderInUse(std::path::PathBuf),
    #[error("cannot lock the feeds folder {path:?}: {error}")]
    FeedsLock {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error(
        "the feeds folder {feeds:?} and the data folder {data:?} are one folder or one holds \
         the other: what is under the feeds folder is published as it is (served, synced to \
         a bucket), and would carry the database with it; give them folders apart"
    )]
    FoldersOverlap {
        feeds: std::path::PathBuf,
        data: std::path::PathBuf,
    },
}

/// A built service with its listeners bound, ready to run.
pub struct Application {
    settings: Arc<Settings>,
    store: Arc<dyn Store>,
    publisher: Publisher,
    publication: Publication,
    scheduler: Scheduler,
    websub: Hub,
    websub_tasks: HubTasks,
    health: Health,
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    /// Certificate and key both listeners present, when TLS is configured.
    tls: Option<TlsIdentity>,
    /// The newest event the feeds built at start show.
    seen_events: u64,
    /// Held while this server runs on a SQLite data folder (see [`lock_data_folder`]).
    _data_folder: Option<std::fs::File>,
}

/// Takes the data folder of a SQLite store for this server, refused while another server
/// holds it: a second server on the same file would build its feeds from writes the first
/// never tells it of, and take over the WebSub deliveries the first is making. (Replicas
/// share a PostgreSQL database instead, which needs no lock.) Of the operator commands,
/// only `import` takes it (a server would not show what it imports); the others work
/// beside a running server.
pub fn lock_data_folder(server: &crate::config::Server) -> Result<Option<std::fs::File>, AppError> {
    if server.database_url.is_some() {
        return Ok(None);
    }
    let path = &server.data_dir;
    let lock_error = |error| AppError::Lock {
        path: path.clone(),
        error,
    };
    crate::storage::create_data_folder(path).map_err(lock_error)?;
    match crate::locks::lock_folder(path).map_err(lock_error)? {
        Some(folder) => Ok(Some(folder)),
        None => Err(AppError::DataFolderInUse(path.clone())),
    }
}

/// Takes the feeds folder for this server, refused while another server writes it: a
/// second server (on another data folder, or another database) would replace the first's
/// files with its own feeds, and remove the author and tag feeds it does not have, while
/// the first goes on serving its own from memory. Refused too when the feeds folder and a
/// SQLite data folder are one, or one holds the other. Locked as the data folder is, and
/// kept locked by the publication (see [`FeedsFolder`]).
pub fn lock_feeds_folder(server: &crate::config::Server) -> Result<FeedsFolder, AppError> {
    let path = &server.feeds_dir;
    let lock_error = |error| AppError::FeedsLock {
        path: path.clone(),
        error,
    };
    let existed = path.exists();
    std::fs::create_dir_all(path).map_err(lock_error)?;
    if server.database_url.is_none() {
        let data = std::fs::canonicalize(&server.data_dir).map_err(lock_error)?;
        let feeds = std::fs::canonicalize(path).map_err(lock_error)?;
        if data.starts_with(&feeds) || feeds.starts_with(&data) {
            if !existed {
                // Made just now to be compared: left as it was found.
                let _ = std::fs::remove_dir(path);
            }
            return Err(AppError::FoldersOverlap {
                feeds: path.clone(),
                data: server.data_dir.clone(),
            });
        }
    }
    FeedsFolder::lock(path)
        .map_err(lock_error)?
        .ok_or_else(|| AppError::FeedsFolderInUse(path.clone()))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| AppError::Bind { addr, error })
}

impl Application {
    /// Opens the store, builds the feeds of `all` and the sections (the scheduler builds the
    /// author and tag feeds once serving) and binds both listeners (port 0 picks a free port).
    pub async fn build(settings: Settings) -> Result<Self, AppError> {
        // Metrics are recorded from the first request on.
        crate::telemetry::metrics();
        let settings = Arc::new(settings);
        // A bad certificate stops start-up before anything is opened.
        let tls = settings
            .server
            .tls
            .as_ref()
            .map(TlsIdentity::load)
            .transpose()
            .map_err(AppError::Tls)?;
        let data_folder = lock_data_folder(&settings.server)?;
        let feeds_folder = lock_feeds_folder(&settings.server)?;
        let store: Arc<dyn Store> =
            crate::storage::open(&settings.server)
                .await
                .map_err(|source| AppError::Store {
                    location: if source.names_a_path() {
                        String::new()
                    } else {
                        format!(" in {}", crate::storage::location(&settings.server))
                    },
                    source,
                })?;
        // Which store: a replica started without its database URL runs on a SQLite store of
        // its own, and an operator must be able to tell.
        tracing::info!(
            backend = if settings.server.database_url.is_some() { "postgresql" } else { "sqlite" },
            at = %crate::storage::location(&settings.server),
            "store opened"
        );
        // Embargoes that ended while the server was down are logged before any new write.
        store
            .lift_embargoes(chrono::Utc::now())
            .await
            .map_err(AppError::Embargoes)?;
        let health = Health::new();
        store.report_faults_to(&health);
        // Feeds built from here on show every event up to this one.
        let seen_events = *store.event_head().borrow();
        let (publication, scheduler) = Publication::start(
            store.clone(),
            settings.clone(),
            health.clone(),
            feeds_folder,
        )
        .await?;
        let publisher = Publisher::new(
            store.clone(),
            settings.clone(),
            publication.clone(),
            health.clone(),
        );
        let (websub, websub_tasks) = Hub::start(store.clone(), &settings, publication.clone())?;
        let grpc_listener = bind(settings.server.grpc_addr).await?;
        let http_listener = bind(settings.server.http_addr).await?;
        Ok(Self {
            settings,
            store,
            publisher,
            publication,
            scheduler,
            websub,
            websub_tasks,
            health,
            grpc_listener,
            http_listener,
            tls,
            seen_events,
            _data_folder: data_folder,
        })
    }

    /// The address the gRPC API listens on.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The address the HTTP server listens on.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Whether both listeners take TLS.
    pub fn serves_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The WebSub hub (its delivery counters, for instance).
    pub fn websub(&self) -> &Hub {
        &self.websub
    }

    /// The feeds as currently published.
    pub fn publication(&self) -> &Publication {
        &self.publication
    }

    /// The faults present now, as `/healthz` and the gRPC health service report them.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Publishes the sample edition through the same use-case as the API; returns how many
    /// articles changed.
    pub async fn publish_demo(&self) -> Result<usize, AppError> {
        Ok(
            demo::publish_sample_edition(&self.publisher, self.store.as_ref(), &self.settings)
                .await?,
        )
    }

    /// Serves until `shutdown` completes (or a server fails), then drains in-flight
    /// requests, stops regeneration and the WebSub hub, and closes the store.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), AppError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        // The feeds stop last of what changes them: once every call is answered and the
        // writes of other processes are followed, so that their files show every change
        // acknowledged (see `feeds_stop` below).
        let (feeds_stop_tx, feeds_stop_rx) = watch::channel(false);
        let scheduler = tokio::spawn(self.scheduler.run(feeds_stop_rx));
        // The hub stops after the scheduler, which announces the changes it writes at
        // shutdown: their deliveries are recorded, for the next start to make.
        let (hub_stop_tx, hub_stop_rx) = watch::channel(false);
        let websub = tokio::spawn(self.websub_tasks.run(hub_stop_rx));
        let upkeep = tokio::spawn(self.publisher.upkeep().run(stop_rx.clone()));
        let heap = tokio::spawn(crate::heap::trim_until(stop_rx.clone()));
        // Other replicas' writes, on a shared database; on a store of its own, those of
        // operators' commands run beside the server.
        let replicas = if self.store.is_shared() {
            tokio::spawn(crate::publication::replicas::follow(
                self.store.clone(),
                self.publication.clone(),
                self.seen_events,
                stop_rx.clone(),
            ))
        } else {
            tokio::spawn(crate::publication::replicas::follow_announced(
                self.store.clone(),
                self.publication.clone(),
                self.seen_events,
                stop_rx.clone(),
            ))
        };

        let stop = async {
            tokio::select! {
                () = shutdown => tracing::info!("shutting down"),
                () = stopped(stop_rx.clone()) => {}
            }
            let _ = stop_tx.send(true);
        };
        // Watch streams never end by themselves: end them so the gRPC server can drain.
        let end_watches = async {
            stopped(stop_rx.clone()).await;
            self.publisher.stop_watching();
        };
        let (answered_tx, answered_rx) = watch::channel(false);
        let grpc = async {
            let result = grpc::serve(
                self.grpc_listener,
                self.publisher.clone(),
                &self.settings.limits,
                self.tls.as_ref(),
                stopped(stop_rx.clone()),
            )
            .await;
            let _ = stop_tx.send(true);
            let _ = answered_tx.send(true);
            result
        };
        let feeds_stop = async {
            stopped(answered_rx).await;
            // The follower takes a last look as it stops, for `LAST_LOOK` at most (a
            // database that just went out of reach makes each read wait for a connection).
            let mut replicas = replicas;
            if tokio::time::timeout(LAST_LOOK, &mut replicas)
                .await
                .is_err()
            {
                replicas.abort();
            }
            let _ = feeds_stop_tx.send(true);
        };
        let http = async {
            let result = http::serve(
                self.http_listener,
                self.publication.clone(),
                &self.settings,
                &self.websub,
                self.health.clone(),
                self.tls.as_ref(),
                stopped(stop_rx.clone()),
            )
            .await;
            let _ = stop_tx.send(true);
            result
        };
        let ((), (), grpc, http, ()) = tokio::join!(stop, end_watches, grpc, http, feeds_stop);
        let _ = scheduler.await;
        let _ = hub_stop_tx.send(true);
        let _ = upkeep.await;
        let _ = heap.await;
        // Verifications and deliveries in progress stop before the store closes (within
        // bounds of the hub's own, `websub::AT_EXIT`).
        let _ = websub.await;
        self.store.close().await;
        grpc?;
        http.map_err(AppError::Http)?;
        Ok(())
    }
}
