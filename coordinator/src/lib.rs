//! The quantgrid coordinator: the results store, sweeps and the matrix report. The grid
//! service and scheduler arrive with the grid issue.

pub mod report;
pub mod schedule;
pub mod scheduler;
pub mod service;
pub mod store;
pub mod sweep;
