//! The one place service errors become `tonic::Status`.

use tonic::Status;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        match e {
            ServiceError::Unauthenticated(m) => Status::unauthenticated(m),
            ServiceError::PermissionDenied(m) => Status::permission_denied(m),
            ServiceError::InvalidArgument(m) => Status::invalid_argument(m),
            ServiceError::NotFound(m) => Status::not_found(m),
            ServiceError::AlreadyExists(m) => Status::already_exists(m),
            ServiceError::FailedPrecondition(m) => Status::failed_precondition(m),
            ServiceError::Aborted(m) => Status::aborted(m),
            ServiceError::ResourceExhausted(m) => Status::resource_exhausted(m),
            ServiceError::Unavailable(m) => Status::unavailable(m),
            ServiceError::Internal(m) => Status::internal(m),
        }
    }
}

impl From<crate::store::StoreError> for ServiceError {
    fn from(e: crate::store::StoreError) -> ServiceError {
        let mut s = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(inner) = source {
            s.push_str(": ");
            s.push_str(&inner.to_string());
            source = inner.source();
        }
        ServiceError::Internal(s)
    }
}

impl From<quantgrid_proto::ConvertError> for ServiceError {
    fn from(e: quantgrid_proto::ConvertError) -> ServiceError {
        ServiceError::InvalidArgument(e.to_string())
    }
}

impl From<crate::store::TokenRefused> for ServiceError {
    fn from(e: crate::store::TokenRefused) -> ServiceError {
        use crate::store::TokenRefused;
        match e {
            TokenRefused::Exists(_) => ServiceError::AlreadyExists(e.to_string()),
            TokenRefused::NoSuchToken(_) | TokenRefused::NotLive(_) => {
                ServiceError::NotFound(e.to_string())
            }
            TokenRefused::KindChange { .. } => ServiceError::InvalidArgument(e.to_string()),
        }
    }
}
