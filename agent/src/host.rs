//! Facts about the host read from the running process, never guessed.

use quantgrid_matrix::result::HostDevices;
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

/// PCI classes that can run a WebNN context off the CPU: display controllers (0x03) and
/// processing accelerators (0x12, NPUs).
const PCI_DISPLAY: u32 = 0x03;
const PCI_ACCELERATOR: u32 = 0x12;

/// `(gpus, accelerators)` among PCI class codes as sysfs writes them (`0x030200`).
fn count_pci_classes<'a>(classes: impl IntoIterator<Item = &'a str>) -> (u32, u32) {
    let (mut gpus, mut accelerators) = (0, 0);
    for c in classes {
        let Ok(code) = u32::from_str_radix(c.trim().trim_start_matches("0x"), 16) else {
            continue;
        };
        match code >> 16 {
            PCI_DISPLAY => gpus += 1,
            PCI_ACCELERATOR => accelerators += 1,
            _ => {}
        }
    }
    (gpus, accelerators)
}

/// Entries named `{prefix}N` (`card0`, `accel1`), not their connectors (`card0-HDMI-A-1`).
fn numbered(names: &[String], prefix: &str) -> u32 {
    names
        .iter()
        .filter(|n| {
            n.strip_prefix(prefix)
                .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()))
        })
        .count() as u32
}

/// The host's devices from every place Linux lists them: PCI classes, and the DRM cards and
/// compute accelerators the kernel registered, which also covers a system-on-chip's GPU or NPU
/// that is not on a PCI bus (Mali, Adreno, and NPUs behind the accel subsystem).
pub fn count_devices(pci_classes: &[String], drm: &[String], accel: &[String]) -> HostDevices {
    let (gpus, accelerators) = count_pci_classes(pci_classes.iter().map(String::as_str));
    HostDevices {
        gpus: gpus.max(numbered(drm, "card")),
        accelerators: accelerators.max(numbered(accel, "accel")),
        source: "/sys/bus/pci/devices, /sys/class/drm or /sys/class/accel".into(),
    }
}

/// The host's GPUs and accelerators, read once per process; `None` where the OS gives no
/// complete list (then no WebNN device is inferred from the host).
pub fn devices() -> Option<&'static HostDevices> {
    static DEVICES: std::sync::OnceLock<Option<HostDevices>> = std::sync::OnceLock::new();
    DEVICES.get_or_init(read_devices).as_ref()
}

fn read_devices() -> Option<HostDevices> {
    if os() != Some(Os::Linux) {
        return None;
    }
    let names = |dir: &str| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    // without the PCI list there is no complete picture to infer from
    let classes: Vec<String> = std::fs::read_dir("/sys/bus/pci/devices")
        .ok()?
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("class")).ok())
        .collect();
    Some(count_devices(
        &classes,
        &names("/sys/class/drm"),
        &names("/sys/class/accel"),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_system_on_chip_gpu_or_npu_counts_though_it_is_not_on_pci() {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // this machine: nothing anywhere
        let none = super::count_devices(&own(&["0x060000", "0x020000"]), &[], &[]);
        assert_eq!((none.gpus, none.accelerators), (0, 0));
        // an ARM board: a Mali GPU as a DRM card with a connector, an NPU behind accel
        let board = super::count_devices(
            &own(&["0x060400"]),
            &own(&["card0", "card0-HDMI-A-1", "renderD128", "version"]),
            &own(&["accel0"]),
        );
        assert_eq!((board.gpus, board.accelerators), (1, 1));
        // a PCI GPU that also has a DRM card is one GPU
        let h200 = super::count_devices(&own(&["0x030200"]), &own(&["card1"]), &[]);
        assert_eq!(h200.gpus, 1);
    }

    #[test]
    fn pci_classes_count_gpus_and_accelerators() {
        // this machine: host bridge, virtio devices; an H200 host adds a 3D controller
        let none = super::count_pci_classes(["0x060000", "0xffff00", "0x018000", "0x020000"]);
        assert_eq!(none, (0, 0));
        let h200 = super::count_pci_classes(["0x030200\n", "0x030000", "0x120000", "junk"]);
        assert_eq!(h200, (2, 1));
    }

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
