//! The agent's config file: a raw serde struct (versioned, unknown keys refused), validated
//! into what the runtime needs. Command-line flags override it.

use crate::discovery::browser::{Attach, BuildOptions, Candidate};
use quantgrid_matrix::Browser;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawAgentConfig {
    pub version: u32,
    #[serde(default)]
    pub coordinator: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    /// A file holding the token, so it stays out of the config.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub slots: Option<u32>,
    /// CA certificate of an `https` coordinator.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    #[serde(default)]
    pub simulated: Option<RawSimulated>,
    /// Browser builds to run besides (or, with `discover: false`, instead of) those found in
    /// standard places.
    #[serde(default)]
    pub browsers: Vec<RawBrowser>,
    #[serde(default)]
    pub discover: Option<bool>,
}

/// A browser build declared in the config.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawBrowser {
    pub browser: Browser,
    /// The browser's executable (its `--version` names the build).
    pub binary: PathBuf,
    /// The WebDriver server; default: the browser's driver on PATH.
    #[serde(default)]
    pub driver: Option<PathBuf>,
    #[serde(default)]
    pub channel: Option<String>,
    /// Extra command-line flags.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra Firefox preferences.
    #[serde(default)]
    pub prefs: BTreeMap<String, serde_json::Value>,
    /// Start the browser here and let the driver attach to it: for a build the driver refuses
    /// to start (discovery also does this by itself when the major versions differ).
    #[serde(default)]
    pub attach: bool,
    /// Attach to a browser that is already running with this DevTools `host:port`.
    #[serde(default)]
    pub debugger_address: Option<String>,
}

impl RawBrowser {
    /// The declared build as a discovery candidate.
    pub fn candidate(&self) -> Candidate {
        let attach = match (&self.debugger_address, self.attach) {
            (Some(a), _) => Attach::Address(a.clone()),
            (None, true) => Attach::Launch,
            (None, false) => Attach::Driver,
        };
        Candidate {
            browser: self.browser,
            channel: self.channel.clone().unwrap_or_else(|| "declared".into()),
            binary: self.binary.clone(),
            driver: self.driver.clone(),
            options: BuildOptions {
                attach,
                args: self.args.clone(),
                prefs: self.prefs.clone(),
            },
        }
    }
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawSimulated {
    #[serde(default)]
    pub cell_ms: Option<u64>,
    /// Browsers the simulated agent claims (default: all).
    #[serde(default)]
    pub browsers: Option<Vec<Browser>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

pub fn parse(text: &str, file: &str) -> Result<RawAgentConfig, ConfigError> {
    let raw: RawAgentConfig = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column, message) = quantgrid_matrix::spec::yaml_error(&e);
        ConfigError {
            file: file.to_string(),
            line,
            column,
            message,
        }
    })?;
    if raw.version != 1 {
        return Err(ConfigError {
            file: file.to_string(),
            line: 1,
            column: 1,
            message: format!(
                "unsupported agent config version {}; this agent reads version 1",
                raw.version
            ),
        });
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_full_config() {
        let c = parse(
            "version: 1\ncoordinator: http://127.0.0.1:7700\nname: lab-1\nlabels: {pool: nightly}\nslots: 2\nsimulated:\n  cell_ms: 5\n  browsers: [firefox]\n",
            "agent.yaml",
        )
        .expect("config");
        assert_eq!(c.slots, Some(2));
        assert_eq!(
            c.simulated.and_then(|s| s.browsers),
            Some(vec![Browser::Firefox])
        );
    }

    #[test]
    fn declared_browsers_become_candidates() {
        let c = parse(
            "version: 1\ndiscover: false\nbrowsers:\n  - browser: chromium\n    binary: /opt/chromium-153/chromium\n    attach: true\n    args: [--enable-unsafe-swiftshader]\n  - browser: firefox\n    binary: /opt/firefox/firefox\n    prefs: {webgl.disabled: true}\n",
            "agent.yaml",
        )
        .expect("config");
        assert_eq!(c.discover, Some(false));
        let chromium = c.browsers[0].candidate();
        assert_eq!(chromium.options.attach, Attach::Launch);
        assert_eq!(chromium.options.args, vec!["--enable-unsafe-swiftshader"]);
        assert_eq!(chromium.channel, "declared");
        let firefox = c.browsers[1].candidate();
        assert_eq!(
            firefox.options.prefs.get("webgl.disabled"),
            Some(&serde_json::json!(true))
        );
    }

    #[test]
    fn a_declared_browser_needs_its_binary() {
        let e = parse(
            "version: 1\nbrowsers:\n  - browser: chromium\n    attach: true\n",
            "agent.yaml",
        )
        .expect_err("no binary");
        assert!(
            e.to_string().starts_with("agent.yaml:") && e.to_string().contains("binary"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_point_at_the_line() {
        let e = parse("version: 1\nslot: 2\n", "agent.yaml").expect_err("typo");
        assert_eq!((e.line, e.column), (2, 1));
        assert!(
            e.to_string()
                .starts_with("agent.yaml:2:1: unknown field `slot`"),
            "{e}"
        );
    }
}
