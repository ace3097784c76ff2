//! feedpub: publishes news articles, received over gRPC and stored durably, as per-section
//! RSS 2.0, Atom 1.0 and JSON Feed 1.1 feeds served over HTTP.

pub mod app;
pub mod cli;
pub mod config;
pub mod connections;
pub mod demo;
pub mod domain;
pub mod grpc;
pub mod health;
pub mod heap;
pub mod http;
pub mod lines;
pub mod locks;
pub mod partners;
pub mod publication;
pub mod publishing;
pub mod render;
pub mod storage;
pub mod telemetry;
pub mod tls;
pub mod websub;
