//! Prometheus metrics (`prometheus-client`), scraped from `/metrics` on `serve --http`. Counters
//! and histograms are recorded where things happen (the coordinator's loop, the store's writer
//! thread); the gauges of agents and cells are read from the coordinator's state at scrape.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// What became of a report.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReportLabels {
    /// accepted, stored (an attempt kept but not the cell's result: a retry, a late report),
    /// rejected (failed the checks) or refused (never reached the scheduler).
    pub outcome: String,
    /// Why, for the ones that did not count.
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

/// Every metric the coordinator exports.
#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub reports: Family<ReportLabels, Counter>,
    /// Seconds a cell waited in its queue before it was offered (dispatch latency).
    pub dispatch_seconds: Histogram,
    /// Seconds from an offer to the end of its attempt.
    pub cell_seconds: Histogram,
    /// Records per committed store batch.
    pub store_batch_records: Histogram,
    /// Seconds a store batch took to commit.
    pub store_commit_seconds: Histogram,
    /// Seconds between a schedule's due time and the start of its run.
    pub schedule_lag_seconds: Histogram,
    /// Agents by state (connected, draining, busy), set at scrape.
    pub agents: Family<StateLabels, Gauge>,
    /// Cells of running sweeps by state (queued or out, done, passed, unsupported), set at
    /// scrape.
    pub cells: Family<StateLabels, Gauge>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("quantgrid");
        let reports = Family::<ReportLabels, Counter>::default();
        registry.register(
            "reports",
            "Agent reports by outcome and reason",
            reports.clone(),
        );
        let dispatch_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 22));
        registry.register(
            "dispatch_seconds",
            "Seconds a cell waited in its queue before it was offered to an agent",
            dispatch_seconds.clone(),
        );
        let cell_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 14));
        registry.register(
            "cell_duration_seconds",
            "Seconds from an offer to the end of its attempt",
            cell_seconds.clone(),
        );
        let store_batch_records = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        registry.register(
            "store_batch_records",
            "Records per committed store batch",
            store_batch_records.clone(),
        );
        let store_commit_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "store_commit_seconds",
            "Seconds a store batch took to commit",
            store_commit_seconds.clone(),
        );
        let schedule_lag_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 12));
        registry.register(
            "schedule_lag_seconds",
            "Seconds between a schedule's due time and the start of its run",
            schedule_lag_seconds.clone(),
        );
        let agents = Family::<StateLabels, Gauge>::default();
        registry.register("agents", "Agents by state", agents.clone());
        let cells = Family::<StateLabels, Gauge>::default();
        registry.register("cells", "Cells of running sweeps by state", cells.clone());
        Arc::new(Metrics {
            registry,
            reports,
            dispatch_seconds,
            cell_seconds,
            store_batch_records,
            store_commit_seconds,
            schedule_lag_seconds,
            agents,
            cells,
        })
    }

    pub fn report(&self, outcome: &str, reason: &str) {
        self.reports
            .get_or_create(&ReportLabels {
                outcome: outcome.into(),
                reason: reason.into(),
            })
            .inc();
    }

    pub fn set_agents(&self, state: &str, n: i64) {
        self.agents
            .get_or_create(&StateLabels {
                state: state.into(),
            })
            .set(n);
    }

    pub fn set_cells(&self, state: &str, n: i64) {
        self.cells
            .get_or_create(&StateLabels {
                state: state.into(),
            })
            .set(n);
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // writing into a String cannot fail
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
