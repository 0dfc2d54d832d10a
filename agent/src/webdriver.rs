//! WebDriver: the only module that knows fantoccini. It starts and owns driver processes
//! (killed when dropped, so none outlive the agent), and opens browser sessions with a fresh
//! temporary profile and the flags each browser needs.

use crate::discovery::browser::{Attach, BuildOptions, Found};
use quantgrid_matrix::Browser;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[derive(Debug, thiserror::Error)]
pub enum WebDriverError {
    #[error("cannot start the driver {path}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the driver {path} exited or never said which port it listens on")]
    NoPort { path: PathBuf },
    #[error("{path} never printed its DevTools address")]
    NoDevTools { path: PathBuf },
    #[error("cannot create a temporary browser profile")]
    Profile(#[source] std::io::Error),
    #[error("the driver refused a session: {0}")]
    Session(String),
    #[error("webdriver command failed: {0}")]
    Command(String),
}

/// Every driver and browser the agent starts carries this variable, set to the agent's pid,
/// and passes it on to its own children: what an agent killed with SIGKILL left running can be
/// found and reaped by the next one.
pub const OWNER: &str = "QUANTGRID_AGENT_PID";

/// Kills the processes whose owning agent (per [`OWNER`]) is gone; returns how many.
#[cfg(target_os = "linux")]
pub fn reap_orphans() -> usize {
    let prefix = format!("{OWNER}=");
    kill_where("environ", |environ| {
        environ
            .split(|b| *b == 0)
            .filter_map(|var| std::str::from_utf8(var).ok())
            .find_map(|var| var.strip_prefix(&prefix))
            .and_then(|v| v.parse::<u32>().ok())
            .is_some_and(|owner| !Path::new(&format!("/proc/{owner}")).exists())
    })
}

/// SIGKILLs every process whose `/proc/PID/{file}` satisfies `doomed`; returns how many.
#[cfg(target_os = "linux")]
fn kill_where(file: &str, doomed: impl Fn(&[u8]) -> bool) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if std::fs::read(entry.path().join(file)).is_ok_and(|bytes| doomed(&bytes)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            killed += 1;
        }
    }
    killed
}

#[cfg(not(target_os = "linux"))]
pub fn reap_orphans() -> usize {
    0
}

/// A driver process listening on 127.0.0.1; killed on drop.
#[derive(Debug)]
pub struct Driver {
    _child: Child,
    pub url: String,
}

impl Driver {
    /// Starts `path` on a port it picks itself and reads the port from its output.
    pub async fn start(path: &Path, launch: &Launch) -> Result<Driver, WebDriverError> {
        let mut cmd = Command::new(path);
        cmd.env(OWNER, std::process::id().to_string());
        match launch.browser {
            Browser::Firefox => cmd.args(["--port", "0", "--host", "127.0.0.1"]),
            _ => cmd.args(["--port=0", "--allowed-ips=127.0.0.1"]),
        };
        if launch.options.attach != Attach::Driver {
            // attaching to another major version: chromedriver refuses it without this
            cmd.arg("--disable-build-check");
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| WebDriverError::Spawn {
                path: path.to_path_buf(),
                source,
            })?;
        let stdout = child.stdout.take().ok_or_else(|| WebDriverError::NoPort {
            path: path.to_path_buf(),
        })?;
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(line)) = lines.next_line().await {
                // "ChromeDriver was started successfully on port 42335." / "Listening on 127.0.0.1:4444"
                let tail = line.split("on port ").nth(1).or_else(|| {
                    line.split("Listening on ")
                        .nth(1)
                        .and_then(|a| a.rsplit(':').next())
                });
                if let Some(p) =
                    tail.and_then(|t| t.trim_end_matches('.').trim().parse::<u16>().ok())
                    && p != 0
                {
                    return Some(p);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| WebDriverError::NoPort {
            path: path.to_path_buf(),
        })?;
        // keep draining its output so the driver never blocks on a full pipe
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Driver {
            _child: child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }
}

/// How to launch a browser build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub browser: Browser,
    pub binary: PathBuf,
    pub headless: bool,
    pub options: BuildOptions,
}

impl Launch {
    pub fn of(found: &Found, headless: bool) -> Launch {
        Launch {
            browser: found.candidate.browser,
            binary: found.candidate.binary.clone(),
            headless,
            options: found.candidate.options.clone(),
        }
    }
}

impl Launch {
    /// The flags that make WebGPU and WebNN reachable, from the machine notes: Chromium needs
    /// `--enable-unsafe-webgpu` (else `requestAdapter()` is null) and the WebNN feature flag
    /// (else `navigator.ml` is absent); Firefox needs the WebGPU prefs.
    pub fn flags(&self, profile: &Path) -> Vec<String> {
        self.flags_with(Some(profile))
    }

    /// The flags as recorded with results: without the throwaway profile's path, which differs
    /// per session and says nothing about the build.
    pub fn recorded_flags(&self) -> Vec<String> {
        let mut f = self.flags_with(None);
        if self.options.attach == Attach::Launch {
            f.push("--remote-debugging-port=0".into());
        }
        f
    }

    fn flags_with(&self, profile: Option<&Path>) -> Vec<String> {
        let mut f: Vec<String> = match self.browser {
            Browser::Firefox => profile
                .map(|p| vec!["-profile".into(), p.display().to_string()])
                .unwrap_or_default(),
            _ => [
                "--no-sandbox",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--enable-unsafe-webgpu",
                // GPU timestamps at full resolution: without it Chrome rounds them to 100 µs
                "--enable-webgpu-developer-features",
                "--enable-features=WebMachineLearningNeuralNetwork",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain(profile.map(|p| format!("--user-data-dir={}", p.display())))
            .collect(),
        };
        if self.headless {
            f.push(if self.browser == Browser::Firefox {
                "-headless".into()
            } else {
                "--headless".into()
            });
        }
        f.extend(self.options.args.iter().cloned());
        f
    }

    /// `debugger` is the DevTools address of a browser to attach to instead of starting one.
    fn capabilities(
        &self,
        profile: &Path,
        debugger: Option<&str>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let args = self.flags(profile);
        let timeouts = serde_json::json!({ "script": 600_000, "pageLoad": 60_000 });
        let caps = match (self.browser, debugger) {
            (Browser::Firefox, _) => {
                let mut prefs = serde_json::json!({
                    "dom.webgpu.enabled": true,
                    "gfx.webgpu.ignore-blocklist": true,
                });
                for (k, v) in &self.options.prefs {
                    prefs[k] = v.clone();
                }
                serde_json::json!({
                    "browserName": "firefox",
                    "moz:firefoxOptions": { "binary": self.binary, "args": args, "prefs": prefs },
                    "timeouts": timeouts
                })
            }
            (_, Some(address)) => serde_json::json!({
                "browserName": "chrome",
                "goog:chromeOptions": { "debuggerAddress": address },
                "timeouts": timeouts
            }),
            (_, None) => serde_json::json!({
                "browserName": "chrome",
                "goog:chromeOptions": { "binary": self.binary, "args": args },
                "timeouts": timeouts
            }),
        };
        match caps {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }
}

/// A browser session with its own throwaway profile.
#[derive(Debug)]
pub struct Session {
    client: fantoccini::Client,
    _profile: tempfile::TempDir,
    /// The browser, when the agent started it itself to attach to it.
    _browser: Option<Child>,
    /// The flags the browser was started with (less the profile path), recorded with every
    /// result.
    pub flags: Vec<String>,
}

/// Starts the browser with a DevTools port of its choosing and reads the address it prints
/// ("DevTools listening on ws://127.0.0.1:PORT/devtools/browser/…").
async fn start_for_attach(
    launch: &Launch,
    flags: &[String],
) -> Result<(Child, String), WebDriverError> {
    let mut child = Command::new(&launch.binary)
        .env(OWNER, std::process::id().to_string())
        .args(flags)
        .args([
            "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
            "about:blank",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| WebDriverError::Spawn {
            path: launch.binary.clone(),
            source,
        })?;
    let no_port = || WebDriverError::NoDevTools {
        path: launch.binary.clone(),
    };
    let stderr = child.stderr.take().ok_or_else(no_port)?;
    let mut lines = BufReader::new(stderr).lines();
    let address = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.split("DevTools listening on ws://").nth(1) {
                return rest.split('/').next().map(str::to_string);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(no_port)?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, address))
}

impl Session {
    /// The session's throwaway profile directory (it names the browser's processes).
    pub fn profile(&self) -> &Path {
        self._profile.path()
    }
}

impl Drop for Session {
    /// A driver killed after a timeout leaves its browser running: reap every process started
    /// with this session's profile, so no browser outlives its session.
    fn drop(&mut self) {
        kill_profile_processes(self._profile.path());
    }
}

#[cfg(target_os = "linux")]
fn kill_profile_processes(profile: &Path) {
    // a zygote can fork a renderer while one pass runs, so repeat until a pass finds nothing
    for _ in 0..20 {
        if kill_profile_pass(profile) == 0 {
            return;
        }
    }
}

/// Kills every process whose command line names `profile`; returns how many it found.
#[cfg(target_os = "linux")]
fn kill_profile_pass(profile: &Path) -> usize {
    use std::os::unix::ffi::OsStrExt;
    let needle = profile.as_os_str().as_bytes();
    kill_where("cmdline", |cmdline| {
        cmdline.windows(needle.len()).any(|w| w == needle)
    })
}

#[cfg(not(target_os = "linux"))]
fn kill_profile_processes(_profile: &Path) {}

impl Session {
    pub async fn open(driver: &Driver, launch: &Launch) -> Result<Session, WebDriverError> {
        let profile = tempfile::tempdir().map_err(WebDriverError::Profile)?;
        let flags = launch.flags(profile.path());
        let (browser, debugger) = match &launch.options.attach {
            Attach::Driver => (None, None),
            Attach::Launch => {
                let (child, address) = start_for_attach(launch, &flags).await?;
                (Some(child), Some(address))
            }
            Attach::Address(a) => (None, Some(a.clone())),
        };
        let caps = launch.capabilities(profile.path(), debugger.as_deref());
        let client = fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .map_err(|e| WebDriverError::Session(e.to_string()))?;
        Ok(Session {
            client,
            flags: launch.recorded_flags(),
            _profile: profile,
            _browser: browser,
        })
    }

    pub async fn goto(&self, url: &str) -> Result<(), WebDriverError> {
        self.client
            .goto(url)
            .await
            .map_err(|e| WebDriverError::Command(e.to_string()))
    }

    /// Runs `body` as an async script; it gets `done` to call with its result.
    pub async fn run_async(&self, body: &str) -> Result<serde_json::Value, WebDriverError> {
        self.run_async_with(body, Vec::new()).await
    }

    /// Like [`Session::run_async`], with `args` as `arguments[0..]`.
    pub async fn run_async_with(
        &self,
        body: &str,
        args: Vec<serde_json::Value>,
    ) -> Result<serde_json::Value, WebDriverError> {
        let script = format!("const done = arguments[arguments.length - 1];\n{body}");
        self.client
            .execute_async(&script, args)
            .await
            .map_err(|e| WebDriverError::Command(e.to_string()))
    }

    /// The page as the browser shows it, as PNG.
    pub async fn screenshot(&self) -> Result<Vec<u8>, WebDriverError> {
        self.client
            .screenshot()
            .await
            .map_err(|e| WebDriverError::Command(e.to_string()))
    }

    pub async fn close(self) -> Result<(), WebDriverError> {
        // the client is a handle; the profile's processes are reaped when `self` drops
        self.client
            .clone()
            .close()
            .await
            .map_err(|e| WebDriverError::Command(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chromium_gets_the_flags_that_make_webgpu_and_webnn_reachable() {
        let l = Launch {
            browser: Browser::Chromium,
            binary: "/usr/lib/chromium/chromium".into(),
            headless: true,
            options: BuildOptions::default(),
        };
        let f = l.flags(Path::new("/tmp/p"));
        for flag in [
            "--enable-unsafe-webgpu",
            "--enable-webgpu-developer-features",
            "--headless",
            "--user-data-dir=/tmp/p",
            "--disable-background-networking",
        ] {
            assert!(f.iter().any(|x| x == flag), "{flag} missing from {f:?}");
        }
        let ff = Launch {
            browser: Browser::Firefox,
            ..l
        };
        let caps = ff.capabilities(Path::new("/tmp/p"), None);
        assert_eq!(
            caps["moz:firefoxOptions"]["prefs"]["dom.webgpu.enabled"],
            serde_json::json!(true)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn processes_of_a_dead_agent_are_reaped_and_a_live_ones_are_not() {
        // a pid that is gone: a child that has exited and been waited for
        let mut gone = std::process::Command::new("true").spawn().expect("true");
        gone.wait().expect("wait");
        let spawn = |owner: u32| {
            std::process::Command::new("sleep")
                .arg("600")
                .env(OWNER, owner.to_string())
                .spawn()
                .expect("sleep")
        };
        let mut orphan = spawn(gone.id());
        let mut owned = spawn(std::process::id());
        // a process just started shows its new environment once exec has set it up
        let marked = |pid: u32| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|e| e.windows(OWNER.len()).any(|w| w == OWNER.as_bytes()))
        };
        while !marked(orphan.id()) || !marked(owned.id()) {
            std::thread::yield_now();
        }
        assert!(reap_orphans() >= 1);
        let status = orphan.wait().expect("wait");
        assert!(!status.success(), "the orphan was killed");
        assert!(
            owned.try_wait().expect("try_wait").is_none(),
            "ours still runs"
        );
        let _ = owned.kill();
        let _ = owned.wait();
    }

    #[test]
    fn attaching_names_only_the_debugger_address() {
        let l = Launch {
            browser: Browser::Chromium,
            binary: "/opt/chromium-153/chromium".into(),
            headless: true,
            options: BuildOptions {
                attach: Attach::Launch,
                ..BuildOptions::default()
            },
        };
        let caps = l.capabilities(Path::new("/tmp/p"), Some("127.0.0.1:9222"));
        assert_eq!(
            caps["goog:chromeOptions"],
            serde_json::json!({ "debuggerAddress": "127.0.0.1:9222" })
        );
    }
}
