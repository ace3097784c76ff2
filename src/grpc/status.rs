//! The one place where use-case errors become gRPC statuses (AIP-193 shape: ErrorInfo,
//! and BadRequest field violations for bad input).

use crate::publishing::PublishError;
use crate::storage::StoreError;
use std::collections::HashMap;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// `ErrorInfo.domain` of every error feedpub returns.
pub const ERROR_DOMAIN: &str = "feedpub";

impl From<PublishError> for Status {
    fn from(error: PublishError) -> Self {
        let message = error.to_string();
        let (code, reason) = match &error {
            PublishError::Unauthenticated(_) => (Code::Unauthenticated, "UNAUTHENTICATED"),
            PublishError::PermissionDenied { .. } => {
                (Code::PermissionDenied, "SECTION_NOT_GRANTED")
            }
            PublishError::Invalid(_) => (Code::InvalidArgument, "INVALID_FIELD"),
            PublishError::NotFound(_) => (Code::NotFound, "ARTICLE_NOT_FOUND"),
            PublishError::AlreadyExists(_) => (Code::AlreadyExists, "ALREADY_EXISTS"),
            PublishError::Storage(StoreError::Database(_) | StoreError::Closed) => {
                (Code::Unavailable, "STORAGE_UNAVAILABLE")
            }
            PublishError::Storage(
                StoreError::Corrupt(_) | StoreError::Migrate(_) | StoreError::Conflict(_),
            ) => (Code::Internal, "STORAGE_FAILED"),
            PublishError::Randomness(_) => (Code::Internal, "NO_RANDOMNESS"),
        };
        if code == Code::Unavailable || code == Code::Internal {
            tracing::error!(%error, "request failed");
        }
        let mut details = ErrorDetails::new();
        details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
        if let PublishError::Invalid(violations) = &error {
            for v in violations.iter() {
                details.add_bad_request_violation(v.field.clone(), v.description.clone());
            }
        }
        Status::with_error_details(code, message, details)
    }
}
