//! Observability contract: every metric that deploy/observability names (the
//! Grafana dashboard's queries and the Prometheus alert rules) exists on a
//! running gateway's `/metrics`; every metric there has `# HELP`; the optional
//! metrics-only listener serves `/metrics` and nothing of the admin API.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::*;
use outpost_client::{ChannelKind, Client, RequestBody};
use outpost_schema::TelemetryErrorCount;

fn observability_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/observability")
}

/// Every PromQL expression of the dashboard (each target's `expr`, and the
/// template variables' queries).
fn dashboard_exprs() -> Result<Vec<String>> {
    let path = observability_dir().join("grafana/outpost-gateway.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).context("dashboard")?)?;
    let mut out = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&json, &mut out);
    Ok(out)
}

/// Every `expr:` of the rule file, inline or as a `|` block.
fn rule_exprs() -> Result<Vec<String>> {
    let text = std::fs::read_to_string(observability_dir().join("prometheus/outpost-alerts.yml"))?;
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let indent = |l: &str| l.len() - l.trim_start().len();
    for (i, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value == "|" || value == "|-" {
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || indent(l) > indent(line))
                .copied()
                .collect();
            out.push(block.join("\n"));
        } else {
            out.push(value.to_owned());
        }
    }
    Ok(out)
}

/// The metric names in a PromQL expression: identifiers starting with
/// `outpost_` or `process_` once string literals, label matchers (`{...}`)
/// and ranges (`[...]`) are removed (grouping labels never carry those
/// prefixes; `up` and other Prometheus-made series are not the gateway's).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut cleaned = String::new();
    let (mut depth, mut quote) = (0usize, None::<char>);
    for c in expr.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '`' | '\'') => quote = Some(c),
            (None, '{' | '[') => depth += 1,
            (None, '}' | ']') => depth = depth.saturating_sub(1),
            (None, c) if depth == 0 => cleaned.push(c),
            _ => {}
        }
    }
    cleaned
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("outpost_") || w.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

/// Names of the metrics with at least one sample in an exposition.
fn exposed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn names_are_extracted_from_promql() {
    let e = r#"sum by (queue) (rate(outpost_mm_wait_ms_bucket{job="x",code!~"outpost_nope"}[5m])) / ignoring (code) process_open_fds"#;
    let names: Vec<_> = metric_names(e).into_iter().collect();
    assert_eq!(names, ["outpost_mm_wait_ms_bucket", "process_open_fds"]);
}

#[tokio::test]
async fn every_metric_of_the_dashboard_and_the_alerts_exists() -> Result<()> {
    let mut wanted = BTreeSet::new();
    for e in dashboard_exprs()?.iter().chain(&rule_exprs()?) {
        wanted.extend(metric_names(e));
    }
    // Guards against a parser that finds nothing (the test would pass vacuously).
    assert!(
        wanted.len() >= 30,
        "only {} metric names found: {wanted:?}",
        wanted.len()
    );

    let world = World::new().await?;
    let gw = world
        .gateway(|c| {
            c.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
            c.queue.enabled = true;
            c.queue.update_interval_ms = 500;
        })
        .await?;
    let metrics_addr = gw
        .running
        .as_ref()
        .and_then(|r| r.metrics_addr)
        .context("the metrics listener")?;

    // Traffic for the series that appear with their first event: a login, a
    // request with client telemetry, a session close.
    let client = Client::connect(gw.client_config(device())).await?;
    let telemetry = client.open_channel(ChannelKind::Telemetry).await?;
    let report = RequestBody::Telemetry {
        errors: vec![TelemetryErrorCount {
            code: "E_OBSERVED".into(),
            count: 1,
        }],
        latencies_ms: vec![12.0],
    };
    telemetry.request(report).await?;
    client.close().await;

    let deadline = Instant::now() + Duration::from_secs(15);
    let (text, missing) = loop {
        let text =
            tokio::task::spawn_blocking(move || http_with_token(metrics_addr, "GET", "/metrics", "", None))
                .await??;
        let have = exposed(http_body(&text));
        let missing: Vec<_> = wanted.iter().filter(|w| !have.contains(*w)).cloned().collect();
        if missing.is_empty() || Instant::now() > deadline {
            break (text, missing);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        missing.is_empty(),
        "named by deploy/observability but not exposed: {missing:?}\n{text}"
    );

    // Every metric has HELP (and the exposition is the admin listener's too).
    let body = http_body(&text);
    let typed: BTreeSet<_> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
        .collect();
    let helped: BTreeSet<_> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP ")?.split(' ').next())
        .collect();
    let without: Vec<_> = typed.difference(&helped).collect();
    assert!(
        typed.len() >= 30 && without.is_empty(),
        "no # HELP for {without:?}"
    );
    assert!(body.contains(&format!(
        "outpost_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    let admin = gw.admin;
    let admin_text =
        tokio::task::spawn_blocking(move || http_with_token(admin, "GET", "/metrics", "", None)).await??;
    assert!(http_body(&admin_text).contains("# HELP outpost_store_commits_total"));

    // The metrics listener serves nothing else: no admin route, with or without a token.
    for path in ["/status", "/healthz", "/openapi.json", "/flags"] {
        let r = tokio::task::spawn_blocking(move || http(metrics_addr, "GET", path)).await??;
        assert!(r.starts_with("HTTP/1.1 404"), "{path}: {r}");
    }
    let r = tokio::task::spawn_blocking(move || http(metrics_addr, "POST", "/drain")).await??;
    assert!(
        r.starts_with("HTTP/1.1 404") || r.starts_with("HTTP/1.1 405"),
        "{r}"
    );
    assert!(!gw.handle.is_draining());
    Ok(())
}
