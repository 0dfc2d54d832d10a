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

/// `PRETTY_NAME` of an os-release file, e.g. `Debian GNU/Linux 12 (bookworm)`.
pub fn parse_os_release(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// The OS's own name for its version, read once per process (it is on every result):
/// os-release on Linux, `sw_vers` on macOS, `ver` on Windows. Empty when the OS does not say.
pub fn os_version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(read_os_version)
}

fn read_os_version() -> String {
    let run = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match os() {
        Some(Os::Linux) => std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| parse_os_release(&t)),
        Some(Os::Macos) => run("sw_vers", &["-productVersion"]).map(|v| format!("macOS {v}")),
        Some(Os::Windows) => run("cmd", &["/C", "ver"]),
        None => None,
    }
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn os_release_pretty_name() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n";
        assert_eq!(
            super::parse_os_release(text).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(super::parse_os_release("NAME=x\n"), None);
    }

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
