//! What the multi-process tests share: the binaries, a process killed when dropped, tokens,
//! `quantgrid serve` on 127.0.0.1:0, an admin client, and a hand-written gRPC agent.
#![allow(dead_code)]

use quantgrid_proto::client::{self, Bearer, Tls};
use quantgrid_proto::pb::{
    self, admin_service_client::AdminServiceClient, agent_service_client::AgentServiceClient,
};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub fn bin(name: &str) -> PathBuf {
    let quantgrid = PathBuf::from(env!("CARGO_BIN_EXE_quantgrid"));
    let path = quantgrid.with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace (cargo build --workspace)",
        path.display()
    );
    path
}

pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), sig).expect("kill");
    }
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.0.wait().expect("wait")
    }
}

pub fn token(db: &Path, name: &str, admin: bool) -> String {
    let mut cmd = Command::new(bin("quantgrid"));
    cmd.args(["token", "create", name, "--db-path"]).arg(db);
    if admin {
        cmd.arg("--admin");
    }
    let out = cmd.output().expect("token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("token line")
        .to_string()
}

/// Starts `quantgrid serve` and waits for its "listening ADDR" line.
pub fn serve(db: &Path, listen: &str) -> (Proc, String) {
    let mut child = Command::new(bin("quantgrid"))
        .args([
            "serve",
            "--listen",
            listen,
            "--lease-ttl-secs",
            "2",
            "--heartbeat-secs",
            "0.3",
            "--disconnect-grace-secs",
            "1",
            "--db-path",
        ])
        .arg(db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read listening line");
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("unexpected: {line}"))
        .to_string();
    (Proc(child), format!("http://{addr}"))
}

pub fn agent(url: &str, token: &str, cell_ms: u64, extra: &[&str]) -> Proc {
    let child = Command::new(bin("quantgrid-agent"))
        .args([
            "run",
            "--coordinator",
            url,
            "--token",
            token,
            "--executor",
            "simulated",
        ])
        .arg("--simulated-cell-ms")
        .arg(cell_ms.to_string())
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn agent");
    Proc(child)
}

pub type Admin = AdminServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
>;

pub async fn admin(url: &str, token: &str) -> Admin {
    let ch = client::connect(url, &Tls::default())
        .await
        .expect("connect");
    AdminServiceClient::with_interceptor(ch, Bearer::new(token).expect("token"))
}

/// Follows the sweep until `until` holds for a progress message; returns that message.
pub async fn watch_until(
    a: &mut Admin,
    sweep: &str,
    until: impl Fn(&pb::SweepProgress) -> bool,
) -> pb::SweepProgress {
    let mut s = a
        .watch_sweep(pb::SweepRef {
            sweep_id: sweep.into(),
        })
        .await
        .expect("watch")
        .into_inner();
    while let Some(p) = s.message().await.expect("progress") {
        if until(&p) {
            return p;
        }
    }
    panic!("the watch ended before the condition held");
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A hand-written agent: registers with `caps` and opens a session.
pub async fn fake_agent(
    url: &str,
    token: &str,
    name: &str,
    slots: u32,
) -> (
    tokio::sync::mpsc::Sender<pb::AgentMessage>,
    tonic::Streaming<pb::CoordinatorMessage>,
) {
    let ch = client::connect(url, &Tls::default())
        .await
        .expect("connect");
    let mut c = AgentServiceClient::with_interceptor(ch, Bearer::new(token).expect("token"));
    let caps = quantgrid_matrix::fixtures::chromium_capabilities(slots);
    c.register(quantgrid_proto::convert::register_request(
        name, "test", &caps,
    ))
    .await
    .expect("register");
    let (up, rx) = tokio::sync::mpsc::channel(16);
    let down = c
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("session")
        .into_inner();
    (up, down)
}

pub async fn next_offers(
    down: &mut tonic::Streaming<pb::CoordinatorMessage>,
    n: usize,
) -> Vec<pb::Offer> {
    let mut offers = Vec::new();
    while offers.len() < n {
        if let Some(pb::coordinator_message::Kind::Offer(o)) =
            down.message().await.expect("message").expect("open").kind
        {
            offers.push(o);
        }
    }
    offers
}

pub fn measured_pass(offer: &pb::Offer) -> pb::CellResult {
    let cell = offer.cell.as_ref().expect("cell");
    pb::CellResult {
        cell_id: cell.id.clone(),
        status: pb::Status::Pass as i32,
        error_text: None,
        effective_bits: cell.requested_bits,
        measurement: Some((&quantgrid_matrix::fixtures::measurement(offer.repetitions)).into()),
        environment: Some((&quantgrid_matrix::fixtures::chromium_environment()).into()),
        simulated: false,
    }
}

/// The Python with the `duckdb` module: QUANTGRID_PYTHON, else `./x test`'s venv, else python3.
pub fn python() -> String {
    let venv = std::env::var("HOME").map(|h| format!("{h}/.cache/quantgrid/venv/bin/python"));
    std::env::var("QUANTGRID_PYTHON")
        .ok()
        .or_else(|| venv.ok().filter(|v| Path::new(v).exists()))
        .unwrap_or_else(|| "python3".into())
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`.
pub fn pki(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
    let write = |name: &str, text: String| std::fs::write(dir.join(name), text).expect("write pem");
    write("ca.pem", ca.pem());
    for (name, sans, usage) in [
        (
            "server",
            vec!["127.0.0.1".to_string(), "localhost".to_string()],
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        (
            "client",
            vec!["a1.agents.quantgrid".to_string()],
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
    ] {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(sans).expect("params");
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca).expect("sign");
        write(&format!("{name}.pem"), cert.pem());
        write(&format!("{name}.key"), key.serialize_pem());
    }
}
