//! The coordinator's HTTP side (`serve --http ADDR`): `/metrics` in the Prometheus/OpenMetrics
//! text format for a lab's monitoring, read with an admin token (`Authorization: Bearer`).

use super::actor::Command;
use super::auth::Tokens;
use super::metrics::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

#[derive(Clone)]
struct Http {
    tokens: Tokens,
    metrics: Arc<Metrics>,
    commands: mpsc::Sender<Command>,
}

pub fn router(tokens: Tokens, metrics: Arc<Metrics>, commands: mpsc::Sender<Command>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(Http {
            tokens,
            metrics,
            commands,
        })
}

async fn scrape(State(http): State<Http>, headers: HeaderMap) -> Response {
    if let Err(e) = http.tokens.admin(&headers) {
        return (StatusCode::UNAUTHORIZED, format!("{e}\n")).into_response();
    }
    // the gauges are read from the coordinator's own state, on its loop
    let (reply, done) = oneshot::channel();
    if http.commands.send(Command::Gauges { reply }).await.is_err() || done.await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the coordinator is shutting down\n",
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        http.metrics.encode(),
    )
        .into_response()
}
