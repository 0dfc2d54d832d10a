//! The capability probe against the real browsers this machine has (`./x test` installs
//! them): what each reports comes from inside the browser.

use quantgrid_agent::probe::probe;
use quantgrid_matrix::Browser;

#[tokio::test]
async fn chromium_reports_swiftshader_webgpu_and_refuses_webnn_in_its_own_words() {
    let found = quantgrid_agent::discovery::browsers();
    let chromium = found
        .iter()
        .find(|f| f.candidate.browser == Browser::Chromium && f.version.starts_with("156."))
        .expect("Debian's Chromium 156 and chromedriver are installed (./x test installs them)");
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

#[tokio::test]
async fn firefox_reports_a_fallback_adapter_with_shader_f16_and_no_webnn() {
    let found = quantgrid_agent::discovery::browsers();
    let firefox = found
        .iter()
        .find(|f| f.candidate.browser == Browser::Firefox && f.candidate.driver.is_some())
        .expect("Firefox ESR and geckodriver are installed (./x test installs them)");
    let p = probe(firefox).await.expect("probe");
    let cap = p.capability();
    let adapter = cap.webgpu.expect("a WebGPU adapter (lavapipe)");
    assert!(adapter.is_fallback && adapter.is_software(), "{adapter:?}");
    let features = p.report["webgpu"]["features"].to_string();
    assert!(features.contains("shader-f16"), "{features}");
    assert!(!cap.webnn);
    assert_eq!(
        p.report["webnn"]["error"].as_str(),
        Some("WebNN API not found: navigator.ml is undefined")
    );
}

/// Processes carrying `QUANTGRID_AGENT_PID=pid`.
fn owned_by(pid: u32) -> Vec<u32> {
    let needle = format!("{}={pid}\0", quantgrid_agent::webdriver::OWNER);
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| {
            let p = e.file_name().to_str()?.parse::<u32>().ok()?;
            let env = std::fs::read(e.path().join("environ")).ok()?;
            env.windows(needle.len())
                .any(|w| w == needle.as_bytes())
                .then_some(p)
        })
        .collect()
}

#[test]
fn browsers_of_a_killed_agent_are_reaped_by_the_next_one() {
    let agent = env!("CARGO_BIN_EXE_quantgrid-agent");
    let mut first = std::process::Command::new(agent)
        .arg("probe")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("probe");
    let pid = first.id();
    // wait until it has a driver or browser running, then kill it where nothing can clean up
    while owned_by(pid).is_empty() {
        assert!(
            first.try_wait().expect("try_wait").is_none(),
            "the probe ended before starting a browser"
        );
        std::thread::yield_now();
    }
    first.kill().expect("SIGKILL");
    first.wait().expect("wait");
    let out = std::process::Command::new(agent)
        .arg("probe")
        .output()
        .expect("second probe");
    assert!(out.status.success());
    // (any agent starting meanwhile, such as another test's, may be the one that reaped them)
    assert_eq!(
        owned_by(pid),
        Vec::<u32>::new(),
        "orphans of agent {pid} remain"
    );
}
