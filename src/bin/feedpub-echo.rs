//! feedpub-echo: the ceiling of the Ingest benchmark (see BENCHMARKS.md). It serves the same
//! PublisherService over tonic with the same server and runtime settings as `feedpub serve`,
//! and answers every PublishArticle at once with the article it was sent: no validation,
//! no storage. Whatever feedpub's ingest costs on top of this is feedpub's own.
//!
//! Usage: `feedpub-echo [ADDR]` (default `127.0.0.1:0`); it prints
//! `gRPC API listening on ADDR` on stderr once it accepts connections, and stops on SIGTERM
//! or Ctrl-C.

use feedpub::grpc::proto::publisher_service_server::{PublisherService, PublisherServiceServer};
use feedpub::grpc::proto::{
    Article, GetArticleRequest, ListArticlesRequest, ListArticlesResponse, ListSectionsRequest,
    ListSectionsResponse, PublishArticleRequest, PublishArticleResponse, RetractArticleRequest,
};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

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
        Err(Status::unimplemented(
            "feedpub-echo only echoes PublishArticle",
        ))
    }

    async fn list_articles(
        &self,
        _: Request<ListArticlesRequest>,
    ) -> Result<Response<ListArticlesResponse>, Status> {
        Err(Status::unimplemented(
            "feedpub-echo only echoes PublishArticle",
        ))
    }

    async fn retract_article(
        &self,
        _: Request<RetractArticleRequest>,
    ) -> Result<Response<Article>, Status> {
        Err(Status::unimplemented(
            "feedpub-echo only echoes PublishArticle",
        ))
    }

    async fn list_sections(
        &self,
        _: Request<ListSectionsRequest>,
    ) -> Result<Response<ListSectionsResponse>, Status> {
        Err(Status::unimplemented(
            "feedpub-echo only echoes PublishArticle",
        ))
    }
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
            eprintln!("gRPC API listening on {}", listener.local_addr()?);
            let stop = async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("a SIGTERM handler");
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            };
            // The builder and the listener feedpub's gRPC server uses (`grpc::serve`), with
            // their defaults; as there, `TcpIncoming::from` sets no TCP_NODELAY (see
            // BENCHMARKS.md): whatever feedpub's listener does, the ceiling must do too.
            tonic::transport::Server::builder()
                .add_service(PublisherServiceServer::new(Echo))
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), stop)
                .await?;
            Ok(())
        })
}
