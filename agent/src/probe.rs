//! Capabilities as each browser reports them from inside: the probe page is loaded over
//! WebDriver from the agent's harness server and asked about WebGPU and WebNN.

use crate::discovery::browser::Found;
use crate::server;
use crate::webdriver::{Driver, Launch, Session, WebDriverError};
use quantgrid_matrix::agent::BrowserCapability;
use quantgrid_matrix::result::AdapterInfo;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Probed {
    pub found: Found,
    /// What the page returned, verbatim.
    pub report: serde_json::Value,
}

impl Probed {
    /// The capability the agent registers: only what the browser said.
    pub fn capability(&self) -> BrowserCapability {
        let g = &self.report["webgpu"];
        let text = |k: &str| g[k].as_str().unwrap_or_default().to_string();
        BrowserCapability {
            browser: self.found.candidate.browser,
            channel: self.found.candidate.channel.clone(),
            version: self.found.version.clone(),
            webgpu: (g["available"] == serde_json::json!(true)).then(|| AdapterInfo {
                vendor: text("vendor"),
                architecture: text("architecture"),
                device: text("device"),
                description: text("description"),
                is_fallback: g["isFallbackAdapter"].as_bool().unwrap_or(false),
            }),
            webnn: self.report["webnn"]["available"] == serde_json::json!(true),
            features: g["features"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            limits: g["limits"]
                .as_object()
                .map(|l| {
                    l.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                        .collect()
                })
                .unwrap_or_default(),
            webnn_devices: self.report["webnn"]["contexts"]
                .as_object()
                .map(|c| {
                    c.iter()
                        .filter(|(_, v)| v["created"] == serde_json::json!(true))
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{browser} at {binary} has no WebDriver server (looked for its driver on PATH)")]
    NoDriver { browser: String, binary: String },
    #[error(transparent)]
    WebDriver(#[from] WebDriverError),
    #[error(transparent)]
    Harness(#[from] server::HarnessError),
}

/// Probes one browser build in a fresh headless session.
pub async fn probe(found: &Found) -> Result<Probed, ProbeError> {
    let c = &found.candidate;
    let driver_path = c.driver.clone().ok_or_else(|| ProbeError::NoDriver {
        browser: c.browser.to_string(),
        binary: c.binary.display().to_string(),
    })?;
    let harness = server::Harness::start().await?;
    let result = async {
        let launch = Launch::of(found, true);
        let driver = Driver::start(&driver_path, &launch).await?;
        let session = Session::open(&driver, &launch).await?;
        let outcome = async {
            session.goto(&harness.url("probe.html")).await?;
            session
                .run_async("window.quantgridProbe().then(done, e => done({ error: `${e.name}: ${e.message}` }));")
                .await
        }
        .await;
        let _ = session.close().await;
        outcome
    }
    .await;
    drop(harness);
    Ok(Probed {
        found: found.clone(),
        report: result?,
    })
}
