//! quantgrid's gRPC protocol (`proto/quantgrid/v1/grid.proto`) and its conversions to and from
//! `quantgrid-matrix` types. The only crate that knows prost.

pub mod client;
pub mod convert;
pub mod signing;

/// Generated messages and services.
#[allow(missing_debug_implementations, clippy::all, clippy::unwrap_used)]
pub mod pb {
    tonic::include_proto!("quantgrid.v1");
}

pub use convert::ConvertError;
pub use tonic;
