//! The capability probe against the real Chromium this machine has (`./x test` installs
//! Debian's chromium and chromium-driver): what it reports comes from inside the browser.

use quantgrid_agent::probe::probe;
use quantgrid_matrix::Browser;

#[tokio::test]
async fn chromium_reports_swiftshader_webgpu_and_refuses_webnn_in_its_own_words() {
    let found = quantgrid_agent::discovery::browsers();
    let chromium = found
        .iter()
        .find(|f| f.candidate.browser == Browser::Chromium && f.candidate.driver.is_some())
        .expect("Chromium and chromedriver are installed (./x test installs them)");
    let p = probe(chromium).await.expect("probe");
    let cap = p.capability();
    let adapter = cap.webgpu.expect("a WebGPU adapter");
    // no GPU here: Chromium's WebGPU runs on SwiftShader, and says so
    assert_eq!(
        (adapter.architecture.as_str(), adapter.is_fallback),
        ("swiftshader", true)
    );
    assert!(adapter.is_software());
    assert!(!cap.webnn);
    let err = p.report["webnn"]["contexts"]["cpu"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(err.starts_with("NotSupportedError"), "{}", p.report);
    assert_eq!(cap.version, chromium.version);
}
