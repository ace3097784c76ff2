//! The door of PublisherService: every call is authenticated and held to its partner's rate
//! limit before the service sees it: in memory on a store of its own, in the database on a
//! store replicas share, so that the limit holds across replicas. The service finds the
//! [`Caller`] in the request's extensions.
//!
//! A token is looked up on each call, so that a revoked or rotated token is refused from the
//! next call on; except for PublishArticle, the call partners make most, whose partner may
//! be remembered from an earlier call ([`Publisher::authenticate`]). Its write checks the
//! partner's row in its own transaction, and whatever refuses or fails such a call (the
//! rate limit here, the service or the publish) looks the token up again first, so a token
//! revoked since is refused as such.

use super::auth::bearer_token;
use super::status;
use crate::config::Limits;
use crate::connections::ConnectionInfo;
use crate::domain::{Caller, PartnerId, Token};
use crate::publishing::{PublishError, Publisher};
use crate::storage::CallRate;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::{BoxFuture, Service};
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Code, Status};

/// How long a call waits for the rate limit replicas share before it is held to this
/// replica's own.
const SHARED_LIMIT_WAIT: Duration = Duration::from_secs(2);

/// A service behind the guard.
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    gate: Arc<Gate>,
}

/// What the guard checks calls against.
struct Gate {
    publisher: Publisher,
    /// One token bucket per partner: one abusive partner empties only its own. The only
    /// limit on a store of its own; on a shared store, the fallback when the shared
    /// allowance cannot be read.
    limiter: DefaultKeyedRateLimiter<PartnerId>,
    /// On a store shared by replicas, the limit every replica takes calls from, so that a
    /// partner gets its rate however many replicas it calls.
    shared: Option<CallRate>,
}

impl<S> Guarded<S> {
    /// `inner` behind authentication and the per-partner rate limit of `limits`.
    pub fn new(inner: S, publisher: Publisher, limits: &Limits) -> Self {
        let quota = Quota::per_second(limits.requests_per_second).allow_burst(limits.burst);
        let shared = publisher.shares_call_rates().then_some(CallRate {
            per_second: limits.requests_per_second,
            burst: limits.burst,
        });
        Self {
            inner,
            gate: Arc::new(Gate {
                publisher,
                limiter: RateLimiter::keyed(quota),
                shared,
            }),
        }
    }
}

impl Gate {
    /// The caller of an admitted request, or the status that refuses it.
    async fn admit(
        &self,
        token: Result<Token, PublishError>,
        connection: Option<&ConnectionInfo<TcpConnectInfo>>,
        remember: bool,
    ) -> Result<Caller, Status> {
        let token = token?;
        let proving = connection.and_then(ConnectionInfo::proving);
        let (partner, remembered) = match self.publisher.authenticate(&token, remember).await {
            Ok(found) => found,
            Err(refused) => {
                if let Some(proving) = proving {
                    proving.refused();
                }
                return Err(refused.into());
            }
        };
        // A partner's connection, even over its rate limit: over the cap, it keeps its
        // place.
        if let Some(connection) = connection {
            connection.prove();
        }
        drop(proving);
        let peer = connection.and_then(|c| c.inner.remote_addr());
        let caller = Caller {
            partner,
            peer,
            remembered,
            token: Some(token.hash()),
        };
        if let Some(wait) = self.over_limit(caller.partner.id).await {
            // A token revoked since it was remembered is refused as such.
            let caller = self.publisher.confirm(&caller).await?;
            metrics::counter!("feedpub_grpc_rate_limited_total").increment(1);
            return Err(status::rate_limited(&caller.partner.name, wait));
        }
        Ok(caller)
    }

    /// How long `partner` must wait before its next call, when this one is over its limit.
    /// The limit replicas share is waited for [`SHARED_LIMIT_WAIT`] at most: a database out
    /// of reach (or a pool whose connections are all busy) would otherwise hold every call
    /// for the pool's whole wait before the call itself waits for one again, past the
    /// request timeout.
    async fn over_limit(&self, partner: PartnerId) -> Option<Duration> {
        if let Some(rate) = self.shared {
            let taken = tokio::time::timeout(
                SHARED_LIMIT_WAIT,
                self.publisher.take_shared_call(partner, rate),
            )
            .await;
            match taken {
                Ok(Ok(wait)) => return wait,
                Ok(Err(e)) => {
                    // The database is unreachable: hold the limit per replica meanwhile.
                    tracing::warn!(error = %e, "cannot take a call from the shared rate limit");
                }
                Err(_) => tracing::warn!(
                    "no answer from the shared rate limit within {} s; holding the limit per replica",
                    SHARED_LIMIT_WAIT.as_secs()
                ),
            }
        }
        self.limiter
            .check_key(&partner)
            .err()
            .map(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// The path of PublishArticle, the one call whose partner may be remembered.
static PUBLISH_ARTICLE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "/{}/PublishArticle",
        super::proto::publisher_service_server::SERVICE_NAME
    )
});

/// What the call knows of its connection, over plain TCP or TLS.
fn connection(request: &Request<Body>) -> Option<ConnectionInfo<TcpConnectInfo>> {
    let extensions = request.extensions();
    extensions
        .get::<ConnectionInfo<TcpConnectInfo>>()
        .cloned()
        .or_else(|| {
            extensions
                .get::<ConnectionInfo<TlsConnectInfo<TcpConnectInfo>>>()
                .map(|tls| tls.map(|inner| inner.get_ref().clone()))
        })
}

impl<S> Service<Request<Body>> for Guarded<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this call; a fresh one waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gate = self.gate.clone();
        let token = bearer_token(request.headers());
        let connection = connection(&request);
        let remember = request.uri().path() == *PUBLISH_ARTICLE;
        Box::pin(async move {
            let caller = match gate.admit(token, connection.as_ref(), remember).await {
                Ok(caller) => caller,
                Err(status) => return Ok(status.into_http()),
            };
            request.extensions_mut().insert(caller);
            inner.call(request).await.map(status::of_unread_request)
        })
    }
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

/// The caller the guard admitted; UNAUTHENTICATED when the service runs unguarded.
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::new(Code::Unauthenticated, "the call was not authenticated"))
}
