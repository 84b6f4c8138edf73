//! The domain's one error type. Each transport converts it in exactly one place
//! (GraphQL `extensions.code`, OAuth error bodies, HTTP problem bodies for the gateway).

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum DomainError {
    /// Input that breaks a rule; `field` names the offending input.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// Something that would duplicate an existing, unique thing.
    #[error("{0}")]
    Conflict(String),
    /// The thing does not exist, *or* the caller may not know that it exists.
    #[error("{0}")]
    NotFound(String),
    /// The caller is not authenticated.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is authenticated but this is outside their rights.
    #[error("{0}")]
    Forbidden(String),
    /// A fault of the system (storage down, ...). The message is safe to show; details are logged.
    #[error("{0}")]
    Internal(String),
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        DomainError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A stable, machine-readable code for the error's kind.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::Invalid { .. } => "BAD_USER_INPUT",
            DomainError::Conflict(_) => "CONFLICT",
            DomainError::NotFound(_) => "NOT_FOUND",
            DomainError::Unauthenticated(_) => "UNAUTHENTICATED",
            DomainError::Forbidden(_) => "FORBIDDEN",
            DomainError::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }
}

/// Errors a storage adapter reports. Kept small: the domain decides what they mean.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum StoreError {
    #[error("already exists: {0}")]
    Conflict(String),
    #[error("storage failure: {0}")]
    Backend(String),
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => DomainError::Conflict(m),
            StoreError::Backend(m) => {
                tracing::error!(error = %m, "storage failure");
                DomainError::Internal("storage failure; see the server log".into())
            }
        }
    }
}
