//! GPU facts from the OS: `lspci` and `nvidia-smi` on Linux, `system_profiler` on macOS,
//! PowerShell/WMI on Windows. Each parser is a pure function of the tool's output, tested on
//! fixtures from all three OSes; running the tools is the caller's business.

use quantgrid_matrix::spec::GpuVendor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    pub vendor: GpuVendor,
    pub name: String,
    pub driver: Option<String>,
    pub memory_mib: Option<u64>,
}

/// The vendor a device or vendor string names. Software rasterizers count as `Software`.
pub fn vendor_of(text: &str) -> Option<GpuVendor> {
    let t = text.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| t.contains(w));
    if has(&[
        "llvmpipe",
        "lavapipe",
        "swiftshader",
        "microsoft basic render",
        "softpipe",
        "virtio",
    ]) {
        Some(GpuVendor::Software)
    } else if has(&["nvidia", "geforce", "quadro", "tesla"]) {
        Some(GpuVendor::Nvidia)
    } else if has(&[
        "advanced micro devices",
        "amd",
        "ati technologies",
        "radeon",
        "[ati]",
    ]) {
        Some(GpuVendor::Amd)
    } else if has(&["intel"]) {
        Some(GpuVendor::Intel)
    } else if has(&["apple"]) {
        Some(GpuVendor::Apple)
    } else if has(&["qualcomm", "adreno"]) {
        Some(GpuVendor::Qualcomm)
    } else if has(&["mali", "arm ltd", "arm limited"]) {
        Some(GpuVendor::Arm)
    } else {
        None
    }
}

/// `lspci` (default format): display-class devices only.
pub fn parse_lspci(out: &str) -> Vec<Gpu> {
    const CLASSES: [&str; 3] = [
        "VGA compatible controller",
        "3D controller",
        "Display controller",
    ];
    out.lines()
        .filter_map(|line| {
            // "01:00.0 VGA compatible controller: NVIDIA Corporation GH100 [H200] (rev a1)"
            let (_, rest) = line.split_once(' ')?;
            let (class, device) = rest.split_once(": ")?;
            let class = class.split(" [").next().unwrap_or(class);
            if !CLASSES.contains(&class) {
                return None;
            }
            let name = device
                .split(" (rev ")
                .next()
                .unwrap_or(device)
                .trim()
                .to_string();
            Some(Gpu {
                vendor: vendor_of(&name)?,
                name,
                driver: None,
                memory_mib: None,
            })
        })
        .collect()
}

/// `nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader,nounits`
pub fn parse_nvidia_smi(out: &str) -> Vec<Gpu> {
    out.lines()
        .filter_map(|line| {
            let mut f = line.split(',').map(str::trim);
            let name = f.next().filter(|n| !n.is_empty())?.to_string();
            let driver = f.next().map(str::to_string);
            let memory_mib = f.next().and_then(|m| m.parse().ok());
            Some(Gpu {
                vendor: GpuVendor::Nvidia,
                name,
                driver,
                memory_mib,
            })
        })
        .collect()
}

/// `system_profiler SPDisplaysDataType -json`
pub fn parse_system_profiler(json: &str) -> Vec<Gpu> {
    #[derive(Deserialize)]
    struct Root {
        #[serde(rename = "SPDisplaysDataType", default)]
        displays: Vec<Display>,
    }
    #[derive(Deserialize)]
    struct Display {
        #[serde(default)]
        sppci_model: Option<String>,
        #[serde(default)]
        spdisplays_vendor: Option<String>,
        #[serde(default)]
        spdisplays_vram: Option<String>,
    }
    let Ok(root) = serde_json::from_str::<Root>(json) else {
        return Vec::new();
    };
    root.displays
        .into_iter()
        .filter_map(|d| {
            let name = d.sppci_model?;
            let vendor = vendor_of(d.spdisplays_vendor.as_deref().unwrap_or_default())
                .or_else(|| vendor_of(&name))?;
            // "1536 MB" on discrete GPUs; Apple silicon shares system memory and reports none
            let memory_mib = d
                .spdisplays_vram
                .and_then(|v| v.split_whitespace().next()?.parse().ok());
            Some(Gpu {
                vendor,
                name,
                driver: None,
                memory_mib,
            })
        })
        .collect()
}

/// `Get-CimInstance Win32_VideoController | Select-Object Name,AdapterCompatibility,
/// DriverVersion,AdapterRAM | ConvertTo-Json` (an object for one GPU, an array for more).
pub fn parse_win32_video_controller(json: &str) -> Vec<Gpu> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Controller {
        name: Option<String>,
        adapter_compatibility: Option<String>,
        driver_version: Option<String>,
        #[serde(rename = "AdapterRAM")]
        adapter_ram: Option<u64>,
    }
    let list: Vec<Controller> = match serde_json::from_str::<serde_json::Value>(json) {
        Ok(v @ serde_json::Value::Array(_)) => serde_json::from_value(v).unwrap_or_default(),
        Ok(v @ serde_json::Value::Object(_)) => serde_json::from_value(v)
            .map(|c| vec![c])
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    list.into_iter()
        .filter_map(|c| {
            let name = c.name?;
            let vendor = vendor_of(c.adapter_compatibility.as_deref().unwrap_or_default())
                .or_else(|| vendor_of(&name))?;
            Some(Gpu {
                vendor,
                name,
                driver: c.driver_version,
                // WMI's AdapterRAM is a 32-bit field: it saturates at 4 GiB, so it is a floor
                memory_mib: c.adapter_ram.map(|b| b / (1024 * 1024)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lspci_on_linux() {
        let out = "00:00.0 Host bridge: Intel Corporation 8th Gen Core Processor Host Bridge/DRAM Registers (rev 07)
00:02.0 VGA compatible controller: Intel Corporation UHD Graphics 630 (Desktop) (rev 02)
01:00.0 3D controller: NVIDIA Corporation GH100 [H200 SXM 141GB] (rev a1)
02:00.0 VGA compatible controller: Advanced Micro Devices, Inc. [AMD/ATI] Navi 31 [Radeon RX 7900 XT/7900 XTX] (rev c8)
00:01.0 VGA compatible controller: Red Hat, Inc. Virtio 1.0 GPU (rev 01)
";
        let gpus = parse_lspci(out);
        let v: Vec<_> = gpus.iter().map(|g| g.vendor).collect();
        assert_eq!(
            v,
            vec![
                GpuVendor::Intel,
                GpuVendor::Nvidia,
                GpuVendor::Amd,
                GpuVendor::Software
            ]
        );
        assert_eq!(gpus[1].name, "NVIDIA Corporation GH100 [H200 SXM 141GB]");
        assert!(parse_lspci("").is_empty());
    }

    #[test]
    fn nvidia_smi_csv() {
        let gpus = parse_nvidia_smi(
            "NVIDIA H200, 580.65.06, 143771\nNVIDIA GeForce RTX 4090, 580.65.06, 24564\n",
        );
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[0].driver.as_deref(), Some("580.65.06"));
        assert_eq!(gpus[1].memory_mib, Some(24564));
    }

    #[test]
    fn system_profiler_on_macos() {
        let apple = r#"{"SPDisplaysDataType":[{"_name":"Apple M2 Pro","sppci_bus":"spdisplays_builtin","sppci_cores":"19","sppci_device_type":"spdisplays_gpu","sppci_model":"Apple M2 Pro","spdisplays_vendor":"sppci_vendor_Apple"}]}"#;
        let g = parse_system_profiler(apple);
        assert_eq!(
            (g[0].vendor, g[0].name.as_str(), g[0].memory_mib),
            (GpuVendor::Apple, "Apple M2 Pro", None)
        );
        let intel_mac = r#"{"SPDisplaysDataType":[{"sppci_model":"Intel UHD Graphics 630","spdisplays_vendor":"Intel","spdisplays_vram":"1536 MB"},{"sppci_model":"AMD Radeon Pro 5500M","spdisplays_vendor":"sppci_vendor_amd","spdisplays_vram":"8 GB"}]}"#;
        let g = parse_system_profiler(intel_mac);
        assert_eq!(
            g.iter().map(|x| x.vendor).collect::<Vec<_>>(),
            vec![GpuVendor::Intel, GpuVendor::Amd]
        );
        assert_eq!(g[0].memory_mib, Some(1536));
        assert!(parse_system_profiler("not json").is_empty());
    }

    #[test]
    fn wmi_on_windows_one_or_many() {
        let one = r#"{"Name":"NVIDIA GeForce RTX 3080","AdapterCompatibility":"NVIDIA","DriverVersion":"32.0.15.6094","AdapterRAM":4293918720}"#;
        let g = parse_win32_video_controller(one);
        assert_eq!(
            (g[0].vendor, g[0].driver.as_deref()),
            (GpuVendor::Nvidia, Some("32.0.15.6094"))
        );
        let many = r#"[{"Name":"Intel(R) UHD Graphics 770","AdapterCompatibility":"Intel Corporation","DriverVersion":"31.0.101.4502","AdapterRAM":2147479552},
                       {"Name":"Microsoft Basic Render Driver","AdapterCompatibility":"Microsoft","DriverVersion":"10.0.22621.1","AdapterRAM":null}]"#;
        let g = parse_win32_video_controller(many);
        assert_eq!(
            g.iter().map(|x| x.vendor).collect::<Vec<_>>(),
            vec![GpuVendor::Intel, GpuVendor::Software]
        );
        assert_eq!(g[0].memory_mib, Some(2047));
    }
}
