//! PublisherService: take the caller the guard admitted, convert, call a use-case, convert
//! back.

use super::convert;
use super::guard::caller;
use super::proto::publisher_service_server::{PublisherService, PublisherServiceServer};
use super::proto::{
    Article, GetArticleRequest, ListArticlesRequest, ListArticlesResponse, ListSectionsRequest,
    ListSectionsResponse, PublishArticleRequest, PublishArticleResponse, RetractArticleRequest,
};
use crate::domain::Partner;
use crate::publishing::{PublishError, Publisher};
use tonic::{Request, Response, Status};

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
        let draft =
            convert::draft_from_proto(request.into_inner().article).map_err(PublishError::from)?;
        let published = self.publisher.publish(&caller, draft).await?;
        Ok(Response::new(PublishArticleResponse {
            article: Some(convert::article_to_proto(&published.article)),
            warnings: published.warnings,
        }))
    }

    async fn get_article(
        &self,
        request: Request<GetArticleRequest>,
    ) -> Result<Response<Article>, Status> {
        let partner = self.partner(&request).await?;
        let article = self.publisher.get(&partner, &request.get_ref().id).await?;
        Ok(Response::new(convert::article_to_proto(&article)))
    }

    async fn list_articles(
        &self,
        request: Request<ListArticlesRequest>,
    ) -> Result<Response<ListArticlesResponse>, Status> {
        let partner = self.partner(&request).await?;
        let req = request.into_inner();
        let section = convert::section_filter(&req.section).map_err(PublishError::from)?;
        let page_size = convert::page_size(req.page_size).map_err(PublishError::from)?;
        let cursor = convert::cursor_from_token(&req.page_token).map_err(PublishError::from)?;
        let page = self
            .publisher
            .list(&partner, section, page_size, cursor)
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
                .map(convert::page_token)
                .unwrap_or_default(),
        }))
    }

    async fn retract_article(
        &self,
        request: Request<RetractArticleRequest>,
    ) -> Result<Response<Article>, Status> {
        let caller = caller(&request)?;
        let req = request.get_ref();
        let article = self
            .publisher
            .retract(&caller, &req.id, &req.reason)
            .await?;
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
