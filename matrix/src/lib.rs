//! quantgrid's pure domain: the model-family registry, the matrix spec and its expansion into
//! cells, quantization math, result types and the Markdown matrix. No I/O, no async.

pub mod agent;
pub mod block;
pub mod cell;
pub mod changes;
pub mod checkpoint;
pub mod compare;
pub mod family;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod graph;
pub mod ops;
pub mod quant;
pub mod reference;
pub mod render;
pub mod result;
pub mod spec;
pub mod workload;

pub use cell::{Browser, Cell, CellId, Platform, Precision};
pub use family::{Family, Modality, Model, Resolved};
pub use quant::{Bits, Scheme};
pub use result::{AdapterInfo, CellResult, Environment, Measurement, RanOn, Status, WebnnDevice};
pub use spec::{MatrixSpec, SpecError};
pub use workload::{Layer, Role, Workload, WorkloadSize};
