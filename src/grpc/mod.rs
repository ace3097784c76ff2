//! The gRPC API: generated code, the PublisherService adapter, health and reflection.

mod auth;
pub mod convert;
mod service;
mod status;

pub use service::PublisherApi;

use crate::publishing::Publisher;
use std::future::Future;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

/// Code generated from `proto/feedpub/v1/*.proto`.
pub mod proto {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("feedpub.v1");

    /// Encoded descriptors of the API (and its imports), served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/feedpub_descriptor.bin"));
}

/// Why the gRPC server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves PublisherService, `grpc.health.v1` and reflection (v1 and v1alpha) on `listener`
/// until `shutdown` completes, then lets in-flight calls finish.
pub async fn serve(
    listener: TcpListener,
    publisher: Publisher,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), GrpcError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<proto::publisher_service_server::PublisherServiceServer<PublisherApi>>()
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(PublisherApi::new(publisher).into_server())
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await?;
    Ok(())
}
