//! The harness server: serves the embedded harness files on 127.0.0.1, on a port the caller
//! bound, under a random per-session path token so no other page can reach it. It serves
//! nothing but the embedded files.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The files of `agent/harness/`, compiled into the binary.
const FILES: [(&str, &str, &str); 2] = [
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
];

/// A random path segment the pages live under.
pub fn session_token() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn app(token: &str) -> Router {
    let mut router = Router::new();
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

/// Serves until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    token: String,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, app(&token))
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
        let server = tokio::spawn(run(listener, token.clone(), stop.clone()));
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
        let ok = get(format!("/{token}/probe.html")).await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("quantgridProbe"));
        assert!(get("/probe.html".into()).await.starts_with("HTTP/1.1 404"));
        assert!(
            get(format!("/{token}/../Cargo.toml"))
                .await
                .starts_with("HTTP/1.1 404")
        );
        stop.cancel();
        server.await.expect("join").expect("serve");
    }
}
