//! Where browsers and their drivers are installed on Linux, macOS and Windows, and how to read
//! a version from a binary's `--version` output. Finding candidates is pure (given the OS, the
//! PATH and the environment); checking them runs the binaries.

use quantgrid_matrix::Browser;
use quantgrid_matrix::spec::Os;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A place a browser may be installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub browser: Browser,
    pub channel: String,
    pub binary: PathBuf,
    /// The WebDriver server for it, when one is known at a fixed place or on PATH.
    pub driver: Option<PathBuf>,
    pub options: BuildOptions,
}

/// How the driver reaches a browser build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attach {
    /// The driver starts the browser: the usual way.
    #[default]
    Driver,
    /// The agent starts the browser with a DevTools port and the driver attaches to it: for a
    /// build the driver refuses to start (chromedriver 156 refuses Chromium 153).
    Launch,
    /// A browser somebody else started, listening for DevTools at this `host:port`; the agent
    /// attaches but does not own it.
    Address(String),
}

/// Per-build settings beyond the binary: from the agent config, or decided by discovery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BuildOptions {
    pub attach: Attach,
    /// Extra command-line flags, after quantgrid's own.
    pub args: Vec<String>,
    /// Extra Firefox preferences.
    pub prefs: std::collections::BTreeMap<String, serde_json::Value>,
}

/// A browser found and run: its version came from the binary itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    pub candidate: Candidate,
    pub version: String,
    /// The driver's own `--version`, read once here (empty without a driver or an answer).
    pub driver_version: String,
}

/// The first version-looking token of `--version` output, e.g. `156.0.8078.108` from
/// `Chromium 156.0.8078.108 built on Debian GNU/Linux 12 (bookworm)` or `153.8.0esr` from
/// `Mozilla Firefox 153.8.0esr`.
pub fn parse_version(output: &str) -> Option<String> {
    output.split_whitespace().find_map(|tok| {
        let tok = tok.trim_matches(|c: char| c == ',' || c == '(' || c == ')');
        let mut parts = tok.split('.');
        let first = parts.next()?;
        let numeric_start = !first.is_empty() && first.chars().all(|c| c.is_ascii_digit());
        (numeric_start && tok.contains('.')).then(|| tok.to_string())
    })
}

/// Environment variables that point at a browser binary, checked before standard places.
pub const OVERRIDES: [(&str, Browser); 5] = [
    ("QUANTGRID_CHROME", Browser::Chrome),
    ("QUANTGRID_CHROMIUM", Browser::Chromium),
    ("QUANTGRID_EDGE", Browser::Edge),
    ("QUANTGRID_FIREFOX", Browser::Firefox),
    ("QUANTGRID_SAFARI", Browser::Safari),
];

fn driver_name(b: Browser) -> &'static str {
    match b {
        Browser::Chrome | Browser::Chromium => "chromedriver",
        Browser::Edge => "msedgedriver",
        Browser::Firefox => "geckodriver",
        Browser::Safari => "safaridriver",
    }
}

/// Every place to look, in order of preference, without touching the file system.
pub fn candidates(os: Os, path: &[PathBuf], env: &HashMap<String, String>) -> Vec<Candidate> {
    let on_path = |name: &str| path.iter().map(|d| d.join(name)).collect::<Vec<_>>();
    let mut out = Vec::new();
    for (var, browser) in OVERRIDES {
        if let Some(p) = env.get(var) {
            out.push(Candidate {
                browser,
                channel: "override".into(),
                binary: p.into(),
                driver: None,
                options: BuildOptions::default(),
            });
        }
    }
    let mut add = |browser: Browser, channel: &str, bins: Vec<PathBuf>| {
        for binary in bins {
            out.push(Candidate {
                browser,
                channel: channel.into(),
                binary,
                driver: None,
                options: BuildOptions::default(),
            });
        }
    };
    match os {
        Os::Linux => {
            // Debian's /usr/bin/chromium is a shell wrapper that adds flags: prefer the binary
            add(
                Browser::Chromium,
                "stable",
                vec!["/usr/lib/chromium/chromium".into()],
            );
            add(Browser::Chromium, "stable", on_path("chromium"));
            add(Browser::Chromium, "stable", on_path("chromium-browser"));
            add(
                Browser::Chrome,
                "stable",
                vec!["/opt/google/chrome/chrome".into()],
            );
            add(Browser::Chrome, "stable", on_path("google-chrome"));
            add(Browser::Chrome, "beta", on_path("google-chrome-beta"));
            add(
                Browser::Chrome,
                "unstable",
                on_path("google-chrome-unstable"),
            );
            add(Browser::Edge, "stable", on_path("microsoft-edge"));
            add(
                Browser::Firefox,
                "esr",
                vec!["/usr/lib/firefox-esr/firefox-esr".into()],
            );
            add(Browser::Firefox, "esr", on_path("firefox-esr"));
            add(Browser::Firefox, "release", on_path("firefox"));
        }
        Os::Macos => {
            let app = |name: &str, bin: &str| {
                vec![PathBuf::from(format!(
                    "/Applications/{name}.app/Contents/MacOS/{bin}"
                ))]
            };
            add(
                Browser::Chrome,
                "stable",
                app("Google Chrome", "Google Chrome"),
            );
            add(
                Browser::Chrome,
                "canary",
                app("Google Chrome Canary", "Google Chrome Canary"),
            );
            add(Browser::Chromium, "stable", app("Chromium", "Chromium"));
            add(
                Browser::Edge,
                "stable",
                app("Microsoft Edge", "Microsoft Edge"),
            );
            add(Browser::Firefox, "release", app("Firefox", "firefox"));
            add(
                Browser::Firefox,
                "nightly",
                app("Firefox Nightly", "firefox"),
            );
            add(Browser::Safari, "stable", app("Safari", "Safari"));
            add(
                Browser::Safari,
                "technology-preview",
                app("Safari Technology Preview", "Safari Technology Preview"),
            );
        }
        Os::Windows => {
            let roots: Vec<PathBuf> = ["ProgramFiles", "ProgramFiles(x86)", "LOCALAPPDATA"]
                .iter()
                .filter_map(|v| env.get(*v).map(PathBuf::from))
                .collect();
            let under = |rel: &str| roots.iter().map(|r| r.join(rel)).collect::<Vec<_>>();
            add(
                Browser::Chrome,
                "stable",
                under("Google\\Chrome\\Application\\chrome.exe"),
            );
            add(
                Browser::Chrome,
                "canary",
                under("Google\\Chrome SxS\\Application\\chrome.exe"),
            );
            add(
                Browser::Chromium,
                "stable",
                under("Chromium\\Application\\chrome.exe"),
            );
            add(
                Browser::Edge,
                "stable",
                under("Microsoft\\Edge\\Application\\msedge.exe"),
            );
            add(
                Browser::Edge,
                "canary",
                under("Microsoft\\Edge SxS\\Application\\msedge.exe"),
            );
            add(
                Browser::Firefox,
                "release",
                under("Mozilla Firefox\\firefox.exe"),
            );
        }
    }
    if os == Os::Macos {
        // safaridriver ships with the OS
        for c in out.iter_mut().filter(|c| c.browser == Browser::Safari) {
            c.driver = Some("/usr/bin/safaridriver".into());
        }
    }
    out
}

/// Runs `binary --version` and reads the version. Safari has no `--version`: its bundle's
/// Info.plist holds it.
pub fn version_of(candidate: &Candidate) -> Option<String> {
    if candidate.browser == Browser::Safari {
        let plist = candidate.binary.parent()?.parent()?.join("Info.plist");
        let text = std::fs::read_to_string(plist).ok()?;
        let after = text.split("<key>CFBundleShortVersionString</key>").nth(1)?;
        let value = after.split("<string>").nth(1)?.split("</string>").next()?;
        return Some(value.trim().to_string());
    }
    let out = std::process::Command::new(&candidate.binary)
        .arg("--version")
        .output()
        .ok()?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
        .or_else(|| parse_version(&String::from_utf8_lossy(&out.stderr)))
}

/// The first driver executable for `browser` on `path`.
pub fn find_driver(os: Os, browser: Browser, path: &[PathBuf]) -> Option<PathBuf> {
    let name = driver_name(browser);
    let file = if os == Os::Windows {
        format!("{name}.exe")
    } else {
        name.to_string()
    };
    path.iter().map(|d| d.join(&file)).find(|p| p.is_file())
}

/// The leading number of a version string.
pub fn major(version: &str) -> Option<u32> {
    version.split('.').next()?.parse().ok()
}

/// chromedriver starts only its own major version of Chromium ("unable to discover open
/// pages" otherwise) but attaches to any: another major means attaching.
pub fn mismatched_majors(browser: Browser, browser_version: &str, driver_version: &str) -> bool {
    matches!(browser, Browser::Chrome | Browser::Chromium | Browser::Edge)
        && major(browser_version)
            .zip(major(driver_version))
            .is_some_and(|(b, d)| b != d)
}

fn driver_version(driver: &Path) -> Option<String> {
    let out = std::process::Command::new(driver)
        .arg("--version")
        .output()
        .ok()?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

/// Checks `candidates` as [`discover`] does: those that exist, with versions and drivers.
pub fn check(os: Os, path: &[PathBuf], candidates: Vec<Candidate>) -> Vec<Found> {
    check_all(os, path, candidates)
}

/// The candidates that exist here, with their versions and drivers. A build reachable from
/// two places (a binary and its launcher script) is listed once.
pub fn discover(os: Os, path: &[PathBuf], env: &HashMap<String, String>) -> Vec<Found> {
    check_all(os, path, candidates(os, path, env))
}

fn check_all(os: Os, path: &[PathBuf], candidates: Vec<Candidate>) -> Vec<Found> {
    let mut found: Vec<Found> = Vec::new();
    for c in candidates {
        if !Path::new(&c.binary).is_file() {
            continue;
        }
        let Some(version) = version_of(&c) else {
            continue;
        };
        if found
            .iter()
            .any(|f| f.candidate.browser == c.browser && f.version == version)
        {
            continue;
        }
        let driver = c
            .driver
            .clone()
            .filter(|d| d.is_file())
            .or_else(|| find_driver(os, c.browser, path));
        let driver_version = driver
            .as_deref()
            .and_then(driver_version)
            .unwrap_or_default();
        let mut options = c.options.clone();
        if options.attach == Attach::Driver
            && mismatched_majors(c.browser, &version, &driver_version)
        {
            options.attach = Attach::Launch;
        }
        found.push(Found {
            candidate: Candidate {
                driver,
                options,
                ..c
            },
            version,
            driver_version,
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_real_outputs() {
        let cases = [
            (
                "Chromium 156.0.8078.108 built on Debian GNU/Linux 12 (bookworm)\n",
                "156.0.8078.108",
            ),
            ("Google Chrome 131.0.6778.85 \n", "131.0.6778.85"),
            ("Mozilla Firefox 153.8.0esr\n", "153.8.0esr"),
            ("Microsoft Edge 131.0.2903.70 \n", "131.0.2903.70"),
            (
                "ChromeDriver 156.0.8078.108 (3bb3a1b0b3a0-refs/branch-heads/7878@{#1234})\n",
                "156.0.8078.108",
            ),
            (
                "geckodriver 0.37.1 (b7f0d7d1f31b 2025-11-10 10:00 +0000)\n",
                "0.37.1",
            ),
        ];
        for (out, v) in cases {
            assert_eq!(parse_version(out).as_deref(), Some(v), "{out}");
        }
        assert_eq!(parse_version("command not found"), None);
    }

    #[test]
    fn linux_prefers_the_real_chromium_binary() {
        let path = vec![PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")];
        let c = candidates(Os::Linux, &path, &HashMap::new());
        assert_eq!(c[0].binary, PathBuf::from("/usr/lib/chromium/chromium"));
        assert!(c.iter().any(
            |x| x.browser == Browser::Firefox && x.binary == Path::new("/usr/bin/firefox-esr")
        ));
    }

    #[test]
    fn drivers_are_found_on_path() {
        let empty = tempfile::tempdir().expect("tempdir");
        let with = tempfile::tempdir().expect("tempdir");
        std::fs::write(with.path().join("geckodriver"), "").expect("write");
        let path = vec![empty.path().to_path_buf(), with.path().to_path_buf()];
        assert_eq!(
            find_driver(Os::Linux, Browser::Firefox, &path),
            Some(with.path().join("geckodriver"))
        );
        assert_eq!(find_driver(Os::Linux, Browser::Chromium, &path), None);
    }

    #[test]
    fn overrides_come_first_and_windows_uses_program_files() {
        let env: HashMap<String, String> = [
            (
                "QUANTGRID_CHROMIUM".to_string(),
                "/tmp/chromium-153/chrome".to_string(),
            ),
            ("ProgramFiles".to_string(), "C:\\Program Files".to_string()),
        ]
        .into();
        let c = candidates(Os::Windows, &[], &env);
        assert_eq!(
            (c[0].browser, c[0].channel.as_str()),
            (Browser::Chromium, "override")
        );
        assert!(c.iter().any(|x| {
            x.browser == Browser::Edge
                && x.binary
                    == Path::new("C:\\Program Files")
                        .join("Microsoft\\Edge\\Application\\msedge.exe")
        }));
    }

    #[test]
    fn macos_has_safari_with_its_driver() {
        let c = candidates(Os::Macos, &[], &HashMap::new());
        let s = c
            .iter()
            .find(|x| x.browser == Browser::Safari)
            .expect("safari");
        assert_eq!(s.driver, Some(PathBuf::from("/usr/bin/safaridriver")));
    }

    #[test]
    fn another_chromium_major_than_the_driver_means_attaching() {
        assert!(mismatched_majors(
            Browser::Chromium,
            "153.0.8010.0",
            "156.0.8078.108"
        ));
        assert!(!mismatched_majors(
            Browser::Chromium,
            "156.0.8078.108",
            "156.0.8078.2"
        ));
        // no driver, or one that did not say its version: nothing to compare
        assert!(!mismatched_majors(Browser::Chromium, "153.0.8010.0", ""));
        // geckodriver's version says nothing about Firefox's
        assert!(!mismatched_majors(Browser::Firefox, "153.8.0esr", "0.37.1"));
    }

    #[test]
    fn discover_runs_what_exists() {
        // a fake browser: a script that answers --version like Chromium does
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("chromium");
        std::fs::write(
            &bin,
            "#!/bin/sh\necho 'Chromium 153.0.8010.0 built on Debian'\n",
        )
        .expect("write");
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&bin)
            .status()
            .expect("chmod");
        let found = discover(Os::Linux, &[dir.path().to_path_buf()], &HashMap::new());
        let ours: Vec<_> = found.iter().filter(|f| f.candidate.binary == bin).collect();
        assert_eq!(ours.len(), 1);
        assert_eq!(ours[0].version, "153.0.8010.0");
    }
}
