//! `GET /metrics`: Prometheus text. Request counts and latencies are kept by the
//! router; runs by outcome, events by outcome and AWS API calls by action are read
//! when scraped.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State as S;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};

use crate::State;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// What the router observed.
#[derive(Default)]
pub struct Metrics {
    requests: AtomicU64,
    /// (method, route, status) -> count; (method, route) -> latencies.
    by_status: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<(String, String), Series>>,
}

impl Metrics {
    pub fn next_request_id(&self) -> String {
        format!("req-{}", self.requests.fetch_add(1, Ordering::Relaxed) + 1)
    }

    pub fn observe(&self, method: &Method, route: &str, status: u16, latency: Duration) {
        let key = (method.to_string(), route.to_string());
        *self
            .by_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((key.0.clone(), key.1.clone(), status))
            .or_default() += 1;
        let mut l = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let s = l.entry(key).or_default();
        let secs = latency.as_secs_f64();
        s.count += 1;
        s.sum += secs;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                s.buckets[i] += 1;
            }
        }
    }
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub async fn render(S(state): S<State>) -> Response {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP ec2s_http_requests_total HTTP requests by route and status.\n# TYPE ec2s_http_requests_total counter"
    );
    for ((m, r, s), n) in state
        .metrics
        .by_status
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        let _ = writeln!(
            out,
            "ec2s_http_requests_total{{method=\"{m}\",route=\"{}\",status=\"{s}\"}} {n}",
            label(r)
        );
    }
    let _ = writeln!(
        out,
        "# HELP ec2s_http_request_duration_seconds HTTP request latency.\n# TYPE ec2s_http_request_duration_seconds histogram"
    );
    for ((m, r), s) in state
        .metrics
        .latency
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        let r = label(r);
        for (b, n) in BUCKETS.iter().zip(s.buckets) {
            let _ = writeln!(
                out,
                "ec2s_http_request_duration_seconds_bucket{{method=\"{m}\",route=\"{r}\",le=\"{b}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "ec2s_http_request_duration_seconds_bucket{{method=\"{m}\",route=\"{r}\",le=\"+Inf\"}} {}",
            s.count
        );
        let _ = writeln!(
            out,
            "ec2s_http_request_duration_seconds_sum{{method=\"{m}\",route=\"{r}\"}} {}",
            s.sum
        );
        let _ = writeln!(
            out,
            "ec2s_http_request_duration_seconds_count{{method=\"{m}\",route=\"{r}\"}} {}",
            s.count
        );
    }
    if let Ok(runs) = state.app.runs(None).await {
        let mut by: BTreeMap<String, u64> = BTreeMap::new();
        for r in runs {
            *by.entry(r.status).or_default() += 1;
        }
        let _ = writeln!(
            out,
            "# HELP ec2s_runs Runs in the store by status.\n# TYPE ec2s_runs gauge"
        );
        for (s, n) in by {
            let _ = writeln!(out, "ec2s_runs{{status=\"{}\"}} {n}", label(&s));
        }
    }
    if let Ok(events) = state.app.event_records(None, 100_000).await {
        let mut by: BTreeMap<&str, u64> = BTreeMap::new();
        for e in &events {
            *by.entry(e.outcome.as_str()).or_default() += 1;
        }
        let _ = writeln!(
            out,
            "# HELP ec2s_schedule_events Schedule events recorded, by outcome.\n# TYPE ec2s_schedule_events gauge"
        );
        for (o, n) in by {
            let _ = writeln!(out, "ec2s_schedule_events{{outcome=\"{o}\"}} {n}");
        }
    }
    let calls = state.app.requests();
    let _ = writeln!(
        out,
        "# HELP ec2s_aws_requests_total AWS API requests sent by this process, by action (pages and retries included).\n# TYPE ec2s_aws_requests_total counter"
    );
    for (a, n) in calls {
        let _ = writeln!(
            out,
            "ec2s_aws_requests_total{{action=\"{}\"}} {n}",
            label(&a)
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
