//! The coordinator's HTTP side (`serve --http ADDR`): the dashboard's pages and `/metrics` in
//! the Prometheus/OpenMetrics text format, read with an admin or viewer token (`token create
//! --viewer`) as `Authorization: Bearer`, or the cookie `/login` sets for a browser.

use super::actor::Command;
use super::auth::Tokens;
use super::dashboard;
use super::keys::PinnedKeys;
use super::metrics::Metrics;
use crate::report::{MatrixOptions, matrix_markdown};
use crate::store::Store;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

const COOKIE: &str = "quantgrid_token";

#[derive(Clone)]
pub struct Http {
    pub tokens: Tokens,
    pub keys: PinnedKeys,
    pub metrics: Arc<Metrics>,
    pub commands: mpsc::Sender<Command>,
    /// A connection of its own (`Store::reader`), so a page never waits for, nor holds up, the
    /// store's writer thread.
    pub reader: Arc<Mutex<Store>>,
    /// Served over TLS: the sign-in cookie is then marked `Secure`.
    pub secure: bool,
    /// Store batches committed so far (the writer counts them).
    pub commits: Arc<AtomicU64>,
    /// The matrix page last rendered.
    pub matrix: Arc<Mutex<Option<RenderedMatrix>>>,
}

/// A rendered matrix page, with the commit count it saw and when.
#[derive(Debug)]
pub struct RenderedMatrix {
    commits: u64,
    at: Instant,
    html: String,
}

/// While results stream in, the matrix is rendered at most this often: a page is tens of
/// milliseconds of CPU, which on a busy coordinator comes out of the grid's throughput. The
/// page says when it was rendered.
const MATRIX_MAX_AGE: Duration = Duration::from_secs(5);

impl Http {
    /// Runs `f` on the dashboard's connection, off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> Option<T> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || f(&reader.lock().unwrap_or_else(|p| p.into_inner())))
            .await
            .ok()
    }
}

pub fn router(state: Http) -> Router {
    Router::new()
        .route("/", get(agents))
        .route("/matrix", get(matrix))
        .route("/sweeps", get(sweeps))
        .route("/sweeps/{id}", get(sweep))
        .route("/sweeps/{id}/events", get(sweep_events))
        .route("/cell/{id}", get(cell))
        .route("/cell/{id}/samples.csv", get(samples))
        .route("/login", get(login_form).post(login))
        .route("/metrics", get(scrape))
        .with_state(state)
}

/// The bearer token of the request: its Authorization header, or the dashboard's cookie.
fn bearer(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        out.insert(header::AUTHORIZATION, v.clone());
        return out;
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(str::to_string)
        });
    if let Some(v) = cookie.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
        out.insert(header::AUTHORIZATION, v);
    }
    out
}

/// The refusal a page answers without an admin or viewer token (the sign-in form); None when
/// signed in.
fn refusal(http: &Http, headers: &HeaderMap) -> Option<Response> {
    http.tokens.reader(&bearer(headers)).err().map(|e| {
        (
            StatusCode::UNAUTHORIZED,
            Html(dashboard::login(Some(&e.to_string()))),
        )
            .into_response()
    })
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the coordinator is shutting down\n",
    )
        .into_response()
}

async fn login_form() -> Html<String> {
    Html(dashboard::login(None))
}

#[derive(serde::Deserialize)]
struct Login {
    token: String,
}

async fn login(State(http): State<Http>, Form(form): Form<Login>) -> Response {
    let token = form.token.trim();
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
        h.insert(header::AUTHORIZATION, v);
    }
    if let Err(e) = http.tokens.reader(&h) {
        return (
            StatusCode::UNAUTHORIZED,
            Html(dashboard::login(Some(&e.to_string()))),
        )
            .into_response();
    }
    let secure = if http.secure { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/{secure}");
    match HeaderValue::from_str(&cookie) {
        Ok(v) => ([(header::SET_COOKIE, v)], Redirect::to("/")).into_response(),
        Err(_) => (
            StatusCode::BAD_REQUEST,
            "a token is letters, digits and `_`\n",
        )
            .into_response(),
    }
}

async fn agents(State(http): State<Http>, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&http, &headers) {
        return r;
    }
    let (reply, rx) = oneshot::channel();
    if http.commands.send(Command::Agents { reply }).await.is_err() {
        return unavailable();
    }
    let Ok(mut list) = rx.await else {
        return unavailable();
    };
    for a in &mut list {
        a.key_id = http
            .keys
            .get(&a.name)
            .map(|k| quantgrid_proto::signing::key_id(&k))
            .unwrap_or_default();
    }
    let records = http
        .read(|store| store.agent_records(dashboard::RECORD_RESULTS))
        .await
        .and_then(Result::ok)
        .unwrap_or_default();
    let now = super::actor::now_ms();
    Html(dashboard::agents(&list, &records, now)).into_response()
}

async fn sweeps(State(http): State<Http>, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&http, &headers) {
        return r;
    }
    let list = http.read(|store| store.sweeps()).await;
    let (reply, rx) = oneshot::channel();
    if http
        .commands
        .send(Command::ScheduleList { reply })
        .await
        .is_err()
    {
        return unavailable();
    }
    let (Some(Ok(mut list)), Ok(schedules)) = (list, rx.await) else {
        return unavailable();
    };
    // newest first: sweep ids do not sort by time, the store lists them in creation order
    list.reverse();
    list.truncate(50);
    Html(dashboard::sweeps(&list, &schedules)).into_response()
}

/// One sweep: its queues and every cell's state from the coordinator (while it runs), its
/// results from the store.
async fn sweep(State(http): State<Http>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = refusal(&http, &headers) {
        return r;
    }
    let (reply, rx) = oneshot::channel();
    if http
        .commands
        .send(Command::SweepView {
            sweep: id.clone(),
            reply,
        })
        .await
        .is_err()
    {
        return unavailable();
    }
    let Ok(view) = rx.await else {
        return unavailable();
    };
    let wanted = id.clone();
    let read = http
        .read(move |store| {
            let summary = store.sweeps()?.into_iter().find(|s| s.sweep_id == wanted);
            let results = match &summary {
                Some(_) => store.results(Some(&wanted), usize::MAX >> 1)?,
                None => Vec::new(),
            };
            Ok::<_, crate::store::StoreError>((summary, results))
        })
        .await;
    match read {
        Some(Ok((Some(summary), results))) => Html(dashboard::sweep(
            &summary,
            view.as_ref(),
            &results,
            super::actor::now_ms(),
        ))
        .into_response(),
        Some(Ok((None, _))) => (StatusCode::NOT_FOUND, format!("no sweep {id}\n")).into_response(),
        Some(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        None => unavailable(),
    }
}

/// One sweep's progress as server-sent events: the latest state at most ten times a second (a
/// fast sweep changes thousands of times a second; a person reads far slower), the last one
/// with `finished`.
async fn sweep_events(
    State(http): State<Http>,
    headers: HeaderMap,
    Path(sweep): Path<String>,
) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio_stream::StreamExt;
    if let Some(r) = refusal(&http, &headers) {
        return r;
    }
    let (reply, rx) = oneshot::channel();
    if http
        .commands
        .send(Command::Watch { sweep, reply })
        .await
        .is_err()
    {
        return unavailable();
    }
    let progress = match rx.await {
        Ok(Ok(progress)) => progress,
        Ok(Err(e)) => return (StatusCode::NOT_FOUND, format!("{e}\n")).into_response(),
        Err(_) => return unavailable(),
    };
    let events = tokio_stream::wrappers::WatchStream::new(progress)
        .throttle(std::time::Duration::from_millis(100))
        .map(|p| {
            let data = serde_json::json!({
                "sweep_id": p.sweep_id,
                "state": p.state,
                "done": p.done,
                "total": p.total,
                "passed": p.passed,
                "unsupported": p.unsupported,
                "simulated": p.simulated,
                "finished": p.finished,
            });
            Ok::<_, std::convert::Infallible>(Event::default().data(data.to_string()))
        });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn matrix(State(http): State<Http>, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&http, &headers) {
        return r;
    }
    // the count before reading: a batch committed meanwhile makes the next page fresh
    let commits = http.commits.load(Ordering::Relaxed);
    if let Some(cached) = &*http.matrix.lock().unwrap_or_else(|p| p.into_inner())
        && (cached.commits == commits || cached.at.elapsed() < MATRIX_MAX_AGE)
    {
        return Html(cached.html.clone()).into_response();
    }
    let md = http
        .read(|store| {
            matrix_markdown(
                store,
                &MatrixOptions {
                    sweep: None,
                    include_simulated: false,
                    trusted_only: false,
                    accuracy_tolerance: None,
                },
            )
        })
        .await;
    match md {
        Some(Ok(md)) => {
            let html =
                dashboard::matrix(&md, &chrono::Utc::now().format("%H:%M:%S UTC").to_string());
            *http.matrix.lock().unwrap_or_else(|p| p.into_inner()) = Some(RenderedMatrix {
                commits,
                at: Instant::now(),
                html: html.clone(),
            });
            Html(html).into_response()
        }
        Some(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        None => unavailable(),
    }
}

async fn history(
    http: &Http,
    id: String,
    samples: bool,
) -> Result<Vec<crate::store::HistoryRow>, Box<Response>> {
    let rows = http
        .read(move |store| store.history(Some(&id), &|_| true, samples))
        .await
        .ok_or_else(|| Box::new(unavailable()))?;
    rows.map_err(|e| {
        Box::new((StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response())
    })
}

async fn cell(State(http): State<Http>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = refusal(&http, &headers) {
        return r;
    }
    match history(&http, id.clone(), false).await {
        Ok(rows) => Html(dashboard::cell(&id, &rows)).into_response(),
        Err(r) => *r,
    }
}

async fn samples(State(http): State<Http>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = refusal(&http, &headers) {
        return r;
    }
    match history(&http, id, true).await {
        Ok(rows) => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            dashboard::samples_csv(&rows),
        )
            .into_response(),
        Err(r) => *r,
    }
}

async fn scrape(State(http): State<Http>, headers: HeaderMap) -> Response {
    if let Err(e) = http.tokens.reader(&headers) {
        return (StatusCode::UNAUTHORIZED, format!("{e}\n")).into_response();
    }
    // the gauges are read from the coordinator's own state, on its loop
    let (reply, done) = oneshot::channel();
    if http.commands.send(Command::Gauges { reply }).await.is_err() || done.await.is_err() {
        return unavailable();
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
