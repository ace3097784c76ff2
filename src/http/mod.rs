//! The HTTP side: feeds with conditional GET, the index page, and health.

mod feeds;
mod index;

use crate::config::Settings;
use crate::publication::Publication;
use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;

/// The HTTP routes: `/`, `/healthz` and `/feeds/{path}` (GET and HEAD; other methods 405).
pub fn router(publication: Publication, settings: &Settings) -> Router {
    let index_page = Bytes::from(index::render(settings));
    Router::new()
        .route("/", get(move || async move { Html(index_page.clone()) }))
        .route("/healthz", get(healthz))
        .route("/feeds/{*path}", get(feeds::serve_feed))
        .with_state(publication)
        .fallback(not_found)
}

async fn healthz() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], "ok\n")
}

async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, "not found\n")
}
