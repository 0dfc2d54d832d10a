//! What this machine has: browsers (with versions read from the binaries) and GPUs (from the
//! OS's own tools). Capabilities probed from inside each browser build on this.

pub mod browser;
pub mod gpu;

use quantgrid_matrix::spec::Os;
use serde::Serialize;
use std::collections::HashMap;
use std::process::Command;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Machine {
    pub os: Option<Os>,
    pub arch: &'static str,
    pub browsers: Vec<browser::Found>,
    pub gpus: Vec<gpu::Gpu>,
}

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// GPUs as the OS reports them; a tool that is missing contributes nothing.
pub fn gpus(os: Os) -> Vec<gpu::Gpu> {
    match os {
        Os::Linux => {
            let nvidia = run("nvidia-smi", &["--query-gpu=name,driver_version,memory.total", "--format=csv,noheader,nounits"])
                .map(|o| gpu::parse_nvidia_smi(&o))
                .unwrap_or_default();
            let mut all: Vec<gpu::Gpu> = run("lspci", &[]).map(|o| gpu::parse_lspci(&o)).unwrap_or_default();
            // nvidia-smi knows the driver and memory: prefer its entries for NVIDIA boards
            if !nvidia.is_empty() {
                all.retain(|g| g.vendor != quantgrid_matrix::spec::GpuVendor::Nvidia);
                all.extend(nvidia);
            }
            all
        }
        Os::Macos => run("system_profiler", &["SPDisplaysDataType", "-json"])
            .map(|o| gpu::parse_system_profiler(&o))
            .unwrap_or_default(),
        Os::Windows => run(
            "powershell",
            &[
                "-NoProfile",
                "-Command",
                "Get-CimInstance Win32_VideoController | Select-Object Name,AdapterCompatibility,DriverVersion,AdapterRAM | ConvertTo-Json",
            ],
        )
        .map(|o| gpu::parse_win32_video_controller(&o))
        .unwrap_or_default(),
    }
}

fn search_path() -> Vec<std::path::PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default()
}

/// The browsers installed here, found through this process's PATH and environment.
pub fn browsers() -> Vec<browser::Found> {
    let Some(os) = crate::host::os() else {
        return Vec::new();
    };
    let env: HashMap<String, String> = std::env::vars().collect();
    browser::discover(os, &search_path(), &env)
}

/// Declared builds first (a declared build wins over the same version found elsewhere), then,
/// when `discover`, the installed ones.
pub fn browsers_with(declared: Vec<browser::Candidate>, discover: bool) -> Vec<browser::Found> {
    let Some(os) = crate::host::os() else {
        return Vec::new();
    };
    let mut all = browser::check(os, &search_path(), declared);
    if discover {
        for f in browsers() {
            if !all
                .iter()
                .any(|a| a.candidate.browser == f.candidate.browser && a.version == f.version)
            {
                all.push(f);
            }
        }
    }
    all
}

/// Looks at this machine: `declared` builds plus, when `discover`, the installed ones.
pub fn machine(declared: Vec<browser::Candidate>, discover: bool) -> Machine {
    let os = crate::host::os();
    Machine {
        os,
        arch: std::env::consts::ARCH,
        browsers: browsers_with(declared, discover),
        gpus: os.map(gpus).unwrap_or_default(),
    }
}
