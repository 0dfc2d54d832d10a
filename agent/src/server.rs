//! The harness server: serves the embedded harness files and the tensors of the layer being
//! run (packed weights, scales, zero points, inputs) on 127.0.0.1, on a port the caller bound,
//! under a random per-session path token so no other page can reach it.

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Tensors the page fetches as raw bytes: binary over loopback HTTP instead of base64 inside
/// WebDriver's JSON, which cost more than the kernels. The one table the executor and the
/// server share; entries are written once and removed when their [`Blob`] drops.
#[derive(Debug, Clone, Default)]
pub struct Blobs {
    table: Arc<Mutex<HashMap<u64, Bytes>>>,
    next: Arc<AtomicU64>,
}

/// A served tensor; no longer served once dropped.
#[derive(Debug)]
pub struct Blob {
    id: u64,
    table: Arc<Mutex<HashMap<u64, Bytes>>>,
}

impl Blob {
    /// Its URL relative to the harness pages.
    pub fn path(&self) -> String {
        format!("blob/{}", self.id)
    }
}

impl Drop for Blob {
    fn drop(&mut self) {
        if let Ok(mut t) = self.table.lock() {
            t.remove(&self.id);
        }
    }
}

impl Blobs {
    pub fn put(&self, bytes: Vec<u8>) -> Blob {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut t) = self.table.lock() {
            t.insert(id, Bytes::from(bytes));
        }
        Blob {
            id,
            table: self.table.clone(),
        }
    }

    fn get(&self, id: u64) -> Option<Bytes> {
        self.table.lock().ok()?.get(&id).cloned()
    }

    pub fn len(&self) -> usize {
        self.table.lock().map(|t| t.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The files of `agent/harness/`, compiled into the binary: the pages, their JavaScript
/// modules (served as JavaScript, as module scripts require) and the WGSL kernels.
pub const FILES: [(&str, &str, &str); 14] = [
    (
        "block.html",
        "text/html; charset=utf-8",
        include_str!("../harness/block.html"),
    ),
    (
        "js/block.js",
        JAVASCRIPT,
        include_str!("../harness/js/block.js"),
    ),
    (
        "kernels/block.wgsl",
        WGSL,
        include_str!("../harness/kernels/block.wgsl"),
    ),
    (
        "layer.html",
        "text/html; charset=utf-8",
        include_str!("../harness/layer.html"),
    ),
    (
        "probe.html",
        "text/html; charset=utf-8",
        include_str!("../harness/probe.html"),
    ),
    (
        "js/answer.js",
        JAVASCRIPT,
        include_str!("../harness/js/answer.js"),
    ),
    (
        "js/layers.js",
        JAVASCRIPT,
        include_str!("../harness/js/layers.js"),
    ),
    (
        "js/tensors.js",
        JAVASCRIPT,
        include_str!("../harness/js/tensors.js"),
    ),
    (
        "js/timing.js",
        JAVASCRIPT,
        include_str!("../harness/js/timing.js"),
    ),
    (
        "js/webgpu.js",
        JAVASCRIPT,
        include_str!("../harness/js/webgpu.js"),
    ),
    (
        "js/webnn.js",
        JAVASCRIPT,
        include_str!("../harness/js/webnn.js"),
    ),
    (
        "js/webnn-graph.js",
        JAVASCRIPT,
        include_str!("../harness/js/webnn-graph.js"),
    ),
    (
        "kernels/gemv.wgsl",
        WGSL,
        include_str!("../harness/kernels/gemv.wgsl"),
    ),
    (
        "kernels/linear.wgsl",
        WGSL,
        include_str!("../harness/kernels/linear.wgsl"),
    ),
];

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const WGSL: &str = "text/wgsl; charset=utf-8";

/// A random path segment the pages live under.
pub fn session_token() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn app(token: &str, blobs: Blobs) -> Router {
    let mut router = Router::new().route(
        &format!("/{token}/blob/{{id}}"),
        get(move |Path(id): Path<u64>| async move {
            match blobs.get(id) {
                Some(b) => (
                    [
                        (header::CONTENT_TYPE, "application/octet-stream"),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    b,
                )
                    .into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }),
    );
    for (name, mime, body) in FILES {
        router = router.route(
            &format!("/{token}/{name}"),
            get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, mime),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    body,
                )
            }),
        );
    }
    router.fallback(|| async { StatusCode::NOT_FOUND.into_response() })
}

/// The harness server, started once per user of it: its address, its random path token, the
/// blobs it serves. Dropping it stops the server.
#[derive(Debug)]
pub struct Harness {
    addr: std::net::SocketAddr,
    token: String,
    blobs: Blobs,
    stop: CancellationToken,
}

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("cannot serve the harness on 127.0.0.1")]
    Bind(#[source] std::io::Error),
    #[error("no randomness for the harness's path token")]
    Random,
}

impl Harness {
    /// Binds 127.0.0.1:0 (a secure context for WebGPU) and serves until dropped.
    pub async fn start() -> Result<Harness, HarnessError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(HarnessError::Bind)?;
        let addr = listener.local_addr().map_err(HarnessError::Bind)?;
        let token = session_token().map_err(|_| HarnessError::Random)?;
        let (blobs, stop) = (Blobs::default(), CancellationToken::new());
        tokio::spawn(run(listener, token.clone(), blobs.clone(), stop.clone()));
        Ok(Harness {
            addr,
            token,
            blobs,
            stop,
        })
    }

    /// The URL of one of the harness's pages, e.g. `layer.html`.
    pub fn url(&self, page: &str) -> String {
        format!("http://{}/{}/{page}", self.addr, self.token)
    }

    /// The tensors it serves.
    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Serves until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    token: String,
    blobs: Blobs,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, app(&token, blobs))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_the_harness_under_the_token_only() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let token = session_token().expect("random");
        let stop = CancellationToken::new();
        let blobs = Blobs::default();
        let server = tokio::spawn(run(listener, token.clone(), blobs.clone(), stop.clone()));
        let get = |path: String| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            out
        };
        let blob = blobs.put(vec![1, 2, 3]);
        let served = get(format!("/{token}/{}", blob.path())).await;
        assert!(served.starts_with("HTTP/1.1 200") && served.ends_with("\u{1}\u{2}\u{3}"));
        let gone = format!("/{token}/{}", blob.path());
        drop(blob);
        assert!(get(gone).await.starts_with("HTTP/1.1 404"));
        assert!(blobs.is_empty());
        let ok = get(format!("/{token}/probe.html")).await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("quantgridProbe"));
        assert!(get("/probe.html".into()).await.starts_with("HTTP/1.1 404"));
        let module = get(format!("/{token}/js/layers.js")).await;
        assert!(
            module.starts_with("HTTP/1.1 200") && module.contains("text/javascript"),
            "{module}"
        );
        assert!(
            get(format!("/{token}/kernels/linear.wgsl"))
                .await
                .contains("fn gemv(")
        );
        assert!(
            get(format!("/{token}/../Cargo.toml"))
                .await
                .starts_with("HTTP/1.1 404")
        );
        stop.cancel();
        server.await.expect("join").expect("serve");
    }
}
