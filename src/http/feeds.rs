//! Serving feed documents from the in-memory snapshot: content coding chosen by
//! `Accept-Encoding`, strong ETags per coding, conditional GET and HEAD.

use crate::domain::FeedScope;
#[cfg(test)]
use crate::publication::http_date;
use crate::publication::{FeedFile, Publication};
use crate::render::Format;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use metrics::Counter;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// What the feed routes need: the snapshot, and per-feed request counters.
#[derive(Clone)]
pub struct FeedState {
    pub publication: Publication,
    counters: Arc<RwLock<HashMap<String, Arc<FeedCounters>>>>,
}

impl FeedState {
    /// Feed routes over `publication`.
    pub fn new(publication: Publication) -> Self {
        Self {
            publication,
            counters: Arc::default(),
        }
    }

    /// The counters of one feed document, registered on first use (no allocation after).
    fn counters(&self, path: &str) -> Arc<FeedCounters> {
        if let Some(found) = self.counters.read().ok().and_then(|m| m.get(path).cloned()) {
            return found;
        }
        // Author and tag feeds count as `author` and `tag`: one label per name would be
        // thousands of series.
        let (feed, file) = match path.rsplit_once('/') {
            Some((_, file)) => (FeedScope::metric_label_of(path), file),
            None => ("", path),
        };
        let format = Format::from_file_name(file).map_or("other", Format::short_name);
        let labels = |status: &'static str| {
            [
                ("feed", feed.to_owned()),
                ("format", format.to_owned()),
                ("status", status.to_owned()),
            ]
        };
        let bytes = |encoding: &'static str| {
            metrics::counter!("feedpub_http_response_bytes_total",
                "feed" => feed.to_owned(), "format" => format.to_owned(), "encoding" => encoding)
        };
        let counters = Arc::new(FeedCounters {
            ok: metrics::counter!("feedpub_http_requests_total", &labels("200")),
            not_modified: metrics::counter!("feedpub_http_requests_total", &labels("304")),
            bytes: [bytes("identity"), bytes("gzip"), bytes("br")],
        });
        if let Ok(mut map) = self.counters.write() {
            map.insert(path.to_owned(), counters.clone());
        }
        counters
    }
}

/// Prometheus counters of one feed document.
struct FeedCounters {
    ok: Counter,
    not_modified: Counter,
    /// Body bytes sent, by coding: identity, gzip, brotli.
    bytes: [Counter; 3],
}

/// A content coding feedpub has precompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Identity = 0,
    Gzip = 1,
    Brotli = 2,
}

/// `GET /feeds/{path}`: the bytes of `feeds/{path}` in the best coding the client accepts,
/// or 304 when the client's copy is current.
pub async fn serve_feed(
    State(state): State<FeedState>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    // Current documents come from the snapshot; archive pages are rendered on request.
    let (file, counters_key) = match state.publication.get(&path) {
        Some(file) => (file, Cow::Borrowed(path.as_str())),
        None => match state.publication.archive(&path).await {
            Ok(Some(file)) => (file, archive_counters_key(&path)),
            Ok(None) => {
                metrics::counter!("feedpub_http_requests_total",
                    "feed" => "unknown", "format" => "unknown", "status" => "404")
                .increment(1);
                return (StatusCode::NOT_FOUND, "no such feed\n").into_response();
            }
            Err(e) => {
                tracing::error!(error = %e, path, "cannot render an archive page");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "archive unavailable, retry later\n",
                )
                    .into_response();
            }
        },
    };
    let counters = state.counters(&counters_key);
    let coding = negotiate(headers.get(header::ACCEPT_ENCODING));
    // Browsers show `application/rss+xml` and `application/atom+xml` as plain text and only
    // apply the feed's XSL stylesheet to a generic XML type, so a client that asks for HTML
    // (a browser opening the link) gets the same bytes labelled `application/xml`.
    let xml_feed = file.content_type.contains("+xml");
    let styled = xml_feed && accepts_html(&headers);
    let (bytes, etag, etag_header) = representation(&file, coding);
    let mut response = if is_fresh(&headers, etag, file.last_modified) {
        counters.not_modified.increment(1);
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        counters.ok.increment(1);
        counters.bytes[coding as usize].increment(bytes.len() as u64);
        let mut ok = bytes.clone().into_response();
        let h = ok.headers_mut();
        let content_type = if styled {
            HeaderValue::from_static("application/xml; charset=utf-8")
        } else {
            file.headers.content_type.clone()
        };
        h.insert(header::CONTENT_TYPE, content_type);
        match coding {
            Coding::Identity => {}
            Coding::Gzip => {
                h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            Coding::Brotli => {
                h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
            }
        }
        ok
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, etag_header.clone());
    h.insert(header::LAST_MODIFIED, file.headers.last_modified.clone());
    h.insert(header::CACHE_CONTROL, file.headers.cache_control.clone());
    h.insert(
        header::VARY,
        HeaderValue::from_static(if xml_feed {
            "Accept-Encoding, Accept"
        } else {
            "Accept-Encoding"
        }),
    );
    h.insert(header::LINK, file.headers.link.clone());
    response
}

fn representation(file: &FeedFile, coding: Coding) -> (&Bytes, &str, &HeaderValue) {
    match coding {
        Coding::Identity => (&file.bytes, &file.etag, &file.headers.etag),
        Coding::Gzip => (&file.gzip.bytes, &file.gzip.etag, &file.gzip.etag_header),
        Coding::Brotli => (
            &file.brotli.bytes,
            &file.brotli.etag,
            &file.brotli.etag_header,
        ),
    }
}

/// Archive pages share their feed's counters: `politics/archive/3/atom.xml` counts as
/// `politics/atom.xml`, so the number of pages never multiplies the metrics.
fn archive_counters_key(path: &str) -> Cow<'_, str> {
    let feed = path.split('/').next().unwrap_or("");
    let file = path.rsplit('/').next().unwrap_or("");
    Cow::Owned(format!("{feed}/{file}"))
}

/// True when the client lists `text/html` as acceptable, as browsers navigating do.
fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            media.eq_ignore_ascii_case("text/html") && !refused
        })
}

/// Picks the coding with the highest q-value the client accepts (RFC 9110 §12.5.3);
/// among equals, brotli before gzip before identity. Without the header: identity.
fn negotiate(accept: Option<&HeaderValue>) -> Coding {
    let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
        return Coding::Identity;
    };
    let mut q_br = None;
    let mut q_gzip = None;
    let mut q_identity = None;
    let mut q_any = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
            })
            .find_map(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        match name.as_str() {
            "br" => q_br = Some(q),
            "gzip" | "x-gzip" => q_gzip = Some(q),
            "identity" => q_identity = Some(q),
            "*" => q_any = Some(q),
            _ => {}
        }
    }
    let br = q_br.or(q_any).unwrap_or(0.0);
    let gzip = q_gzip.or(q_any).unwrap_or(0.0);
    // Identity is acceptable unless refused explicitly (or through `*;q=0`), but any coding
    // the client names is preferred to it.
    let identity = q_identity.or(q_any.filter(|q| *q == 0.0)).unwrap_or(0.001);
    [
        (Coding::Brotli, br),
        (Coding::Gzip, gzip),
        (Coding::Identity, identity),
    ]
    .into_iter()
    .filter(|(_, q)| *q > 0.0)
    .fold(
        None,
        |best: Option<(Coding, f32)>, (coding, q)| match best {
            Some((_, best_q)) if best_q >= q => best,
            _ => Some((coding, q)),
        },
    )
    .map_or(Coding::Identity, |(coding, _)| coding)
}

/// RFC 9110 §13.2.2: `If-None-Match` decides when present; otherwise `If-Modified-Since`.
fn is_fresh(headers: &HeaderMap, etag: &str, last_modified: DateTime<Utc>) -> bool {
    if let Some(tags) = headers.get(header::IF_NONE_MATCH) {
        return tags
            .to_str()
            .is_ok_and(|tags| etag_list_matches(tags, etag));
    }
    headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date)
        .is_some_and(|since| last_modified <= since)
}

/// Weak comparison of every tag in an `If-None-Match` list against ours; `*` matches any.
fn etag_list_matches(list: &str, ours: &str) -> bool {
    let ours = ours.trim_start_matches("W/");
    list.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours)
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

    #[test]
    fn the_best_accepted_coding_wins() {
        let cases = [
            (None, Coding::Identity),
            (Some("gzip"), Coding::Gzip),
            (Some("gzip, deflate, br"), Coding::Brotli),
            (Some("br;q=0.5, gzip;q=0.8"), Coding::Gzip),
            (Some("br;q=0, gzip;q=0"), Coding::Identity),
            (Some("*"), Coding::Brotli),
            (Some("*;q=0.1, gzip"), Coding::Gzip),
            (Some("identity"), Coding::Identity),
            (Some("deflate"), Coding::Identity),
            (Some("GZIP;Q=1"), Coding::Gzip),
            (Some("br;q=garbage"), Coding::Brotli),
            (Some("identity;q=0, gzip;q=0.1"), Coding::Gzip),
        ];
        for (header, expected) in cases {
            let value = header.map(|h| HeaderValue::from_str(h).unwrap());
            assert_eq!(negotiate(value.as_ref()), expected, "{header:?}");
        }
    }
}
