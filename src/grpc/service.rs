//! PublisherService: take the caller the guard admitted, convert, call a use-case, convert
//! back.

use super::auth::bearer_token;
use super::convert;
use super::guard::caller;
use super::proto::publisher_service_server::{PublisherService, PublisherServiceServer};
use super::proto::{
    Article, GetArticleRequest, ListArticleVersionsRequest, ListArticleVersionsResponse,
    ListArticlesRequest, ListArticlesResponse, ListSectionsRequest, ListSectionsResponse,
    PublishArticleRequest, PublishArticleResponse, PublishArticlesRequest, PublishArticlesResponse,
    RetractArticleRequest, WatchArticlesRequest, WatchArticlesResponse,
};
use super::status;
use crate::domain::{Partner, Violations};
use crate::publishing::{PublishError, Publisher};
use std::pin::Pin;
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};

/// The gRPC adapter over the publishing use-cases.
#[derive(Clone)]
pub struct PublisherApi {
    publisher: Publisher,
}

impl PublisherApi {
    /// An adapter over `publisher`.
    pub fn new(publisher: Publisher) -> Self {
        Self { publisher }
    }

    /// The tonic service to mount on a server.
    pub fn into_server(self) -> PublisherServiceServer<Self> {
        PublisherServiceServer::new(self)
    }

    async fn partner<T>(&self, request: &Request<T>) -> Result<Partner, Status> {
        Ok(caller(request)?.partner)
    }
}

#[tonic::async_trait]
impl PublisherService for PublisherApi {
    async fn publish_article(
        &self,
        request: Request<PublishArticleRequest>,
    ) -> Result<Response<PublishArticleResponse>, Status> {
        let caller = caller(&request)?;
        let request = match convert::publish_request(request.into_inner()) {
            Ok(request) => request,
            Err(e) => {
                // A remembered partner's token may have been revoked since: refused as such.
                self.publisher.confirm(&caller).await?;
                return Err(PublishError::from(e).into());
            }
        };
        let published = self.publisher.publish(&caller, request).await?;
        Ok(Response::new(PublishArticleResponse {
            article: Some(convert::article_to_proto(&published.article)),
            warnings: published.warnings,
        }))
    }

    async fn publish_articles(
        &self,
        request: Request<Streaming<PublishArticlesRequest>>,
    ) -> Result<Response<PublishArticlesResponse>, Status> {
        let caller = caller(&request)?;
        let client_deadline = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(convert::grpc_timeout);
        let mut stream = request.into_inner();
        let mut batch = self.publisher.batch(&caller);
        let mut ids = Vec::new();
        // A message that cannot be read, or one article too many, ends the call with an
        // error; every article before it is handled all the same, and the error says how
        // many those were.
        let mut failure = None;
        // Ended before the server's request timeout or the client's deadline would cancel
        // the call, so that the client learns what became of its articles.
        let within = self.publisher.stream_deadline(client_deadline);
        let deadline = tokio::time::Instant::now() + within;
        let timed_out = || tokio::time::Instant::now() >= deadline;
        'stream: loop {
            // A message already received would be handed over however late (the timeout
            // looks at the stream first), and its articles take time to handle: the
            // deadline is looked at before each of them too.
            if timed_out() {
                // Past the deadline, only the end of a stream already received is taken: a
                // client that sent everything gets its results.
                match tokio::time::timeout(std::time::Duration::ZERO, stream.message()).await {
                    Ok(Ok(None)) => {}
                    Ok(Err(status)) => failure = Some(status::of_request_stream(status)),
                    Ok(Ok(Some(_))) | Err(_) => failure = Some(status::stream_timed_out(within)),
                }
                break;
            }
            let message = match tokio::time::timeout_at(deadline, stream.message()).await {
                Ok(Ok(Some(message))) => message,
                Ok(Ok(None)) => break,
                Ok(Err(status)) => {
                    failure = Some(status::of_request_stream(status));
                    break;
                }
                Err(_) => {
                    failure = Some(status::stream_timed_out(within));
                    break;
                }
            };
            for item in message.requests {
                if timed_out() {
                    failure = Some(status::stream_timed_out(within));
                    break 'stream;
                }
                ids.push(
                    item.article
                        .as_ref()
                        .map(|a| a.id.clone())
                        .unwrap_or_default(),
                );
                let pushed = batch
                    .push(convert::publish_request(item).map_err(PublishError::from))
                    .await;
                if let Err(error) = pushed {
                    ids.pop();
                    failure = Some(Status::from(error));
                    break 'stream;
                }
            }
        }
        let mut results: Vec<_> = batch
            .finish()
            .await
            .into_iter()
            .map(|(index, result)| {
                let id = ids.get(index).cloned().unwrap_or_default();
                convert::publish_result(index, result, id)
            })
            .collect();
        convert::bound_batch_answer(&mut results);
        match failure {
            None => Ok(Response::new(PublishArticlesResponse { results })),
            Some(status) => Err(status::with_handled(status, results.len())),
        }
    }

    async fn get_article(
        &self,
        request: Request<GetArticleRequest>,
    ) -> Result<Response<Article>, Status> {
        let partner = self.partner(&request).await?;
        let req = request.get_ref();
        let (_, version) = Violations::both(
            crate::publishing::parse_id(&req.id),
            convert::version(req.version),
        )
        .map_err(PublishError::from)?;
        let read = self.publisher.get(&partner, &req.id, version).await?;
        Ok(Response::new(convert::read_to_proto(&read)))
    }

    async fn list_article_versions(
        &self,
        request: Request<ListArticleVersionsRequest>,
    ) -> Result<Response<ListArticleVersionsResponse>, Status> {
        let partner = self.partner(&request).await?;
        let req = request.into_inner();
        let ((_, page_size), below) = Violations::both(
            Violations::both(
                crate::publishing::parse_id(&req.id),
                convert::page_size(req.page_size),
            ),
            convert::version_from_page_token(&req.page_token, partner.id, &req.id),
        )
        .map_err(PublishError::from)?;
        let page = self
            .publisher
            .versions(&partner, &req.id, page_size, below)
            .await?;
        Ok(Response::new(ListArticleVersionsResponse {
            versions: page
                .versions
                .iter()
                .map(convert::version_to_proto)
                .collect(),
            next_page_token: page
                .next
                .map(|below| convert::version_page_token(below, partner.id, &req.id))
                .unwrap_or_default(),
        }))
    }

    type WatchArticlesStream =
        Pin<Box<dyn Stream<Item = Result<WatchArticlesResponse, Status>> + Send>>;

    async fn watch_articles(
        &self,
        request: Request<WatchArticlesRequest>,
    ) -> Result<Response<Self::WatchArticlesStream>, Status> {
        let partner = self.partner(&request).await?;
        // The stream checks the token again before each read of the log.
        let token = bearer_token(request.metadata().as_ref())?.hash();
        let req = request.into_inner();
        let cursor = convert::position_from_cursor(&req.cursor);
        let updates = self
            .publisher
            .watch(&partner, token, &req.sections, cursor)
            .await?;
        let stream = ReceiverStream::new(updates).map(|update| {
            let update = update?;
            Ok(WatchArticlesResponse {
                events: update.events.iter().map(convert::event_to_proto).collect(),
                cursor: convert::watch_cursor(update.cursor),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_articles(
        &self,
        request: Request<ListArticlesRequest>,
    ) -> Result<Response<ListArticlesResponse>, Status> {
        let partner = self.partner(&request).await?;
        let req = request.into_inner();
        let listing = convert::Listing {
            partner: partner.id,
            section: &req.section,
        };
        let section = match req.section.as_str() {
            "" => Ok(()),
            raw => (self.publisher.configured_section(raw).map(drop))
                .map_err(|e| Violations::one("section", e)),
        };
        let ((page_size, cursor), ()) = Violations::both(
            Violations::both(
                convert::page_size(req.page_size),
                convert::cursor_from_token(&req.page_token, listing),
            ),
            section,
        )
        .map_err(PublishError::from)?;
        let page = self
            .publisher
            .list(&partner, &req.section, page_size, cursor)
            .await?;
        Ok(Response::new(ListArticlesResponse {
            articles: page
                .articles
                .iter()
                .map(convert::article_to_proto)
                .collect(),
            next_page_token: page
                .next
                .as_ref()
                .map(|cursor| convert::page_token(cursor, listing))
                .unwrap_or_default(),
        }))
    }

    async fn retract_article(
        &self,
        request: Request<RetractArticleRequest>,
    ) -> Result<Response<Article>, Status> {
        let caller = caller(&request)?;
        let request = convert::retract_request(request.into_inner());
        let article = self.publisher.retract(&caller, request).await?;
        Ok(Response::new(convert::article_to_proto(&article)))
    }

    async fn list_sections(
        &self,
        request: Request<ListSectionsRequest>,
    ) -> Result<Response<ListSectionsResponse>, Status> {
        self.partner(&request).await?;
        Ok(Response::new(ListSectionsResponse {
            sections: self
                .publisher
                .sections()
                .iter()
                .map(convert::section_to_proto)
                .collect(),
        }))
    }
}
