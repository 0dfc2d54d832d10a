//! The quantgrid agent: what the machine it runs on can offer the grid. Browser discovery,
//! WebDriver and the in-browser harness arrive with the agent issue; until then the agent
//! reports only what it can know for certain.

pub mod host;
