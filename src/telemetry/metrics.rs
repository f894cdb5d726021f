//! Prometheus metrics: request counts and latencies by route template, method and status.
//! Route templates (`/v1/cellules/{cellule}/members/{sub}`) are used, never concrete paths, so
//! no identifier ever reaches a label.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// An outcome of the outbox worker: `sent`, `retry`, `failed` or `unknown`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutboxLabels {
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    outbox: Family<OutboxLabels, Counter>,
    latency: Family<RequestLabels, Histogram, fn() -> Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cellule");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, in seconds",
            latency.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because the log's sink could not take them (full disk, closed stderr)",
            super::LOG_LINES_DROPPED.clone(),
        );
        let outbox = Family::<OutboxLabels, Counter>::default();
        registry.register(
            "outbox_messages",
            "Outbox messages by outcome: sent, retry (an attempt failed, another is due), failed (attempts exhausted or refused), unknown (a send interrupted)",
            outbox.clone(),
        );
        Self {
            registry,
            requests,
            outbox,
            latency,
        }
    }

    pub fn observe(&self, labels: RequestLabels, seconds: f64) {
        self.latency.get_or_create(&labels).observe(seconds);
        self.requests.get_or_create(&labels).inc();
    }

    /// Counts `n` outbox messages of one outcome.
    pub fn outbox(&self, outcome: &'static str, n: u64) {
        self.outbox
            .get_or_create(&OutboxLabels { outcome })
            .inc_by(n);
    }

    /// OpenMetrics text exposition (read by Prometheus).
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
