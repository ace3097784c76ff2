//! Serving feed documents from the in-memory snapshot, with strong ETags and conditional GET.

use crate::publication::{FeedFile, Publication};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

/// How long clients and caches may reuse a feed without asking again.
const CACHE_CONTROL: &str = "public, max-age=60";

/// `GET /feeds/{path}`: the bytes of `feeds/{path}`, or 304 when the client's copy is current.
pub async fn serve_feed(
    State(publication): State<Publication>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(file) = publication.get(&path) else {
        return (StatusCode::NOT_FOUND, "no such feed\n").into_response();
    };
    let mut response = if is_fresh(&headers, &file) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut ok = file.bytes.clone().into_response();
        ok.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(file.content_type),
        );
        ok
    };
    let h = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&file.etag) {
        h.insert(header::ETAG, etag);
    }
    if let Ok(date) = HeaderValue::from_str(&http_date(file.last_modified)) {
        h.insert(header::LAST_MODIFIED, date);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    response
}

/// RFC 9110 §13.2.2: `If-None-Match` decides when present; otherwise `If-Modified-Since`.
fn is_fresh(headers: &HeaderMap, file: &FeedFile) -> bool {
    if let Some(tags) = headers.get(header::IF_NONE_MATCH) {
        return tags
            .to_str()
            .is_ok_and(|tags| etag_list_matches(tags, &file.etag));
    }
    headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date)
        .is_some_and(|since| file.last_modified <= since)
}

/// Weak comparison of every tag in an `If-None-Match` list against ours; `*` matches any.
fn etag_list_matches(list: &str, ours: &str) -> bool {
    let ours = ours.trim_start_matches("W/");
    list.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours)
}

/// IMF-fixdate, e.g. `Wed, 07 Jun 2023 00:00:00 GMT`.
fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn parse_http_date(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(raw).ok().map(|t| t.to_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_lists_match_weakly_and_star_matches_anything() {
        assert!(etag_list_matches(r#""a", "b""#, r#""b""#));
        assert!(etag_list_matches(r#"W/"b""#, r#""b""#));
        assert!(etag_list_matches("*", r#""b""#));
        assert!(!etag_list_matches(r#""c""#, r#""b""#));
    }

    #[test]
    fn http_dates_round_trip() {
        let t = DateTime::parse_from_rfc3339("2023-06-06T23:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(http_date(t), "Tue, 06 Jun 2023 23:00:00 GMT");
        assert_eq!(parse_http_date(&http_date(t)), Some(t));
    }
}
