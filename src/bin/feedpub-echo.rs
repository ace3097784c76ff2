//! feedpub-echo: the ceiling of the Ingest benchmark (see BENCHMARKS.md). It serves the same
//! PublisherService over tonic with the same server and runtime settings as `feedpub serve`,
//! and answers every PublishArticle at once with the article it was sent: no validation,
//! no storage. Whatever feedpub's ingest costs on top of this is feedpub's own.
//!
//! Usage: `feedpub-echo [ADDR]` (default `127.0.0.1:0`); it prints
//! `gRPC API listening on ADDR` on stderr once it accepts connections, and stops on SIGTERM
//! or Ctrl-C.

use feedpub::cli::GRPC_LISTENING;
use feedpub::grpc::proto::publisher_service_server::{PublisherService, PublisherServiceServer};
use feedpub::grpc::proto::{
    Article, GetArticleRequest, ListArticleVersionsRequest, ListArticleVersionsResponse,
    ListArticlesRequest, ListArticlesResponse, ListSectionsRequest, ListSectionsResponse,
    PublishArticleRequest, PublishArticleResponse, PublishArticlesRequest, PublishArticlesResponse,
    RetractArticleRequest, WatchArticlesRequest, WatchArticlesResponse,
};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

/// Answers PublishArticle with its own article; every other RPC is unimplemented.
struct Echo;

#[tonic::async_trait]
impl PublisherService for Echo {
    async fn publish_article(
        &self,
        request: Request<PublishArticleRequest>,
    ) -> Result<Response<PublishArticleResponse>, Status> {
        Ok(Response::new(PublishArticleResponse {
            article: request.into_inner().article,
            warnings: Vec::new(),
        }))
    }

    async fn get_article(
        &self,
        _: Request<GetArticleRequest>,
    ) -> Result<Response<Article>, Status> {
        Err(unimplemented())
    }

    async fn list_articles(
        &self,
        _: Request<ListArticlesRequest>,
    ) -> Result<Response<ListArticlesResponse>, Status> {
        Err(unimplemented())
    }

    async fn retract_article(
        &self,
        _: Request<RetractArticleRequest>,
    ) -> Result<Response<Article>, Status> {
        Err(unimplemented())
    }

    async fn list_sections(
        &self,
        _: Request<ListSectionsRequest>,
    ) -> Result<Response<ListSectionsResponse>, Status> {
        Err(unimplemented())
    }

    async fn publish_articles(
        &self,
        _: Request<Streaming<PublishArticlesRequest>>,
    ) -> Result<Response<PublishArticlesResponse>, Status> {
        Err(unimplemented())
    }

    async fn list_article_versions(
        &self,
        _: Request<ListArticleVersionsRequest>,
    ) -> Result<Response<ListArticleVersionsResponse>, Status> {
        Err(unimplemented())
    }

    type WatchArticlesStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<WatchArticlesResponse, Status>> + Send>,
    >;

    async fn watch_articles(
        &self,
        _: Request<WatchArticlesRequest>,
    ) -> Result<Response<Self::WatchArticlesStream>, Status> {
        Err(unimplemented())
    }
}

/// The answer of every RPC but PublishArticle.
fn unimplemented() -> Status {
    Status::unimplemented("feedpub-echo only echoes PublishArticle")
}

fn main() -> anyhow::Result<()> {
    let addr: std::net::SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()?;
    // The runtime `feedpub` builds: multi-threaded, one worker per core.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = TcpListener::bind(addr).await?;
            // The line `feedpub serve` logs, so its readers find this address the same way.
            eprintln!("{GRPC_LISTENING}{}", listener.local_addr()?);
            let stop = async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("a SIGTERM handler");
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            };
            // The listener as feedpub's gRPC server (`grpc::serve`) sets it up, TCP_NODELAY
            // included: whatever feedpub's listener does, the ceiling must do too.
            tonic::transport::Server::builder()
                .add_service(PublisherServiceServer::new(Echo))
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    stop,
                )
                .await?;
            Ok(())
        })
}
