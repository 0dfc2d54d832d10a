//! Facts about the host read from the running process, never guessed.

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

#[cfg(test)]
mod tests {
    #[test]
    fn host_comes_from_the_build_target() {
        let h = super::host();
        assert_eq!(h.os, std::env::consts::OS);
        assert!(!h.arch.is_empty());
    }
}
