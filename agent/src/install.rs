//! Installing the agent as a service of the contributor's machine: it must survive reboots and
//! still reach the GPU, so it runs in the user's session wherever the platform keeps the GPU
//! there.
//!
//! - Linux: a systemd unit, a *user* unit by default (lingering enabled, so it starts at boot
//!   without a login); `--system` for lab machines (still run as the installing user).
//! - macOS: a LaunchAgent in the user's GUI session (a LaunchDaemon has no GPU session for a
//!   browser).
//! - Windows: a Task Scheduler task started at the user's logon (a Windows service runs in
//!   session 0, where a browser gets no desktop or GPU), or, for headless labs, the service
//!   form (`sc.exe create`).
//!
//! The token is copied into a file readable only by the agent's user and the service reads it
//! with `run --token-file`: it is never on a command line, where `ps` shows it to every user.
//!
//! Written by hand rather than with the `service-manager` crate: its Windows backends are
//! services only (sc.exe, WinSW), which is the session-0 form a GPU agent must avoid; it does
//! not enable lingering for user units; and its unit and plist are generated inside its
//! `install`, so they could not be snapshot-tested on every host. Here what is generated is a
//! pure function of a [`Plan`] ([`Plan::render`]) and the I/O is the few steps of [`install`].

use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The service's name on every platform.
pub const SERVICE: &str = "quantgrid-agent";
/// The launchd label.
pub const LAUNCHD_LABEL: &str = "org.quantgrid.agent";

/// Whose service manager runs the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
pub enum Scope {
    /// The user's own manager (systemd --user, a LaunchAgent, a logon task).
    User,
    /// The machine's (a system unit, a Windows service): lab machines.
    System,
}

/// The platform whose service files are generated (the host's, or another for snapshots).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display)]
#[strum(serialize_all = "lowercase")]
pub enum Os {
    Linux,
    Macos,
    Windows,
}

impl Os {
    pub fn host() -> Option<Os> {
        match std::env::consts::OS {
            "linux" => Some(Os::Linux),
            "macos" => Some(Os::Macos),
            "windows" => Some(Os::Windows),
            _ => None,
        }
    }
}

/// Everything an install writes, decided before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub os: Os,
    pub scope: Scope,
    /// The agent binary, absolute.
    pub program: PathBuf,
    pub coordinator: String,
    /// Where the token (and the agent's key) live, readable by the agent's user only.
    pub state_dir: PathBuf,
    /// Where the service file goes.
    pub service_dir: PathBuf,
    /// The account the agent runs as.
    pub user: String,
    /// More `quantgrid-agent run` arguments (labels, config, executor…), after the fixed ones.
    pub run_args: Vec<String>,
}

impl Plan {
    pub fn token_file(&self) -> PathBuf {
        self.state_dir.join("token")
    }

    /// The agent's signing key, beside its token with the same permissions.
    pub fn key_file(&self) -> PathBuf {
        self.state_dir.join("agent.key")
    }

    /// A state file as the service's platform writes paths (a plan for Windows rendered
    /// elsewhere still says `\`).
    fn state_path(&self, name: &str) -> String {
        let dir = self.state_dir.display().to_string();
        match self.os {
            Os::Windows => format!("{}\\{name}", dir.trim_end_matches(['\\', '/'])),
            _ => self.state_dir.join(name).display().to_string(),
        }
    }

    pub fn service_file(&self) -> PathBuf {
        self.service_dir.join(match self.os {
            Os::Linux => format!("{SERVICE}.service"),
            Os::Macos => format!("{LAUNCHD_LABEL}.plist"),
            Os::Windows => format!("{SERVICE}.xml"),
        })
    }

    /// `quantgrid-agent run …` as the service starts it.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "run".to_string(),
            "--coordinator".into(),
            self.coordinator.clone(),
            "--token-file".into(),
            self.state_path("token"),
            "--key-file".into(),
            self.state_path("agent.key"),
        ];
        args.extend(self.run_args.iter().cloned());
        args
    }

    /// The service file's text.
    pub fn render(&self) -> String {
        match self.os {
            Os::Linux => systemd_unit(self),
            Os::Macos => launchd_plist(self),
            Os::Windows => windows_task(self),
        }
    }
}

/// A systemd unit. A user unit wants `default.target` (the user's manager, started at boot
/// once lingering is on); a system unit runs as the installing user, in the groups that open
/// GPU device nodes. SIGTERM lets the agent finish its running cell (a cell's timeout is at
/// most 600 s), so the stop timeout is longer than that.
pub fn systemd_unit(plan: &Plan) -> String {
    let mut u = String::new();
    let _ = writeln!(u, "[Unit]");
    let _ = writeln!(
        u,
        "Description=quantgrid agent: runs cells for {} on this machine's browsers",
        plan.coordinator
    );
    if plan.scope == Scope::System {
        let _ = writeln!(u, "Wants=network-online.target");
        let _ = writeln!(u, "After=network-online.target");
    }
    let _ = writeln!(u, "\n[Service]");
    let _ = writeln!(u, "Type=exec");
    let command: Vec<String> = std::iter::once(plan.program.display().to_string())
        .chain(plan.args())
        .map(|a| systemd_quote(&a))
        .collect();
    let _ = writeln!(u, "ExecStart={}", command.join(" "));
    if plan.scope == Scope::System {
        let _ = writeln!(u, "User={}", plan.user);
        let _ = writeln!(u, "SupplementaryGroups=video render");
    }
    let _ = writeln!(u, "Restart=on-failure");
    let _ = writeln!(u, "RestartSec=10");
    let _ = writeln!(u, "KillMode=mixed");
    let _ = writeln!(u, "TimeoutStopSec=660");
    let _ = writeln!(u, "SyslogIdentifier={SERVICE}");
    let _ = writeln!(u, "NoNewPrivileges=yes");
    let _ = writeln!(u, "\n[Install]");
    let _ = writeln!(
        u,
        "WantedBy={}",
        match plan.scope {
            Scope::User => "default.target",
            Scope::System => "multi-user.target",
        }
    );
    u
}

/// One word of a unit's command line: quoted where systemd would split or expand it.
fn systemd_quote(arg: &str) -> String {
    let escaped = arg.replace('%', "%%").replace('$', "$$");
    if escaped.is_empty() || escaped.contains(|c: char| c.is_whitespace() || "\"'\\;".contains(c)) {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        escaped
    }
}

/// A LaunchAgent for the user's GUI session (`Aqua`): started at login, restarted when it
/// exits abnormally, `Interactive` so the browser is not throttled as background work. Its
/// output goes to `~/Library/Logs/quantgrid-agent.log` (Console shows it).
pub fn launchd_plist(plan: &Plan) -> String {
    let mut p = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist version=\"1.0\">\n<dict>\n",
    );
    let key = |p: &mut String, k: &str, v: &str| {
        let _ = writeln!(p, "  <key>{k}</key>\n  <string>{}</string>", xml(v));
    };
    key(&mut p, "Label", LAUNCHD_LABEL);
    let _ = writeln!(p, "  <key>ProgramArguments</key>\n  <array>");
    for a in std::iter::once(plan.program.display().to_string()).chain(plan.args()) {
        let _ = writeln!(p, "    <string>{}</string>", xml(&a));
    }
    let _ = writeln!(p, "  </array>");
    let _ = writeln!(p, "  <key>RunAtLoad</key>\n  <true/>");
    let _ = writeln!(
        p,
        "  <key>KeepAlive</key>\n  <dict>\n    <key>SuccessfulExit</key>\n    <false/>\n  </dict>"
    );
    key(&mut p, "LimitLoadToSessionType", "Aqua");
    key(&mut p, "ProcessType", "Interactive");
    let _ = writeln!(p, "  <key>ExitTimeOut</key>\n  <integer>660</integer>");
    let log = plan
        .service_dir
        .parent()
        .map(|library| library.join("Logs").join(format!("{SERVICE}.log")))
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/{SERVICE}.log")));
    key(&mut p, "StandardOutPath", &log.display().to_string());
    key(&mut p, "StandardErrorPath", &log.display().to_string());
    p.push_str("</dict>\n</plist>\n");
    p
}

/// A Task Scheduler task (schtasks /Create /XML): started at the user's logon in the user's
/// interactive session, without elevation, never stopped for running long or on battery,
/// restarted after a failure.
pub fn windows_task(plan: &Plan) -> String {
    let args: Vec<String> = plan.args().iter().map(|a| windows_quote(a)).collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Description>quantgrid agent: runs cells for {coordinator} on this machine's browsers</Description>
  </RegistrationInfo>
  <Triggers>
    <LogonTrigger>
      <Enabled>true</Enabled>
      <UserId>{user}</UserId>
    </LogonTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">
      <UserId>{user}</UserId>
      <LogonType>InteractiveToken</LogonType>
      <RunLevel>LeastPrivilege</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>
    <RestartOnFailure>
      <Interval>PT1M</Interval>
      <Count>999</Count>
    </RestartOnFailure>
    <Priority>5</Priority>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>{program}</Command>
      <Arguments>{args}</Arguments>
    </Exec>
  </Actions>
</Task>
"#,
        coordinator = xml(&plan.coordinator),
        user = xml(&plan.user),
        program = xml(&plan.program.display().to_string()),
        args = xml(&args.join(" ")),
    )
}

/// The service form for headless Windows labs (session 0: no desktop, and a GPU only where the
/// driver offers compute there): the `sc.exe` command that creates it.
pub fn windows_service_command(plan: &Plan) -> Vec<String> {
    let bin: Vec<String> = std::iter::once(plan.program.display().to_string())
        .chain(plan.args())
        .map(|a| windows_quote(&a))
        .collect();
    [
        "sc.exe",
        "create",
        SERVICE,
        "binPath=",
        &bin.join(" "),
        "start=",
        "auto",
        "DisplayName=",
        "quantgrid agent",
    ]
    .map(String::from)
    .to_vec()
}

/// One argument as `CommandLineToArgvW` reads it back.
fn windows_quote(arg: &str) -> String {
    if !arg.is_empty() && !arg.contains([' ', '\t', '"']) {
        return arg.to_string();
    }
    let mut out = String::from("\"");
    let mut backslashes = 0;
    for c in arg.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                out.push_str(&"\\".repeat(backslashes * 2 + 1));
                out.push('"');
                backslashes = 0;
            }
            _ => {
                out.push_str(&"\\".repeat(backslashes));
                out.push(c);
                backslashes = 0;
            }
        }
    }
    out.push_str(&"\\".repeat(backslashes * 2));
    out.push('"');
    out
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// What went wrong installing, naming the file or command at fault.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot read the token file {0}")]
    ReadToken(PathBuf, #[source] std::io::Error),
    #[error("the token file {0} holds no agent token (expected one line starting with qgt_)")]
    BadToken(PathBuf),
    #[error("cannot write {0}")]
    Write(PathBuf, #[source] std::io::Error),
    #[error("cannot remove {0}")]
    Remove(PathBuf, #[source] std::io::Error),
    #[error("`{0}` failed: {1}")]
    Command(String, String),
    #[error("`{0}` could not start")]
    Spawn(String, #[source] std::io::Error),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Key(String),
}

/// The places an install uses on this host, for `scope`: the state directory under the user's
/// configuration directory (or `/etc/quantgrid` for a system install) and the directory the
/// service manager reads.
pub fn host_plan(
    scope: Scope,
    program: PathBuf,
    coordinator: String,
    run_args: Vec<String>,
) -> Result<Plan, InstallError> {
    let os = Os::host().ok_or_else(|| {
        InstallError::Unsupported(format!("no service install for {}", std::env::consts::OS))
    })?;
    let home = std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .map(PathBuf::from)
        .ok_or_else(|| InstallError::Unsupported("neither HOME nor USERPROFILE is set".into()))?;
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".config"));
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .map_err(|_| InstallError::Unsupported("neither USER nor USERNAME is set".into()))?;
    let (state_dir, service_dir) = match (os, scope) {
        (Os::Linux, Scope::User) => (config.join("quantgrid"), config.join("systemd/user")),
        (Os::Linux, Scope::System) => (
            PathBuf::from("/etc/quantgrid"),
            PathBuf::from("/etc/systemd/system"),
        ),
        (Os::Macos, Scope::User) => (
            home.join("Library/Application Support/quantgrid"),
            home.join("Library/LaunchAgents"),
        ),
        (Os::Macos, Scope::System) => {
            return Err(InstallError::Unsupported(
                "a macOS LaunchDaemon has no GPU session for a browser: install for the user"
                    .into(),
            ));
        }
        (Os::Windows, Scope::User) => {
            let app = std::env::var_os("LOCALAPPDATA")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join("AppData").join("Local"));
            (app.join("quantgrid"), app.join("quantgrid"))
        }
        (Os::Windows, Scope::System) => {
            let data = std::env::var_os("ProgramData")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"));
            (data.join("quantgrid"), data.join("quantgrid"))
        }
    };
    Ok(Plan {
        os,
        scope,
        program,
        coordinator,
        state_dir,
        service_dir,
        user,
        run_args,
    })
}

/// Where `run` keeps its key when not told: the user's configuration directory.
pub fn default_key_file() -> Result<PathBuf, InstallError> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .or_else(|| std::env::var_os("APPDATA"))
                .map(|h| PathBuf::from(h).join(".config"))
        })
        .ok_or_else(|| {
            InstallError::Unsupported("no HOME to keep the agent key in: pass --key-file".into())
        })?;
    Ok(config.join("quantgrid").join("agent.key"))
}

/// Reads and checks an agent token from a file the contributor was given.
pub fn read_token(path: &Path) -> Result<String, InstallError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| InstallError::ReadToken(path.into(), e))?;
    let token = text.trim();
    if !token.starts_with("qgt_") || token.contains(char::is_whitespace) {
        return Err(InstallError::BadToken(path.into()));
    }
    Ok(token.to_string())
}

/// Writes `contents` to `path`, readable and writable by its owner only (on Unix), through a
/// temporary file renamed into place, so a reader never sees half a secret.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), InstallError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let tmp = path.with_extension("partial");
    let write = || -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        std::io::Write::write_all(&mut f, contents)?;
        f.sync_all()?;
        #[cfg(unix)]
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| InstallError::Write(path.into(), e))
}

fn create_private_dir(dir: &Path) -> Result<(), InstallError> {
    std::fs::create_dir_all(dir).map_err(|e| InstallError::Write(dir.into(), e))?;
    #[cfg(unix)]
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(|e| InstallError::Write(dir.into(), e))?;
    Ok(())
}

/// Whether systemd manages this machine (it is PID 1): otherwise units can be written and
/// verified but not started.
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn run_command(program: &str, args: &[&str]) -> Result<String, InstallError> {
    let line = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| InstallError::Spawn(line.clone(), e))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(InstallError::Command(line, said));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What an install did, in lines for the person who ran it.
pub type Steps = Vec<String>;

/// Installs the agent as `plan` says with `token`: the token file, the service file, and on a
/// host whose service manager runs, the service enabled and started.
pub fn install(plan: &Plan, token: &str) -> Result<Steps, InstallError> {
    let mut steps = Vec::new();
    write_private(&plan.token_file(), format!("{token}\n").as_bytes())?;
    steps.push(format!(
        "token: {} (readable by {} only)",
        plan.token_file().display(),
        plan.user
    ));
    let key = quantgrid_proto::signing::load_or_create_key(&plan.key_file())
        .map_err(|e| InstallError::Key(e.to_string()))?;
    steps.push(format!(
        "key: {} (ed25519 {}, signs every report; the coordinator pins it on first registration)",
        plan.key_file().display(),
        quantgrid_proto::signing::key_id(&key.verifying_key().to_bytes())
    ));
    let file = plan.service_file();
    std::fs::create_dir_all(&plan.service_dir)
        .map_err(|e| InstallError::Write(plan.service_dir.clone(), e))?;
    let text = plan.render();
    match plan.os {
        // Task Scheduler reads its XML as UTF-16 (with its byte-order mark)
        Os::Windows => {
            let bytes: Vec<u8> = std::iter::once(0xFEFF_u16)
                .chain(text.encode_utf16())
                .flat_map(u16::to_le_bytes)
                .collect();
            std::fs::write(&file, bytes)
        }
        _ => std::fs::write(&file, &text),
    }
    .map_err(|e| InstallError::Write(file.clone(), e))?;
    steps.push(format!("service: {}", file.display()));
    steps.extend(activate(plan)?);
    Ok(steps)
}

/// Enables and starts the written service where the host's manager runs.
fn activate(plan: &Plan) -> Result<Steps, InstallError> {
    let file = plan.service_file().display().to_string();
    let mut steps = Vec::new();
    match plan.os {
        Os::Linux => {
            if let Some(said) = verify_unit(plan)? {
                steps.push(format!("systemd-analyze verify: {said}"));
            }
            if !systemd_running() {
                steps.push(format!(
                    "systemd is not running on this machine: the unit is written but not started (start it with `systemctl {}enable --now {SERVICE}` where systemd runs)",
                    if plan.scope == Scope::User { "--user " } else { "" }
                ));
                return Ok(steps);
            }
            let user = plan.scope == Scope::User;
            let ctl = |args: &[&str]| -> Result<String, InstallError> {
                let mut all = if user { vec!["--user"] } else { vec![] };
                all.extend_from_slice(args);
                run_command("systemctl", &all)
            };
            ctl(&["daemon-reload"])?;
            ctl(&["enable", "--now", SERVICE])?;
            steps.push(format!("enabled and started {SERVICE}"));
            if user {
                run_command("loginctl", &["enable-linger", &plan.user])?;
                steps.push(format!(
                    "lingering on for {}: the agent starts at boot, before a login",
                    plan.user
                ));
            }
        }
        Os::Macos => {
            run_command("launchctl", &["load", "-w", &file])?;
            steps.push(format!("loaded {LAUNCHD_LABEL} into the user's session"));
        }
        Os::Windows if plan.scope == Scope::System => {
            let command = windows_service_command(plan);
            let args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
            run_command(&command[0], &args)?;
            run_command("sc.exe", &["start", SERVICE])?;
            steps.push(format!(
                "service {SERVICE} created and started (session 0: no desktop; the GPU only where its driver offers compute there)"
            ));
        }
        Os::Windows => {
            run_command(
                "schtasks",
                &["/Create", "/F", "/TN", SERVICE, "/XML", &file],
            )?;
            run_command("schtasks", &["/Run", "/TN", SERVICE])?;
            steps.push(format!("task {SERVICE} created (at logon) and started"));
        }
    }
    Ok(steps)
}

/// `systemd-analyze verify` of the written unit, where the tool is installed: `Ok(None)` when
/// it is not, its complaint as an error when it has one.
pub fn verify_unit(plan: &Plan) -> Result<Option<String>, InstallError> {
    let file = plan.service_file().display().to_string();
    let mut args = vec!["verify"];
    // a user manager's verify needs the user's runtime directory; without one (no login
    // session, as under CI) the unit is verified by the system manager's rules, the same
    // syntax and the same checks of its command
    if plan.scope == Scope::User && std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        args.insert(0, "--user");
    }
    args.push(&file);
    match std::process::Command::new("systemd-analyze")
        .args(&args)
        .output()
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(InstallError::Spawn("systemd-analyze".into(), e)),
        Ok(out) => {
            let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if out.status.success() {
                Ok(Some(if said.is_empty() { "ok".into() } else { said }))
            } else {
                Err(InstallError::Command(
                    format!("systemd-analyze {}", args.join(" ")),
                    said,
                ))
            }
        }
    }
}

/// Stops and removes the service; with `purge`, the token (and key) too.
pub fn uninstall(plan: &Plan, purge: bool) -> Result<Steps, InstallError> {
    let mut steps = Vec::new();
    let file = plan.service_file();
    match plan.os {
        Os::Linux if systemd_running() => {
            let mut args = if plan.scope == Scope::User {
                vec!["--user"]
            } else {
                vec![]
            };
            args.extend(["disable", "--now", SERVICE]);
            // not installed is fine: uninstall is idempotent
            let _ = run_command("systemctl", &args);
            steps.push(format!("stopped and disabled {SERVICE}"));
        }
        Os::Macos if file.exists() => {
            let _ = run_command("launchctl", &["unload", "-w", &file.display().to_string()]);
        }
        Os::Windows if plan.scope == Scope::System => {
            let _ = run_command("sc.exe", &["stop", SERVICE]);
            let _ = run_command("sc.exe", &["delete", SERVICE]);
        }
        Os::Windows => {
            let _ = run_command("schtasks", &["/Delete", "/F", "/TN", SERVICE]);
        }
        _ => {}
    }
    let mut remove = |path: PathBuf| -> Result<(), InstallError> {
        match std::fs::remove_file(&path) {
            Ok(()) => {
                steps.push(format!("removed {}", path.display()));
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(InstallError::Remove(path, e)),
        }
    };
    remove(file)?;
    if purge {
        remove(plan.token_file())?;
        remove(plan.key_file())?;
    }
    if plan.os == Os::Linux && systemd_running() {
        let mut args = if plan.scope == Scope::User {
            vec!["--user"]
        } else {
            vec![]
        };
        args.push("daemon-reload");
        let _ = run_command("systemctl", &args);
    }
    Ok(steps)
}

/// The install as it stands: the service file and token file, the token's permissions, and
/// whether the service manager runs it.
pub fn status(plan: &Plan) -> Steps {
    let mut lines = Vec::new();
    let file = plan.service_file();
    lines.push(format!(
        "service file: {} ({})",
        file.display(),
        if file.exists() { "present" } else { "absent" }
    ));
    let token = plan.token_file();
    lines.push(match std::fs::metadata(&token) {
        Err(_) => format!("token: {} (absent)", token.display()),
        Ok(m) => {
            #[cfg(unix)]
            let mode = std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777;
            #[cfg(not(unix))]
            let mode = if m.permissions().readonly() {
                0o400
            } else {
                0o600
            };
            format!(
                "token: {} (mode {mode:03o}{})",
                token.display(),
                if mode & 0o077 == 0 {
                    ""
                } else {
                    ": readable by others, run install again"
                }
            )
        }
    });
    if let Ok(key) = quantgrid_proto::signing::read_key(&plan.key_file()) {
        lines.push(format!(
            "key: {} (ed25519 {})",
            plan.key_file().display(),
            quantgrid_proto::signing::key_id(&key.verifying_key().to_bytes())
        ));
    }
    if plan.os == Os::Linux {
        lines.push(if systemd_running() {
            let mut args = if plan.scope == Scope::User {
                vec!["--user"]
            } else {
                vec![]
            };
            args.extend(["is-active", SERVICE]);
            match run_command("systemctl", &args) {
                Ok(state) => format!("systemd: {}", state.trim()),
                Err(e) => format!("systemd: {e}"),
            }
        } else {
            "systemd: not running on this machine".into()
        });
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(os: Os, scope: Scope) -> Plan {
        let (program, state, service) = match os {
            Os::Linux => (
                "/home/ada/.cargo/bin/quantgrid-agent",
                "/home/ada/.config/quantgrid",
                "/home/ada/.config/systemd/user",
            ),
            Os::Macos => (
                "/Users/ada/bin/quantgrid-agent",
                "/Users/ada/Library/Application Support/quantgrid",
                "/Users/ada/Library/LaunchAgents",
            ),
            Os::Windows => (
                r"C:\Program Files\quantgrid\quantgrid-agent.exe",
                r"C:\Users\ada\AppData\Local\quantgrid",
                r"C:\Users\ada\AppData\Local\quantgrid",
            ),
        };
        Plan {
            os,
            scope,
            program: program.into(),
            coordinator: "https://grid.lab.example:7700".into(),
            state_dir: state.into(),
            service_dir: service.into(),
            user: "ada".into(),
            run_args: vec!["--labels".into(), "pool=nightly,desk=3 west".into()],
        }
    }

    #[test]
    fn the_linux_user_unit() {
        insta::assert_snapshot!(plan(Os::Linux, Scope::User).render());
    }

    #[test]
    fn the_linux_system_unit() {
        let mut p = plan(Os::Linux, Scope::System);
        p.state_dir = "/etc/quantgrid".into();
        p.service_dir = "/etc/systemd/system".into();
        insta::assert_snapshot!(p.render());
    }

    #[test]
    fn the_macos_launch_agent() {
        insta::assert_snapshot!(plan(Os::Macos, Scope::User).render());
    }

    #[test]
    fn the_windows_logon_task() {
        insta::assert_snapshot!(plan(Os::Windows, Scope::User).render());
    }

    #[test]
    fn the_windows_service_form() {
        let mut p = plan(Os::Windows, Scope::System);
        p.state_dir = r"C:\ProgramData\quantgrid".into();
        insta::assert_snapshot!(windows_service_command(&p).join("\n"));
    }

    #[test]
    fn the_token_is_never_an_argument() {
        for os in [Os::Linux, Os::Macos, Os::Windows] {
            let p = plan(os, Scope::User);
            assert!(!p.args().iter().any(|a| a == "--token"));
            assert!(p.args().contains(&"--token-file".to_string()));
        }
    }

    #[test]
    fn arguments_survive_their_quoting() {
        assert_eq!(systemd_quote("plain"), "plain");
        assert_eq!(systemd_quote("a b"), "\"a b\"");
        assert_eq!(systemd_quote("100%"), "100%%");
        assert_eq!(systemd_quote("$HOME"), "$$HOME");
        assert_eq!(systemd_quote(r#"say "hi""#), r#""say \"hi\"""#);
        assert_eq!(windows_quote("plain"), "plain");
        assert_eq!(windows_quote(r"C:\a b\"), r#""C:\a b\\""#);
        assert_eq!(windows_quote(r#"a"b"#), r#""a\"b""#);
        assert_eq!(windows_quote(""), r#""""#);
    }

    #[test]
    fn tokens_are_checked_and_written_for_the_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let given = dir.path().join("given");
        std::fs::write(&given, "qgt_abc\n").expect("write");
        assert_eq!(read_token(&given).expect("token"), "qgt_abc");
        std::fs::write(&given, "hunter2\n").expect("write");
        let e = read_token(&given).expect_err("not a token");
        assert!(e.to_string().contains("holds no agent token"), "{e}");
        let kept = dir.path().join("state/token");
        write_private(&kept, b"qgt_abc\n").expect("private");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode(&kept), 0o600);
            assert_eq!(mode(&dir.path().join("state")), 0o700);
        }
    }
}
