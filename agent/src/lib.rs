//! The quantgrid agent: what the machine offers the grid, the runtime that dials out to a
//! coordinator, and the executors that run cells. Browser discovery, WebDriver and the
//! in-browser harness arrive with the agent issue; discovery of browsers and GPUs exists.

pub mod block;
pub mod browser_executor;
pub mod checkpoint;
pub mod config;
pub mod discovery;
pub mod executor;
pub mod host;
pub mod install;
pub mod layers;
pub mod native;
pub mod probe;
pub mod runtime;
pub mod server;
pub mod webdriver;
pub mod webnn;
pub mod weights;
