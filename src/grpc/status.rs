//! The one place where use-case errors become gRPC statuses (AIP-193 shape: ErrorInfo,
//! and BadRequest field violations for bad input).

use crate::domain::{FieldViolation, PartnerName, Refusal, Violations};
use crate::publishing::PublishError;
use crate::storage::StoreError;
use std::collections::HashMap;
use std::time::Duration;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// `ErrorInfo.domain` of every error feedpub returns.
pub const ERROR_DOMAIN: &str = "feedpub";

/// Bounds on what an error repeats of the request, so that its trailers stay within what
/// clients accept (gRPC's C core refuses metadata over 8 KiB by default, and the message
/// travels twice: in `grpc-message` and in the details): bytes of the message, of a
/// violation's field and description, and how many violations the details list.
const MAX_MESSAGE_BYTES: usize = 600;
const MAX_FIELD_BYTES: usize = 100;
const MAX_DESCRIPTION_BYTES: usize = 200;
const MAX_VIOLATIONS: usize = 10;

/// `text`, cut to at most `max` bytes at a character boundary, with `…` when cut.
pub(super) fn bounded(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let end = crate::domain::floor_char_boundary(&text, max.saturating_sub('…'.len_utf8()));
    format!("{}…", &text[..end])
}

/// `status`, ending a PublishArticles call early, saying how many articles before it were
/// handled (each stored when valid), its details kept. Not their results: a trailer of
/// 10,000 of them would be more than clients take. The details (a `google.rpc.Status`)
/// carry the new message too: clients check that it is the same as `grpc-message`'s.
pub fn with_handled(status: Status, handled: usize) -> Status {
    let message = bounded(
        format!(
            "{} (the {handled} articles before it were handled, each stored when valid: \
             send the rest again, or all of them with their request_ids)",
            status.message()
        ),
        MAX_MESSAGE_BYTES,
    );
    Status::with_error_details(status.code(), message, status.get_error_details())
}

/// The violations an error lists when there are more than [`MAX_VIOLATIONS`]: the first of
/// each field (array indices aside: `article.media[].url`) in the order found, then the
/// next ones. Forty bad media URLs then leave room, in the details and in the message's
/// first bytes, for a missing `publish_time`.
fn listed(violations: &Violations) -> Vec<&FieldViolation> {
    let all: Vec<&FieldViolation> = violations.iter().collect();
    if all.len() <= MAX_VIOLATIONS {
        return all;
    }
    let family = |field: &str| {
        field
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .collect::<String>()
    };
    let mut families = std::collections::HashSet::new();
    let mut chosen: Vec<usize> = (0..all.len())
        .filter(|&i| families.insert(family(&all[i].field)))
        .take(MAX_VIOLATIONS)
        .collect();
    let rest: Vec<usize> = (0..all.len()).filter(|i| !chosen.contains(i)).collect();
    let room = MAX_VIOLATIONS - chosen.len();
    chosen.extend(rest.into_iter().take(room));
    chosen.into_iter().map(|i| all[i]).collect()
}

impl From<PublishError> for Status {
    fn from(error: PublishError) -> Self {
        let message = match &error {
            PublishError::Invalid(violations) | PublishError::RequestIdReused(violations) => {
                let shown = listed(violations);
                let mut message = shown
                    .iter()
                    .map(|v| format!("{}: {}", v.field, v.description))
                    .collect::<Vec<_>>()
                    .join("; ");
                let more = violations.iter().count() - shown.len();
                if more > 0 {
                    message.push_str(&format!("; and {more} more violations"));
                }
                bounded(message, MAX_MESSAGE_BYTES)
            }
            _ => bounded(error.to_string(), MAX_MESSAGE_BYTES),
        };
        let (code, reason) = match &error {
            PublishError::Unauthenticated(_) => (Code::Unauthenticated, "UNAUTHENTICATED"),
            PublishError::Refused(Refusal::SectionNotGranted { .. }) => {
                (Code::PermissionDenied, "SECTION_NOT_GRANTED")
            }
            PublishError::Refused(Refusal::EmbargoNotGranted { .. }) => {
                (Code::PermissionDenied, "EMBARGO_NOT_GRANTED")
            }
            PublishError::UnknownPartner(_) => (Code::NotFound, "PARTNER_NOT_FOUND"),
            PublishError::PartnerRevoked(_) => (Code::FailedPrecondition, "PARTNER_REVOKED"),
            PublishError::Invalid(_) => (Code::InvalidArgument, "INVALID_FIELD"),
            PublishError::RequestIdReused(_) => (Code::InvalidArgument, "REQUEST_ID_REUSED"),
            PublishError::NotFound(_) => (Code::NotFound, "ARTICLE_NOT_FOUND"),
            PublishError::VersionNotFound { .. } => (Code::NotFound, "VERSION_NOT_FOUND"),
            PublishError::AlreadyExists(_) => (Code::AlreadyExists, "ALREADY_EXISTS"),
            PublishError::Aborted(_) => (Code::Aborted, "ETAG_MISMATCH"),
            PublishError::ShuttingDown => (Code::Unavailable, "SHUTTING_DOWN"),
            PublishError::TooManyArticles => (Code::ResourceExhausted, "TOO_MANY_ARTICLES"),
            PublishError::TooManyWatches(_) => (Code::ResourceExhausted, "TOO_MANY_STREAMS"),
            PublishError::NewNames(_) => (Code::ResourceExhausted, "NEW_NAMES_EXHAUSTED"),
            PublishError::Storage(StoreError::Database(_) | StoreError::Closed) => {
                (Code::Unavailable, "STORAGE_UNAVAILABLE")
            }
            PublishError::Storage(
                StoreError::Corrupt(_)
                | StoreError::Migrate(_)
                | StoreError::UnknownSchema { .. }
                | StoreError::Create { .. }
                | StoreError::Unwritable { .. }
                | StoreError::Emptied(_)
                | StoreError::Conflict(_)
                | StoreError::EtagMismatch(_)
                | StoreError::RequestIdReused(_)
                | StoreError::Refused(_)
                | StoreError::CredentialChanged,
            ) => (Code::Internal, "STORAGE_FAILED"),
            PublishError::Randomness(_) => (Code::Internal, "NO_RANDOMNESS"),
            PublishError::Validation(_) => (Code::Internal, "VALIDATION_FAILED"),
        };
        // A call ended because the server is stopping is how a clean shutdown goes, not a
        // failure to alert on.
        if matches!(error, PublishError::ShuttingDown) {
            tracing::info!(%error, "call ended: the server is stopping");
        } else if code == Code::Unavailable || code == Code::Internal {
            tracing::error!(%error, "request failed");
        }
        let mut details = ErrorDetails::new();
        details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
        if let PublishError::NewNames(refused) = &error {
            details.set_retry_info(refused.retry_after.map(whole_milliseconds));
        }
        if let PublishError::Invalid(violations) | PublishError::RequestIdReused(violations) =
            &error
        {
            let count = violations.iter().count();
            for v in listed(violations) {
                details.add_bad_request_violation(
                    bounded(v.field.clone(), MAX_FIELD_BYTES),
                    bounded(v.description.clone(), MAX_DESCRIPTION_BYTES),
                );
            }
            if count > MAX_VIOLATIONS {
                details.add_bad_request_violation(
                    "",
                    format!("and {} more violations", count - MAX_VIOLATIONS),
                );
            }
        }
        Status::with_error_details(code, message, details)
    }
}

/// DEADLINE_EXCEEDED for a PublishArticles stream still open `after` its start, a little
/// before `request_timeout_seconds` or the client's deadline would cancel the call, with ErrorInfo `STREAM_TIMEOUT`:
/// the articles received are stored and the answer says how many (see [`with_handled`]),
/// where a cancelled call would have lost those not yet stored.
pub fn stream_timed_out(after: Duration) -> Status {
    with_reason(
        Code::DeadlineExceeded,
        "STREAM_TIMEOUT",
        format!(
            "the stream was still open {} ms after it started, near the call's deadline (the \
             client's, or the server's request_timeout_seconds): end a stream sooner, or \
             send fewer articles in it",
            after.as_millis()
        ),
    )
}

/// A status of `code` with `message` (bounded) and an ErrorInfo of `reason` alone.
fn with_reason(code: Code, reason: &str, message: String) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(code, bounded(message, MAX_MESSAGE_BYTES), details)
}

/// INVALID_ARGUMENT for a message that is not valid protobuf (what the decoder said, such
/// as the field that is not UTF-8), with ErrorInfo `INVALID_PROTOBUF` as every error
/// carries one.
pub fn undecodable(decoder_said: &str) -> Status {
    with_reason(
        Code::InvalidArgument,
        "INVALID_PROTOBUF",
        format!("the message is not valid protobuf: {decoder_said}"),
    )
}

/// INVALID_ARGUMENT, ErrorInfo `MALFORMED_REQUEST`, for a request body the gRPC library
/// could not read as gRPC frames: a message cut short, a compressed flag without
/// `grpc-encoding` or one that is neither 0 nor 1, a payload that does not decompress, a
/// unary call with no message. The library says INTERNAL, as gRPC's own do, which tells a
/// partner the server failed and is worth retrying; it is the sender's fault, as a message
/// that is not protobuf is ([`undecodable`]).
pub fn malformed(library_said: &str) -> Status {
    with_reason(
        Code::InvalidArgument,
        "MALFORMED_REQUEST",
        format!("the request body is not framed as gRPC frames it: {library_said}"),
    )
}

/// How the gRPC library's errors for a body it cannot read as gRPC frames begin (tonic
/// 0.14's decoder and unary request reader). Its other INTERNAL errors without details
/// (an HTTP/2 stream reset, say "h2 protocol error") are not the body's fault.
const UNFRAMED: &[&str] = &[
    "Unexpected EOF decoding stream.",
    "Missing request message.",
    "protocol error: received message with",
    "Error decompressing:",
];

/// True for the library's own INTERNAL for a body it could not read as gRPC frames: no
/// details (every INTERNAL of feedpub's carries an ErrorInfo) and one of [`UNFRAMED`].
fn unframed(status: &Status) -> bool {
    status.code() == Code::Internal
        && status.details().is_empty()
        && UNFRAMED
            .iter()
            .any(|start| status.message().starts_with(start))
}

/// An error reading a request's messages, as the partner should read it: a body the
/// library could not read as gRPC frames is [`malformed`]; anything else is as it was.
pub fn of_request_stream(status: Status) -> Status {
    if unframed(&status) {
        malformed(status.message())
    } else {
        status
    }
}

/// A call's answer with the error of a request the library could not read (answered
/// before any handler ran, its status in the headers alone) as [`of_request_stream`] says.
pub fn of_unread_request(
    response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let headers = response.headers();
    // Only an INTERNAL answer with its status in the headers, before any handler ran.
    if headers
        .get("grpc-status")
        .is_none_or(|code| code.as_bytes() != b"13")
    {
        return response;
    }
    match Status::from_header_map(headers) {
        Some(status) if unframed(&status) => malformed(status.message()).into_http(),
        _ => response,
    }
}

/// RESOURCE_EXHAUSTED for a partner over its rate limit, with `google.rpc.RetryInfo` saying
/// when a call will be admitted again, and ErrorInfo `RATE_LIMITED`.
pub fn rate_limited(partner: &PartnerName, retry_after: Duration) -> Status {
    let retry_after = whole_milliseconds(retry_after);
    let mut details = ErrorDetails::new();
    details.set_error_info(
        "RATE_LIMITED",
        ERROR_DOMAIN,
        HashMap::from([("partner".to_owned(), partner.to_string())]),
    );
    details.set_retry_info(Some(retry_after));
    Status::with_error_details(
        Code::ResourceExhausted,
        format!(
            "partner {:?} is over its rate limit; retry in {} ms",
            partner.as_str(),
            retry_after.as_millis()
        ),
        details,
    )
}

/// `wait` in whole milliseconds, rounded up: retrying after the delay given is always
/// admitted.
fn whole_milliseconds(wait: Duration) -> Duration {
    Duration::from_millis(u64::try_from(wait.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX))
}

/// The error as a `google.rpc.Status` message, for a result inside a response (a batch's
/// per-article results): the same code, message and details as the call would return.
pub fn rpc_status(error: PublishError) -> tonic_types::pb::Status {
    let status = Status::from(error);
    // `with_error_details` put the whole google.rpc.Status in the details.
    prost::Message::decode(status.details()).unwrap_or_else(|_| tonic_types::pb::Status {
        code: status.code() as i32,
        message: status.message().to_owned(),
        details: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Violations;
    use tonic_types::pb::{BadRequest, ErrorInfo};

    /// A PublishArticles call ended early says how many articles were handled, in its
    /// message and in the `google.rpc.Status` of its details alike, which keep their
    /// ErrorInfo and violations.
    #[test]
    fn an_early_end_says_what_was_handled_in_the_message_and_the_details() {
        use prost::Message;
        let status = with_handled(
            Status::from(PublishError::Invalid(Violations::one("requests[3]", "bad"))),
            3,
        );
        assert!(status.message().contains("the 3 articles before it"));
        let details = tonic_types::pb::Status::decode(status.details()).unwrap();
        assert_eq!(details.message, status.message());
        assert_eq!(details.code, Code::InvalidArgument as i32);
        let read = status.get_error_details();
        assert_eq!(read.error_info().unwrap().reason, "INVALID_FIELD");
        assert_eq!(
            read.bad_request().unwrap().field_violations[0].field,
            "requests[3]"
        );
        // A status from the transport, without details, gets details that agree too.
        let status = with_handled(Status::internal("Unexpected EOF decoding stream."), 0);
        let details = tonic_types::pb::Status::decode(status.details()).unwrap();
        assert_eq!(details.message, status.message());
    }

    /// Only the library's errors for a body it could not read as gRPC frames are the
    /// caller's: a stream reset (INTERNAL "h2 protocol error") or an INTERNAL of feedpub's
    /// own (with details) stays what it was.
    #[test]
    fn only_a_body_not_framed_as_grpc_is_malformed() {
        for message in [
            "Unexpected EOF decoding stream.",
            "Missing request message.",
            "protocol error: received message with compressed-flag but no grpc-encoding was specified",
            "Error decompressing: invalid gzip header, while sending request",
        ] {
            let status = of_request_stream(Status::internal(message));
            assert_eq!(status.code(), Code::InvalidArgument, "{message}");
            assert!(status.message().ends_with(message));
        }
        let reset = of_request_stream(Status::internal("h2 protocol error: stream reset"));
        assert_eq!(reset.code(), Code::Internal);
        let ours = Status::from(PublishError::Storage(StoreError::Corrupt("x".into())));
        assert_eq!(of_request_stream(ours).code(), Code::Internal);
        let response = of_unread_request(Status::internal("h2 protocol error: x").into_http());
        assert_eq!(response.headers()["grpc-status"], "13");
        let response = of_unread_request(Status::internal("Missing request message.").into_http());
        assert_eq!(response.headers()["grpc-status"], "3");
    }

    #[test]
    fn errors_repeat_only_so_much_of_the_request() {
        let mut violations = Violations::default();
        violations.add(
            "article.language",
            format!("{:?} is not a language tag", "x".repeat(100_000)),
        );
        for i in 0..1_000 {
            violations.add(format!("sections[{i}]"), "is not a configured section");
        }
        let status = Status::from(PublishError::Invalid(violations));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().len() <= MAX_MESSAGE_BYTES,
            "{}",
            status.message().len()
        );
        assert!(status.message().starts_with("article.language: \"xxx"));
        assert!(status.message().ends_with('…'));
        // Everything a client receives in the trailers, far below 8 KiB.
        assert!(
            status.details().len() < 4 << 10,
            "{} bytes",
            status.details().len()
        );
        let details = status.get_details_bad_request().unwrap();
        assert_eq!(details.field_violations.len(), MAX_VIOLATIONS + 1);
        assert!(details.field_violations[0].description.len() <= MAX_DESCRIPTION_BYTES);
        assert_eq!(details.field_violations[1].field, "sections[0]");
        assert_eq!(
            details.field_violations[MAX_VIOLATIONS].description,
            "and 991 more violations"
        );
        // Forty of one field do not crowd out another.
        let mut violations = Violations::default();
        for i in 0..40 {
            violations.add(
                format!("article.media[{i}].url"),
                "is not an absolute http or https URL",
            );
        }
        violations.add("article.publish_time", "is required");
        let status = Status::from(PublishError::Invalid(violations));
        let fields: Vec<String> = status
            .get_details_bad_request()
            .unwrap()
            .field_violations
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(
            fields[..3],
            [
                "article.media[0].url",
                "article.publish_time",
                "article.media[1].url"
            ]
        );
        assert_eq!(fields.len(), MAX_VIOLATIONS + 1);
        assert!(
            status
                .message()
                .contains("article.publish_time: is required"),
            "{}",
            status.message()
        );
        assert!(
            status.message().ends_with("and 31 more violations"),
            "{}",
            status.message()
        );
        // Cut at a character boundary.
        assert_eq!(bounded("标题".repeat(200), 10), "标题…");
        assert_eq!(bounded("短".into(), 10), "短");
    }

    #[test]
    fn an_error_inside_a_response_carries_the_details_of_the_call_error() {
        let status = rpc_status(PublishError::Invalid(Violations::one(
            "article.title",
            "is required",
        )));
        assert_eq!(status.code, Code::InvalidArgument as i32);
        assert!(status.message.contains("article.title"));
        let info: ErrorInfo = status
            .details
            .iter()
            .find(|d| d.type_url.ends_with("google.rpc.ErrorInfo"))
            .map(|d| prost::Message::decode(&d.value[..]).unwrap())
            .unwrap();
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("INVALID_FIELD", "feedpub")
        );
        let bad: BadRequest = status
            .details
            .iter()
            .find(|d| d.type_url.ends_with("google.rpc.BadRequest"))
            .map(|d| prost::Message::decode(&d.value[..]).unwrap())
            .unwrap();
        assert_eq!(bad.field_violations[0].field, "article.title");
    }
}
