//! The coordinator service: `run(config, listener, shutdown)` serves the agent and admin gRPC
//! services (plus health) on a listener the caller bound, until `shutdown` is cancelled.

mod actor;
pub mod auth;
mod dashboard;
pub mod error;
mod grpc;
mod http;
mod https;
pub mod keys;
pub mod limits;
pub mod metrics;

use crate::scheduler::SchedulerConfig;
use crate::store::{Store, StoreError, StoreWriter};
use quantgrid_proto::pb::{
    admin_service_server::AdminServiceServer, agent_service_server::AgentServiceServer,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// Require client certificates signed by this CA (mutual TLS).
    pub client_ca_pem: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub db_path: PathBuf,
    pub scheduler: SchedulerConfig,
    pub heartbeat_interval: Duration,
    pub tick: Duration,
    pub tls: Option<TlsFiles>,
    /// Cancelled once the store is open and its lock held, right before calls are served: what
    /// "ready" means to whoever started the coordinator.
    pub ready: CancellationToken,
    /// Where the dashboard and `/metrics` are served over HTTP, through `tls` where it is set
    /// (bound by the caller; None: no HTTP).
    pub http: Option<HttpListener>,
}

/// A bound listener for the HTTP side, handed to [`run`] through its config.
#[derive(Debug, Clone)]
pub struct HttpListener(Arc<std::sync::Mutex<Option<std::net::TcpListener>>>);

impl HttpListener {
    pub fn new(listener: std::net::TcpListener) -> HttpListener {
        HttpListener(Arc::new(std::sync::Mutex::new(Some(listener))))
    }

    fn take(&self) -> Option<std::net::TcpListener> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl ServeConfig {
    pub fn new(db_path: PathBuf) -> ServeConfig {
        ServeConfig {
            db_path,
            scheduler: SchedulerConfig::default(),
            heartbeat_interval: Duration::from_secs(5),
            tick: Duration::from_millis(250),
            tls: None,
            ready: CancellationToken::new(),
            http: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("tls configuration")]
    Tls(#[source] tonic::transport::Error),
    #[error("grpc server")]
    Serve(#[source] tonic::transport::Error),
    #[error("http listener")]
    Http(#[source] std::io::Error),
    #[error("https: {0}")]
    HttpTls(String),
}

/// Serves until `shutdown` is cancelled, then stops taking calls, ends agent sessions, lets
/// queued writes commit and returns.
pub async fn run(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    serve(config, listener, shutdown, None).await
}

/// [`run`], with a store whose writes fail where `faults` says: how the tests prove that a
/// failing store loses nothing.
async fn serve(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
    faults: Option<crate::store::Faults>,
) -> Result<(), ServeError> {
    let path = config.db_path.clone();
    let mut store = tokio::task::spawn_blocking(move || Store::open(&path))
        .await
        .map_err(|_| StoreError::WriterGone)??;
    store.limit_threads(1)?;
    // the dashboard reads on its own connection: a page never holds up the writer
    let reader = Arc::new(std::sync::Mutex::new(store.reader()?));
    let tokens = auth::Tokens::new(store.live_token_hashes()?);
    let pinned = keys::PinnedKeys::new(store.pinned_keys()?);
    let running = store.running_sweeps()?;
    let stored_schedules = store.schedules()?;
    let (scheduler, progress, requests) =
        actor::restore(running, config.scheduler, actor::now_ms());
    let metrics = metrics::Metrics::new();
    let observed = metrics.clone();
    // batches committed: the dashboard's matrix is rendered again only when this moved
    let commits = Arc::new(AtomicU64::new(0));
    let counted = commits.clone();
    let (writer, writer_thread) = StoreWriter::spawn_observed(
        store,
        faults,
        Box::new(move |records, took| {
            observed.store_batch_records.observe(records as f64);
            observed.store_commit_seconds.observe(took.as_secs_f64());
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }),
    );
    let tracker = TaskTracker::new();
    let (commands, rx) = tokio::sync::mpsc::channel(16 * 1024);
    let (health, health_service) = tonic_health::server::health_reporter();
    let coordinator = actor::Coordinator::new(
        scheduler,
        writer.clone(),
        progress,
        requests,
        tracker.clone(),
        commands.clone(),
        Some(health.clone()),
    );
    let mut coordinator = coordinator.with_metrics(metrics.clone());
    coordinator.restore_schedules(stored_schedules, actor::now_ms());
    let component = tracker.spawn(coordinator.run(rx, config.tick, shutdown.clone()));

    let commands_for_http = commands.clone();
    let grid = grpc::Grid {
        commands,
        tokens: tokens.clone(),
        keys: pinned.clone(),
        metrics: metrics.clone(),
        registrations: Arc::new(std::sync::Mutex::new(limits::Limiter::new(
            limits::REGISTRATIONS,
        ))),
        writer: writer.clone(),
        tracker: tracker.clone(),
        sessions: Arc::new(AtomicU64::new(0)),
        heartbeat_interval_ms: config.heartbeat_interval.as_millis() as u32,
        lease_ttl_ms: config.scheduler.lease_ttl_ms as u32,
    };
    health.set_serving::<AgentServiceServer<grpc::Grid>>().await;
    health.set_serving::<AdminServiceServer<grpc::Grid>>().await;
    if let Some(listener) = config.http.as_ref().and_then(HttpListener::take) {
        listener.set_nonblocking(true).map_err(ServeError::Http)?;
        let listener = TcpListener::from_std(listener).map_err(ServeError::Http)?;
        let app = http::router(http::Http {
            tokens: tokens.clone(),
            keys: pinned.clone(),
            metrics: metrics.clone(),
            commands: commands_for_http.clone(),
            reader: reader.clone(),
            secure: config.tls.is_some(),
            commits,
            matrix: Arc::default(),
        });
        match &config.tls {
            Some(tls) => {
                let listener = https::TlsListener::spawn(
                    listener,
                    https::acceptor(tls)?,
                    &tracker,
                    shutdown.clone(),
                )
                .map_err(ServeError::Http)?;
                tracker.spawn(serve_http(listener, app, shutdown.clone()));
            }
            None => {
                tracker.spawn(serve_http(listener, app, shutdown.clone()));
            }
        }
    }
    config.ready.cancel();

    let mut builder = Server::builder()
        .max_concurrent_streams(Some(limits::MAX_STREAMS_PER_CONNECTION))
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)));
    if let Some(tls) = &config.tls {
        let mut t =
            ServerTlsConfig::new().identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem));
        if let Some(ca) = &tls.client_ca_pem {
            t = t.client_ca_root(Certificate::from_pem(ca));
        }
        builder = builder.tls_config(t).map_err(ServeError::Tls)?;
    }
    let served = builder
        .add_service(health_service)
        .add_service(InterceptedService::new(
            AgentServiceServer::new(grid.clone())
                .max_decoding_message_size(limits::MAX_MESSAGE_BYTES),
            tokens.agent_interceptor(),
        ))
        .add_service(InterceptedService::new(
            AdminServiceServer::new(grid).max_decoding_message_size(limits::MAX_MESSAGE_BYTES),
            tokens.admin_interceptor(),
        ))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown.clone().cancelled_owned(),
        )
        .await;
    shutdown.cancel();
    let _ = component.await;
    tracker.close();
    tracker.wait().await;
    drop(writer);
    let _ = tokio::task::spawn_blocking(move || writer_thread.join()).await;
    served.map_err(ServeError::Serve)
}

/// The dashboard and `/metrics` on `listener` (plain TCP or TLS) until `stop`.
async fn serve_http<L>(listener: L, app: axum::Router, stop: CancellationToken)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "http server stopped");
    }
}

#[cfg(test)]
mod tests;
