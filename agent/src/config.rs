//! The agent's config file: a raw serde struct (versioned, unknown keys refused), validated
//! into what the runtime needs. Command-line flags override it.

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
