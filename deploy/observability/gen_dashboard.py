#!/usr/bin/env python3
"""Writes grafana/outpost-gateway.json, the Grafana dashboard of Outpost gateways.

Edit the panels here and run `python3 deploy/observability/gen_dashboard.py`
(the JSON is checked in; CI runs this with `--check`, which fails if the
checked-in JSON differs, and the metrics-exist test reads every `expr` in it).
"""
import json
import os
import sys

DS = {"type": "prometheus", "uid": "${datasource}"}
panels = []
y = 0


def row(title):
    global y
    panels.append({"type": "row", "title": title, "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "id": len(panels) + 1, "panels": []})
    y += 1


def ts(title, targets, unit="short", w=8, x=0, desc=""):
    panels.append({
        "type": "timeseries", "title": title, "description": desc, "datasource": DS,
        "id": len(panels) + 1,
        "gridPos": {"h": 8, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [{"refId": chr(65 + i), "expr": e, "legendFormat": l, "datasource": DS}
                    for i, (e, l) in enumerate(targets)],
    })


def stat(title, expr, unit="short", w=4, x=0, desc="", legend=""):
    panels.append({
        "type": "stat", "title": title, "description": desc, "datasource": DS,
        "id": len(panels) + 1,
        "gridPos": {"h": 4, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"},
        "targets": [{"refId": "A", "expr": expr, "legendFormat": legend, "datasource": DS}],
    })


def next_row(h=8):
    global y
    y += h


SEL = 'job="outpost-gateway", instance=~"$instance"'

row("Overview")
stat("Sessions live", f'sum(outpost_sessions_live{{{SEL}}})', x=0)
stat("Logins /s", f'sum(rate(outpost_logins_total{{{SEL}, result!="reject"}}[$__rate_interval]))', "reqps", x=4)
stat("Login queue", f'max(outpost_queue_length{{{SEL}}})', x=8, desc="Logins waiting in the region queue (absent when the queue is off).")
stat("Gateways draining", f'sum(outpost_draining{{{SEL}}})', x=12)
stat("Cert expires in", f'min(outpost_tls_cert_not_after_seconds{{{SEL}}}) - time()', "s", x=16)
stat("Version", f'count by (version) (outpost_build_info{{{SEL}}})', x=20, legend="{{version}}",
     desc="Gateways per build version (a rolling restart shows two).")
next_row(4)

row("Logins and admission")
ts("Sessions per gateway", [(f'outpost_sessions_live{{{SEL}}}', "{{instance}} live"),
                            (f'outpost_sessions_admitted{{{SEL}}}', "{{instance}} admitted")], x=0)
ts("Logins by result", [(f'sum by (result) (rate(outpost_logins_total{{{SEL}}}[$__rate_interval]))', "{{result}}")], "reqps", x=8)
ts("Login rejects by code", [(f'sum by (code) (rate(outpost_logins_total{{{SEL}, result="reject"}}[$__rate_interval]))', "{{code}}")],
   "reqps", x=16, desc="ServerBusy and RateLimited are admission (capacity) rejects.")
next_row()
ts("Handshakes", [(f'sum by (result) (rate(outpost_handshakes_total{{{SEL}}}[$__rate_interval]))', "{{result}}"),
                  (f'sum(rate(outpost_quic_retries_total{{{SEL}}}[$__rate_interval]))', "QUIC retries"),
                  (f'sum by (instance) (rate(outpost_udp_receive_drops_total{{{SEL}}}[$__rate_interval]))', "{{instance}} datagrams dropped")], "reqps", x=0)
ts("Login queue", [(f'max(outpost_queue_length{{{SEL}}})', "waiting"),
                   (f'sum(rate(outpost_queue_admissions_total{{{SEL}}}[$__rate_interval]))', "admitted /s")], x=8)
ts("Session closes by code", [(f'sum by (code) (rate(outpost_session_closes_total{{{SEL}}}[$__rate_interval]))', "{{code}}"),
                              (f'sum by (cause) (rate(outpost_rate_limit_kicks_total{{{SEL}}}[$__rate_interval]))', "RateLimited: {{cause}}")],
   "reqps", x=16, desc="RateLimited kicks split by cause: control_frames, refused_requests, failed_channels.")
next_row()

row("Requests (server side)")
ts("Requests by channel and operation", [(f'sum by (channel, operation) (rate(outpost_requests_total{{{SEL}}}[$__rate_interval]))', "{{channel}}/{{operation}}")], "reqps", x=0)
ts("Request latency p99", [(f'histogram_quantile(0.99, sum by (channel, operation, le) (rate(outpost_request_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))', "{{channel}}/{{operation}}")], "s", x=8)
ts("Request errors by code", [(f'sum by (code) (rate(outpost_requests_total{{{SEL}, code!="ok"}}[$__rate_interval]))', "{{code}}")], "reqps", x=16)
next_row()
ts("Request latency p50", [(f'histogram_quantile(0.5, sum by (channel, operation, le) (rate(outpost_request_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))', "{{channel}}/{{operation}}")], "s", x=0)
ts("Mean request latency", [(f'sum by (channel) (rate(outpost_request_duration_seconds_sum{{{SEL}}}[$__rate_interval])) / sum by (channel) (rate(outpost_request_duration_seconds_count{{{SEL}}}[$__rate_interval]))', "{{channel}}")], "s", x=8)
ts("Channels opened", [(f'sum by (channel) (rate(outpost_channels_opened_total{{{SEL}}}[$__rate_interval]))', "{{channel}}")], "reqps", x=16)
next_row()

row("Store")
ts("Commits, conflicts, retries", [(f'sum by (backend) (rate(outpost_store_commits_total{{{SEL}}}[$__rate_interval]))', "commits {{backend}}"),
                                   (f'sum by (backend) (rate(outpost_store_conflicts_total{{{SEL}}}[$__rate_interval]))', "conflicts {{backend}}"),
                                   (f'sum by (reason) (rate(outpost_store_retries_total{{{SEL}}}[$__rate_interval]))', "retries {{reason}}")], "ops", x=0)
ts("Commit latency", [(f'histogram_quantile(0.5, sum by (le) (rate(outpost_store_commit_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))', "p50"),
                      (f'histogram_quantile(0.99, sum by (le) (rate(outpost_store_commit_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))', "p99")], "s", x=8)
ts("Failed transactions", [(f'sum by (reason) (rate(outpost_store_transaction_failures_total{{{SEL}}}[$__rate_interval]))', "{{reason}}")], "ops", x=16)
next_row()
ts("Journal syncs (embedded store)", [(f'sum(rate(outpost_store_journal_syncs_total{{{SEL}}}[$__rate_interval]))', "syncs")], "ops", x=0,
   desc="fsyncs of the group commit; each makes a batch of commits durable")
ts("Commits per journal sync", [(f'sum(rate(outpost_store_journal_sync_batch_commits_sum{{{SEL}}}[$__rate_interval])) / sum(rate(outpost_store_journal_sync_batch_commits_count{{{SEL}}}[$__rate_interval]))', "mean"),
                                (f'histogram_quantile(0.99, sum by (le) (rate(outpost_store_journal_sync_batch_commits_bucket{{{SEL}}}[$__rate_interval])))', "p99")], "short", x=8,
   desc="group-commit batch size: grows with load while the sync time holds; a sync time that grows with it is the disk")
ts("Journal sync latency", [(f'histogram_quantile(0.5, sum by (le) (rate(outpost_store_journal_sync_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))', "p50"),
                            (f'histogram_quantile(0.99, sum by (le) (rate(outpost_store_journal_sync_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))', "p99")], "s", x=16)
next_row()

row("Matchmaking")
ts("Pool depth", [(f'max by (queue, region) (outpost_mm_pool_depth{{{SEL}}})', "{{queue}} {{region}}")], x=0)
ts("Wait p50 / p90", [(f'histogram_quantile(0.5, sum by (queue, le) (rate(outpost_mm_wait_ms_bucket{{{SEL}}}[5m])))', "p50 {{queue}}"),
                      (f'histogram_quantile(0.9, sum by (queue, le) (rate(outpost_mm_wait_ms_bucket{{{SEL}}}[5m])))', "p90 {{queue}}")], "ms", x=8)
ts("Matches and refusals", [(f'sum by (queue) (rate(outpost_mm_matches_total{{{SEL}}}[$__rate_interval]))', "matches {{queue}}"),
                            (f'sum by (reason) (rate(outpost_mm_commit_refused_total{{{SEL}}}[$__rate_interval]))', "refused {{reason}}"),
                            (f'sum(outpost_mm_partitions_held{{{SEL}}})', "partitions held")], "short", x=16)
next_row()
ts("Backfill requests", [(f'sum(rate(outpost_mm_backfills_requested_total{{{SEL}}}[$__rate_interval]))', "requested"),
                         (f'sum by (outcome) (rate(outpost_mm_backfills_closed_total{{{SEL}}}[$__rate_interval]))', "{{outcome}}"),
                         (f'max(outpost_mm_backfills_open{{{SEL}}})', "open")], "short", x=0,
   desc="Replacement players asked for matches in progress: requests per second, how they ended, and the open requests in the pool.")
ts("Backfill fill latency p50 / p90", [(f'histogram_quantile(0.5, sum by (queue, le) (rate(outpost_mm_backfill_fill_seconds_bucket{{{SEL}}}[5m])))', "p50 {{queue}}"),
                                       (f'histogram_quantile(0.9, sum by (queue, le) (rate(outpost_mm_backfill_fill_seconds_bucket{{{SEL}}}[5m])))', "p90 {{queue}}")], "s", x=8)
ts("Deadline outcomes (no match)", [(f'sum by (queue) (rate(outpost_mm_tickets_timed_out_total{{{SEL}}}[$__rate_interval]))', "timed out {{queue}}"),
                                    (f'sum by (reason) (rate(outpost_mm_match_not_found_pushed_total{{{SEL}}}[$__rate_interval]))', "MatchNotFound pushed {{reason}}")], "short", x=16,
   desc="Tickets that reached their queue's deadline without a match, and the MatchNotFound pushes sent for them.")
next_row()

row("Clients (telemetry)")
ts("Client errors by code", [(f'sum by (code) (rate(outpost_client_errors_total{{{SEL}}}[$__rate_interval]))', "{{code}}")], "reqps", x=0)
ts("Client errors by version", [(f'sum by (client_version, platform) (rate(outpost_client_errors_total{{{SEL}}}[$__rate_interval]))', "{{client_version}} {{platform}}")], "reqps", x=8)
ts("Client latency p90", [(f'histogram_quantile(0.9, sum by (platform, le) (rate(outpost_client_latency_ms_bucket{{{SEL}}}[5m])))', "{{platform}}")], "ms", x=16)
next_row()

row("Process and TLS")
ts("Resident memory", [(f'process_resident_memory_bytes{{{SEL}}}', "{{instance}}")], "bytes", x=0)
ts("CPU", [(f'rate(process_cpu_seconds_total{{{SEL}}}[5m])', "{{instance}}")], "percentunit", x=8,
   desc="Cores used (whole-second counter: smooth over 5 minutes).")
ts("File descriptors", [(f'process_open_fds{{{SEL}}}', "{{instance}} open"),
                        (f'process_max_fds{{{SEL}}}', "{{instance}} limit")], x=16)
next_row()
ts("Certificate reloads", [(f'sum(increase(outpost_tls_reloads_total{{{SEL}}}[1h]))', "reloads"),
                           (f'sum(increase(outpost_tls_reload_failures_total{{{SEL}}}[1h]))', "failures")], x=0)
ts("UDP socket buffers", [(f'outpost_udp_recv_buffer_bytes{{{SEL}}}', "{{instance}} recv"),
                          (f'outpost_udp_send_buffer_bytes{{{SEL}}}', "{{instance}} send"),
                          (f'outpost_udp_receive_queue_bytes{{{SEL}}}', "{{instance}} queued")], "bytes", x=8)
ts("Admin API refusals", [(f'sum by (reason) (rate(outpost_admin_unauthorized_total{{{SEL}}}[$__rate_interval]))', "{{reason}}")], "reqps", x=16)
next_row()

dashboard = {
    "title": "Outpost gateways",
    "uid": "outpost-gateways",
    "description": "Outpost QUIC gateways: sessions, logins and admission, server-side request latency and errors, store, matchmaking, client telemetry, process. Generated by deploy/observability/gen_dashboard.py.",
    "tags": ["outpost"],
    "timezone": "utc",
    "schemaVersion": 39,
    "version": 1,
    "editable": True,
    "refresh": "30s",
    "time": {"from": "now-3h", "to": "now"},
    "annotations": {"list": []},
    "templating": {"list": [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
        {"name": "instance", "type": "query", "datasource": DS, "label": "Gateway",
         "query": {"query": 'label_values(outpost_build_info{job="outpost-gateway"}, instance)', "refId": "instance"},
         "definition": 'label_values(outpost_build_info{job="outpost-gateway"}, instance)',
         "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2,
         "current": {"selected": True, "text": "All", "value": "$__all"}},
    ]},
    "panels": panels,
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grafana", "outpost-gateway.json")
text = json.dumps(dashboard, indent=2) + "\n"
if "--check" in sys.argv[1:]:
    with open(out) as f:
        if f.read() != text:
            sys.exit(f"{out} is stale: run python3 deploy/observability/gen_dashboard.py")
    print(f"{out} is up to date")
else:
    with open(out, "w") as f:
        f.write(text)
    print(out)
