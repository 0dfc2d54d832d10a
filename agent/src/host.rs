//! Facts about the host read from the running process, never guessed.

use quantgrid_matrix::spec::Os;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Host {
    pub os: &'static str,
    pub arch: &'static str,
    pub agent_version: &'static str,
}

pub fn host() -> Host {
    Host {
        os: std::env::consts::OS,
        arch: std::env::consts::ARCH,
        agent_version: env!("CARGO_PKG_VERSION"),
    }
}

pub fn os() -> Option<Os> {
    match std::env::consts::OS {
        "linux" => Some(Os::Linux),
        "macos" => Some(Os::Macos),
        "windows" => Some(Os::Windows),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_comes_from_the_build_target() {
        let h = super::host();
        assert_eq!(h.os, std::env::consts::OS);
        assert_eq!(
            super::os().is_some(),
            ["linux", "macos", "windows"].contains(&h.os)
        );
    }
}
