//! The one place where use-case errors become gRPC statuses (AIP-193 shape: ErrorInfo,
//! and BadRequest field violations for bad input).

use crate::domain::{PartnerName, Refusal};
use crate::publishing::PublishError;
use crate::storage::StoreError;
use std::collections::HashMap;
use std::time::Duration;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// `ErrorInfo.domain` of every error feedpub returns.
pub const ERROR_DOMAIN: &str = "feedpub";

impl From<PublishError> for Status {
    fn from(error: PublishError) -> Self {
        let message = error.to_string();
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
            PublishError::NotFound(_) => (Code::NotFound, "ARTICLE_NOT_FOUND"),
            PublishError::VersionNotFound { .. } => (Code::NotFound, "VERSION_NOT_FOUND"),
            PublishError::AlreadyExists(_) => (Code::AlreadyExists, "ALREADY_EXISTS"),
            PublishError::Aborted(_) => (Code::Aborted, "ETAG_MISMATCH"),
            PublishError::ShuttingDown => (Code::Unavailable, "SHUTTING_DOWN"),
            PublishError::TooManyArticles => (Code::ResourceExhausted, "TOO_MANY_ARTICLES"),
            PublishError::Storage(StoreError::Database(_) | StoreError::Closed) => {
                (Code::Unavailable, "STORAGE_UNAVAILABLE")
            }
            PublishError::Storage(
                StoreError::Corrupt(_)
                | StoreError::Migrate(_)
                | StoreError::Conflict(_)
                | StoreError::EtagMismatch(_)
                | StoreError::RequestIdReused(_)
                | StoreError::Refused(_),
            ) => (Code::Internal, "STORAGE_FAILED"),
            PublishError::Randomness(_) => (Code::Internal, "NO_RANDOMNESS"),
            PublishError::Validation(_) => (Code::Internal, "VALIDATION_FAILED"),
        };
        if code == Code::Unavailable || code == Code::Internal {
            tracing::error!(%error, "request failed");
        }
        let mut details = ErrorDetails::new();
        let reason = match &error {
            PublishError::Invalid(violations)
                if violations.iter().any(|v| v.field == "request_id") =>
            {
                "REQUEST_ID_REUSED"
            }
            _ => reason,
        };
        details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
        if let PublishError::Invalid(violations) = &error {
            for v in violations.iter() {
                details.add_bad_request_violation(v.field.clone(), v.description.clone());
            }
        }
        Status::with_error_details(code, message, details)
    }
}

/// RESOURCE_EXHAUSTED for a partner over its rate limit, with `google.rpc.RetryInfo` saying
/// when a call will be admitted again, and ErrorInfo `RATE_LIMITED`.
pub fn rate_limited(partner: &PartnerName, retry_after: Duration) -> Status {
    // Whole milliseconds, rounded up: retrying after the delay given is always admitted.
    let retry_after = Duration::from_millis(
        u64::try_from(retry_after.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX),
    );
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
